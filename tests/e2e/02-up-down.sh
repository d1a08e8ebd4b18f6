#!/usr/bin/env bash
# 02 up/down: `fastwire up FILE.conf` (IMPL_A on side A; wg-quick file: Address, MTU, ListenPort, a peer whose
# AllowedIPs need routes) against B (IMPL_B, configured with `wg set`). While up: interface, addresses, MTU,
# routes exist and the tunnel carries IPv4 and IPv6. After each way of stopping — `fastwire down IFACE`,
# SIGTERM, `fastwire down FILE` — the namespace's links, addresses, routes and rules are exactly as before,
# the UAPI socket is gone and no process is left.
# Reference mode (wireguard-go): `wg-quick up/down` stands in for `fastwire up/down`.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A" "$IMPL_B"
require ping
[[ $IMPL_A == wireguard-go ]] && require wg-quick

setup_pair
start_impl b "$IMPL_B"
configure b "$PORT_B" a 10.78.0.1/32,fd78::1/128,10.78.5.0/24,fd78::5:0/112 10.78.0.2/24 fd78::2/64

iface=$(ifname u)
conf="$WORK/$iface.conf"
cat >"$conf" <<EOF
# fastwire e2e: a wg-quick file
[Interface]
PrivateKey = $(cat "$WORK/a.key")
ListenPort = $PORT_A
Address = 10.78.0.1/24, fd78::1/112
MTU = 1380

[Peer]
PublicKey = $(pubkey b)
AllowedIPs = 10.78.0.2/32, fd78::2/128, 10.78.5.0/24, fd78::5:0/112
Endpoint = 10.77.0.2:$PORT_B
EOF

state() {
	local ns
	ns=$(nsname a)
	ip -n "$ns" -o link show | sed 's/^[0-9]*: //'
	ip -n "$ns" -o addr show
	ip -n "$ns" route show table all
	ip -n "$ns" -6 route show table all
	ip -n "$ns" rule show
	ip -n "$ns" -6 rule show
	local f
	for f in "$UAPI_DIR/$iface".*; do
		[[ -e $f ]] && echo "$f"
	done
	return 0
}
before=$(state)
UP_PID=""

bring_up() {
	log "bringing $iface up from $conf"
	case $IMPL_A in
	fastwire)
		# Foreground by contract: $! is fastwire itself (ip netns exec execs it).
		ip netns exec "$(nsname a)" "$FASTWIRE" up "$conf" >>"$LOG_DIR/daemon-fastwire-up.log" 2>&1 &
		UP_PID=$!
		;;
	wireguard-go)
		nsx a env WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 \
			timeout 30 wg-quick up "$conf" >>"$LOG_DIR/wg-quick.log" 2>&1 || fail "wg-quick up failed"
		UP_PID=$(ip netns pids "$(nsname a)" | head -n 1)
		;;
	esac
	wait_until 10 ip -n "$(nsname a)" route show 10.78.5.0/24 dev "$iface" ||
		fail "$iface and its routes did not appear within 10 s$(kill -0 "$UP_PID" 2>/dev/null || echo " (the up process exited)")"
	wait_until 5 eval "[[ -n \$(ip -n $(nsname a) -6 route show fd78::5:0/112 dev $iface) ]]" ||
		fail "route fd78::5:0/112 dev $iface missing"
	local ns link
	ns=$(nsname a)
	link=$(ip -n "$ns" link show "$iface")
	[[ $link == *"mtu 1380"* ]] || fail "$iface's MTU is not 1380: $link"
	[[ $link == *"<"*UP*">"* ]] || fail "$iface is not up: $link"
	ip -n "$ns" -4 addr show dev "$iface" | grep >/dev/null 'inet 10.78.0.1/24' || fail "$iface lacks 10.78.0.1/24"
	ip -n "$ns" -6 addr show dev "$iface" | grep >/dev/null "inet6 fd78::1/112" ||
		fail "$iface lacks fd78::1/112: $(ip -n "$ns" addr show dev "$iface" | tr "\n" " ")"
	check_ping a 10.78.0.2
	check_ping a fd78::2
	check_ping b 10.78.0.1
}

