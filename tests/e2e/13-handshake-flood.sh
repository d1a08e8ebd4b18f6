#!/usr/bin/env bash
# 13 handshake-flood: A (IMPL_A) is a server; B (IMPL_B) sends it a bulk TCP stream through the tunnel. From
# a third party in B's namespace, handshake initiations with a valid mac1 (it needs only A's public key)
# flood A's port from 200 source ports, a bounded number at a bounded rate. Checked:
#  - A stays up, its memory stays flat, and the stream keeps a share of its throughput alone;
#  - A answers the flood with cookie replies only within its budget (10/s per source, 5000/s in total):
#    it cannot be used as a reflector, and the rest of the flood is counted as dropped;
#  - a fresh handshake during the flood (B forgets A and sets it up again) completes within 2 s: A demands
#    a cookie, B resends at once with mac2 (fastwire as B; wireguard-go as B waits for its 5 s retry timer,
#    so it gets 7 s).
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A" "$IMPL_B"
require ping python3 iperf3

IPERF_PORT=5201
MEASURE_SECONDS=4
FLOOD_RATE=30000
FLOOD_SECONDS=12
FLOOD_PORTS=200
MIN_PERCENT=25
# fastwire resends its initiation as soon as a cookie arrives; wireguard-go keeps the cookie for its next
# retry (5 s, plus up to 1/3 s of jitter).
if [[ $IMPL_B == fastwire* ]]; then MAX_HANDSHAKE_MS=2000; else MAX_HANDSHAKE_MS=7000; fi
MAX_RSS_GROWTH_MIB=32

setup_pair
start_pair "" "10.77.0.1:$PORT_A"
check_ping b 10.78.0.1
ip netns exec "$(nsname a)" iperf3 -s -B 10.78.0.1 -p "$IPERF_PORT" >"$LOG_DIR/iperf3-server.log" 2>&1 &
wait_until 5 tcp_listening a "$IPERF_PORT" || fail "iperf3 server did not listen in A"

# measure NAME: B -> A through the tunnel for MEASURE_SECONDS (after 1 s of warm-up); Mbit/s in MBIT.
MBIT=0
measure() {
	local json="$LOG_DIR/iperf3-$1.json"
	timeout $((MEASURE_SECONDS + 20)) ip netns exec "$(nsname b)" \
		iperf3 -c 10.78.0.1 -p "$IPERF_PORT" -t "$MEASURE_SECONDS" -O 1 -J >"$json" 2>&1 ||
		fail "iperf3 B -> A ($1) failed: $(tail -c 300 "$json")"
	MBIT=$(python3 -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e6))' \
		"$json") || fail "cannot read iperf3's result in $json"
}

step "throughput alone"
measure alone
alone=$MBIT
log "B -> A alone: $alone Mbit/s"
rss0=$(daemon_rss_kib a)
cookies0=$(fw_stat a cookie_replies_sent)

step "flood A with $FLOOD_RATE valid-mac1 initiations per second from $FLOOD_PORTS ports for $FLOOD_SECONDS s"
ip netns exec "$(nsname b)" timeout $((FLOOD_SECONDS + 10)) python3 "$E2E_DIR/handshake_flood.py" \
	10.77.0.1 "$PORT_A" "$(pubkey a)" --count $((FLOOD_RATE * FLOOD_SECONDS)) --seconds "$FLOOD_SECONDS" \
	--rate "$FLOOD_RATE" --ports "$FLOOD_PORTS" >"$LOG_DIR/flood.log" 2>&1 &
flood_pid=$!
flood_t0=$(now_ms)
sleep 1
measure flood
flooded=$MBIT
log "B -> A under the flood: $flooded Mbit/s ($((flooded * 100 / (alone > 0 ? alone : 1))) % of alone)"

step "a fresh handshake during the flood"
wgc b set "$(ifname b)" peer "$(pubkey a)" remove || fail "wg set peer remove failed"
t0=$(now_ms)
wgc b set "$(ifname b)" peer "$(pubkey a)" endpoint "10.77.0.1:$PORT_A" allowed-ips 10.78.0.1/32,fd78::1/128 ||
	fail "wg set peer (again) failed"
ping_wait b 10.78.0.1 10 || fail "no ping through the tunnel within 10 s of the new handshake, under the flood"
handshake_ms=$(($(now_ms) - t0))
log "fresh handshake under the flood: first ping answered after $handshake_ms ms"
kill -0 "$flood_pid" 2>/dev/null || fail "the flood ended before the fresh handshake was tried: $(cat "$LOG_DIR/flood.log")"

wait "$flood_pid" || fail "handshake_flood.py failed: $(cat "$LOG_DIR/flood.log")"
flood_ms=$(($(now_ms) - flood_t0))
log "$(cat "$LOG_DIR/flood.log")"
sent=$(awk '/^sent/ { print $2 }' "$LOG_DIR/flood.log")
((sent > FLOOD_RATE * FLOOD_SECONDS / 4)) || fail "the flooder sent only ${sent:-0} initiations"

step "A after the flood"
daemon_alive a || fail "$IMPL_A died under the flood"
rss1=$(daemon_rss_kib a)
log "A's resident memory: $((rss0 / 1024)) MiB before, $((rss1 / 1024)) MiB after"
((rss1 - rss0 < MAX_RSS_GROWTH_MIB * 1024)) || fail "A's resident memory grew by $(((rss1 - rss0) / 1024)) MiB under the flood"
check_ping b 10.78.0.1
check_ping a fd78::2

((flooded * 100 >= alone * MIN_PERCENT)) ||
	fail "under the flood the stream kept $flooded of $alone Mbit/s, less than $MIN_PERCENT %"

if [[ $IMPL_A == fastwire* ]]; then
	fw_show a | sed 's/^/    /'
	cookies=$(($(fw_stat a cookie_replies_sent) - cookies0))
	limited=$(fw_stat a drop_rx_cookie_reply_rate_limited)
	queue_full=$(fw_stat a drop_rx_handshake_queue_full)
	secs=$(((flood_ms + 999) / 1000))
	# Per source: a burst of 5, then 10 per second; in total: 500, then 5000 per second.
	per_source_bound=$((FLOOD_PORTS * (5 + 10 * secs) + 5))
	total_bound=$((500 + 5000 * secs))
	log "cookie replies: $cookies sent (bounds: $per_source_bound per-source, $total_bound total), $limited refused by the budget, $queue_full dropped at a full queue"
	((cookies > 0)) || fail "A sent no cookie reply under the flood: it never went under load"
	((cookies <= per_source_bound && cookies <= total_bound)) ||
		fail "A sent $cookies cookie replies for $sent initiations: over its budget (it can be used as a reflector)"
	((cookies + limited + queue_full >= sent * 9 / 10)) ||
		fail "only $((cookies + limited + queue_full)) of $sent flood initiations are accounted for in A's counters"
else
	not_checked "cookie reply budget (fastwire counters)"
fi

((handshake_ms <= MAX_HANDSHAKE_MS)) ||
	fail "a fresh handshake under the flood took $handshake_ms ms (more than $MAX_HANDSHAKE_MS)"
pass
