#!/usr/bin/env python3
"""The full eavesdropper's audit (issue 7), run by `make audit`; results go in SECURITY.md.

Every scenario is real: `sgp serve` and many short pairs of `sgp pair --record` (each watched
by `sgp eve --record`), then `sgp eve --attack --json` on all the records. Scenarios:

  leaky-fixed-gap  the original client's schedule (testing only), scaled 1/100: target 2
                   must catch it (accuracy >= 0.65)
  leaky-rate       one poster at 1.5 times the other's rate (testing only): target 1 must
                   catch it
  loopback         the honest schedule, two `sgp pair` on 127.0.0.1, default parameters:
                   p_u <= 0.51 on both targets over >= 100 000 scored entries each
  loopback-held    the same with each poster holding one post in 16 back by 3τ (testing only):
                   every round has spans, which the attacker knows; same bar
  netns            the honest schedule at fixed parameters (τ 8 ms, 3 s rounds), alice 0 ms
                   away, bob 20 ms +- 5 ms away, each in its own network namespace (veth)
  busy             as loopback with two busy loops (`sh -c 'while :; do :; done'`) running
                   for the scenario, and sgp's adapting defaults
  wifi             namespaces as netns, both posters 3 ms +- 2 ms each way, 0.5 % loss, 0.1 %
                   reordering; adapting defaults (τ and rate follow the rounds)
  wan-near-far     namespaces, alice direct, bob 20 ms +- 5 ms; adapting defaults
  wan-far          namespaces, both 20 ms +- 5 ms; adapting defaults
  chromium         two Chromium tabs, one in the background (audit/chromium.mjs), rooms of
                   1024 bits one after another for 45 minutes (x --time-scale): two tabs
                   keep ~100 entries a second, so these are the slowest scenarios
  chromium-lan     the same, both tabs through `sgp bench relay` at 0.2 ms +- 0.05 ms each way,
                   for 65 minutes
  chromium-busy    the same on loopback with two busy loops running, four pairs of tabs (each
                   its own Chromium and server) at once for 90 minutes: the background tab is
                   starved, and each pair's keys come ~7 times more slowly

The paths (issue 14's field profiles, as `sgp bench net` builds them) are made by `tc netem`
on both ends of the poster's link where the kernel has it, else by `sgp bench relay`
(src/bench/relay.rs: uniform delay D +- J, in order; loss and reordering as TCP shows them to
the application) in the server's namespace on the poster-facing address. Busy loops,
relays and namespaces are removed at the end of their scenario, and on Ctrl-C or SIGTERM.

Each scenario stops at its goal (kept entries) or its time limit, whichever comes first; a
scenario that stops short says so (the verdict then warns that N < 100 000).

usage: run.py [--sgp PATH] [--out DIR] [--only NAME,...] [--scale F] [--time-scale F]
  --scale F multiplies every goal and time limit (0.05 for a quick check of the driver);
  --time-scale F multiplies the time limits only (for a busy machine).
  --only takes a comma-separated list of the scenarios above (default: all of them).
Needs root for the namespaced scenarios (ip netns, veth); without it they are skipped.
"""

import argparse
import collections
import datetime
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEAKY_ENV = "SGP_TESTING_LEAKY_SCHEDULES"
# Kept entries asked of each honest scenario: about half are scored (the split is by round),
# and each target needs >= 100 000.
GOAL = 220_000
# Seconds between the starts of a scenario's rooms.
STAGGER_S = 0.25
CHILDREN = set()
CHILDREN_LOCK = threading.Lock()
CLEANUPS = []
# Set on Ctrl-C or SIGTERM: nothing new is started, everything running is stopped.
STOP = threading.Event()


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def spawn(cmd, ns=None, env=None, stdout=subprocess.PIPE):
    if STOP.is_set():
        raise SystemExit("stopping")
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=e, text=True)
    with CHILDREN_LOCK:
        CHILDREN.add(p)
    return p


