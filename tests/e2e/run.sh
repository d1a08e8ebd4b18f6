#!/usr/bin/env bash
# Runs the end-to-end scenarios (tests/e2e/NN-*.sh) against real tunnels in network namespaces.
#
# Usage: tests/e2e/run.sh [NAME...]     NAME selects scenarios by substring: 01, interop, roaming, ...
# Environment:
#   FASTWIRE=path          the binary under test (default: target/release/fastwire)
#   E2E_IMPL=wireguard-go  reference mode: every side runs Debian's wireguard-go, to check the tests themselves;
#                          checks only fastwire can pass are reported SKIP (never PASS)
#   IMPL_A=.. IMPL_B=..    force the implementation of side A / side B for every scenario
#   E2E_TIMEOUT=seconds    limit per scenario (default 180, or what a scenario asks for in a line
#                          "# e2e-timeout: N" of its own)
# Prints one PASS/FAIL/SKIP line per scenario and, last, "N passed, N failed"; exits non-zero if any failed.
set -uo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$E2E_DIR/../.." && pwd)
export FASTWIRE=${FASTWIRE:-$ROOT/target/release/fastwire}
TIMEOUT=${E2E_TIMEOUT:-180}
LOG_ROOT=${E2E_LOG_ROOT:-/tmp/fastwire-e2e-$(date +%Y%m%d-%H%M%S)-$$}

# scenario  side-A  side-B. The matrix covers fastwire against itself and against wireguard-go; scenario 01
# also swaps which side initiates, so wireguard-go <-> fastwire is covered in both directions. In 03, B roams
# and A observes: fastwire is tested in both roles (wireguard-go as the roamer only recovers after its
# 15 s handshake retry, because it keeps sending from the vanished source address).
if [[ ${E2E_IMPL:-fastwire} == wireguard-go ]]; then
	F=wireguard-go
else
	F=fastwire
fi
CASES=(
	"01-interop $F $F"
	"01-interop $F wireguard-go"
	"01-interop ${F/fastwire/fastwire-nooffload} $F"
	"02-up-down $F -"
	"03-roaming $F $F"
	"03-roaming wireguard-go $F"
	"04-restart $F $F"
	"05-hub $F $F"
	"05-hub $F wireguard-go"
	"06-uapi $F $F"
	"07-garbage $F $F"
	"08-errors $F -"
	"09-tcp $F $F"
	"10-tcp-reconnect $F $F"
	"11-tcp-mixed $F $F"
	"12-tcp-hostile $F $F"
	"13-handshake-flood $F $F"
	"13-handshake-flood $F wireguard-go"
	"14-multihomed $F $F"
	"14-multihomed wireguard-go $F"
	"14-multihomed $F ${F/fastwire/fastwire-1q}"
	"15-impaired $F $F"
	"15-impaired $F wireguard-go"
	"16-metrics $F $F"
	"17-systemd $F $F"
	"18-package $F -"
	"19-top $F $F"
	"20-scale $F $F"
	"21-realtime ${F/fastwire/fastwire-rt} ${F/fastwire/fastwire-rt-nocap}"
	# The single-queue pipeline (Windows' and macOS' data path), on Linux: against wireguard-go both ways,
	# roaming, a hub, the TCP transport, a handshake flood.
	"01-interop ${F/fastwire/fastwire-1q} wireguard-go"
	"01-interop ${F/fastwire/fastwire-1q} $F"
	"03-roaming ${F/fastwire/fastwire-1q} ${F/fastwire/fastwire-1q}"
	"05-hub ${F/fastwire/fastwire-1q} wireguard-go"
	"09-tcp ${F/fastwire/fastwire-1q} ${F/fastwire/fastwire-1q}"
	"13-handshake-flood ${F/fastwire/fastwire-1q} ${F/fastwire/fastwire-1q}"
)

