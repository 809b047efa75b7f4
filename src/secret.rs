//! The derivation from board to key (docs/protocol.md §5): sift, recognise, bits, strength, key and
//! confirmation tag. Pure: no I/O, no clock, no randomness; every time is an integer µs and
//! every size an exact integer. `client/secret.js` mirrors this file, and both are held to the
//! same answers by the shared vectors in `tests/vectors/` (format: `tests/vectors/README.md`).
//!
//! One rule is stricter than the recognition of docs/protocol.md §5.2: a poster's self-check asks, for each of its posts,
//! for a board entry within τ of the predicted arrival *that carries the post's label*. An entry
//! with the other label cannot be that post, so accepting it would let a lost post go unnoticed
//! and cost a failed confirmation instead of a cheap `desync`.
//!
//! One rule goes beyond a plain self-check (docs/protocol.md §5.3): a poster with a few unmatched posts does
//! not drop the whole round but names *spans* of it, each from its first unmatched post's
//! predicted arrival − 2τ ([`SPAN_BEFORE`]; not before its previous matched post's − τ) to its
//! next matched one's + τ. The board keeps each connection's posts in send order, and no post
//! arrives that early, so a late post's entry lies inside; both posters leave out every kept
//! entry in either poster's spans, and count the rest.

use crate::protocol::{Entry, Label, MARGIN_BITS};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One of my own posts: the local clock at the moment it was sent, and its label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnPost {
    pub sent_us: i64,
    pub label: Label,
}

/// The clock sync kept for a round: the offset (server − local) and the round-trip delay of
/// the sample with the smallest delay (docs/protocol.md §2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sync {
    pub offset_us: i64,
    pub delay_us: i64,
}

/// Predicted arrival in server time: `sent_us + offset_us + floor(delay_us / 2)`.
pub fn predicted_us(post: &OwnPost, sync: Sync) -> i64 {
    post.sent_us.saturating_add(sync.offset_us).saturating_add(sync.delay_us.div_euclid(2))
}

/// The public sift (docs/protocol.md §5.1): positions in `board` (board order) of the entries kept. An entry is
/// kept if `t_start + G ≤ t_us ≤ t_end − G` and no *other* entry of the whole board (kept or
/// not, inside the window or not) is closer than `g = 2τ` to it; exactly `g` apart is kept.
/// The board need not be sorted by time (an honest server's is).
pub fn sift(
    board: &[Entry],
    t_start_us: i64,
    t_end_us: i64,
    tolerance_us: i64,
    guard_us: i64,
) -> Vec<usize> {
    let g = 2 * tolerance_us.max(0).unsigned_abs();
    let window = t_start_us.saturating_add(guard_us)..=t_end_us.saturating_sub(guard_us);
    // In time order, an entry's nearest other entries are its two neighbours.
    let mut order: Vec<usize> = (0..board.len()).collect();
    order.sort_by_key(|&k| board[k].t_us);
    let mut crowded = vec![false; board.len()];
    for w in order.windows(2) {
        if board[w[0]].t_us.abs_diff(board[w[1]].t_us) < g {
            crowded[w[0]] = true;
            crowded[w[1]] = true;
        }
    }
    (0..board.len()).filter(|&k| !crowded[k] && window.contains(&board[k].t_us)).collect()
}

/// A stretch of a round in server time, `[from_us, to_us]` inclusive, whose kept entries both
/// posters leave out (`drop {spans}` on the wire).
pub type Span = [i64; 2];

/// At most this many of a poster's posts, as a share of them (1 in `UNMATCHED_SHARE`), may be
/// unmatched and covered by spans; more, and the round is out of sync (a clock problem, not a
/// late post or two): `desync`, re-sync, retry.
pub const UNMATCHED_SHARE: usize = 4;

/// A span starts `SPAN_BEFORE` τ before the predicted arrival of the first post it covers (and
/// not before the previous matched post's prediction − τ). A post's entry is never that early:
/// τ is chosen to cover the spread of the posters' arrival errors, and only late posts are
/// unmatched in practice (earliest entries measured in Chromium keys: −0.96τ on loopback,
/// −0.78τ on the wifi profile; docs/journal/2026-12-07-spans-from-the-late-post.md). Until 2026-12-07 a span
/// started at the previous matched post's prediction − τ, about twice as long.
pub const SPAN_BEFORE: i64 = 2;

/// Where a span whose first post is predicted at `first_us` starts: `first_us − SPAN_BEFORE·τ`,
/// but not before `prev_us − τ` (the previous matched or sent post's prediction, if any) or
/// `t_start`.
fn span_from(first_us: i64, prev_us: Option<i64>, tol: i64, t_start_us: i64) -> i64 {
    let own = first_us.saturating_sub(tol.saturating_mul(SPAN_BEFORE));
    let prev = prev_us.map_or(i64::MIN, |p| p.saturating_sub(tol));
    own.max(prev).max(t_start_us)
}

/// One poster's view of a closed round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundView {
    /// My spans (ascending, disjoint, inside the window): empty if every post matched. The
    /// poster sends them as `drop {spans}` before its verdict.
    pub spans: Vec<Span>,
    /// `Entry::i` of the kept entries the spans (mine and the peer's) leave out, in board order.
    pub dropped: Vec<u32>,
    /// `Entry::i` of the kept entries that count, in board order.
    pub kept: Vec<u32>,
    /// Per kept entry: posted by me.
    pub mine: Vec<bool>,
    /// Per kept entry: the raw bit (`true` = 1).
    pub bits: Vec<bool>,
    /// Number of kept entries that count.
    pub n: u32,
    /// Kept entries posted by alice.
    pub a: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoundOutcome {
    Ok(RoundView),
    /// More than one in [`UNMATCHED_SHARE`] of my posts have no entry with their label within
    /// τ of their predicted arrival (my clock sync is off, or posts were lost), or a prediction
    /// is within τ of two kept entries. Abort with `desync` and retry.
    Desync {
        unmatched: u32,
        total: u32,
    },
}

