//! The audit's classifiers: gradient-boosted decision trees (logistic loss, Newton leaves,
//! features cut at quantiles of the training data) and a plain logistic regression. Pure and
//! deterministic: no randomness, no I/O. Small enough to check by hand; nothing here knows
//! what a feature means.

/// A set of samples: one feature row and one truth per sample.
pub struct Data<'a> {
    pub x: &'a [Vec<f64>],
    pub y: &'a [bool],
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn log_loss(p: f64, y: bool) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    if y {
        -p.ln()
    } else {
        -(1.0 - p).ln()
    }
}

/// Gradient boosting's knobs.
#[derive(Clone, Copy, Debug)]
pub struct BoostParams {
    pub trees: usize,
    pub depth: usize,
    pub shrinkage: f64,
    /// L2 on leaf values (Newton step `−G / (H + λ)`).
    pub lambda: f64,
    /// No leaf with fewer samples than this.
    pub min_leaf: usize,
    /// Cuts per feature (quantiles of the training values), at most 255.
    pub cuts: usize,
    /// Stop once the validation loss has not improved for this many trees.
    pub patience: usize,
}

impl Default for BoostParams {
    fn default() -> Self {
        BoostParams { trees: 300, depth: 4, shrinkage: 0.1, lambda: 1.0, min_leaf: 30, cuts: 48, patience: 40 }
    }
}

#[derive(Clone, Debug)]
enum Node {
    /// `x[feature] <= threshold` goes left.
    Split { feature: usize, threshold: f64, left: usize, right: usize },
    Leaf(f64),
}

#[derive(Clone, Debug)]
struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    fn value(&self, x: &[f64]) -> f64 {
        let mut k = 0;
        loop {
            match self.nodes[k] {
                Node::Split { feature, threshold, left, right } => k = if x[feature] <= threshold { left } else { right },
                Node::Leaf(v) => return v,
            }
        }
    }
}

/// A boosted ensemble: `P(y) = σ(base + Σ trees)`.
#[derive(Clone, Debug)]
pub struct Boost {
    base: f64,
    trees: Vec<Tree>,
}

/// The cut points of one feature: distinct quantiles of its training values.
fn cuts_of(values: &mut [f64], cuts: usize) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    let mut out: Vec<f64> = Vec::new();
    let n = values.len();
    if n == 0 {
        return out;
    }
    for q in 1..=cuts {
        let v = values[(q * (n - 1)) / (cuts + 1)];
        if out.last().is_none_or(|&l| v > l) {
            out.push(v);
        }
    }
    // The largest value is never a useful cut (nothing would go right).
    while out.last().is_some_and(|&l| l >= values[n - 1]) {
        out.pop();
    }
    out
}

/// The bin of `x` among `cuts`: the first cut with `x <= cut` (or `cuts.len()`).
fn bin_of(x: f64, cuts: &[f64]) -> u8 {
    cuts.partition_point(|&c| c < x) as u8
}

