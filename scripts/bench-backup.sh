#!/usr/bin/env bash
# Backup benchmark: pgkeep against pgBackRest on the same generated cluster, same settings.
#
# Builds pgkeep (release), creates a PostgreSQL cluster with a mix of compressible and random
# data plus thousands of small tables, then runs a full and an incremental backup with each tool
# for every combination of compress-type (lz4, zst) and process-max (1, 2). For each backup it
# prints wall time, CPU time (user+sys of the whole process tree), peak memory summed over all
# processes of the tree (sampled from /proc every 10 ms; pgBackRest forks one backup:local process
# per process-max) and the size of the backup in the repository, side by side with the ratio
# pgkeep / pgBackRest.
#
# Environment:
#   BENCH_SIZE_MB   approximate data size (default 1024; the issue's setting is 4000)
#   BENCH_DIR       work directory (default /tmp/pgkeep-bench; removed at the start)
#   BENCH_KEEP=1    keep the work directory at the end
#   BENCH_REUSE=1   reuse the cluster left in BENCH_DIR by a run with BENCH_KEEP=1
#   BENCH_COLD=0    do not drop the page cache before each backup (default: drop when possible)
#   BENCH_USER      OS user running PostgreSQL when run as root (default pgtest)
#   BENCH_PG_BIN    PostgreSQL bin directory (default: newest /usr/lib/postgresql/*/bin)
#   BENCH_ONLY      restrict runs, e.g. "lz4:2" (compress:process-max)
#   BENCH_REPEAT    runs per backup (default 3; the median is reported)
#
# Archive checks are off for both tools (--no-archive-check, archive_mode=off): the benchmark
# measures the backup itself, not how fast archive_command happens to push WAL.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SIZE_MB="${BENCH_SIZE_MB:-1024}"
DIR="${BENCH_DIR:-/tmp/pgkeep-bench}"
PGBIN="${BENCH_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
RUN_USER="${BENCH_USER:-pgtest}"

echo "building pgkeep (release)..."
(cd "$ROOT" && cargo build --release -p pgkeep -q)
PGKEEP="$ROOT/target/release/pgkeep"
command -v pgbackrest >/dev/null || { echo "pgbackrest not found" >&2; exit 1; }

# shellcheck source=scripts/bench_cluster.sh
. "$ROOT/scripts/bench_cluster.sh"
bench_user_setup

REUSE=0
if [ "${BENCH_REUSE:-0}" = 1 ] && [ -f "$DIR/data/PG_VERSION" ]; then
    REUSE=1
    PORT=$(awk '/^port = / {p=$3} END {print p}' "$DIR/data/postgresql.conf")
else
    rm -rf "$DIR"
    mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown "$RUN_USER" "$DIR"
    PORT=$(( 20000 + RANDOM % 20000 ))
fi

cleanup() {
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$DIR"
}
trap cleanup EXIT

if [ "$REUSE" = 1 ]; then
    echo "reusing the cluster in $DIR"
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w start >/dev/null
else
    bench_create_cluster
fi
ACTUAL=$(du -sm --exclude=pg_wal "$DIR/data" | cut -f1)
FILES=$(find "$DIR/data" -path "$DIR/data/pg_wal" -prune -o -type f -print | wc -l)
echo "cluster: ${ACTUAL} MB in ${FILES} files (pg_wal excluded)"

COLD="${BENCH_COLD:-1}"
if [ "$COLD" = 1 ] && ! (sync && echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; then
    echo "note: cannot drop the page cache here (not root or /proc/sys read-only): runs use a warm cache"
    COLD=0
fi
export BENCH_COLD_EFFECTIVE="$COLD"
export BENCH_SCRIPTS="$ROOT/scripts"

python3 - "$DIR" "$PGKEEP" "$PORT" "$RUN_USER" "${BENCH_ONLY:-}" "$PGBIN" <<'PYEOF'
import os, subprocess, sys, time, pwd

DIR, PGKEEP, PORT, USER, ONLY, PGBIN = sys.argv[1:7]
sys.path.insert(0, os.environ["BENCH_SCRIPTS"])
import bench_measure
COLD = bench_measure.COLD
pw = pwd.getpwnam(USER)
as_user = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[]) if os.getuid() == 0 else {}

def measure_cpu(cmd):
    return bench_measure.measure(cmd, as_user)

