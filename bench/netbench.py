#!/usr/bin/env python3
"""netbench: measure userspace WireGuard tunnels against each other between two network namespaces.

Two namespaces joined by a veth pair stand in for two hosts (underlay 10.77.0.1 <-> 10.77.0.2). Each
system is brought up fresh per round (overlay 10.78.0.1 <-> 10.78.0.2) and measured with iperf3 and
ping: TCP 1 and 4 streams both ways, 64-byte UDP packets per second, ping RTT idle and beside 1 and 4 streams, the
tunnel processes' CPU seconds per GB moved and their peak RSS, and (fastwire) CPU ticks while idle.
Systems run interleaved over several rounds so all of them see the same machine load; the report gives
medians. Results go to bench/results/<date>.{md,json,svg}.

Run as root, normally through bench/run (which installs the tools and builds fastwire):
    bench/run                                   # 3 rounds x all implemented systems, 10 s per test
    bench/run --quick --systems direct,fastwire # smoke run: 1 round, 3 s tests
Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import math
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from shutil import which
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parent.parent
UNDERLAY = ("10.77.0.1", "10.77.0.2")
OVERLAY = ("10.78.0.1", "10.78.0.2")
PREFIX_LEN = 24
WG_PORT = 51820
IPERF_PORT = 5201
NS_PREFIX = "fwbench-"
IFACE_PREFIX = "fwb"
VETH = "veth0"
WG_SOCK_DIR = Path("/var/run/wireguard")
LOADGEN = REPO / "target" / "release" / "fastwire-loadgen"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# WireGuard overhead on IPv4: outer IP 20 + UDP 8 + header 16 + tag 16, plus room for IPv6 (40).
UNDERLAY_HEADROOM = 80


class BenchError(Exception):
    """A test or bring-up step failed; the message is shown in place of the result."""


# ---------------------------------------------------------------------------------------------------
# Systems under test. Adding one is a few lines here.
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class System:
    name: str
    # argv to start one side in the foreground, given the options and the interface name;
    # None means no tunnel: iperf3 runs straight over the veth.
    command: Callable[[argparse.Namespace, str], list[str]] | None = None
    env: dict[str, str] = field(default_factory=dict)
    # Prefix of the peer endpoint. `wg set` parses plain host:port only; anything else is written to
    # the UAPI socket verbatim.
    endpoint_scheme: str = ""
    idle_check: bool = False
    implemented: bool = True
    # Measured only when asked for (not part of the default list).
    on_request: bool = False
    # Scrape each side's Prometheus endpoint (METRICS_LISTEN) once a second while it runs.
    scrape_metrics: bool = False
    # Idle peers configured on each side beside the one carrying the traffic (a server's table); the
    # --extra-peers option sets it for every system.
    extra_peers: int = 0
    # Peers on B (the server) with live sessions: fastwire-loadgen clients in A's namespace hold them
    # with a keepalive a second each way (B's side as persistent keepalive); --keepalive-peers sets it
    # for every system.
    keepalive_peers: int = 0
    note: str = ""

    @property
    def tunnel(self) -> bool:
        return self.command is not None


def fastwire_command(opts: argparse.Namespace, iface: str, binary: Path | None = None) -> list[str]:
    argv = [str(binary or opts.fastwire), "-f", iface]
    if opts.workers is not None:
        argv += ["--workers", str(opts.workers)]
    return argv


# Where fastwire-scraped serves metrics, in each side's namespace.
METRICS_LISTEN = "127.0.0.1:9586"
# A scraper in each namespace: GET /metrics once a second, reading the whole answer; bounded to an hour.
SCRAPER = """import sys, time, urllib.request
end = time.monotonic() + 3600
while time.monotonic() < end:
    t = time.monotonic()
    try:
        with urllib.request.urlopen("http://%s/metrics" % sys.argv[1], timeout=2) as r:
            r.read()
    except OSError as e:
        print("scrape failed:", e, flush=True)
    time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
"""


def fastwire_scraped(opts: argparse.Namespace, iface: str) -> list[str]:
    return fastwire_command(opts, iface) + ["--metrics-listen", METRICS_LISTEN]


def fastwire_single_queue(opts: argparse.Namespace, iface: str) -> list[str]:
    return fastwire_command(opts, iface) + ["--tun-queues", "1"]


def fastwire_baseline(opts: argparse.Namespace, iface: str) -> list[str]:
    if opts.baseline is None:
        raise BenchError("fastwire-base needs --baseline PATH (another fastwire binary)")
    return fastwire_command(opts, iface, opts.baseline)


WG_GO_2025 = (REPO / ".." / "shared" / "peers" / "wireguard-go-2025").resolve()
GO_ENV = {"WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}


def wireguard_go_2025_command(opts: argparse.Namespace, iface: str) -> list[str]:  # noqa: ARG001
    return [str(WG_GO_2025), "-f", iface]


SYSTEMS = [
    System("direct"),
    System("fastwire", command=fastwire_command, idle_check=True, env={"FASTWIRE_LOG": "info"}),
    System(
        "fastwire-1q",
        command=fastwire_single_queue,
        idle_check=True,
        env={"FASTWIRE_LOG": "info"},
        note="fastwire --tun-queues 1: the single-queue data path of Windows and macOS, on Linux",
    ),
    System(
        "wireguard-go-2025",
        command=wireguard_go_2025_command,
        env=GO_ENV,
        implemented=WG_GO_2025.exists(),
        note="upstream wireguard-go v0.0.20250522 with TUN and UDP offloads (../shared/peers)",
    ),
    System(
        "wireguard-go",
        command=lambda opts, iface: ["wireguard-go", "-f", iface],
        env=GO_ENV,
    ),
    System(
        "fastwire-tcp",
        command=fastwire_command,
        endpoint_scheme="tcp://",
        idle_check=True,
        env={"FASTWIRE_LOG": "info"},
        note="WireGuard over TCP: A connects to B's TCP listener (Endpoint = tcp://...)",
    ),
    System(
        "fastwire-tcp-base",
        command=fastwire_baseline,
        endpoint_scheme="tcp://",
        idle_check=True,
        env={"FASTWIRE_LOG": "info"},
        on_request=True,
        note="the --baseline build over the TCP transport, for an A/B of a change to it",
    ),
    System(
        "fastwire-scraped",
        command=fastwire_scraped,
        idle_check=True,
        env={"FASTWIRE_LOG": "info"},
        on_request=True,
        scrape_metrics=True,
        note="fastwire with --metrics-listen, both sides scraped once a second (the metrics endpoint's A/B)",
    ),
    System(
        "fastwire-100k",
        command=fastwire_command,
        idle_check=True,
        env={"FASTWIRE_LOG": "info"},
        on_request=True,
        extra_peers=100_000,
        note="fastwire with 100,000 idle peers on each side beside the active one (issue 10's scale target)",
    ),
    System(
        "fastwire-rt",
        command=lambda opts, iface: fastwire_command(opts, iface) + ["--realtime"],
        idle_check=True,
        env={"FASTWIRE_LOG": "info"},
        on_request=True,
        note="fastwire --realtime: data-path workers SCHED_FIFO",
    ),
    System(
        "fastwire-1k-alive",
        command=fastwire_command,
        idle_check=True,
        env={"FASTWIRE_LOG": "info"},
        on_request=True,
        keepalive_peers=1000,
        note="fastwire with 1,000 more peers on B whose sessions are kept alive, a keepalive a second each "
             "way (issue 10's scale target)",
    ),
    System(
        "wireguard-go-2025-1k-alive",
        command=wireguard_go_2025_command,
        env=GO_ENV,
        implemented=WG_GO_2025.exists(),
        on_request=True,
        keepalive_peers=1000,
        note="wireguard-go-2025 with the same 1,000 kept-alive peers on B",
    ),
    System(
        "wireguard-go-2025-60k",
        command=wireguard_go_2025_command,
        env=GO_ENV,
        implemented=WG_GO_2025.exists(),
        on_request=True,
        extra_peers=60_000,
        note="wireguard-go-2025 with 60,000 idle peers on each side (it refuses more than 65,536)",
    ),
    System(
        "fastwire-base",
        command=fastwire_baseline,
        idle_check=True,
        env={"FASTWIRE_LOG": "info"},
        on_request=True,
        note="another fastwire build (--baseline PATH), for an interleaved A/B of a change",
    ),
]
SYSTEMS_BY_NAME = {s.name: s for s in SYSTEMS}


# ---------------------------------------------------------------------------------------------------
# Processes: every command has a timeout; long-running ones are tracked so cleanup can always kill them.
# ---------------------------------------------------------------------------------------------------

_live_processes: list[subprocess.Popen] = []


def short_cmd(cmd: list[str]) -> str:
    text = shlex.join(cmd)
    return text if len(text) <= 120 else text[:117] + "..."


def tail(text: str, limit: int = 300) -> str:
    """The end of some output on one line, without the box drawing of wireguard-go's banner."""
    text = " ".join(re.sub("[\u2500-\u257f]", " ", text).split())
    return text if len(text) <= limit else "..." + text[-limit:]


