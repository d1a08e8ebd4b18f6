#!/usr/bin/env python3
"""Hostile TCP clients against a WireGuard-over-TCP listener, for the hostile-clients scenario.

Usage: tcp_hostile.py HOST PORT SECONDS [--silent N] [--slowloris N] [--garbage-rate R]

Until SECONDS pass (or SIGTERM), at the same time:
  --silent N        N connections that connect and never send (more than the server's cap on
                    unauthenticated connections: it must evict); each one the server closes is reopened
  --slowloris N     N connections that announce a 148-byte frame and then send one byte a second
  --garbage-rate R  R new connections a second, each sending one bad stream and waiting to be closed:
                    random bytes, a zero-length frame, a huge length prefix with a full frame of junk,
                    a huge prefix then silence, a handshake-shaped or data-shaped frame of junk, or an
                    immediate EOF
Reopening is rate-limited, so the script itself stays light on CPU while the server churns.
Prints one summary line per kind at the end. Only the e2e underlay (10.77.0.0/16, fd77::/64) is an
allowed target.
"""

import argparse
import collections
import errno
import ipaddress
import os
import random
import selectors
import signal
import socket
import struct
import sys
import time

ALLOWED = [ipaddress.ip_network("10.77.0.0/16"), ipaddress.ip_network("fd77::/64")]
INITIATION_LEN = 148
# New connections per second for the silent and slowloris pools (on top of --garbage-rate).
REOPEN_RATE = 40.0
# Garbage connections still waiting for the server to close them; beyond, we close the oldest ourselves.
MAX_GARBAGE_PENDING = 64
GARBAGE_KINDS = [
    "random",
    "zero_length",
    "huge_frame",
    "huge_prefix_then_silence",
    "handshake_junk",
    "data_junk",
    "eof",
]


def garbage_payload(kind, rng):
    if kind == "random":
        return os.urandom(rng.randint(1, 4096))
    if kind == "zero_length":
        return b"\0\0"
    if kind == "huge_frame":
        return b"\xff\xff" + os.urandom(0xFFFF)
    if kind == "huge_prefix_then_silence":
        return b"\xff\xff" + os.urandom(rng.randint(0, 1000))
    if kind == "handshake_junk":
        body = b"\x01\0\0\0" + os.urandom(INITIATION_LEN - 4)
        return struct.pack(">H", INITIATION_LEN) + body
    if kind == "data_junk":
        body = struct.pack("<IIQ", 4, rng.getrandbits(32), rng.getrandbits(64)) + os.urandom(rng.randint(16, 1400))
        return struct.pack(">H", len(body)) + body
    return b""  # eof


class Conn:
    def __init__(self, kind, sock, payload=b""):
        self.kind = kind
        self.sock = sock
        self.pending = payload
        self.connected = False
        self.closed = False
        self.next_drip = time.monotonic()
        self.dripped = 0