def reap(p, timeout, stop=lambda: False):
    """Waits for p; past `timeout`, or once `stop()`, sends SIGINT (sgp saves its record),
    then SIGKILL."""
    end = time.monotonic() + timeout
    while True:
        try:
            out, err = p.communicate(timeout=max(0.01, min(1.0, end - time.monotonic())))
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() < end and not stop():
                continue
        p.send_signal(signal.SIGINT)
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        break
    with CHILDREN_LOCK:
        CHILDREN.discard(p)
    return out or "", err or ""


def stop_all():
    with CHILDREN_LOCK:
        kids = list(CHILDREN)
    for p in kids:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in kids:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    for f in reversed(CLEANUPS):
        try:
            f()
        except Exception as e:  # cleanup must go on
            log("cleanup:", e)
    CLEANUPS.clear()


def start_server(sgp, ns=None, bind="127.0.0.1"):
    # The audit's rooms all come from one address (or two namespaces), by design: no caps.
    p = spawn([sgp, "serve", "--port", "0", "--bind", bind, "--max-per-address", "1000000", "--rooms-per-minute", "100000", "--observers-per-address", "1000000"], ns=ns)
    line = p.stdout.readline().strip()
    prefix = "sgp listening on http://"
    if not line.startswith(prefix):
        raise SystemExit(f"sgp serve: unexpected first line {line!r}: {p.stderr.read()}")
    port = int(line[len(prefix):].rstrip("/").rsplit(":", 1)[1])
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    return p, port


def kept_of(stdout):
    """Kept entries of the rounds a pair's JSON lines say both posters could use (alice's
    view in sync, not dropped by a desync afterwards): a progress count only; the audit
    counts for itself."""
    kept, dropped = {}, set()
    for line in stdout.splitlines():
        try:
            v = json.loads(line)
        except ValueError:
            continue
        if "round" in v and isinstance(v["round"].get("kept"), int):
            kept[(v["round"]["session"], v["round"]["round"])] = v["round"]["kept"]
        if "aborted" in v and v["aborted"].get("reason") == "desync" and v["aborted"].get("round") is not None:
            dropped.add(v["aborted"]["round"])
    return sum(k for (s, r), k in kept.items() if r not in dropped)


def one_pair(sgp, d, tag, urls, nss, alice, bob, env, limit, stop):
    """A creator, eve and a joiner in one new room; returns (files, kept, ok)."""
    pa, pb, pe = (os.path.join(d, f"{tag}-{w}.json") for w in ("alice", "bob", "eve"))
    creator = spawn([sgp, "pair", "--json", "--retries", "100", "--server", urls[0], "--record", pa] + alice, ns=nss[0], env=env)
    first = creator.stdout.readline()
    try:
        code = json.loads(first)["room"]["code"]
    except (ValueError, KeyError):
        reap(creator, 1)
        return [], 0, False
    eve = spawn([sgp, "eve", "--server", urls[2], "--room", code, "--record", pe], ns=nss[2], stdout=subprocess.DEVNULL)
    # Eve is in the room before the first round: the creator says so ({"peer": joined observer}).
    while True:
        line = creator.stdout.readline()
        first += line
        if not line or ('"peer"' in line and '"observer"' in line):
            break
    joiner = spawn([sgp, "pair", "--json", "--retries", "100", "--server", urls[1], "--room", code, "--record", pb] + bob, ns=nss[1], env=env)
    box = {}
    t = threading.Thread(target=lambda: box.update(b=reap(joiner, limit, stop)), daemon=True)
    t.start()
    out_a, err_a = reap(creator, limit, stop)
    t.join()
    reap(eve, 10)
    ok = '"key"' in out_a and '"key"' in box.get("b", ("", ""))[0]
    if not ok:
        log(f"{tag}: pair ended without a key: {err_a.strip().splitlines()[-1:] }")
    return [f for f in (pa, pb, pe) if os.path.exists(f)], kept_of(first + out_a), ok