# expect_clean HOW: the up process is gone and the namespace is as it was before `up`.
expect_clean() {
	local how=$1 after
	if [[ $IMPL_A == fastwire ]]; then
		wait_until 10 eval "! kill -0 $UP_PID" || fail "fastwire up still running 10 s after $how"
		wait "$UP_PID"
		local rc=$?
		((rc == 0)) || fail "fastwire up exited with status $rc after $how: $(tail -n 2 "$LOG_DIR/daemon-fastwire-up.log")"
	fi
	wait_until 10 eval "[[ -z \$(ip netns pids $(nsname a)) ]]" ||
		fail "after $how, processes remain in A: $(ip netns pids "$(nsname a)" | xargs -r ps -o pid=,args= -p)"
	# shellcheck disable=SC2016 # evaluated later, by wait_until
	wait_until 5 eval '[[ $(state) == "$before" ]]'
	after=$(state)
	[[ $after == "$before" ]] || fail "after $how, A's network state differs: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | head -n 5 | tr '\n' ' ')"
	log "after $how: no process, interface, address, route, rule or socket left behind"
}

step "up, then down by interface name"
bring_up
if [[ $IMPL_A == fastwire ]]; then
	nsx a timeout 15 "$FASTWIRE" down "$iface" >>"$LOG_DIR/down.log" 2>&1 || fail "fastwire down $iface failed: $(tail -n 2 "$LOG_DIR/down.log")"
else
	nsx a timeout 15 wg-quick down "$conf" >>"$LOG_DIR/wg-quick.log" 2>&1 || fail "wg-quick down failed"
	not_checked "fastwire up/down (wg-quick + wireguard-go stood in)"
fi
expect_clean "down $iface"

step "up, then SIGTERM"
bring_up
kill -TERM "$UP_PID"
expect_clean SIGTERM

if [[ $IMPL_A == fastwire ]]; then
	step "up, then down by file"
	bring_up
	nsx a timeout 15 "$FASTWIRE" down "$conf" >>"$LOG_DIR/down.log" 2>&1 || fail "fastwire down $conf failed: $(tail -n 2 "$LOG_DIR/down.log")"
	expect_clean "down $conf"

	# Routes go to `ip -batch`, and coverage is decided from one listing: 10,000 AllowedIPs took 27 s
	# up and 12 s down with one `ip` per route.
	step "10,000 AllowedIPs: up and down within 3 s each, nothing left"
	# The same interface name (it comes from the file's name), another file.
	mkdir -p "$WORK/big"
	big="$WORK/big/$iface.conf"
	{
		sed '/^AllowedIPs/d' "$conf"
		# One covered by the Address's subnet route: it needs (and gets) no route of its own.
		echo "AllowedIPs = 10.78.0.2/32, 10.78.0.5/32"
		for hi in $(seq 0 99); do
			printf 'AllowedIPs = %s\n' "$(seq -s ', ' -f "10.79.$hi.%g/32" 0 99)"
		done
	} >"$big"
	routes_on() { ip -n "$(nsname a)" route show dev "$iface" 2>/dev/null | wc -l; }
	start=$(now_ms)
	ip netns exec "$(nsname a)" "$FASTWIRE" up "$big" >>"$LOG_DIR/daemon-fastwire-up-big.log" 2>&1 &
	UP_PID=$!
	wait_until 30 eval '(( $(routes_on) >= 10001 ))' || fail "10,000 routes did not appear within 30 s ($(routes_on))"
	t_up=$(($(now_ms) - start))
	[[ -z $(ip -n "$(nsname a)" route show 10.78.0.5/32 dev "$iface") ]] ||
		fail "10.78.0.5/32 got a route though the subnet route covers it"
	check_ping a 10.78.0.2
	start=$(now_ms)
	nsx a timeout 30 "$FASTWIRE" down "$iface" >>"$LOG_DIR/down.log" 2>&1 || fail "fastwire down $iface (10,000 routes) failed"
	t_down=$(($(now_ms) - start))
	expect_clean "down with 10,000 routes"
	log "10,000 AllowedIPs: up in $t_up ms, down in $t_down ms"
	((t_up < 3000)) || fail "up with 10,000 AllowedIPs took $t_up ms (bound 3000)"
	((t_down < 3000)) || fail "down with 10,000 routes took $t_down ms (bound 3000)"
fi
pass
