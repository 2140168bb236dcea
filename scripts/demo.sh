#!/usr/bin/env bash
# The main job, end to end, on a throwaway cluster:
#   1. install everything and build pgkeep;
#   2. start a local PostgreSQL in a temp directory whose archive_command is `pgkeep archive-push`;
#   3. stanza-create and check with pgkeep, write some rows, take a full backup;
#   4. write more rows, note the time, write rows that must NOT come back, archive the WAL;
#   5. restore the backup into a second directory to that point in time (PITR through
#      `pgkeep archive-get`), start the restored cluster and check it has exactly the rows
#      written before the target time;
#   6. show `pgkeep info` and read the same repository with the real `pgbackrest info`.
# Everything started here is stopped and removed on exit; the script exits non-zero if any step
# or the final row check fails.
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
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
port2=$(free_port)
cleanup() {
    for d in data restored; do
        [ -f "$work/$d/postmaster.pid" ] &&
            "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$work/$d" -m immediate -w stop >/dev/null 2>&1
    done
    rm -rf "$work"
}
trap cleanup EXIT

run() { echo "\$ $*" >&2; "${as_pg[@]}" "$@"; }
pgk() { run "$PGKEEP" --config="$work/pgkeep.conf" --stanza=demo "$@"; }
sql() { "${as_pg[@]}" "$PGBIN/psql" -X -q -A -t -h "$work/sock" -p "$1" -U postgres -d postgres -c "$2"; }

echo "== starting PostgreSQL ($("$PGBIN/postgres" --version)) in $work on port $port" >&2
"${as_pg[@]}" mkdir -p "$work/sock" "$work/log"
"${as_pg[@]}" "$PGBIN/initdb" -k -D "$work/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
cat >"$work/pgkeep.conf" <<CONF
[global]
repo1-path=$work/repo
repo1-retention-full=2
lock-path=$work/lock
spool-path=$work/spool
log-path=$work/log
log-level-console=info
start-fast=y
compress-type=zst
process-max=2

[demo]
pg1-path=$work/data
pg1-port=$port
pg1-socket-path=$work/sock
pg1-user=postgres
CONF
chmod 644 "$work/pgkeep.conf"
cat >>"$work/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$work/sock'
wal_level = replica
archive_mode = on
archive_command = '$PGKEEP --config=$work/pgkeep.conf --stanza=demo archive-push %p'
CONF
"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$work/data" -l "$work/server.log" -w start >/dev/null

echo "== stanza, check, and a full backup" >&2
pgk stanza-create
pgk check
sql "$port" "create table demo(id int primary key, batch text); insert into demo select g, 'before backup' from generate_series(1, 1000) g;"
pgk backup --type=full

echo "== more rows after the backup; remember the time; then rows that must not come back" >&2
sql "$port" "insert into demo select g, 'after backup' from generate_series(1001, 1500) g;"
sleep 1
target=$(sql "$port" "select now()::timestamptz(6)")
sleep 1
sql "$port" "insert into demo select g, 'after target' from generate_series(1501, 2000) g;"
sql "$port" "select pg_switch_wal()" >/dev/null
pgk check   # waits until the switched segment is in the repository
echo "   target time: $target ($(sql "$port" "select count(*) from demo") rows in the source now)" >&2

echo "== point-in-time restore into a second directory" >&2
"${as_pg[@]}" mkdir -m 700 "$work/restored"
pgk restore --pg1-path="$work/restored" --type=time "--target=$target" --target-action=promote
"${as_pg[@]}" tee -a "$work/restored/postgresql.conf" >/dev/null <<CONF
port = $port2
archive_mode = off
CONF
"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$work/restored" -l "$work/restored.log" -w -t 120 start >/dev/null
for _ in $(seq 1 120); do
    [ "$(sql "$port2" "select pg_is_in_recovery()")" = f ] && break
    sleep 0.5
done
rows=$(sql "$port2" "select count(*) || ' rows: ' || string_agg(distinct batch, ', ' order by batch) from demo")
echo "   restored cluster (port $port2): $rows" >&2
expected="1500 rows: after backup, before backup"
if [ "$rows" != "$expected" ]; then
    echo "demo: FAILED: the restored cluster has '$rows', expected '$expected'" >&2
    tail -20 "$work/restored.log" >&2
    exit 1
fi

echo "== the repository, read by pgkeep and by the real pgBackRest" >&2
pgk info
run pgbackrest --config="$work/pgkeep.conf" --stanza=demo info
echo "== demo finished: archiving, full backup and point-in-time restore all went through pgkeep" >&2
