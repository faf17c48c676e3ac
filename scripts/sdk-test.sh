#!/usr/bin/env bash
# Installs the Python SDK (python/) with its test extras into .venv-sdk and runs its tests
# against target/release/framelane (build it first: cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-sdk/bin/python ]; then
  python3 -m venv .venv-sdk
fi
.venv-sdk/bin/pip install --quiet --upgrade pip
.venv-sdk/bin/pip install --quiet './python[test]'
FRAMELANE_BIN="$PWD/target/release/framelane" .venv-sdk/bin/pytest -q python/tests
