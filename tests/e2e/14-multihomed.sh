#!/usr/bin/env bash
# 14 multihomed: B (IMPL_B) has two addresses on its link, 10.77.0.2 (primary, what its routes pick as the
# source) and 10.77.0.3 (fd77::2 and fd77::3 for IPv6); A (IMPL_A) talks to the second one. A firewall in A's
# namespace passes only answers from the address A asked (as a stateful firewall or NAT does) and counts both.
# The tunnel must work, every answer must come from .3 / fd77::3, none from the primary — replies leave from
# the address the peer talks to, for handshakes and data alike.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A" "$IMPL_B"
require socat ping nft

setup_pair
ip -n "$(nsname b)" addr add 10.77.0.3/24 dev ub || fail "adding B's second IPv4 address failed"
ip -n "$(nsname b)" addr add fd77::3/64 dev ub nodad || fail "adding B's second IPv6 address failed"
make_random_file "$WORK/bulk.bin" 8

nsx a nft -f - <<NFT || fail "nft: the source firewall in A failed"
table inet fwe2e_src {
	chain input {
		type filter hook input priority 0; policy accept;
		ip saddr 10.77.0.3 udp sport $PORT_B counter
		ip6 saddr fd77::3 udp sport $PORT_B counter
		ip saddr 10.77.0.2 udp sport $PORT_B counter drop
		ip6 saddr fd77::2 udp sport $PORT_B counter drop
	}
}
NFT
# from_count ADDR: datagrams A received from B's port and ADDR.
from_count() {
	nsx a nft list chain inet fwe2e_src input |
		awk -v a="$1" '$0 ~ "saddr " a " udp" { for (i = 1; i < NF; i++) if ($i == "packets") { print $(i + 1); exit } }'
}

step "A talks to B's second IPv4 address"
start_pair "10.77.0.3:$PORT_B" ""
check_ping a 10.78.0.2
bulk a b 10.78.0.2 "$WORK/bulk.bin" 60
wait_until 5 endpoint_is b a "10.77.0.1:$PORT_A" || fail "B did not learn A's endpoint (dump: '$(dump_field b a 3)')"
good=$(from_count 10.77.0.3) wrong=$(from_count 10.77.0.2)
log "A received from 10.77.0.3: $good, from 10.77.0.2 (dropped): $wrong"
((good >= 20)) || fail "A received only $good datagrams from 10.77.0.3"
((wrong == 0)) || fail "B answered from its primary address 10.77.0.2 ($wrong datagrams), not the one A talks to"

step "A talks to B's second IPv6 address"
wgc a set "$(ifname a)" peer "$(pubkey b)" endpoint "[fd77::3]:$PORT_B" || fail "wg set endpoint failed"
check_ping a fd78::2
check_ping a 10.78.0.2
good=$(from_count fd77::3) wrong=$(from_count fd77::2)
log "A received from fd77::3: $good, from fd77::2 (dropped): $wrong"
((good > 5)) || fail "A received only $good datagrams from fd77::3"
((wrong == 0)) || fail "B answered from its primary address fd77::2 ($wrong datagrams), not the one A talks to"
pass
