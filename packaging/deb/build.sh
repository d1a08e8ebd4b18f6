#!/usr/bin/env bash
# Builds the Debian package target/debian/fastwire_VERSION_ARCH.deb with cargo-deb: /usr/bin/fastwire,
# the systemd unit fastwire@.service, man pages (fastwire(8), fastwire-up(8), ...) and bash/zsh/fish
# completions, the last two generated from the CLI definition (`fastwire generate-assets`).
#
# Usage:  packaging/deb/build.sh            (installs cargo-deb with `cargo install` if it is missing)
# Then:   dpkg -i target/debian/fastwire_*.deb
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
if ! cargo deb --version >/dev/null 2>&1; then
    echo "==> cargo install --locked cargo-deb"
    cargo install --locked cargo-deb
fi
cargo build --release -p fastwire
rm -rf target/assets
target/release/fastwire generate-assets target/assets
rm -f target/debian/fastwire_*.deb
cargo deb -p fastwire --no-build --strip
