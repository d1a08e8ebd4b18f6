#!/usr/bin/env bash
# 06 uapi: the `wg` tool against A (IMPL_A), B being IMPL_B. `wg setconf` with a preshared key; `wg show dump`
# (keys, port, allowed IPs, handshake time, growing transfer counters); `wg set` persistent-keepalive;
# `wg syncconf` (peer added, allowed IPs changed, live session kept); `wg set ... peer X remove`;
# then `wg-quick up` / `down` with WG_QUICK_USERSPACE_IMPLEMENTATION=IMPL_A inside A's namespace, and
# fastwire's genkey/pubkey/genpsk against wg's.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A" "$IMPL_B"
require wg-quick ping socat

setup_pair
wg genpsk >"$WORK/psk" || fail "wg genpsk failed"
genkeys c

# write_conf FILE PEER_ALLOWED_IPS [EXTRA_PEER_LINES...]: A's wg config (no wg-quick keys) with peer B.
write_conf() {
	local file=$1 allowed=$2
	shift 2
	{
		printf '[Interface]\nPrivateKey = %s\nListenPort = %s\n\n' "$(cat "$WORK/a.key")" "$PORT_A"
		printf '[Peer]\nPublicKey = %s\nPresharedKey = %s\nAllowedIPs = %s\nEndpoint = 10.77.0.2:%s\n' \
			"$(pubkey b)" "$(cat "$WORK/psk")" "$allowed" "$PORT_B"
		printf '%s\n' "$@"
	} >"$file"
}

step "wg setconf with a preshared key"
start_impl a "$IMPL_A"
start_impl b "$IMPL_B"
write_conf "$WORK/a.conf" "10.78.0.2/32, fd78::2/128"
wgc a setconf "$(ifname a)" "$WORK/a.conf" || fail "wg setconf on A failed"
addr a "$(ifname a)" 10.78.0.1/24 fd78::1/64
ip -n "$(nsname a)" link set "$(ifname a)" up || fail "ip link set up on A failed"
configure b "$PORT_B" a 10.78.0.1/32,fd78::1/128 10.78.0.2/24 fd78::2/64
wgc b set "$(ifname b)" peer "$(pubkey a)" preshared-key "$WORK/psk" || fail "wg set preshared-key on B failed"

header=$(wgc a show "$(ifname a)" dump | head -n 1)
[[ $header == "$(cat "$WORK/a.key")"$'\t'"$(pubkey a)"$'\t'"$PORT_A"$'\t'off ]] ||
	fail "A's dump header is '$header', want private key, public key, $PORT_A, off"
[[ $(dump_field a b 2) == "$(cat "$WORK/psk")" ]] || fail "A's dump does not show the preshared key"
[[ $(dump_field a b 3) == "10.77.0.2:$PORT_B" ]] || fail "A's dump shows endpoint '$(dump_field a b 3)'"
[[ $(dump_field a b 4 | tr ',' '\n' | sort | paste -sd,) == "10.78.0.2/32,fd78::2/128" ]] ||
	fail "A's dump shows allowed ips '$(dump_field a b 4)'"
[[ $(dump_field a b 5) == 0 ]] || fail "A reports a handshake before any traffic: $(dump_field a b 5)"

step "handshake and transfer counters"
check_ping a 10.78.0.2
handshake=$(dump_field a b 5)
now=$(date +%s)
((handshake > now - 60 && handshake <= now + 1)) || fail "A's latest handshake is $handshake, now is $now"
rx0=$(dump_field a b 6) tx0=$(dump_field a b 7) brx0=$(dump_field b a 6)
((rx0 > 0 && tx0 > 0)) || fail "A's counters after a ping: rx $rx0, tx $tx0"
make_random_file "$WORK/bulk.bin" 4
bulk a b 10.78.0.2 "$WORK/bulk.bin"
rx1=$(dump_field a b 6) tx1=$(dump_field a b 7) brx1=$(dump_field b a 6)
((tx1 - tx0 >= 4194304)) || fail "A's tx counter grew by $((tx1 - tx0)) bytes while it sent 4 MiB"
((brx1 - brx0 >= 4194304)) || fail "B's rx counter grew by $((brx1 - brx0)) bytes while it received 4 MiB"
((rx1 > rx0)) || fail "A's rx counter did not grow ($rx0 -> $rx1) while it received the ACKs"
log "counters: A tx +$((tx1 - tx0)), A rx +$((rx1 - rx0)), B rx +$((brx1 - brx0))"

step "wg set persistent-keepalive"
wgc a set "$(ifname a)" peer "$(pubkey b)" persistent-keepalive 25 || fail "wg set persistent-keepalive failed"
[[ $(dump_field a b 8) == 25 ]] || fail "A's dump shows keepalive '$(dump_field a b 8)', want 25"

step "wg syncconf: add peer C, widen B's allowed IPs"
write_conf "$WORK/a2.conf" "10.78.0.2/32, fd78::2/128, 10.78.9.0/24" "" "[Peer]" "PublicKey = $(pubkey c)" \
	"AllowedIPs = 10.78.0.3/32"
wgc a syncconf "$(ifname a)" "$WORK/a2.conf" || fail "wg syncconf on A failed"
[[ $(dump_field a c 4) == 10.78.0.3/32 ]] || fail "after syncconf, peer C's allowed ips are '$(dump_field a c 4)'"
[[ $(dump_field a b 4 | tr ',' '\n' | sort | paste -sd,) == "10.78.0.2/32,10.78.9.0/24,fd78::2/128" ]] ||
	fail "after syncconf, B's allowed ips are '$(dump_field a b 4)'"
