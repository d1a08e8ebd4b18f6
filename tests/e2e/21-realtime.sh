#!/usr/bin/env bash
# 21 realtime: A runs `--realtime` (data-path workers SCHED_FIFO), B the same without CAP_SYS_NICE. A's
# workers must be SCHED_FIFO and its other threads not; B must run on at normal priority and say why in
# its log; traffic flows both ways, bulk included.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A" "$IMPL_B"
require ping chrt setpriv

# policies SIDE: "thread-name policy" for each thread of SIDE's daemon.
policies() {
	local tid
	for tid in $(ls "/proc/${DAEMON_PID[$1]}/task"); do
		echo "$(cat "/proc/${DAEMON_PID[$1]}/task/$tid/comm") $(chrt -p "$tid" | sed -n 's/.*scheduling policy: //p')"
	done
}

setup_pair
start_pair "" "10.77.0.1:$PORT_A"
check_ping b 10.78.0.1
check_ping a 10.78.0.2
make_random_file "$WORK/bulk.bin" 8
bulk a b 10.78.0.2 "$WORK/bulk.bin"
bulk b a 10.78.0.1 "$WORK/bulk.bin"

if [[ $IMPL_A == fastwire-rt ]]; then
	step "A's workers run SCHED_FIFO, its other threads do not"
	policies a | tee "$WORK/a.policies" >&2
	[[ $(grep -c '^fw-worker-.* SCHED_FIFO$' "$WORK/a.policies") -ge 1 ]] || fail "no SCHED_FIFO worker on A"
	grep '^fw-worker-' "$WORK/a.policies" | grep -v 'SCHED_FIFO$' >/dev/null && fail "a worker of A is not SCHED_FIFO"
	grep -v '^fw-worker-' "$WORK/a.policies" | grep 'SCHED_FIFO$' >/dev/null && fail "a thread other than a worker is SCHED_FIFO on A"
else
	not_checked "A runs $IMPL_A, not fastwire --realtime"
fi
if [[ $IMPL_B == fastwire-rt-nocap ]]; then
	step "B (no CAP_SYS_NICE) runs at normal priority and says so"
	policies b | tee "$WORK/b.policies" >&2
	grep -q 'SCHED_FIFO$' "$WORK/b.policies" && fail "B has a SCHED_FIFO thread without CAP_SYS_NICE"
	grep -q "cannot run the data path real-time" "$LOG_DIR/daemon-$IMPL_B-b.log" ||
		fail "B does not say why its workers are not real-time"
fi
pass