/// One poster's view of one closed round (docs/protocol.md §5.1–5.3, with the spans).
/// `me` is the poster's own label (`A` for alice, `B` for bob); `peer_spans` are the spans the
/// other poster announced for this round (none yet: `&[]`).
///
/// 1. Self-check, stricter than a plain recognition (docs/protocol.md §5.3): a post is *matched* if a board entry (kept or not)
///    with the same label is surely its own ([`matched_in_send_order`]). If more than one post in
///    [`UNMATCHED_SHARE`] is unmatched: [`RoundOutcome::Desync`]. Otherwise each run of
///    consecutive unmatched posts (in send order) gets a span from the first one's prediction
///    − 2τ (not before the previous matched post's − τ, or `t_start`) to the next matched one's
///    + τ (or `t_end`); overlapping spans merge.
/// 2. kept = [`sift`], less the entries inside my spans or `peer_spans`.
/// 3. No prediction may be within τ of two kept entries (possible only when they are exactly
///    g apart); else [`RoundOutcome::Desync`].
/// 4. A kept entry is mine if one of my posts' predicted arrival is within τ of it (inclusive).
/// 5. Over kept entries in board order, the true poster is me if mine, else the other;
///    bit = 0 if the label names the true poster, else 1.
/// 6. a = kept entries whose true poster is alice.
#[allow(clippy::too_many_arguments)]
pub fn derive_round(
    board: &[Entry],
    t_start_us: i64,
    t_end_us: i64,
    own: &[OwnPost],
    sync: Sync,
    me: Label,
    tolerance_us: i64,
    guard_us: i64,
    peer_spans: &[Span],
) -> RoundOutcome {
    let tol = tolerance_us.max(0).unsigned_abs();
    let spans = match own_spans(board, t_start_us, t_end_us, own, sync, tolerance_us) {
        Ok(spans) => spans,
        Err(unmatched) => return RoundOutcome::Desync { unmatched: count(unmatched), total: count(own.len()) },
    };
    let inside = |t: i64| spans.iter().chain(peer_spans).any(|s| s[0] <= t && t <= s[1]);
    let (kept, dropped): (Vec<usize>, Vec<usize>) =
        sift(board, t_start_us, t_end_us, tolerance_us, guard_us).into_iter().partition(|&k| !inside(board[k].t_us));

    let mut predicted: Vec<i64> = own.iter().map(|p| predicted_us(p, sync)).collect();
    predicted.sort_unstable();
    // Two kept entries exactly g apart with my prediction halfway: both would look mine, and
    // one is not. Rare (an exact µs coincidence), but it must cost a desync, not a wrong bit.
    let mut kept_times: Vec<i64> = kept.iter().map(|&k| board[k].t_us).collect();
    kept_times.sort_unstable();
    let ambiguous = predicted
        .iter()
        .filter(|&&p| {
            let from = kept_times.partition_point(|&t| t < p && t.abs_diff(p) > tol);
            kept_times[from..].iter().take_while(|&&t| t.abs_diff(p) <= tol).count() > 1
        })
        .count();
    if ambiguous > 0 {
        return RoundOutcome::Desync { unmatched: count(ambiguous), total: count(own.len()) };
    }
    let other = if me == Label::A { Label::B } else { Label::A };
    let mut view = RoundView { spans, dropped: dropped.iter().map(|&k| board[k].i).collect(), ..RoundView::default() };
    for k in kept {
        let entry = &board[k];
        let mine = any_within(&predicted, entry.t_us, tol);
        let poster = if mine { me } else { other };
        view.kept.push(entry.i);
        view.mine.push(mine);
        view.bits.push(entry.label != poster);
        view.a += u32::from(poster == Label::A);
    }
    view.n = count(view.kept.len());
    RoundOutcome::Ok(view)
}

/// A post's entry is *sure* within `τ × SURE.0 / SURE.1` of its prediction. Between that and
/// τ it is *doubtful*: a post's own entry is rarely that far (τ is chosen to cover its
/// poster's delay with room to spare), while another entry with its label that only happens
/// to be near is as likely there as anywhere within τ. A doubtful post gets a span, as an
/// unmatched one does (docs/protocol.md §5.3).
pub const SURE: (i64, i64) = (3, 5);

/// Per own post, `own` being in send order: *matched*, i.e. given an entry with its label
/// whose time is sure (within [`SURE`] of τ of its prediction), not before the entry given
/// to the poster's previous matched post, and not given to another of its posts (a poster's
/// entries are on the board in its send order, one per post). Each post takes the nearest
/// such entry within τ, and is matched if that one is sure. (`sgp pair --testing-hold-post`
/// asks it of its held posts too.)
pub fn matched_in_send_order(board: &[Entry], own: &[OwnPost], sync: Sync, tolerance_us: i64) -> Vec<bool> {
    let tol = tolerance_us.max(0).unsigned_abs();
    let sure = tol * SURE.0.unsigned_abs() / SURE.1.unsigned_abs();
    let by_label = |label: Label| {
        let mut t: Vec<(i64, usize)> = board.iter().enumerate().filter(|(_, e)| e.label == label).map(|(k, e)| (e.t_us, k)).collect();
        t.sort_unstable();
        t
    };
    let (times_a, times_b) = (by_label(Label::A), by_label(Label::B));
    let mut used = vec![false; board.len()];
    let mut last = i64::MIN;
    own.iter()
        .map(|p| {
            let times = if p.label == Label::A { &times_a } else { &times_b };
            let x = predicted_us(p, sync);
            let from = times.partition_point(|&(t, _)| t < x && t.abs_diff(x) > tol);
            let best = times[from..]
                .iter()
                .take_while(|&&(t, _)| t <= x || t.abs_diff(x) <= tol)
                .filter(|&&(t, k)| t >= last && !used[k])
                .min_by_key(|&&(t, k)| (t.abs_diff(x), k));
            match best {
                Some(&(t, k)) if t.abs_diff(x) <= sure => {
                    used[k] = true;
                    last = t;
                    true
                }
                _ => false,
            }
        })
        .collect()
}