impl Boost {
    /// Trains on `fit`, stopping early on the loss over `valid` (when it has samples).
    pub fn train(fit: &Data, valid: &Data, p: BoostParams) -> Boost {
        let n = fit.x.len();
        let dim = fit.x.first().map_or(0, |r| r.len());
        let positives = fit.y.iter().filter(|&&y| y).count() as f64;
        let rate = ((positives + 1.0) / (n as f64 + 2.0)).clamp(1e-6, 1.0 - 1e-6);
        let base = (rate / (1.0 - rate)).ln();
        let mut model = Boost { base, trees: Vec::new() };
        if n == 0 || dim == 0 {
            return model;
        }
        let cuts: Vec<Vec<f64>> = (0..dim)
            .map(|f| {
                let mut v: Vec<f64> = fit.x.iter().map(|r| r[f]).collect();
                cuts_of(&mut v, p.cuts.min(255))
            })
            .collect();
        // Column-major bins: bins[f * n + i].
        let mut bins = vec![0u8; n * dim];
        for (i, r) in fit.x.iter().enumerate() {
            for f in 0..dim {
                bins[f * n + i] = bin_of(r[f], &cuts[f]);
            }
        }
        let mut score = vec![base; n];
        let mut valid_score = vec![base; valid.x.len()];
        let (mut best_loss, mut best_len) = (f64::INFINITY, 0);
        let mut grad = vec![0.0; n];
        let mut hess = vec![0.0; n];
        for _ in 0..p.trees {
            for i in 0..n {
                let q = sigmoid(score[i]);
                grad[i] = q - if fit.y[i] { 1.0 } else { 0.0 };
                hess[i] = (q * (1.0 - q)).max(1e-9);
            }
            let (tree, leaf_of_sample) = grow(&bins, n, &cuts, &grad, &hess, p);
            for (s, v) in score.iter_mut().zip(&leaf_of_sample) {
                *s += v;
            }
            for (s, x) in valid_score.iter_mut().zip(valid.x) {
                *s += tree.value(x);
            }
            model.trees.push(tree);
            if valid.x.is_empty() {
                continue;
            }
            let loss: f64 = valid_score.iter().zip(valid.y).map(|(&s, &y)| log_loss(sigmoid(s), y)).sum();
            if loss < best_loss - 1e-9 {
                best_loss = loss;
                best_len = model.trees.len();
            } else if model.trees.len() - best_len >= p.patience {
                break;
            }
        }
        if !valid.x.is_empty() {
            model.trees.truncate(best_len);
        }
        model
    }

    pub fn p(&self, x: &[f64]) -> f64 {
        sigmoid(self.base + self.trees.iter().map(|t| t.value(x)).sum::<f64>())
    }

    pub fn trees(&self) -> usize {
        self.trees.len()
    }
}

/// Per feature and bin: sums of gradients, of hessians, and the count.
type Hist = Vec<(f64, f64, u32)>;

/// The histogram of the samples `idx` (offsets: feature f's bins start at `offsets[f]`).
fn histogram(bins: &[u8], n: usize, offsets: &[usize], idx: &[u32], grad: &[f64], hess: &[f64]) -> Hist {
    let mut h = vec![(0.0, 0.0, 0u32); offsets[offsets.len() - 1]];
    for f in 0..offsets.len() - 1 {
        let col = &bins[f * n..(f + 1) * n];
        let out = &mut h[offsets[f]..offsets[f + 1]];
        for &i in idx {
            let i = i as usize;
            let c = &mut out[col[i] as usize];
            c.0 += grad[i];
            c.1 += hess[i];
            c.2 += 1;
        }
    }
    h
}

