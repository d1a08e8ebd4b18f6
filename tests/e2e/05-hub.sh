#!/usr/bin/env bash
# 05 hub: one server S (IMPL_A) with three peers P1..P3 (IMPL_B), each peer on its own veth to S
# (underlay 10.77.N.0/24). Overlay: S 10.78.0.1, peer N 10.78.0.1N. S forwards between peers (ip_forward=1,
# one /32 per peer); peers route the whole overlay /24 to S. Every peer pings S, then every other peer.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A" "$IMPL_B"
require ping

PEERS=(p1 p2 p3)
new_ns s "${PEERS[@]}"
genkeys s "${PEERS[@]}"
start_impl s "$IMPL_A"
ip netns exec "$(nsname s)" sysctl -q -w net.ipv4.ip_forward=1 || fail "enabling forwarding in S failed"

server_args=(set "$(ifname s)" private-key "$WORK/s.key" listen-port "$PORT_A")
for n in 1 2 3; do
	p=p$n
	veth s "us$n" "$p" ul
	addr s "us$n" "10.77.$n.1/24"
	addr "$p" ul "10.77.$n.2/24"
	server_args+=(peer "$(pubkey "$p")" allowed-ips "10.78.0.1$n/32")
done
wgc s "${server_args[@]}" || fail "wg ${server_args[*]} failed"
addr s "$(ifname s)" 10.78.0.1/24 fd78::1/64
ip -n "$(nsname s)" link set "$(ifname s)" up || fail "ip link set up on S failed"

for n in 1 2 3; do
	p=p$n
	start_impl "$p" "$IMPL_B"
	wgc "$p" set "$(ifname "$p")" private-key "$WORK/$p.key" listen-port "$PORT_B" \
		peer "$(pubkey s)" allowed-ips 10.78.0.0/24 endpoint "10.77.$n.1:$PORT_A" || fail "wg set on $p failed"
	addr "$p" "$(ifname "$p")" "10.78.0.1$n/24" "fd78::1$n/64"
	ip -n "$(nsname "$p")" link set "$(ifname "$p")" up || fail "ip link set up on $p failed"
done

step "each peer pings the server"
for n in 1 2 3; do
	check_ping "p$n" 10.78.0.1
done
for n in 1 2 3; do
	wait_until 5 endpoint_is s "p$n" "10.77.$n.2:$PORT_B" ||
		fail "S shows p$n's endpoint as '$(dump_field s "p$n" 3)', want 10.77.$n.2:$PORT_B"
done

step "each peer pings the others through the server"
for n in 1 2 3; do
	for m in 1 2 3; do
		((n == m)) || check_ping "p$n" "10.78.0.1$m"
	done
done
pass
