#!/usr/bin/env python3
"""record_costs.py — where a browser key's rounds lose entries, from the records that
`RECORDS=DIR node client/test/bench-browser.mjs` keeps (DIR/run-N-A.json, run-N-B.json: each
tab's `sgpRecord()` and state). Public facts and the posters' own records only; nothing here
decides anything. Prints, over every round of every run:

- the sift against its ceiling: kept entries / (window / 4τe), the ceiling of a Poisson board at
  the sift's best rate (the guards at both ends, and rounds below that rate, lose here);
- what the spans left (entries kept outside both posters' spans / kept);
- what spoiled rounds cost (their kept entries / all kept);
- rounds whose two views disagree and keys whose tags mismatched (with --sgp, `sgp eve
  --attack` on each run's two records counts the disagreeing rounds);
- the gap from one round's t_end to the next one's t_start, and the time from `closed` to
  each poster's `drop` as the other poster heard it (its `dropped`);
- every post's true arrival error (its entry − its prediction, in τ), the entries given to
  their posters from both records: a poster's entries are in its send order on the board,
  labels agree, and the least total |error| decides. The earliest is what a span's start
  (2τ before its first post's prediction, docs/protocol.md §5.3) must cover. Beside a run of
  coalesced posts (stamped with a later message's time) the board can hold a poster's entries
  a microsecond out of its send order, and the split then goes wrong there: an entry "earlier
  than −2τ" is real only if the rounds whose views disagree show it (on 2026-12-07 the two in
  20 busy keys were such splits, in sessions whose tags matched).

Usage: python3 audit/record_costs.py DIR [--sgp PATH_TO_SGP]
"""
import glob
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile


def sift(board, t0, t1, tau, guard):
    """Positions of the entries the public sift keeps (docs/protocol.md §5.1), as secret.js
    `sift`: the records keep the board, not the sift."""
    order = sorted(range(len(board)), key=lambda k: board[k]["t_us"])
    crowded = [False] * len(board)
    for p, q in zip(order, order[1:]):
        if abs(board[p]["t_us"] - board[q]["t_us"]) < 2 * tau:
            crowded[p] = crowded[q] = True
    return [k for k in range(len(board)) if not crowded[k] and t0 + guard <= board[k]["t_us"] <= t1 - guard]


def inside(t, spans):
    return any(a <= t <= b for a, b in spans)


def predicted(post, sync):
    return post["sent_us"] + sync["offset_us"] + sync["delay_us"] // 2


def owners(board, posts_a, posts_b, sync_a, sync_b, free=(set(), set())):
    """Per board entry (board order), ("A"|"B", post index): a least-cost split of the board
    into the two posters' posts in send order, or None if none fits. The posts in `free` (per
    poster, indices from 0: those the server said came coalesced, whose time is a later
    message's) cost nothing wherever they go."""
    if len(board) != len(posts_a) + len(posts_b):
        return None
    best = [{0: (0, None)}]  # best[i][a]: (cost, a before) after i entries, a of them alice's
    for i, e in enumerate(board):
        step = {}
        for a, (c, _) in best[i].items():
            for who, k, posts, sync, a2 in (("A", a, posts_a, sync_a, a + 1), ("B", i - a, posts_b, sync_b, a)):
                if k < len(posts) and posts[k]["label"] == e["label"]:
                    v = c + (0 if k in free[who == "B"] else abs(e["t_us"] - predicted(posts[k], sync)))
                    if a2 not in step or v < step[a2][0]:
                        step[a2] = (v, a)
        best.append(step)
    if len(posts_a) not in best[-1]:
        return None
    out, a = [], len(posts_a)
    for i in range(len(board), 0, -1):
        before = best[i][a][1]
        out.append(("A", a - 1) if before != a else ("B", i - 1 - a))
        a = before
    return out[::-1]


def true_errors(r, s, errors):
    """Each post's entry − prediction, in units of τ, into `errors` (coalesced posts left out)."""
    board = sorted(r["board"], key=lambda e: e["i"])
    free = tuple({n - 1 for n in rec.get("coalesced") or []} for rec in (r, s))  # numbered from 1
    split = owners(board, r["posts"], s["posts"], r["sync"], s["sync"], free)
    tau = r["params"]["tolerance_us"]
    for (who, k), e in zip(split or [], board):
        rec = r if who == "A" else s
        if k not in free[who == "B"]:
            errors.append((e["t_us"] - predicted(rec["posts"][k], rec["sync"])) / tau)


