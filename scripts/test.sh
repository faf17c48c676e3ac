#!/usr/bin/env bash
# Sets up everything framelane needs on Debian 12, builds once (release profile, shared by the
# tests and the binary) and runs the whole test suite, GUI tests included (offscreen and Xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-debian.sh
source ./scripts/env.sh
start=$(date +%s)
cargo test --release --locked --workspace --no-run
echo "test.sh: build took $(( $(date +%s) - start )) s"
cargo test --release --locked --workspace -- --test-threads=2
echo "test.sh: build and tests took $(( $(date +%s) - start )) s"
# The Python SDK, installed from this checkout into its own virtual environment, tested against
# the binary just built (a real daemon, real segments, Gymnasium's CartPole and the window).
./scripts/sdk-test.sh
# The Debian package, installed with apt into a clean Debian 12 root and smoke-tested there
# (needs root for the chroot: as root, or through sudo).
./scripts/package.sh
if [ "$(id -u)" -eq 0 ]; then
  ./scripts/package-check.sh
else
  sudo ./scripts/package-check.sh
fi
echo "test.sh: everything took $(( $(date +%s) - start )) s"
