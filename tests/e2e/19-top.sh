#!/usr/bin/env bash
# 19 top: `fastwire top` watching A while B sends it traffic and garbage, driven in a real terminal (tmux:
# send-keys, capture-pane). Checked:
#  - the live view shows B's key, its endpoint, a nonzero receive rate, a session, drops per second by
#    reason (the garbage) and the workers;
#  - keys: t sorts by transmit rate, s moves to the next order, q quits with status 0;
#  - with stdout not a terminal it prints plain frames: --count 2 prints exactly two, then exits 0;
#  - an interface that does not exist is one clear error and a nonzero status.
# e2e-timeout: 90
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A" "$IMPL_B"
require ping python3 tmux
[[ $IMPL_A == fastwire* ]] || { not_checked "fastwire top watches a fastwire daemon ($IMPL_A)"; pass; }

setup_pair
start_pair "" "10.77.0.1:$PORT_A"
check_ping b 10.78.0.1

TMUX_SOCKET="fwe2e-$ID"
t() { tmux -L "$TMUX_SOCKET" "$@"; }
trap 't kill-server 2>/dev/null; cleanup' EXIT
# screen: what the terminal shows now.
screen() { t capture-pane -p -t top; }
# screen_has TEXT: wait (up to 10 s) until the terminal shows TEXT.
screen_has() {
	local deadline=$(($(now_ms) + 10000))
	until screen | grep -F -- "$1" >/dev/null; do
		(($(now_ms) >= deadline)) && return 1
		sleep 0.2
	done
}

step "traffic and garbage towards A, bounded (about 8 s)"
nsx b ping -q -n -c 800 -i 0.01 -s 1200 10.78.0.1 >/dev/null 2>&1 &
ping_pid=$!
nsx b python3 "$E2E_DIR/spray.py" 10.77.0.1 "$PORT_A" 400 8 >"$LOG_DIR/spray.log" 2>&1 &
spray_pid=$!

step "the live view in a 160x40 terminal"
t new-session -d -s top -x 160 -y 40 || fail "tmux cannot start a session"
# The pane stays after top exits, so what it showed last can be read.
t set-option -t top remain-on-exit on >/dev/null
# Through a shell that writes top's exit status (128 + N for signal N) where the test can read it.
t respawn-pane -k -t top "$FASTWIRE top $(ifname a); echo \$? >$WORK/top.status" ||
	fail "tmux cannot run fastwire top"
screen_has "fastwire top: $(ifname a) — 1 peer, 1 with a session" || fail "no headline: $(screen)"
screen_has "$(pubkey b)" || fail "B's key is not shown: $(screen)"
screen_has "udp 10.77.0.2:$PORT_B" || fail "B's endpoint is not shown: $(screen)"
deadline=$(($(now_ms) + 10000))
until screen | grep -F -- "$(pubkey b)" | grep -E '[0-9.]+ (kbit|Mbit)/s' >/dev/null; do
	(($(now_ms) >= deadline)) && fail "no receive rate for B while it pings: $(screen)"
	sleep 0.2
done
screen_has "rx " || fail "no drops per second while garbage arrives: $(screen)"
screen_has "workers" || fail "no worker table: $(screen)"
screen | grep -E '^│ *0 +[0-9]' >/dev/null || fail "worker 0 is not in the worker table: $(screen)"
screen >"$LOG_DIR/top-screen.txt"
log "the view: $(grep -F -- "$(pubkey b)" "$LOG_DIR/top-screen.txt" | tr -s ' ')"

step "keys: t sorts by transmit rate, s moves on, q quits"
t send-keys -t top t
screen_has "sorted by transmit rate" || fail "t did not sort by transmit rate: $(screen | head -n 2)"
t send-keys -t top s
screen_has "sorted by latest handshake" || fail "s did not move to the next order: $(screen | head -n 2)"
t send-keys -t top q
deadline=$(($(now_ms) + 5000))
until [[ $(t display-message -p -t top '#{pane_dead}') == 1 ]]; do
	(($(now_ms) >= deadline)) && fail "q did not quit fastwire top: $(screen | tail -n 3)"
	sleep 0.1
done
# The status comes from the wrapper's file: tmux 3.3's #{pane_dead_status} is sometimes left empty.
status=$(cat "$WORK/top.status" 2>/dev/null) || fail "fastwire top left no exit status"
[[ $status == 0 ]] || fail "fastwire top exited with status $status after q"
t kill-server 2>/dev/null

step "plain frames when stdout is not a terminal"
"$FASTWIRE" top "$(ifname a)" --count 2 --interval 0.5 >"$LOG_DIR/top-plain.txt" 2>&1 ||
	fail "fastwire top --count 2 failed: $(cat "$LOG_DIR/top-plain.txt")"
frames=$(grep -c "^fastwire top: $(ifname a) " "$LOG_DIR/top-plain.txt")
((frames == 2)) || fail "--count 2 printed $frames frames: $(cat "$LOG_DIR/top-plain.txt")"
grep -F -- "$(pubkey b)" "$LOG_DIR/top-plain.txt" >/dev/null || fail "B is not in the plain frames"
grep -F "drops/s:" "$LOG_DIR/top-plain.txt" >/dev/null || fail "no drops line in the plain frames"

step "an interface that does not exist"
if "$FASTWIRE" top "fw-$ID-none" >"$LOG_DIR/top-missing.txt" 2>&1; then
	fail "fastwire top on a missing interface succeeded"
fi
grep -F "no fastwire interface fw-$ID-none" "$LOG_DIR/top-missing.txt" >/dev/null ||
	fail "unclear error: $(cat "$LOG_DIR/top-missing.txt")"

wait "$ping_pid" "$spray_pid" 2>/dev/null
pass