def run(
    cmd: list[str], timeout: float, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{short_cmd(cmd)}: no answer within {timeout:.0f} s") from None
    except OSError as e:
        raise BenchError(f"{short_cmd(cmd)}: {e}") from None
    if check and done.returncode != 0:
        raise BenchError(
            f"{short_cmd(cmd)}: exit {done.returncode}: {tail(done.stderr or done.stdout)}"
        )
    return done


def spawn(
    cmd: list[str], log: Path | None = None, env: dict[str, str] | None = None, stderr_to_log: bool = True
) -> subprocess.Popen:
    """Starts a background process. `ip netns exec` execs its program, so the PID is the program's."""
    out = open(log, "wb") if log else subprocess.DEVNULL
    err = subprocess.STDOUT if stderr_to_log else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
    except OSError as e:
        raise BenchError(f"{short_cmd(cmd)}: {e}") from None
    finally:
        if log:
            out.close()
    _live_processes.append(proc)
    return proc


def stop(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; always reaps."""
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        except ProcessLookupError:
            pass
    if proc in _live_processes:
        _live_processes.remove(proc)


def stop_all() -> None:
    for proc in list(_live_processes):
        stop(proc)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (all threads), in clock ticks."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        raise BenchError(f"tunnel process {pid} is gone") from None
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[11]) + int(fields[12])
    except (IndexError, ValueError):
        raise BenchError(f"cannot parse /proc/{pid}/stat") from None


def peak_rss_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.MULTILINE)
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------------------------------------------
# The testbed: two namespaces, a veth pair, and for tunnel systems one tunnel process per side.
# ---------------------------------------------------------------------------------------------------


def delete_namespace(ns: str) -> None:
    """Deletes one of our namespaces; any process still in it (a stray iperf3) is ours, killed by PID."""
    try:
        done = run(["ip", "netns", "pids", ns], timeout=5, check=False)
        for pid in done.stdout.split():
            if pid.isdigit():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        run(["ip", "netns", "del", ns], timeout=10, check=False)
    except BenchError:
        pass


def key_pair(workdir: Path, name: str) -> tuple[Path, str]:
    private = run(["wg", "genkey"], timeout=10).stdout.strip()
    public = run_with_input(["wg", "pubkey"], private, timeout=10).strip()
    path = workdir / f"{name}.key"
    path.write_text(private + "\n")
    return path, public


def run_with_input(cmd: list[str], data: str, timeout: float) -> str:
    try:
        done = subprocess.run(cmd, input=data, capture_output=True, text=True, timeout=timeout)
    except (subprocess.TimeoutExpired, OSError) as e:
        raise BenchError(f"{short_cmd(cmd)}: {e}") from None
    if done.returncode != 0:
        raise BenchError(f"{short_cmd(cmd)}: exit {done.returncode}: {tail(done.stderr)}")
    return done.stdout


def uapi_set(iface: str, lines: list[str], timeout: float = 5.0) -> None:
    """Configures a device through its UAPI socket, for settings `wg set` cannot express."""
    request = ("set=1\n" + "".join(line + "\n" for line in lines) + "\n").encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(WG_SOCK_DIR / f"{iface}.sock"))
            sock.sendall(request)
            reply = b""
            while not reply.endswith(b"\n\n") and len(reply) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except OSError as e:
            raise BenchError(f"UAPI {iface}: {e}") from None
    if b"errno=0\n" not in reply:
        raise BenchError(f"UAPI {iface} refused the configuration: {tail(reply.decode(errors='replace'))}")


def uapi_get(iface: str, timeout: float = 10.0) -> str:
    """The device's `get=1` answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(WG_SOCK_DIR / f"{iface}.sock"))
            sock.sendall(b"get=1\n\n")
            reply = b""
            while not reply.endswith(b"\n\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except OSError as e:
            raise BenchError(f"UAPI {iface}: {e}") from None
    return reply.decode(errors="replace")


def key_hex(base64_key: str) -> str:
    return base64.b64decode(base64_key).hex()


class Testbed:
    def __init__(self, run_id: str, workdir: Path, opts: argparse.Namespace):
        self.ns = (f"{NS_PREFIX}{run_id}-a", f"{NS_PREFIX}{run_id}-b")
        self.iface = (f"{IFACE_PREFIX}{run_id}a", f"{IFACE_PREFIX}{run_id}b")
        self.workdir = workdir
        self.opts = opts
        self.system: System | None = None
        self.tunnels: list[subprocess.Popen] = []
        # Helpers beside the tunnels (metrics scrapers): stopped with them, not counted as tunnel CPU.
        self.sidecars: list[subprocess.Popen] = []
        self.peak_rss: list[int] = [0, 0]

    # -- addressing --------------------------------------------------------------------------------

    @property
    def target_b(self) -> str:
        """B's address as A should use it for traffic: through the tunnel if there is one."""
        assert self.system is not None
        return OVERLAY[1] if self.system.tunnel else UNDERLAY[1]

    def in_ns(self, side: int, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns[side], *cmd]

    # -- lifecycle ---------------------------------------------------------------------------------

    def up(self, system: System) -> float:
        """Creates everything for `system`; returns seconds from start to the first reply across it."""
        self.system = system
        started = time.monotonic()
        self._create_namespaces()
        if system.tunnel:
            self._start_tunnels(system)
        self._wait_for_path()
        return time.monotonic() - started

    def down(self) -> None:
        """Removes everything `up` made; safe to call more than once and after a partial `up`."""
        for proc in self.sidecars + self.tunnels:
            stop(proc)
        self.tunnels, self.sidecars = [], []
        for ns in self.ns:
            delete_namespace(ns)
        for iface in self.iface:
            (WG_SOCK_DIR / f"{iface}.sock").unlink(missing_ok=True)

    def _create_namespaces(self) -> None:
        self.down()
        a, b = self.ns
        for ns in self.ns:
            run(["ip", "netns", "add", ns], timeout=10)
        run(["ip", "link", "add", VETH, "netns", a, "type", "veth", "peer", "name", VETH, "netns", b], timeout=10)
        underlay_mtu = str(max(1500, self.opts.mtu + UNDERLAY_HEADROOM))
        for side, ns in enumerate(self.ns):
            run(["ip", "-n", ns, "addr", "add", f"{UNDERLAY[side]}/{PREFIX_LEN}", "dev", VETH], timeout=10)
            run(["ip", "-n", ns, "link", "set", VETH, "mtu", underlay_mtu, "up"], timeout=10)
            run(["ip", "-n", ns, "link", "set", "lo", "up"], timeout=10)

    def _start_tunnels(self, system: System) -> None:
        assert system.command is not None
        env = {**os.environ, **system.env}
        keys = [key_pair(self.workdir, f"{system.name}-{side}") for side in (0, 1)]
        for side in (0, 1):
            (WG_SOCK_DIR / f"{self.iface[side]}.sock").unlink(missing_ok=True)
            log = self.workdir / f"{system.name}-{side}.log"
            argv = self.in_ns(side, system.command(self.opts, self.iface[side]))
            self.tunnels.append(spawn(argv, log=log, env=env))
        self._wait_for_sockets()
        for side in (0, 1):
            self._configure(system, side, keys[side][0], keys[1 - side][1])
        extra = system.extra_peers or getattr(self.opts, "extra_peers", 0)
        if extra:
            for side in (0, 1):
                self._add_idle_peers(side, extra)
        alive = system.keepalive_peers or getattr(self.opts, "keepalive_peers", 0)
        if alive:
            self._add_kept_alive_peers(alive, keys[1][1])
        for side, ns in enumerate(self.ns):
            iface = self.iface[side]
            run(["ip", "-n", ns, "addr", "add", f"{OVERLAY[side]}/{PREFIX_LEN}", "dev", iface], timeout=10)
            run(["ip", "-n", ns, "link", "set", iface, "mtu", str(self.opts.mtu), "up"], timeout=10)
        if system.scrape_metrics:
            for side in (0, 1):
                log = self.workdir / f"{system.name}-{side}-scraper.log"
                self.sidecars.append(spawn(self.in_ns(side, ["python3", "-c", SCRAPER, METRICS_LISTEN]), log=log))

    def _wait_for_sockets(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_tunnels()
            if all((WG_SOCK_DIR / f"{i}.sock").exists() for i in self.iface):
                return
            time.sleep(0.05)
        raise BenchError(f"UAPI sockets did not appear within {timeout:.0f} s")

    def _configure(self, system: System, side: int, private_key: Path, peer_public: str) -> None:
        iface = self.iface[side]
        endpoint = f"{system.endpoint_scheme}{UNDERLAY[1 - side]}:{WG_PORT}"
        allowed = f"{OVERLAY[1 - side]}/32"
        if not system.endpoint_scheme:
            run(
                self.in_ns(side, ["wg", "set", iface, "private-key", str(private_key), "listen-port", str(WG_PORT),
                                  "peer", peer_public, "allowed-ips", allowed, "endpoint", endpoint]),
                timeout=10,
            )
            return
        # A stream transport has a client and a server: A connects, B listens.
        private_b64 = private_key.read_text().strip()
        lines = [f"private_key={key_hex(private_b64)}", f"listen_port={WG_PORT}"]
        if side == 1:
            lines.append(f"listen_tcp_port={WG_PORT}")
        lines.append(f"public_key={key_hex(peer_public)}")
        if side == 0:
            lines.append(f"endpoint={endpoint}")
        lines.append(f"allowed_ip={allowed}")
        uapi_set(iface, lines)

    def _add_idle_peers(self, side: int, count: int) -> None:
        """`count` more peers beside the one that carries the traffic, as on a server: random keys, one
        /32 each in 10.200.0.0/15, no endpoint, so they never send or receive anything."""
        lines = []
        for i in range(count):
            lines.append(f"public_key={os.urandom(32).hex()}")
            lines.append(f"allowed_ip=10.{200 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}/32")
        uapi_set(self.iface[side], lines, timeout=120)

    def _add_kept_alive_peers(self, count: int, public_b: str) -> None:
        """`count` peers on B that are real clients (fastwire-loadgen in A's namespace, from its own
        ports): each completes a handshake, then both ends send a keepalive a second, so B's timers,
        index table and receive path carry `count` live sessions beside the measured traffic."""
        if not LOADGEN.exists():
            raise BenchError(f"no {LOADGEN}: cargo build --release -p fastwire-loadgen")
        conf = run([str(LOADGEN), "clients-config", "--seed", "1", "--count", str(count)], timeout=60).stdout
        lines = []
        for line in conf.splitlines():
            if line.startswith("PublicKey = "):
                lines.append(f"public_key={key_hex(line.split(' = ', 1)[1])}")
                lines.append("persistent_keepalive_interval=1")
            elif line.startswith("AllowedIPs = "):
                lines.append(f"allowed_ip={line.split(' = ', 1)[1]}")
        uapi_set(self.iface[1], lines, timeout=60)
        assert self.system is not None
        log = self.workdir / f"{self.system.name}-clients.log"
        self.sidecars.append(spawn(self.in_ns(0, [
            str(LOADGEN), "clients", "--target", f"{UNDERLAY[1]}:{WG_PORT}", "--public-key", public_b,
            "--seed", "1", "--active", str(count), "--count", "1", "--seconds", "3600", "--keep-alive", "1",
            "--ports", "64"]), log=log))
        deadline = time.monotonic() + 30
        while True:
            answer = uapi_get(self.iface[1])
            live = answer.count("last_handshake_time_sec=") - answer.count("last_handshake_time_sec=0\n")
            if live >= count:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"only {live} of {count} kept-alive clients completed a handshake in 30 s")
            time.sleep(0.5)

    def _wait_for_path(self, attempts: int = 5) -> None:
        """The first ping also drives the handshake; give it a few tries."""
        for _ in range(attempts):
            done = run(self.in_ns(0, ["ping", "-n", "-c", "1", "-W", "2", self.target_b]), timeout=10, check=False)
            if done.returncode == 0:
                return
            self.check_tunnels()
        raise BenchError(f"no ping reply from {self.target_b} after {attempts} tries")

    # -- tunnel process observation ---------------------------------------------------------------

    def check_tunnels(self) -> None:
        for side, proc in enumerate(self.tunnels):
            code = proc.poll()
            if code is not None:
                log = self.workdir / f"{self.system.name}-{side}.log" if self.system else None
                text = log.read_text(errors="replace") if log and log.exists() else ""
                raise BenchError(f"tunnel process {side} exited with {code}: {tail(text) or 'no output'}")

    def tunnel_ticks(self) -> int:
        return sum(cpu_ticks(p.pid) for p in self.tunnels)

    def sample_rss(self) -> None:
        for side, proc in enumerate(self.tunnels):
            kib = peak_rss_kib(proc.pid)
            if kib is not None:
                self.peak_rss[side] = max(self.peak_rss[side], kib)

    # -- iperf3 -----------------------------------------------------------------------------------

    def iperf(self, client_args: list[str], seconds: float) -> dict:
        """One iperf3 test from A to B."""
        with self.iperf_server():
            done = run(self.iperf_client(client_args, seconds), timeout=seconds + 30, check=False)
        return parse_iperf(done.stdout, done.returncode, done.stderr)

    def iperf_client(self, args: list[str], seconds: float) -> list[str]:
        return self.in_ns(0, ["iperf3", "-c", self.target_b, "-p", str(IPERF_PORT), "-J",
                              "--connect-timeout", "3000", "-t", f"{seconds:g}", *args])

    @contextlib.contextmanager
    def iperf_server(self, timeout: float = 5.0) -> Iterator[subprocess.Popen]:
        """A one-off iperf3 server in B, so a failed test cannot leave a busy server behind."""
        server = spawn(self.in_ns(1, ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)]))
        try:
            deadline = time.monotonic() + timeout
            while True:
                if server.poll() is not None:
                    raise BenchError(f"iperf3 server exited with {server.returncode}")
                done = run(self.in_ns(1, ["ss", "-Hltn", f"sport = :{IPERF_PORT}"]), timeout=5, check=False)
                if done.stdout.strip():
                    break
                if time.monotonic() > deadline:
                    raise BenchError("iperf3 server did not start listening")
                time.sleep(0.05)
            yield server
        finally:
            stop(server, grace=1.0)


def parse_iperf(stdout: str, returncode: int | None, stderr: str = "") -> dict:
    try:
        result = json.loads(stdout)
    except json.JSONDecodeError:
        raise BenchError(f"iperf3 exit {returncode}: {tail(stderr or stdout) or 'no output'}") from None
    if not isinstance(result, dict):
        raise BenchError("iperf3: unexpected JSON")
    if result.get("error"):
        raise BenchError(f"iperf3: {result['error']}")
    return result


# ---------------------------------------------------------------------------------------------------
# Tests. Each returns a dict of numbers (or raises BenchError) and is described for the progress line.
# ---------------------------------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


PING_TIME = re.compile(r"time=([\d.]+) ms")
PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")


# Every ping here runs with `-W 1`: a reply later than that is lost to it.
PING_TIMEOUT_MS = 1000.0


def parse_ping(output: str) -> dict:
    """Percentiles over every ping sent, a lost one counted as the timeout: a tunnel that drops the
    pings it would have delayed must not read as faster than one that delivers them late."""
    rtts = [float(m) for m in PING_TIME.findall(output)]
    if not rtts:
        raise BenchError(f"no ping replies: {tail(output, 120)}")
    summary = PING_SUMMARY.search(output)
    sent = int(summary.group(1)) if summary else len(rtts)
    lost = max(0, sent - len(rtts))
    counted = rtts + [PING_TIMEOUT_MS] * lost
    result = {"p50_ms": percentile(counted, 50), "p99_ms": percentile(counted, 99), "max_ms": max(rtts),
              "replies": len(rtts)}
    if summary:
        result["sent"] = sent
        result["loss_pct"] = 100.0 * lost / sent if sent else 0.0
    return result


PINGER = REPO / "bench" / "pinger.py"


def ping_command(opts: argparse.Namespace, target: str, interval: str, count: int | None = None,
                 deadline: int | None = None) -> list[str]:
    """iputils ping (the default: what the targets were set with), or bench/pinger.py, which sleeps where
    ping busy-waits before each send (ping at -i 0.01 takes ~30 % of a core under load here)."""
    if getattr(opts, "pinger", "iputils") == "probe":
        cmd = ["python3", str(PINGER), "--interval", interval, "--timeout", "1"]
        cmd += ["--count", str(count)] if count is not None else ["--deadline", str(deadline)]
        return cmd + [target]
    cmd = ["ping", "-n", "-i", interval, "-W", "1"]
    cmd += ["-c", str(count)] if count is not None else ["-w", str(deadline)]
    return cmd + [target]


def test_ping_idle(bed: Testbed, opts: argparse.Namespace) -> dict:
    cmd = bed.in_ns(0, ping_command(opts, bed.target_b, "0.05", count=20))
    return parse_ping(run(cmd, timeout=30, check=False).stdout)


def tcp_test(streams: int, reverse: bool) -> Callable[[Testbed, argparse.Namespace], dict]:
    def test(bed: Testbed, opts: argparse.Namespace) -> dict:
        args = ["-P", str(streams)] + (["-R"] if reverse else [])
        before = bed.tunnel_ticks()
        result = bed.iperf(args, opts.seconds)
        after = bed.tunnel_ticks()
        return throughput_numbers(bed, result, after - before)

    return test


def throughput_numbers(bed: Testbed, result: dict, ticks: int) -> dict:
    try:
        received = result["end"]["sum_received"]
        numbers = {"mbit_s": received["bits_per_second"] / 1e6, "bytes": int(received["bytes"])}
        retransmits = result["end"].get("sum_sent", {}).get("retransmits")
    except (KeyError, TypeError):
        raise BenchError("iperf3 JSON lacks end.sum_received") from None
    if retransmits is not None:
        numbers["retransmits"] = retransmits
    if bed.tunnels:
        numbers["cpu_s"] = ticks / CLK_TCK
        if numbers["bytes"] > 0:
            numbers["cpu_s_per_gb"] = numbers["cpu_s"] / (numbers["bytes"] / 1e9)
    return numbers


def udp_socket_drops(pid: int, port: int) -> int:
    """The kernel's drop counter summed over the UDP sockets bound to PORT in PID's network namespace
    (/proc/PID/net/udp and udp6: the last column); 0 once they are gone."""
    drops = 0
    for table in ("udp", "udp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 13 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                drops += int(fields[-1])
    return drops


def test_udp64(bed: Testbed, opts: argparse.Namespace) -> dict:
    """64-byte UDP A->B as fast as iperf3 sends. Besides what iperf3's receiver read, counts what reached
    its socket and was dropped there (the socket's queue overflowed: the reading program, not the
    tunnel, was the limit), sampled every 50 ms from B's /proc while the test runs."""
    before = bed.tunnel_ticks()
    with bed.iperf_server() as server:
        receiver_drops = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal receiver_drops
            while not done.wait(0.05):
                receiver_drops = max(receiver_drops, udp_socket_drops(server.pid, IPERF_PORT))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            client = run(bed.iperf_client(["-u", "-b", "0", "-l", "64"], opts.seconds),
                         timeout=opts.seconds + 30, check=False)
        finally:
            done.set()
            sampler.join()
    result = parse_iperf(client.stdout, client.returncode, client.stderr)
    after = bed.tunnel_ticks()
    try:
        total = result["end"]["sum"]
        delivered = int(total["packets"]) - int(total["lost_packets"])
        seconds = float(total["seconds"])
    except (KeyError, TypeError, ValueError):
        raise BenchError("iperf3 JSON lacks end.sum.packets/lost_packets") from None
    if seconds <= 0:
        raise BenchError("iperf3 reported a zero-length UDP test")
    numbers = {
        "kpps": delivered / seconds / 1e3,
        "delivered": delivered,
        "sent": int(total["packets"]),
        "loss_pct": float(total.get("lost_percent", 0.0)),
        "receiver_socket_drops": receiver_drops,
        "reached_kpps": (delivered + receiver_drops) / seconds / 1e3,
    }
    if bed.tunnels:
        numbers["cpu_s"] = (after - before) / CLK_TCK
    return numbers


def ping_under_load(streams: int) -> Callable[[Testbed, argparse.Namespace], dict]:
    """Ping every 10 ms while STREAMS TCP streams run A->B: the queueing the tunnel adds under load."""

    def test(bed: Testbed, opts: argparse.Namespace) -> dict:
        load_log = bed.workdir / "load.json"
        with bed.iperf_server():
            before = bed.tunnel_ticks()
            load = spawn(bed.iperf_client(["-P", str(streams)], opts.seconds), log=load_log, stderr_to_log=False)
            try:
                time.sleep(0.5)  # let TCP ramp up so the pings meet full queues
                deadline = max(1, int(opts.seconds - 1))
                ping = run(bed.in_ns(0, ping_command(opts, bed.target_b, "0.01", deadline=deadline)),
                           timeout=deadline + 15, check=False)
                load.wait(timeout=opts.seconds + 30)
            except subprocess.TimeoutExpired:
                raise BenchError("the iperf3 load did not finish") from None
            finally:
                stop(load, grace=1.0)
            after = bed.tunnel_ticks()
        numbers = parse_ping(ping.stdout)
        try:
            load_result = parse_iperf(load_log.read_text(errors="replace"), load.returncode)
            numbers["load"] = throughput_numbers(bed, load_result, after - before)
        except BenchError as e:
            numbers["load"] = {"error": str(e)}
        return numbers

    return test


def test_idle(bed: Testbed, opts: argparse.Namespace) -> dict:
    """Tunnel up, no traffic, no persistent keepalive: the processes should not wake up."""
    time.sleep(2)  # let the last test's teardown traffic finish
    ticks = [cpu_ticks(p.pid) for p in bed.tunnels]
    time.sleep(opts.idle_seconds)
    used = [cpu_ticks(p.pid) - t for p, t in zip(bed.tunnels, ticks)]
    return {"ticks": sum(used), "ticks_per_side": used, "seconds": opts.idle_seconds, "clk_tck": CLK_TCK}


@dataclass(frozen=True)
class Test:
    key: str
    label: str
    run: Callable[[Testbed, argparse.Namespace], dict]
    describe: Callable[[dict], str]
    applies: Callable[[System], bool] = lambda system: True


def describe_throughput(r: dict) -> str:
    text = f"{r['mbit_s']:9.0f} Mbit/s"
    if "cpu_s_per_gb" in r:
        text += f"  {r['cpu_s_per_gb']:6.2f} CPU-s/GB"
    return text


def describe_ping(r: dict) -> str:
    text = f"p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  ({r['replies']} replies"
    if "loss_pct" in r:
        text += f", {r['loss_pct']:.0f}% lost"
    return text + ")"


TESTS = [
    Test("ping_idle", "ping idle", test_ping_idle, describe_ping),
    Test("tcp1_ab", "TCP 1 stream A->B", tcp_test(1, False), describe_throughput),
    Test("tcp1_ba", "TCP 1 stream B->A", tcp_test(1, True), describe_throughput),
    Test("tcp4_ab", "TCP 4 streams A->B", tcp_test(4, False), describe_throughput),
    Test("tcp4_ba", "TCP 4 streams B->A", tcp_test(4, True), describe_throughput),
    Test("udp64_ab", "UDP 64 B pay A->B", test_udp64,
         lambda r: f"{r['kpps']:9.1f} kpps read ({r['loss_pct']:.0f}% lost), "
                   f"{r.get('reached_kpps', 0):.1f} kpps reached the socket"),
    Test("ping_load1", "ping, TCP 1 A->B", ping_under_load(1), describe_ping),
    Test("ping_load", "ping, TCP 4 A->B", ping_under_load(4), describe_ping),
    Test("idle", "idle CPU", test_idle,
         lambda r: f"{r['ticks']} ticks in {r['seconds']:g} s", applies=lambda s: s.idle_check),
]
TCP_TESTS = ["tcp1_ab", "tcp1_ba", "tcp4_ab", "tcp4_ba"]


# ---------------------------------------------------------------------------------------------------
# The run: rounds x systems, interleaved.
# ---------------------------------------------------------------------------------------------------


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, opts: argparse.Namespace, systems: list[System]):
        self.opts = opts
        self.systems = systems
        self.workdir = Path(tempfile.mkdtemp(prefix=NS_PREFIX))
        self.bed = Testbed(str(os.getpid()), self.workdir, opts)
        self.rounds: dict[str, list[dict]] = {s.name: [] for s in systems}

    def run(self) -> None:
        for round_no in range(1, self.opts.rounds + 1):
            for system in self.systems:
                self.rounds[system.name].append(self.run_system(system, round_no))

    def run_system(self, system: System, round_no: int) -> dict:
        tag = f"[round {round_no}/{self.opts.rounds}] {system.name:<13}"
        record: dict = {"round": round_no, "started": now_iso(), "tests": {}}
        bed = self.bed
        bed.peak_rss = [0, 0]
        try:
            try:
                record["bring_up_s"] = bed.up(system)
                progress(f"{tag} {'up':<19} path ready in {record['bring_up_s']:.2f} s")
            except BenchError as e:
                record["error"] = f"bring-up: {e}"
                # Every cell this system would have filled shows the failure, the others stay n/a.
                failed = {"error": "bring-up failed", "bring_up_failed": True}
                record["tests"] = {t.key: dict(failed) for t in TESTS if t.applies(system)}
                if system.tunnel:
                    record["memory"] = dict(failed)
                progress(f"{tag} {'up':<19} ERROR {record['error']}")
                return record
            for test in TESTS:
                if not test.applies(system):
                    continue
                try:
                    bed.check_tunnels()
                    result = test.run(bed, self.opts)
                    line = test.describe(result)
                except BenchError as e:
                    result = {"error": str(e)}
                    line = f"ERROR {e}"
                record["tests"][test.key] = result
                bed.sample_rss()
                progress(f"{tag} {test.label:<19} {line}")
            if system.tunnel:
                if max(bed.peak_rss) > 0:
                    record["memory"] = {"peak_rss_kib": max(bed.peak_rss), "peak_rss_kib_per_side": list(bed.peak_rss)}
                else:
                    record["memory"] = {"error": "no VmHWM from the tunnel processes"}
                progress(f"{tag} {'peak RSS':<19} {max(bed.peak_rss) / 1024:9.1f} MiB per process")
        finally:
            bed.down()
            if any("error" in r for r in record["tests"].values()) or "error" in record:
                self.keep_logs(system, round_no)
        return record

    def keep_logs(self, system: System, round_no: int) -> None:
        """A failed cell keeps its tunnel logs: `<out>/logs/round<N>-<system>-<side>.log`."""
        dest = Path(self.opts.out) / "logs"
        for side in (0, 1):
            log = self.workdir / f"{system.name}-{side}.log"
            if log.exists():
                dest.mkdir(parents=True, exist_ok=True)
                target = dest / f"round{round_no}-{system.name}-{side}.log"
                target.write_bytes(log.read_bytes())
                progress(f"kept {target}")

    def cleanup(self) -> None:
        stop_all()
        self.bed.down()
        for path in sorted(self.workdir.glob("*"), reverse=True):
            path.unlink(missing_ok=True)
        try:
            self.workdir.rmdir()
        except OSError:
            pass


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def now_iso() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def remove_stale_testbeds() -> None:
    """Namespaces and sockets left by an earlier run that died without cleaning up (its PID is gone)."""
    done = run(["ip", "netns", "list"], timeout=10, check=False)
    for line in done.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(rf"{NS_PREFIX}(\d+)-[ab]", name)
        if match and not pid_alive(int(match.group(1))):
            delete_namespace(name)
            progress(f"removed stale namespace {name}")
    if WG_SOCK_DIR.is_dir():
        for sock in WG_SOCK_DIR.glob(f"{IFACE_PREFIX}*.sock"):
            match = re.fullmatch(rf"{IFACE_PREFIX}(\d+)[ab]\.sock", sock.name)
            if match and not pid_alive(int(match.group(1))):
                sock.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------
# Summaries: medians over rounds, and the issue's targets.
# ---------------------------------------------------------------------------------------------------


def metric_values(rounds: list[dict], test: str, key: str) -> tuple[list[float], int]:
    """The successful values of one metric over rounds, and how many rounds failed it."""
    values, errors = [], 0
    for record in rounds:
        result = record.get("memory") if test == "memory" else record["tests"].get(test)
        if result is None:
            continue
        if "error" in result:
            errors += 1
        elif key in result:
            values.append(result[key])
    return values, errors


def summarize(rounds: list[dict]) -> dict:
    metrics = {
        "memory": ["peak_rss_kib"],
        "ping_idle": ["p50_ms", "p99_ms"],
        "ping_load1": ["p50_ms", "p99_ms"],
        "ping_load": ["p50_ms", "p99_ms"],
        "udp64_ab": ["kpps", "reached_kpps"],
        "idle": ["ticks"],
        **{t: ["mbit_s", "cpu_s_per_gb"] for t in TCP_TESTS},
    }
    summary = {}
    for test, keys in metrics.items():
        for key in keys:
            values, errors = metric_values(rounds, test, key)
            if values:
                summary[f"{test}.{key}"] = {
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                    "n": len(values),
                    "errors": errors,
                }
            elif errors:
                summary[f"{test}.{key}"] = {"errors": errors}
    return summary


def median_of(summary: dict, metric: str) -> float | None:
    return summary.get(metric, {}).get("median")


@dataclass(frozen=True)
class Target:
    label: str
    metric: str
    unit: str
    digits: int
    goal: str
    # fastwire's median, wireguard-go's median (None when not measured) -> met?
    passes: Callable[[float, float | None], bool]
    needs_baseline: bool = True
    # Which system is measured, and against which (the TCP transport is judged against fastwire over UDP).
    subject: str = "fastwire"
    baseline: str = "wireguard-go-2025"


def idle_allowance(opts: argparse.Namespace) -> int:
    """~0 CPU: at most one clock tick per 10 s idle (0.1% of a core), and never less than one."""
    return max(1, round(opts.idle_seconds / 10))


def issue_targets(opts: argparse.Namespace) -> list[Target]:
    allowance = idle_allowance(opts)
    return [
        # Issue 12: against the fastest userspace WireGuard we know (wireguard-go with offloads, 2025).
        Target("single-stream TCP A->B", "tcp1_ab.mbit_s", "Mbit/s", 0, ">= 2x",
               lambda fw, wg: wg is not None and fw >= 2 * wg),
        Target("single-stream TCP B->A", "tcp1_ba.mbit_s", "Mbit/s", 0, ">= 2x",
               lambda fw, wg: wg is not None and fw >= 2 * wg),
        Target("CPU-s per GB, TCP 1 A->B", "tcp1_ab.cpu_s_per_gb", "s/GB", 2, "<= 0.5x",
               lambda fw, wg: wg is not None and fw <= wg / 2),
        Target("64-byte UDP delivered", "udp64_ab.kpps", "kpps", 1, ">= 5x",
               lambda fw, wg: wg is not None and fw >= 5 * wg),
        # The same test counted at the receiving socket's door: read by iperf3 or dropped because iperf3
        # could not read faster (on 2 cores the reading program is often the limit, not the tunnel).
        Target("64-byte UDP reaching the receiver's socket", "udp64_ab.reached_kpps", "kpps", 1, ">= 5x",
               lambda fw, wg: wg is not None and fw >= 5 * wg),
        Target("ping p99 under 4-stream load", "ping_load.p99_ms", "ms", 3, "<= 2 ms",
               lambda fw, wg: fw <= 2.0),
        Target("ping p99 beside one stream", "ping_load1.p99_ms", "ms", 3, "<= 1 ms",
               lambda fw, wg: fw <= 1.0),
        Target("idle CPU", "idle.ticks", "ticks", 0, f"~0 (<= {allowance} ticks)",
               lambda fw, wg: fw <= allowance, needs_baseline=False),
        # Issue 9: the single-queue data path (Windows, macOS) judged by its own overhead on Linux.
        Target("single queue: single-stream TCP A->B", "tcp1_ab.mbit_s", "Mbit/s", 0, ">= 0.9x multi-queue",
               lambda one, multi: multi is not None and one >= 0.9 * multi, subject="fastwire-1q",
               baseline="fastwire"),
        Target("single queue: CPU-s per GB", "tcp1_ab.cpu_s_per_gb", "s/GB", 2, "<= 1.1x multi-queue",
               lambda one, multi: multi is not None and one <= 1.1 * multi, subject="fastwire-1q",
               baseline="fastwire"),
        # Issue 4: the TCP transport.
        Target("TCP transport: single-stream TCP A->B", "tcp1_ab.mbit_s", "Mbit/s", 0, ">= 0.6x fastwire UDP",
               lambda tcp, udp: udp is not None and tcp >= 0.6 * udp, subject="fastwire-tcp", baseline="fastwire"),
        Target("TCP transport: ping p99 under 4-stream load", "ping_load.p99_ms", "ms", 3, "<= 5 ms",
               lambda tcp, udp: tcp <= 5.0, needs_baseline=False, subject="fastwire-tcp", baseline="fastwire"),
    ]


def evaluate_targets(targets: list[Target], summaries: dict) -> list[dict]:
    rows = []
    for target in targets:
        fw = median_of(summaries.get(target.subject, {}), target.metric)
        wg = median_of(summaries.get(target.baseline, {}), target.metric)
        row = {"target": target.label, "metric": target.metric, "unit": target.unit, "digits": target.digits,
               "system": target.subject, "value": fw, "baseline": target.baseline, "baseline_value": wg,
               "ratio": None, "goal": target.goal, "result": "n/a"}
        if fw is not None and wg:
            row["ratio"] = fw / wg
        if fw is not None and (wg is not None or not target.needs_baseline):
            row["result"] = "PASS" if target.passes(fw, wg) else "MISS"
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------
# Reports: text/markdown table, JSON, SVG.
# ---------------------------------------------------------------------------------------------------


def cell(summary: dict, metric: str, digits: int, rounds: int, scale: float = 1.0) -> str:
    entry = summary.get(metric)
    if entry is None:
        return "n/a"
    if "median" not in entry:
        return "error"
    text = f"{entry['median'] * scale:.{digits}f}"
    if entry["n"] < rounds:
        text += f" ({entry['n']}/{rounds})"
    return text


def pair_cell(summary: dict, test: str, rounds: int) -> str:
    p50 = cell(summary, f"{test}.p50_ms", 3, rounds)
    p99 = cell(summary, f"{test}.p99_ms", 3, rounds)
    return p50 if p50 in ("n/a", "error") else f"{p50} / {p99}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    def line(cells: list[str]) -> str:
        padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return "| " + " | ".join(padded) + " |"
    rule = "|" + "|".join(("-" * (w + 2)) if i == 0 else ("-" * (w + 1) + ":") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def results_table(summaries: dict, systems: list[System], rounds: int) -> str:
    header = ["system", "TCP1 A->B Mbit/s", "TCP1 B->A", "TCP4 A->B", "TCP4 B->A", "UDP64 kpps", "UDP64 at socket",
              "ping idle p50/p99 ms", "ping 1-stream p50/p99", "ping 4-stream p50/p99", "CPU-s/GB TCP1 A->B", "peak RSS MiB", "idle ticks"]
    rows = []
    for system in systems:
        s = summaries[system.name]
        rows.append([
            system.name,
            *(cell(s, f"{t}.mbit_s", 0, rounds) for t in TCP_TESTS),
            cell(s, "udp64_ab.kpps", 1, rounds),
            cell(s, "udp64_ab.reached_kpps", 1, rounds),
            pair_cell(s, "ping_idle", rounds),
            pair_cell(s, "ping_load1", rounds),
            pair_cell(s, "ping_load", rounds),
            cell(s, "tcp1_ab.cpu_s_per_gb", 2, rounds),
            cell(s, "memory.peak_rss_kib", 1, rounds, scale=1 / 1024),
            cell(s, "idle.ticks", 0, rounds),
        ])
    return markdown_table(header, rows)


def cpu_table(summaries: dict, systems: list[System], rounds: int) -> str:
    header = ["system (CPU-s per GB)", "TCP1 A->B", "TCP1 B->A", "TCP4 A->B", "TCP4 B->A"]
    rows = [[s.name, *(cell(summaries[s.name], f"{t}.cpu_s_per_gb", 2, rounds) for t in TCP_TESTS)]
            for s in systems if s.tunnel]
    return markdown_table(header, rows) if rows else ""


def targets_table(rows: list[dict]) -> str:
    header = ["target", "measured", "against", "ratio", "goal", "result"]
    body = []
    for row in rows:
        def value(system: str, v: float | None) -> str:
            return f"{system} n/a" if v is None else f"{system} {v:.{row['digits']}f} {row['unit']}"

        body.append([
            row["target"],
            value(row["system"], row["value"]),
            value(row["baseline"], row["baseline_value"]),
            "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}",
            row["goal"],
            row["result"],
        ])
    return markdown_table(header, body)


def machine_info(opts: argparse.Namespace) -> dict:
    def output(cmd: list[str]) -> str:
        try:
            done = run(cmd, timeout=10, check=False)
        except BenchError:
            return "unknown"
        return (done.stdout or done.stderr).strip() or "unknown"

    lscpu = output(["lscpu"])
    model = re.search(r"^Model name:\s*(.+)$", lscpu, re.MULTILINE)
    commit = output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = output(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    info = {
        "date": datetime.date.today().isoformat(),
        "started": now_iso(),
        "kernel": os.uname().release,
        "cpu_model": model.group(1).strip() if model else "unknown",
        "cores": os.cpu_count(),
        "git_commit": commit + (" (uncommitted changes)" if dirty not in ("", "unknown") else ""),
        "load_average_at_start": load_average(),
        "iperf3": output(["iperf3", "--version"]).splitlines()[0],
        "clk_tck": CLK_TCK,
    }
    if opts.fastwire.exists():
        info["fastwire_binary"] = str(opts.fastwire)
        info["fastwire_version"] = output([str(opts.fastwire), "--version"])
        built = datetime.datetime.fromtimestamp(opts.fastwire.stat().st_mtime).astimezone()
        info["fastwire_built"] = built.isoformat(timespec="seconds")
    info["wireguard_go_version"] = output(["wireguard-go", "--version"]).splitlines()[0]
    return info


def result_paths(out_dir: Path, date: str) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        stem = date if n == 1 else f"{date}-{n}"
        paths = {ext: out_dir / f"{stem}.{ext}" for ext in ("md", "json", "svg")}
        if not any(p.exists() for p in paths.values()):
            return paths
    raise BenchError(f"too many result files for {date} in {out_dir}")


def setup_text(opts: argparse.Namespace) -> str:
    workers = "default (one per CPU)" if opts.workers is None else str(opts.workers)
    return (
        f"Two network namespaces joined by veth ({UNDERLAY[0]} <-> {UNDERLAY[1]}); tunnels carry "
        f"{OVERLAY[0]} <-> {OVERLAY[1]}, MTU {opts.mtu}. {opts.rounds} interleaved round(s), {opts.seconds:g} s per "
        f"iperf3 test, idle check {opts.idle_seconds:g} s, fastwire workers: {workers}. Medians over rounds; "
        f"'(n/R)' marks a median over fewer rounds because some failed; min/max per round are in the JSON. "
        f"CPU-s/GB: utime+stime of both tunnel processes per 10^9 bytes received; peak RSS: VmHWM per process. "
        f"UDP64 kpps: 64-byte datagrams iperf3's receiver read; at socket: those plus what its socket's queue "
        f"dropped because it read too slowly (B's /proc/PID/net/udp, sampled every 50 ms). Ping percentiles "
        f"count a lost ping as ping's 1 s timeout (so a loss over 1 % shows as a p99 of 1000); pings by "
        + ("bench/pinger.py (sleeps between pings)." if getattr(opts, "pinger", "iputils") == "probe"
           else "iputils ping (busy-waits before each send).")
        + (f" Each side also holds {opts.extra_peers} idle peers (--extra-peers)." if opts.extra_peers else "")
        + (f" B also holds {opts.keepalive_peers} peers kept alive by real clients (--keepalive-peers)."
           if opts.keepalive_peers else "")
    )


def write_markdown(path: Path, svg_name: str, command: str, info: dict, opts: argparse.Namespace,
                   tables: dict[str, str], skipped: dict[str, str], errors: list[str]) -> None:
    lines = [
        f"# fastwire netns benchmark, {info['date']}",
        "",
        f"Command (root): `{command}`",
        "",
        f"Machine: kernel {info['kernel']}, {info['cpu_model']}, {info['cores']} cores; "
        f"load average {' '.join(map(str, info['load_average_at_start']))} at start, "
        f"{' '.join(map(str, info['load_average_at_end']))} at end; ran {info['started']} to {info['finished']}. "
        f"Commit {info['git_commit']}. {info.get('fastwire_version', 'fastwire: not found')} "
        f"(binary built {info.get('fastwire_built', 'n/a')}); {info['wireguard_go_version']}; {info['iperf3']}.",
        "",
        setup_text(opts),
        "",
        "## Results (medians)",
        "",
        tables["results"],
        "",
    ]
    if tables["cpu"]:
        lines += ["## CPU seconds per GB, every TCP test", "", tables["cpu"], ""]
    lines += ["## Targets (issue 3: fastwire vs wireguard-go; issue 4: fastwire over TCP vs over UDP)", "",
              tables["targets"], ""]
    if skipped:
        lines += ["## Not measured", ""] + [f"- {name}: {why}" for name, why in skipped.items()] + [""]
    if errors:
        lines += ["## Errors", ""] + [f"- {e}" for e in errors] + [""]
    lines += [f"![throughput and latency]({svg_name})", ""]
    path.write_text("\n".join(lines))


# -- SVG ------------------------------------------------------------------------------------------------

PALETTE = {"direct": "#8c8c8c", "fastwire": "#1f6fb5", "wireguard-go": "#e8862a", "fastwire-tcp": "#2e9e4f"}
EXTRA_COLORS = ["#9b59b6", "#c0392b", "#16a085", "#7f8c8d"]


def nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def axis_top(value: float, ticks: int = 5) -> tuple[float, float]:
    step = nice_step(value / ticks)
    return step * max(1, math.ceil(value / step - 1e-9)), step


def svg_text(x: float, y: float, text: str, size: int = 12, anchor: str = "middle", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" {extra}>{escape(text)}</text>'


def bar_panel(x0: float, y0: float, width: float, height: float, title: str, unit: str,
              groups: list[str], series: list[tuple[str, str, list[float | None]]], digits: int,
              cap: float | None = None, target: tuple[float, str] | None = None) -> list[str]:
    """A grouped bar chart. Bars above `cap` are cut with a break mark and keep their true label."""
    values = [v for _, _, vs in series for v in vs if v is not None]
    top_value = cap if cap else max(values, default=1.0)
    if target is not None:
        top_value = max(top_value, target[0])
    top, step = axis_top(top_value * 1.08 or 1.0)
    out = [svg_text(x0 + width / 2, y0 - 28, title, 14, extra='font-weight="bold"')]
    # Axis, grid, tick labels.
    tick = 0.0
    while tick <= top + step / 2:
        y = y0 + height - tick / top * height
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + width}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        out.append(svg_text(x0 - 6, y + 4, f"{tick:g}", 11, "end"))
        tick += step
    out.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 + height}" stroke="#333"/>')
    out.append(f'<line x1="{x0}" y1="{y0 + height}" x2="{x0 + width}" y2="{y0 + height}" stroke="#333"/>')
    ux, uy = x0 - 48, y0 + height / 2
    out.append(svg_text(ux, uy, unit, 12, extra=f'transform="rotate(-90 {ux} {uy:.1f})"'))
    group_width = width / max(1, len(groups))
    bar_width = min(56.0, group_width * 0.8 / max(1, len(series)))
    for g, group in enumerate(groups):
        gx = x0 + g * group_width + (group_width - bar_width * len(series)) / 2
        out.append(svg_text(x0 + (g + 0.5) * group_width, y0 + height + 18, group, 12))
        for s, (_, color, vs) in enumerate(series):
            value = vs[g]
            bx = gx + s * bar_width
            cx = bx + bar_width / 2
            if value is None:
                out.append(svg_text(cx, y0 + height - 4, "error", 9, extra='fill="#c0392b"'))
                continue
            clipped = value > top
            h = height if clipped else value / top * height
            by = y0 + height - h
            out.append(f'<rect x="{bx + 2:.1f}" y="{by:.1f}" width="{bar_width - 4:.1f}" height="{h:.1f}" '
                       f'fill="{color}"/>')
            if clipped:
                bk = y0 + 18
                bx2 = bx + bar_width
                out.append(f'<path d="M{bx:.1f} {bk + 5:.1f} L{bx2:.1f} {bk - 3:.1f} '
                           f'M{bx:.1f} {bk + 11:.1f} L{bx2:.1f} {bk + 3:.1f}" stroke="white" stroke-width="3"/>')
            out.append(svg_text(cx, by - 4, f"{value:.{digits}f}", 10))
    if target is not None:
        ty = y0 + height - target[0] / top * height
        dashed = 'stroke="#c0392b" stroke-dasharray="6 4"'
        out.append(f'<line x1="{x0}" y1="{ty:.1f}" x2="{x0 + width}" y2="{ty:.1f}" {dashed}/>')
        # Below the axis, where it cannot collide with a bar.
        ly = y0 + height + 36
        out.append(f'<line x1="{x0}" y1="{ly - 4}" x2="{x0 + 24}" y2="{ly - 4}" {dashed}/>')
        out.append(svg_text(x0 + 30, ly, target[1], 11, "start", extra='fill="#c0392b"'))
    return out


def render_svg(summaries: dict, systems: list[System], info: dict, opts: argparse.Namespace) -> str:
    width, height = 1000, 560
    colors = {}
    for i, s in enumerate(systems):
        colors[s.name] = PALETTE.get(s.name, EXTRA_COLORS[i % len(EXTRA_COLORS)])
    tcp_series = [(s.name, colors[s.name], [median_of(summaries[s.name], f"{t}.mbit_s") for t in TCP_TESTS])
                  for s in systems]
    # `direct` runs at veth speed, often 20x a tunnel: cap the axis at the tunnels so they stay readable.
    tunnel_values = [v for s, (_, _, vs) in zip(systems, tcp_series) if s.tunnel for v in vs if v is not None]
    all_values = [v for _, _, vs in tcp_series for v in vs if v is not None]
    cap = None
    if tunnel_values and max(all_values) > 1.6 * max(tunnel_values):
        cap = 1.3 * max(tunnel_values)
    tunnels = [s for s in systems if s.tunnel]
    ping_series = [(s.name, colors[s.name], [median_of(summaries[s.name], "ping_load.p99_ms")]) for s in systems]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="Helvetica, Arial, sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        svg_text(width / 2, 26, f"fastwire netns benchmark, {info['date']}", 17, extra='font-weight="bold"'),
        svg_text(width / 2, 46, f"{info['cpu_model']}, {info['cores']} cores, kernel {info['kernel']}, "
                 f"commit {info['git_commit']}; MTU {opts.mtu}, medians of {opts.rounds} round(s), "
                 f"{opts.seconds:g} s per test", 11, extra='fill="#555"'),
    ]
    lx = 90
    for s in systems:
        out.append(f'<rect x="{lx}" y="62" width="14" height="14" fill="{colors[s.name]}"/>')
        out.append(svg_text(lx + 20, 74, s.name, 12, "start"))
        lx += 40 + 8 * len(s.name)
    out += bar_panel(90, 130, 560, 340, "TCP throughput through the tunnel", "throughput (Mbit/s)",
                     ["1 stream A->B", "1 stream B->A", "4 streams A->B", "4 streams B->A"], tcp_series, 0, cap=cap)
    out += bar_panel(760, 130, 200, 340, "ping p99 under 4-stream load", "RTT p99 (ms)",
                     [""], ping_series, 2, target=(2.0, "target 2 ms"))
    notes = []
    if cap:
        notes.append("Bars with a white break exceed the axis; their labels give the true value (direct = veth limit).")
    if not tunnels:
        notes.append("No tunnel systems measured.")
    for i, note in enumerate(notes):
        out.append(svg_text(90, 530 + 16 * i, note, 11, "start", extra='fill="#555"'))
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    implemented = [s.name for s in SYSTEMS if s.implemented and not s.on_request]
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description="Benchmark fastwire against wireguard-go and the bare veth between two network namespaces. "
                    "Needs root.",
        epilog="Examples:\n  bench/run\n  bench/run --quick --systems direct,wireguard-go,fastwire\n"
               "  bench/run --rounds 5 --seconds 20 --workers 1\n\n"
               "Writes DIR/<date>.md, .json and .svg. Exit status 1 if any test failed (the failed cells\n"
               "read 'error' and the results are still written), 2 for bad usage, 130 when interrupted.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    parser.add_argument("--seconds", type=float, help="seconds per iperf3 test (default 10)")
    parser.add_argument("--idle-seconds", type=float, help="fastwire idle check length (default 30)")
    parser.add_argument("--systems", default=",".join(implemented),
                        help=f"comma-separated, from {', '.join(SYSTEMS_BY_NAME)} (default {','.join(implemented)})")
    parser.add_argument("--mtu", type=int, default=1420, help="MTU of every tunnel interface (default 1420)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 3 s tests, 5 s idle check")
    parser.add_argument("--fastwire", type=Path, default=REPO / "target" / "release" / "fastwire",
                        help="fastwire binary (default target/release/fastwire)")
    parser.add_argument("--workers", type=int, help="passed to fastwire as --workers N")
    parser.add_argument("--extra-peers", type=int, default=0, metavar="N",
                        help="N idle peers configured on each side beside the one carrying the traffic (a "
                             "server's table; wireguard-go refuses more than 65,536)")
    parser.add_argument("--keepalive-peers", type=int, default=0, metavar="N",
                        help="N more peers on B with live sessions: fastwire-loadgen clients in A's namespace "
                             "that handshake and then keep a keepalive a second going each way")
    parser.add_argument("--baseline", type=Path,
                        help="another fastwire binary (a build of the commit before a change), run as system "
                             "fastwire-base (or fastwire-tcp-base, if named) in the same interleaved rounds")
    parser.add_argument("--pinger", choices=["iputils", "probe"], default="iputils",
                        help="the ping beside the load: iputils ping (default) or bench/pinger.py, which "
                             "sleeps between pings where ping busy-waits")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="results directory")
    opts = parser.parse_args(argv)
    defaults = (1, 3.0, 5.0) if opts.quick else (3, 10.0, 30.0)
    opts.rounds = opts.rounds if opts.rounds is not None else defaults[0]
    opts.seconds = opts.seconds if opts.seconds is not None else defaults[1]
    opts.idle_seconds = opts.idle_seconds if opts.idle_seconds is not None else defaults[2]
    if opts.rounds < 1 or opts.seconds < 1 or opts.idle_seconds < 0:
        parser.error("--rounds and --seconds must be at least 1, --idle-seconds at least 0")
    if not 576 <= opts.mtu <= 9000:
        parser.error("--mtu must be between 576 and 9000")
    if not 0 <= opts.extra_peers <= 130_000:
        parser.error("--extra-peers must be between 0 and 130000")
    if not 0 <= opts.keepalive_peers <= 10_000:
        parser.error("--keepalive-peers must be between 0 and 10000")
    if opts.workers is not None and opts.workers < 1:
        parser.error("--workers must be at least 1")
    opts.fastwire = opts.fastwire.resolve()
    if opts.baseline is not None:
        opts.baseline = opts.baseline.resolve()
        if not any(name.strip().endswith("-base") for name in opts.systems.split(",")):
            opts.systems += ",fastwire-base"
    return opts


