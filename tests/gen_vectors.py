#!/usr/bin/env python3
"""Shared test vectors for the board -> key derivation (docs/protocol.md §5).

    python3 tests/gen_vectors.py           # rewrite the generated vectors, tests/vectors/gen_*.json
    python3 tests/gen_vectors.py --check   # recompute the expectations of every vector, hand-written
                                           # ones included, and report any difference

This is a second, independent implementation of src/secret.rs in plain Python (standard library
only: bisect for the sift and recognition, math.comb for the binomials, hashlib for key and tag).
The generated vectors simulate two Poisson posters (seeded, so the output is deterministic); the
format is described in tests/vectors/README.md.
"""

import bisect
import hashlib
import json
import math
import random
import sys
from pathlib import Path

DIR = Path(__file__).resolve().parent / "vectors"
MARGIN_BITS = 64
T0 = 1_764_000_000_000_000  # 2025-11-24T16:00:00Z in µs


# --- the derivation -------------------------------------------------------------------------


def to_us(ms):
    us = ms * 1000
    assert us == int(us) and us >= 0, f"{ms} ms is not a whole number of µs"
    return int(us)


def predicted(post, sync):
    return post["sent_us"] + sync["offset_us"] + sync["delay_us"] // 2  # floor, like div_euclid


def sift(board, t_start, t_end, tol, guard):
    """i of the kept entries, in board order."""
    g = 2 * tol
    assert g > 0
    times = sorted(e["t_us"] for e in board)
    kept = []
    for e in board:
        t = e["t_us"]
        # entries in the open interval (t - g, t + g), this one included
        close = bisect.bisect_left(times, t + g) - bisect.bisect_right(times, t - g)
        if close == 1 and t_start + guard <= t <= t_end - guard:
            kept.append(e["i"])
    return kept


def within(sorted_times, x, tol):
    k = bisect.bisect_left(sorted_times, x - tol)
    return k < len(sorted_times) and sorted_times[k] <= x + tol


UNMATCHED_SHARE = 4


SURE = (3, 5)
SPAN_BEFORE = 2  # a span starts 2τ before its first post's prediction (not before the previous's − τ)


def matched(rnd, party, tol):
    """Per own post in send order: given an entry with its label, nearest within τ, not
    before the entry of the poster's previous matched post, not given to another of its
    posts; matched if that entry is sure (within τ·3/5)."""
    sync, posts = rnd[party]["sync"], sorted(rnd[party]["posts"], key=lambda p: p["sent_us"])
    sure = tol * SURE[0] // SURE[1]
    used, last, ok = set(), None, []
    for p in posts:
        x = predicted(p, sync)
        cands = [(abs(e["t_us"] - x), k, e["t_us"]) for k, e in enumerate(rnd["board"])
                 if e["label"] == p["label"] and abs(e["t_us"] - x) <= tol and k not in used
                 and (last is None or e["t_us"] >= last)]
        best = min(cands, default=None)
        if best is not None and best[0] <= sure:
            used.add(best[1])
            last = best[2]
            ok.append(True)
        else:
            ok.append(False)
    return posts, ok


def own_spans(rnd, party, tol):
    """The poster's spans ([] if every post matched), or None if out of sync."""
    posts, ok = matched(rnd, party, tol)
    unmatched = ok.count(False)
    if unmatched == 0:
        return []
    if unmatched * UNMATCHED_SHARE > len(posts):
        return None
    sync, spans, k = rnd[party]["sync"], [], 0
    while k < len(posts):
        if ok[k]:
            k += 1
            continue
        first = k
        while k < len(posts) and not ok[k]:
            k += 1
        lo = predicted(posts[first], sync) - SPAN_BEFORE * tol
        if first > 0:
            lo = max(lo, predicted(posts[first - 1], sync) - tol)
        lo = max(lo, rnd["t_start_us"])
        hi = min(predicted(posts[k], sync) + tol, rnd["t_end_us"]) if k < len(posts) else rnd["t_end_us"]
        lo, hi = min(lo, hi), max(lo, hi)
        if spans and lo <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], hi)
        else:
            spans.append([lo, hi])
    return spans


