#!/usr/bin/env bash
# 15 impaired: a bad network between A (IMPL_A) and B (IMPL_B). This kernel has no netem, so a userspace
# relay in B's namespace (impair.py) sits on the path: A's endpoint for B is the relay, which forwards to
# B and back with loss, duplication and reordering.
#   1. 5 % loss + 1 % duplication + 0-20 ms jitter (reordering), both ways: a 64 MiB transfer A -> B
#      completes and verifies; B counts the duplicates as replays (never more than were sent, and no
#      reordered packet as one), and nothing else goes wrong (no failed authentication, no unknown session).
#   2. 30 % loss both ways: fresh handshakes still complete (A forgets B and pings until an answer,
#      twice; an attempt gets through with p = 0.49 and 11 attempts fit in the 55 s allowed).
#   3. fastwire only, the TCP transport over a slow, lossy underlay: tbf at 20 Mbit/s and an nft rule
#      dropping 2 % of the TCP segments in each direction: 16 MiB A -> B over tcp:// verifies.
# TCP crawls through this much loss and reordering (about 8 Mbit/s, with wireguard-go too: the network,
# not the tunnel), so the scenario needs more than the default limit.
# e2e-timeout: 300
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A" "$IMPL_B"
require socat ping python3 nft tc

RELAY_PORT=51900
RELAY_BACK=51901
setup_pair
make_random_file "$WORK/bulk.bin" 64

RELAY_PID=""
# relay SECONDS ARGS...: (re)starts the relay in B's namespace, A -> 10.77.0.2:RELAY_PORT -> B's port.
relay() {
	local seconds=$1
	shift
	stop_relay
	RELAY_STATS="$WORK/relay-$RANDOM.json"
	ip netns exec "$(nsname b)" timeout $((seconds + 10)) python3 "$E2E_DIR/impair.py" 10.77.0.2 "$RELAY_PORT" \
		127.0.0.1 "$PORT_B" --back-port "$RELAY_BACK" --seconds "$seconds" --stats "$RELAY_STATS" "$@" \
		>>"$LOG_DIR/impair.log" 2>&1 &
	RELAY_PID=$!
	wait_until 5 relay_listening || fail "the relay did not bind $RELAY_PORT"
}
relay_listening() { [[ -n $(nsx b ss -Haun "sport = :$RELAY_PORT") ]]; }
stop_relay() {
	[[ -n $RELAY_PID ]] || return 0
	kill -TERM "$RELAY_PID" 2>/dev/null
	wait "$RELAY_PID" 2>/dev/null
	RELAY_PID=""
}
relay_stat() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d[sys.argv[2]][sys.argv[3]])" "$RELAY_STATS" "$1" "$2"; }
# (The EXIT trap's cleanup ends the relay with everything else in the namespaces.)

step "5 % loss, 1 % duplication, 0-20 ms reordering both ways: 64 MiB A -> B"
relay 120 --loss 0.05 --dup 0.01 --delay-ms 1 --jitter-ms 20 --seed 15
start_pair "10.77.0.2:$RELAY_PORT" ""
check_ping a 10.78.0.2 30
before_replay=0
is_fastwire_b=0
[[ $IMPL_B == fastwire* ]] && is_fastwire_b=1
((is_fastwire_b)) && before_replay=$(fw_stat b drop_rx_replayed_counter)
bulk a b 10.78.0.2 "$WORK/bulk.bin" 100
stop_relay
dups=$(relay_stat a_to_b duplicated)
lost=$(relay_stat a_to_b dropped)
log "relay A->B: $(relay_stat a_to_b received) received, $lost dropped, $dups duplicated; B->A: $(relay_stat b_to_a received) received, $(relay_stat b_to_a dropped) dropped"
((dups > 50)) || fail "the relay duplicated only $dups datagrams: the test proves nothing"
if ((is_fastwire_b)); then
	fw_show b >"$LOG_DIR/show-b.txt"
	replays=$(($(fw_stat b drop_rx_replayed_counter) - before_replay))
	log "B counted $replays replayed datagrams for $dups duplicates"
	((replays <= dups)) || fail "B counted $replays replays for $dups duplicates: reordered packets were taken for replays"
	((replays >= dups / 2)) || fail "B counted only $replays replays for $dups duplicates"
	for bad in drop_rx_data_auth_failed drop_rx_bad_inner_packet drop_rx_disallowed_source; do
		n=$(fw_stat b "$bad")
		((n == 0)) || fail "B counted $n $bad under loss and reordering"
	done
else
	not_checked "replay counters (only fastwire reports them)"
fi

step "30 % loss both ways: fresh handshakes complete (twice)"
relay 120 --loss 0.30 --seed 30
for round in 1 2; do
	wgc a set "$(ifname a)" peer "$(pubkey b)" remove || fail "removing B on A failed"
	wgc a set "$(ifname a)" peer "$(pubkey b)" allowed-ips 10.78.0.2/32,fd78::2/128 endpoint "10.77.0.2:$RELAY_PORT" ||
		fail "re-adding B on A failed"
	t0=$(now_ms)
	ping_wait a 10.78.0.2 55 || fail "round $round: no answer through the tunnel within 55 s at 30 % loss"
	log "round $round: a new session and a first answer at 30 % loss after $(($(now_ms) - t0)) ms"
done
stop_relay

if [[ $IMPL_A != fastwire* || $IMPL_B != fastwire* ]]; then
	not_checked "the TCP transport (only fastwire has it)"
	pass
fi
step "TCP transport over 20 Mbit/s with 2 % of the segments dropped: 16 MiB A -> B"
stop_impl a
stop_impl b
make_random_file "$WORK/bulk16.bin" 16
TCP_PORT=443
start_pair "" ""
uapi_set b "listen_tcp_port=$TCP_PORT"
tcp_endpoint a b "10.77.0.2:$TCP_PORT"
check_ping a 10.78.0.2 30
for side in a b; do
	iface=u$side
	tc -n "$(nsname "$side")" qdisc add dev "$iface" root tbf rate 20mbit burst 32kb latency 100ms ||
		fail "tbf on $side failed"
	nsx "$side" nft -f - <<-NFT || fail "nft: the lossy rule in $side failed"
		table inet fwe2e_loss {
			chain output {
				type filter hook output priority 0; policy accept;
				tcp dport $TCP_PORT numgen random mod 100 < 2 counter drop
				tcp sport $TCP_PORT numgen random mod 100 < 2 counter drop
			}
		}
	NFT
done
bulk a b 10.78.0.2 "$WORK/bulk16.bin" 120
dropped=$(nsx a nft list table inet fwe2e_loss | awk '/drop/ { for (i = 1; i < NF; i++) if ($i == "packets") s += $(i + 1) } END { print s + 0 }')
log "the underlay dropped $dropped of A's TCP segments"
((dropped > 10)) || fail "the lossy rule dropped only $dropped segments: the test proves nothing"
pass
