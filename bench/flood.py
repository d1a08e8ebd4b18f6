#!/usr/bin/env python3
"""flood: what a handshake flood costs a tunnel that carries a bulk stream.

Two namespaces (netbench's testbed), one tunnel, one iperf3 TCP stream from A to B. From a third program in
A's namespace, handshake initiations with a valid mac1 (it needs only B's public key) flood B's port from
200 source ports: `fastwire-loadgen flood` (crates/loadgen; UDP GSO, a small slice of a core) by default,
or with `--flooder python` tests/e2e/handshake_flood.py (one send per datagram, a whole core of the two).
Per system and round, interleaved:
  - throughput alone, under the flood, and alone again: the ratio (the figure of merit) divides the flooded
    throughput by the mean of the two alone, so a host whose speed drifts during a round (this shared VM's
    does, by a third within a minute) moves both sides of it alike;
  - what the flood alone costs B: CPU-seconds per million flood datagrams, over 3 s with no data flowing
    (a figure that does not depend on the host's throughput of the moment);
  - a fresh handshake during the flood: A forgets B (peer removed and re-added) and pings until a reply;
  - B's resident memory before and after, and (fastwire) B's drop counters.
Systems: fastwire, wireguard-go-2025 (../shared/peers, the fastest userspace WireGuard we know), and
Debian's wireguard-go. `--kinds initiation,junk` also floods with random datagrams of the same size (no
valid mac1), in the same rounds: the ratio under junk is the floor the flood's datagrams and the flooder's
own CPU set, so the gap between the two is what the handshake path costs.
Run as root:  bench/flood.py [--rounds 3] [--seconds 10] [--systems ...] [--kinds initiation,junk] [--extra-peers N]
Writes one JSON line per measurement to stdout and a summary table at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import netbench as nb  # noqa: E402

PY_FLOODER = nb.REPO / "tests" / "e2e" / "handshake_flood.py"
WG_GO_2025 = (nb.REPO / ".." / "shared" / "peers" / "wireguard-go-2025").resolve()
# Seconds of flood with no data flowing, over which B's CPU per flood datagram is measured.
FLOOD_COST_SECONDS = 3
GO_ENV = {"WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}

SYSTEMS = {
    "fastwire": nb.SYSTEMS_BY_NAME["fastwire"],
    "wireguard-go-2025": nb.System("wireguard-go-2025", command=lambda o, i: [str(WG_GO_2025), "-f", i], env=GO_ENV),
    "wireguard-go": nb.SYSTEMS_BY_NAME["wireguard-go"],
}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def gbps(iperf: dict) -> float:
    try:
        return iperf["end"]["sum_received"]["bits_per_second"] / 1e9
    except (KeyError, TypeError):
        raise nb.BenchError("iperf3 JSON lacks end.sum_received") from None


def fresh_handshake_seconds(bed: nb.Testbed, peer_b: str, limit: float) -> float | None:
    """A forgets B and sets it up again; seconds until a ping gets through (None: not within `limit`)."""
    iface = bed.iface[0]
    nb.run(bed.in_ns(0, ["wg", "set", iface, "peer", peer_b, "remove"]), timeout=10)
    started = time.monotonic()
    nb.run(bed.in_ns(0, ["wg", "set", iface, "peer", peer_b, "endpoint", f"{nb.UNDERLAY[1]}:{nb.WG_PORT}",
                         "allowed-ips", f"{nb.OVERLAY[1]}/32"]), timeout=10)
    return time.monotonic() - started if ping_until_reply(bed, limit) else None


def ping_until_reply(bed: nb.Testbed, limit: float) -> bool:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        done = nb.run(bed.in_ns(0, ["ping", "-n", "-c", "1", "-W", "0.2", nb.OVERLAY[1]]), timeout=5, check=False)
        if done.returncode == 0:
            return True
    return False


def rate_of(flooder_log: str) -> int:
    """The rate the flooder reports having reached ("... (350000/s) ..."), 0 if it said nothing."""
    rate = re.search(r"\((\d+)/s\)", flooder_log)
    return int(rate.group(1)) if rate else 0


def measure(bed: nb.Testbed, system: nb.System, kind: str, opts: argparse.Namespace) -> dict:
    bed.up(system)
    peer_b = nb.run(bed.in_ns(1, ["wg", "show", bed.iface[1], "public-key"]), timeout=10).stdout.strip()
    alone = bed.iperf([], opts.seconds)
    pid_b = bed.tunnels[1].pid
    rss0 = rss_kib(pid_b)
    flood_for = opts.seconds + 12 + FLOOD_COST_SECONDS
    count = str(int(opts.rate * flood_for) if opts.rate else 10**9)
    if opts.flooder == "python":
        argv = ["python3", str(PY_FLOODER), nb.UNDERLAY[1], str(nb.WG_PORT), peer_b, "--count", count,
                "--seconds", str(flood_for), "--rate", str(opts.rate)] + (["--junk"] if kind == "junk" else [])
    else:
        argv = [str(opts.loadgen), "flood", "--target", f"{nb.UNDERLAY[1]}:{nb.WG_PORT}", "--count", count,
                "--seconds", str(flood_for), "--rate", str(opts.rate)]
        argv += ["--send", opts.send] + (["--junk"] if kind == "junk" else ["--public-key", peer_b])
    flooder = nb.spawn(bed.in_ns(0, argv), log=bed.workdir / "flooder.log")
    try:
        time.sleep(1)
        b_ticks0 = nb.cpu_ticks(pid_b)
        time.sleep(FLOOD_COST_SECONDS)
        flood_cost_ticks = nb.cpu_ticks(pid_b) - b_ticks0
        ticks0 = bed.tunnel_ticks()
        flooded = bed.iperf([], opts.seconds)
        ticks = bed.tunnel_ticks() - ticks0
        handshake = fresh_handshake_seconds(bed, peer_b, limit=8)
        rss1 = rss_kib(pid_b)
        flooder_ticks = nb.cpu_ticks(flooder.pid)
    finally:
        flooder.wait(timeout=flood_for + 10)
        nb.stop(flooder)
    # A system whose fresh handshake failed under the flood gets it done now, before the second alone run.
    if not ping_until_reply(bed, limit=15):
        raise nb.BenchError("no ping reply within 15 s after the flood")
    alone_after = bed.iperf([], opts.seconds)
    sent = (bed.workdir / "flooder.log").read_text().strip()
    stats = ""
    if system.name.startswith("fastwire"):
        done = nb.run(bed.in_ns(1, [str(opts.fastwire), "show", bed.iface[1]]), timeout=10, check=False)
        stats = " ".join(line.strip() for line in done.stdout.splitlines()
                         if any(k in line for k in ("queue", "cookie", "mac1", "rate")))
    bed.down()
    a0, a1, f = gbps(alone), gbps(alone_after), gbps(flooded)
    a = (a0 + a1) / 2
    per_million = flood_cost_ticks / nb.CLK_TCK / (rate_of(sent) * FLOOD_COST_SECONDS / 1e6) if rate_of(sent) else 0
    return {"system": system.name, "kind": kind, "alone_gbps": a, "alone_before_gbps": a0, "alone_after_gbps": a1,
            "flood_gbps": f, "ratio": f / a if a else 0, "flood_cpu_s_per_million": per_million,
            "handshake_s": handshake, "rss_before_mib": rss0 / 1024, "rss_after_mib": rss1 / 1024,
            "tunnel_cpu_s": ticks / nb.CLK_TCK, "flooder_cpu_s": flooder_ticks / nb.CLK_TCK, "flooder": sent,
            "flood_rate": rate_of(sent), "counters": stats}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/flood.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=0, help="flood datagrams per second (0 = flat out)")
    parser.add_argument("--systems", default="fastwire,wireguard-go-2025")
    parser.add_argument("--kinds", default="initiation",
                        help="what to flood with, in turn each round: initiation (valid mac1), junk (random)")
    parser.add_argument("--flooder", choices=("loadgen", "python"), default="loadgen",
                        help="loadgen: target/release/fastwire-loadgen (GSO trains; build it with cargo build "
                             "--release -p fastwire-loadgen); python: tests/e2e/handshake_flood.py")
    parser.add_argument("--send", choices=("separate", "gso"), default="separate",
                        help="loadgen only: separate = sendmmsg, each datagram its own packet (default); gso = "
                             "64-datagram GSO trains, which the receiver's UDP GRO takes whole")
    parser.add_argument("--loadgen", type=Path, default=nb.REPO / "target" / "release" / "fastwire-loadgen")
    parser.add_argument("--fastwire", type=Path, default=nb.REPO / "target" / "release" / "fastwire")
    parser.add_argument("--baseline", type=Path,
                        help="another fastwire binary (say, a build of main before a change), measured as "
                             "system fastwire-baseline and added to --systems")
    parser.add_argument("--extra-peers", type=int, default=0, metavar="N",
                        help="N idle peers on each side beside the one under test (a server's table)")
    opts = parser.parse_args(argv)
    if opts.baseline:
        baseline = opts.baseline.resolve()
        SYSTEMS["fastwire-baseline"] = nb.System("fastwire-baseline", command=lambda o, i: [str(baseline), "-f", i])
        opts.systems += ",fastwire-baseline"
    opts.mtu, opts.workers = 1420, None
    names = [n for n in opts.systems.split(",") if n]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s) {unknown}; choose from {list(SYSTEMS)}")
    if "wireguard-go-2025" in names and not WG_GO_2025.exists():
        parser.error(f"{WG_GO_2025} is missing")
    if opts.flooder == "loadgen" and not opts.loadgen.exists():
        parser.error(f"{opts.loadgen} is missing: cargo build --release -p fastwire-loadgen")
    kinds = [k for k in opts.kinds.split(",") if k]
    if not kinds or any(k not in ("initiation", "junk") for k in kinds):
        parser.error(f"--kinds takes initiation and/or junk, not {opts.kinds!r}")
    cells = [(n, k) for n in names for k in kinds]
    results: dict[tuple[str, str], list[dict]] = {c: [] for c in cells}
    with tempfile.TemporaryDirectory(prefix="fwflood-") as tmp:
        bed = nb.Testbed("fl", Path(tmp), opts)
        try:
            for rnd in range(opts.rounds):
                for name, kind in cells:
                    try:
                        r = measure(bed, SYSTEMS[name], kind, opts)
                    except nb.BenchError as e:
                        r = {"system": name, "kind": kind, "error": str(e)}
                        bed.down()
                    r["round"] = rnd + 1
                    print(json.dumps(r), flush=True)
                    results[(name, kind)].append(r)
        finally:
            bed.down()
            nb.stop_all()
    print("\n| system | flood | alone Gbit/s | under flood Gbit/s | ratio (rounds) | CPU-s per M flood datagrams "
          "| fresh handshake s | RSS before/after MiB | flood/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (name, kind), rs in results.items():
        ok = [r for r in rs if "error" not in r]
        if not ok:
            print(f"| {name} | {kind} | error | | | | | | |")
            continue
        med = lambda k: statistics.median(r[k] for r in ok)  # noqa: E731
        hs = [r["handshake_s"] for r in ok]
        hs_text = "/".join("timeout" if h is None else f"{h:.2f}" for h in hs)
        rounds = " / ".join(f"{r['ratio']:.2f}" for r in ok)
        print(f"| {name} | {kind} | {med('alone_gbps'):.2f} | {med('flood_gbps'):.2f} | {med('ratio'):.2f} ({rounds}) | "
              f"{med('flood_cpu_s_per_million'):.2f} | {hs_text} | "
              f"{med('rss_before_mib'):.0f}/{med('rss_after_mib'):.0f} | {med('flood_rate'):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
