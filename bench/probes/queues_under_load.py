#!/usr/bin/env python3
"""Where a ping waits beside 4 TCP streams: brings up SYSTEM between two namespaces (as bench/run does),
runs iperf3 -P 4 (--streams N) for 10 s with a ping every 10 ms beside it, samples A's bytes below TCP (qdisc + TUN
ring, `ss` skmem t), A's TUN qdisc backlog and B's UDP receive queue, and prints them with the ping
p50/p99. --sched records 3 s of `perf sched` (run-queue delay per task, `perf sched latency`);
--ping-fifo / --tunnel-fifo run the ping / the tunnel threads SCHED_FIFO, to tell the scheduler's queue
from the tunnel's.

Run as root:  bench/probes/queues_under_load.py [--streams N] [--sched] [--ping-fifo] [--tunnel-fifo] [SYSTEM]
"""
import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import netbench as nb  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sched", action="store_true", help="perf sched record for 3 s, then perf sched latency")
    p.add_argument("--ping-fifo", action="store_true", help="run ping SCHED_FIFO (chrt -f 1)")
    p.add_argument("--tunnel-fifo", action="store_true", help="run the tunnel's threads SCHED_FIFO")
    p.add_argument("--streams", type=int, default=4, help="iperf3 streams A->B beside the ping (default 4)")
    p.add_argument("system", nargs="?", default="fastwire", choices=sorted(nb.SYSTEMS_BY_NAME))
    args = p.parse_args()
    opts = nb.parse_args(["--systems", args.system, "--rounds", "1"])
    workdir = Path("/tmp/fastwire-queues")
    workdir.mkdir(exist_ok=True)
    bed = nb.Testbed("u", workdir, opts)

    def ss(side, what):
        return subprocess.run(bed.in_ns(side, ["ss", "-Hnm", *what]), capture_output=True, text=True,
                              timeout=10).stdout

    try:
        bed.up(nb.SYSTEMS_BY_NAME[args.system])
        if args.tunnel_fifo:
            for t in bed.tunnels:
                subprocess.run(["chrt", "-a", "-f", "-p", "1", str(t.pid)], check=True)
        server = subprocess.Popen(bed.in_ns(1, ["iperf3", "-s", "-1", "-p", str(nb.IPERF_PORT)]),
                                  stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        client = subprocess.Popen(bed.in_ns(0, ["iperf3", "-c", nb.OVERLAY[1], "-p", str(nb.IPERF_PORT),
                                                "-t", "10", "-P", str(args.streams)]), stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        fifo = ["chrt", "-f", "1"] if args.ping_fifo else []
        ping = subprocess.Popen(bed.in_ns(0, [*fifo, "ping", "-n", "-i", "0.01", "-c", "500", nb.OVERLAY[1]]),
                                stdout=subprocess.PIPE, text=True)
        if args.sched:
            subprocess.run(["perf", "sched", "record", "-a", "-o", str(workdir / "sched.data"), "--", "sleep", "3"],
                           capture_output=True, timeout=60)
        below_tcp, backlog, udp_queue = [], [], []
        for _ in range(10):
            below_tcp.append(sum(int(x) for x in re.findall(r"skmem:\(r\d+,rb\d+,t(\d+)",
                                                           ss(0, ["-t", "state", "established"]))))
            udp_queue.append(sum(int(x) for x in re.findall(r"skmem:\(r(\d+)",
                                                           ss(1, ["-u", "-a", f"sport = :{nb.WG_PORT}"]))))
            out = subprocess.run(bed.in_ns(0, ["tc", "-s", "qdisc", "show", "dev", bed.iface[0]]),
                                 capture_output=True, text=True, timeout=10).stdout
            backlog.append(sum(int(x) for x in re.findall(r"backlog (\d+)b", out)))
            time.sleep(0.2)
        rtts = sorted(float(x) for x in re.findall(r"time=([\d.]+)", ping.communicate(timeout=60)[0]))
        print(client.communicate(timeout=60)[0].strip().splitlines()[-3])
        server.wait(timeout=10)
        med = lambda v: sorted(v)[len(v) // 2]
        print(f"A bytes below TCP (qdisc + TUN ring), all flows: median {med(below_tcp)} max {max(below_tcp)}")
        print(f"A TUN qdisc backlog: median {med(backlog)} max {max(backlog)}")
        print(f"B UDP receive queue: median {med(udp_queue)} max {max(udp_queue)}")
        if rtts:
            print(f"ping p50 {rtts[len(rtts) // 2]:.3f} ms p99 {rtts[int(len(rtts) * 0.99)]:.3f} ms ({len(rtts)} replies)")
        if args.sched:
            print(subprocess.run(["perf", "sched", "latency", "-i", str(workdir / "sched.data"), "--sort", "max"],
                                 capture_output=True, text=True, timeout=120).stdout[:2500])
    finally:
        bed.down()


if __name__ == "__main__":
    main()
