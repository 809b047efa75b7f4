#!/usr/bin/env python3
"""A TCP relay that delays each direction like `tc qdisc … netem delay D J`: every chunk read
is held for a uniform delay in [D − J, D + J] and released in order (TCP delivers in order,
so a chunk never overtakes the one before it: it waits for it, as behind netem's reordering).
It made the path of `audit/run.py`'s netns scenario on kernels without netem (sch_netem)
until `sgp bench relay` (the same model, without Python's timer granularity) took its place;
it stays as the model's second implementation, for measurements by hand.

Loss and reordering are modelled as the application sees them over TCP (the same model as
`sgp bench relay`, src/bench/relay.rs): with probability LOSS a chunk is held an extra
retransmission timeout, 200 ms (Linux's minimum RTO) + DELAY_MS, and everything behind it
waits (in order); with probability REORDER a chunk is held an extra 2 x JITTER_MS (the next
segment arrived first; the receiver's reassembly waits for this one).

usage: delay_proxy.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS JITTER_MS [LOSS [REORDER]]
  LOSS and REORDER are probabilities (0 to 1, default 0).

It prints `listening` once it accepts connections, and runs until killed.
"""

import queue
import random
import socket
import sys
import threading
import time

RTO_MIN_S = 0.2  # Linux's minimum retransmission timeout


def hold(delay_s, jitter_s, loss, reorder, rng):
    """How long a chunk that arrives now is held (before the in-order rule)."""
    h = delay_s + rng.uniform(-jitter_s, jitter_s)
    if rng.random() < loss:
        h += RTO_MIN_S + delay_s
    if rng.random() < reorder:
        h += 2 * jitter_s
    return max(h, 0.0)


def pump(src, dst, delay_s, jitter_s, loss, reorder, rng):
    """Reads src, writes dst, each chunk held until arrival + hold(), in order."""
    q = queue.Queue()

    def writer():
        while True:
            item = q.get()
            if item is None:
                break
            release, data = item
            left = release - time.monotonic()
            if left > 0:
                time.sleep(left)
            try:
                dst.sendall(data)
            except OSError:
                break
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    last = 0.0
    while True:
        try:
            data = src.recv(65536)
        except OSError:
            data = b""
        if not data:
            break
        now = time.monotonic()
        release = max(now + hold(delay_s, jitter_s, loss, reorder, rng), last)
        last = release
        q.put((release, data))
    q.put(None)
    t.join()


def serve(client, target, delay_s, jitter_s, loss, reorder, seed):
    try:
        upstream = socket.create_connection(target)
    except OSError:
        client.close()
        return
    for s in (client, upstream):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rng_up, rng_down = random.Random(seed), random.Random(seed + 1)
    up = threading.Thread(target=pump, args=(client, upstream, delay_s, jitter_s, loss, reorder, rng_up), daemon=True)
    down = threading.Thread(target=pump, args=(upstream, client, delay_s, jitter_s, loss, reorder, rng_down), daemon=True)
    up.start()
    down.start()
    up.join()
    down.join()
    client.close()
    upstream.close()


def main():
    sys.setswitchinterval(0.0005)  # a thread waiting to release a chunk gets the GIL soon
    if len(sys.argv) not in (7, 8, 9):
        sys.exit(__doc__)
    host, port, thost, tport, delay_ms, jitter_ms = sys.argv[1:7]
    delay_s, jitter_s = float(delay_ms) / 1000, float(jitter_ms) / 1000
    loss, reorder = (float(x) for x in (sys.argv[7:9] + ["0", "0"])[:2])
    if not (0 <= jitter_s <= delay_s and 0 <= loss <= 1 and 0 <= reorder <= 1):
        sys.exit("delay_proxy.py: need 0 <= JITTER_MS <= DELAY_MS and LOSS, REORDER in [0, 1]")
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, int(port)))
    ls.listen(256)
    print("listening", flush=True)
    seed = random.SystemRandom().randrange(1 << 30)
    while True:
        c, _ = ls.accept()
        seed += 2
        threading.Thread(target=serve, args=(c, (thost, int(tport)), delay_s, jitter_s, loss, reorder, seed), daemon=True).start()


if __name__ == "__main__":
    main()