selected() {
	local name=$1 want
	((${#WANTED[@]} == 0)) && return 0
	for want in "${WANTED[@]}"; do
		[[ $name == *"$want"* ]] && return 0
	done
	return 1
}

# sweep LOGDIR: removes what a scenario killed mid-way (timeout -k) could not clean up itself.
sweep() {
	local id ns pid
	id=$(cat "$1/id" 2>/dev/null) || return 0
	[[ $id =~ ^[0-9]+$ ]] || return 0
	for ns in $(ip netns list | awk '{ print $1 }' | grep "^fwe2e-$id-"); do
		echo "cleanup: removing leftover namespace $ns" >>"$1/scenario.log"
		for pid in $(ip netns pids "$ns"); do
			kill -KILL "$pid" 2>/dev/null
		done
		ip netns del "$ns"
	done
	rm -f /var/run/wireguard/fw-"$id"-*.sock
	rm -rf /tmp/fwe2e-"$id".*
}

WANTED=("$@")
mkdir -p "$LOG_ROOT"
passed=0 failed=0 skipped=0 seen=()
CHILD=""
trap '[[ -n $CHILD ]] && kill -TERM "$CHILD" 2>/dev/null; wait "$CHILD" 2>/dev/null; echo "interrupted"; exit 130' INT TERM

for case in "${CASES[@]}"; do
	read -r name impl_a impl_b <<<"$case"
	selected "$name" || continue
	impl_a=${IMPL_A:-$impl_a}
	[[ $impl_b == - ]] && impl_b=$impl_a
	impl_b=${IMPL_B:-$impl_b}
	label="${name}[$impl_a,$impl_b]"
	[[ $impl_a == "$impl_b" ]] && label="${name}[$impl_a]"
	# Forced implementations collapse the matrix: run each scenario once.
	[[ " ${seen[*]} " == *" $label "* ]] && continue
	seen+=("$label")

	logdir="$LOG_ROOT/$label"
	mkdir -p "$logdir"
	result="$logdir/result"
	limit=$TIMEOUT
	own_limit=$(sed -n 's/^# e2e-timeout: \([0-9][0-9]*\)$/\1/p' "$E2E_DIR/$name.sh" | head -n 1)
	[[ -z ${E2E_TIMEOUT:-} && -n $own_limit ]] && limit=$own_limit
	t0=${EPOCHREALTIME/./}
	E2E_RESULT_FILE=$result E2E_LOG_DIR=$logdir IMPL_A=$impl_a IMPL_B=$impl_b \
		timeout -k 20 "$limit" bash "$E2E_DIR/$name.sh" </dev/null >"$logdir/scenario.log" 2>&1 &
	CHILD=$!
	wait "$CHILD"
	rc=$?
	CHILD=""
	sweep "$logdir"
	t1=${EPOCHREALTIME/./}
	secs=$(printf '%d.%d' $(((t1 - t0) / 1000000)) $(((t1 - t0) / 100000 % 10)))
	verdict=$(head -n 1 "$result" 2>/dev/null)
	if [[ -z $verdict ]]; then
		if ((rc == 124 || rc == 137)); then
			verdict="FAIL timed out after $limit s"
		else
			verdict="FAIL ended without a verdict (exit status $rc)"
		fi
	elif [[ $verdict == PASS* && $rc -ne 0 ]]; then
		verdict="FAIL reported PASS but exited with status $rc"
	fi
	case $verdict in
	PASS*)
		passed=$((passed + 1))
		echo "PASS $label (${secs}s)"
		;;
	SKIP*)
		skipped=$((skipped + 1))
		echo "SKIP $label (${secs}s): ${verdict#SKIP }"
		;;
	*)
		failed=$((failed + 1))
		echo "FAIL $label (${secs}s): ${verdict#FAIL }"
		tail -n 40 "$logdir/scenario.log" | sed 's/^/    | /'
		;;
	esac
done

if ((passed + failed + skipped == 0)); then
	echo "no scenario matches: $*" >&2
	failed=1
fi
echo "logs: $LOG_ROOT"
if ((skipped)); then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
((failed == 0))
