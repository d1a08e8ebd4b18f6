#!/usr/bin/env python3
"""Sends a bounded spray of garbage UDP datagrams at a WireGuard port, for the bad-input scenario.

Usage: spray.py HOST PORT COUNT SECONDS
Stops after COUNT datagrams or SECONDS, whichever comes first. Only the e2e underlay (10.77.0.0/16,
fd77::/64) is an allowed target, so a typo can never aim this anywhere else.
"""

import ipaddress
import os
import random
import socket
import struct
import sys
import time

ALLOWED = [ipaddress.ip_network("10.77.0.0/16"), ipaddress.ip_network("fd77::/64")]

# WireGuard message types and their exact sizes (data: at least header + empty payload's tag).
INITIATION, RESPONSE, COOKIE, DATA = 1, 2, 3, 4
SIZES = {INITIATION: 148, RESPONSE: 92, COOKIE: 64}


def handshake_shaped(rng):
    """A datagram that looks like a WireGuard message: right type, right or truncated size, random body."""
    kind = rng.choice([INITIATION, RESPONSE, COOKIE, DATA])
    if kind == DATA:
        size = rng.choice([rng.randint(4, 31), rng.randint(32, 1500)])
    else:
        size = rng.choice([SIZES[kind], rng.randint(4, SIZES[kind] - 1), SIZES[kind] + rng.randint(1, 64)])
    reserved = b"\0\0\0" if rng.random() < 0.9 else os.urandom(3)
    return (bytes([kind]) + reserved + os.urandom(size))[:size]


def garbage(rng):
    roll = rng.random()
    if roll < 0.4:
        return os.urandom(rng.randint(0, 2000))
    if roll < 0.45:
        return b""
    if roll < 0.5:
        # Known type byte, header only, plus forged receiver index and counter for data messages.
        return struct.pack("<IIQ", DATA, rng.getrandbits(32), rng.getrandbits(64))
    return handshake_shaped(rng)


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    host, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    target = ipaddress.ip_address(host)
    if not any(target in net for net in ALLOWED):
        sys.exit(f"spray.py: refusing target {host}: only 10.77.0.0/16 and fd77::/64 are test addresses")
    family = socket.AF_INET6 if target.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    rng = random.Random(int.from_bytes(os.urandom(8), "little"))
    deadline = time.monotonic() + seconds
    # Spread the datagrams over the time allowed, so the spray overlaps the pings instead of one burst.
    interval = seconds / max(count, 1)
    sent = errors = 0
    start = time.monotonic()
    while sent + errors < count and time.monotonic() < deadline:
        try:
            sock.sendto(garbage(rng), (host, port))
            sent += 1
        except OSError:
            errors += 1
        lag = start + (sent + errors) * interval - time.monotonic()
        if lag > 0:
            time.sleep(lag)
    print(f"sent {sent} garbage datagrams to {host}:{port} ({errors} send errors)")


if __name__ == "__main__":
    main()
