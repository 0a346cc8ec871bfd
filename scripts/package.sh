#!/usr/bin/env bash
# The Debian package of the connector (docs/service.md): builds it with cargo-deb, installs
# it with dpkg, runs the INSTALLED binary's `check` on the INSTALLED example
# configuration, verifies the systemd unit (systemd-analyze verify, and its hardening with
# systemd-analyze security), then purges the package again.
#
#   scripts/package.sh            build, install, check, remove (needs root)
#   scripts/package.sh --build    only build the .deb (no root needed)
#
# Installs cargo-deb (a pinned version) and systemd's tools when missing. Prints the .deb's
# path; the package is removed on exit, whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DEB_VERSION=3.8.0
target=${CARGO_TARGET_DIR:-target}
deb="$target/debian/smart-connector.deb"
build_only=false
[ "${1:-}" = "--build" ] && build_only=true

if ! $build_only && [ "$(id -u)" != 0 ]; then
  echo "package: skipped: installing the package needs root (dpkg -i)"
  exit 0
fi

if [ "$(cargo deb --version 2>/dev/null | awk '{print $2}')" != "$CARGO_DEB_VERSION" ]; then
  echo "package: installing cargo-deb $CARGO_DEB_VERSION"
  start=$SECONDS
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
  echo "package: cargo-deb installed in $((SECONDS - start)) s"
fi

start=$SECONDS
mkdir -p "$target/debian"
# --strip: the release profile keeps line tables for backtraces in development; the
# package ships the binary without them (a sixth of the size).
cargo deb -p smart-connector --strip --output "$deb"
echo "package: built $deb in $((SECONDS - start)) s"
$build_only && exit 0

export DEBIAN_FRONTEND=noninteractive
if ! command -v systemd-analyze >/dev/null; then
  apt-get install -y -q systemd >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q systemd >/dev/null; }
fi

# The package must not be installed already: this run would test someone else's files.
if dpkg-query -W -f='${Status}' smart-connector 2>/dev/null | grep -q "ok installed"; then
  echo "package: smart-connector is already installed here; remove it first (dpkg --purge smart-connector)" >&2
  exit 1
fi
cleanup() { dpkg --purge smart-connector >/dev/null 2>&1 || true; rm -rf "${scratch:-}"; }
trap cleanup EXIT
scratch=$(mktemp -d)

dpkg -i "$deb"
unit=$(dpkg -L smart-connector | grep '/systemd/system/smart-connector\.service$')
conf=/etc/smart-connector/connector.toml

# Contents: the binary on the PATH, the unit, the example configuration as a conffile,
# the documentation.
test "$(command -v smart-connector)" = /usr/bin/smart-connector
/usr/bin/smart-connector --version
dpkg-query -W -f='${Conffiles}\n' smart-connector | grep -q "^ $conf " \
  || { echo "package: $conf is not a conffile" >&2; exit 1; }
for doc in usage.txt service.md connector.md examples/port-502.conf; do
  test -s "/usr/share/doc/smart-connector/$doc" \
    || { echo "package: /usr/share/doc/smart-connector/$doc is missing" >&2; exit 1; }
done

# The installed binary accepts the installed example configuration.
/usr/bin/smart-connector check --config "$conf"

# `systemd-analyze verify` exits 0 on a key it does not know or a value it cannot parse
# (it only warns, "ignoring"), so any output fails the check too. --man=no: the man pages
# of Documentation= are not installed in a container.
verify() {
  local out
  if ! out=$(systemd-analyze verify --man=no "$1" 2>&1) || [ -n "$out" ]; then
    echo "$out"
    return 1
  fi
}
verify "$unit" || { echo "package: systemd-analyze verify rejects $unit" >&2; exit 1; }
# The check itself must catch a broken unit: the same unit with a misspelt key and a
# bad value must fail it.
sed -e 's/^NoNewPrivileges=/NoNewPrivilege=/' "$unit" >"$scratch/smart-connector.service"
if verify "$scratch/smart-connector.service" >/dev/null; then
  echo "package: systemd-analyze verify accepted a unit with a misspelt key" >&2
  exit 1
fi
sed -e 's/^ProtectSystem=strict/ProtectSystem=strikt/' "$unit" >"$scratch/smart-connector.service"
if verify "$scratch/smart-connector.service" >/dev/null; then
  echo "package: systemd-analyze verify accepted a unit with a bad value" >&2
  exit 1
fi
# Hardening, as systemd rates it (0 is the most, 10 the least confined; --threshold counts
# in tenths): the unit scores 1.5; a threshold of 2.0 catches a setting dropped by mistake.
systemd-analyze security --offline=yes --threshold=20 --no-pager "$unit" | tail -n 1

dpkg --purge smart-connector
test ! -e /usr/bin/smart-connector && test ! -e "$conf" && test ! -e "$unit" \
  || { echo "package: files left after dpkg --purge" >&2; exit 1; }
echo "package: built, installed, checked and removed in $((SECONDS)) s"