def scenario(name, sgp, out, rooms, goal, minutes, alice, bob, urls=None, nss=(None, None, None), env=None, pair_limit=300):
    """`rooms` rooms at once, each a loop of short pairs, until `goal` kept entries or time."""
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    deadline = time.monotonic() + minutes * 60
    state = {"kept": 0, "pairs": 0, "keys": 0, "files": []}
    lock = threading.Lock()

    def done():
        return state["kept"] >= goal or time.monotonic() > deadline or STOP.is_set()

    def worker(k):
        # Rooms start STAGGER_S apart: 80 rooms' set-up and first rounds at the same instant
        # would make their first rounds late on a 2-core machine.
        if STOP.wait(k * STAGGER_S):
            return
        n = 0
        while True:
            with lock:
                if done():
                    return
            left = deadline - time.monotonic()
            files, kept, ok = one_pair(sgp, d, f"r{k:02d}-{n:04d}", urls, nss, alice, bob, env, max(10, min(pair_limit, left)), done)
            n += 1
            with lock:
                state["kept"] += kept
                state["pairs"] += 1
                state["keys"] += ok
                state["files"] += files

    began = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(rooms)]
    for t in threads:
        t.start()
    last = 0
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        if time.monotonic() - last > 30:
            last = time.monotonic()
            log(f"{name}: {state['pairs']} pairs, {state['keys']} keys, ~{state['kept']} kept of {goal} ({time.monotonic() - began:.0f} s)")
    state["seconds"] = round(time.monotonic() - began)
    state["stopped_by"] = "goal" if state["kept"] >= goal else "time limit"
    log(f"{name}: done: {state['pairs']} pairs, ~{state['kept']} kept, {state['seconds']} s, stopped by {state['stopped_by']}")
    return state


def attack(sgp, files, out, name):
    log(f"{name}: sgp eve --attack on {len(files)} records")
    began = time.monotonic()
    listing = os.path.join(out, f"{name}.files")
    with open(listing, "w") as f:
        f.write("\n".join(files) + "\n")
    p = subprocess.run(["nice", sgp, "eve", "--attack", "--json"] + files, capture_output=True, text=True)
    if p.returncode != 0:
        log(f"{name}: eve --attack failed: {p.stderr.strip()}")
        return {"error": p.stderr.strip()}
    v = json.loads(p.stdout)
    v["attack_seconds"] = round(time.monotonic() - began)
    with open(os.path.join(out, f"{name}.attack.json"), "w") as f:
        json.dump(v, f, indent=1)
    return v


def machine():
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        mem = f"{int(open('/proc/meminfo').readline().split()[1]) / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory": mem, "kernel": platform.release(), "commit": commit}


# ---------------------------------------------------------------------------------------
# Paths and busy loops: the field profiles of issue 14 (src/bench/net.rs's PROFILES).

Path = collections.namedtuple("Path", "delay_ms jitter_ms loss reorder", defaults=(0.0, 0.0))
LAN = Path(0.2, 0.05)
WIFI = Path(3.0, 2.0, 0.005, 0.001)
WAN = Path(20.0, 5.0)
BUSY_LOOPS = 2


def describe(path):
    if path is None:
        return "direct"
    extra = "".join(f", {v * 100:g} % {k}" for k, v in (("loss", path.loss), ("reordering", path.reorder)) if v)
    return f"{path.delay_ms:g} ms ± {path.jitter_ms:g} ms each way{extra}"


def relay_args(path):
    return ["--delay-ms", str(path.delay_ms), "--jitter-ms", str(path.jitter_ms), "--loss", str(path.loss), "--reorder", str(path.reorder)]


def drain(p):
    for f in (p.stdout, p.stderr):
        if f:
            threading.Thread(target=lambda f=f: [None for _ in f], daemon=True).start()


