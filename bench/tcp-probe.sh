#!/usr/bin/env bash
# Where does the delay under load sit on the TCP transport? Two namespaces, fastwire A dialing B's TCP
# listener, iperf3 -P STREAMS for SECONDS with ping beside it, and the outer connection's queues sampled with
# `ss` every 200 ms (A's Send-Q, B's Recv-Q). Prints ping percentiles, throughput, the queues' median/max and
# A's drop counters. Root; needs iperf3, wg, python3.
#
# Usage: bench/tcp-probe.sh [SECONDS=9] [STREAMS=4]      FASTWIRE=path overrides target/release/fastwire
#        RATE=200mbit bench/tcp-probe.sh ...   A's side of the underlay limited to RATE (tc tbf, 32 KB
#                                               burst, 4 ms of queue): a path slower than the tunnel
#        B_CPU=30 bench/tcp-probe.sh ...         B's fastwire held to 30 % of a CPU (cgroup v1 cpu quota, 10 ms
#                                               period): a receiver slower than the path
# Pings every 10 ms (p50/p90/p99/max and loss), A's and B's drop counters and outer-TCP retransmissions.
# Used for bench/RESULTS.md "The TCP transport: where the delay under load sits" and "The TCP transport's
# queues".
set -euo pipefail
SECONDS_LOAD=${1:-9}
STREAMS=${2:-4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FW=${FASTWIRE:-$ROOT/target/release/fastwire}
ID=$$
NA=fwtp-$ID-a NB=fwtp-$ID-b IA=fwtp$ID-a IB=fwtp$ID-b PORT=51002 CG=/sys/fs/cgroup/cpu/fwtp-$ID
cleanup() {
	pkill -f "fastwire (-f )?fwtp$ID-" 2>/dev/null || true
	sleep 0.3
	ip netns del "$NA" 2>/dev/null || true
	ip netns del "$NB" 2>/dev/null || true
	rm -f "/var/run/wireguard/$IA.sock" "/var/run/wireguard/$IB.sock"
	if [ -d "$CG" ]; then
		for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$CG" 2>/dev/null && break; sleep 0.2; done
	fi
}
trap cleanup EXIT
uapi() {
	python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1]); s.sendall(sys.stdin.buffer.read())
r = b""
while not r.endswith(b"\n\n"):
    c = s.recv(4096)
    if not c: break
    r += c
sys.exit(0 if b"errno=0" in r else 1)' "/var/run/wireguard/$1.sock"
}
hex() { base64 -d <<<"$1" | od -An -tx1 | tr -d ' \n'; }

ip netns add "$NA"
ip netns add "$NB"
ip link add "tp$ID" netns "$NA" type veth peer name "tq$ID" netns "$NB"
ip -n "$NA" addr add 10.77.9.1/24 dev "tp$ID"
ip -n "$NB" addr add 10.77.9.2/24 dev "tq$ID"
for ns in "$NA" "$NB"; do ip -n "$ns" link set lo up; done
ip -n "$NA" link set "tp$ID" up
ip -n "$NB" link set "tq$ID" up
if [ -n "${RATE:-}" ]; then
	ip netns exec "$NA" tc qdisc add dev "tp$ID" root tbf rate "$RATE" burst 32kb latency 4ms
fi
umask 077
ka=$(wg genkey) kb=$(wg genkey)
pa=$(wg pubkey <<<"$ka") pb=$(wg pubkey <<<"$kb")
ip netns exec "$NA" "$FW" "$IA"
ip netns exec "$NB" "$FW" "$IB"
printf 'set=1\nprivate_key=%s\nlisten_port=%s\nlisten_tcp_port=%s\npublic_key=%s\nallowed_ip=10.78.9.1/32\n\n' \
	"$(hex "$kb")" "$PORT" "$PORT" "$(hex "$pa")" | uapi "$IB"
printf 'set=1\nprivate_key=%s\npublic_key=%s\nendpoint=tcp://10.77.9.2:%s\nallowed_ip=10.78.9.2/32\n\n' \
	"$(hex "$ka")" "$(hex "$pb")" "$PORT" | uapi "$IA"
ip -n "$NA" addr add 10.78.9.1/24 dev "$IA"
ip -n "$NB" addr add 10.78.9.2/24 dev "$IB"
ip -n "$NA" link set "$IA" up
ip -n "$NB" link set "$IB" up
ip netns exec "$NA" ping -c 3 -i 0.2 -W 2 10.78.9.2 >/dev/null
if [ -n "${B_CPU:-}" ]; then
	mkdir "$CG"
	echo 10000 >"$CG/cpu.cfs_period_us"
	echo $((B_CPU * 100)) >"$CG/cpu.cfs_quota_us"
	pgrep -f -- " $IB\$" | while read -r pid; do echo "$pid" >"$CG/cgroup.procs"; done
	[ -n "$(cat "$CG/cgroup.procs")" ] || { echo "B_CPU: B's fastwire not found" >&2; exit 1; }
fi

ip netns exec "$NB" iperf3 -s -1 -D
sleep 0.3
out=$(mktemp)
ip netns exec "$NA" iperf3 -c 10.78.9.2 -t "$SECONDS_LOAD" -P "$STREAMS" >"$out" 2>&1 &
iperf=$!
sleep 2
pings=$(mktemp)
ip netns exec "$NA" ping -c $(((SECONDS_LOAD - 3) * 100)) -i 0.01 -W 1 10.78.9.2 >"$pings" &
ping=$!
samples=""
for _ in $(seq 1 $(((SECONDS_LOAD - 3) * 5))); do
	a=$(ip netns exec "$NA" ss -tnH state established "dport = :$PORT" | awk '{print $2}')
	b=$(ip netns exec "$NB" ss -tnH state established "sport = :$PORT" | awk '{print $1}')
	samples+="${a:-0} ${b:-0}"$'\n'
	sleep 0.2
done
python3 -c '
import statistics, sys
rows = [tuple(map(int, l.split())) for l in sys.argv[1].splitlines() if l.strip()]
for i, name in ((0, "A Send-Q"), (1, "B Recv-Q")):
    v = [r[i] for r in rows]
    print(f"outer connection {name}: median {statistics.median(v):.0f} max {max(v)} bytes ({len(v)} samples)")
' "$samples"
wait "$ping" "$iperf"
grep -E "SUM.*receiver|^\[ *5\].*receiver" "$out" | tail -1
rm -f "$out"
python3 - "$pings" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rtts = sorted(float(m) for m in re.findall(r"time=([0-9.]+)", text))
sent = re.search(r"(\d+) packets transmitted", text)
n = len(rtts)
if n:
    pct = lambda p: rtts[min(n - 1, int(n * p))]
    lost = 100 * (1 - n / int(sent.group(1))) if sent else float("nan")
    print(f"ping every 10 ms: {n} replies, p50 {pct(.5):.2f} p90 {pct(.9):.2f} p99 {pct(.99):.2f} "
          f"max {rtts[-1]:.2f} ms, {lost:.1f} % lost")
PY
rm -f "$pings"
echo "A (sender):"
ip netns exec "$NA" "$FW" show "$IA" | grep -E "tcp|dropped|  (tx|rx) " || true
echo "B (receiver):"
ip netns exec "$NB" "$FW" show "$IB" | grep -E "dropped|  (tx|rx) " || true
echo "A outer + inner TCP retransmissions: $(ip netns exec "$NA" nstat -az TcpRetransSegs | awk '/TcpRetransSegs/ {print $2}')"