/// One tree, grown level by level from histograms of gradients (each split builds the
/// smaller child's histogram and takes the other's from the parent's). Returns the tree and
/// each training sample's leaf value.
fn grow(bins: &[u8], n: usize, cuts: &[Vec<f64>], grad: &[f64], hess: &[f64], p: BoostParams) -> (Tree, Vec<f64>) {
    let dim = cuts.len();
    // Feature f has cuts[f].len() + 1 bins.
    let mut offsets = vec![0usize; dim + 1];
    for f in 0..dim {
        offsets[f + 1] = offsets[f] + cuts[f].len() + 1;
    }
    let mut nodes: Vec<Node> = vec![Node::Leaf(0.0)];
    let mut leaf_value = vec![0.0; n];
    let all: Vec<u32> = (0..n as u32).collect();
    let root_hist = histogram(bins, n, &offsets, &all, grad, hess);
    // (node index, its samples, their histogram)
    let mut frontier: Vec<(usize, Vec<u32>, Hist)> = vec![(0, all, root_hist)];
    for level in 0..=p.depth {
        let mut next = Vec::new();
        for (node, idx, hist) in frontier {
            let (g, h): (f64, f64) = idx.iter().fold((0.0, 0.0), |(g, h), &i| (g + grad[i as usize], h + hess[i as usize]));
            let leaf = -g / (h + p.lambda) * p.shrinkage;
            let mut best: Option<(f64, usize, usize)> = None; // (gain, feature, bin)
            if level < p.depth && idx.len() >= 2 * p.min_leaf {
                let parent = g * g / (h + p.lambda);
                for f in 0..dim {
                    let (mut gl, mut hl, mut cl) = (0.0, 0.0, 0usize);
                    for b in 0..cuts[f].len() {
                        let c = hist[offsets[f] + b];
                        gl += c.0;
                        hl += c.1;
                        cl += c.2 as usize;
                        let cr = idx.len() - cl;
                        if cl < p.min_leaf || cr < p.min_leaf {
                            continue;
                        }
                        let (gr, hr) = (g - gl, h - hl);
                        let gain = gl * gl / (hl + p.lambda) + gr * gr / (hr + p.lambda) - parent;
                        if gain > 1e-9 && best.is_none_or(|b| gain > b.0) {
                            best = Some((gain, f, b));
                        }
                    }
                }
            }
            let Some((_, f, b)) = best else {
                nodes[node] = Node::Leaf(leaf);
                for &i in &idx {
                    leaf_value[i as usize] = leaf;
                }
                continue;
            };
            let col = &bins[f * n..(f + 1) * n];
            let (left, right): (Vec<u32>, Vec<u32>) = idx.iter().partition(|&&i| col[i as usize] as usize <= b);
            let (small, large_is_left) = if left.len() <= right.len() { (&left, false) } else { (&right, true) };
            let small_hist = histogram(bins, n, &offsets, small, grad, hess);
            let large_hist: Hist = hist.iter().zip(&small_hist).map(|(a, s)| (a.0 - s.0, a.1 - s.1, a.2 - s.2)).collect();
            let (lh, rh) = if large_is_left { (large_hist, small_hist) } else { (small_hist, large_hist) };
            let (l, r) = (nodes.len(), nodes.len() + 1);
            nodes.push(Node::Leaf(0.0));
            nodes.push(Node::Leaf(0.0));
            nodes[node] = Node::Split { feature: f, threshold: cuts[f][b], left: l, right: r };
            next.push((l, left, lh));
            next.push((r, right, rh));
        }
        frontier = next;
        if frontier.is_empty() {
            break;
        }
    }
    (Tree { nodes }, leaf_value)
}

/// Logistic regression on standardised features, trained by full-batch gradient descent
/// with momentum and a little L2.
#[derive(Clone, Debug)]
pub struct Logistic {
    mean: Vec<f64>,
    scale: Vec<f64>,
    w: Vec<f64>,
    b: f64,
}

impl Logistic {
    pub fn train(d: &Data, iterations: usize) -> Logistic {
        let n = d.x.len();
        let dim = d.x.first().map_or(0, |r| r.len());
        let mut mean = vec![0.0; dim];
        let mut scale = vec![1.0; dim];
        if n > 0 {
            for f in 0..dim {
                let m = d.x.iter().map(|r| r[f]).sum::<f64>() / n as f64;
                let var = d.x.iter().map(|r| (r[f] - m).powi(2)).sum::<f64>() / n as f64;
                mean[f] = m;
                scale[f] = if var > 1e-18 { 1.0 / var.sqrt() } else { 0.0 };
            }
        }
        let mut m = Logistic { mean, scale, w: vec![0.0; dim], b: 0.0 };
        if n == 0 {
            return m;
        }
        // Standardised rows, flat: z[i * dim + f].
        let z: Vec<f64> = d.x.iter().flat_map(|r| m.standardise(r)).collect();
        let (rate, l2, momentum) = (0.5, 1e-4, 0.9);
        let (mut vw, mut vb) = (vec![0.0; dim], 0.0);
        let mut gw = vec![0.0; dim];
        for _ in 0..iterations {
            gw.iter_mut().for_each(|g| *g = 0.0);
            let mut gb = 0.0;
            for (row, &y) in z.chunks_exact(dim.max(1)).zip(d.y) {
                let s = m.b + row.iter().zip(&m.w).map(|(x, w)| x * w).sum::<f64>();
                let err = sigmoid(s) - if y { 1.0 } else { 0.0 };
                for (g, x) in gw.iter_mut().zip(row) {
                    *g += err * x;
                }
                gb += err;
            }
            for k in 0..dim {
                vw[k] = momentum * vw[k] - rate * (gw[k] / n as f64 + l2 * m.w[k]);
                m.w[k] += vw[k];
            }
            vb = momentum * vb - rate * gb / n as f64;
            m.b += vb;
        }
        m
    }

