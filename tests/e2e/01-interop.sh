#!/usr/bin/env bash
# 01 interop: A and B (IMPL_A, IMPL_B), configured with `wg set`. Each side initiates in turn from a fresh
# start (only the initiator has an endpoint); ping over IPv4 and IPv6 inside the tunnel; a 64 MiB TCP transfer
# each way whose sha256 is checked on arrival. A initiates over the IPv4 underlay, B over the IPv6 one.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A" "$IMPL_B"
require socat ping

setup_pair
make_random_file "$WORK/bulk.bin" 64

step "A ($IMPL_A) initiates over IPv4"
start_pair "10.77.0.2:$PORT_B" ""
check_ping a 10.78.0.2
check_ping a fd78::2
wait_until 5 endpoint_is b a "10.77.0.1:$PORT_A" ||
	fail "responder B did not learn A's endpoint from the handshake (B's dump says '$(dump_field b a 3)')"
check_ping b 10.78.0.1
check_ping b fd78::1
bulk a b 10.78.0.2 "$WORK/bulk.bin"
stop_impl a INT
stop_impl b TERM

step "B ($IMPL_B) initiates over IPv6"
start_pair "" "[fd77::1]:$PORT_A"
check_ping b fd78::1
check_ping b 10.78.0.1
wait_until 5 endpoint_is a b "[fd77::2]:$PORT_B" ||
	fail "responder A did not learn B's endpoint from the handshake (A's dump says '$(dump_field a b 3)')"
check_ping a fd78::2
bulk b a fd78::1 "$WORK/bulk.bin"
pass