def busy_loops(n=BUSY_LOOPS):
    """`n` busy loops (`sh -c 'while :; do :; done'`); returns a function that ends them,
    also run on Ctrl-C (CLEANUPS)."""
    loops = [subprocess.Popen(["sh", "-c", "while :; do :; done"], stdin=subprocess.DEVNULL) for _ in range(n)]

    def end():
        for p in loops:
            if p.poll() is None:
                p.kill()
            p.wait()

    CLEANUPS.append(end)
    log(f"{n} busy loops running: pids {[p.pid for p in loops]}")
    return end


# ---------------------------------------------------------------------------------------
# Network namespaces: sgpa-<pid> (alice), sgpb-<pid> (bob), sgps-<pid> (server, eve, relays).


def ip(*args, ns=None, check=True):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


def link(k):
    """Poster k's veth link (1 alice, 2 bob): its server end and its poster end."""
    tag = str(os.getpid())
    return f"vs{k}-{tag}"[:15], f"vp{k}-{tag}"[:15]


def netns_setup():
    """Three namespaces joined by two veth links: server 10.77.1.1 — alice 10.77.1.2 and
    server 10.77.2.1 — bob 10.77.2.2, all deleted by stop_all. Returns (names, netem_ok):
    whether `tc netem` works here (probed on alice's link, then removed)."""
    tag = str(os.getpid())
    s, a, b = f"sgps-{tag}", f"sgpa-{tag}", f"sgpb-{tag}"
    for n in (s, a, b):
        ip("ip", "netns", "add", n)
        CLEANUPS.append(lambda n=n: ip("ip", "netns", "del", n, check=False))
        ip("ip", "link", "set", "lo", "up", ns=n)
    for k, peer in ((1, a), (2, b)):
        ls, lp = link(k)
        ip("ip", "link", "add", ls, "netns", s, "type", "veth", "peer", "name", lp, "netns", peer)
        ip("ip", "addr", "add", f"10.77.{k}.1/24", "dev", ls, ns=s)
        ip("ip", "addr", "add", f"10.77.{k}.2/24", "dev", lp, ns=peer)
        ip("ip", "link", "set", ls, "up", ns=s)
        ip("ip", "link", "set", lp, "up", ns=peer)
    probe = ip("tc", "qdisc", "add", "dev", link(1)[0], "root", "netem", "delay", "1ms", ns=s, check=False)
    if probe.returncode != 0:
        log(f"netns: tc netem is not available here ({probe.stderr.strip()}); the paths go through `sgp bench relay`")
        return (s, a, b), False
    ip("tc", "qdisc", "del", "dev", link(1)[0], "root", ns=s)
    return (s, a, b), True


def start_relay(sgp, ns, host, target, path):
    """`sgp bench relay` in namespace `ns`, listening on `host` (a free port), to `target`
    (HOST:PORT) with `path` each way; its port. Stopped by stop_all."""
    p = spawn([sgp, "bench", "relay", "--listen", f"{host}:0", "--target", target] + relay_args(path), ns=ns)
    line = p.stdout.readline().strip()
    if not line.startswith("listening "):
        raise SystemExit(f"sgp bench relay did not start ({line!r}): {p.stderr.read()}")
    drain(p)
    return int(line.split()[1])


def poster_url(sgp, nss, k, port, path, netem):
    """The URL poster k (1 alice, 2 bob) reaches the server by, through `path` (None: direct):
    `tc netem` on both ends of its link where the kernel has it, else the relay, run in the
    server's namespace on the poster-facing address."""
    s, host = nss[0], f"10.77.{k}.1"
    if path is None:
        return f"http://{host}:{port}"
    if netem:
        for dev, n in zip(link(k), (s, nss[k])):
            ip("tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", f"{path.delay_ms}ms", f"{path.jitter_ms}ms", "loss", f"{path.loss * 100}%", "reorder", f"{path.reorder * 100}%", ns=n)
        return f"http://{host}:{port}"
    return f"http://{host}:{start_relay(sgp, s, host, f'127.0.0.1:{port}', path)}"


