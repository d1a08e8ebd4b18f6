#!/usr/bin/env bash
# Profile fastwire under load: two namespaces, a fastwire tunnel, iperf3 through it, `perf record -g` on
# both tunnel processes, a flat report and (if inferno or FlameGraph is installed) a flame graph.
# Also used for the quick A/B checks in bench/RESULTS.md (PERF=0: just iperf3 and the ping under load).
#
# Usage (root):  bench/profile.sh [SECONDS] [STREAMS]        e.g. bench/profile.sh 8 1
#   FASTWIRE=path   binary (default target/release/fastwire)   PERF=0  skip perf
#   FASTWIRE_ARGS="--tun-queues 1"   extra daemon arguments
#   OUT=dir         where perf.data / report.txt / flame.svg go (default /tmp/fastwire-profile)
#   IPERF_ARGS="-u -b 0 -l 64"   extra iperf3 client arguments (this one: the 64-byte UDP test)
#   PERF_ALL=1      profile the whole machine (iperf3, softirqs), not just the two tunnel processes
#   PINGER=probe    ping beside the load with bench/pinger.py (default: iputils ping, which busy-waits
#                   before each send; the probe sleeps)
#   COUNTERS=1      print where packets were dropped: each side's UDP counters (nstat), TUN and veth
#                   link drops, and fastwire's own drop counters (fastwire show --json)
#   FLOOD=initiation|junk  also flood B's port from A's namespace during the run (target/release/
#                   fastwire-loadgen, FLOOD_RATE datagrams/s, default 350000; FLOOD_SEND=separate|gso)
set -euo pipefail
SECS=${1:-8}
STREAMS=${2:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FASTWIRE=${FASTWIRE:-$ROOT/target/release/fastwire}
FASTWIRE_ARGS=${FASTWIRE_ARGS:-}
OUT=${OUT:-/tmp/fastwire-profile}
NA=fwprof-a NB=fwprof-b IA=fwprofa IB=fwprofb
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    ip netns del $NA 2>/dev/null || true
    ip netns del $NB 2>/dev/null || true
    rm -f /var/run/wireguard/$IA.sock /var/run/wireguard/$IB.sock
}
trap cleanup EXIT INT TERM
cleanup
mkdir -p "$OUT"
umask 077
KA=$(wg genkey) KB=$(wg genkey)
PA=$(echo "$KA" | wg pubkey) PB=$(echo "$KB" | wg pubkey)
ip netns add $NA; ip netns add $NB
ip link add veth-prof netns $NA type veth peer name veth-prof netns $NB
ip -n $NA addr add 10.77.0.1/24 dev veth-prof; ip -n $NB addr add 10.77.0.2/24 dev veth-prof
for n in $NA $NB; do ip -n $n link set veth-prof up; ip -n $n link set lo up; done
ip netns exec $NA "$FASTWIRE" -f $IA $FASTWIRE_ARGS >"$OUT/a.log" 2>&1 & PIDS+=($!)
ip netns exec $NB "$FASTWIRE" -f $IB $FASTWIRE_ARGS >"$OUT/b.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do [ -S /var/run/wireguard/$IA.sock ] && [ -S /var/run/wireguard/$IB.sock ] && break; sleep 0.05; done
ip netns exec $NA wg set $IA private-key <(echo "$KA") listen-port 51820 peer "$PB" allowed-ips 10.78.0.2/32 endpoint 10.77.0.2:51820
ip netns exec $NB wg set $IB private-key <(echo "$KB") listen-port 51820 peer "$PA" allowed-ips 10.78.0.1/32
ip -n $NA addr add 10.78.0.1/24 dev $IA; ip -n $NA link set $IA mtu 1420 up
ip -n $NB addr add 10.78.0.2/24 dev $IB; ip -n $NB link set $IB mtu 1420 up
ip netns exec $NA ping -c 1 -W 3 10.78.0.2 >/dev/null
ip netns exec $NB iperf3 -s -1 >/dev/null 2>&1 &
sleep 0.3
# shellcheck disable=SC2086 # IPERF_ARGS is a list of arguments
ip netns exec $NA iperf3 -c 10.78.0.2 -t "$SECS" -P "$STREAMS" ${IPERF_ARGS:-} >"$OUT/iperf.txt" &
IPERF=$!
if [ -n "${FLOOD:-}" ]; then
    case $FLOOD in initiation) what=(--public-key "$PB") ;; junk) what=(--junk) ;; *) echo "FLOOD=initiation|junk" >&2; exit 2 ;; esac
    ip netns exec $NA "$ROOT/target/release/fastwire-loadgen" flood --target 10.77.0.2:51820 "${what[@]}" \
        --rate "${FLOOD_RATE:-350000}" --send "${FLOOD_SEND:-separate}" --seconds "$SECS" --count 1000000000 \
        >"$OUT/flood.txt" 2>&1 & PIDS+=($!)
