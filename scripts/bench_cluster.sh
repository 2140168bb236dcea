# Shared by scripts/bench-backup.sh and scripts/bench-restore.sh (sourced, not run): the
# benchmark user and the generated cluster both benchmarks measure.
#
# bench_user_setup: as root, create RUN_USER if needed and set AS=(runuser -u RUN_USER --);
#   otherwise RUN_USER becomes the current user and AS=().
# bench_create_cluster: initdb into $DIR/data (port $PORT, socket in $DIR), start it, set PSQL,
#   and fill it with ~$SIZE_MB MB: 45% compressible text, 40% random bytes (TOAST, stored
#   uncompressed), 10% a "hot" table (changed before each incremental), plus 3000 small tables
#   with an index each (thousands of small files). Needs DIR, PORT, PGBIN, SIZE_MB, AS.

bench_user_setup() {
    if [ "$(id -u)" = 0 ]; then
        id "$RUN_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$RUN_USER"
        AS=(runuser -u "$RUN_USER" --)
    else
        RUN_USER="$(id -un)"
        AS=()
    fi
}

bench_create_cluster() {
echo "creating a ~${SIZE_MB} MB cluster in $DIR (PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'))..."
"${AS[@]}" "$PGBIN/initdb" -k -U postgres -A trust -E UTF8 --locale=C -N -D "$DIR/data" >/dev/null
cat >> "$DIR/data/postgresql.conf" <<EOF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$DIR'
shared_buffers = 128MB
max_wal_size = 4GB
fsync = off
synchronous_commit = off
wal_level = replica
archive_mode = off
EOF
"${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w start >/dev/null
PSQL=("${AS[@]}" "$PGBIN/psql" -X -q -h "$DIR" -p "$PORT" -U postgres -v ON_ERROR_STOP=1)

TEXT_ROWS=$(( SIZE_MB * 45 / 100 * 1024 * 1024 / 200 ))
RAND_MB=$(( SIZE_MB * 40 / 100 ))
HOT_ROWS=$(( SIZE_MB * 10 / 100 * 1024 * 1024 / 200 ))
"${PSQL[@]}" <<EOF
create table text_data (i int, s text);
insert into text_data select i, repeat(md5((i % 5000)::text), 4) from generate_series(1, $TEXT_ROWS) i;
create table hot (i int, s text);
insert into hot select i, repeat(md5(i::text), 4) from generate_series(1, $HOT_ROWS) i;
create table rand_data (b bytea);
alter table rand_data alter column b set storage external;
do \$\$ begin
  for n in 1..3000 loop
    execute format('create table small_%s (i int primary key, s text)', n);
    execute format('insert into small_%s select g, md5(g::text) from generate_series(1, 20) g', n);
  end loop;
end \$\$;
EOF
cat > "$DIR/gen_random.py" <<'PYEOF'
import os, sys
# COPY text format: "\\x<hex>" is the bytea value \x<hex>; 4 KiB of random bytes per row
out = sys.stdout.buffer
left = int(sys.argv[1]) * 1024 * 1024
while left > 0:
    chunk = min(left, 4 * 1024 * 1024)
    data = os.urandom(chunk)
    for off in range(0, chunk, 4096):
        out.write(b"\\\\x" + data[off:off + 4096].hex().encode() + b"\n")
    left -= chunk
PYEOF
python3 "$DIR/gen_random.py" "$RAND_MB" | "${PSQL[@]}" -c "copy rand_data (b) from stdin"
"${PSQL[@]}" -c "vacuum analyze" -c "checkpoint"
}
