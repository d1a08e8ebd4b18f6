# shellcheck shell=bash
# Note: checks use `grep >/dev/null` rather than `grep -q` in pipelines: under pipefail, grep -q exiting at
# the first match makes the writer die of SIGPIPE and the whole check fail at random.
# Helpers shared by the end-to-end scenarios. Scenarios source this file; run.sh runs them.
#
# Every scenario runs in its own bash process, and every namespace, interface and UAPI socket it makes carries
# that process's id, so concurrent runs (and other people's tunnels on this machine) never collide. The EXIT
# trap removes all of it, also after a failure or Ctrl-C.
#
# Environment: FASTWIRE (binary, default target/release/fastwire), IMPL_A / IMPL_B (fastwire | fastwire-nooffload | fastwire-1q | wireguard-go),
# E2E_LOG_DIR (daemon logs), E2E_RESULT_FILE (where the verdict line goes; run.sh reads it).

set -uo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$E2E_DIR/../.." && pwd)
FASTWIRE=${FASTWIRE:-$ROOT/target/release/fastwire}
IMPL_A=${IMPL_A:-fastwire}
IMPL_B=${IMPL_B:-fastwire}
ID=$$
UAPI_DIR=/var/run/wireguard
RESULT_FILE=${E2E_RESULT_FILE:-/dev/null}
WORK=$(mktemp -d "/tmp/fwe2e-$ID.XXXXXX")
LOG_DIR=${E2E_LOG_DIR:-/tmp/fwe2e-$ID-logs}
mkdir -p "$LOG_DIR"
# run.sh sweeps what carries this id if the scenario is killed too hard to clean up after itself.
echo "$ID" >"$LOG_DIR/id"
umask 077

NAMESPACES=()
declare -A DAEMON_PID=()
# Checks this run could not make because an implementation under test lacks the feature (reference mode).
NOT_CHECKED=()

START_US=${EPOCHREALTIME/./}
log() {
	local us=$((${EPOCHREALTIME/./} - START_US))
	printf '%4d.%03d %s\n' $((us / 1000000)) $((us / 1000 % 1000)) "$*"
}
step() { log "== $*"; }
[[ -n ${E2E_LOG_DIR:-} ]] || log "logs in $LOG_DIR"

now_ms() {
	local t=${EPOCHREALTIME/./}
	echo $((t / 1000))
}

# fail REASON: records the verdict and ends the scenario (the EXIT trap cleans up). Never call it in a subshell.
fail() {
	log "FAIL: $*"
	dump_daemon_logs
	printf 'FAIL %s\n' "$*" >"$RESULT_FILE"
	exit 1
}

