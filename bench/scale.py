#!/usr/bin/env python3
"""How the configuration path scales with the peer count: one daemon in a namespace of its own, N peers
applied in one `set=1` transaction over the UAPI socket, then `get=1`, `wg show dump`, removal of every
peer (`replace_peers=true`), and RSS along the way. Also how long `wg show` takes while a large `set`
runs. Traffic: none (no address is ever sent to).

Usage (root): bench/scale.py [--impl fastwire|wireguard-go-2025] [--binary PATH] [--handshakes ACTIVE [--flood]] N [N...]
Prints one JSON object per N (times in seconds, RSS in KiB) and a Markdown table at the end.

With --handshakes ACTIVE, the N peers are fastwire-loadgen's clients (`clients-config`) and, once they
are configured, the first ACTIVE of them (at most N) handshake with the server from a second namespace
over a veth pair (10.77.90.0/24) for --handshake-seconds: the rate the server completes handshakes and
their p50/p99 latency. The generator runs on the same 2 cores as the server, so rates compare between
rows of one run, not with other machines. With --flood as well, a flat-out flood of valid-mac1 initiations
(fastwire-loadgen flood) hits the server meanwhile: how many of the clients' handshakes still complete.
"""

import argparse
import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOCKET_DIR = "/var/run/wireguard"
WG_GO_2025 = os.path.join(ROOT, "..", "shared", "peers", "wireguard-go-2025")


def uapi(iface, request, timeout=600):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(f"{SOCKET_DIR}/{iface}.sock")
    s.sendall(request.encode())
    chunks = []
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
        if b"\n\n" in chunks[-1][-2:] or (len(chunks) > 1 and (chunks[-2] + chunks[-1]).endswith(b"\n\n")):
            break
    s.close()
    answer = b"".join(chunks).decode()
    return answer


def errno_of(answer):
    for line in answer.splitlines():
        if line.startswith("errno="):
            return int(line[6:])
    raise RuntimeError(f"no errno in answer: {answer[:200]!r}")


def cpu_seconds(pid):
    """User + system CPU of a process and its threads so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def peers_request(n):
    lines = ["set=1"]
    for i in range(n):
        lines.append("public_key=" + secrets.token_bytes(32).hex())
        # 10.0.0.0/8 and beyond: one /32 each, distinct.
        a = 10 + (i >> 24)
        lines.append(f"allowed_ip={a}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}/32")
    return "\n".join(lines) + "\n\n"


def timed(f):
    start = time.monotonic()
    out = f()
    return time.monotonic() - start, out


def wg_show_while(iface, stop, samples):
    """`wg show IFACE` every 50 ms until `stop`; records each call's time (None: it failed or took >10 s)."""
    while not stop.is_set():
        start = time.monotonic()
        try:
            subprocess.run(["wg", "show", iface], capture_output=True, timeout=10, check=True)
            samples.append(time.monotonic() - start)
        except (subprocess.SubprocessError, OSError):
            samples.append(None)
        time.sleep(0.05)


LOADGEN = os.path.join(ROOT, "target", "release", "fastwire-loadgen")
SERVER_ADDR, CLIENT_ADDR, SERVER_PORT = "10.77.90.1", "10.77.90.2", 51900
SOURCES = 200


def clients_request(n):
    """A set=1 of fastwire-loadgen's first N clients (seed 1) as peers."""
    conf = subprocess.run([LOADGEN, "clients-config", "--seed", "1", "--count", str(n)],
                          capture_output=True, text=True, check=True).stdout
    lines = ["set=1"]
    for line in conf.splitlines():
        if line.startswith("PublicKey = "):
            lines.append("public_key=" + base64.b64decode(line.split(" = ")[1]).hex())
        elif line.startswith("AllowedIPs = "):
            lines.append("allowed_ip=" + line.split(" = ")[1])
    return "\n".join(lines) + "\n\n"


