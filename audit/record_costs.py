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
  each poster's `drop` as the other poster heard it (its `dropped`).

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


def run_costs(a_rec, b_rec, tot, gaps, turns):
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
    gaps, turns = [], []
    runs = sorted(glob.glob(os.path.join(folder, "run-*-A.json")))
    for fa in runs:
        fb = fa[:-len("A.json")] + "B.json"
        if not os.path.exists(fb):
            continue
        a_rec = json.load(open(fa))["record"]
        b_rec = json.load(open(fb))["record"]
        run_costs(a_rec, b_rec, tot, gaps, turns)
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


if __name__ == "__main__":
    main()
