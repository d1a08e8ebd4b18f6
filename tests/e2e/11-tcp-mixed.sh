#!/usr/bin/env bash
# 11 tcp-mixed: one server S (IMPL_A) listening on UDP and TCP, four clients (IMPL_B) on their own veths
# (underlay 10.77.N.0/24): P1..P3 dial S over TCP, P4 uses UDP. Overlay: S 10.78.0.1, client N 10.78.0.1N;
# S forwards between clients. Every client pings S; clients ping each other through S across transports;
# then 8 transfers of 16 MiB run at once (each client -> S and S -> each client), all sha256-verified.
# S must show three TCP endpoints and one UDP endpoint; nft counters on S prove only P4 sent UDP.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A" "$IMPL_B"
if [[ $IMPL_A != fastwire* || $IMPL_B != fastwire* ]]; then
	not_checked "the TCP transport (only fastwire has it)"
	pass
fi
require socat ping python3 nft

TCP_PORT=443
TCP_CLIENTS=(1 2 3)
UDP_CLIENT=4
CLIENTS=("${TCP_CLIENTS[@]}" "$UDP_CLIENT")

new_ns s p1 p2 p3 p4
genkeys s p1 p2 p3 p4
start_impl s "$IMPL_A"
ip netns exec "$(nsname s)" sysctl -q -w net.ipv4.ip_forward=1 || fail "enabling forwarding in S failed"

server_args=(set "$(ifname s)" private-key "$WORK/s.key" listen-port "$PORT_A")
for n in "${CLIENTS[@]}"; do
	veth s "us$n" "p$n" ul
	addr s "us$n" "10.77.$n.1/24"
	addr "p$n" ul "10.77.$n.2/24"
	server_args+=(peer "$(pubkey "p$n")" allowed-ips "10.78.0.1$n/32")
done
wgc s "${server_args[@]}" || fail "wg ${server_args[*]} failed"
addr s "$(ifname s)" 10.78.0.1/24 fd78::1/64
ip -n "$(nsname s)" link set "$(ifname s)" up || fail "ip link set up on S failed"
uapi_set s "listen_tcp_port=$TCP_PORT"
udp_counter s "$PORT_A" us1 us2 us3 us4

for n in "${CLIENTS[@]}"; do
	p=p$n
	start_impl "$p" "$IMPL_B"
	wgc "$p" set "$(ifname "$p")" private-key "$WORK/$p.key" listen-port "$PORT_B" \
		peer "$(pubkey s)" allowed-ips 10.78.0.0/24 || fail "wg set on $p failed"
	addr "$p" "$(ifname "$p")" "10.78.0.1$n/24" "fd78::1$n/64"
	ip -n "$(nsname "$p")" link set "$(ifname "$p")" up || fail "ip link set up on $p failed"
done
for n in "${TCP_CLIENTS[@]}"; do
	tcp_endpoint "p$n" s "10.77.$n.1:$TCP_PORT"
done
wgc "p$UDP_CLIENT" set "$(ifname "p$UDP_CLIENT")" peer "$(pubkey s)" endpoint "10.77.$UDP_CLIENT.1:$PORT_A" ||
	fail "wg set endpoint on p$UDP_CLIENT failed"

step "each client pings the server"
for n in "${CLIENTS[@]}"; do
	check_ping "p$n" 10.78.0.1
done

step "the server sees three TCP clients and one UDP client"
fw_show s >/dev/null
for n in "${TCP_CLIENTS[@]}"; do
	grep -E "^  endpoint: tcp://10\.77\.$n\.2:[0-9]+$" "$LOG_DIR/fastwire-show-s.txt" >/dev/null ||
		fail "fastwire show on S has no 'endpoint: tcp://10.77.$n.2:PORT' for p$n"
done
grep -x -F "  endpoint: 10.77.$UDP_CLIENT.2:$PORT_B" "$LOG_DIR/fastwire-show-s.txt" >/dev/null ||
	fail "fastwire show on S has no UDP 'endpoint: 10.77.$UDP_CLIENT.2:$PORT_B' for p$UDP_CLIENT"
accepted=$(fw_stat s tcp_connections_accepted)
((accepted == ${#TCP_CLIENTS[@]})) || fail "S accepted $accepted TCP connections, want ${#TCP_CLIENTS[@]}"

step "clients ping each other through the server, across transports"
check_ping p1 "10.78.0.1$UDP_CLIENT"
check_ping "p$UDP_CLIENT" 10.78.0.12
check_ping p3 10.78.0.11

step "16 MiB each way for every client, all at once"
make_random_file "$WORK/bulk.bin" 16
transfers=()
for n in "${CLIENTS[@]}"; do
	transfers+=("p$n s 10.78.0.1" "s p$n 10.78.0.1$n")
done
bulk_many 90 "$WORK/bulk.bin" "${transfers[@]}"

for n in "${TCP_CLIENTS[@]}"; do
	udp=$(udp_count s "$PORT_A" "us$n")
	[[ $udp == 0 ]] || fail "S received '$udp' UDP datagrams from TCP client p$n"
	established=$(fw_stat "p$n" tcp_connections_established)
	((established == 1)) || fail "p$n established $established TCP connections, want 1"
done
udp=$(udp_count s "$PORT_A" "us$UDP_CLIENT")
((udp > 0)) || fail "S received no UDP datagram from UDP client p$UDP_CLIENT (counter '$udp')"
((${#TCP_CLIENTS[@]} == $(fw_stat s tcp_connections_accepted))) ||
	fail "S accepted $(fw_stat s tcp_connections_accepted) TCP connections after the transfers, want ${#TCP_CLIENTS[@]}"
log "S: UDP datagrams only from p$UDP_CLIENT ($udp); drops: $(fw_stats s | awk -F= '/^drop_/ && $2 > 0' | paste -sd' ')"
daemon_alive s || fail "the server died"
pass