def veth_pair(ns, client_ns):
    subprocess.run(["ip", "netns", "add", client_ns], check=True)
    run = lambda *c: subprocess.run(list(c), check=True)
    run("ip", "link", "add", "fwsc0", "netns", ns, "type", "veth", "peer", "fwsc1", "netns", client_ns)
    run("ip", "-n", ns, "addr", "add", f"{SERVER_ADDR}/24", "dev", "fwsc0")
    run("ip", "-n", client_ns, "addr", "add", f"{CLIENT_ADDR}/24", "dev", "fwsc1")
    # The clients' source addresses: a server under load limits handshakes per address.
    batch = "".join(f"addr add 10.77.90.{10 + k}/24 dev fwsc1\n" for k in range(SOURCES))
    subprocess.run(["ip", "-n", client_ns, "-batch", "-"], input=batch, text=True, check=True)
    for n, dev in ((ns, "fwsc0"), (client_ns, "fwsc1")):
        run("ip", "-n", n, "link", "set", dev, "up")
        run("ip", "-n", n, "link", "set", "lo", "up")


def run_one(args, n):
    ns = f"fwscale-{os.getpid()}"
    client_ns = ns + "-c"
    iface = f"fwscale{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    daemon = None
    try:
        if args.handshakes:
            veth_pair(ns, client_ns)
        if args.impl == "fastwire":
            cmd = [args.binary, "-f", iface]
            env = dict(os.environ)
        else:
            cmd = [args.binary, "-f", iface]
            env = dict(os.environ, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD="1")
        daemon = subprocess.Popen(["ip", "netns", "exec", ns] + cmd, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                errno_of(uapi(iface, "get=1\n\n", timeout=2))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{args.impl} did not serve {iface} within 10 s")
                time.sleep(0.05)
        key = secrets.token_bytes(32)
        public = subprocess.run(["wg", "pubkey"], input=base64.b64encode(key).decode(), capture_output=True,
                                text=True, check=True).stdout.strip()
        port = SERVER_PORT if args.handshakes else 0
        assert errno_of(uapi(iface, f"set=1\nprivate_key={key.hex()}\nlisten_port={port}\n\n")) == 0
        rss_empty = rss_kib(daemon.pid)
        request = clients_request(n) if args.handshakes else peers_request(n)
        stop = threading.Event()
        samples = []
        watcher = threading.Thread(target=wg_show_while, args=(iface, stop, samples))
        watcher.start()
        t_set, answer = timed(lambda: uapi(iface, request))
        stop.set()
        watcher.join()
        assert errno_of(answer) == 0, answer
        rss_full = rss_kib(daemon.pid)
        # An idle server: N peers, no traffic, no keepalives. What does it burn doing nothing?
        cpu_before = cpu_seconds(daemon.pid)
        time.sleep(args.idle_seconds)
        idle_cpu = cpu_seconds(daemon.pid) - cpu_before
        handshakes = {}
        if args.handshakes:
            flood = None
            if args.flood:
                # Valid-mac1 initiations from the client namespace's own address (not the clients'),
                # flat out, for as long as the clients run.
                flood = subprocess.Popen(["ip", "netns", "exec", client_ns, LOADGEN, "flood",
                                          "--target", f"{SERVER_ADDR}:{SERVER_PORT}", "--public-key", public,
                                          "--count", "1000000000", "--seconds", str(args.handshake_seconds + 1),
                                          "--ports", "200"],
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                time.sleep(1)
            out = subprocess.run(["ip", "netns", "exec", client_ns, LOADGEN, "clients",
                                  "--target", f"{SERVER_ADDR}:{SERVER_PORT}", "--public-key", public,
                                  "--seed", "1", "--active", str(min(n, args.handshakes)),
                                  "--count", "100000000", "--seconds", str(args.handshake_seconds),
                                  "--ports", str(SOURCES), "--source-base", "10.77.90.10"],
                                 capture_output=True, text=True, timeout=args.handshake_seconds + 120)
            flooded = flood.communicate(timeout=args.handshake_seconds + 60)[0].strip() if flood else None
            if out.returncode != 0:
                raise RuntimeError(f"fastwire-loadgen clients failed: {out.stderr.strip()}")
            handshakes = json.loads(out.stdout)
            if flooded is not None:
                handshakes["flood"] = flooded
        t_get, answer = timed(lambda: uapi(iface, "get=1\n\n"))
        got = answer.count("public_key=")
        assert got == n, f"get=1 lists {got} peers, not {n}"
        t_dump, _ = timed(lambda: subprocess.run(["wg", "show", iface, "dump"], capture_output=True,
                                                 timeout=600, check=True))
        t_remove, answer = timed(lambda: uapi(iface, "set=1\nreplace_peers=true\n\n"))
        assert errno_of(answer) == 0, answer
        time.sleep(0.5)
        rss_after = rss_kib(daemon.pid)
        shows = [s for s in samples if s is not None]
        return {
            "impl": args.impl,
            "peers": n,
            "set_s": round(t_set, 3),
            "get_s": round(t_get, 3),
            "wg_show_dump_s": round(t_dump, 3),
            "remove_all_s": round(t_remove, 3),
            "wg_show_during_set_max_s": round(max(shows), 3) if shows else None,
            "wg_show_during_set_failed": sum(1 for s in samples if s is None),
            "wg_show_during_set_calls": len(samples),
            "handshakes": handshakes,
            "idle_cpu_s": round(idle_cpu, 3),
            "idle_seconds": args.idle_seconds,
            "rss_empty_kib": rss_empty,
            "rss_full_kib": rss_full,
            "rss_per_peer_bytes": round((rss_full - rss_empty) * 1024 / n) if n else 0,
            "rss_after_removal_kib": rss_after,
        }
    finally:
        if daemon is not None:
            daemon.terminate()
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
        subprocess.run(["ip", "netns", "del", ns], check=False)
        if args.handshakes:
            subprocess.run(["ip", "netns", "del", client_ns], check=False)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impl", choices=["fastwire", "wireguard-go-2025"], default="fastwire")
    p.add_argument("--binary", help="default: target/release/fastwire or ../shared/peers/wireguard-go-2025")
    p.add_argument("--idle-seconds", type=float, default=5.0,
                   help="how long the configured server is watched idle for its CPU use (default 5)")
    p.add_argument("--handshakes", type=int, default=0, metavar="ACTIVE",
                   help="then handshake from ACTIVE of the peers (fastwire-loadgen clients)")
    p.add_argument("--handshake-seconds", type=float, default=10.0)
    p.add_argument("--flood", action="store_true",
                   help="while the clients handshake, flood the server with valid-mac1 initiations "
                        "(fastwire-loadgen flood, 200 source ports of one address)")
    p.add_argument("peers", type=int, nargs="+")
    args = p.parse_args()
    if args.binary is None:
        args.binary = os.path.join(ROOT, "target", "release", "fastwire") if args.impl == "fastwire" else WG_GO_2025
    rows = []
    for n in args.peers:
        row = run_one(args, n)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print()
    if args.handshakes:
        print("| impl | peers | active clients | handshakes/s | p50 | p99 | timeouts | cookie rounds |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            h = r["handshakes"]
            print(f"| {r['impl']} | {r['peers']} | {h['active']} | {h['handshakes_per_second']} | "
                  f"{h['p50_ms']} ms | {h['p99_ms']} ms | {h['timeouts']} | {h['cookie_rounds']} |")
        print()
    print("| impl | peers | set | get | wg show dump | remove all | wg show during set (max, failed/calls) | idle CPU | RSS per peer | RSS empty → full → after removal |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['impl']} | {r['peers']} | {r['set_s']} s | {r['get_s']} s | {r['wg_show_dump_s']} s | "
              f"{r['remove_all_s']} s | {r['wg_show_during_set_max_s']} s, {r['wg_show_during_set_failed']}/"
              f"{r['wg_show_during_set_calls']} | {r['idle_cpu_s']} s in {r['idle_seconds']:g} s | {r['rss_per_peer_bytes']} B | {r['rss_empty_kib']} → "
              f"{r['rss_full_kib']} → {r['rss_after_removal_kib']} KiB |")


if __name__ == "__main__":
    sys.exit(main())
