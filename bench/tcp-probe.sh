#!/usr/bin/env bash
# Where does the delay under load sit on the TCP transport? Two namespaces, fastwire A dialing B's TCP
# listener, iperf3 -P STREAMS for SECONDS with ping beside it, and the outer connection's queues sampled with
# `ss` every 200 ms (A's Send-Q, B's Recv-Q). Prints ping min/avg/max, throughput, the queue samples and
# A's drop counters. Root; needs iperf3, wg, python3.
#
# Usage: bench/tcp-probe.sh [SECONDS=9] [STREAMS=4]      FASTWIRE=path overrides target/release/fastwire
# Used for bench/RESULTS.md "The TCP transport: where the delay under load sits".
set -euo pipefail
SECONDS_LOAD=${1:-9}
STREAMS=${2:-4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FW=${FASTWIRE:-$ROOT/target/release/fastwire}
ID=$$
NA=fwtp-$ID-a NB=fwtp-$ID-b IA=fwtp$ID-a IB=fwtp$ID-b PORT=51002
cleanup() {
	pkill -f "fastwire -f fwtp$ID-" 2>/dev/null || true
	sleep 0.3
	ip netns del "$NA" 2>/dev/null || true
	ip netns del "$NB" 2>/dev/null || true
	rm -f "/var/run/wireguard/$IA.sock" "/var/run/wireguard/$IB.sock"
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

ip netns exec "$NB" iperf3 -s -1 -D
sleep 0.3
out=$(mktemp)
ip netns exec "$NA" iperf3 -c 10.78.9.2 -t "$SECONDS_LOAD" -P "$STREAMS" >"$out" 2>&1 &
iperf=$!
sleep 2
ip netns exec "$NA" ping -c $(((SECONDS_LOAD - 3) * 10)) -i 0.1 -q 10.78.9.2 | tail -1 &
ping=$!
echo "outer connection queues (bytes): A Recv-Q/Send-Q   B Recv-Q/Send-Q"
for _ in $(seq 1 $(((SECONDS_LOAD - 3) * 5))); do
	a=$(ip netns exec "$NA" ss -tnH state established "dport = :$PORT" | awk '{print $1"/"$2}')
	b=$(ip netns exec "$NB" ss -tnH state established "sport = :$PORT" | awk '{print $1"/"$2}')
	echo "  A $a   B $b"
	sleep 0.2
done
wait "$ping" "$iperf"
grep -E "SUM.*receiver|^\[ *5\].*receiver" "$out" | tail -1
rm -f "$out"
ip netns exec "$NA" "$FW" show "$IA" | grep -E "tcp|dropped" || true