def select_systems(spec: str) -> tuple[list[System], dict[str, str]]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in SYSTEMS_BY_NAME]
    if unknown:
        raise BenchError(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS_BY_NAME)}")
    chosen = [SYSTEMS_BY_NAME[n] for n in dict.fromkeys(names)]
    skipped = {s.name: s.note for s in SYSTEMS if not s.implemented}
    return [s for s in chosen if s.implemented], skipped


def preflight(opts: argparse.Namespace, systems: list[System]) -> None:
    if os.geteuid() != 0:
        raise BenchError("needs root (network namespaces, TUN): run `sudo bench/run ...`")
    if not systems:
        raise BenchError("no implemented system selected")
    needed = {"ip": "iproute2", "iperf3": "iperf3", "ping": "iputils-ping", "ss": "iproute2"}
    if any(s.tunnel for s in systems):
        needed["wg"] = "wireguard-tools"
    if any(s.name == "wireguard-go" for s in systems):
        needed["wireguard-go"] = "wireguard-go"
    missing = sorted({pkg for tool, pkg in needed.items() if which(tool) is None})
    if missing:
        raise BenchError(f"missing tools: apt-get install {' '.join(missing)} (bench/run does this)")
    uses_fastwire = any(s.command is fastwire_command for s in systems)
    if uses_fastwire and not os.access(opts.fastwire, os.X_OK):
        raise BenchError(
            f"no fastwire binary at {opts.fastwire}: cargo build --release -p fastwire, or --fastwire PATH"
        )


