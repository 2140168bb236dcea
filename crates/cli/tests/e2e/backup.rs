//! `backup` against real clusters (data checksums on, a tablespace, symlinks in PGDATA, rows
//! written while the backup runs), proven with the real pgBackRest 2.45: `info` lists the chain,
//! `verify` finds nothing wrong, and `restore` of every backup gives a cluster that starts,
//! replays the archive through `archive-get`, and holds the same rows.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pgkeep_testkit::{PgCluster, PgClusterOptions, free_port, give_to_pg_user, run_as_owner};

use crate::common::{PGKEEP, Site};

const PGBACKREST: &str = "pgbackrest";

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A site whose archive_command is `tool`, with a stanza, a tablespace holding table `t`, a
/// symlinked file and a symlinked directory in PGDATA.
fn site(tool: &str, extra_conf: &str) -> Site {
    site_on(Site::new(Some(tool)), extra_conf)
}

/// [`site`] on a site already started.
fn site_on(site: Site, extra_conf: &str) -> Site {
    let spool = site.dir.subdir("spool").expect("spool dir");
    site.write_conf(&format!("spool-path={}\n{extra_conf}", spool.display()));
    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    let ts = site.dir.subdir("ts1").expect("tablespace dir");
    let ext = site.dir.subdir("ext/dir").expect("ext dir");
    std::fs::write(ext.join("inside.txt"), b"linked directory content\n").unwrap();
    std::fs::write(site.dir.path().join("ext/extra.conf"), b"# linked file\n").unwrap();
    let data = site.cluster.data_dir();
    std::os::unix::fs::symlink(
        site.dir.path().join("ext/extra.conf"),
        data.join("extra.conf"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&ext, data.join("extdir")).unwrap();
    give_to_pg_user(site.dir.path()).unwrap();
    let c = &site.cluster;
    c.psql(&format!(
        "create tablespace ts1 location '{}'",
        ts.display()
    ))
    .unwrap();
    c.psql("create table t (i int, s text) tablespace ts1")
        .unwrap();
    c.psql("insert into t select i, md5(i::text) from generate_series(1, 20000) i")
        .unwrap();
    c.psql("create table w (i int, s text)").unwrap();
    c.psql("create unlogged table scratch (i int)").unwrap();
    c.psql("insert into scratch select generate_series(1, 1000)")
        .unwrap();
    site
}

/// Rows inserted into `w` by a background connection until dropped.
struct Writer {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<u64>>,
}

impl Writer {
    fn start(cluster: &PgCluster) -> Writer {
        let mut client = cluster.connect().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut batches = 0u64;
            while !flag.load(Ordering::Relaxed) {
                client
                    .batch_execute(
                        "insert into w select i, md5(random()::text) from generate_series(1, 500) i; update t set s = md5(s) where i % 997 = 0",
                    )
                    .unwrap();
                batches += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            batches
        });
        Writer {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().map(|h| h.join().unwrap()).unwrap_or(0)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Real `pgbench` (TPC-B-like transactions from two clients, at most 300 a second so the WAL it
/// writes stays within what the archiver pushes on a loaded machine) against a cluster, from
/// `start` until `finish` (or drop) kills it.
struct Pgbench {
    child: Option<std::process::Child>,
}

impl Pgbench {
    /// `pgbench -i` (scale 1) then the load in the background.
    fn start(cluster: &PgCluster) -> Pgbench {
        let base = |cmd: &mut Command| {
            cmd.arg("-h").arg(cluster.socket_dir()).args([
                "-p",
                &cluster.port().to_string(),
                "-U",
                "postgres",
            ]);
        };
        let mut init = Command::new(cluster.bin_dir().join("pgbench"));
        base(&mut init);
        init.args(["-i", "-q", "-s", "1", "postgres"]);
        let out = init.output().expect("pgbench -i could not run");
        assert!(out.status.success(), "pgbench -i failed: {:?}", text(&out));
        let mut load = Command::new(cluster.bin_dir().join("pgbench"));
        base(&mut load);
        load.args([
            "-n", "-c", "2", "-j", "1", "-R", "300", "-T", "600", "postgres",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        Pgbench {
            child: Some(load.spawn().expect("pgbench could not start")),
        }
    }

    /// Stop the load and wait until the server has ended pgbench's sessions (a transaction it
    /// had sent commits before that); fails the test when pgbench ended on its own (an error).
    fn finish(mut self, cluster: &PgCluster) {
        let mut child = self.child.take().unwrap();
        assert!(
            child.try_wait().unwrap().is_none(),
            "pgbench stopped before the backups were done"
        );
        let _ = child.kill();
        let _ = child.wait();
        let begin = Instant::now();
        while cluster
            .psql("select count(*) from pg_stat_activity where application_name = 'pgbench'")
            .unwrap()
            != "0"
        {
            assert!(
                begin.elapsed() < Duration::from_secs(30),
                "pgbench sessions still running"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pgbench {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What pgbench's tables hold: balances and the history of committed transactions.
const PGBENCH_SQL: &str = "select (select count(*) || '/' || sum(abalance) from pgbench_accounts) || ' ' || (select sum(bbalance) || '/' || sum(tbalance) from pgbench_branches, (select sum(tbalance) tbalance from pgbench_tellers) t) || ' ' || (select count(*) || '/' || sum(delta) from pgbench_history)";

/// What a cluster must hold: counts and sums of both tables.
const CONTENT_SQL: &str = "select (select count(*) || '/' || sum(i) || '/' || md5(string_agg(s, ',' order by i, s)) from t) || ' ' || (select count(*) || '/' || sum(i) || '/' || md5(string_agg(s, ',' order by i, s)) from w)";

/// Switch WAL and wait until the closed segment is archived, so a restore replays everything.
fn archive_all(cluster: &PgCluster) {
    // a record in the current segment, so the switch closes it (an empty one is not switched)
    cluster
        .psql("select pg_create_restore_point('pgkeep test')")
        .unwrap();
    let segment = cluster
        .psql("select pg_walfile_name(pg_switch_wal())")
        .unwrap();
    let begin = Instant::now();
    loop {
        let last = cluster
            .psql("select coalesce(last_archived_wal, '') from pg_stat_archiver")
            .unwrap();
        if last >= segment {
            return;
        }
        assert!(
            begin.elapsed() < Duration::from_secs(60),
            "{segment} not archived\n{}",
            cluster.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Labels of the backups in backup.info according to `pgbackrest info --output=json`.
fn pgbackrest_labels(site: &Site) -> Vec<(String, String)> {
    let out = site.ok(PGBACKREST, &["--stanza=demo", "--output=json", "info"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    json[0]["backup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["label"].as_str().unwrap().to_string(),
                b["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `pgbackrest verify` output; 2.45 exits 0 even when it finds damage and reports it as a
/// `status: error` block at info level, so the text is what counts.
fn verify_output(site: &Site) -> String {
    let out = site.run(
        PGBACKREST,
        &["--stanza=demo", "--log-level-console=detail", "verify"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "verify failed: {stdout}\n{stderr}");
    format!("{stdout}{stderr}")
}

/// `pgbackrest verify` must find nothing wrong.
fn verify(site: &Site) {
    let out = verify_output(site);
    assert!(
        !out.contains("status: error")
            && !out.contains("invalid")
            && !out.contains("WARN")
            && !out.contains("ERROR"),
        "verify found problems:\n{out}"
    );
}

fn backup(site: &Site, args: &[&str]) -> (String, String) {
    let mut all = vec!["--stanza=demo", "--log-level-console=detail"];
    all.extend_from_slice(args);
    all.push("backup");
    let out = site.run(PGKEEP, &all);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "backup {args:?} failed ({:?})\nstdout: {stdout}\nstderr: {stderr}",
        out.status.code()
    );
    (stdout, stderr)
}

/// The label logged by a successful backup.
fn new_label(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.split("new backup label = ").nth(1))
        .unwrap_or_else(|| panic!("no label in output:\n{stdout}"))
        .trim()
        .to_string()
}

/// Restore `label` with the real pgBackRest into a new directory, start it on a fresh port, let
/// it replay the archive, and return its content ([`CONTENT_SQL`]).
fn restore(site: &Site, label: &str, n: usize) -> String {
    restore_checking(site, label, n, &[CONTENT_SQL])
}

/// [`restore`], returning the answers of `queries`, one a line.
fn restore_checking(site: &Site, label: &str, n: usize, queries: &[&str]) -> String {
    let base = site.dir.subdir(&format!("restore{n}")).unwrap();
    let data = base.join("data");
    let ts = base.join("ts");
    for dir in [&data, &ts] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    give_to_pg_user(&base).unwrap();
    site.ok(
        PGBACKREST,
        &[
            "--stanza=demo",
            &format!("--pg1-path={}", data.display()),
            &format!("--set={label}"),
            &format!("--tablespace-map-all={}", ts.display()),
            "--archive-mode=off",
            "--log-level-console=warn",
            "restore",
        ],
    );
    let port = free_port().unwrap();
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .unwrap();
    std::io::Write::write_all(&mut conf, format!("\nport = {port}\n").as_bytes()).unwrap();
    let cluster = Started {
        bin: site.cluster.bin_dir().to_path_buf(),
        data: data.clone(),
        socket: site.cluster.socket_dir().to_path_buf(),
        port,
    };
    cluster.pg_ctl(&["start", "-w", "-t", "120", "-l"], Some(&base.join("log")));
    let begin = Instant::now();
    while cluster.sql("select pg_is_in_recovery()") != "f" {
        assert!(
            begin.elapsed() < Duration::from_secs(120),
            "restored cluster of {label} still in recovery\n{}",
            std::fs::read_to_string(base.join("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(cluster.sql("select count(*) from scratch"), "0");
    assert_eq!(
        cluster.sql("select pg_read_file('extra.conf')"),
        "# linked file"
    );
    let answers: Vec<String> = queries.iter().map(|q| cluster.sql(q)).collect();
    answers.join("\n")
}

/// A restored cluster, stopped on drop.
struct Started {
    bin: PathBuf,
    data: PathBuf,
    socket: PathBuf,
    port: u16,
}

impl Started {
    fn pg_ctl(&self, args: &[&str], log: Option<&Path>) {
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.args(args);
        if let Some(log) = log {
            cmd.arg(log);
        }
        cmd.arg("-D").arg(&self.data);
        let out = run_as_owner(&cmd).unwrap();
        assert!(out.status.success(), "pg_ctl {args:?}: {:?}", text(&out));
    }

    fn sql(&self, sql: &str) -> String {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args(["-X", "-At", "-U", "postgres", "-h"])
            .arg(&self.socket)
            .args(["-p", &self.port.to_string(), "-c", sql]);
        let out = run_as_owner(&cmd).unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.args(["stop", "-w", "-m", "immediate", "-D"])
            .arg(&self.data);
        let _ = run_as_owner(&cmd);
    }
}

fn manifest_of(site: &Site, label: &str) -> String {
    std::fs::read_to_string(
        site.repo()
            .join(format!("backup/demo/{label}/backup.manifest")),
    )
    .unwrap()
}

#[test]
fn full_incr_diff_under_load_restore_with_pgbackrest() {
    let site = site(PGBACKREST, "");
    let pgbench = Pgbench::start(&site.cluster);
    let writer = Writer::start(&site.cluster);
    std::thread::sleep(Duration::from_millis(300));
    let (out, _) = backup(&site, &["--type=full", "--annotation=source=e2e"]);
    let full = new_label(&out);
    assert!(out.contains("check archive for prior segment"), "{out}");
    assert!(manifest_of(&site, &full).contains("annotation={\"source\":\"e2e\"}"));
    assert!(out.contains("backup file "), "{out}");
    let (out, _) = backup(&site, &["--type=incr"]);
    let incr = new_label(&out);
    assert!(out.contains("reference pg_data/"), "{out}");
    let (out, _) = backup(&site, &["--type=diff", "--process-max=2"]);
    let diff = new_label(&out);
    let batches = writer.finish();
    assert!(batches > 0);
    pgbench.finish(&site.cluster);
    archive_all(&site.cluster);

    assert_eq!(
        pgbackrest_labels(&site),
        [
            (full.clone(), "full".to_string()),
            (incr.clone(), "incr".to_string()),
            (diff.clone(), "diff".to_string()),
        ]
    );
    assert!(incr.starts_with(&full[..16]) && incr.ends_with('I'));
    assert!(diff.ends_with('D'));
    let m = manifest_of(&site, &diff);
    assert!(m.contains(&format!("backup-prior=\"{full}\"")), "{m}");
    assert!(m.contains(&format!("backup-reference=\"{full},{diff}\"")));
    assert!(m.contains("\"tablespace-name\":\"ts1\""));
    assert!(m.contains("pg_data/extra.conf={\"destination\""));
    assert!(m.contains("pg_data/extdir/inside.txt="));
    assert!(m.contains("pg_data/backup_label={"));
    assert!(!m.contains("postmaster.pid"));
    verify(&site);

    let expected = [CONTENT_SQL, PGBENCH_SQL]
        .map(|q| site.cluster.psql(q).unwrap())
        .join("\n");
    let transactions = site
        .cluster
        .psql("select count(*) from pgbench_history")
        .unwrap();
    assert!(
        transactions.parse::<u64>().unwrap() > 0,
        "pgbench committed nothing"
    );
    for (n, label) in [&full, &incr, &diff].into_iter().enumerate() {
        assert_eq!(
            restore_checking(&site, label, n, &[CONTENT_SQL, PGBENCH_SQL]),
            expected,
            "restore of {label}"
        );
    }
}

#[test]
fn encrypted_bundled_zst_repo_with_pgkeep_archive_push() {
    let site = site(
        PGKEEP,
        "repo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=SecretPass123\nrepo1-bundle=y\nrepo1-bundle-limit=64KiB\nrepo1-bundle-size=1MiB\ncompress-type=zst\nprocess-max=2\n",
    );
    let writer = Writer::start(&site.cluster);
    let (out, _) = backup(&site, &["--type=full"]);
    let full = new_label(&out);
    assert!(out.contains("store zero-length file"), "{out}");
    let (out, _) = backup(&site, &["--type=incr"]);
    let incr = new_label(&out);
    writer.finish();
    archive_all(&site.cluster);
    let tree = site.repo().join(format!("backup/demo/{full}/bundle"));
    assert!(tree.join("1").exists(), "no bundle in {}", tree.display());
    // the manifest is encrypted
    let raw = std::fs::read(
        site.repo()
            .join(format!("backup/demo/{incr}/backup.manifest")),
    )
    .unwrap();
    assert!(raw.starts_with(b"Salted__"));
    assert_eq!(
        pgbackrest_labels(&site)
            .into_iter()
            .map(|(l, _)| l)
            .collect::<Vec<_>>(),
        [full.clone(), incr.clone()]
    );
    verify(&site);
    let expected = site.cluster.psql(CONTENT_SQL).unwrap();
    assert_eq!(restore(&site, &incr, 0), expected);
}

#[test]
fn bz2_bundled_full_and_diff_restore_with_pgbackrest() {
    let site = site(
        PGBACKREST,
        "compress-type=bz2\nrepo1-bundle=y\nrepo1-bundle-limit=32KiB\nrepo1-bundle-size=1MiB\nprocess-max=2\n",
    );
    let (out, _) = backup(&site, &["--type=full"]);
    let full = new_label(&out);
    site.cluster
        .psql("insert into t select i, md5(i::text) from generate_series(20001, 30000) i")
        .unwrap();
    let (out, _) = backup(&site, &["--type=diff"]);
    let diff = new_label(&out);
    archive_all(&site.cluster);
    let stored = site.repo().join(format!("backup/demo/{full}"));
    assert!(
        stored.join("bundle/1").exists(),
        "no bundle in {}",
        stored.display()
    );
    // files over the bundle limit are stored on their own, compressed
    let own = std::fs::read_dir(stored.join("pg_data/base/5"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".bz2"))
        .count();
    assert!(own > 0, "no bz2 file in {}", stored.display());
    let m = manifest_of(&site, &diff);
    assert!(m.contains("option-compress-type=\"bz2\""), "{m}");
    assert!(m.contains("\"bni\":1"), "{m}");
    let diff_bundle = site.repo().join(format!("backup/demo/{diff}/bundle/1"));
    assert!(diff_bundle.exists(), "no bundle in the diff");
    assert_eq!(
        pgbackrest_labels(&site),
        [
            (full, "full".to_string()),
            (diff.clone(), "diff".to_string())
        ]
    );
    verify(&site);
    let expected = site.cluster.psql(CONTENT_SQL).unwrap();
    assert_eq!(restore(&site, &diff, 0), expected);
}

#[test]
fn lz4_delta_and_archive_copy() {
    let site = site(PGBACKREST, "compress-type=lz4\n");
    let (out, _) = backup(&site, &["--type=full", "--archive-copy"]);
    let full = new_label(&out);
    let m = manifest_of(&site, &full);
    assert!(m.contains("option-archive-copy=true"));
    assert!(
        m.contains("pg_data/pg_wal/0000000"),
        "archive-copy WAL missing"
    );
    site.cluster
        .psql("insert into t select i, 'x' from generate_series(1, 10) i")
        .unwrap();
    let (out, _) = backup(&site, &["--type=incr", "--delta", "--repo1-hardlink"]);
    let incr = new_label(&out);
    assert!(out.contains("match file from prior backup"), "{out}");
    assert!(out.contains("hardlink pg_data/"), "{out}");
    let m = manifest_of(&site, &incr);
    assert!(m.contains("option-delta=true") && m.contains("option-hardlink=true"));
    // every referenced file is also reachable through the incr's own directory
    let version = site
        .repo()
        .join(format!("backup/demo/{incr}/pg_data/PG_VERSION.lz4"));
    assert!(version.exists(), "no hard link {}", version.display());
    // pgbackrest can add to a chain pgkeep started
    site.ok(PGBACKREST, &["--stanza=demo", "--type=incr", "backup"]);
    let labels = pgbackrest_labels(&site);
    assert_eq!(labels.len(), 3);
    verify(&site);
    // negative control: verify does read pgkeep's files
    let stored = site
        .repo()
        .join(format!("backup/demo/{full}/pg_data/global/pg_control.lz4"));
    let good = std::fs::read(&stored).unwrap();
    let mut bad = good.clone();
    bad[20] ^= 0xFF;
    std::fs::write(&stored, &bad).unwrap();
    let out = verify_output(&site);
    assert!(
        out.contains("status: error") && out.contains("pg_control.lz4"),
        "{out}"
    );
    std::fs::write(&stored, &good).unwrap();
    verify(&site);
    archive_all(&site.cluster);
    let expected = site.cluster.psql(CONTENT_SQL).unwrap();
    assert_eq!(restore(&site, &incr, 0), expected);
}

#[test]
fn corrupt_page_is_a_warning_recorded_like_pgbackrest() {
    let site = site(PGBACKREST, "compress-type=none\n");
    let c = &site.cluster;
    // no autovacuum, and hint bits set before the checkpoint: nothing may dirty the cached
    // (good) page 1 afterwards, or the backup's start checkpoint would write it over the damage
    c.psql("create table bad (i int, s text) with (autovacuum_enabled = off)")
        .unwrap();
    c.psql("insert into bad select i, repeat('x', 100) from generate_series(1, 300) i")
        .unwrap();
    let rel = c.psql("select pg_relation_filepath('bad')").unwrap();
    c.psql("select count(*) from bad").unwrap();
    c.psql("checkpoint").unwrap();
    let path = c.data_dir().join(&rel);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() >= 3 * 8192, "table too small");
    // garbage in the tuple area of page 1; the page header stays plausible
    for b in &mut bytes[8192 + 4000..8192 + 4100] {
        *b = 0x5A;
    }
    std::fs::write(&path, &bytes).unwrap();

    let (_, stderr) = backup(&site, &["--type=full"]);
    let shown = format!("{}", path.display());
    assert!(
        stderr.contains(&format!(
            "WARN: invalid page checksum found in file {shown} at page 1"
        )),
        "{stderr}"
    );
    let label = pgbackrest_labels(&site)[0].0.clone();
    let m = manifest_of(&site, &label);
    let line = m
        .lines()
        .find(|l| l.starts_with(&format!("pg_data/{rel}=")))
        .unwrap();
    assert!(
        line.contains("\"checksum-page\":false,\"checksum-page-error\":[1]"),
        "{line}"
    );
    let info = std::fs::read_to_string(site.repo().join("backup/demo/backup.info")).unwrap();
    assert!(info.contains("\"backup-error\":true"), "{info}");
    let theirs = site.ok(
        PGBACKREST,
        &["--stanza=demo", &format!("--set={label}"), "info"],
    );
    let ours = site.ok(
        PGKEEP,
        &["--stanza=demo", &format!("--set={label}"), "info"],
    );
    assert!(theirs.contains("error list: "), "{theirs}");
    assert_eq!(ours, theirs);
    verify(&site);
}

#[test]
fn killed_backup_resumes_and_is_never_listed() {
    let site = site(PGBACKREST, "compress-type=gz\ncompress-level=9\n");
    site.cluster
        .psql("insert into t select i, repeat(md5(i::text), 8) from generate_series(1, 400000) i")
        .unwrap();
    let first = site.run(PGKEEP, &["--stanza=demo", "--type=full", "backup"]);
    assert!(first.status.success(), "{:?}", text(&first));
    // a second full, killed part way through the copy (saving the manifest every 1% of the copy)
    let mut cmd = Command::new(PGKEEP);
    cmd.arg(format!("--config={}", site.conf.display())).args([
        "--stanza=demo",
        "--type=full",
        "--manifest-save-threshold=1",
        "backup",
    ]);
    let mut child = pgkeep_testkit::as_owner(&cmd).unwrap().spawn().unwrap();
    let backup_dir = site.repo().join("backup/demo");
    let begin = Instant::now();
    let killed_label = loop {
        let partial = std::fs::read_dir(&backup_dir)
            .unwrap()
            .flatten()
            .find_map(|e| {
                let p = e.path();
                let has_copy = p.join("backup.manifest.copy").exists();
                let copied = p.join("pg_data/base").exists()
                    && std::fs::read_dir(p.join("pg_data/base/5"))
                        .map(|d| d.count() > 20)
                        .unwrap_or(false);
                (has_copy && copied && !p.join("backup.manifest").exists())
                    .then(|| e.file_name().to_string_lossy().into_owned())
            });
        if let Some(label) = partial {
            break label;
        }
        assert!(
            begin.elapsed() < Duration::from_secs(60) && child.try_wait().unwrap().is_none(),
            "backup ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    // the child is `runuser`; kill pgkeep itself, whose pid is in its lock file
    let lock = std::fs::read_to_string(site.dir.path().join("lock/demo-backup.lock")).unwrap();
    let lock: serde_json::Value = serde_json::from_str(lock.trim()).unwrap();
    let pid = i32::try_from(lock["pid"].as_i64().unwrap()).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    assert_eq!(pgbackrest_labels(&site).len(), 1, "aborted backup listed");
    let (out, stderr) = backup(&site, &["--type=full"]);
    assert!(
        stderr.contains(&format!(
            "resumable backup {killed_label} of same type exists"
        )),
        "{stderr}"
    );
    assert_eq!(new_label(&out), killed_label);
    assert!(out.contains("checksum resumed file"), "{out}");
    assert_eq!(pgbackrest_labels(&site).len(), 2);
    verify(&site);
}

/// Tables dropped while the backup copies (their files gone before the workers reach them) are
/// skipped and left out of the manifest: the backup succeeds, and pgbackrest verifies and restores it.
#[test]
fn files_dropped_during_the_copy_are_skipped_not_fatal() {
    let site = site(
        PGBACKREST,
        "compress-type=gz\ncompress-level=9\nprocess-max=1\n",
    );
    let c = &site.cluster;
    // one large relation (copied first: largest first, slow at gz level 9), then small ones
    c.psql("create table big (i int, s text)").unwrap();
    c.psql("alter table big alter column s set storage external")
        .unwrap();
    c.psql("insert into big select i, (select string_agg(md5(random()::text || i || j), '') from generate_series(1, 2000) j) from generate_series(1, 1600) i")
        .unwrap();
    let mut dropped = Vec::new();
    for n in 0..30 {
        c.psql(&format!(
            "create table gone{n} as select i from generate_series(1, 2000) i"
        ))
        .unwrap();
        dropped.push(
            c.psql(&format!("select pg_relation_filepath('gone{n}')"))
                .unwrap(),
        );
    }
    c.psql("checkpoint").unwrap();
    let mut cmd = Command::new(PGKEEP);
    cmd.arg(format!("--config={}", site.conf.display())).args([
        "--stanza=demo",
        "--type=full",
        "--log-level-console=detail",
        "backup",
    ]);
    let child = pgkeep_testkit::as_owner(&cmd)
        .unwrap()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // the copy has begun once the database directory exists in the backup
    let backup_dir = site.repo().join("backup/demo");
    let begin = Instant::now();
    while !std::fs::read_dir(&backup_dir)
        .unwrap()
        .flatten()
        .any(|e| e.path().join("pg_data/base/5").exists())
    {
        assert!(
            begin.elapsed() < Duration::from_secs(60),
            "the backup did not start copying"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let all: Vec<String> = (0..30).map(|n| format!("gone{n}")).collect();
    c.psql(&format!("drop table {}", all.join(", "))).unwrap();
    // a dropped relation's first segment is unlinked at the next checkpoint
    c.psql("checkpoint").unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("ERROR"), "{stderr}");
    let label = new_label(&stdout);
    let data = c.data_dir().display().to_string();
    let skipped = dropped
        .iter()
        .filter(|rel| stdout.contains(&format!("skip file removed by database {data}/{rel}")))
        .count();
    assert_eq!(skipped, dropped.len(), "{stdout}");
    let m = manifest_of(&site, &label);
    for rel in &dropped {
        assert!(
            !m.contains(&format!("pg_data/{rel}=")),
            "{rel} in the manifest"
        );
    }
    archive_all(c);
    assert_eq!(
        pgbackrest_labels(&site),
        [(label.clone(), "full".to_string())]
    );
    verify(&site);
    let expected = c.psql(CONTENT_SQL).unwrap();
    let count = c.psql("select count(*) from big").unwrap();
    assert_eq!(
        restore_checking(&site, &label, 0, &[CONTENT_SQL, "select count(*) from big"]),
        format!("{expected}\n{count}")
    );
}

/// With one worker, the detail lines of a backup and of a restore are pgBackRest's, line for
/// line: the same files in the same order, sizes, running percentages, bundle positions and
/// worker ids (`P01`).
#[test]
fn detail_lines_match_pgbackrest_line_for_line() {
    let options = PgClusterOptions {
        settings: vec![("autovacuum".to_string(), "off".to_string())],
        ..PgClusterOptions::default()
    };
    // no tablespace: pgBackRest keeps one queue per tablespace and works through pg_data's
    // first, pgkeep one queue for all, largest first (the order of the lines differs by design);
    // uncompressed: lz4 and gz streams of the two tools may differ by a few bytes, and so would
    // the bundle offsets
    let site = Site::with_options(options, Some(PGBACKREST));
    let spool = site.dir.subdir("spool").unwrap();
    site.write_conf(&format!(
        "process-max=1\ncompress-type=none\nrepo1-bundle=y\nrepo1-bundle-limit=16KiB\nrepo1-bundle-size=1MiB\nspool-path={}\n",
        spool.display()
    ));
    let repo_of = |tool: &str| {
        site.dir.path().join(if tool == PGKEEP {
            "repo-pgkeep"
        } else {
            "repo-pgbackrest"
        })
    };
    // `tool` on `repo`; the detail lines with what differs by design masked
    let run = |tool: &str, repo: &Path, args: &[&str]| -> String {
        let repo_arg = format!("--repo1-path={}", repo.display());
        let mut all = vec![
            "--stanza=demo",
            repo_arg.as_str(),
            "--log-level-console=detail",
            "--no-log-timestamp",
        ];
        all.extend_from_slice(args);
        let out = site.run(tool, &all);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{tool} {args:?}: {stdout}\n{stderr}");
        stdout
            .lines()
            .filter(|l| {
                ![
                    "backup start archive",
                    "backup stop archive",
                    "new backup label",
                    "check archive",
                ]
                .iter()
                .any(|skip| l.contains(skip))
                    && !l.contains(" command begin ")
            })
            .map(|l| {
                let l = l.replace(&repo.display().to_string(), "REPO");
                let l = mask_labels(&l.replace(&site.dir.path().display().to_string(), "DIR"));
                match l.find(" checksum ") {
                    Some(i) => format!("{} checksum C", &l[..i]),
                    None => l,
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    for tool in [PGKEEP, PGBACKREST] {
        run(tool, &repo_of(tool), &["stanza-create"]);
    }
    // bundled files are taken oldest first (then by name): each tool's own start checkpoint
    // rewrites pg_control and a few more in the second it runs, so everything else must be older
    // than both
    let settle = || {
        site.cluster.psql("checkpoint").unwrap();
        std::thread::sleep(Duration::from_millis(1100));
    };
    settle();
    let full = ["--type=full", "--no-archive-check", "backup"];
    let ours = run(PGKEEP, &repo_of(PGKEEP), &full);
    let theirs = run(PGBACKREST, &repo_of(PGBACKREST), &full);
    assert!(ours.contains("P01 DETAIL: backup file "), "{ours}");
    assert!(ours.contains(" (bundle 1/"), "{ours}");
    same_lines(&ours, &theirs, "full backup");
    // an incremental of each after the same change: the same files copied, and the same
    // bundles
    site.cluster
        .psql("create table later as select i from generate_series(1, 5000) i")
        .unwrap();
    settle();
    let incr = ["--type=incr", "--no-archive-check", "backup"];
    let ours = run(PGKEEP, &repo_of(PGKEEP), &incr);
    let theirs = run(PGBACKREST, &repo_of(PGBACKREST), &incr);
    assert!(ours.contains("P01 DETAIL: backup file "), "{ours}");
    same_lines(&ours, &theirs, "incremental backup");
    // pgkeep's incremental (bundles of two backups) restored by each tool into its own directory
    let restored = |tool: &str| {
        let name = format!("restore-{}", tool == PGKEEP);
        let dir = site.dir.subdir(&name).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        give_to_pg_user(&dir).unwrap();
        let pg1 = format!("--pg1-path={}", dir.display());
        run(tool, &repo_of(PGKEEP), &[&pg1, "restore"]).replace(&format!("DIR/{name}"), "TARGET")
    };
    let ours = restored(PGKEEP);
    let theirs = restored(PGBACKREST);
    assert!(ours.contains("P01 DETAIL: restore file TARGET/"), "{ours}");
    same_lines(&ours, &theirs, "restore");
}

/// `line` with every backup label's date and time (`YYYYMMDD-HHMMSS`) replaced by `LABEL`.
fn mask_labels(line: &str) -> String {
    let bytes = line.as_bytes();
    let shape = |at: usize| {
        bytes.get(at..at + 15).is_some_and(|w| {
            w.iter().enumerate().all(|(i, b)| {
                if i == 8 {
                    *b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            })
        })
    };
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    while at < line.len() {
        if shape(at) {
            out.push_str("LABEL");
            at += 15;
        } else {
            let c = line[at..].chars().next().unwrap_or(' ');
            out.push(c);
            at += c.len_utf8();
        }
    }
    out
}

/// Fail on the first line where `ours` and `theirs` differ, showing both around it.
fn same_lines(ours: &str, theirs: &str, what: &str) {
    let (a, b): (Vec<&str>, Vec<&str>) = (ours.lines().collect(), theirs.lines().collect());
    if let Some(at) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
        let around = |v: &[&str]| v[at.saturating_sub(2)..(at + 3).min(v.len())].join("\n");
        panic!(
            "{what}: line {} differs\npgkeep:\n{}\npgbackrest:\n{}",
            at + 1,
            around(&a),
            around(&b)
        );
    }
}

#[test]
fn bad_input_fails_with_one_line_and_lists_nothing() {
    let site = Site::new(None);
    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    let one_error = |stderr: &str, code: &str| {
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(
            errors[0].starts_with(&format!("ERROR: [{code}]: ")),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    let err = site.fails(PGKEEP, &["--stanza=demo", "--type=full", "backup"], 87);
    one_error(&err, "087");
    assert!(err.contains("archive_mode must be enabled"), "{err}");
    let err = site.fails(PGKEEP, &["--stanza=demo", "--type=weekly", "backup"], 32);
    one_error(&err, "032");
    let err = site.fails(
        PGKEEP,
        &["--stanza=demo", "--set=20260101-000000F", "backup"],
        31,
    );
    one_error(&err, "031");

    // without archive checks a backup works; an unwritable backup directory fails cleanly
    site.ok(
        PGKEEP,
        &[
            "--stanza=demo",
            "--type=full",
            "--no-archive-check",
            "backup",
        ],
    );
    let backup_dir = site.repo().join("backup/demo");
    let mode = |m: u32| {
        std::fs::set_permissions(&backup_dir, std::os::unix::fs::PermissionsExt::from_mode(m))
            .unwrap();
    };
    mode(0o500);
    let out = site.run(
        PGKEEP,
        &[
            "--stanza=demo",
            "--type=full",
            "--no-archive-check",
            "backup",
        ],
    );
    mode(0o750);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    one_error(&stderr, "047");
    assert_eq!(pgbackrest_labels(&site).len(), 1);

    let mut site = site;
    site.cluster.stop().unwrap();
    let err = site.fails(
        PGKEEP,
        &[
            "--stanza=demo",
            "--type=full",
            "--no-archive-check",
            "backup",
        ],
        56,
    );
    assert!(err.contains("unable to find primary cluster"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("ERROR")).count(),
        1,
        "{err}"
    );
    assert_eq!(pgbackrest_labels(&site).len(), 1);
}

/// `[demo]` lines that make `cluster` the stanza's `pg2`.
fn pg2(cluster: &PgCluster) -> String {
    format!(
        "pg2-path={}\npg2-socket-path={}\npg2-port={}\npg2-user=postgres\n",
        cluster.data_dir().display(),
        cluster.socket_dir().display(),
        cluster.port()
    )
}

#[test]
fn backup_from_standby_restores_with_pgbackrest() {
    let site = site(PGKEEP, "");
    let standby = site.cluster.start_standby(&[]).unwrap();
    let spool = site.dir.path().join("spool");
    site.write_conf_stanza(
        &format!("spool-path={}\nbackup-standby=y\n", spool.display()),
        &pg2(&standby),
    );
    // check sees both clusters
    let out = site.run(
        PGKEEP,
        &["--stanza=demo", "--log-level-console=info", "check"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("check repo1 (standby)"), "{stdout}");
    assert!(
        stdout.contains("check repo1 archive for WAL (primary)"),
        "{stdout}"
    );

    // a standby that does not replay ends the backup after archive-timeout, before any copy
    standby.psql("select pg_wal_replay_pause()").unwrap();
    let err = site.fails(
        PGKEEP,
        &[
            "--stanza=demo",
            "--type=full",
            "--archive-timeout=2",
            "backup",
        ],
        82,
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].starts_with("ERROR: [082]: timeout before standby replayed to ")
            && errors[0].contains(" - only reached "),
        "{err}"
    );
    assert!(
        err.contains(
            "HINT: disable the 'backup-standby' option to backup directly from the primary."
        ),
        "{err}"
    );
    assert!(pgbackrest_labels(&site).is_empty());
    standby.psql("select pg_wal_replay_resume()").unwrap();
    // replication is running again before the real backup (a failure here is the cluster's)
    standby
        .wait_replay(&site.cluster, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("the standby did not catch up after resume: {e}"));

    let writer = Writer::start(&site.cluster);
    std::thread::sleep(Duration::from_millis(300));
    let (out, _) = backup(&site, &["--type=full"]);
    assert!(writer.finish() > 0);
    let label = new_label(&out);
    assert!(
        out.contains("wait for replay on the standby to reach ")
            && out.contains("replay on the standby reached "),
        "{out}"
    );
    // relations (PGDATA and tablespace) come from the standby, pg_control and the rest from the
    // primary
    let primary_data = site.cluster.data_dir().display().to_string();
    let standby_data = standby.data_dir().display().to_string();
    for expected in [
        format!("backup file {standby_data}/base/"),
        format!("backup file {standby_data}/global/"),
        format!("backup file {standby_data}/pg_tblspc/"),
        format!("backup file {standby_data}/pg_xact/"),
        format!("backup file {primary_data}/global/pg_control "),
        format!("backup file {primary_data}/PG_VERSION "),
    ] {
        assert!(out.contains(&expected), "no '{expected}' in\n{out}");
    }
    for unexpected in [
        format!("backup file {primary_data}/base/"),
        format!("backup file {standby_data}/global/pg_control "),
        format!("backup file {standby_data}/PG_VERSION "),
    ] {
        assert!(!out.contains(&unexpected), "'{unexpected}' in\n{out}");
    }
    let m = manifest_of(&site, &label);
    assert!(m.contains("option-backup-standby=true"), "{m}");
    let info = std::fs::read_to_string(site.repo().join("backup/demo/backup.info")).unwrap();
    assert!(info.contains("\"option-backup-standby\":true"), "{info}");
    assert_eq!(
        pgbackrest_labels(&site),
        [(label.clone(), "full".to_string())]
    );
    verify(&site);

    archive_all(&site.cluster);
    let expected = site.cluster.psql(CONTENT_SQL).unwrap();
    assert_eq!(restore(&site, &label, 0), expected);
}

#[test]
fn backup_standby_without_a_standby_fails_with_one_line() {
    let mut site = Site::new(None);
    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    site.write_conf("backup-standby=y\n");
    let listed = |site: &Site| {
        let out = site.ok(PGKEEP, &["--stanza=demo", "--output=json", "info"]);
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        json[0]["backup"].as_array().unwrap().len()
    };
    let one_error = |stderr: &str, expected: &str| {
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors, [expected], "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    let err = site.fails(PGKEEP, &["--stanza=demo", "--type=full", "backup"], 56);
    one_error(
        &err,
        "ERROR: [056]: unable to find standby cluster - cannot proceed",
    );
    // the real pgBackRest refuses the same way
    let out = site.run(PGBACKREST, &["--stanza=demo", "--type=full", "backup"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(56), "{stdout}\n{stderr}");
    assert!(
        format!("{stdout}{stderr}")
            .contains("ERROR: [056]: unable to find standby cluster - cannot proceed"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(listed(&site), 0);

    // pg2 is the primary again: two primaries
    let same = pg2(&site.cluster);
    site.write_conf_stanza("backup-standby=y\n", &same);
    let err = site.fails(PGKEEP, &["--stanza=demo", "--type=full", "backup"], 56);
    one_error(&err, "ERROR: [056]: more than one primary cluster found");
    assert_eq!(listed(&site), 0);

    // offline the option is ignored with a warning and the backup is taken from pg1
    site.write_conf("backup-standby=y\n");
    site.cluster.stop().unwrap();
    let (out, stderr) = backup(&site, &["--type=full", "--no-online"]);
    assert!(
        stderr.contains("WARN: option backup-standby is enabled but backup is offline - backups will be performed from the primary"),
        "{stderr}"
    );
    let label = new_label(&out);
    let m = manifest_of(&site, &label);
    assert!(m.contains("option-backup-standby=false"), "{m}");
    assert_eq!(listed(&site), 1);
}
