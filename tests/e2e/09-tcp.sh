#!/usr/bin/env bash
# 09 tcp: fastwire <-> fastwire over the TCP transport. B listens on TCP (UAPI listen_tcp_port), A's peer
# endpoint is tcp://B (set over the UAPI: `wg set` cannot say tcp://). IPv4 + IPv6 ping inside the tunnel
# and a 64 MiB transfer verified by sha256: A -> B over the IPv4 underlay, B -> A (server to client) over the
# IPv6 one. nft counters on both UDP ports prove no datagram was used; `wg show dump`, `fastwire show`,
# UAPI get=1 and `ss` must all show the one TCP connection. Last, both sides from wg-quick files with
# `fastwire up` (ListenTcpPort; Endpoint = tcp://... with a default route, so the connection must carry the
# fwmark).
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A" "$IMPL_B"
if [[ $IMPL_A != fastwire* || $IMPL_B != fastwire* ]]; then
	not_checked "the TCP transport (only fastwire has it)"
	pass
fi
require socat ping python3 nft

TCP_PORT=443

setup_pair
make_random_file "$WORK/bulk.bin" 64

# tcp_case B_ADDR A_ADDR BULK_SRC BULK_DST BULK_DST_ADDR: a fresh pair, A dialing B_ADDR over TCP.
tcp_case() {
	local b_addr=$1 a_addr=$2 src=$3 dst=$4 dst_addr=$5 b_endpoint a_endpoint
	b_endpoint=$b_addr:$TCP_PORT
	[[ $b_addr == *:* ]] && b_endpoint="[$b_addr]:$TCP_PORT"

	start_pair "" ""
	udp_counter a "$PORT_A"
	udp_counter b "$PORT_B"
	uapi_set b "listen_tcp_port=$TCP_PORT"
	tcp_endpoint a b "$b_endpoint"

	check_ping a 10.78.0.2
	check_ping a fd78::2
	check_ping b 10.78.0.1
	check_ping b fd78::1

	# wg sees plain IP:PORT endpoints (it cannot parse tcp://); fastwire show and the UAPI mark the transport.
	wait_until 5 endpoint_is a b "$b_endpoint" ||
		fail "A's wg dump shows B's endpoint as '$(dump_field a b 3)', want $b_endpoint"
	a_endpoint=$(dump_field b a 3)
	[[ $a_endpoint == "$a_addr:"* || $a_endpoint == "[$a_addr]:"* ]] ||
		fail "B's wg dump shows A's endpoint as '$a_endpoint', want A's underlay address $a_addr"
	fw_show a >/dev/null
	grep -x -F "  endpoint: tcp://$b_endpoint" "$LOG_DIR/fastwire-show-a.txt" >/dev/null ||
		fail "fastwire show on A lacks 'endpoint: tcp://$b_endpoint'"
	fw_show b >/dev/null
	grep -x -F "  listening TCP port: $TCP_PORT" "$LOG_DIR/fastwire-show-b.txt" >/dev/null ||
		fail "fastwire show on B lacks 'listening TCP port: $TCP_PORT'"
	grep -x -F "  endpoint: tcp://$a_endpoint" "$LOG_DIR/fastwire-show-b.txt" >/dev/null ||
		fail "fastwire show on B lacks 'endpoint: tcp://$a_endpoint'"
	uapi b get=1 >"$WORK/get-b"
	grep -x "listen_tcp_port=$TCP_PORT" "$WORK/get-b" >/dev/null || fail "B's UAPI get=1 lacks listen_tcp_port=$TCP_PORT"
	grep -A1 -x -F "endpoint=$a_endpoint" "$WORK/get-b" | grep -x endpoint_transport=tcp >/dev/null ||
		fail "B's UAPI get=1 lacks endpoint_transport=tcp after endpoint=$a_endpoint"
	uapi a get=1 >"$WORK/get-a"
	grep -A1 -x -F "endpoint=$b_endpoint" "$WORK/get-a" | grep -x endpoint_transport=tcp >/dev/null ||
		fail "A's UAPI get=1 lacks endpoint_transport=tcp after endpoint=$b_endpoint"
	nsx a ss -Htnp state established "dst $b_endpoint" >"$WORK/ss-a"
	grep fastwire "$WORK/ss-a" >/dev/null ||
		fail "ss on A shows no established fastwire connection to $b_endpoint: $(nsx a ss -Htnp | tr '\n' ' ')"

	bulk "$src" "$dst" "$dst_addr" "$WORK/bulk.bin"

	local udp_a udp_b established accepted
	udp_a=$(udp_count a "$PORT_A") udp_b=$(udp_count b "$PORT_B")
	[[ $udp_a == 0 && $udp_b == 0 ]] ||
		fail "UDP was used: A's port $PORT_A received '$udp_a' datagrams, B's port $PORT_B '$udp_b'"
	established=$(fw_stat a tcp_connections_established) accepted=$(fw_stat b tcp_connections_accepted)
	((established == 1 && accepted == 1)) ||
		fail "want exactly one TCP connection: A established $established, B accepted $accepted"
	log "one TCP connection, no UDP datagram; drops on A: $(fw_stats a | awk -F= '/^drop_/ && $2 > 0' | paste -sd' ')," \
		"on B: $(fw_stats b | awk -F= '/^drop_/ && $2 > 0' | paste -sd' ')"

	# Control: the counter that read 0 does count a datagram sent to that port.
	local udp_probe="UDP4:$b_addr:$PORT_B"
	[[ $b_addr == *:* ]] && udp_probe="UDP6:[$b_addr]:$PORT_B"
	echo probe | nsx a socat -u - "$udp_probe" || fail "sending the UDP probe failed"
	wait_until 2 udp_count_at_least b "$PORT_B" 1 || fail "the nft counter on B's UDP port did not count a probe datagram"
	stop_impl a TERM
	stop_impl b TERM
}

