#!/usr/bin/env bash
# Sets up everything framelane needs on Debian 12, builds it and opens the window with a
# built-in demo run. Extra arguments go to `framelane` (for example: --demo-size 1280x720).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-debian.sh
source ./scripts/env.sh
cargo build --release --locked --bin framelane
exec ./target/release/framelane "$@"
