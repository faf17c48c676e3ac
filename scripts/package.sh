#!/usr/bin/env bash
# Builds the Debian package target/debian/framelane_<version>-1_amd64.deb with cargo-deb
# (metadata in Cargo.toml): the stripped release binary (QML compiled in), desktop entry, icon,
# systemd units (daemon, rig, kiosk), docs; dependencies from dpkg-shlibdeps plus the QML
# modules and Qt plugins the binary loads at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-debian.sh
source ./scripts/env.sh
if ! command -v cargo-deb >/dev/null 2>&1; then
  cargo install cargo-deb --locked
fi
cargo build --release --locked --bin framelane
mkdir -p target/debian
cargo deb --no-build --strip --output target/debian/
ls -l target/debian/*.deb