step "A dials B over TCP on the IPv4 underlay; 64 MiB A -> B"
tcp_case 10.77.0.2 10.77.0.1 a b 10.78.0.2

step "A dials B over TCP on the IPv6 underlay; 64 MiB B -> A"
tcp_case fd77::2 fd77::1 b a fd78::1

# up_side SIDE NS_SIDE FILE: `fastwire up FILE` in NS_SIDE's namespace, tracked as daemon SIDE for cleanup.
up_side() {
	ip netns exec "$(nsname "$2")" "$FASTWIRE" up "$3" >>"$LOG_DIR/daemon-up-$1.log" 2>&1 &
	DAEMON_PID[$1]=$!
	wait_until 10 test -S "$(sockpath "$1")" || fail "fastwire up $3 did not come up: $(tail -n 3 "$LOG_DIR/daemon-up-$1.log")"
}

step "fastwire up from wg-quick files: B with ListenTcpPort, A with Endpoint = tcp://... and a default route"
cat >"$WORK/$(ifname tb).conf" <<EOF
[Interface]
PrivateKey = $(cat "$WORK/b.key")
ListenPort = $PORT_B
ListenTcpPort = $TCP_PORT
Address = 10.78.0.2/24

[Peer]
PublicKey = $(pubkey a)
AllowedIPs = 10.78.0.1/32
EOF
cat >"$WORK/$(ifname ta).conf" <<EOF
[Interface]
PrivateKey = $(cat "$WORK/a.key")
Address = 10.78.0.1/24

[Peer]
PublicKey = $(pubkey b)
Endpoint = tcp://10.77.0.2:$TCP_PORT
AllowedIPs = 0.0.0.0/0
PersistentKeepalive = 25
EOF
up_side tb b "$WORK/$(ifname tb).conf"
up_side ta a "$WORK/$(ifname ta).conf"
# All of A's traffic goes into the tunnel now: the ping works only if the TCP connection itself carries the
# fwmark that keeps it on the underlay.
check_ping a 10.78.0.2
check_ping b 10.78.0.1
# (ss -e complains on stderr where no cgroup2 is mounted.)
nsx a ss -Htne state established "dst 10.77.0.2:$TCP_PORT" >"$WORK/ss-up-a" 2>/dev/null
grep "fwmark:0x" "$WORK/ss-up-a" >/dev/null ||
	fail "A's TCP connection carries no fwmark: $(tr '\n' ' ' <"$WORK/ss-up-a")"
stop_impl ta TERM
stop_impl tb TERM
pass
