#!/usr/bin/env bash
# 17 systemd: what packaging/systemd/fastwire@.service relies on, for real (PID 1 here is not systemd, so
# the unit itself cannot be started; everything it runs is):
#  - `systemd-analyze verify` accepts the unit with no warning (its ExecStart pointed at this build);
#  - `fastwire up FILE` under a NOTIFY_SOCKET (Type=notify) sends READY=1 only once the tunnel carries
#    traffic, and STOPPING=1 when it is told to stop;
#  - the unit's ExecReload, `fastwire syncconf IFACE FILE`, applies an edited file — a peer added, a peer
#    removed, the live peer's AllowedIPs changed — and keeps the live peer's session (no new handshake).
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A" "$IMPL_B"
require ping python3 systemd-analyze
[[ $IMPL_A == fastwire* ]] || { not_checked "systemd unit, readiness and syncconf ($IMPL_A has none)"; pass; }

step "systemd-analyze verify"
unit_dir="$WORK/units"
mkdir -p "$unit_dir"
sed "s|/usr/bin/fastwire|$FASTWIRE|g" "$E2E_DIR/../../packaging/systemd/fastwire@.service" >"$unit_dir/fastwire@.service"
systemd-analyze verify "$unit_dir/fastwire@wg0.service" >"$LOG_DIR/verify.txt" 2>&1 ||
	fail "systemd-analyze verify failed: $(head -n 5 "$LOG_DIR/verify.txt")"
[[ -s $LOG_DIR/verify.txt ]] && fail "systemd-analyze verify warns: $(head -n 5 "$LOG_DIR/verify.txt")"

setup_pair
genkeys c
start_impl b "$IMPL_B"
configure b "$PORT_B" a 10.78.0.1/32 10.78.0.2/24 fd78::2/64
iface=$(ifname u)
conf="$WORK/$iface.conf"
write_conf() { # write_conf EXTRA_ALLOWED [PEER_C_SECTION]
	cat >"$conf" <<CONF
[Interface]
PrivateKey = $(cat "$WORK/a.key")
ListenPort = $PORT_A
Address = 10.78.0.1/24

[Peer]
PublicKey = $(pubkey b)
AllowedIPs = 10.78.0.2/32$1
Endpoint = 10.77.0.2:$PORT_B
${2:-}
CONF
}
# The file as first written: B, and a peer C that the reload removes.
write_conf "" "[Peer]
PublicKey = $(pubkey c)
AllowedIPs = 10.78.0.3/32"

step "fastwire up under NOTIFY_SOCKET"
notify_sock="$WORK/notify.sock"
python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(1)
end = time.monotonic() + 60
with open(sys.argv[2], "a") as out:
    while time.monotonic() < end:
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            continue
        out.write("%.3f %s\n" % (time.time(), msg))
        out.flush()
        if "STOPPING=1" in msg:
            break' "$notify_sock" "$WORK/notify.log" &
listener=$!
wait_until 5 test -S "$notify_sock" || fail "the notify listener did not start"
ip netns exec "$(nsname a)" env NOTIFY_SOCKET="$notify_sock" "$FASTWIRE" up "$conf" >>"$LOG_DIR/daemon-fastwire-up.log" 2>&1 &
up_pid=$!
wait_until 15 grep -q READY=1 "$WORK/notify.log" || fail "no READY=1 within 15 s: $(tail -n 3 "$LOG_DIR/daemon-fastwire-up.log")"
# READY=1 means the interface, its configuration and addresses are in place.
ip -n "$(nsname a)" -o addr show dev "$iface" | grep >/dev/null 10.78.0.1/24 || fail "READY=1 came before the address"
check_ping a 10.78.0.2

step "reload: fastwire syncconf with an edited file keeps the session"
hs_before=$(nsx a wg show "$iface" latest-handshakes | awk -v k="$(pubkey b)" '$1 == k { print $2 }')
((hs_before > 0)) || fail "no handshake with B before the reload"
genkeys d
write_conf ", 10.78.9.0/24" "[Peer]
PublicKey = $(pubkey d)
AllowedIPs = 10.78.0.4/32"
sleep 1.2 # a new handshake would show a later second
nsx a "$FASTWIRE" syncconf "$iface" "$conf" >"$LOG_DIR/syncconf.txt" 2>&1 || fail "fastwire syncconf failed: $(cat "$LOG_DIR/syncconf.txt")"
peers=$(nsx a wg show "$iface" peers | sort)
expected=$(printf '%s\n' "$(pubkey b)" "$(pubkey d)" | sort)
[[ $peers == "$expected" ]] || fail "after syncconf the peers are $peers, not B and D"
nsx a wg show "$iface" allowed-ips | grep "$(pubkey b)" | grep >/dev/null 10.78.9.0/24 || fail "B's new AllowedIPs were not applied"
check_ping a 10.78.0.2
hs_after=$(nsx a wg show "$iface" latest-handshakes | awk -v k="$(pubkey b)" '$1 == k { print $2 }')
[[ $hs_after == "$hs_before" ]] || fail "the reload made a new handshake with B ($hs_before -> $hs_after): the session was dropped"
log "peers now B and D, B's session kept (handshake at $hs_before)"

step "stop: STOPPING=1, nothing left behind"
kill -TERM "$up_pid"
wait_until 10 eval "! kill -0 $up_pid" || fail "fastwire up still runs 10 s after SIGTERM"
wait "$up_pid" 2>/dev/null
wait_until 5 grep -q STOPPING=1 "$WORK/notify.log" || fail "no STOPPING=1 after SIGTERM"
wait "$listener" 2>/dev/null
ip -n "$(nsname a)" link show "$iface" >/dev/null 2>&1 && fail "$iface left behind"
[[ -e $UAPI_DIR/$iface.sock ]] && fail "the UAPI socket was left behind"
pass
