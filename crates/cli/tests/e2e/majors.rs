//! pgkeep's main flow on every supported PostgreSQL major, 10 to 18, one test per major so a
//! failure names its major (`majors::pg10_cycle` ...).
//!
//! Each test: a cluster of that major with data checksums, archiving through `pgkeep
//! archive-push`; `stanza-create`, `check`; rows, a full backup, rows, an incremental backup,
//! a row, a named restore point, rows after it, a WAL switch; `restore --type=name
//! --target=<point> --target-action=promote` into a new directory (recovery.conf up to 11,
//! signal files from 12 on, both written by pgkeep), started with the same major until it has
//! promoted, holding exactly the rows from before the point (and, up to 15, the recovery settings
//! are those the real pgbackrest 2.45 writes for the same restore); `pgkeep verify` succeeds, the
//! real `pgbackrest info` (2.45) lists both backups, and the full backup's manifest carries the
//! major's pg_control version and page checksums that were checked.
//!
//! Odd majors from 11 on run with 1 MiB WAL segments (`initdb --wal-segsize=1`), even ones and
//! 10 (compile-time size only) with the default 16 MiB, so the segment size read from pg_control
//! and WAL headers is exercised on old and new layouts without doubling the run time.
//!
//! The binaries of each major come from `/opt/pgbin/<major>/bin` (installed by
//! `scripts/install-deps.sh`) or the testkit's environment overrides; a missing major fails its
//! test with the directories that were tried. The data is a handful of rows so each test takes a
//! few seconds.
//!
//! The restored cluster is run here rather than by `PgCluster::adopt`, which always takes the
//! default (15) binaries: `pg_ctl` of the test's major, as the cluster's OS user, and queries
//! through the machine's `psql` (15), which talks to every server 10 to 18.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pgkeep_testkit::{PgCluster, PgClusterOptions, TempDir, free_port, run_as_owner};

use crate::common::{PGKEEP, Site, archive_now, keys, sql};

const PGBACKREST: &str = "pgbackrest";
const POINT: &str = "before-eight";

/// The last 40 lines of a server log.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A restored data directory started with the binaries of `bin_dir`; stopped on drop (the data
/// directory stays, its owner's temp dir removes it).
struct Restored {
    bin_dir: PathBuf,
    data: PathBuf,
    run_dir: TempDir,
    port: u16,
}

