#!/usr/bin/env bash
# 07 garbage: from B's namespace, spray A's (IMPL_A) UDP port with random datagrams (0..2000 bytes) and
# handshake-shaped ones (right type, truncated / oversized / forged) over IPv4 and IPv6 for a few seconds
# while B pings A through the tunnel. A must stay up, keep answering, not balloon in memory, and
# `fastwire show` must report nonzero drop counters.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A" "$IMPL_B"
require ping python3

SPRAY_SECONDS=5
PINGS=60

setup_pair
start_pair "" "10.77.0.1:$PORT_A"
check_ping b 10.78.0.1
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/${DAEMON_PID[a]}/status"; }
rss0=$(rss_kib)

step "spray A's port for $SPRAY_SECONDS s while B pings A"
nsx b ping -n -q -c "$PINGS" -i 0.1 -W 1 10.78.0.1 >"$LOG_DIR/ping-during-spray.log" 2>&1 &
ping_pid=$!
nsx b timeout 30 python3 "$E2E_DIR/spray.py" 10.77.0.1 "$PORT_A" 25000 "$SPRAY_SECONDS" >"$LOG_DIR/spray4.log" 2>&1 &
spray4=$!
nsx b timeout 30 python3 "$E2E_DIR/spray.py" fd77::1 "$PORT_A" 5000 "$SPRAY_SECONDS" >"$LOG_DIR/spray6.log" 2>&1 ||
	fail "IPv6 spray failed: $(cat "$LOG_DIR/spray6.log")"
wait "$spray4" || fail "IPv4 spray failed: $(cat "$LOG_DIR/spray4.log")"
log "$(cat "$LOG_DIR/spray4.log") / $(cat "$LOG_DIR/spray6.log")"
wait "$ping_pid"
received=$(sed -n 's/.* \([0-9]\+\) received.*/\1/p' "$LOG_DIR/ping-during-spray.log")
log "pings answered during the spray: ${received:-0} of $PINGS"
((${received:-0} >= PINGS * 9 / 10)) || fail "only ${received:-0} of $PINGS pings answered during the spray"

daemon_alive a || fail "$IMPL_A died under the spray"
rss1=$(rss_kib)
log "A's resident memory: $((rss0 / 1024)) MiB before, $((rss1 / 1024)) MiB after"
((rss1 - rss0 < 65536)) || fail "A's resident memory grew by $(((rss1 - rss0) / 1024)) MiB under the spray"
check_ping b 10.78.0.1
check_ping a fd78::2

step "drop counters"
if [[ $IMPL_A == fastwire ]]; then
	nsx a "$FASTWIRE" show "$(ifname a)" >"$LOG_DIR/fastwire-show.txt" 2>&1 ||
		fail "fastwire show $(ifname a) failed: $(head -n 3 "$LOG_DIR/fastwire-show.txt")"
	sed 's/^/    /' "$LOG_DIR/fastwire-show.txt"
	# The total: the number on the line that mentions drops or, if it has none, the sum of the indented
	# per-reason lines under it. Numbers glued to letters (mac1) are names, not counts.
	drops=$(awk '
		function count(line,   n, s) {
			gsub(/[[:alnum:]_.]*[[:alpha:]_][[:alnum:]_.]*/, " ", line)
			n = split(line, w, /[^0-9]+/)
			for (i = 1; i <= n; i++) if (w[i] != "") { s += w[i]; found = 1 }
			return s
		}
		!on && tolower($0) ~ /drop/ { on = 1; ind = match($0, /[^ \t]/); found = 0; total = count($0); if (found) exit; next }
		on && match($0, /[^ \t]/) > ind { total += count($0); next }
		on { exit }
		END { print total + 0 }' "$LOG_DIR/fastwire-show.txt")
	sprayed=$(cat "$LOG_DIR"/spray*.log | awk '/^sent/ { s += $2 } END { print s + 0 }')
	((drops > 0)) || fail "fastwire show reports no dropped packets after the spray"
	((drops * 2 >= sprayed)) || fail "fastwire show counts $drops dropped packets, fewer than half of the $sprayed sprayed"
	log "fastwire show counts $drops dropped packets ($sprayed garbage datagrams sprayed)"

	step "a full receive queue: A stopped while B sprays, the kernel's drops counted as rx_kernel_queue_full"
	# Only A's sockets receive UDP in its namespace, so their drop counter must move exactly as the
	# namespace's UDP receive-buffer errors (IPv4 and IPv6) do.
	rcvbuf_errors() {
		nsx a cat /proc/net/snmp /proc/net/snmp6 | awk '
			/^Udp:/ { if (!seen++) { for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") col = i } else s += $col }
			$1 == "Udp6RcvbufErrors" { s += $2 }
			END { print s + 0 }'
	}
	kernel0=$(rcvbuf_errors)
	counted0=$(fw_stat a drop_rx_kernel_queue_full)
	kill -STOP "${DAEMON_PID[a]}"
	nsx b timeout 30 python3 "$E2E_DIR/spray.py" 10.77.0.1 "$PORT_A" 20000 5 >"$LOG_DIR/spray-stopped.log" 2>&1
	spray_status=$?
	kill -CONT "${DAEMON_PID[a]}"
	((spray_status == 0)) || fail "the spray at a stopped A failed: $(cat "$LOG_DIR/spray-stopped.log")"
	kernel=$(($(rcvbuf_errors) - kernel0))
	counted=$(($(fw_stat a drop_rx_kernel_queue_full) - counted0))
	log "while A was stopped: the kernel dropped $kernel datagrams for a full receive buffer, A counts $counted"
	((kernel >= 1000)) || fail "only $kernel of 20000 datagrams overflowed A's stopped sockets"
	((counted == kernel)) || fail "A counts $counted kernel drops, the namespace's UDP statistics $kernel"
	fw_show a | grep >/dev/null "kernel queue full" || fail "fastwire show does not list the kernel's drops"
	check_ping b 10.78.0.1
else
	not_checked "drop counters (fastwire show)"
fi
pass
