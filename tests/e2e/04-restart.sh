#!/usr/bin/env bash
# 04 restart: B (IMPL_B) is killed with SIGKILL (its UAPI socket file stays behind, as after a crash) and
# started again with the same config (`wg showconf` -> `wg setconf`). Round 1: A, still holding the old
# session, pings; traffic must resume after A's retry handshake. Round 2: the restarted B pings first and
# initiates at once. Each round ends with a new handshake on the fresh B. Last, `ip link del` on B's interface
# must end B's daemon and remove its socket.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A" "$IMPL_B"
require ping

setup_pair
start_pair "" "10.77.0.1:$PORT_A"
check_ping b 10.78.0.1
check_ping a 10.78.0.2
wgc b showconf "$(ifname b)" >"$WORK/b.conf" || fail "wg showconf on B failed"

# restart_b: SIGKILL B, then start it again from the saved config.
restart_b() {
	stop_impl b KILL
	wait_until 5 eval "! ip -n $(nsname b) link show $(ifname b)" ||
		fail "B's interface still exists 5 s after its daemon was killed"
	[[ -S $(sockpath b) ]] && log "stale UAPI socket $(sockpath b) left behind, as after a crash"
	start_impl b "$IMPL_B"
	wgc b setconf "$(ifname b)" "$WORK/b.conf" || fail "wg setconf on the restarted B failed"
	addr b "$(ifname b)" 10.78.0.2/24 fd78::2/64
	ip -n "$(nsname b)" link set "$(ifname b)" up || fail "ip link set up failed"
	[[ $(dump_field b a 5) == 0 ]] || fail "fresh B reports a handshake before any traffic"
}

step "round 1: kill B; A pings with its stale session"
restart_b
check_ping a 10.78.0.2 40
[[ $(dump_field b a 5) != 0 ]] || fail "traffic flows but the restarted B reports no handshake"
check_ping a fd78::2
check_ping b 10.78.0.1

step "round 2: kill B; the restarted B pings first"
restart_b
check_ping b 10.78.0.1 10
[[ $(dump_field b a 5) != 0 ]] || fail "traffic flows but the restarted B reports no handshake"
check_ping a 10.78.0.2

step "deleting B's interface ends B's daemon"
pid=${DAEMON_PID[b]}
ip -n "$(nsname b)" link del "$(ifname b)" || fail "ip link del $(ifname b) failed"
wait_until 10 eval "! kill -0 $pid" || fail "B's daemon still runs 10 s after its interface was deleted"
wait_until 5 eval "[[ ! -e $(sockpath b) ]]" || fail "B's daemon exited but left $(sockpath b) behind"
unset "DAEMON_PID[b]"
pass