/// My spans for a round (step 1 of [`derive_round`]): empty if every post matched, or
/// `Err(unmatched)` if more than one in [`UNMATCHED_SHARE`] did not.
///
/// Why a span holds the late entry: the server reads each connection's frames in order and
/// stamps them as read, so my posts' entries are in my send order on the board. The entry of
/// an unmatched post lies after the entry of my previous post and before that of my next, and
/// a matched post's entry is within τ of its prediction.
pub fn own_spans(
    board: &[Entry],
    t_start_us: i64,
    t_end_us: i64,
    own: &[OwnPost],
    sync: Sync,
    tolerance_us: i64,
) -> Result<Vec<Span>, usize> {
    let tol = tolerance_us.max(0);
    let mut posts: Vec<OwnPost> = own.to_vec();
    posts.sort_by_key(|p| p.sent_us);
    let ok = matched_in_send_order(board, &posts, sync, tol);
    let unmatched = ok.iter().filter(|m| !**m).count();
    if unmatched == 0 {
        return Ok(Vec::new());
    }
    if unmatched * UNMATCHED_SHARE > posts.len() {
        return Err(unmatched);
    }
    let mut spans: Vec<Span> = Vec::new();
    let mut k = 0;
    while k < posts.len() {
        if ok[k] {
            k += 1;
            continue;
        }
        let first = k;
        while k < posts.len() && !ok[k] {
            k += 1;
        }
        let prev = first.checked_sub(1).map(|j| predicted_us(&posts[j], sync));
        let from = span_from(predicted_us(&posts[first], sync), prev, tol, t_start_us);
        let to = match posts.get(k) {
            Some(p) => predicted_us(p, sync).saturating_add(tol).min(t_end_us),
            None => t_end_us,
        };
        let (from, to) = (from.min(to), to.max(from));
        match spans.last_mut() {
            Some(last) if from <= last[1] => last[1] = last[1].max(to),
            _ => spans.push([from, to]),
        }
    }
    Ok(spans)
}

/// The spans a poster's *skipped* posts cost (the late rule, docs/protocol.md §5.3): a poster
/// held up past a post's limit skips it, and the other poster's posts alone fill that
/// stretch, so the stretch is left out. `skipped_us` are the skipped posts' planned send
/// times (local µs, as `sent_us`). Placed among the sent posts by time (a sent post first at
/// a tie), each run of skipped posts gets a span as a run of unmatched posts does: from the
/// first skipped post's would-be prediction − 2τ (not before the previous sent post's − τ, or
/// `t_start`) to the next sent one's + τ (or `t_end`), inside the window; overlapping spans
/// merge. Before its first skipped post the poster kept its schedule, so the stretch only the
/// other poster fills starts there.
pub fn skip_spans(own: &[OwnPost], skipped_us: &[i64], sync: Sync, tolerance_us: i64, t_start_us: i64, t_end_us: i64) -> Vec<Span> {
    let tol = tolerance_us.max(0);
    // (time, skipped?, prediction): sent before skipped at the same time.
    let mut all: Vec<(i64, bool, i64)> = own.iter().map(|p| (p.sent_us, false, predicted_us(p, sync))).collect();
    // A skipped post's would-be prediction (the label plays no part in it).
    all.extend(skipped_us.iter().map(|&t| (t, true, predicted_us(&OwnPost { sent_us: t, label: Label::A }, sync))));
    all.sort_unstable();
    let mut spans: Vec<Span> = Vec::new();
    let mut k = 0;
    while k < all.len() {
        if !all[k].1 {
            k += 1;
            continue;
        }
        let first = k;
        while k < all.len() && all[k].1 {
            k += 1;
        }
        let from = span_from(all[first].2, first.checked_sub(1).map(|j| all[j].2), tol, t_start_us);
        let to = all.get(k).map_or(t_end_us, |x| x.2.saturating_add(tol).min(t_end_us));
        spans.push([from.min(to), to.max(from)]);
    }
    merge_spans(spans)
}

/// Spans sorted by start, overlapping ones merged.
pub fn merge_spans(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_unstable();
    let mut out: Vec<Span> = Vec::new();
    for [from, to] in spans {
        match out.last_mut() {
            Some(last) if from <= last[1] => last[1] = last[1].max(to),
            _ => out.push([from, to]),
        }
    }
    out
}

/// [`derive_round`] for a poster that skipped posts: their [`skip_spans`] are left out with
/// its own spans, and announced with them (`spans` of the view).
#[allow(clippy::too_many_arguments)]
pub fn derive_with_skips(
    board: &[Entry],
    (t_start_us, t_end_us): (i64, i64),
    own: &[OwnPost],
    skipped_us: &[i64],
    sync: Sync,
    me: Label,
    (tolerance_us, guard_us): (i64, i64),
    peer_spans: &[Span],
) -> RoundOutcome {
    let skips = skip_spans(own, skipped_us, sync, tolerance_us, t_start_us, t_end_us);
    let left_out: Vec<Span> = peer_spans.iter().chain(&skips).copied().collect();
    let mut out = derive_round(board, t_start_us, t_end_us, own, sync, me, tolerance_us, guard_us, &left_out);
    if let RoundOutcome::Ok(view) = &mut out {
        if !skips.is_empty() {
            view.spans = merge_spans(view.spans.iter().chain(&skips).copied().collect());
        }
    }
    out
}

