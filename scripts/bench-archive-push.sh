#!/usr/bin/env bash
# Benchmark archive-push: pgkeep against pgbackrest on the same real WAL segments.
#
# Usage: scripts/bench-archive-push.sh [SEGMENTS]      (default 200)
#   env: ROUNDS (default 1: runs of the whole matrix; the best run of each row is shown, since a
#        shared machine only ever slows a run down), PGBIN (default /usr/lib/postgresql/15/bin), BENCH_DIR (default a new /tmp dir, removed
#        at the end unless KEEP=1; segments already generated there are reused), BENCH_USER (OS
#        user when run as root, default pgtest), TYPES (default "lz4 zst"), MODES (default
#        "sync async"): a subset of the matrix
#
# What it does:
#   1. builds pgkeep (cargo build --release -p pgkeep);
#   2. starts a throw-away PostgreSQL cluster whose archive_command copies segments to a directory,
#      writes WAL with inserts of md5 text until SEGMENTS+2 real 16 MiB segments were archived,
#      then stops it (pg_control stays for the stanza check);
#   3. for each tool (pgbackrest, pgkeep), compress type (lz4, zst) and mode pushes the same
#      SEGMENTS segments into a fresh repository:
#        sync  - one `archive-push <segment>` process per segment, one after the other, as
#                PostgreSQL's archive_command runs;
#        async - the same calls with archive-async=y and process-max=2, the segments marked
#                .ready in a pg_wal-like directory (the background process pushes the queue);
#   4. prints segments/s, ms per segment, CPU seconds (user+sys of every process, background ones
#      included: the driver is a child subreaper and reaps them) and peak RSS, with pgkeep/pgbackrest
#      ratios. Every run is checked: the repository must hold exactly SEGMENTS segments.
# Not a test: numbers depend on the machine. Logging to files is off for both tools.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
COUNT=${1:-200}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
KEEP=${KEEP:-0}

command -v pgbackrest >/dev/null || { echo "pgbackrest is not installed" >&2; exit 1; }
[ -x "$PGBIN/initdb" ] || { echo "no PostgreSQL binaries in $PGBIN" >&2; exit 1; }

echo "== building pgkeep (release)"
(cd "$ROOT" && cargo build --release -p pgkeep)
PGKEEP="$ROOT/target/release/pgkeep"

WORK=${BENCH_DIR:-$(mktemp -d /tmp/pgkeep-bench-XXXXXX)}
mkdir -p "$WORK"
cleanup() {
    if [ -f "$WORK/data/postmaster.pid" ]; then
        $RUNAS "$PGBIN/pg_ctl" stop -m immediate -D "$WORK/data" >/dev/null 2>&1 || true
    fi
    if [ "$KEEP" != 1 ]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
RUNAS=""
if [ "$(id -u)" = 0 ]; then
    BENCH_USER=${BENCH_USER:-pgtest}
    id "$BENCH_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$BENCH_USER"
    chown "$BENCH_USER" "$WORK"
    RUNAS="runuser -u $BENCH_USER --"
fi
trap cleanup EXIT

if [ -f "$WORK/pg/global/pg_control" ] && \
    [ "$(ls "$WORK/segments" 2>/dev/null | grep -c -E '^[0-9A-F]{24}$')" -ge $((COUNT + 2)) ]; then
    echo "== reusing the segments in $WORK"
else
    echo "== generating $COUNT real WAL segments in $WORK"
    $RUNAS mkdir -p "$WORK/segments" "$WORK/socket"
    $RUNAS "$PGBIN/initdb" -k -U postgres -A trust -E UTF8 --locale=C -N -D "$WORK/data" >/dev/null
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    $RUNAS tee -a "$WORK/data/postgresql.conf" >/dev/null <<EOF
    port = $PORT
    listen_addresses = ''
    unix_socket_directories = '$WORK/socket'
    wal_level = replica
    archive_mode = on
    archive_command = 'cp %p $WORK/segments/%f'
    fsync = off
    synchronous_commit = off
    max_wal_size = 8GB
    shared_buffers = 128MB
EOF
    $RUNAS "$PGBIN/pg_ctl" start -w -D "$WORK/data" -l "$WORK/server.log" >/dev/null
    PSQL="$RUNAS $PGBIN/psql -X -q -At -h $WORK/socket -p $PORT -U postgres -d postgres"
    $PSQL -c "create table t (i bigint, a text, b text)"
    batch=0
    while [ "$(ls "$WORK/segments" | grep -c -E '^[0-9A-F]{24}$')" -lt $((COUNT + 2)) ]; do
        batch=$((batch + 1))
        $PSQL -c "insert into t select i, md5(i::text), md5((i * $batch)::text) from generate_series(1, 1000000) i"
        $PSQL -c "select pg_switch_wal()" >/dev/null
        sleep 0.5
    done
    $RUNAS "$PGBIN/pg_ctl" stop -w -D "$WORK/data" >/dev/null
    # pg1-path of the benchmark: the cluster's pg_control and a pg_wal the runs fill (pgBackRest wants
    # the WAL of an asynchronous push inside pg1-path)
    $RUNAS mkdir -p "$WORK/pg/global" "$WORK/pg/pg_wal/archive_status"
    $RUNAS cp "$WORK/data/global/pg_control" "$WORK/pg/global/pg_control"
    echo "   $(ls "$WORK/segments" | grep -c -E '^[0-9A-F]{24}$') segments archived by cp"
fi

echo "== pushing"
$RUNAS env PGKEEP="$PGKEEP" WORK="$WORK" COUNT="$COUNT" ROUNDS="${ROUNDS:-1}" \
    TYPES="${TYPES:-lz4 zst}" MODES="${MODES:-sync async}" python3 - <<'PYTHON'
import ctypes, os, shutil, subprocess, sys, time

PGKEEP = os.environ["PGKEEP"]
WORK = os.environ["WORK"]
COUNT = int(os.environ["COUNT"])
ROUNDS = int(os.environ["ROUNDS"])
TYPES = os.environ["TYPES"].split()
MODES = os.environ["MODES"].split()
TOOLS = [("pgbackrest", "pgbackrest"), ("pgkeep", PGKEEP)]

# orphaned background processes (async archive-push) are reparented to us, so their CPU is counted
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER

names = sorted(n for n in os.listdir(f"{WORK}/segments") if len(n) == 24 and all(c in "0123456789ABCDEF" for c in n))
segments = names[1:COUNT + 1]  # skip the first (written by initdb, mostly empty)
assert len(segments) == COUNT, f"only {len(segments)} segments"

def reap_all(peak):
    """Wait for every remaining descendant; return the peak RSS seen (KiB)."""
    while True:
        try:
            _, _, usage = os.wait4(-1, 0)
        except ChildProcessError:
            return peak
        peak = max(peak, usage.ru_maxrss)

def run(cmd, peak):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode()}")
    return max(peak, usage.ru_maxrss)