impl Restored {
    fn start(bin_dir: &Path, data: &Path) -> Restored {
        let run_dir = TempDir::new().expect("temp dir");
        let socket = run_dir.subdir("socket").expect("socket dir");
        let log = run_dir.path().join("server.log");
        for _ in 0..5 {
            let port = free_port().expect("free port");
            let mut cmd = Command::new(bin_dir.join("pg_ctl"));
            cmd.args(["start", "-w", "-t", "60", "-D"])
                .arg(data)
                .arg("-l")
                .arg(&log)
                .arg("-o")
                .arg(format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1 -c archive_mode=off",
                    socket.display()
                ));
            let out = run_as_owner(&cmd).expect("run pg_ctl");
            if out.status.success() {
                return Restored {
                    bin_dir: bin_dir.to_path_buf(),
                    data: data.to_path_buf(),
                    run_dir,
                    port,
                };
            }
            let tail = tail(&log);
            // a port taken meanwhile by someone else is retried on a new one
            if !tail.contains("could not bind") && !tail.contains("could not create any TCP/IP") {
                panic!(
                    "restored cluster did not start: {}{}\n{tail}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        panic!(
            "restored cluster did not start: no free port\n{}",
            tail(&log)
        );
    }

    fn log_tail(&self) -> String {
        tail(&self.run_dir.path().join("server.log"))
    }

    /// `psql -At` as `postgres` over the socket; None when the server does not answer yet.
    fn try_sql(&self, query: &str) -> Option<String> {
        let out = Command::new("psql")
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-h"])
            .arg(self.run_dir.path().join("socket"))
            .args(["-p", &self.port.to_string(), "-d", "postgres", "-c", query])
            .output()
            .expect("run psql");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn sql(&self, query: &str) -> String {
        self.try_sql(query)
            .unwrap_or_else(|| panic!("query '{query}' failed\n{}", self.log_tail()))
    }

    /// Waits until recovery has ended and the server accepts writes.
    fn wait_promoted(&self) {
        let begin = Instant::now();
        while self.try_sql("select pg_is_in_recovery()").as_deref() != Some("f") {
            assert!(
                begin.elapsed() < Duration::from_secs(90),
                "recovery did not end\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok());
        let mut cmd = Command::new(self.bin_dir.join("pg_ctl"));
        cmd.args(["stop", "-w", "-t", "60", "-m", "immediate", "-D"])
            .arg(&self.data);
        let _ = run_as_owner(&cmd);
        // the testkit made this process the subreaper of daemonized postmasters: reap ours
        if let Some(pid) = pid {
            use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
            let pid = nix::unistd::Pid::from_raw(pid);
            for _ in 0..500 {
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(10)),
                    _ => break,
                }
            }
        }
    }
}

/// The whole cycle on `major` (see the module docs), with WAL segments of `wal_mb` MiB when
/// given (`initdb --wal-segsize`, 11+).
fn cycle(major: u32, wal_mb: Option<u32>) {
    let site = match wal_mb {
        None => Site::with_major(major, Some(PGKEEP)),
        Some(mb) => Site::with_options(
            PgClusterOptions {
                major: Some(major),
                initdb_args: vec![format!("--wal-segsize={mb}")],
                ..PgClusterOptions::default()
            },
            Some(PGKEEP),
        ),
    };
    let c = &site.cluster;
    assert_eq!(c.version_major(), major);
    let segment_bytes = u64::from(wal_mb.unwrap_or(16)) * 1024 * 1024;
    assert_eq!(
        sql(
            c,
            "select setting::bigint * case unit when '8kB' then 8192 when 'B' then 1 else 1048576 end from pg_settings where name = 'wal_segment_size'"
        ),
        segment_bytes.to_string()
    );
    let base = site.dir.path().display().to_string();
    site.write_conf(&format!("spool-path={base}/spool\n"));
    assert_eq!(
        sql(c, "show data_checksums"),
        "on",
        "the cluster must have data checksums"
    );

    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    site.ok(PGKEEP, &["--stanza=demo", "check"]);

    // a tablespace: its directory is named after the major and catalog version
    let ts = site.dir.subdir("ts").expect("tablespace dir");
    sql(
        c,
        &format!("create tablespace ts location '{}'", ts.display()),
    );
    sql(c, "create table t (i int primary key, s text)");
    sql(c, "create table u (i int) tablespace ts");
    sql(
        c,
        "insert into t select i, md5(i::text) from generate_series(1, 3) i; insert into u values (1)",
    );
    site.ok(PGKEEP, &["--stanza=demo", "--type=full", "backup"]);
    sql(
        c,
        "insert into t select i, md5(i::text) from generate_series(4, 6) i; insert into u values (2)",
    );
    site.ok(PGKEEP, &["--stanza=demo", "--type=incr", "backup"]);
    sql(c, "insert into t values (7, 'seven')");
    sql(c, &format!("select pg_create_restore_point('{POINT}')"));
    sql(c, "insert into t values (8, 'eight'), (9, 'nine')");
    archive_now(c);

    let dir = site.dir.path().join("restored");
    let pg1 = format!("--pg1-path={}", dir.display());
    let target = format!("--target={POINT}");
    let ts_restored = site.dir.path().join("restored-ts");
    let ts_map = format!("--tablespace-map-all={}", ts_restored.display());
    site.ok(
        PGKEEP,
        &[
            "--stanza=demo",
            &pg1,
            "--type=name",
            &target,
            "--target-action=promote",
            &ts_map,
            "restore",
        ],
    );
    // pgbackrest 2.45 knows majors up to 15: it must write the same recovery settings
    if major <= 15 {
        let theirs = site.dir.path().join("restored-pgbackrest");
        let pg1 = format!("--pg1-path={}", theirs.display());
        let ts_map = format!("--tablespace-map-all={}-ts", theirs.display());
        site.ok(
            PGBACKREST,
            &[
                "--stanza=demo",
                &pg1,
                "--type=name",
                &target,
                "--target-action=promote",
                &ts_map,
                "restore",
            ],
        );
        assert_eq!(
            recovery_files(&dir),
            recovery_files(&theirs),
            "recovery settings differ from pgbackrest's"
        );
    }
    let (conf, signal) = (dir.join("recovery.conf"), dir.join("recovery.signal"));
    if major < 12 {
        assert!(
            conf.is_file() && !signal.exists(),
            "PG {major} wants recovery.conf"
        );
    } else {
        assert!(
            signal.is_file() && !conf.exists(),
            "PG {major} wants recovery.signal"
        );
    }
    {
        let restored = Restored::start(c.bin_dir(), &dir);
        restored.wait_promoted();
        assert_eq!(
            restored.sql("select string_agg(i::text, ',' order by i) from t"),
            "1,2,3,4,5,6,7",
            "the restore did not stop at '{POINT}'\n{}",
            restored.log_tail()
        );
        assert_eq!(
            restored.sql("select string_agg(i::text, ',' order by i) from u"),
            "1,2"
        );
        assert_eq!(
            restored
                .sql("select pg_tablespace_location(oid) from pg_tablespace where spcname = 'ts'"),
            ts_restored.join("ts").display().to_string()
        );
        assert_eq!(
            restored.sql("select current_setting('server_version_num')::int / 10000"),
            major.to_string()
        );
    }
    assert_eq!(keys(c), "1,2,3,4,5,6,7,8,9");

    site.ok(PGKEEP, &["--stanza=demo", "verify"]);

    let out = site.ok(PGBACKREST, &["--stanza=demo", "--output=json", "info"]);
    let json: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("pgbackrest info is not JSON ({e}): {out}"));
    let types: Vec<&str> = json[0]["backup"]
        .as_array()
        .unwrap_or_else(|| panic!("no backup list in pgbackrest info: {out}"))
        .iter()
        .map(|b| b["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(types, ["full", "incr"], "pgbackrest info: {out}");
    assert_eq!(json[0]["status"]["code"], 0, "pgbackrest info: {out}");
    let version = json[0]["db"][0]["version"].as_str().unwrap_or("");
    assert_eq!(version, major.to_string(), "pgbackrest info: {out}");

    // pg_control was read with this major's layout, and every page was checksum-checked
    let full = json[0]["backup"][0]["label"].as_str().unwrap_or("");
    let manifest = site
        .repo()
        .join("backup/demo")
        .join(full)
        .join("backup.manifest");
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("unable to read '{}': {e}", manifest.display()));
    for line in [
        format!("db-control-version={}", control_version(major)),
        format!("db-version=\"{major}\""),
        "option-checksum-page=true".to_string(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing in {}",
            manifest.display()
        );
    }
    assert!(
        !text.contains("\"checksum-page\":false"),
        "page checksum errors in {}",
        manifest.display()
    );
    // the tablespace's version directory, as the server named it, is in the backup
    let version_dir = std::fs::read_dir(&ts)
        .expect("list the tablespace")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|name| name.starts_with(&format!("PG_{major}_")))
        .unwrap_or_else(|| panic!("no PG_{major}_* directory in '{}'", ts.display()));
    assert!(
        text.lines()
            .any(|l| l.starts_with("pg_tblspc/") && l.contains(&format!("/{version_dir}/"))),
        "no file under pg_tblspc/*/{version_dir} in {}",
        manifest.display()
    );
}

/// The recovery settings a restore left in `dir`: the files that carry them (`recovery.conf`, or
/// `postgresql.auto.conf` plus signal files) without comment lines, with the directory and the
/// program in `restore_command` replaced by placeholders so two tools' restores compare.
fn recovery_files(dir: &Path) -> String {
    let mut out = String::new();
    for name in [
        "recovery.conf",
        "postgresql.auto.conf",
        "recovery.signal",
        "standby.signal",
    ] {
        let Ok(text) = std::fs::read_to_string(dir.join(name)) else {
            continue;
        };
        out.push_str(&format!("[{name}]\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let line = line
                .replace(&dir.display().to_string(), "<dir>")
                .replace(&format!("'{PGKEEP} "), "'<exe> ")
                .replace(&format!("'{PGBACKREST} "), "'<exe> ");
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// `PG_CONTROL_VERSION` per major, as `pg_controldata` reports it (independent of pgkeep's table).
fn control_version(major: u32) -> u32 {
    match major {
        10 => 1002,
        11 => 1100,
        12 => 1201,
        13..=16 => 1300,
        17 => 1700,
        18 => 1800,
        _ => panic!("no PG_CONTROL_VERSION known for {major}"),
    }
}

#[test]
fn pg10_cycle() {
    cycle(10, None);
}

#[test]
fn pg11_cycle() {
    cycle(11, Some(1));
}

#[test]
fn pg12_cycle() {
    cycle(12, None);
}

#[test]
fn pg13_cycle() {
    cycle(13, Some(1));
}

#[test]
fn pg14_cycle() {
    cycle(14, None);
}

#[test]
fn pg15_cycle() {
    cycle(15, Some(1));
}

#[test]
fn pg16_cycle() {
    cycle(16, None);
}

#[test]
fn pg17_cycle() {
    cycle(17, Some(1));
}

#[test]
fn pg18_cycle() {
    cycle(18, None);
}

/// `stanza-upgrade` from the oldest to the newest major: the PG 10 cluster is replaced by a PG 18
/// one (new system id, as after `pg_upgrade`) archiving into the same stanza. `check` refuses the
/// stanza until it is upgraded; then backups and archiving go on under db-id 2, the real
/// `pgbackrest info` shows both databases, `verify` passes, and each backup restores with its own
/// major, replaying only its own database's WAL although both archives hold segments of the same
/// names.
#[test]
fn upgrade_10_to_18() {
    let mut site = Site::with_major(10, Some(PGKEEP));
    let base = site.dir.path().display().to_string();
    site.write_conf(&format!("spool-path={base}/spool\n"));
    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    let c = &site.cluster;
    sql(c, "create table t (i int primary key)");
    sql(c, "insert into t values (1)");
    site.ok(PGKEEP, &["--stanza=demo", "--type=full", "backup"]);
    sql(c, "insert into t values (2)");
    archive_now(c);

    let archive_command = format!(
        "{PGKEEP} --config={} --stanza=demo archive-push %p",
        site.conf.display()
    );
    let new = PgCluster::start(PgClusterOptions {
        major: Some(18),
        archive_mode: Some("on".to_string()),
        archive_command: Some(archive_command),
        ..PgClusterOptions::default()
    })
    .unwrap_or_else(|e| panic!("PostgreSQL 18 could not start: {e}"));
    let old = std::mem::replace(&mut site.cluster, new);
    let old_bin = old.bin_dir().to_path_buf();
    drop(old);
    site.write_conf(&format!("spool-path={base}/spool\n"));

    let err = site.fails(PGKEEP, &["--stanza=demo", "check"], 28);
    assert!(err.contains("do not match the database"), "{err}");
    site.ok(PGKEEP, &["--stanza=demo", "stanza-upgrade"]);
    site.ok(PGKEEP, &["--stanza=demo", "check"]);
    let c = &site.cluster;
    sql(c, "create table t (i int primary key)");
    sql(c, "insert into t values (10)");
    site.ok(PGKEEP, &["--stanza=demo", "--type=full", "backup"]);
    sql(c, "insert into t values (11)");
    archive_now(c);
    site.ok(PGKEEP, &["--stanza=demo", "verify"]);

    let out = site.ok(PGBACKREST, &["--stanza=demo", "--output=json", "info"]);
    let json: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("pgbackrest info is not JSON ({e}): {out}"));
    let stanza = &json[0];
    assert_eq!(stanza["status"]["code"], 0, "{out}");
    let field = |list: &serde_json::Value, key: &str| -> Vec<String> {
        list.as_array()
            .unwrap_or_else(|| panic!("pgbackrest info: {out}"))
            .iter()
            .map(|v| v[key].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(field(&stanza["db"], "version"), ["10", "18"], "{out}");
    assert_eq!(field(&stanza["archive"], "id"), ["10-1", "18-2"], "{out}");
    let labels = field(&stanza["backup"], "label");
    let db_ids: Vec<&serde_json::Value> = stanza["backup"]
        .as_array()
        .map(|b| b.iter().map(|b| &b["database"]["id"]).collect())
        .unwrap_or_default();
    assert_eq!(db_ids, [1, 2], "{out}");

    for (label, bin, rows) in [
        (&labels[0], old_bin.as_path(), "1,2"),
        (&labels[1], site.cluster.bin_dir(), "10,11"),
    ] {
        let dir = site.dir.path().join(label);
        let pg1 = format!("--pg1-path={}", dir.display());
        let set = format!("--set={label}");
        site.ok(PGKEEP, &["--stanza=demo", &pg1, &set, "restore"]);
        let restored = Restored::start(bin, &dir);
        restored.wait_promoted();
        assert_eq!(
            restored.sql("select string_agg(i::text, ',' order by i) from t"),
            rows,
            "backup {label}\n{}",
            restored.log_tail()
        );
    }
}
