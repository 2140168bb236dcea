#!/usr/bin/env bash
# Restore benchmark: pgkeep against pgBackRest restoring the same backups with the same settings.
#
# Builds pgkeep (release), creates the cluster of the backup benchmark (scripts/bench-backup.sh:
# compressible text, random bytes, a hot table, 3000 small tables), takes one full backup with
# pgBackRest per compress-type (lz4, zst), then for each backup and each tool:
#   restore        into an empty directory
#   delta restore  (--delta) onto the cluster the backups were taken of, stopped and unchanged
#                  since: every file is read and checksummed, nothing is copied. Both tools read
#                  the same files (an unmeasured delta first removes what backups leave out).
# For each run it prints wall time, CPU time (user+sys of the whole process tree), and peak memory
# summed over all processes of the tree (sampled from /proc every 10 ms; pgBackRest forks one
# restore:local process per process-max; never below the kernel's high-water mark of the largest
# single process), side by side with the ratio pgkeep / pgBackRest.
#
# Environment:
#   BENCH_SIZE_MB      approximate data size (default 1024; the issue's setting is 4000)
#   BENCH_PROCESS_MAX  process-max of both tools (default 2)
#   BENCH_REPEAT       runs of each measurement; the median is reported (default 3)
#   BENCH_DIR          work directory (default /tmp/pgkeep-bench-restore; removed at the start)
#   BENCH_KEEP=1       keep the work directory at the end
#   BENCH_COLD=0       do not drop the page cache before each run (default: drop when possible)
#   BENCH_USER         OS user running PostgreSQL and both tools when run as root (default pgtest)
#   BENCH_PG_BIN       PostgreSQL bin directory (default: newest /usr/lib/postgresql/*/bin)
#   BENCH_ONLY         restrict compress types, e.g. "lz4"
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SIZE_MB="${BENCH_SIZE_MB:-1024}"
PMAX="${BENCH_PROCESS_MAX:-2}"
DIR="${BENCH_DIR:-/tmp/pgkeep-bench-restore}"
PGBIN="${BENCH_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
RUN_USER="${BENCH_USER:-pgtest}"

echo "building pgkeep (release)..."
(cd "$ROOT" && cargo build --release -p pgkeep -q)
PGKEEP="$ROOT/target/release/pgkeep"
command -v pgbackrest >/dev/null || { echo "pgbackrest not found" >&2; exit 1; }

# shellcheck source=scripts/bench_cluster.sh
. "$ROOT/scripts/bench_cluster.sh"
bench_user_setup

rm -rf "$DIR"
mkdir -p "$DIR"
[ "$(id -u)" = 0 ] && chown "$RUN_USER" "$DIR"
PORT=$(( 20000 + RANDOM % 20000 ))

cleanup() {
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$DIR"
}
trap cleanup EXIT

bench_create_cluster
ACTUAL=$(du -sm --exclude=pg_wal "$DIR/data" | cut -f1)
FILES=$(find "$DIR/data" -path "$DIR/data/pg_wal" -prune -o -type f -print | wc -l)
echo "cluster: ${ACTUAL} MB in ${FILES} files (pg_wal excluded)"

COMPRESS="${BENCH_ONLY:-lz4 zst}"
for compress in $COMPRESS; do
    conf="$DIR/$compress.conf"
    cat > "$conf" <<EOF
[global]
repo1-path=$DIR/repo-$compress
lock-path=$DIR/lock
log-path=$DIR/log
spool-path=$DIR/spool
log-level-file=off
log-level-console=warn
start-fast=y
archive-check=n
compress-type=$compress
process-max=$PMAX
repo1-retention-full=9999999
[demo]
pg1-path=$DIR/data
pg1-socket-path=$DIR
pg1-port=$PORT
pg1-user=postgres
EOF
    chmod 644 "$conf"
    echo "pgbackrest full backup, $compress..."
    "${AS[@]}" pgbackrest --config="$conf" --stanza=demo stanza-create >/dev/null
    "${AS[@]}" pgbackrest --config="$conf" --stanza=demo --type=full backup