# pass: ends the scenario. A scenario that could not make every check is reported SKIP, never PASS.
pass() {
	if ((${#NOT_CHECKED[@]})); then
		log "SKIP: not checked: ${NOT_CHECKED[*]}"
		printf 'SKIP not checked: %s\n' "$(IFS=';'; echo "${NOT_CHECKED[*]}")" >"$RESULT_FILE"
	else
		log "PASS"
		printf 'PASS\n' >"$RESULT_FILE"
	fi
	exit 0
}

not_checked() {
	log "not checked: $*"
	NOT_CHECKED+=("$*")
}

dump_daemon_logs() {
	local f
	for f in "$LOG_DIR"/daemon-*.log; do
		[[ -s $f ]] || continue
		log "--- last lines of $(basename "$f"):"
		tail -n 15 "$f" | sed 's/^/    /'
	done
}

cleanup() {
	trap - EXIT INT TERM
	set +e
	local ns side pids pid
	for side in "${!DAEMON_PID[@]}"; do
		kill -TERM "${DAEMON_PID[$side]}" 2>/dev/null
	done
	for ns in "${NAMESPACES[@]}"; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -TERM "$pid" 2>/dev/null
		done
	done
	for _ in $(seq 30); do
		pids=""
		for ns in "${NAMESPACES[@]}"; do pids+=$(ip netns pids "$ns" 2>/dev/null); done
		[[ -z $pids ]] && break
		sleep 0.1
	done
	for ns in "${NAMESPACES[@]}"; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			log "cleanup: process $pid ($(cat "/proc/$pid/comm" 2>/dev/null)) ignored SIGTERM; killing it"
			kill -KILL "$pid" 2>/dev/null
		done
		ip netns del "$ns" 2>/dev/null
	done
	rm -f "$UAPI_DIR"/fw-"$ID"-*.sock
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'printf "FAIL interrupted\n" >"$RESULT_FILE"; exit 130' INT TERM

# ---------------------------------------------------------------------------------------------- prerequisites

# require CMD...: a missing tool is a FAIL with the reason, never a silent skip.
require() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || fail "prerequisite missing: '$c' not found (scripts/test.sh installs it)"
	done
}

require_basics() {
	[[ $(id -u) -eq 0 ]] || fail "prerequisite missing: the e2e tests need root (namespaces, TUN)"
	[[ -c /dev/net/tun ]] || fail "prerequisite missing: /dev/net/tun"
	require ip wg timeout sha256sum ss
	local impl
	for impl in "$@"; do
		case $impl in
		fastwire | fastwire-nooffload | fastwire-1q | fastwire-rt | fastwire-rt-nocap)
			[[ -x $FASTWIRE ]] || fail "fastwire binary not found at $FASTWIRE (cargo build --release -p fastwire)" ;;
		wireguard-go) require wireguard-go ;;
		*) fail "unknown implementation '$impl' (use fastwire or wireguard-go)" ;;
		esac
	done
	mkdir -p "$UAPI_DIR"
}

# ------------------------------------------------------------------------------------------ names and places

nsname() { echo "fwe2e-$ID-$1"; }
ifname() { echo "fw-$ID-$1"; }
sockpath() { echo "$UAPI_DIR/$(ifname "$1").sock"; }

# nsx SIDE CMD...: runs CMD inside SIDE's namespace. Not for background daemons (see start_impl).
nsx() {
	local side=$1
	shift
	ip netns exec "$(nsname "$side")" "$@"
}

wgc() {
	local side=$1
	shift
	nsx "$side" wg "$@"
}

new_ns() {
	local side ns
	for side in "$@"; do
		ns=$(nsname "$side")
		ip netns add "$ns" || fail "ip netns add $ns failed"
		NAMESPACES+=("$ns")
		ip -n "$ns" link set lo up
		# No duplicate address detection: addresses (ours, and those fastwire up / wg-quick add) work at once.
		ip netns exec "$ns" sysctl -q -w net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 ||
			fail "disabling IPv6 DAD in $ns failed"
	done
}

# veth SIDE_A DEV_A SIDE_B DEV_B: a cable between two namespaces, created directly inside them.
veth() {
	ip link add "$2" netns "$(nsname "$1")" type veth peer name "$4" netns "$(nsname "$3")" ||
		fail "creating veth $2<->$4 failed"
	ip -n "$(nsname "$1")" link set "$2" up || fail "ip link set $2 up failed"
	ip -n "$(nsname "$3")" link set "$4" up || fail "ip link set $4 up failed"
}

# addr SIDE DEV ADDR/LEN...: IPv6 without duplicate address detection, so addresses are usable at once.
addr() {
	local side=$1 dev=$2 a
	shift 2
	for a in "$@"; do
		if [[ $a == *:* ]]; then
			ip -n "$(nsname "$side")" addr add "$a" dev "$dev" nodad || fail "ip addr add $a dev $dev failed"
		else
			ip -n "$(nsname "$side")" addr add "$a" dev "$dev" || fail "ip addr add $a dev $dev failed"
		fi
	done
}

