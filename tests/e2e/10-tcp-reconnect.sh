#!/usr/bin/env bash
# 10 tcp-reconnect: A (IMPL_A) dials B (IMPL_B) over TCP and sends 64 MiB through the tunnel; mid-transfer
# the outer TCP connection is cut, three ways in turn: `ss -K` in A's namespace, `ss -K` in B's, and an nft
# rule in B answering every segment to the TCP port with a reset for 2 s (so the first redials fail too).
# Each time A must dial again (tcp connections established grows), B must accept it and the transfer must
# complete and verify. A's link is rate-limited so the cut lands mid-transfer. Last, B restarts (a fresh
# daemon that no longer knows A's session): A must be back within seconds.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A" "$IMPL_B"
if [[ $IMPL_A != fastwire* || $IMPL_B != fastwire* ]]; then
	not_checked "the TCP transport (only fastwire has it)"
	pass
fi
require socat ping python3 nft tc

TCP_PORT=443
RESET_SECONDS=2

setup_pair
make_random_file "$WORK/bulk.bin" 64
start_pair "" ""
uapi_set b "listen_tcp_port=$TCP_PORT"
tcp_endpoint a b "10.77.0.2:$TCP_PORT"
check_ping a 10.78.0.2
# tbf, not netem: this kernel has no sch_netem. ~3 s for 64 MiB.
tc -n "$(nsname a)" qdisc add dev ua root tbf rate 200mbit burst 256kb latency 100ms ||
	fail "tc tbf rate limit on A failed"

received_at_least() { (($(stat -c %s "$BULK_OUT" 2>/dev/null || echo 0) >= $1)); }

# start_and_reach MIB: notes A's and B's connection counters, starts the transfer and waits until MIB arrived.
start_and_reach() {
	established0=$(fw_stat a tcp_connections_established)
	accepted0=$(fw_stat b tcp_connections_accepted)
	bulk_start a b 10.78.0.2 "$WORK/bulk.bin" 60
	wait_until 20 received_at_least $(($1 * 1048576)) || fail "transfer did not reach $1 MiB within 20 s"
	cut_at=$(now_ms)
}

# reconnects_and_completes: after the cut, A dials again, B accepts, the transfer completes and verifies.
reconnects_and_completes() {
	received_at_least "$(stat -c %s "$WORK/bulk.bin")" && fail "transfer finished before the cut; the test proves nothing"
	wait_until 15 fw_stat_at_least a tcp_connections_established $((established0 + 1)) ||
		fail "A did not dial B again within 15 s of the cut (established: $(fw_stat a tcp_connections_established))"
	log "A connected again $(($(now_ms) - cut_at)) ms after the cut"
	wait_until 5 fw_stat_at_least b tcp_connections_accepted $((accepted0 + 1)) ||
		fail "B did not accept A's new connection (accepted: $(fw_stat b tcp_connections_accepted))"
	bulk_finish
	check_ping a 10.78.0.2
	check_ping b 10.78.0.1
	log "close reasons on A: $(fw_stats a | awk -F= '/^tcp_closed_/ && $2 > 0' | paste -sd' ')," \
		"on B: $(fw_stats b | awk -F= '/^tcp_closed_/ && $2 > 0' | paste -sd' ')"
}

# ss_kill SIDE FILTER...: destroys the matching established sockets; at least one must match.
ss_kill() {
	local side=$1 killed
	shift
	killed=$(nsx "$side" ss -Htn -K state established "$@") || fail "ss -K in $side failed"
	[[ -n $killed ]] || fail "ss -K in $side found no established connection matching: $*"
	log "ss -K in $side: $(echo "$killed" | awk '{ print $3, "->", $4 }' | paste -sd' ')"
}

step "cut by ss -K on the client (A)"
start_and_reach 16
ss_kill a dst "10.77.0.2:$TCP_PORT"
reconnects_and_completes

step "cut by ss -K on the server (B)"
start_and_reach 16
# Established sockets only: the listener on the same port must survive.
ss_kill b sport = ":$TCP_PORT"
reconnects_and_completes

step "B resets every segment to port $TCP_PORT for $RESET_SECONDS s"
failed0=$(fw_stat a tcp_closed_connect_failed)
start_and_reach 16
nsx b nft -f - <<-NFT || fail "nft: adding the reset rule in B failed"
	table inet fwe2e_reset {
		chain input {
			type filter hook input priority 0; policy accept;
			tcp dport $TCP_PORT reject with tcp reset
		}
	}
NFT
sleep "$RESET_SECONDS"
nsx b nft delete table inet fwe2e_reset || fail "nft: removing the reset rule in B failed"
reconnects_and_completes
failed=$(fw_stat a tcp_closed_connect_failed)
((failed > failed0)) || fail "A counted no failed connection attempt while B reset them ($failed0 -> $failed)"

established=$(fw_stat a tcp_connections_established)
((established >= 4)) || fail "A established $established TCP connections, want at least 4 (1 + one per cut)"
daemon_alive a || fail "A died"
log "A established $established connections; $failed failed attempts while B reset them"

# The server restarts and forgets A's session: A's first hello on the new connection (a keepalive under the
# old session) is refused, so A must open the next connection with a handshake at once rather than wait
# out its session (up to 3 minutes) or its keepalive-less retry timer.
step "B restarts; A reconnects and handshakes again"
stop_impl b TERM
start_impl b "$IMPL_B"
configure b "$PORT_B" a 10.78.0.1/32,fd78::1/128 10.78.0.2/24 fd78::2/64
uapi_set b "listen_tcp_port=$TCP_PORT"
restart_at=$(now_ms)
ping_wait a 10.78.0.2 8 || fail "no ping answer through the tunnel within 8 s of B's restart"
log "first answer $(($(now_ms) - restart_at)) ms after B came back"
daemon_alive a || fail "A died"
pass
