#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then formatting, lints and every test
# (unit tests, real-PostgreSQL end-to-end tests, and the cross-checks against the real pgbackrest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --no-fail-fast