def median_sync_rtt(files):
    """The delay as sgp saw it: the median round trip of each side's clock sync (µs)."""
    rtt = {"alice": [], "bob": []}
    for f in files:
        for who in rtt:
            if f.endswith(f"-{who}.json"):
                with open(f) as fh:
                    rtt[who] += [r["sync"]["delay_us"] for r in json.load(fh)["rounds"]]
    return {w: (sorted(v)[len(v) // 2] if v else None) for w, v in rtt.items()}


def run_namespaced(name, sgp, out, rooms, goal, minutes, alice_args, bob_args, paths, pair_limit=300):
    """One scenario with alice, bob and the server (with eve) each in a namespace; `paths` is
    (alice's path, bob's path), None for direct. Everything is taken down at its end."""
    nss, netem = netns_setup()
    server, port = start_server(sgp, ns=nss[0], bind="0.0.0.0")
    urls = tuple(poster_url(sgp, nss, k, port, paths[k - 1], netem) for k in (1, 2)) + (f"http://127.0.0.1:{port}",)
    st = scenario(name, sgp, out, rooms, goal, minutes, alice_args, bob_args, urls=urls, nss=(nss[1], nss[2], nss[0]), pair_limit=pair_limit)
    med = median_sync_rtt(st["files"])
    log(f"{name}: median sync round trip (µs): {med}; netem {netem}")
    how = "tc netem" if netem else "sgp bench relay"
    st["paths"] = {"how": how, "alice": describe(paths[0]), "bob": describe(paths[1]), "median_sync_rtt_us": med}
    st["rooms"], st["alice_args"], st["bob_args"] = rooms, alice_args, bob_args
    stop_all()
    st["attack"] = attack(sgp, st.pop("files"), out, name)
    return st


# ---------------------------------------------------------------------------------------
# The plan. Field scenarios (issue 14) use sgp's adapting defaults: no --tolerance-ms, no
# --duration-ms, so τ and the rate follow the rounds as they do for a user. They leave
# --target-bits at 256 too: a round's window is sized for a third of the target
# (protocol.rs, default_duration_ms), so a bigger key gives longer rounds, not more of them;
# the rounds lost while each pair finds its τ or rate (wan: a first round at τ 5 ms out of
# sync; busy: two late rounds before the rate falls) stay the same share of its rounds, and
# longer rounds meet more of a busy machine's hiccups.
FIELD = []


def loopback_plan(window):
    """Scenarios on 127.0.0.1 against one server: name → rooms, goal, minutes, args."""
    leaky = {LEAKY_ENV: "1"}
    return {
        "leaky-fixed-gap": dict(rooms=6, goal=12_000, minutes=2.5, alice=["--schedule", "fixed-gap:0.01", "--target-bits", "700"], bob=["--schedule", "fixed-gap:0.01"], env=leaky),
        "leaky-rate": dict(rooms=2, goal=30_000, minutes=2, alice=["--target-bits", "2500", "--duration-ms", window], bob=["--schedule", "unequal-rate:1.5"], env=leaky),
        # Default parameters: τ 0.25 ms, 256-bit keys (3 rounds each), many short pairs.
        "loopback": dict(rooms=3, goal=GOAL, minutes=12, alice=[], bob=[]),
        # Spans (docs/protocol.md §5.3): both posters hold one post in 16, at random, back
        # by 3τ, so nearly every round has spans (about a quarter of its time), and the
        # attacker knows them. 100 ms rounds hold ~50 posts each: rounds where a held post
        # passes for matched are dropped by its poster (it knows which it held).
        "loopback-held": dict(rooms=3, goal=GOAL, minutes=12, alice=["--duration-ms", "100", "--testing-hold-post"], bob=["--testing-hold-post"]),
        # Two busy loops on the 2 cores (`sgp bench net`'s busy profile: τ stays near 0.1 ms,
        # the rate falls to 39-78 Hz, a 256-bit key of ~365 kept entries in 5.7 s, so ~60 a
        # second per room, one pair at a time; a 30 s smoke run of 4 rooms, 2026-12-06, kept
        # ~110 a second with other work on the machine, half its rounds lost as late): 6
        # rooms, ~200-300 a second, 12-18 minutes. More rooms would load the machine beyond
        # the profile's two loops.
        "busy": dict(rooms=6, goal=GOAL, minutes=40, alice=FIELD, bob=[], busy=True),
    }


def namespaced_plan():
    """Scenarios across namespaces: name → rooms, minutes, args, (alice's path, bob's path).
    Per-room figures are `sgp bench net`'s (BENCHMARKS.md, one pair at a time) less the
    pairs' set-up and first rounds."""
    return {
        # τ = 8 ms covers bob's ±5 ms jitter; 3 s rounds and 512-bit keys lose less to a
        # dropped round (each pair's first round, before `refine` learns the delay, and
        # stalls of a busy machine) than the default 13.5 s rounds would. Fixed parameters:
        # the one scenario kept from before adapting (10.6 minutes at 60 rooms, 2026-12-01).
        "netns": dict(rooms=60, minutes=12, alice=["--tolerance-ms", "8", "--duration-ms", "3000", "--target-bits", "512"], bob=[], paths=(None, WAN)),
        # τ 5-8 ms, 16-25 Hz, a key (~365 kept entries) in 45 s: ~8 a second per room, 60
        # rooms ~480 a second, ~8 minutes.
        "wifi": dict(rooms=60, minutes=20, alice=FIELD, bob=[], paths=(WIFI, WIFI)),
        # τ 5-18 ms (median 10), 7-25 Hz, each pair's first round or two out of sync, a key in
        # 62 s: ~6 kept entries a second per room, 80 rooms ~480 a second, ~8 minutes each.
        "wan-near-far": dict(rooms=80, minutes=25, alice=FIELD, bob=[], paths=(None, WAN)),
        "wan-far": dict(rooms=80, minutes=25, alice=FIELD, bob=[], paths=(WAN, WAN)),
    }


# How long each Chromium scenario runs (minutes, x --time-scale), to reach 100 000 scored
# entries a target (half the rounds train). At the page's 0.25 ms floor two tabs keep about
# 100 entries a second on this machine (the chromium audit of 2026-12-07: 243 035 kept in 40
# minutes, N 122 084 / 118 995; SECURITY.md), so 45 minutes; through the lan path ~60 a second
# (74 818 scored in 40 minutes), so 65. With two busy loops the tab in
# the background is starved (a 1024-bit key took 1.6 minutes against 14 s quiet, about 1 400
# kept entries each: its rounds widen to τ 5 ms at 25 Hz), so chromium-busy runs four
# drivers at once (each its own server, Chromium and pair of tabs: 7 keys in 4.5 minutes
# from three and 4 in ~100 s from four, 2026-12-07, against 3 in 4.5 minutes from one) for
# 90 minutes.
# chromium-lan: both tabs through the lan path; chromium-busy: two busy loops.
CHROMIUM_PLAN = {
    "chromium": dict(args=[], minutes=45),
    "chromium-lan": dict(args=["--relay-delay-ms", str(LAN.delay_ms), "--relay-jitter-ms", str(LAN.jitter_ms)], minutes=65),
    "chromium-busy": dict(args=[], busy=True, minutes=90, drivers=4),
}
ALL = list(loopback_plan("0")) + list(namespaced_plan()) + list(CHROMIUM_PLAN)


def run_loopback(sgp, out, only, sc, ts):
    if not only & set(loopback_plan("0")):
        return {}
    server, port = start_server(sgp)
    url = f"http://127.0.0.1:{port}"
    # The default room's window (for 256 bits), used where a longer key is asked for.
    probe = spawn([sgp, "pair", "--json", "--server", url])
    window = str(json.loads(probe.stdout.readline())["room"]["params"]["duration_ms"])
    reap(probe, 0.1)
    results = {}
    for name, p in loopback_plan(window).items():
        if name not in only:
            continue
        end_busy = busy_loops() if p.get("busy") else None
        st = scenario(name, sgp, out, p["rooms"], int(p["goal"] * sc), p["minutes"] * ts, p["alice"], p["bob"], urls=(url, url, url), env=p.get("env"))
        if end_busy:
            end_busy()
            st["busy_loops"] = BUSY_LOOPS
        st["rooms"], st["alice_args"], st["bob_args"] = p["rooms"], p["alice"], p["bob"]
        st["attack"] = attack(sgp, st.pop("files"), out, name)
        results[name] = st
    server.send_signal(signal.SIGINT)
    server.wait(timeout=10)
    return results


def run_namespaced_all(sgp, out, only, sc, ts):
    results = {}
    for name, p in namespaced_plan().items():
        if name not in only:
            continue
        if os.geteuid() != 0 or not shutil.which("ip"):
            results[name] = {"skipped": "needs root and iproute2 (ip netns)"}
            continue
        results[name] = run_namespaced(name, sgp, out, p["rooms"], int(GOAL * sc), p["minutes"] * ts, p["alice"], p["bob"], p["paths"])
    return results


def run_chromium(name, sgp, out, minutes, args, busy, drivers=1):
    """`drivers` copies of audit/chromium.mjs at once for `minutes` (each its own server, Chromium
    and directory; `args` their path), then the attack on all their records."""
    d = os.path.join(out, name)
    dirs = [d] if drivers == 1 else [os.path.join(d, f"d{k}") for k in range(drivers)]
    for x in dirs:
        os.makedirs(x, exist_ok=True)
    end_busy = busy_loops() if busy else None
    ps = [spawn(["node", os.path.join(ROOT, "audit", "chromium.mjs"), "--out", x, "--minutes", str(minutes)] + args, env={"SGP_BIN": sgp}) for x in dirs]
    # Its own limit is --minutes, checked between rooms; a room may take up to 10 more. One
    # deadline for all: reaping them one after the other must not extend it.
    deadline = time.monotonic() + (minutes + 15) * 60
    ended = [reap(p, max(1.0, deadline - time.monotonic())) for p in ps]
    if end_busy:
        end_busy()
    for _, stderr in ended:
        sys.stderr.write(stderr[-4000:])
    files = [os.path.join(x, f) for x in dirs for f in sorted(os.listdir(x)) if f.endswith(".json")]
    codes = [p.returncode for p in ps]
    if 77 in codes:
        return {"skipped": (ended[codes.index(77)][0].strip() or "the web client has no record download yet")}
    if any(codes) or not files:
        return {"error": f"audit/chromium.mjs exited {codes}: {' | '.join(o.strip()[-500:] for o, _ in ended)}"}
    st = {"records": len(files), "driver": "\n".join(o.strip()[-2000:] for o, _ in ended), "minutes_limit": minutes, "tabs_args": args, "drivers": drivers}
    if busy:
        st["busy_loops"] = BUSY_LOOPS
    st["attack"] = attack(sgp, files, out, name)
    return st


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sgp", default=os.path.join(ROOT, "target", "release", "sgp"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", default=",".join(ALL))
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--time-scale", type=float, default=1.0)
    args = ap.parse_args()
    only = set(args.only.split(","))
    unknown = only - set(ALL)
    if unknown:
        ap.error(f"unknown scenario(s) {', '.join(sorted(unknown))} (one of {', '.join(ALL)})")
    sgp = os.path.abspath(args.sgp)
    out = args.out or f"/tmp/sgp-audit-{time.strftime('%Y%m%d-%H%M%S')}"
    os.makedirs(out, exist_ok=True)
    os.chmod(out, 0o700)  # the records are key material
    sc = args.scale
    ts = sc * args.time_scale
    began = datetime.datetime.now(datetime.timezone.utc)
    results = {"date": began.strftime("%Y-%m-%d %H:%M UTC"), "command": " ".join([sys.executable] + sys.argv), "machine": machine(), "out": out, "scenarios": {}}

    def interrupted(*_):
        STOP.set()
        log("interrupted: stopping every process and removing the namespaces")
        stop_all()
        os._exit(130)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupted)
    try:
        results["scenarios"].update(run_loopback(sgp, out, only, sc, ts))
        results["scenarios"].update(run_namespaced_all(sgp, out, only, sc, ts))
        for name, p in CHROMIUM_PLAN.items():
            if name in only:
                results["scenarios"][name] = run_chromium(name, sgp, out, max(1, round(p["minutes"] * ts)), p["args"], p.get("busy", False), p.get("drivers", 1))
    finally:
        stop_all()
    results["minutes"] = round((datetime.datetime.now(datetime.timezone.utc) - began).total_seconds() / 60, 1)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(report(results))
    ok = all(verdict_ok(n, s) for n, s in results["scenarios"].items())
    sys.exit(0 if ok else 1)


def verdict_ok(name, s):
    a = s.get("attack", {}).get("audit")
    if not a:
        return "skipped" in s
    v = {x["target"]: x for x in a["verdicts"]}
    if name == "leaky-fixed-gap":
        return v["same_as_previous"]["beats_coin"] and v["same_as_previous"]["accuracy"] >= 0.65
    if name == "leaky-rate":
        return v["poster"]["beats_coin"]
    return a["pass"] and a["enough"]


def report(r):
    """The results as Markdown, for SECURITY.md."""
    m = r["machine"]
    lines = [
        f"Audit of {r['date']}, commit {m['commit']}, {r['minutes']} min: `{r['command']}`",
        f"Machine: {m['cpus']} cores ({m['cpu']}), {m['memory']}, Linux {m['kernel']}. Records: {r['out']}.",
        "",
        "| scenario | rounds | kept | target | N scored | accuracy (majority / logistic / boosting) | p_u | H | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in r["scenarios"].items():
        a = s.get("attack", {}).get("audit")
        if not a:
            lines.append(f"| {name} | | | | | {s.get('skipped') or s.get('error') or s.get('attack', {}).get('error')} | | | |")
            continue
        for k, v in enumerate(a["verdicts"]):
            acc = " / ".join(f"{x:.4f}" for x in v["accuracies"])
            if name.startswith("leaky"):
                verdict = "caught" if v["beats_coin"] else "not caught"
            else:
                verdict = ("pass" if v["pass"] else "FAIL") + ("" if v["n"] >= 100_000 else " (N < 100 000)")
            head = f"| {name} | {s['attack']['joined']} | {a['kept']} |" if k == 0 else "| | | |"
            lines.append(f"{head} {v['target']} | {v['n']} | {v['accuracy']:.4f} ({acc}) | {v['p_upper']:.4f} | {v['h']:.4f} | {verdict} |")
    lines.append("")
    for name, s in r["scenarios"].items():
        if "attack" in s and "dropped" in s["attack"]:
            extra = f"; paths: {json.dumps(s['paths'], ensure_ascii=False)}" if "paths" in s else ""
            extra += f"; {s['busy_loops']} busy loops" if "busy_loops" in s else ""
            if "driver" in s:
                ends = [x for x in s["driver"].splitlines() if x.startswith("{")]
                run = f"audit/chromium.mjs ×{s.get('drivers', 1)}: {'; '.join(ends) or 'no summary'}"
            else:
                run = f"{s.get('pairs', '?')} pairs ({s.get('keys', '?')} keys), {s.get('rooms', '')} rooms at once, {s.get('seconds', '?')} s, stopped by {s.get('stopped_by', '?')}"
            lines.append(f"- {name}: {run}; left out: {json.dumps(s['attack']['dropped'])}; relayed timing from {json.dumps(s['attack']['relayed_from'])}{extra}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