fi
sleep 1
if [ "${PINGER:-iputils}" = iputils ]; then
    pinger=(ping -i 0.01 -c $(( (SECS - 2) * 100 )) 10.78.0.2)
else
    pinger=(python3 "$ROOT/bench/pinger.py" --interval 0.01 --count $(( (SECS - 2) * 100 )) 10.78.0.2)
fi
ip netns exec $NA "${pinger[@]}" 2>/dev/null | grep -oP 'time=\K[0-9.]+' | sort -n >"$OUT/rtt.txt" &
PING=$!
if [ "${PERF:-1}" = 1 ]; then
    if [ "${PERF_ALL:-0}" = 1 ]; then target=(-a); else target=(-p "${PIDS[0]},${PIDS[1]}"); fi
    perf record -e cpu-clock -g "${target[@]}" -o "$OUT/perf.data" -- sleep $((SECS - 2)) 2>/dev/null
fi
wait $IPERF $PING
if [ "${COUNTERS:-0}" = 1 ]; then
    for side in "A $NA $IA" "B $NB $IB"; do
        read -r name ns dev <<<"$side"
        echo "== $name: kernel UDP (nstat), links, fastwire drops"
        ip netns exec "$ns" nstat -az 2>/dev/null | grep -E '^Udp(InDatagrams|RcvbufErrors|SndbufErrors|InErrors) ' || true
        ip -n "$ns" -s -o link show dev "$dev" | sed 's/\\ */ | /g'
        ip -n "$ns" -s -o link show dev veth-prof | sed 's/\\ */ | /g'
        ip netns exec "$ns" "$FASTWIRE" show "$dev" --json 2>/dev/null |
            grep -oE '"(drop|rx|tx)_[a-z_]+": *[1-9][0-9]*' | sort | uniq || true
    done
fi
[ -n "${FLOOD:-}" ] && { wait "${PIDS[-1]}" || true; echo "flood: $(cat "$OUT/flood.txt")"; }
n=$(wc -l <"$OUT/rtt.txt")
echo "throughput: $(grep -E 'receiver' "$OUT/iperf.txt" | tail -1 | awk '{print $(NF-2), $(NF-1)}')  streams: $STREAMS"
echo "ping under load: p50 $(sed -n "$((n / 2))p" "$OUT/rtt.txt") ms  p99 $(sed -n "$((n * 99 / 100))p" "$OUT/rtt.txt") ms  ($n replies)"
if [ "${PERF:-1}" = 1 ]; then
    perf report -i "$OUT/perf.data" --no-children --percent-limit 1 --stdio 2>/dev/null |
        grep -E '^ +[0-9]' >"$OUT/report.txt" || true
    echo "top of the profile ($OUT/report.txt):"
    head -20 "$OUT/report.txt"
    if command -v inferno-collapse-perf >/dev/null; then
        perf script -i "$OUT/perf.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph >"$OUT/flame.svg"
        echo "flame graph: $OUT/flame.svg"
    fi
fi