def view(rnd, party, tol, guard, peer_spans):
    """One poster's expectation for one round, as written in the vectors."""
    me = "A" if party == "alice" else "B"
    sync, posts = rnd[party]["sync"], rnd[party]["posts"]
    spans = own_spans(rnd, party, tol)
    if spans is None:
        return {"desync": True, "unmatched": matched(rnd, party, tol)[1].count(False), "total": len(posts)}
    inside = lambda t: any(a <= t <= b for a, b in spans + peer_spans)
    preds = sorted(predicted(p, sync) for p in posts)
    by_i = {e["i"]: e for e in rnd["board"]}
    kept = [i for i in sift(rnd["board"], rnd["t_start_us"], rnd["t_end_us"], tol, guard) if not inside(by_i[i]["t_us"])]
    kept_times = sorted(by_i[i]["t_us"] for i in kept)
    ambiguous = sum(bisect.bisect_right(kept_times, x + tol) - bisect.bisect_left(kept_times, x - tol) > 1 for x in preds)
    if ambiguous:
        return {"desync": True, "unmatched": ambiguous, "total": len(posts)}
    mine, bits, a = [], "", 0
    for i in kept:
        is_mine = within(preds, by_i[i]["t_us"], tol)
        poster = me if is_mine else ("B" if me == "A" else "A")
        if is_mine:
            mine.append(i)
        bits += "0" if by_i[i]["label"] == poster else "1"
        a += poster == "A"
    out = {"desync": False, "mine": mine, "bits": bits, "a": a}
    if spans:
        out = {"desync": False, "spans": spans, **{k: v for k, v in out.items() if k != "desync"}}
    return out