/// For each own post, `t − predicted` of the nearest board entry with the post's label (or
/// `None` if the board has none). A poster's private measure of its timing: the median of
/// these corrects the bias of its clock sync for the next round.
pub fn arrival_errors(board: &[Entry], own: &[OwnPost], sync: Sync) -> Vec<Option<i64>> {
    let mut times: [Vec<i64>; 2] = [Vec::new(), Vec::new()];
    for e in board {
        times[usize::from(e.label == Label::B)].push(e.t_us);
    }
    times.iter_mut().for_each(|t| t.sort_unstable());
    own.iter()
        .map(|p| {
            let t = &times[usize::from(p.label == Label::B)];
            let x = predicted_us(p, sync);
            let k = t.partition_point(|&v| v < x);
            [k.checked_sub(1), Some(k)]
                .into_iter()
                .flatten()
                .filter_map(|j| t.get(j))
                .map(|&v| v - x)
                .min_by_key(|d| d.unsigned_abs())
        })
        .collect()
}

/// Whether some `t` in the ascending `sorted` has `|t − x| ≤ tol`.
fn any_within(sorted: &[i64], x: i64, tol: u64) -> bool {
    let first = sorted.partition_point(|&t| t < x && t.abs_diff(x) > tol);
    sorted.get(first).is_some_and(|&t| t.abs_diff(x) <= tol)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `floor(log2(∏ C(n_r, a_r)))` over the rounds, exactly. 0 for no rounds or a product of 1.
/// A round with `a > n` (never produced by [`derive_round`]) counts as 1: it earns nothing.
pub fn log2_binomial_floor(rounds: &[(u32, u32)]) -> u32 {
    let mut product = Nat::one();
    for &(n, a) in rounds {
        let k = a.min(n.saturating_sub(a));
        // ∏_{i=1..j} (n−k+i)/i = C(n−k+j, j) is a whole number at every j, so the running
        // product stays whole however the factors are grouped; grouping them while they fit
        // in 32 bits halves the passes over the number for n < 2¹⁶.
        let (mut num, mut den) = (1u64, 1u64);
        for i in 1..=u64::from(k) {
            let x = u64::from(n - k) + i;
            if num * x > u64::from(u32::MAX) || den * i > u64::from(u32::MAX) {
                product.mul_div(num, den);
                (num, den) = (1, 1);
            }
            num *= x;
            den *= i;
        }
        product.mul_div(num, den);
    }
    product.log2_floor()
}

/// A natural number ≥ 1 as little-endian base-2³² limbs: just what exact binomials need.
struct Nat(Vec<u32>);

impl Nat {
    fn one() -> Nat {
        Nat(vec![1])
    }

    /// `self = self · num / den`, for `num, den < 2³²` with the quotient known to be whole.
    fn mul_div(&mut self, num: u64, den: u64) {
        let mut carry = 0u64;
        for limb in &mut self.0 {
            let x = u64::from(*limb) * num + carry;
            *limb = x as u32;
            carry = x >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
        let mut rem = 0u64;
        for limb in self.0.iter_mut().rev() {
            let x = (rem << 32) | u64::from(*limb);
            *limb = (x / den) as u32;
            rem = x % den;
        }
        debug_assert_eq!(rem, 0, "inexact division");
        while self.0.len() > 1 && self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    fn log2_floor(&self) -> u32 {
        let top = self.0.last().copied().unwrap_or(1);
        count(self.0.len() - 1) * 32 + (31 - top.leading_zeros())
    }
}

/// The strength ledger of docs/protocol.md §5.5: what the key is worth and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ledger {
    /// Kept entries over all rounds.
    pub n: u32,
    /// Of which posted by alice.
    pub a: u32,
    /// `floor(log2 ∏ C(n_r, a_r))`: what Eve, knowing each round's `a_r`, does not know.
    pub log2_binom: u32,
    /// Bits the confirmation tag gives away.
    pub tag_bits: u32,
    /// Bits paid for privacy amplification.
    pub margin_bits: u32,
    /// `log2_binom − tag_bits − margin_bits`, never below 0.
    pub strength: u32,
}

/// The ledger of a session from its rounds' `(n, a)`.
pub fn ledger(rounds: &[(u32, u32)], tag_bits: u32) -> Ledger {
    let log2_binom = log2_binomial_floor(rounds);
    Ledger {
        n: rounds.iter().fold(0, |s, r| s.saturating_add(r.0)),
        a: rounds.iter().fold(0, |s, r| s.saturating_add(r.1)),
        log2_binom,
        tag_bits,
        margin_bits: MARGIN_BITS,
        strength: log2_binom.saturating_sub(tag_bits).saturating_sub(MARGIN_BITS),
    }
}

/// `K = SHA-256("sgp/1 key" ‖ room ‖ session ‖ n as u32 BE ‖ bits packed MSB-first)`, where
/// `room` is the code's UTF-8 bytes as given, `session` the 16 bytes of its 32-hex-digit wire
/// form (either case), and `n = bits.len()`.
pub fn key(room: &str, session_hex: &str, bits: &[bool]) -> Result<[u8; 32], String> {
    let session = session_bytes(session_hex)?;
    let n = u32::try_from(bits.len()).map_err(|_| format!("{} bits is too many", bits.len()))?;
    let digest = Sha256::new()
        .chain_update(b"sgp/1 key")
        .chain_update(room.as_bytes())
        .chain_update(session)
        .chain_update(n.to_be_bytes())
        .chain_update(pack_bits(bits))
        .finalize();
    Ok(digest.into())
}

/// The first `tag_bits` (a multiple of 8, at most 256) of `SHA-256("sgp/1 confirm" ‖ K)`, in hex.
pub fn tag(key: &[u8; 32], tag_bits: u32) -> String {
    let digest = Sha256::new().chain_update(b"sgp/1 confirm").chain_update(key).finalize();
    hex(&digest[..(tag_bits as usize / 8).min(32)])
}

/// Bits packed MSB-first, the last byte padded with zeros.
pub fn pack_bits(bits: &[bool]) -> Vec<u8> {
    bits.chunks(8)
        .map(|byte| {
            byte.iter().enumerate().fold(0u8, |b, (j, &bit)| b | (u8::from(bit) << (7 - j)))
        })
        .collect()
}

fn session_bytes(session_hex: &str) -> Result<[u8; 16], String> {
    let digits = session_hex.as_bytes();
    let bad = || {
        format!(
            "session must be 32 hex digits, got {:?}",
            session_hex.chars().take(40).collect::<String>()
        )
    };
    if digits.len() != 32 {
        return Err(bad());
    }
    let mut out = [0u8; 16];
    for (byte, pair) in out.iter_mut().zip(digits.chunks(2)) {
        let nibble = |c: u8| char::from(c).to_digit(16).ok_or_else(bad);
        *byte = ((nibble(pair[0])? << 4) | nibble(pair[1])?) as u8;
    }
    Ok(out)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `"0110…"`.
pub fn bits_string(bits: &[bool]) -> String {
    bits.iter().map(|&b| if b { '1' } else { '0' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Label::{A, B};

    /// The same cases as client/test/secret.test.mjs ("skipped posts cost spans").
    #[test]
    fn skipped_posts_cost_spans_between_their_sent_neighbours() {
        let sync = Sync { offset_us: 100, delay_us: 40 }; // prediction = sent + 120
        let own: Vec<OwnPost> = [1_000, 2_000, 3_000, 5_000, 6_000].iter().map(|&t| OwnPost { sent_us: t, label: A }).collect();
        assert_eq!(skip_spans(&own, &[], sync, 50, 0, 10_000), Vec::<Span>::new());
        // From the skipped post's would-be prediction (4_120) − 2τ to the next sent one's + τ.
        assert_eq!(skip_spans(&own, &[4_000], sync, 50, 0, 10_000), vec![[4_020, 5_170]]);
        // After the last sent post: to t_end; a tie with a sent post counts the sent one first,
        // and the span then starts at that post's prediction − τ (later than the skipped
        // one's − 2τ); a run of skipped posts is one span.
        assert_eq!(
            skip_spans(&own, &[500, 2_000, 4_000, 7_000, 8_000], sync, 50, 0, 10_000),
            vec![[520, 1_170], [2_070, 3_170], [4_020, 5_170], [7_020, 10_000]]
        );
        assert_eq!(skip_spans(&[], &[4_000], sync, 50, 0, 10_000), vec![[4_020, 10_000]]);
        // Overlapping spans merge; never before t_start.
        assert_eq!(skip_spans(&own, &[3_010, 3_900], sync, 500, 0, 10_000), vec![[2_620, 5_620]]);
        assert_eq!(skip_spans(&own, &[10], sync, 500, 0, 10_000), vec![[0, 1_620]]);
        assert_eq!(merge_spans(vec![[5, 9], [1, 3], [2, 4], [9, 12]]), vec![[1, 4], [5, 12]]);
    }

    const T0: i64 = 1_764_000_000_000_000;

    fn entries(list: &[(i64, Label)]) -> Vec<Entry> {
        list.iter()
            .enumerate()
            .map(|(i, &(t, label))| Entry { i: i as u32, t_us: T0 + t, label })
            .collect()
    }

    fn comb_u128(n: u32, k: u32) -> u128 {
        (1..=u128::from(k)).fold(1, |c, i| c * (u128::from(n - k) + i) / i)
    }

    #[test]
    fn a_prediction_halfway_between_two_entries_is_doubtful_and_its_span_holds_both() {
        // τ = 100 (sure within 60): entries at 10_000 and 10_200 are exactly g apart, both
        // kept; my post predicted at 10_100 is τ from both: doubtful, so it gets a span from its
        // prediction − 2τ to my next post's + τ: neither entry counts, nor my next post's entry
        // at the span's end; my previous post's (5_000) does.
        let board = entries(&[(2_000, B), (5_000, B), (10_000, A), (10_200, B), (15_000, B)]);
        let own = |t: i64| [2_000, 5_000, t, 15_000].map(|x| OwnPost { sent_us: T0 + x, label: B });
        let RoundOutcome::Ok(v) = derive_round(&board, T0, T0 + 20_000, &own(10_100), Sync::default(), B, 100, 0, &[]) else {
            panic!("desync")
        };
        assert_eq!((v.spans, v.dropped, v.n), (vec![[T0 + 9_900, T0 + 15_100]], vec![2, 3, 4], 2));
        // Predicted 40 µs from 10_200: sure, and 160 µs from 10_000: no ambiguity either.
        let RoundOutcome::Ok(v) = derive_round(&board, T0, T0 + 20_000, &own(10_160), Sync::default(), B, 100, 0, &[]) else {
            panic!("desync")
        };
        assert_eq!((v.spans.len(), v.n, v.mine.iter().filter(|m| **m).count()), (0, 5, 4));
        // Alone, a doubtful post is one in one: out of sync.
        let alone = [OwnPost { sent_us: T0 + 10_100, label: B }];
        assert_eq!(derive_round(&board, T0, T0 + 20_000, &alone, Sync::default(), B, 100, 0, &[]), RoundOutcome::Desync { unmatched: 1, total: 1 });
    }

    #[test]
    fn each_post_takes_its_own_entry_in_send_order() {
        // τ = 100. Posts at 3_000 and 3_050 (A) with one A entry between them: the first takes
        // it, the second finds none of its own and is unmatched. A post whose only entry lies
        // before the entry its previous post took is unmatched too (the board keeps a
        // poster's order).
        let posts = |ts: &[i64]| ts.iter().map(|&t| OwnPost { sent_us: T0 + t, label: A }).collect::<Vec<_>>();
        let board = entries(&[(1_000, A), (3_020, A), (6_000, A), (9_000, A)]);
        let spans = |ts: &[i64]| own_spans(&board, T0, T0 + 10_000, &posts(ts), Sync::default(), 100).ok();
        assert_eq!(spans(&[1_000, 3_000, 3_050, 6_000, 9_000]), Some(vec![[T0 + 2_900, T0 + 6_100]]));
        assert_eq!(spans(&[1_000, 3_000, 6_000, 9_000]), Some(vec![]));
        let board = entries(&[(1_000, A), (2_990, A), (3_040, A), (6_000, A), (9_000, A)]);
        // Sent at 3_000 then 3_030: 3_000 takes 2_990 (nearest), 3_030 takes 3_040.
        let own = posts(&[1_000, 3_000, 3_030, 6_000, 9_000]);
        assert_eq!(own_spans(&board, T0, T0 + 10_000, &own, Sync::default(), 100).ok(), Some(vec![]));
        // Doubtful: 70 µs off with τ = 100 (sure within 60).
        let board = entries(&[(1_000, A), (3_070, A), (6_000, A), (9_000, A)]);
        assert_eq!(own_spans(&board, T0, T0 + 10_000, &posts(&[1_000, 3_000, 6_000, 9_000]), Sync::default(), 100).ok(), Some(vec![[T0 + 2_800, T0 + 6_100]]));
    }

    /// τ = 100, no sync error: posts at 1 000, 2 000, … 8 000 µs (A), one of them late.
    fn late_board(late: &[usize], by: i64) -> (Vec<Entry>, Vec<OwnPost>) {
        let own: Vec<OwnPost> = (1..=8).map(|k| OwnPost { sent_us: T0 + 1_000 * k, label: A }).collect();
        let mut times: Vec<(i64, Label)> = (1..=8usize)
            .map(|k| (1_000 * k as i64 + if late.contains(&k) { by } else { 0 }, A))
            .chain([(1_500, B), (4_400, B), (6_500, B)])
            .collect();
        times.sort_by_key(|t| t.0);
        (entries(&times), own)
    }

    #[test]
    fn a_late_post_costs_a_span_not_the_round() {
        // Post 4 (predicted 4 000) lands at 4 700: unmatched. Its span runs from its own
        // prediction − 2τ to post 5's + τ, and holds the late entry and bob's at 4 400.
        let (board, own) = late_board(&[4], 700);
        let RoundOutcome::Ok(v) = derive_round(&board, T0, T0 + 10_000, &own, Sync::default(), A, 100, 0, &[]) else {
            panic!("desync")
        };
        assert_eq!(v.spans, vec![[T0 + 3_800, T0 + 5_100]]);
        let t = |i: u32| board.iter().find(|e| e.i == i).unwrap().t_us - T0;
        let dropped: Vec<i64> = v.dropped.iter().map(|&i| t(i)).collect();
        assert_eq!(dropped, vec![4_400, 4_700, 5_000]);
        let kept: Vec<i64> = v.kept.iter().map(|&i| t(i)).collect();
        assert_eq!(kept, vec![1_000, 1_500, 2_000, 3_000, 6_000, 6_500, 7_000, 8_000]);
        assert_eq!(v.mine, vec![true, false, true, true, true, false, true, true]);
        assert_eq!((v.n, v.a), (8, 6));
        // Bob, told of the span, leaves out the same entries and sees the same split.
        let bob = [1_500, 4_400, 6_500].map(|t| OwnPost { sent_us: T0 + t, label: B });
        let RoundOutcome::Ok(vb) = derive_round(&board, T0, T0 + 10_000, &bob, Sync::default(), B, 100, 0, &v.spans) else {
            panic!("desync")
        };
        assert!(vb.spans.is_empty());
        assert_eq!((&vb.kept, &vb.dropped, &vb.bits, vb.a), (&v.kept, &v.dropped, &v.bits, v.a));
        assert!(vb.mine.iter().zip(&v.mine).all(|(x, y)| x != y));
        // Without the span, bob would count the late entry as his peer's and keep his own at 4 400.
        let RoundOutcome::Ok(alone) = derive_round(&board, T0, T0 + 10_000, &bob, Sync::default(), B, 100, 0, &[]) else {
            panic!("desync")
        };
        assert_eq!(alone.n, 11);
    }

    #[test]
    fn spans_reach_the_window_edges_and_merge() {
        let spans = |late: &[usize], tol: i64| {
            let (board, own) = late_board(late, 700);
            own_spans(&board, T0, T0 + 10_000, &own, Sync::default(), tol).ok()
        };
        let window = |late: &[usize]| spans(late, 100);
        // The first post late: from its prediction − 2τ (no earlier post). The last: to t_end.
        assert_eq!(window(&[1]), Some(vec![[T0 + 800, T0 + 2_100]]));
        assert_eq!(window(&[8]), Some(vec![[T0 + 7_800, T0 + 10_000]]));
        // Two late posts one matched post apart: two spans; at τ = 400 they overlap and merge.
        assert_eq!(window(&[3, 5]), Some(vec![[T0 + 2_800, T0 + 4_100], [T0 + 4_800, T0 + 6_100]]));
        assert_eq!(spans(&[3, 5], 400), Some(vec![[T0 + 2_200, T0 + 6_400]]));
        // Two in a row: one span.
        assert_eq!(window(&[3, 4]), Some(vec![[T0 + 2_800, T0 + 5_100]]));
        assert_eq!(window(&[2, 6]), Some(vec![[T0 + 1_800, T0 + 3_100], [T0 + 5_800, T0 + 7_100]]));
        // Never before t_start (the previous post's prediction − τ bounds it too: the skipped
        // posts' test above, at a tie).
        assert_eq!(spans(&[1], 600), Some(vec![[T0, T0 + 2_600]]));
        assert_eq!(spans(&[2], 600), Some(vec![[T0 + 800, T0 + 3_600]]));
        assert_eq!(window(&[]), Some(vec![]));
        // Three of eight unmatched is more than one in four: out of sync.
        assert_eq!(window(&[2, 4, 6]), None);
        let (board, own) = late_board(&[2, 4, 6], 700);
        assert_eq!(
            derive_round(&board, T0, T0 + 10_000, &own, Sync::default(), A, 100, 0, &[]),
            RoundOutcome::Desync { unmatched: 3, total: 8 }
        );
    }

    #[test]
    fn both_posters_agree_whatever_posts_are_late() {
        // Random rounds: two Poisson posters, each post late (0.3–3 ms) with chance 1/40. Either
        // both views agree on every counted entry, or a poster is out of sync; and every late
        // entry is left out by the spans.
        let mut rng = fastrand::Rng::with_seed(7);
        let (tol, rounds) = (250i64, 400);
        let (mut spanned, mut agreed, mut blind) = (0, 0, 0);
        for _ in 0..rounds {
            let mut board_t: Vec<(i64, Label, bool)> = Vec::new(); // (time, label, late)
            let mut posts: [Vec<OwnPost>; 2] = [Vec::new(), Vec::new()];
            for (who, mine) in posts.iter_mut().enumerate() {
                let mut t = 0i64;
                let mut last = 0i64;
                loop {
                    t += (-(rng.f64().max(1e-12)).ln() * 8.0 * tol as f64) as i64 + 1;
                    if t > 80_000 {
                        break;
                    }
                    let label = if rng.bool() { A } else { B };
                    let late = rng.u32(0..40) == 0;
                    let jitter = rng.i64(-tol / 2..=tol / 2);
                    // Per-connection order: never before this poster's previous entry.
                    let at = (t + if late { rng.i64(300..3_000) } else { jitter }).max(last);
                    last = at;
                    mine.push(OwnPost { sent_us: T0 + t, label });
                    board_t.push((at, label, (at - t).abs() > tol));
                    let _ = who;
                }
            }
            // Entry k is post k's (alice's posts first, then bob's).
            let falsely_matched = posts.iter().flatten().enumerate().any(|(k, p)| {
                let t = p.sent_us - T0;
                board_t[k].2 && board_t.iter().enumerate().any(|(j, e)| j != k && e.1 == p.label && (e.0 - t).abs() <= tol)
            });
            let mut order: Vec<usize> = (0..board_t.len()).collect();
            order.sort_by_key(|&k| board_t[k].0);
            let board: Vec<Entry> = order.iter().enumerate().map(|(i, &k)| Entry { i: i as u32, t_us: T0 + board_t[k].0, label: board_t[k].1 }).collect();
            let late_t: Vec<i64> = order.iter().filter(|&&k| board_t[k].2).map(|&k| T0 + board_t[k].0).collect();
            let d = |k: usize, peer: &[Span]| derive_round(&board, T0, T0 + 80_000, &posts[k], Sync::default(), [A, B][k], tol, 2_000, peer);
            let (RoundOutcome::Ok(a0), RoundOutcome::Ok(b0)) = (d(0, &[]), d(1, &[])) else { continue };
            let (RoundOutcome::Ok(a), RoundOutcome::Ok(b)) = (d(0, &b0.spans), d(1, &a0.spans)) else {
                panic!("a peer's spans made a view out of sync")
            };
            assert_eq!((&a.spans, &b.spans), (&a0.spans, &b0.spans));
            // A late post with another same-label entry within τ of its prediction "matches"
            // it: neither poster can see that (docs/protocol.md §5.3 has the same blind spot), and the
            // confirmation catches the split. Counted, not checked.
            if falsely_matched {
                blind += 1;
                continue;
            }
            assert_eq!((&a.kept, &a.bits, a.a), (&b.kept, &b.bits, b.a));
            assert!(a.mine.iter().zip(&b.mine).all(|(x, y)| x != y));
            let counted: Vec<i64> = a.kept.iter().map(|&i| board[i as usize].t_us).collect();
            assert!(late_t.iter().all(|t| !counted.contains(t)), "a late entry was counted");
            spanned += usize::from(!a.spans.is_empty() || !b.spans.is_empty());
            agreed += 1;
        }
        // Most rounds have a late post, and most are checked (this one has 262 of 400 checked,
        // 233 with spans, 136 blind).
        assert!(agreed > rounds / 2 && spanned > rounds / 3, "{agreed} agreed, {spanned} with spans, {blind} blind");
    }

    #[test]
    fn arrival_errors_use_the_nearest_entry_with_the_label() {
        let board = entries(&[(1_000, A), (1_040, B), (2_000, A)]);
        let own = [
            OwnPost { sent_us: T0 + 990, label: A },
            OwnPost { sent_us: T0 + 1_050, label: B },
            OwnPost { sent_us: T0 + 1_600, label: A },
        ];
        let e = arrival_errors(&board, &own, Sync { offset_us: 0, delay_us: 10 });
        assert_eq!(e, vec![Some(5), Some(-15), Some(395)]);
        assert_eq!(arrival_errors(&[], &own[..1], Sync::default()), vec![None]);
    }

    #[test]
    fn prediction_floors_half_the_delay() {
        let post = OwnPost { sent_us: 1000, label: A };
        assert_eq!(predicted_us(&post, Sync { offset_us: -7, delay_us: 5 }), 1000 - 7 + 2);
        assert_eq!(predicted_us(&post, Sync { offset_us: 0, delay_us: -3 }), 1000 - 2);
    }

    #[test]
    fn sift_keeps_exactly_g_and_ignores_board_order() {
        // τ = 250, g = 500, G = 1000, window [0, 10 000].
        let board = entries(&[
            (5000, A),
            (2000, B),
            (2500, A),
            (7000, B),
            (7499, A),
            (999, B),
            (9000, A),
            (9000, B),
        ]);
        assert_eq!(sift(&board, T0, T0 + 10_000, 250, 1000), vec![0, 1, 2]);
        assert!(sift(&[], T0, T0 + 10_000, 250, 1000).is_empty());
    }

    #[test]
    fn rounds_recognise_and_check_labels() {
        let board = entries(&[(2000, A), (3000, B), (4000, B)]);
        let own =
            [OwnPost { sent_us: T0 + 2100, label: A }, OwnPost { sent_us: T0 + 3950, label: B }];
        let sync = Sync { offset_us: -200, delay_us: 201 };
        let RoundOutcome::Ok(v) = derive_round(&board, T0, T0 + 10_000, &own, sync, A, 250, 1000, &[])
        else {
            panic!("desync")
        };
        assert_eq!((v.kept, v.mine, v.n, v.a), (vec![0, 1, 2], vec![true, false, true], 3, 2));
        assert_eq!(bits_string(&v.bits), "001");
        // The same post with label A has only a B entry nearby.
        let own = [OwnPost { sent_us: T0 + 3900, label: A }];
        assert_eq!(
            derive_round(&board, T0, T0 + 10_000, &own, sync, A, 250, 1000, &[]),
            RoundOutcome::Desync { unmatched: 1, total: 1 }
        );
    }

    #[test]
    fn binomials_are_exact() {
        assert_eq!(log2_binomial_floor(&[]), 0);
        assert_eq!(log2_binomial_floor(&[(4, 2)]), 2);
        assert_eq!(log2_binomial_floor(&[(10, 5)]), 7);
        assert_eq!(log2_binomial_floor(&[(0, 0), (7, 0), (7, 7), (1, 1)]), 0);
        assert_eq!(log2_binomial_floor(&[(64, 32)]), 127 - comb_u128(64, 32).leading_zeros());
        assert_eq!(log2_binomial_floor(&[(1000, 500)]), 994);
        assert_eq!(log2_binomial_floor(&[(50_000, 25_000)]), 49_991);
        // Of the product, not the sum of floors: 6 · 252 = 1512 → 10, not 2 + 7.
        assert_eq!(log2_binomial_floor(&[(4, 2), (10, 5)]), 10);
        assert_eq!(log2_binomial_floor(&[(1000, 500), (999, 1), (64, 32)]), 1065);
        assert_eq!(log2_binomial_floor(&[(3, 5)]), 0);
        for n in 0..=100 {
            for k in 0..=n {
                let c = comb_u128(n, k);
                assert_eq!(log2_binomial_floor(&[(n, k)]), 127 - c.leading_zeros(), "C({n},{k})");
            }
        }
    }

    #[test]
    fn ledger_never_goes_below_zero() {
        let l = ledger(&[(4, 2), (10, 5)], 32);
        assert_eq!(
            (l.n, l.a, l.log2_binom, l.tag_bits, l.margin_bits, l.strength),
            (14, 7, 10, 32, 64, 0)
        );
        let l = ledger(&[(1000, 500)], 32);
        assert_eq!(l.strength, 994 - 32 - 64);
        assert_eq!(ledger(&[], 32).strength, 0);
        // docs/protocol.md §5.5: "a 256-bit key needs at least 357 kept entries".
        assert_eq!(ledger(&[(357, 178)], 32).strength, 256);
        assert_eq!(ledger(&[(356, 178)], 32).strength, 255);
    }

    #[test]
    fn bits_pack_msb_first() {
        let bits: Vec<bool> = "101100111".chars().map(|c| c == '1').collect();
        assert_eq!(pack_bits(&bits), vec![0xb3, 0x80]);
        assert_eq!(bits_string(&bits), "101100111");
        assert!(pack_bits(&[]).is_empty());
    }

    #[test]
    fn key_and_tag_match_hashlib() {
        // Computed with Python's hashlib (see tests/gen_vectors.py for the same recipe).
        let bits: Vec<bool> = "101100111".chars().map(|c| c == '1').collect();
        let k = key("K7QM2-9XD4R", "00112233445566778899aabbccddeeff", &bits).unwrap();
        assert_eq!(hex(&k), "89e62bdaa10f5470a6cbeb368db49e6cd83021fc620fbff0e5406da05579c69a");
        assert_eq!(tag(&k, 32), "f0226ccf");
        assert_eq!(tag(&k, 128), "f0226ccfe3c2a586920c06dda7e2ef96");
        assert_eq!(key("K7QM2-9XD4R", "00112233445566778899AABBCCDDEEFF", &bits).unwrap(), k);
        let k0 = key("K7QM2-9XD4R", "00112233445566778899aabbccddeeff", &[]).unwrap();
        assert_eq!(hex(&k0), "d5bcad3e1b9f3fc9767c64dd89b83da25dbc03c4a46f105704fb1e4edd680ba1");
    }

    #[test]
    fn key_refuses_bad_sessions() {
        for bad in [
            "",
            "0011",
            "00112233445566778899aabbccddeeff00",
            "00112233445566778899aabbccddeefg",
            "+0112233445566778899aabbccddeeff",
        ] {
            assert!(key("room", bad, &[true]).is_err(), "{bad:?}");
        }
        // 32 bytes but not 32 ASCII characters.
        assert!(key("room", "é0112233445566778899aabbccddeef", &[]).is_err());
    }
}
