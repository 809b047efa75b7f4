#!/usr/bin/env python3
"""span_owners.py — whose kept entries the spans take, from the records of an audit scenario
(`python3 audit/run.py --out DIR`: DIR/SCENARIO/*-alice.json, *-bob.json, *-eve.json). Public
facts and the posters' own records only; nothing here decides anything.

Each round counted by the audit (not dropped out of sync, not spoiled) is sifted again
(docs/protocol.md §5.1), its board split into its true posters from both records (the least-
cost split of audit/record_costs.py), and its spans taken from the `dropped` messages Eve
heard. It prints alice's share of the sifted entries, of those the spans left (what the audit
scores: its majority model is right as often as the larger share), and of those inside spans.
A span holds its own poster's late post and the matched post after it, and the other
poster's entries only as they happen to fall in its stretch, so on a path where one poster is
late more often the counted entries lean to the other (docs/journal/2026-12-08-spans-lean-
to-the-near-poster.md).

Usage: python3 audit/span_owners.py DIR/SCENARIO
"""
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from record_costs import inside, owners, sift  # noqa: E402


def spans_heard(eve):
    """(spans by (session, round), rounds dropped out of sync) from Eve's messages."""
    spans, dropped, cur = {}, set(), None
    for m in eve["messages"]:
        msg = m["msg"]
        t = msg.get("type")
        if t == "start":
            cur = (msg["session"], msg["round"])
        elif t == "dropped":
            spans.setdefault((msg["session"], msg["round"]), []).extend(msg["spans"])
        elif t == "aborted" and msg.get("reason") == "desync" and cur:
            dropped.add(cur)
    return spans, dropped


def count_pair(a_rec, b_rec, eve, tot):
    spans, dropped = spans_heard(eve)
    b_rounds = {(r["session"], r["round"]): r for r in b_rec["rounds"]}
    for r in a_rec["rounds"]:
        k = (r["session"], r["round"])
        s = b_rounds.get(k)
        if s is None or k in dropped or r.get("spoiled") or s.get("spoiled"):
            continue
        board = sorted(r["board"], key=lambda e: e["i"])
        p = r["params"]
        kept = sift(board, r["t_start_us"], r["t_end_us"], p["tolerance_us"], p["guard_us"])
        free = tuple({n - 1 for n in rec.get("coalesced") or []} for rec in (r, s))  # numbered from 1
        split = owners(board, r["posts"], s["posts"], r["sync"], s["sync"], free)
        if split is None:
            tot["unsplit"] += 1
            continue
        sp = spans.get(k, [])
        tot["rounds"] += 1
        tot["spans"] += len(sp)
        for j in kept:
            where = "inside" if inside(board[j]["t_us"], sp) else "counted"
            tot[(where, split[j][0])] += 1


def main():
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    tot = {"rounds": 0, "unsplit": 0, "spans": 0}
    for w in ("inside", "counted"):
        for who in "AB":
            tot[(w, who)] = 0
    for fa in sorted(glob.glob(os.path.join(sys.argv[1], "*-alice.json"))):
        fb, fe = fa[: -len("alice.json")] + "bob.json", fa[: -len("alice.json")] + "eve.json"
        if os.path.exists(fb) and os.path.exists(fe):
            with open(fa) as f1, open(fb) as f2, open(fe) as f3:
                count_pair(json.load(f1), json.load(f2), json.load(f3), tot)
    print(f"{tot['rounds']} rounds counted ({tot['unsplit']} whose board could not be split), {tot['spans']} spans")
    rows = {
        "sifted": (tot[("inside", "A")] + tot[("counted", "A")], tot[("inside", "B")] + tot[("counted", "B")]),
        "counted (outside the spans)": (tot[("counted", "A")], tot[("counted", "B")]),
        "inside the spans": (tot[("inside", "A")], tot[("inside", "B")]),
    }
    for name, (a, b) in rows.items():
        print(f"{name}: {a + b} entries, alice's share {a / max(a + b, 1):.4f}")


if __name__ == "__main__":
    main()
