# Shared build settings for the project's scripts (sourced, not run).
# Two build jobs: the C++ of cxx-qt needs about 1 GiB per job and the reference machine has 2 cores.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
if ! command -v cargo >/dev/null 2>&1; then
  if [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    source "$HOME/.cargo/env"
  else
    echo "cargo not found: install Rust (https://rustup.rs) and run this again" >&2
    exit 1
  fi
fi
