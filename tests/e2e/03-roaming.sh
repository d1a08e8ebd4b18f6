#!/usr/bin/env bash
# 03 roaming: B (IMPL_B) sends 32 MiB to A (IMPL_A); mid-transfer B's underlay address changes from 10.77.0.2
# to 10.77.0.3 (new address, route moved to it, old address removed). The transfer must complete intact and
# A must report B's new endpoint. B's link is rate-limited so the change lands mid-transfer.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A" "$IMPL_B"
require socat ping tc

setup_pair
make_random_file "$WORK/bulk.bin" 32
start_pair "" "10.77.0.1:$PORT_A"
check_ping b 10.78.0.1
wait_until 5 endpoint_is a b "10.77.0.2:$PORT_B" || fail "A did not learn B's first endpoint (dump: '$(dump_field a b 3)')"

# tbf, not netem: this kernel has no sch_netem.
tc -n "$(nsname b)" qdisc add dev ub root tbf rate 100mbit burst 128kb latency 200ms ||
	fail "tc tbf rate limit on B failed"

received_at_least() { (($(stat -c %s "$BULK_OUT" 2>/dev/null || echo 0) >= $1)); }

step "transfer B -> A, roaming B from 10.77.0.2 to 10.77.0.3 after 4 MiB"
bulk_start b a 10.78.0.1 "$WORK/bulk.bin" 90
wait_until 20 received_at_least $((4 * 1048576)) || fail "transfer did not reach 4 MiB within 20 s"
ip -n "$(nsname b)" addr add 10.77.0.3/32 dev ub || fail "adding B's new address failed"
ip -n "$(nsname b)" route replace 10.77.0.0/24 dev ub src 10.77.0.3 || fail "moving B's route failed"
ip -n "$(nsname b)" addr del 10.77.0.2/24 dev ub || fail "removing B's old address failed"
log "B roamed: $(ip -n "$(nsname b)" -4 -br addr show dev ub) / $(ip -n "$(nsname b)" -4 route show dev ub)"
received_at_least "$(stat -c %s "$WORK/bulk.bin")" && fail "transfer finished before B roamed; the test proves nothing"
bulk_finish

wait_until 5 endpoint_is a b "10.77.0.3:$PORT_B" ||
	fail "after roaming, A shows B's endpoint as '$(dump_field a b 3)', want 10.77.0.3:$PORT_B"
log "A shows B's new endpoint 10.77.0.3:$PORT_B"
check_ping a 10.78.0.2
check_ping b 10.78.0.1
pass