def expectations(vec):
    """(per-round expectations, session expectation) computed from the inputs of `vec`."""
    p = vec["params"]
    tol, guard = to_us(p["tolerance_ms"]), to_us(p["guard_ms"])
    rounds, counts, bits, ok = [], [], "", True
    for rnd in vec["rounds"]:
        exp = {"kept": sift(rnd["board"], rnd["t_start_us"], rnd["t_end_us"], tol, guard)}
        spans = {party: own_spans(rnd, party, tol) or [] for party in ("alice", "bob")}
        union = spans["alice"] + spans["bob"]
        by_i = {e["i"]: e for e in rnd["board"]}
        dropped = [i for i in exp["kept"] if any(a <= by_i[i]["t_us"] <= b for a, b in union)]
        if dropped:
            exp["dropped"] = dropped
        for party, peer in (("alice", "bob"), ("bob", "alice")):
            exp[party] = view(rnd, party, tol, guard, spans[peer])
        rounds.append(exp)
        alice, bob = exp["alice"], exp["bob"]
        if alice["desync"] or bob["desync"]:
            ok = False
            continue
        assert (alice["bits"], alice["a"]) == (bob["bits"], bob["a"]), f"{vec['name']}: the parties disagree"
        counts.append((len(exp["kept"]) - len(exp.get("dropped", [])), alice["a"]))
        bits += alice["bits"]
    if not ok:
        return rounds, None
    product = math.prod(math.comb(n, a) for n, a in counts)
    log2_binom = product.bit_length() - 1
    packed = int(bits.ljust(-(-len(bits) // 8) * 8, "0") or "0", 2).to_bytes(-(-len(bits) // 8), "big")
    key = hashlib.sha256(
        b"sgp/1 key" + vec["room"].encode() + bytes.fromhex(vec["session"]) + len(bits).to_bytes(4, "big") + packed
    ).digest()
    tag = hashlib.sha256(b"sgp/1 confirm" + key).hexdigest()[: p["tag_bits"] // 4]
    return rounds, {
        "n": sum(n for n, _ in counts),
        "a": sum(a for _, a in counts),
        "log2_binom": log2_binom,
        "strength": max(0, log2_binom - p["tag_bits"] - MARGIN_BITS),
        "bits": bits,
        "key": key.hex(),
        "tag": tag,
    }


# --- simulation -----------------------------------------------------------------------------


def simulate(name, description, seed, tolerance_ms, guard_ms, tag_bits, durations_ms, late=0.0):
    """Two Poisson posters at 1/(8τ) each, one round per duration; with `late`, each post
    arrives 3τ to 10τ late with that chance (never before the poster's previous post)."""
    rng = random.Random(seed)
    tol = to_us(tolerance_ms)
    rate_per_us = 1 / (8 * tol)
    alphabet = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
    room = "".join(rng.choice(alphabet) for _ in range(5)) + "-" + "".join(rng.choice(alphabet) for _ in range(5))
    rounds, t_start = [], T0 + rng.randrange(1_000_000)
    for duration_ms in durations_ms:
        t_end = t_start + duration_ms * 1000
        rnd = {"t_start_us": t_start, "t_end_us": t_end, "board": []}
        arrivals = []
        for order, party in enumerate(("alice", "bob")):
            sync = {"offset_us": rng.randrange(-2_000_000, 2_000_000), "delay_us": rng.randrange(200, 3000)}
            shift = sync["offset_us"] + sync["delay_us"] // 2
            posts, s, last = [], t_start + rng.expovariate(rate_per_us), 0
            while s <= t_end:
                sent = round(s) - shift
                # the server's timestamp: predicted arrival + jitter well within τ
                arrival = sent + shift + rng.randint(-tol // 2, tol // 2)
                if late and rng.random() < late:
                    arrival += rng.randint(3 * tol, 10 * tol)
                # a poster's entries are on the board in its send order
                arrival = last = max(arrival, last)
                if t_start <= arrival <= t_end:  # the server refuses posts outside the window
                    label = rng.choice("AB")
                    posts.append({"sent_us": sent, "label": label})
                    arrivals.append((arrival, order, label))
                s += rng.expovariate(rate_per_us)
            rnd[party] = {"sync": sync, "posts": posts}
        rnd["board"] = [{"i": i, "t_us": t, "label": l} for i, (t, _, l) in enumerate(sorted(arrivals))]
        rounds.append(rnd)
        t_start = t_end + 500_000
    return {
        "name": name,
        "description": description,
        "room": room,
        "session": rng.randbytes(16).hex(),
        "params": {"tolerance_ms": tolerance_ms, "guard_ms": guard_ms, "tag_bits": tag_bits},
        "rounds": rounds,
    }


GENERATED = [
    ("gen_poisson_400", "One round of two simulated Poisson posters, τ = 0.25 ms: about 400 kept entries.",
     1, 0.25, 5, 32, [1100]),
    ("gen_poisson_tau2", "One round at τ = 2 ms (g = 4 ms, G = 40 ms) with 64-bit tags: about 380 kept entries.",
     2, 2, 40, 64, [8300]),
    ("gen_poisson_three_rounds", "Three rounds of one session, each with its own clock sync; bits are "
     "concatenated and the binomial is the product over the rounds.", 3, 0.25, 5, 32, [400, 300, 500]),
    ("gen_poisson_large", "A long round with thousands of entries, to check the exact binomial at scale.",
     4, 0.25, 5, 128, [4000]),
    ("gen_poisson_late_posts", "Two rounds where each post arrives 3τ to 10τ late with chance 1/30 (a seed where no late post passes for matched): posters "
     "name spans around their unmatched posts and both leave out the kept entries inside either's.",
     8, 0.5, 10, 32, [300, 300], 1 / 30),
]


# --- files ----------------------------------------------------------------------------------


def dump(v, indent=0):
    """JSON with containers of plain values on one line, and one line per entry or post."""
    flat = lambda x: not isinstance(x, (dict, list)) or (isinstance(x, list) and not any(map(is_box, x)))
    is_box = lambda x: isinstance(x, (dict, list))
    one_line = json.dumps(v, ensure_ascii=False)
    if flat(v) or (isinstance(v, dict) and all(map(flat, v.values())) and len(one_line) <= 100):
        return one_line
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(v, list):
        return "[\n" + ",\n".join(inner + dump(x, indent + 1) for x in v) + "\n" + pad + "]"
    items = (inner + json.dumps(k) + ": " + dump(x, indent + 1) for k, x in v.items())
    return "{\n" + ",\n".join(items) + "\n" + pad + "}"


def with_expectations(vec):
    rounds, total = expectations(vec)
    for rnd, exp in zip(vec["rounds"], rounds):
        rnd["expect"] = exp
    vec["expect"] = total
    return vec


def check():
    files = sorted(DIR.glob("*.json"))
    bad = 0
    for path in files:
        vec = json.loads(path.read_text(encoding="utf-8"))
        want = json.loads(json.dumps(vec))
        try:
            got = with_expectations(vec)
        except AssertionError as e:
            print(f"{path.name}: {e}")
            bad += 1
            continue
        if path.stem != vec["name"]:
            print(f"{path.name}: name is {vec['name']!r}")
            bad += 1
        for k, (w, g) in enumerate(zip(want["rounds"], got["rounds"])):
            if w["expect"] != g["expect"]:
                print(f"{path.name}: round {k}: file says {json.dumps(w['expect'])}\n    computed {json.dumps(g['expect'])}")
                bad += 1
        if want["expect"] != got["expect"]:
            print(f"{path.name}: session: file says {json.dumps(want['expect'])}\n    computed {json.dumps(got['expect'])}")
            bad += 1
    print(f"{len(files)} vectors checked, {bad} differences")
    return 1 if bad or not files else 0


def generate():
    for name, description, seed, tol, guard, tag_bits, durations, *late in GENERATED:
        vec = with_expectations(simulate(name, description, seed, tol, guard, tag_bits, durations, *late))
        (DIR / f"{name}.json").write_text(dump(vec) + "\n", encoding="utf-8")
        e = vec["expect"]
        print(f"{name}: {sum(len(r['board']) for r in vec['rounds'])} entries, n = {e['n']}, "
              f"a = {e['a']}, log2 C = {e['log2_binom']}, strength = {e['strength']}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(check())
    if sys.argv[1:]:
        sys.exit(__doc__)
    sys.exit(generate())
