#!/usr/bin/env python3
"""Wake-ups one idle ping takes through a tunnel: brings up SYSTEM between two namespaces (as bench/run
does), sends COUNT pings 10 ms apart, and prints the ping summary, the tunnel processes' CPU ticks and,
per thread, the voluntary context switches (sleeps, so wake-ups) per ping.

Run as root:  bench/probes/ping_wakeups.py [--count 500] [SYSTEM] [-- bench/run options, e.g. --baseline PATH]
"""
import argparse
import glob
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import netbench as nb  # noqa: E402


def sleeps(pid):
    out = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            name = Path(task, "comm").read_text().strip()
            status = Path(task, "status").read_text()
            out[f"{name}:{Path(task).name}"] = int(status.split("\nvoluntary_ctxt_switches:")[1].split()[0])
        except (OSError, IndexError):
            pass
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=500, help="pings, 10 ms apart (1-10000)")
    p.add_argument("system", nargs="?", default="fastwire", choices=sorted(nb.SYSTEMS_BY_NAME))
    p.add_argument("bench_options", nargs="*")
    args = p.parse_args()
    if not 1 <= args.count <= 10_000:
        p.error("--count must be between 1 and 10000")
    opts = nb.parse_args(["--systems", args.system, "--rounds", "1", *args.bench_options])
    workdir = Path("/tmp/fastwire-ping-wakeups")
    workdir.mkdir(exist_ok=True)
    bed = nb.Testbed("w", workdir, opts)
    try:
        bed.up(nb.SYSTEMS_BY_NAME[args.system])
        time.sleep(1)
        before, ticks = [sleeps(t.pid) for t in bed.tunnels], bed.tunnel_ticks()
        done = subprocess.run(bed.in_ns(0, ["ping", "-n", "-q", "-c", str(args.count), "-i", "0.01", nb.OVERLAY[1]]),
                              capture_output=True, text=True, timeout=args.count * 0.05 + 30)
        after = [sleeps(t.pid) for t in bed.tunnels]
        print(done.stdout.strip().splitlines()[-1], "| tunnel CPU ticks", bed.tunnel_ticks() - ticks)
        for side in (0, 1):
            for thread, n in sorted(after[side].items()):
                d = n - before[side].get(thread, 0)
                if d:
                    print(f"{'AB'[side]} {thread}: {d / args.count:.2f} wake-ups per ping")
    finally:
        bed.down()


if __name__ == "__main__":
    main()