class Hostile:
    def __init__(self, host, port, args):
        self.target = (host, port)
        self.family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        self.args = args
        self.rng = random.Random(int.from_bytes(os.urandom(8), "little"))
        self.sel = selectors.DefaultSelector()
        self.conns = {}
        # Slowloris first: the few of them get reopened before the silent pool takes every token.
        self.wanted = {"slowloris": args.slowloris, "silent": args.silent}
        self.stats = collections.defaultdict(collections.Counter)
        self.tokens = 0.0
        self.garbage_due = time.monotonic()
        self.garbage_pending = collections.deque()
        self.max_open = 0

    def open(self, kind, payload=b""):
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        # No lingering FIN-WAIT state on our side: a reset when we close.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        err = sock.connect_ex(self.target)
        if err not in (0, errno.EINPROGRESS):
            self.stats[kind]["connect_failed"] += 1
            sock.close()
            return None
        conn = Conn(kind, sock, payload)
        self.conns[sock.fileno()] = conn
        self.sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
        self.stats[kind]["opened"] += 1
        return conn

    def close(self, conn, why):
        if conn.closed:
            return
        conn.closed = True
        self.stats[conn.kind][why] += 1
        self.conns.pop(conn.sock.fileno(), None)
        self.sel.unregister(conn.sock)
        conn.sock.close()

    def count(self, kind):
        return sum(1 for c in self.conns.values() if c.kind == kind)

    def on_event(self, conn, mask):
        if conn.closed:
            return  # closed earlier in this round
        if mask & selectors.EVENT_WRITE:
            if not conn.connected:
                err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self.close(conn, "connect_failed")
                    return
                conn.connected = True
                self.stats[conn.kind]["connected"] += 1
                if conn.kind == "garbage" and not conn.pending:
                    conn.sock.shutdown(socket.SHUT_WR)
            if conn.pending:
                try:
                    sent = conn.sock.send(conn.pending)
                    conn.pending = conn.pending[sent:]
                except BlockingIOError:
                    pass
                except OSError:
                    self.close(conn, "closed_by_server")
                    return
            if not conn.pending:
                self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
        if mask & selectors.EVENT_READ:
            try:
                data = conn.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.close(conn, "closed_by_server")
            else:
                self.stats[conn.kind]["bytes_received"] += len(data)

    def drip(self, now):
        for conn in list(self.conns.values()):
            if conn.kind != "slowloris" or not conn.connected or now < conn.next_drip:
                continue
            conn.next_drip = now + 1.0
            # First the prefix of a full-size initiation, then its body one byte a second.
            data = struct.pack(">H", INITIATION_LEN) if conn.dripped == 0 else b"\x01"
            conn.dripped += 1
            try:
                conn.sock.send(data)
                self.stats["slowloris"]["bytes_sent"] += len(data)
            except OSError:
                self.close(conn, "closed_by_server")

    def refill(self, now, dt):
        self.tokens = min(self.tokens + dt * REOPEN_RATE, REOPEN_RATE)
        for kind, want in self.wanted.items():
            missing = want - self.count(kind)
            # The first fill is a burst; reopening after that is rate-limited.
            while missing > 0 and (self.stats[kind]["opened"] < want or self.tokens >= 1.0):
                if self.stats[kind]["opened"] >= want:
                    self.tokens -= 1.0
                self.open(kind)
                missing -= 1
        if self.args.garbage_rate <= 0:
            return
        # After a stall (a busy machine), carry on at the rate instead of catching up in one burst.
        self.garbage_due = max(self.garbage_due, now - 1.0)
        while now >= self.garbage_due:
            self.garbage_due += 1.0 / self.args.garbage_rate
            kind = self.rng.choice(GARBAGE_KINDS)
            self.stats["garbage"][kind] += 1
            conn = self.open("garbage", garbage_payload(kind, self.rng))
            if conn:
                self.garbage_pending.append(conn)
        while self.garbage_pending and self.garbage_pending[0].closed:
            self.garbage_pending.popleft()
        while len(self.garbage_pending) > MAX_GARBAGE_PENDING:
            self.close(self.garbage_pending.popleft(), "closed_by_us")

    def run(self, seconds):
        last = time.monotonic()
        deadline = last + seconds
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            self.refill(now, now - last)
            last = now
            self.drip(now)
            self.max_open = max(self.max_open, len(self.conns))
            for key, mask in self.sel.select(timeout=0.02):
                self.on_event(key.data, mask)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--silent", type=int, default=0)
    parser.add_argument("--slowloris", type=int, default=0)
    parser.add_argument("--garbage-rate", type=float, default=0.0)
    args = parser.parse_args()
    if not any(ipaddress.ip_address(args.host) in net for net in ALLOWED):
        sys.exit(f"tcp_hostile.py: refusing target {args.host}: only 10.77.0.0/16 and fd77::/64 are test addresses")

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    hostile = Hostile(args.host, args.port, args)
    try:
        hostile.run(args.seconds)
    except KeyboardInterrupt:
        pass
    for kind in sorted(hostile.stats):
        counts = " ".join(f"{k}={v}" for k, v in sorted(hostile.stats[kind].items()))
        print(f"{kind}: {counts}")
    print(f"max open at once: {hostile.max_open}", flush=True)


if __name__ == "__main__":
    main()
