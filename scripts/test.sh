#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Debian packages), builds the workspace in release mode,
# runs the unit and property tests, then the end-to-end scenarios in network namespaces (tests/e2e/run.sh)
# against the release binary. Run as root on Debian (bookworm). Exits non-zero if anything failed; the last
# line is the end-to-end summary "N passed, N failed".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $(id -u) -ne 0 ]]; then
	echo "scripts/test.sh: run as root: it installs packages and the end-to-end tests create network namespaces" >&2
	exit 1
fi

# What the e2e scenarios call: wireguard-go (the reference peer), wg / wg-quick, ip / ss / tc, socat (TCP
# transfers, a port holder), ping, python3 (garbage spray, hostile TCP clients, UAPI), setpriv (util-linux),
# ps / sysctl (procps), nft (UDP counters, a TCP reset rule: nftables), iperf3 (throughput under attack),
# prometheus with promtool (a real scrape of the metrics endpoint), tmux (fastwire top in a real terminal),
# systemd (systemd-analyze verify of the unit).
PACKAGES=(wireguard-go wireguard-tools iproute2 socat iputils-ping python3 util-linux procps nftables iperf3 prometheus tmux systemd)
missing=()
for pkg in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep >/dev/null 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
	echo "==> installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# The package starts a Prometheus server of its own on *:9090; the tests run theirs in a namespace.
	if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null; then
		systemctl disable --now prometheus >/dev/null 2>&1 || true
	fi
fi

echo "==> cargo build --release --workspace"
cargo build --release --workspace

# The Debian package e2e 18 installs and removes (cargo-deb is installed with `cargo install` if missing).
echo "==> packaging/deb/build.sh"
bash packaging/deb/build.sh

status=0
# --include-ignored: the tests that need root and wg (ignored by a plain `cargo test`) run here.
echo "==> cargo test --workspace --release -- --include-ignored"
cargo test --workspace --release -- --include-ignored || { status=1; echo "==> cargo test FAILED (see above); running the e2e tests anyway"; }

echo "==> tests/e2e/run.sh"
FASTWIRE="$PWD/target/release/fastwire" bash tests/e2e/run.sh || status=1
exit "$status"
