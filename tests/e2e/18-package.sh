#!/usr/bin/env bash
# 18 package: the Debian package packaging/deb/build.sh made (target/debian/fastwire_*.deb; scripts/test.sh
# builds it before the e2e scenarios) installs with dpkg -i, `fastwire demo` runs from /usr/bin, the man
# page, completions and systemd unit are where Debian looks for them, and `dpkg --purge` removes every file
# it installed.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$0")/lib.sh"
require_basics "$IMPL_A" "$IMPL_B"
require dpkg dpkg-deb
[[ $IMPL_A == fastwire* ]] || { not_checked "the fastwire package ($IMPL_A)"; pass; }

deb=$(ls -t "$E2E_DIR"/../../target/debian/fastwire_*.deb 2>/dev/null | head -n 1)
[[ -n $deb ]] || fail "no target/debian/fastwire_*.deb: run packaging/deb/build.sh (scripts/test.sh does)"
if dpkg-query -W -f='${Status}' fastwire 2>/dev/null | grep >/dev/null 'install ok installed'; then
	fail "a fastwire package is already installed on this machine: this scenario installs and purges its own"
fi
[[ -e /usr/bin/fastwire ]] && fail "/usr/bin/fastwire exists and belongs to no fastwire package: not touching it"
trap 'dpkg --purge fastwire >/dev/null 2>&1; cleanup' EXIT

step "dpkg -i $(basename "$deb")"
dpkg -i "$deb" >"$LOG_DIR/dpkg-install.txt" 2>&1 || fail "dpkg -i failed: $(tail -n 5 "$LOG_DIR/dpkg-install.txt")"
mapfile -t files < <(dpkg -L fastwire | while read -r f; do [[ -f $f ]] && echo "$f"; done)
for want in /usr/bin/fastwire /lib/systemd/system/fastwire@.service /usr/share/man/man8/fastwire.8.gz \
	/usr/share/man/man8/fastwire-up.8.gz /usr/share/bash-completion/completions/fastwire \
	/usr/share/zsh/vendor-completions/_fastwire /usr/share/fish/vendor_completions.d/fastwire.fish; do
	[[ -f $want ]] || fail "the package did not install $want"
done
zcat /usr/share/man/man8/fastwire.8.gz | grep >/dev/null '^\.TH fastwire 8' || fail "fastwire.8 is not a man page"
/usr/bin/fastwire --version | grep >/dev/null '^fastwire ' || fail "/usr/bin/fastwire --version: $(/usr/bin/fastwire --version 2>&1)"

step "fastwire demo from /usr/bin"
timeout 120 /usr/bin/fastwire demo --seconds 2 >"$LOG_DIR/demo.txt" 2>&1 || fail "fastwire demo failed: $(tail -n 5 "$LOG_DIR/demo.txt")"
log "$(tail -n 1 "$LOG_DIR/demo.txt")"

step "dpkg --purge fastwire"
dpkg --purge fastwire >"$LOG_DIR/dpkg-purge.txt" 2>&1 || fail "dpkg --purge failed: $(tail -n 5 "$LOG_DIR/dpkg-purge.txt")"
for f in "${files[@]}"; do
	[[ -e $f ]] && fail "$f is still there after dpkg --purge"
done
log "installed and removed ${#files[@]} files"
pass