genkeys() {
	local side
	for side in "$@"; do
		wg genkey >"$WORK/$side.key" || fail "wg genkey failed"
		wg pubkey <"$WORK/$side.key" >"$WORK/$side.pub" || fail "wg pubkey failed"
	done
}
pubkey() { cat "$WORK/$1.pub"; }

# ------------------------------------------------------------------------------------------------ waiting

# wait_until SECONDS CMD...: polls CMD until it succeeds; false after SECONDS.
wait_until() {
	local deadline=$(($(now_ms) + $1 * 1000))
	shift
	until "$@" >/dev/null 2>&1; do
		(($(now_ms) >= deadline)) && return 1
		sleep 0.1
	done
	return 0
}

# ----------------------------------------------------------------------------------------- implementations

# start_impl SIDE IMPL [ARG...]: runs IMPL in the foreground (-f) inside SIDE's namespace with interface
# `ifname SIDE`, records its real PID and waits until the interface and the UAPI socket exist. ARGs go to
# fastwire's command line (wireguard-go takes none).
start_impl() {
	local side=$1 impl=$2 ns iface logf pid
	shift 2
	local extra=("$@")
	ns=$(nsname "$side")
	iface=$(ifname "$side")
	logf="$LOG_DIR/daemon-$impl-$side.log"
	log "starting $impl as $iface in $ns"
	# `ip netns exec` execs the program, so $! is the daemon itself (not a wrapper we could kill instead).
	case $impl in
	fastwire) ip netns exec "$ns" "$FASTWIRE" "${extra[@]}" -f "$iface" >>"$logf" 2>&1 & ;;
	# The fallback path: plain TUN packets, no TSO/GRO (what a kernel without offloads gets).
	fastwire-nooffload) ip netns exec "$ns" "$FASTWIRE" --no-offload "${extra[@]}" -f "$iface" >>"$logf" 2>&1 & ;;
	# The single-queue data path (what Windows and macOS run): one TUN queue, the crypto on every worker.
	fastwire-1q) ip netns exec "$ns" "$FASTWIRE" --tun-queues 1 --workers 2 "${extra[@]}" -f "$iface" >>"$logf" 2>&1 & ;;
	# Real-time data-path workers; -nocap: the same without CAP_SYS_NICE (it must run on, at normal priority).
	fastwire-rt) ip netns exec "$ns" "$FASTWIRE" --realtime "${extra[@]}" -f "$iface" >>"$logf" 2>&1 & ;;
	fastwire-rt-nocap) ip netns exec "$ns" setpriv --bounding-set=-sys_nice --inh-caps=-sys_nice "$FASTWIRE" --realtime "${extra[@]}" -f "$iface" >>"$logf" 2>&1 & ;;
	wireguard-go)
		((${#extra[@]} == 0)) || fail "wireguard-go takes no arguments (${extra[*]})"
		ip netns exec "$ns" env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 LOG_LEVEL=verbose wireguard-go -f "$iface" >>"$logf" 2>&1 &
		;;
	*) fail "unknown implementation '$impl'" ;;
	esac
	pid=$!
	DAEMON_PID[$side]=$pid
	local deadline=$(($(now_ms) + 10000))
	# Ready means the UAPI socket answers: a stale socket file left by a killed daemon does not count.
	until ip -n "$ns" link show "$iface" >/dev/null 2>&1 && wgc "$side" show "$iface" dump >/dev/null 2>&1; do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid"
			fail "$impl $iface exited (status $?) before its interface and UAPI socket existed: $(tail -n 3 "$logf" | tr '\n' ' ')"
		fi
		(($(now_ms) >= deadline)) && fail "$impl did not create $iface and serve $(sockpath "$side") within 10 s"
		sleep 0.05
	done
}

# stop_impl SIDE [SIGNAL]: signals the daemon and waits (bounded) for it to exit. After SIGTERM or SIGINT
# its interface and UAPI socket must be gone too.
stop_impl() {
	local side=$1 sig=${2:-TERM} pid=${DAEMON_PID[$1]:-}
	[[ -n $pid ]] || return 0
	kill "-$sig" "$pid" 2>/dev/null
	wait_until 10 eval "! kill -0 $pid" || fail "daemon $pid ($side) still running 10 s after SIG$sig"
	wait "$pid" 2>/dev/null
	unset "DAEMON_PID[$side]"
	if [[ $sig == TERM || $sig == INT ]]; then
		ip -n "$(nsname "$side")" link show "$(ifname "$side")" >/dev/null 2>&1 &&
			fail "after SIG$sig the daemon exited but left $(ifname "$side") behind"
		[[ -e $(sockpath "$side") ]] && fail "after SIG$sig the daemon exited but left $(sockpath "$side") behind"
	fi
	return 0
}

daemon_alive() { kill -0 "${DAEMON_PID[$1]}" 2>/dev/null; }

# ------------------------------------------------------------------------------------------ common topology

# Underlay: 10.77.0.0/24 + fd77::/64 on a veth pair; a = .1, b = .2. Overlay: 10.78.0.0/24 + fd78::/64.
PORT_A=51820
PORT_B=51821

setup_pair() {
	new_ns a b
	veth a ua b ub
	addr a ua 10.77.0.1/24 fd77::1/64
	addr b ub 10.77.0.2/24 fd77::2/64
	genkeys a b
}

# configure SIDE PORT PEER_SIDE PEER_ALLOWED_IPS OVERLAY_V4 OVERLAY_V6 [ENDPOINT]: keys, port, one peer,
# overlay addresses, link up — as `wg set` drives wireguard-go.
configure() {
	local side=$1 port=$2 peer=$3 allowed=$4 v4=$5 v6=$6 endpoint=${7:-} iface
	iface=$(ifname "$side")
	local args=(set "$iface" private-key "$WORK/$side.key" listen-port "$port" peer "$(pubkey "$peer")" allowed-ips "$allowed")
	[[ -n $endpoint ]] && args+=(endpoint "$endpoint")
	wgc "$side" "${args[@]}" || fail "wg ${args[*]} failed"
	addr "$side" "$iface" "$v4" "$v6"
	ip -n "$(nsname "$side")" link set "$iface" up || fail "ip link set $iface up failed"
}

# start_pair A_ENDPOINT B_ENDPOINT: fresh daemons on both sides; give an endpoint only to the initiator.
start_pair() {
	start_impl a "$IMPL_A"
	start_impl b "$IMPL_B"
	configure a "$PORT_A" b 10.78.0.2/32,fd78::2/128 10.78.0.1/24 fd78::1/64 "${1:-}"
	configure b "$PORT_B" a 10.78.0.1/32,fd78::1/128 10.78.0.2/24 fd78::2/64 "${2:-}"
}

# --------------------------------------------------------------------------------------------------- probes

# ping_wait SIDE ADDR SECONDS: true once ADDR answers (the first ping also starts the handshake).
ping_wait() {
	local side=$1 dst=$2 deadline=$(($(now_ms) + $3 * 1000))
	until nsx "$side" ping -n -q -c 1 -W 1 "$dst" >/dev/null 2>&1; do
		(($(now_ms) >= deadline)) && return 1
	done
	return 0
}

# ping_all SIDE ADDR [COUNT]: every one of COUNT pings must be answered.
ping_all() {
	local side=$1 dst=$2 count=${3:-5}
	nsx "$side" ping -n -q -c "$count" -i 0.1 -W 1 -w $((count / 5 + 3)) "$dst" >>"$LOG_DIR/ping.log" 2>&1
}

# check_ping SIDE ADDR [SECONDS]: the tunnel answers within SECONDS, then answers every ping.
check_ping() {
	local side=$1 dst=$2 t=${3:-10} t0
	t0=$(now_ms)
	ping_wait "$side" "$dst" "$t" || fail "ping $side -> $dst: no answer within $t s"
	log "ping $side -> $dst: first answer after $(($(now_ms) - t0)) ms"
	ping_all "$side" "$dst" || fail "ping $side -> $dst: first answer came, then pings were lost"
}

# dump_field SIDE PEER_SIDE COLUMN: one column of SIDE's `wg show dump` line for PEER_SIDE
# (3 endpoint, 4 allowed ips, 5 latest handshake, 6 rx bytes, 7 tx bytes, 8 keepalive).
dump_field() {
	local side=$1 peer=$2 col=$3 key
	key=$(pubkey "$peer")
	wgc "$side" show "$(ifname "$side")" dump | awk -F'\t' -v k="$key" -v c="$col" 'NR > 1 && $1 == k { print $c }'
}

# endpoint_is SIDE PEER_SIDE ENDPOINT
endpoint_is() { [[ $(dump_field "$1" "$2" 3) == "$3" ]]; }

# ------------------------------------------------------------------------------------------- bulk transfers

# make_random_file PATH MIB: random bytes and their sha256 in PATH.sha256.
make_random_file() {
	head -c $(($2 * 1024 * 1024)) /dev/urandom >"$1" || fail "cannot write $1"
	sha256sum <"$1" | cut -d' ' -f1 >"$1.sha256"
}

tcp_listening() { [[ -n $(nsx "$1" ss -Hltn "sport = :$2") ]]; }

# bulk_start SRC DST DST_ADDR FILE [SECONDS]: starts sending FILE over TCP (socat) from SRC to DST_ADDR in DST.
# bulk_finish then waits for it and checks the received bytes' sha256 against the sent file's.
BULK_RX_PID="" BULK_TX_PID="" BULK_OUT="" BULK_FILE="" BULK_T0=0 BULK_DESC=""
bulk_start() {
	local src=$1 dst=$2 dst_addr=$3 file=$4 t=${5:-60} port listen connect
	port=$((20000 + RANDOM % 20000))
	BULK_OUT="$WORK/received.$port"
	BULK_FILE=$file
	BULK_DESC="$src -> $dst_addr ($dst)"
	if [[ $dst_addr == *:* ]]; then
		listen="TCP6-LISTEN:$port,reuseaddr"
		connect="TCP6:[$dst_addr]:$port"
	else
		listen="TCP4-LISTEN:$port,reuseaddr"
		connect="TCP4:$dst_addr:$port"
	fi
	timeout "$t" ip netns exec "$(nsname "$dst")" socat -u "$listen" "OPEN:$BULK_OUT,creat,trunc" \
		2>>"$LOG_DIR/socat.log" &
	BULK_RX_PID=$!
	wait_until 5 tcp_listening "$dst" "$port" || fail "socat receiver did not listen on port $port in $dst"
	BULK_T0=$(now_ms)
	timeout "$t" ip netns exec "$(nsname "$src")" socat -u "OPEN:$file" "$connect" 2>>"$LOG_DIR/socat.log" &
	BULK_TX_PID=$!
}

bulk_finish() {
	local tx_rc rx_rc size ms got
	wait "$BULK_TX_PID"
	tx_rc=$?
	wait "$BULK_RX_PID"
	rx_rc=$?
	ms=$(($(now_ms) - BULK_T0))
	size=$(stat -c %s "$BULK_FILE")
	got=$(stat -c %s "$BULK_OUT" 2>/dev/null || echo 0)
	((tx_rc == 124 || rx_rc == 124)) && fail "bulk $BULK_DESC timed out after $((ms / 1000)) s ($got of $size bytes arrived)"
	((tx_rc == 0)) || fail "bulk $BULK_DESC: sender exited $tx_rc ($got of $size bytes arrived)"
	((rx_rc == 0)) || fail "bulk $BULK_DESC: receiver exited $rx_rc ($got of $size bytes arrived)"
	((got == size)) || fail "bulk $BULK_DESC: $got of $size bytes arrived"
	[[ $(sha256sum <"$BULK_OUT" | cut -d' ' -f1) == "$(cat "$BULK_FILE.sha256")" ]] ||
		fail "bulk $BULK_DESC: all $size bytes arrived but their sha256 differs from the sent file's"
	rm -f "$BULK_OUT"
	log "bulk $BULK_DESC: $((size / 1048576)) MiB verified (sha256) in $ms ms, $((size * 8 / (ms > 0 ? ms : 1) / 1000)) Mbit/s"
}

bulk() {
	bulk_start "$@"
	bulk_finish
}

# ------------------------------------------------------------------------------------ UAPI and TCP transport

# uapi SIDE LINE...: one UAPI request to SIDE's daemon (LINEs plus the closing blank line); prints the answer.
uapi() {
	local side=$1
	shift
	timeout 10 python3 "$E2E_DIR/uapi.py" "$(sockpath "$side")" "$@"
}

# uapi_set SIDE KEY=VALUE...: one `set=1` transaction, for what `wg set` cannot express (tcp:// endpoints,
# listen_tcp_port). Fails the scenario unless the daemon answers errno=0.
uapi_set() {
	local side=$1 answer
	shift
	answer=$(uapi "$side" set=1 "$@" 2>&1) || fail "UAPI set=1 $* on $side failed: $answer"
	[[ $answer == *errno=0* ]] || fail "UAPI set=1 $* on $side answered: $(echo "$answer" | tr '\n' ' ')"
}

# hexkey BASE64_KEY: the key as the UAPI spells it.
hexkey() { base64 -d <<<"$1" | od -An -tx1 | tr -d ' \n'; }

# tcp_endpoint SIDE PEER_SIDE ENDPOINT: points SIDE's peer PEER_SIDE at tcp://ENDPOINT.
tcp_endpoint() { uapi_set "$1" "public_key=$(hexkey "$(pubkey "$2")")" "endpoint=tcp://$3"; }

# fw_stats SIDE: fastwire's counters (`fastwire-stats=1`) as NAME=VALUE lines.
fw_stats() { uapi "$1" fastwire-stats=1; }

# fw_stat SIDE NAME: one counter (tcp_connections_established, tcp_closed_by_peer, drop_tx_tcp_not_connected..),
# 0 when the daemon has not counted any.
fw_stat() {
	local value
	value=$(fw_stats "$1" 2>/dev/null | awk -F= -v k="$2" '$1 == k { print $2 }')
	echo "${value:-0}"
}

# fw_stat_at_least SIDE NAME MIN: for wait_until.
fw_stat_at_least() { (($(fw_stat "$1" "$2") >= $3)); }

# fw_show SIDE: `fastwire show` of SIDE's interface, kept in the log directory.
fw_show() {
	nsx "$1" "$FASTWIRE" show "$(ifname "$1")" >"$LOG_DIR/fastwire-show-$1.txt" 2>&1 ||
		fail "fastwire show $(ifname "$1") failed: $(head -n 3 "$LOG_DIR/fastwire-show-$1.txt")"
	cat "$LOG_DIR/fastwire-show-$1.txt"
}

# udp_counter SIDE PORT [DEV...]: counts (nft) the UDP datagrams SIDE's namespace receives for PORT from now
# on, per incoming DEV if given; udp_count SIDE PORT [DEV] reads it. Proves a tunnel meant to run over TCP
# never used UDP.
udp_counter() {
	local side=$1 port=$2 rules="udp dport $2 counter" dev
	shift 2
	if (($#)); then
		rules=""
		for dev in "$@"; do rules+="iifname \"$dev\" udp dport $port counter"$'\n'; done
	fi
	nsx "$side" nft delete table inet fwe2e_udp 2>/dev/null
	nsx "$side" nft -f - <<-NFT || fail "nft: adding the UDP counter in $side failed"
		table inet fwe2e_udp {
			chain input {
				type filter hook input priority 0; policy accept;
				$rules
			}
		}
	NFT
}
udp_count() {
	local rule="udp dport $2 counter"
	[[ -n ${3:-} ]] && rule="iifname \"$3\" $rule"
	nsx "$1" nft list chain inet fwe2e_udp input 2>/dev/null |
		awk -v r="$rule" 'index($0, "\t" r " packets ") { for (i = 1; i < NF; i++) if ($i == "packets") { print $(i + 1); exit } }'
}
# udp_count_at_least SIDE PORT MIN [DEV]
udp_count_at_least() { (($(udp_count "$1" "$2" "${4:-}") >= $3)); }

# daemon_rss_kib SIDE: the daemon's resident memory.
daemon_rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/${DAEMON_PID[$1]}/status"; }

# bulk_many SECONDS FILE "SRC DST DST_ADDR"...: every transfer at once, each its own TCP connection (socat);
# all must arrive complete with the sent file's sha256 within SECONDS.
bulk_many() {
	local t=$1 file=$2 src dst dst_addr port base i n listen t0 size got tx_rc rx_rc
	shift 2
	local -a specs=("$@") srcs=() connects=() outs=() descs=() rx_pids=() tx_pids=()
	base=$((20000 + RANDOM % 20000))
	n=${#specs[@]}
	for ((i = 0; i < n; i++)); do
		read -r src dst dst_addr <<<"${specs[i]}"
		port=$((base + i))
		srcs[i]=$src
		outs[i]="$WORK/received-many.$port"
		descs[i]="$src -> $dst_addr ($dst)"
		if [[ $dst_addr == *:* ]]; then
			listen="TCP6-LISTEN:$port,reuseaddr" connects[i]="TCP6:[$dst_addr]:$port"
		else
			listen="TCP4-LISTEN:$port,reuseaddr" connects[i]="TCP4:$dst_addr:$port"
		fi
		timeout "$t" ip netns exec "$(nsname "$dst")" socat -u "$listen" "OPEN:${outs[i]},creat,trunc" \
			2>>"$LOG_DIR/socat.log" &
		rx_pids[i]=$!
		wait_until 5 tcp_listening "$dst" "$port" || fail "socat receiver did not listen on port $port in $dst"
	done
	t0=$(now_ms)
	for ((i = 0; i < n; i++)); do
		timeout "$t" ip netns exec "$(nsname "${srcs[i]}")" socat -u "OPEN:$file" "${connects[i]}" \
			2>>"$LOG_DIR/socat.log" &
		tx_pids[i]=$!
	done
	size=$(stat -c %s "$file")
	for ((i = 0; i < n; i++)); do
		wait "${tx_pids[i]}"
		tx_rc=$?
		wait "${rx_pids[i]}"
		rx_rc=$?
		got=$(stat -c %s "${outs[i]}" 2>/dev/null || echo 0)
		((tx_rc == 124 || rx_rc == 124)) && fail "bulk ${descs[i]} timed out after $t s ($got of $size bytes arrived)"
		((tx_rc == 0)) || fail "bulk ${descs[i]}: sender exited $tx_rc ($got of $size bytes arrived)"
		((rx_rc == 0)) || fail "bulk ${descs[i]}: receiver exited $rx_rc ($got of $size bytes arrived)"
		((got == size)) || fail "bulk ${descs[i]}: $got of $size bytes arrived"
		[[ $(sha256sum <"${outs[i]}" | cut -d' ' -f1) == "$(cat "$file.sha256")" ]] ||
			fail "bulk ${descs[i]}: all $size bytes arrived but their sha256 differs from the sent file's"
		rm -f "${outs[i]}"
	done
	log "bulk: $n transfers of $((size / 1048576)) MiB at once, all verified (sha256), in $(($(now_ms) - t0)) ms"
}
