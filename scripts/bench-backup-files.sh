#!/usr/bin/env bash
# Backup memory against the number of files: pgkeep and pgBackRest on the same cluster.
#
# For every count in BENCH_FILES, creates a fresh PostgreSQL cluster, adds that many small
# plain files (100 bytes, 1000 per directory) under PGDATA/bench_files — both tools back them up
# like any other file, so this is a cheap way to get a large manifest — and runs a full and then
# an incremental backup with each tool (compress-type=lz4, process-max=2, archive checks off, as
# scripts/bench-backup.sh). For each backup it prints the peak resident memory summed over the
# process tree (scripts/bench_measure.py: /proc sampled every 10 ms, pgBackRest forks one
# backup:local per process-max) and the wall time, then a table with the slope in bytes per file
# between the smallest and the largest count.
#
# Environment:
#   BENCH_FILES     extra files per run, space separated (default "0 20000 100000"; the cluster
#                   itself has about 1000 files)
#   BENCH_DIR       work directory (default /dev/shm/pgkeep-bench-files: tmpfs, so that
#                   pgBackRest's per-file fsync does not turn 100,000 files into minutes; page
#                   cache and tmpfs pages are not counted in any process's RSS)
#   BENCH_USER      OS user running PostgreSQL when run as root (default pgtest)
#   BENCH_PG_BIN    PostgreSQL bin directory (default: newest /usr/lib/postgresql/*/bin)
#   BENCH_TOOLS     tools to run (default "pgkeep pgbackrest")
#   BENCH_KEEP=1    keep the work directory at the end
#
# Memory figures are reliable; wall times are noisy on a shared machine.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${BENCH_DIR:-/dev/shm/pgkeep-bench-files}"
PGBIN="${BENCH_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
RUN_USER="${BENCH_USER:-pgtest}"
COUNTS="${BENCH_FILES:-0 20000 100000}"
TOOLS="${BENCH_TOOLS:-pgkeep pgbackrest}"

echo "building pgkeep (release)..."
(cd "$ROOT" && cargo build --release -p pgkeep -q)
PGKEEP="$ROOT/target/release/pgkeep"
command -v pgbackrest >/dev/null || { echo "pgbackrest not found" >&2; exit 1; }

if [ "$(id -u)" = 0 ]; then
    id "$RUN_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$RUN_USER"
else
    RUN_USER="$(id -un)"
fi

rm -rf "$DIR"
mkdir -p "$DIR"
[ "$(id -u)" = 0 ] && chown "$RUN_USER" "$DIR"

cleanup() {
    for d in "$DIR"/n*/data; do
        [ -f "$d/postmaster.pid" ] || continue
        if [ "$(id -u)" = 0 ]; then
            runuser -u "$RUN_USER" -- "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
        else
            "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
        fi
    done
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$DIR"
}
trap cleanup EXIT

export BENCH_SCRIPTS="$ROOT/scripts"
python3 - "$DIR" "$PGKEEP" "$RUN_USER" "$PGBIN" "$COUNTS" "$TOOLS" <<'PYEOF'
import os, random, subprocess, sys

DIR, PGKEEP, USER, PGBIN, COUNTS, TOOLS = sys.argv[1:7]
sys.path.insert(0, os.environ["BENCH_SCRIPTS"])
import bench_measure
as_user = bench_measure.run_as(USER)
tools = {"pgkeep": PGKEEP, "pgbackrest": "pgbackrest"}
tools = {t: tools[t] for t in TOOLS.split()}
counts = [int(c) for c in COUNTS.split()]

def run(cmd, **kw):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **as_user, **kw)

def files_in(data):
    n = 0
    for dirpath, dirs, files in os.walk(data):
        if dirpath == data and "pg_wal" in dirs:
            dirs.remove("pg_wal")
        n += len(files)
    return n