def run_costs(a_rec, b_rec, tot, gaps, turns, errors):
    b_rounds = {(r["session"], r["round"]): r for r in b_rec["rounds"]}
    prev_end = None
    for r in a_rec["rounds"]:
        p = r["params"]
        tau, guard = p["tolerance_us"], p["guard_us"]
        w = r["t_end_us"] - r["t_start_us"]
        kept = sift(r["board"], r["t_start_us"], r["t_end_us"], tau, guard)
        spans = (r.get("spans") or []) + (r.get("peer_spans") or [])
        out = [k for k in kept if not inside(r["board"][k]["t_us"], spans)]
        other = b_rounds.get((r["session"], r["round"]), {})
        spoiled = r.get("spoiled") or other.get("spoiled")
        tot["rounds"] += 1
        tot["ceiling"] += w / (4 * tau * math.e)
        tot["kept"] += len(kept)
        tot["outside_spans"] += 0 if spoiled else len(out)
        tot["spoiled_kept"] += len(kept) if spoiled else 0
        tot["spoiled"] += 1 if spoiled else 0
        if other:
            true_errors(r, other, errors)
        if prev_end is not None:
            gaps.append((r["t_start_us"] - prev_end) / 1000)
        prev_end = r["t_end_us"]
    for rec in (a_rec, b_rec):
        # From `closed` to the other poster's `dropped` (its drop) as this one heard it.
        heard = rec["messages"]
        for k, m in enumerate(heard):
            if m["msg"].get("type") != "closed":
                continue
            for n in heard[k + 1:]:
                if n["msg"].get("type") in ("dropped", "start", "aborted"):
                    if n["msg"]["type"] == "dropped":
                        turns.append((n["t_us"] - m["t_us"]) / 1000)
                    break
    for m in a_rec["messages"]:
        if m["msg"].get("type") == "confirmed":
            tot["confirmed"] += 1
            tot["mismatched"] += 0 if m["msg"].get("match") else 1


def disagreeing(sgp, a_rec, b_rec):
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for name, rec in (("a", a_rec), ("b", b_rec)):
            path = os.path.join(d, name + ".json")
            with open(path, "w") as f:
                json.dump(rec, f)
            paths.append(path)
        out = subprocess.run([sgp, "eve", "--attack", *paths], capture_output=True, text=True).stdout
    m = re.search(r"(\d+) where the views disagree", out)
    return int(m.group(1)) if m else None


def main():
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        sys.exit(__doc__)
    folder = args[0]
    sgp = args[args.index("--sgp") + 1] if "--sgp" in args else None
    tot = {k: 0 for k in ("rounds", "ceiling", "kept", "outside_spans", "spoiled_kept", "spoiled", "confirmed", "mismatched", "disagree")}
    gaps, turns, errors = [], [], []
    runs = sorted(glob.glob(os.path.join(folder, "run-*-A.json")))
    for fa in runs:
        fb = fa[:-len("A.json")] + "B.json"
        if not os.path.exists(fb):
            continue
        a_rec = json.load(open(fa))["record"]
        b_rec = json.load(open(fb))["record"]
        run_costs(a_rec, b_rec, tot, gaps, turns, errors)
        if sgp:
            tot["disagree"] += disagreeing(sgp, a_rec, b_rec) or 0
    if not tot["rounds"]:
        sys.exit(f"no run-N-A.json / run-N-B.json pairs in {folder}")
    kept = tot["kept"]
    print(f"{len(runs)} runs, {tot['rounds']} rounds")
    print(f"sift / its ceiling (window/4τe): {kept / tot['ceiling']:.3f}")
    print(f"kept outside the spans / kept, in rounds not spoiled: {tot['outside_spans'] / max(1, kept - tot['spoiled_kept']):.3f}")
    print(f"spoiled rounds: {tot['spoiled']} ({tot['spoiled_kept'] / max(1, kept):.3f} of the kept entries)")
    print(f"confirmations: {tot['confirmed']}, tags mismatched: {tot['mismatched']}" + (f", rounds whose views disagree (sgp eve --attack): {tot['disagree']}" if sgp else ""))
    if gaps:
        print(f"gap t_end → next t_start, ms: p50 {statistics.median(gaps):.1f}, p90 {sorted(gaps)[int(0.9 * len(gaps))]:.1f}")
    if turns:
        print(f"closed → the other poster's drop heard, ms: p50 {statistics.median(turns):.1f}, p90 {sorted(turns)[int(0.9 * len(turns))]:.1f}")
    if errors:
        errors.sort()
        q = lambda x: errors[min(len(errors) - 1, int(x * len(errors)))]
        early = sum(1 for e in errors if e < -2)
        late = sum(1 for e in errors if e > 0.6)
        print(f"true arrival error / τ over {len(errors)} posts: earliest {errors[0]:+.2f}, q0.01 {q(0.01):+.2f}, median {q(0.5):+.2f}, "
              f"q0.99 {q(0.99):+.2f}; later than 3τ/5: {late / len(errors):.3f}; earlier than −2τ (outside a span): {early}")


if __name__ == "__main__":
    main()
