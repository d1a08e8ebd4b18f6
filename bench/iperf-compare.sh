#!/usr/bin/env bash
# Single-stream TCP through a tunnel between two network namespaces: fastwire vs Debian's wireguard-go,
# interleaved over ROUNDS rounds so both see the same machine load. Prints the median per system and the
# CPU seconds the tunnel processes spent per GB moved (from /proc/PID/stat).
#
# Usage (root):  bench/iperf-compare.sh [SECONDS] [ROUNDS]       e.g. bench/iperf-compare.sh 10 3
# Needs: iperf3, wireguard-go, wireguard-tools (wg), iproute2; the release build of fastwire.
set -euo pipefail
SECS=${1:-10}
ROUNDS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FASTWIRE=${FASTWIRE:-$ROOT/target/release/fastwire}
export WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1
NA=fwcmp-a NB=fwcmp-b IA=fwcmpa IB=fwcmpb
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.2
    ip netns del $NA 2>/dev/null || true
    ip netns del $NB 2>/dev/null || true
    rm -f /var/run/wireguard/$IA.sock /var/run/wireguard/$IB.sock
}
trap cleanup EXIT INT TERM

[ -x "$FASTWIRE" ] || { echo "build first: cargo build --release" >&2; exit 1; }
umask 077
KA=$(wg genkey) KB=$(wg genkey)
PA=$(echo "$KA" | wg pubkey) PB=$(echo "$KB" | wg pubkey)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run_one SYSTEM -> prints "bits_per_second cpu_seconds bytes"
run_one() {
    local system=$1 bin
    cleanup
    PIDS=()
    ip netns add $NA; ip netns add $NB
    ip link add veth-cmp netns $NA type veth peer name veth-cmp netns $NB
    ip -n $NA addr add 10.77.0.1/24 dev veth-cmp; ip -n $NB addr add 10.77.0.2/24 dev veth-cmp
    for n in $NA $NB; do ip -n $n link set veth-cmp up; ip -n $n link set lo up; done
    case $system in
        fastwire) bin=$FASTWIRE ;;
        wireguard-go) bin=wireguard-go ;;
    esac
    ip netns exec $NA "$bin" -f $IA >/dev/null 2>&1 & PIDS+=($!)
    ip netns exec $NB "$bin" -f $IB >/dev/null 2>&1 & PIDS+=($!)
    for _ in $(seq 100); do [ -S /var/run/wireguard/$IA.sock ] && [ -S /var/run/wireguard/$IB.sock ] && break; sleep 0.05; done
    ip netns exec $NA wg set $IA private-key <(echo "$KA") listen-port 51820 peer "$PB" allowed-ips 10.78.0.2/32 endpoint 10.77.0.2:51820
    ip netns exec $NB wg set $IB private-key <(echo "$KB") listen-port 51820 peer "$PA" allowed-ips 10.78.0.1/32 endpoint 10.77.0.1:51820
    ip -n $NA addr add 10.78.0.1/24 dev $IA; ip -n $NA link set $IA mtu 1420 up
    ip -n $NB addr add 10.78.0.2/24 dev $IB; ip -n $NB link set $IB mtu 1420 up
    ip netns exec $NA ping -c 1 -W 3 10.78.0.2 >/dev/null
    ip netns exec $NB iperf3 -s -1 >/dev/null 2>&1 & local server=$!
    sleep 0.3
    local before=$(( $(cpu_ticks ${PIDS[0]}) + $(cpu_ticks ${PIDS[1]}) ))
    local json
    json=$(ip netns exec $NA iperf3 -c 10.78.0.2 -t "$SECS" -J)
    local after=$(( $(cpu_ticks ${PIDS[0]}) + $(cpu_ticks ${PIDS[1]}) ))
    wait $server 2>/dev/null || true
    local hz; hz=$(getconf CLK_TCK)
    python3 -c '
import json,sys
d=json.loads(sys.argv[1]); r=d["end"]["sum_received"]
print(r["bits_per_second"], (int(sys.argv[2]))/int(sys.argv[3]), r["bytes"])' "$json" "$((after - before))" "$hz"
}

declare -A RESULTS
for round in $(seq "$ROUNDS"); do
    for system in fastwire wireguard-go; do
        printf 'round %d/%d  %-13s ' "$round" "$ROUNDS" "$system" >&2
        line=$(run_one $system)
        RESULTS[$system]+="$line;"
        echo "$line" | awk '{printf "%7.0f Mbit/s  %5.1f CPU-s/GB\n", $1/1e6, $2/($3/1e9)}' >&2
    done
done
cleanup
echo
echo "date: $(date -u +%F)  kernel: $(uname -r)  cpu: $(lscpu | sed -n 's/^Model name: *//p')  cores: $(nproc)"
echo "single-stream TCP, ${SECS} s, MTU 1420, medians of ${ROUNDS} interleaved rounds"
printf '| system | Mbit/s | CPU-s per GB (both tunnel processes) |\n|---|---:|---:|\n'
for system in fastwire wireguard-go; do
    echo "${RESULTS[$system]}" | tr ';' '\n' | grep . | python3 -c '
import sys,statistics
rows=[list(map(float,l.split())) for l in sys.stdin]
bps=statistics.median(r[0] for r in rows); cpu=statistics.median(r[1]/(r[2]/1e9) for r in rows)
print(f"| {sys.argv[1]} | {bps/1e6:.0f} | {cpu:.1f} |")' "$system"
done
