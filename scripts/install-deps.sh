#!/usr/bin/env bash
# Install everything pgkeep needs to build and to run its tests, idempotently, on Debian/Ubuntu:
# a Rust toolchain, a C compiler (zstd builds C), PostgreSQL server binaries, and the real
# pgBackRest (the compatibility tests run it side by side with pgkeep).
# Safe to run again: installed packages are skipped, apt-get update runs only when needed.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

packages=(build-essential pkg-config ca-certificates curl pgbackrest postgresql postgresql-contrib)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# a server binary may come from another package name (postgresql-15 etc.)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian starts a default cluster when the server package is installed; the tests and the demo
# use their own throwaway clusters and do not need it.

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "install-deps: installing the Rust toolchain with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
fi
echo "install-deps: ok ($(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' '), $(pgbackrest version))" >&2
