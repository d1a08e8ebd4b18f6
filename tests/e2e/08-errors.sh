#!/usr/bin/env bash
# 08 errors: IMPL_A refuses what it cannot do, with one clear line and a non-zero exit, and leaves nothing
# behind: started without root; `wg set listen-port` on a port another program holds (the daemon keeps
# running); an interface name already taken by another kind of link (a veth) (foreground and daemon mode) or by a
# running instance (which must keep working).
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A"
require setpriv socat

new_ns a
genkeys a

# run_impl OUT CMD_PREFIX... -- ARGS...: runs IMPL_A with a bounded time; output in OUT, status in RUN_RC.
run_impl() {
	local out=$1
	shift
	local pre=() args=()
	while [[ $1 != -- ]]; do
		pre+=("$1")
		shift
	done
	shift
	args=("$@")
	case $IMPL_A in
	fastwire) nsx a "${pre[@]}" timeout 10 "$IMPL_BIN" "${args[@]}" >"$out" 2>&1 ;;
	wireguard-go)
		nsx a "${pre[@]}" env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 timeout 10 wireguard-go "${args[@]}" >"$out" 2>&1
		;;
	esac
	RUN_RC=$?
}

# expect_refusal WHAT OUT PATTERN: non-zero exit (not a timeout) and, for fastwire, exactly one line
# matching PATTERN (case-insensitive).
expect_refusal() {
	local what=$1 out=$2 pattern=$3 lines
	((RUN_RC == 124)) && fail "$what: still running after 10 s instead of refusing"
	((RUN_RC != 0)) || fail "$what: exited 0; output: $(head -n 3 "$out" | tr '\n' ' ')"
	if [[ $IMPL_A == fastwire ]]; then
		lines=$(grep -c . "$out")
		((lines == 1)) || fail "$what: want one line, got $lines: $(head -n 5 "$out" | tr '\n' '|')"
		grep -qiE "$pattern" "$out" || fail "$what: the message does not say why ($pattern): $(cat "$out")"
	fi
	log "$what: exit $RUN_RC: $(grep . "$out" | tail -n 1)"
}

# The binary must be executable by nobody, or setpriv would fail to exec it and fake a refusal.
IMPL_BIN=$FASTWIRE
if [[ $IMPL_A == fastwire ]]; then
	mkdir -p "$WORK/pub"
	cp "$FASTWIRE" "$WORK/pub/fastwire" || fail "cannot copy $FASTWIRE"
	chmod 755 "$WORK" "$WORK/pub" "$WORK/pub/fastwire"
	IMPL_BIN=$WORK/pub/fastwire
fi
unprivileged=(setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all --bounding-set=-all)

step "started without root"
if [[ $IMPL_A == fastwire ]]; then
	nsx a "${unprivileged[@]}" "$IMPL_BIN" --version >/dev/null 2>&1 ||
		fail "nobody cannot run $IMPL_BIN --version, so a refusal would prove nothing"
fi
run_impl "$LOG_DIR/noroot.out" "${unprivileged[@]}" -- -f "$(ifname n)"
expect_refusal "without root" "$LOG_DIR/noroot.out" 'root|CAP_NET_ADMIN|permi|privilege'
ip -n "$(nsname a)" link show "$(ifname n)" >/dev/null 2>&1 && fail "without root: $(ifname n) was created anyway"
[[ -e $(sockpath n) ]] && fail "without root: $(sockpath n) was created anyway"

step "interface name taken by a veth link"
taken=$(ifname t)
# A veth, since this kernel has no dummy driver.
ip -n "$(nsname a)" link add "$taken" type veth peer name takenpeer || fail "creating veth $taken failed"
run_impl "$LOG_DIR/taken-fg.out" -- -f "$taken"
expect_refusal "name taken (foreground)" "$LOG_DIR/taken-fg.out" "$taken|exist|busy|in use|taken"
run_impl "$LOG_DIR/taken-bg.out" -- "$taken"
expect_refusal "name taken (daemon mode)" "$LOG_DIR/taken-bg.out" "$taken|exist|busy|in use|taken"
ip -n "$(nsname a)" -d link show "$taken" | grep >/dev/null veth || fail "the refused start removed or changed the veth $taken"
[[ -e $(sockpath t) ]] && fail "the refused start left $(sockpath t) behind"

step "interface name taken by a running instance"
start_impl a "$IMPL_A"
wgc a set "$(ifname a)" private-key "$WORK/a.key" listen-port "$PORT_A" || fail "wg set on A failed"
ip -n "$(nsname a)" link set "$(ifname a)" up || fail "ip link set up failed"
run_impl "$LOG_DIR/taken-live.out" -- -f "$(ifname a)"
expect_refusal "name taken by a running instance" "$LOG_DIR/taken-live.out" "$(ifname a)|exist|busy|in use|running|taken"
daemon_alive a || fail "the first instance died when a second one tried its name"
[[ $(wgc a show "$(ifname a)" listen-port) == "$PORT_A" ]] || fail "the first instance's UAPI socket no longer answers"

step "wg set listen-port on a port in use"
busy_port=51999
ip netns exec "$(nsname a)" socat -u "UDP4-RECV:$busy_port" /dev/null >>"$LOG_DIR/socat.log" 2>&1 &
wait_until 5 eval "[[ -n \$(ip netns exec $(nsname a) ss -Hlun 'sport = :$busy_port') ]]" ||
	fail "socat did not bind UDP port $busy_port"
wgc a set "$(ifname a)" listen-port "$busy_port" >"$LOG_DIR/port.out" 2>&1 &&
	fail "wg set listen-port $busy_port succeeded although socat holds the port"
grep -qiE 'in use|EADDRINUSE' "$LOG_DIR/port.out" || fail "wg's error does not say the port is in use: $(cat "$LOG_DIR/port.out")"
log "port in use: $(cat "$LOG_DIR/port.out")"
daemon_alive a || fail "$IMPL_A died when its port change was refused"
wgc a set "$(ifname a)" listen-port $((busy_port - 1)) || fail "after the refusal, wg set listen-port $((busy_port - 1)) failed"
[[ $(wgc a show "$(ifname a)" listen-port) == $((busy_port - 1)) ]] || fail "listen port did not change to $((busy_port - 1))"

[[ $IMPL_A == fastwire ]] || not_checked "one-line error messages (wireguard-go prints a banner)"
pass
