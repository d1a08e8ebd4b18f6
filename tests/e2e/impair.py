#!/usr/bin/env python3
"""impair: a UDP relay that makes a bad network between two WireGuard peers (this kernel has no netem).

A sends to LISTEN; the relay forwards each datagram to TARGET and the answers back to whoever spoke last,
after applying, per datagram and direction: loss (drop with probability LOSS), duplication (send twice
with probability DUP) and delay (a fixed DELAY plus a uniformly random JITTER, which reorders packets
that arrive closer together than the jitter). Bounded: it stops after SECONDS or on SIGTERM, and never
queues more than MAX_QUEUED datagrams (beyond, it drops and counts them).

Only the test underlays (10.77.0.0/16, fd77::/64) and loopback are allowed, so a typo cannot aim it
elsewhere. On exit it writes one JSON line of counters to --stats:
  {"a_to_b": {"received": .., "dropped": .., "duplicated": .., "sent": ..}, "b_to_a": {...}, "overflow": ..}

Usage: impair.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT --seconds S [--loss P] [--dup P]
                 [--delay-ms D] [--jitter-ms J] [--seed N] [--back-port P] --stats FILE
"""

import argparse
import heapq
import ipaddress
import json
import random
import selectors
import signal
import socket
import sys
import time

ALLOWED = [ipaddress.ip_network(n) for n in ("10.77.0.0/16", "fd77::/64", "127.0.0.0/8", "::1/128")]
MAX_QUEUED = 100_000


def allowed(host: str) -> bool:
    return any(ipaddress.ip_address(host) in net for net in ALLOWED)


def family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("listen_host")
    p.add_argument("listen_port", type=int)
    p.add_argument("target_host")
    p.add_argument("target_port", type=int)
    p.add_argument("--back-port", type=int, default=0, help="local port towards TARGET (0 = any)")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--loss", type=float, default=0.0)
    p.add_argument("--dup", type=float, default=0.0)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stats", required=True)
    o = p.parse_args()
    for host in (o.listen_host, o.target_host):
        if not allowed(host):
            print(f"impair: {host} is not a test address", file=sys.stderr)
            return 2
    rng = random.Random(o.seed)
    front = socket.socket(family(o.listen_host), socket.SOCK_DGRAM)
    front.bind((o.listen_host, o.listen_port))
    back = socket.socket(family(o.target_host), socket.SOCK_DGRAM)
    # A fixed port: a restarted relay is the same endpoint to B.
    back.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    back.bind(("127.0.0.1" if family(o.target_host) == socket.AF_INET else "::1", o.back_port))
    back.connect((o.target_host, o.target_port))
    for s in (front, back):
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    stats = {d: {"received": 0, "dropped": 0, "duplicated": 0, "sent": 0} for d in ("a_to_b", "b_to_a")}
    overflow = 0
    peer_a = None
    queue: list[tuple[float, int, str, bytes]] = []
    seq = 0
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    sel = selectors.DefaultSelector()
    sel.register(front, selectors.EVENT_READ, "a_to_b")
    sel.register(back, selectors.EVENT_READ, "b_to_a")
    deadline = time.monotonic() + o.seconds

    def schedule(direction: str, data: bytes, now: float):
        nonlocal seq, overflow
        st = stats[direction]
        st["received"] += 1
        if rng.random() < o.loss:
            st["dropped"] += 1
            return
        copies = 2 if rng.random() < o.dup else 1
        if copies == 2:
            st["duplicated"] += 1
        for _ in range(copies):
            if len(queue) >= MAX_QUEUED:
                overflow += 1
                continue
            at = now + (o.delay_ms + rng.random() * o.jitter_ms) / 1000.0
            seq += 1
            heapq.heappush(queue, (at, seq, direction, data))

    while not stop and time.monotonic() < deadline:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, direction, data = heapq.heappop(queue)
            try:
                if direction == "a_to_b":
                    back.send(data)
                elif peer_a is not None:
                    front.sendto(data, peer_a)
                else:
                    continue
                stats[direction]["sent"] += 1
            except (BlockingIOError, ConnectionRefusedError):
                pass
        timeout = max(0.0, min(queue[0][0] - now, 0.05)) if queue else 0.05
        for key, _ in sel.select(timeout):
            sock, direction = key.fileobj, key.data
            for _ in range(256):
                try:
                    if direction == "a_to_b":
                        data, addr = sock.recvfrom(65535)
                        peer_a = addr
                    else:
                        data = sock.recv(65535)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                schedule(direction, data, time.monotonic())
    with open(o.stats, "w") as f:
        json.dump({**stats, "overflow": overflow}, f)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