results = {}   # (count, tool, kind) -> (files, wall, peak MB)
for count in counts:
    base = f"{DIR}/n{count}"
    data = f"{base}/data"
    os.makedirs(base)
    if os.getuid() == 0:
        os.chown(base, as_user["user"], as_user["group"])
    port = 20000 + random.randrange(20000)
    run([f"{PGBIN}/initdb", "-k", "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C",
         "-N", "-D", data])
    with open(f"{data}/postgresql.conf", "a") as f:
        f.write(f"port = {port}\nlisten_addresses = ''\nunix_socket_directories = '{base}'\n"
                "fsync = off\nwal_level = replica\narchive_mode = off\n")
    # N small plain files, 1000 per directory, distinct content
    for i in range(count):
        sub = f"{data}/bench_files/d{i // 1000:04}"
        if i % 1000 == 0:
            os.makedirs(sub)
        with open(f"{sub}/f{i:07}", "w") as f:
            f.write(f"{i:07} " * 12 + "\n")
    if os.getuid() == 0:
        subprocess.run(["chown", "-R", f"{as_user['user']}:{as_user['group']}", data], check=True)
    run([f"{PGBIN}/pg_ctl", "-D", data, "-l", f"{base}/server.log", "-w", "start"])
    nfiles = files_in(data)
    print(f"{count} extra files: {nfiles} files in PGDATA (pg_wal excluded)", flush=True)
    for tool, exe in tools.items():
        repo = f"{base}/repo-{tool}"
        conf = f"{base}/{tool}.conf"
        with open(conf, "w") as f:
            f.write(f"[global]\nrepo1-path={repo}\nlock-path={base}/lock\nlog-path={base}/log\n"
                    f"spool-path={base}/spool\nlog-level-file=off\nlog-level-console=warn\n"
                    f"start-fast=y\narchive-check=n\ncompress-type=lz4\nprocess-max=2\n"
                    f"repo1-retention-full=9999999\n"
                    f"[demo]\npg1-path={data}\npg1-socket-path={base}\npg1-port={port}\n"
                    f"pg1-user=postgres\n")
        os.chmod(conf, 0o644)
        run(["pgbackrest", f"--config={conf}", "--stanza=demo", "stanza-create"],
            stderr=subprocess.DEVNULL)
        for kind in ("full", "incr"):
            wall, cpu, peak = bench_measure.measure(
                [exe, f"--config={conf}", "--stanza=demo", f"--type={kind}", "backup"], as_user)
            results[(count, tool, kind)] = (nfiles, wall, peak)
            print(f"  {tool:10} {kind:4}: {peak:7.1f} MB peak rss, {wall:7.2f} s wall, "
                  f"{cpu:7.2f} s cpu", flush=True)
        subprocess.run(["rm", "-rf", repo], check=True)
    run([f"{PGBIN}/pg_ctl", "-D", data, "-m", "immediate", "stop"])
    subprocess.run(["rm", "-rf", base], check=True)

print()
print("| files | backup | " + " | ".join(f"{t} peak MB | {t} wall s" for t in tools) + " |")
print("|---|---|" + "---|---|" * len(tools))
for count in counts:
    for kind in ("full", "incr"):
        cells = []
        for t in tools:
            nfiles, wall, peak = results[(count, t, kind)]
            cells += [f"{peak:.1f}", f"{wall:.2f}"]
        nfiles = results[(count, next(iter(tools)), kind)][0]
        print(f"| {nfiles} | {kind} | " + " | ".join(cells) + " |")
if len(counts) > 1:
    lo, hi = counts[0], counts[-1]
    for kind in ("full", "incr"):
        cells = []
        for t in tools:
            f0, _, p0 = results[(lo, t, kind)]
            f1, _, p1 = results[(hi, t, kind)]
            cells.append(f"{t} {(p1 - p0) * 1024 * 1024 / max(f1 - f0, 1):.0f} B/file")
        print(f"slope {kind} ({results[(lo, next(iter(tools)), kind)][0]} -> "
              f"{results[(hi, next(iter(tools)), kind)][0]} files): " + ", ".join(cells))
PYEOF