[[ $(dump_field a b 5) == "$handshake" ]] || fail "syncconf disturbed B's session (handshake time changed)"
# wg sends only what the file sets, so a keepalive the file does not mention stays.
[[ $(dump_field a b 8) == 25 ]] || fail "after syncconf, B's keepalive is '$(dump_field a b 8)', want it kept at 25"
check_ping a 10.78.0.2

step "wg set peer C remove"
wgc a set "$(ifname a)" peer "$(pubkey c)" remove || fail "wg set peer remove failed"
[[ -z $(dump_field a c 1) ]] || fail "peer C still listed after removal"
[[ -n $(dump_field a b 1) ]] || fail "peer B vanished when C was removed"
check_ping a 10.78.0.2
stop_impl a

step "wg-quick up / down with $IMPL_A"
quick=$(ifname q)
{
	printf '[Interface]\nPrivateKey = %s\nListenPort = %s\nAddress = 10.78.0.1/24, fd78::1/64\n\n' \
		"$(cat "$WORK/a.key")" "$PORT_A"
	printf '[Peer]\nPublicKey = %s\nPresharedKey = %s\nAllowedIPs = 10.78.0.2/32, fd78::2/128, 10.78.7.0/24\n' \
		"$(pubkey b)" "$(cat "$WORK/psk")"
	printf 'Endpoint = 10.77.0.2:%s\n' "$PORT_B"
} >"$WORK/$quick.conf"
mkdir -p "$WORK/bin"
quick_env=(env "PATH=$WORK/bin:$PATH" "WG_QUICK_USERSPACE_IMPLEMENTATION=$IMPL_A")
case $IMPL_A in
fastwire) ln -s "$FASTWIRE" "$WORK/bin/fastwire" ;;
wireguard-go) quick_env+=(WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1) ;;
esac
# Through a pipe, as scripts capture it: the daemon wg-quick starts must not hold the pipe open
# (wireguard-go detaches its stdio), or the caller never sees end-of-file.
nsx a timeout 30 "${quick_env[@]}" wg-quick up "$WORK/$quick.conf" 2>&1 | timeout 15 cat >"$LOG_DIR/wg-quick-up.log"
rcs=("${PIPESTATUS[@]}")
((rcs[0] == 0)) || fail "wg-quick up failed (exit ${rcs[0]}): $(tail -n 3 "$LOG_DIR/wg-quick-up.log" | tr '\n' ' ')"
((rcs[1] == 0)) || fail "wg-quick up returned, but its output pipe stayed open 15 s: the $IMPL_A daemon kept the caller's stdout/stderr"
ip -n "$(nsname a)" -4 addr show dev "$quick" | grep >/dev/null 'inet 10.78.0.1/24' || fail "wg-quick did not set 10.78.0.1/24"
ip -n "$(nsname a)" route show dev "$quick" | grep >/dev/null '^10.78.7.0/24' || fail "wg-quick did not add the 10.78.7.0/24 route"
[[ $(wgc a show "$quick" listen-port) == "$PORT_A" ]] || fail "wg-quick's interface does not listen on $PORT_A"
check_ping a 10.78.0.2
nsx a timeout 30 "${quick_env[@]}" wg-quick down "$WORK/$quick.conf" >"$LOG_DIR/wg-quick-down.log" 2>&1 ||
	fail "wg-quick down failed: $(tail -n 3 "$LOG_DIR/wg-quick-down.log" | tr '\n' ' ')"
wait_until 10 eval "[[ -z \$(ip netns pids $(nsname a)) ]]" ||
	fail "after wg-quick down, processes remain in A: $(ip netns pids "$(nsname a)" | xargs -r ps -o pid=,args= -p)"
ip -n "$(nsname a)" link show "$quick" >/dev/null 2>&1 && fail "after wg-quick down, $quick still exists"
[[ -e $UAPI_DIR/$quick.sock ]] && fail "after wg-quick down, $UAPI_DIR/$quick.sock is left behind"

step "key tools"
if [[ $IMPL_A == fastwire ]]; then
	priv=$("$FASTWIRE" genkey) || fail "fastwire genkey failed"
	[[ $(printf '%s\n' "$priv" | "$FASTWIRE" pubkey) == "$(printf '%s\n' "$priv" | wg pubkey)" ]] ||
		fail "fastwire pubkey and wg pubkey disagree on a fastwire genkey key"
	[[ $("$FASTWIRE" pubkey <"$WORK/c.key") == "$(pubkey c)" ]] || fail "fastwire pubkey disagrees with wg pubkey"
	"$FASTWIRE" genpsk >"$WORK/psk2" || fail "fastwire genpsk failed"
	[[ $(wc -c <"$WORK/psk2") == 45 ]] || fail "fastwire genpsk printed $(wc -c <"$WORK/psk2") bytes, want 44 + newline"
	wgc b set "$(ifname b)" peer "$(pubkey c)" preshared-key "$WORK/psk2" allowed-ips 10.78.0.3/32 ||
		fail "wg refuses fastwire genpsk's key"
	printf 'not a key\n' | "$FASTWIRE" pubkey >/dev/null 2>&1 && fail "fastwire pubkey accepted garbage"
	log "genkey/pubkey/genpsk agree with wg"
else
	not_checked "fastwire genkey/pubkey/genpsk"
fi
pass