def children_cpu():
    r = os.times()
    return r.children_user + r.children_system

results = {}
for _round, compress, mode, (tool, exe) in [
    (r, c, m, t) for r in range(ROUNDS) for c in TYPES for m in MODES for t in TOOLS
]:
    run_dir = f"{WORK}/run-{tool}-{mode}-{compress}"
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    wal = f"{WORK}/pg/pg_wal"
    for n in os.listdir(f"{wal}/archive_status"):
        os.unlink(f"{wal}/archive_status/{n}")
    for n in os.listdir(wal):
        if n != "archive_status":
            os.unlink(f"{wal}/{n}")
    conf = f"{run_dir}/bench.conf"
    with open(conf, "w") as f:
        f.write(
            f"[global]\nrepo1-path={run_dir}/repo\nlock-path={run_dir}/lock\nlog-path={run_dir}/log\n"
            f"spool-path={run_dir}/spool\nlog-level-file=off\nlog-level-console=warn\ncompress-type={compress}\n"
            + ("archive-async=y\nprocess-max=2\n" if mode == "async" else "")
            + f"\n[bench]\npg1-path={WORK}/pg\n"
        )
    peak = run([exe, f"--config={conf}", "--stanza=bench", "--no-online", "stanza-create"], 0)
    if mode == "async":
        for s in segments:
            os.link(f"{WORK}/segments/{s}", f"{wal}/{s}")
            open(f"{wal}/archive_status/{s}.ready", "w").close()
        source = wal
    else:
        source = f"{WORK}/segments"
    reap_all(0)
    cpu0 = children_cpu()
    peak = 0
    begin = time.monotonic()
    for s in segments:
        peak = run([exe, f"--config={conf}", "--stanza=bench", "archive-push", f"{source}/{s}"], peak)
    wall = time.monotonic() - begin
    peak = reap_all(peak)
    cpu = children_cpu() - cpu0
    stored = 0
    for dirpath, _, files in os.walk(f"{run_dir}/repo/archive/bench"):
        stored += sum(1 for n in files if len(n) > 65 and n[24] == "-" and not n.endswith(".tmp"))
    if stored != COUNT:
        sys.exit(f"{tool} {mode} {compress}: {stored} segments stored, expected {COUNT}")
    row = (COUNT / wall, wall / COUNT * 1000, cpu, peak / 1024)
    best = results.get((mode, compress, tool))
    if best is None or row[0] > best[0]:
        results[(mode, compress, tool)] = row
    print(f"   {mode:5} {compress}  {tool:10}  {COUNT / wall:7.1f} seg/s  {wall / COUNT * 1000:6.1f} ms/seg  "
          f"{cpu:6.2f} s CPU  {peak / 1024:6.1f} MiB", flush=True)
    shutil.rmtree(run_dir)

print()
print(f"{COUNT} segments of 16 MiB, {os.cpu_count()} CPUs")
print(f"{'mode':5} {'type':4} | {'pgbackrest seg/s':>16} {'pgkeep seg/s':>12} {'ratio':>6} | {'pgbackrest ms/seg':>17} {'pgkeep ms/seg':>13} {'ratio':>6} | "
      f"{'pgbackrest CPU s':>16} {'pgkeep CPU s':>12} {'ratio':>6} | {'pgbackrest RSS MiB':>18} {'pgkeep RSS MiB':>14} {'ratio':>6}")
for mode in MODES:
    for compress in TYPES:
        b = results[(mode, compress, "pgbackrest")]
        k = results[(mode, compress, "pgkeep")]
        print(f"{mode:5} {compress:4} | {b[0]:16.1f} {k[0]:12.1f} {k[0] / b[0]:6.2f} | {b[1]:17.1f} {k[1]:13.1f} {k[1] / b[1]:6.2f} | "
              f"{b[2]:16.2f} {k[2]:12.2f} {k[2] / b[2]:6.2f} | {b[3]:18.1f} {k[3]:14.1f} {k[3] / b[3]:6.2f}")
PYTHON