def du(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total / 1024 / 1024

def psql(sql):
    subprocess.run([f"{PGBIN}/psql", "-X", "-q", "-h", DIR, "-p", PORT, "-U", "postgres", "-c", sql],
                   check=True, stdout=subprocess.DEVNULL, **as_user)

tools = {"pgkeep": PGKEEP, "pgbackrest": "pgbackrest"}
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
runs = {}
combos = [(c, p) for c in ("lz4", "zst") for p in (1, 2)]
if ONLY:
    combos = [(c, p) for c, p in combos if f"{c}:{p}" in ONLY.split(",")]
change_no = 0
for compress, pmax in combos:
    confs = {}
    for tool in tools:
        repo = f"{DIR}/repo-{tool}-{compress}-{pmax}"
        conf = f"{DIR}/{tool}-{compress}-{pmax}.conf"
        with open(conf, "w") as f:
            f.write(f"[global]\nrepo1-path={repo}\nlock-path={DIR}/lock\nlog-path={DIR}/log\n"
                    f"spool-path={DIR}/spool\nlog-level-file=off\nlog-level-console=warn\nstart-fast=y\n"
                    f"archive-check=n\ncompress-type={compress}\nprocess-max={pmax}\n"
                    f"repo1-retention-full=9999999\n"
                    f"[demo]\npg1-path={DIR}/data\npg1-socket-path={DIR}\npg1-port={PORT}\npg1-user=postgres\n")
        os.chmod(conf, 0o644)
        confs[tool] = (conf, repo)
        subprocess.run(["pgbackrest", f"--config={conf}", "--stanza=demo", "stanza-create"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **as_user)
    for kind in ("full", "incr"):
        for rep in range(REPEAT):
            if kind == "incr":
                change_no += 1
                psql(f"update hot set s = md5(s) where i % 50 = {change_no % 50}")
                psql("checkpoint")
            # alternate which tool goes first so neither always meets the other's leftovers
            order = list(tools) if rep % 2 == 0 else list(reversed(list(tools)))
            for tool in order:
                conf, repo = confs[tool]
                wall, cpu, peak = measure_cpu([tools[tool], f"--config={conf}", "--stanza=demo",
                                               f"--type={kind}", "backup"])
                labels = sorted(l for l in os.listdir(f"{repo}/backup/demo") if l[0].isdigit())
                size = du(f"{repo}/backup/demo/{labels[-1]}")
                runs.setdefault((compress, pmax, kind, tool), []).append((wall, cpu, peak, size))
                print(f"  {compress} process-max={pmax} {kind:4} {tool:10} #{rep + 1}: {wall:7.2f} s wall, "
                      f"{cpu:7.2f} s cpu, {peak:7.1f} MB peak rss, {size:8.1f} MB repo", flush=True)
    for conf, repo in confs.values():
        subprocess.run(["rm", "-rf", repo], check=True)

def median(values):
    v = sorted(values)
    return v[len(v) // 2]

rows = []
for (compress, pmax, kind, tool), results in runs.items():
    rows.append((compress, pmax, kind, tool, median(r[0] for r in results), median(r[1] for r in results),
                 max(r[2] for r in results), results[-1][3]))

print()
print("| compress | process-max | backup | pgkeep wall s | pgBackRest wall s | ratio | pgkeep CPU s | pgBackRest CPU s | ratio | pgkeep peak RSS MB | pgBackRest peak RSS MB | ratio | pgkeep repo MB | pgBackRest repo MB | ratio |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
by = {(r[0], r[1], r[2], r[3]): r for r in rows}
for compress, pmax in combos:
    for kind in ("full", "incr"):
        k = by[(compress, pmax, kind, "pgkeep")]
        b = by[(compress, pmax, kind, "pgbackrest")]
        cells = []
        for i in (4, 5, 6, 7):
            cells += [f"{k[i]:.2f}" if i != 6 else f"{k[i]:.1f}", f"{b[i]:.2f}" if i != 6 else f"{b[i]:.1f}",
                      f"{k[i] / b[i]:.2f}" if b[i] else "-"]
        print(f"| {compress} | {pmax} | {kind} | " + " | ".join(cells) + " |")
print()
print(f"median of {REPEAT} runs (peak RSS: highest); page cache: {'dropped before every backup' if COLD else 'warm (could not drop)'}")
PYEOF