done
"${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null

COLD="${BENCH_COLD:-1}"
if [ "$COLD" = 1 ] && ! (sync && echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; then
    echo "note: cannot drop the page cache here (not root or /proc/sys read-only): runs use a warm cache"
    COLD=0
fi
export BENCH_COLD_EFFECTIVE="$COLD"
export BENCH_SCRIPTS="$ROOT/scripts"

python3 - "$DIR" "$PGKEEP" "$RUN_USER" "$PMAX" "$COMPRESS" "${BENCH_REPEAT:-3}" <<'PYEOF'
import os, subprocess, sys, time, pwd, statistics

DIR, PGKEEP, USER, PMAX, COMPRESS, REPEAT = sys.argv[1:7]
REPEAT = int(REPEAT)
sys.path.insert(0, os.environ["BENCH_SCRIPTS"])
import bench_measure
COLD = bench_measure.COLD
pw = pwd.getpwnam(USER)
as_user = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[]) if os.getuid() == 0 else {}

def measure(cmd):
    return bench_measure.measure(cmd, as_user)

tools = {"pgkeep": PGKEEP, "pgbackrest": "pgbackrest"}
runs = {}

def args(exe, compress, target):
    return [exe, f"--config={DIR}/{compress}.conf", "--stanza=demo", f"--pg1-path={target}",
            f"--process-max={PMAX}", "--type=none"]

def record(rep, compress, kind, tool, result):
    wall, cpu, peak = result
    runs.setdefault((compress, kind, tool), []).append(result)
    print(f"  run {rep + 1}: {compress} {kind:7} {tool:10}: {wall:7.2f} s wall, {cpu:7.2f} s cpu, "
          f"{peak:7.1f} MB peak rss", flush=True)

# the tools alternate run by run, so a slow spell of the machine hits both alike
for compress in COMPRESS.split():
    # restore into an empty directory
    for rep in range(REPEAT):
        for tool, exe in tools.items():
            target = f"{DIR}/restore-{tool}-{compress}"
            record(rep, compress, "restore", tool, measure(args(exe, compress, target) + ["restore"]))
            subprocess.run(["rm", "-rf", target], check=True)
    # delta onto the cluster the backup was taken of, stopped and unchanged since: both tools read
    # the same files, written by PostgreSQL. One unmeasured delta first drops what a backup leaves
    # out (pg_wal, ...), so every measured run finds the directory exactly as the backup has it.
    data = f"{DIR}/data"
    measure(args("pgbackrest", compress, data) + ["--delta", "restore"])
    for rep in range(REPEAT):
        for tool, exe in tools.items():
            record(rep, compress, "delta", tool, measure(args(exe, compress, data) + ["--delta", "restore"]))
rows = {key: tuple(statistics.median(r[i] for r in values) for i in range(3)) for key, values in runs.items()}

print()
print(f"process-max={PMAX}, median of {REPEAT} runs, page cache {'dropped before every run' if COLD else 'warm (could not drop)'}")
print()
print("| compress | run | pgkeep wall s | pgBackRest wall s | ratio | pgkeep CPU s | pgBackRest CPU s | ratio | pgkeep peak RSS MB | pgBackRest peak RSS MB | ratio |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for compress in COMPRESS.split():
    for kind in ("restore", "delta"):
        k = rows[(compress, kind, "pgkeep")]
        b = rows[(compress, kind, "pgbackrest")]
        cells = []
        for i, fmt in ((0, "{:.2f}"), (1, "{:.2f}"), (2, "{:.1f}")):
            cells += [fmt.format(k[i]), fmt.format(b[i]), f"{k[i] / b[i]:.2f}" if b[i] else "-"]
        print(f"| {compress} | {kind} | " + " | ".join(cells) + " |")
PYEOF
