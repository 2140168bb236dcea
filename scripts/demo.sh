#!/usr/bin/env bash
# The main job, end to end, on a throwaway cluster: install everything, build pgkeep, start a
# local PostgreSQL in a temp directory, create a stanza with pgkeep from a pgBackRest-style
# config file, show `pgkeep info` (text and JSON) and read the same repository with the real
# pgbackrest. Everything started here is stopped and removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "== building pgkeep" >&2
cargo build --quiet -p pgkeep
PGKEEP=$PWD/target/debug/pgkeep
PGBIN=${PGKEEP_TEST_PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}

# PostgreSQL refuses to run as root: use an unprivileged account then.
as_pg=()
if [ "$(id -u)" = 0 ]; then
    id pgtest >/dev/null 2>&1 || useradd --create-home --shell /bin/bash pgtest
    as_pg=(runuser -u pgtest --)
fi
work=$(mktemp -d /tmp/pgkeep-demo.XXXXXX)
chmod 755 "$work"
[ "$(id -u)" = 0 ] && chown pgtest "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
    "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$work/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== starting PostgreSQL ($("$PGBIN/postgres" --version)) in $work on port $port" >&2
"${as_pg[@]}" mkdir -p "$work/sock" "$work/log"
"${as_pg[@]}" "$PGBIN/initdb" -k -D "$work/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
cat >>"$work/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$work/sock'
CONF
"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$work/data" -l "$work/server.log" -w start >/dev/null

cat >"$work/pgkeep.conf" <<CONF
[global]
repo1-path=$work/repo
lock-path=$work/lock
log-path=$work/log
log-level-console=info

[demo]
pg1-path=$work/data
pg1-port=$port
pg1-socket-path=$work/sock
pg1-user=postgres
CONF
run() { echo "\$ $*" >&2; "${as_pg[@]}" "$@"; }
run "$PGKEEP" --config="$work/pgkeep.conf" --stanza=demo stanza-create
run "$PGKEEP" --config="$work/pgkeep.conf" --stanza=demo info
run "$PGKEEP" --config="$work/pgkeep.conf" --stanza=demo info --output=json
echo
echo "== the same repository read by the real pgBackRest" >&2
run pgbackrest --config="$work/pgkeep.conf" --stanza=demo info
run "$PGKEEP" --config="$work/pgkeep.conf" --stanza=demo stop
run "$PGKEEP" --config="$work/pgkeep.conf" --stanza=demo start
echo "== demo finished" >&2