def estimate_seconds(opts: argparse.Namespace, systems: list[System]) -> float:
    per_system = 7 * (opts.seconds + 1.5) + 4
    idle = sum(opts.idle_seconds + 2 for s in systems if s.idle_check)
    return opts.rounds * (len(systems) * per_system + idle)


def raise_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    opts = parse_args(argv)
    command = shlex.join([os.environ.get("NETBENCH_LAUNCHER") or sys.argv[0], *argv])
    try:
        systems, skipped = select_systems(opts.systems)
        for name, why in skipped.items():
            progress(f"{name}: skipped, {why}")
        preflight(opts, systems)
    except BenchError as e:
        print(f"netbench: {e}", file=sys.stderr)
        return 2
    os.umask(0o077)
    # Also when started from a shell that ignores SIGINT in background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_interrupt)
    signal.signal(signal.SIGHUP, raise_interrupt)
    remove_stale_testbeds()
    info = machine_info(opts)
    progress(f"{len(systems)} system(s) x {opts.rounds} round(s), {opts.seconds:g} s per test: "
             f"about {estimate_seconds(opts, systems) / 60:.0f} min")
    bench = Bench(opts, systems)
    interrupted = False
    try:
        bench.run()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # A second Ctrl-C must not abort the cleanup.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.cleanup()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if interrupted:
        progress("interrupted: cleaned up; no result files written")
        return 130
    info["finished"] = now_iso()
    info["load_average_at_end"] = load_average()

    summaries = {name: summarize(rounds) for name, rounds in bench.rounds.items()}
    targets = evaluate_targets(issue_targets(opts), summaries)
    errors = []
    for name, rounds in bench.rounds.items():
        for record in rounds:
            if "error" in record:
                errors.append(f"round {record['round']} {name}: {record['error']}")
            for test, result in record["tests"].items():
                if "error" in result and not result.get("bring_up_failed"):
                    errors.append(f"round {record['round']} {name} {test}: {result['error']}")
    tables = {
        "results": results_table(summaries, systems, opts.rounds),
        "cpu": cpu_table(summaries, systems, opts.rounds),
        "targets": targets_table(targets),
    }
    paths = result_paths(opts.out, info["date"])
    report = {
        "command": command,
        "machine": info,
        "options": {"rounds": opts.rounds, "seconds": opts.seconds, "idle_seconds": opts.idle_seconds,
                    "mtu": opts.mtu, "workers": opts.workers, "systems": [s.name for s in systems],
                    "fastwire": str(opts.fastwire)},
        "setup": setup_text(opts),
        "skipped": skipped,
        "systems": {name: {"rounds": rounds, "summary": summaries[name]} for name, rounds in bench.rounds.items()},
        "targets": targets,
        "errors": errors,
    }
    paths["json"].write_text(json.dumps(report, indent=2) + "\n")
    paths["svg"].write_text(render_svg(summaries, systems, info, opts))
    write_markdown(paths["md"], paths["svg"].name, command, info, opts, tables, skipped, errors)
    for path in paths.values():
        path.chmod(0o644)

    print()
    print(f"Medians over {opts.rounds} round(s), {opts.seconds:g} s per test, MTU {opts.mtu}:")
    print(tables["results"])
    if tables["cpu"]:
        print()
        print(tables["cpu"])
    print()
    print(tables["targets"])
    for name, why in skipped.items():
        print(f"{name}: not measured, {why}")
    if errors:
        print(f"\n{len(errors)} error(s):")
        for e in errors:
            print(f"  {e}")
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