    fn standardise(&self, x: &[f64]) -> Vec<f64> {
        x.iter().zip(&self.mean).zip(&self.scale).map(|((x, m), s)| ((x - m) * s).clamp(-8.0, 8.0)).collect()
    }

    fn p_std(&self, z: &[f64]) -> f64 {
        sigmoid(self.b + self.w.iter().zip(z).map(|(w, x)| w * x).sum::<f64>())
    }

    pub fn p(&self, x: &[f64]) -> f64 {
        self.p_std(&self.standardise(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// y = (x0 > 0.5) XOR (x1 > 0.5): no linear model sees it, a depth-2 tree does.
    #[test]
    fn boosting_learns_an_interaction_logistic_cannot() {
        let mut rng = fastrand::Rng::with_seed(5);
        let make = |rng: &mut fastrand::Rng, n: usize| {
            let x: Vec<Vec<f64>> = (0..n).map(|_| vec![rng.f64(), rng.f64(), rng.f64()]).collect();
            let y: Vec<bool> = x.iter().map(|r| (r[0] > 0.5) != (r[1] > 0.5)).collect();
            (x, y)
        };
        let (x, y) = make(&mut rng, 3000);
        let (vx, vy) = make(&mut rng, 1000);
        let (tx, ty) = make(&mut rng, 2000);
        let b = Boost::train(&Data { x: &x, y: &y }, &Data { x: &vx, y: &vy }, BoostParams { trees: 60, ..Default::default() });
        let acc = |p: &dyn Fn(&[f64]) -> f64| tx.iter().zip(&ty).filter(|(x, &y)| (p(x) >= 0.5) == y).count() as f64 / tx.len() as f64;
        assert!(acc(&|x| b.p(x)) > 0.95, "boosting: {}", acc(&|x| b.p(x)));
        let l = Logistic::train(&Data { x: &x, y: &y }, 100);
        assert!(acc(&|x| l.p(x)) < 0.6, "logistic: {}", acc(&|x| l.p(x)));
    }

    #[test]
    fn logistic_learns_a_linear_rule_and_both_handle_no_data() {
        let mut rng = fastrand::Rng::with_seed(6);
        let x: Vec<Vec<f64>> = (0..2000).map(|_| vec![rng.f64() * 100.0, rng.f64()]).collect();
        let y: Vec<bool> = x.iter().map(|r| r[0] + 30.0 * r[1] > 65.0).collect();
        let l = Logistic::train(&Data { x: &x, y: &y }, 100);
        let acc = x.iter().zip(&y).filter(|(x, &y)| (l.p(x) >= 0.5) == y).count() as f64 / 2000.0;
        assert!(acc > 0.95, "{acc}");
        let none = Data { x: &[], y: &[] };
        assert_eq!(Boost::train(&none, &none, BoostParams::default()).trees(), 0);
        assert!((Logistic::train(&none, 10).p(&[]) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn cuts_are_distinct_quantiles_below_the_maximum() {
        let mut v: Vec<f64> = (0..100).map(|i| (i % 10) as f64).collect();
        let c = cuts_of(&mut v, 20);
        assert!(c.windows(2).all(|w| w[0] < w[1]), "{c:?}");
        assert!(c.iter().all(|&x| x < 9.0));
        assert_eq!(bin_of(-1.0, &c), 0);
        assert_eq!(bin_of(100.0, &c) as usize, c.len());
        assert!(cuts_of(&mut [3.0, 3.0, 3.0], 10).is_empty());
    }
}
