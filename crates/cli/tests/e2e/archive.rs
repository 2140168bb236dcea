//! archive-push, archive-get and check against real clusters, side by side with pgbackrest.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pgkeep_testkit::{PgCluster, TempDir, give_to_pg_user, run_as_owner};

use crate::common::{PGKEEP, Site, read_tree};

/// Insert a little, switch WAL, return the segment that was closed.
fn switch(cluster: &PgCluster) -> String {
    cluster
        .psql("create table if not exists t (i int, s text)")
        .expect("create table");
    cluster
        .psql("insert into t select i, md5(i::text) from generate_series(1, 2000) i")
        .expect("insert");
    cluster
        .psql("select pg_walfile_name(pg_switch_wal())")
        .expect("switch wal")
}

/// Wait until PostgreSQL reports `segment` (or a later file) archived.
fn wait_archived(cluster: &PgCluster, segment: &str) {
    let begin = Instant::now();
    loop {
        let row = cluster
            .psql("select coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, '') from pg_stat_archiver")
            .expect("pg_stat_archiver");
        let last = row.split('|').next().unwrap_or("").to_string();
        if last.as_str() >= segment {
            return;
        }
        assert!(
            begin.elapsed() < Duration::from_secs(60),
            "{segment} not archived after 60 s (pg_stat_archiver: {row})\n{}",
            cluster.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Files of the archive (relative to `archive/demo`), sorted, without info files.
fn archive_files(repo: &Path) -> Vec<String> {
    let base = repo.join("archive/demo");
    read_tree(&base)
        .into_iter()
        .map(|(path, _)| {
            path.strip_prefix(&format!("{}/", base.display()))
                .unwrap_or(&path)
                .to_string()
        })
        .filter(|p| !p.starts_with("archive.info"))
        .collect()
}

/// The stored file of `segment`, if archived.
fn stored(repo: &Path, segment: &str) -> Option<String> {
    archive_files(repo).into_iter().find(|f| {
        f.rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with(&format!("{segment}-")))
    })
}

fn temp_subdir(dir: &TempDir, name: &str) -> PathBuf {
    dir.subdir(name).expect("subdir")
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A cluster started from a copy of another one's data (here: a base backup), stopped on drop.
struct Restored {
    data: PathBuf,
    bin: PathBuf,
    socket: PathBuf,
    port: u16,
    log: PathBuf,
}

impl Restored {
    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.args(args).arg("-D").arg(&self.data);
        run_as_owner(&cmd).expect("pg_ctl")
    }

    fn start(&self) {
        let out = self.pg_ctl(&["start", "-w", "-t", "120", "-l", self.log.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "restored cluster did not start: {}\n{}",
            stderr_of(&out),
            self.log_tail()
        );
    }

    fn psql(&self, sql: &str) -> String {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args(["-X", "-At", "-U", "postgres", "-d", "postgres", "-h"])
            .arg(&self.socket)
            .args(["-p", &self.port.to_string(), "-c", sql]);
        let out = run_as_owner(&cmd).expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}\n{}",
            stderr_of(&out),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
    }
}

/// The full round: a real cluster archives dozens of segments under load through pgkeep
/// (sync push); a base backup taken without WAL is replayed to the end through pgkeep's
/// asynchronous archive-get; the restored cluster promotes to timeline 2 and pushes its history
/// file and the `.partial` segment of timeline 1; pgbackrest reads what pgkeep wrote.
#[test]
fn wal_archived_under_load_is_replayed_by_a_restored_cluster_through_archive_get() {
    let site = Site::new(Some(PGKEEP));
    site.write_conf("compress-type=lz4");
    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    switch(&site.cluster);

    // base backup without WAL: replay must come from the archive
    let backup = site.dir.path().join("restore");
    let mut cmd = Command::new(site.cluster.bin_dir().join("pg_basebackup"));
    cmd.args(["-X", "none", "-c", "fast", "-U", "postgres", "-h"])
        .arg(site.cluster.socket_dir())
        .args(["-p", &site.cluster.port().to_string(), "-D"])
        .arg(&backup);
    let out = run_as_owner(&cmd).expect("pg_basebackup");
    assert!(out.status.success(), "pg_basebackup: {}", stderr_of(&out));

    // dozens of segments under load
    let mut last = String::new();
    for _ in 0..32 {
        last = switch(&site.cluster);
    }
    wait_archived(&site.cluster, &last);
    // a last transaction whose segment is not archived yet: the restored cluster finds it in its
    // pg_wal (as a standby would have received it), ends recovery in the middle of it and so
    // archives it as a .partial after promotion
    site.cluster
        .psql("insert into t select i, 'last' from generate_series(1, 10) i")
        .expect("insert");
    let current = site
        .cluster
        .psql("select pg_walfile_name(pg_current_wal_lsn())")
        .expect("current segment");
    let expected_rows = site
        .cluster
        .psql("select count(*), sum(i) from t")
        .expect("count");
    let repo = site.repo();
    let files = archive_files(&repo);
    let segments = files.iter().filter(|f| f.ends_with(".lz4")).count();
    assert!(
        segments >= 33,
        "only {segments} segments archived: {files:?}"
    );
    assert!(
        files.iter().any(|f| f.ends_with(".backup")),
        "backup history file missing: {files:?}"
    );
    assert!(
        stored(&repo, &last).is_some_and(|f| f.starts_with("15-1/0000000100000000/")),
        "{files:?}"
    );

    // restore: the backup copy replays through pgkeep archive-get (asynchronous, 2 workers)
    let spool = temp_subdir(&site.dir, "spool");
    let restored = Restored {
        data: backup.clone(),
        bin: site.cluster.bin_dir().to_path_buf(),
        socket: temp_subdir(&site.dir, "restore-socket"),
        port: pgkeep_testkit::free_port().expect("port"),
        log: site.dir.path().join("restore.log"),
    };
    let conf = site.conf.display().to_string();
    let pg1 = format!("--pg1-path={}", backup.display());
    let settings = format!(
        "\nport = {port}\nunix_socket_directories = '{sock}'\narchive_mode = on\n\
         restore_command = '{PGKEEP} --config={conf} --stanza=demo {pg1} --archive-async --process-max=2 --spool-path={spool} archive-get %f \"%p\"'\n\
         archive_command = '{PGKEEP} --config={conf} --stanza=demo {pg1} archive-push %p'\n",
        port = restored.port,
        sock = restored.socket.display(),
        spool = spool.display(),
    );
    let mut text =
        std::fs::read_to_string(backup.join("postgresql.conf")).expect("postgresql.conf");
    text.push_str(&settings);
    std::fs::write(backup.join("postgresql.conf"), text).expect("postgresql.conf");
    std::fs::write(backup.join("recovery.signal"), b"").expect("recovery.signal");
    std::fs::copy(
        site.cluster.data_dir().join("pg_wal").join(&current),
        backup.join("pg_wal").join(&current),
    )
    .expect("copy the current segment");
    give_to_pg_user(&backup).expect("chown");
    restored.start();
    let begin = Instant::now();
    while restored.psql("select pg_is_in_recovery()") != "f" {
        assert!(
            begin.elapsed() < Duration::from_secs(90),
            "recovery did not end\n{}",
            restored.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        restored.psql("select count(*), sum(i) from t"),
        expected_rows,
        "replayed data differs"
    );
    let log = std::fs::read_to_string(&restored.log).unwrap_or_default();
    assert!(
        log.contains(&format!("restored log file \"{last}\" from archive")),
        "{}",
        restored.log_tail()
    );
    assert_eq!(
        restored.psql("select timeline_id from pg_control_checkpoint()"),
        "2"
    );

    // the promoted cluster pushes its history file and the partial last segment of timeline 1
    let begin = Instant::now();
    let (history, partial) = loop {
        let files = archive_files(&repo);
        let history = files
            .iter()
            .find(|f| f.as_str() == "15-1/00000002.history")
            .cloned();
        let partial = files.iter().find(|f| f.contains(".partial-")).cloned();
        if let (Some(h), Some(p)) = (&history, &partial) {
            break (h.clone(), p.clone());
        }
        assert!(
            begin.elapsed() < Duration::from_secs(30),
            "history/partial not pushed: {files:?}\n{}",
            restored.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(partial.ends_with(".lz4"), "{partial}");
    assert!(
        partial.starts_with(&format!("15-1/0000000100000000/{current}.partial-")),
        "{partial}"
    );
    let got = site.dir.path().join("got.history");
    site.ok(
        "pgbackrest",
        &[
            "--stanza=demo",
            "archive-get",
            "00000002.history",
            got.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(&got).expect("history"),
        std::fs::read(backup.join("pg_wal/00000002.history")).expect("pg_wal history"),
        "{history}"
    );
    // pgbackrest fetches the partial segment pgkeep pushed
    let partial_name = partial
        .rsplit('/')
        .next()
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .to_string();
    let got = site.dir.path().join("got.partial");
    site.ok(
        "pgbackrest",
        &[
            "--stanza=demo",
            "archive-get",
            &partial_name,
            got.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::metadata(&got).expect("partial").len(),
        16 * 1024 * 1024
    );

    // a missing segment: exit 1, nothing written; pgbackrest agrees
    let none = site.dir.path().join("none");
    for tool in [PGKEEP, "pgbackrest"] {
        let out = site.run(
            tool,
            &[
                "--stanza=demo",
                "archive-get",
                "0000000100000000000000FF",
                none.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{tool}: {}", stderr_of(&out));
        assert!(!none.exists());
    }
    let out = site.run(
        PGKEEP,
        &[
            "--stanza=demo",
            "--log-level-console=info",
            "archive-get",
            "0000000100000000000000FF",
            none.to_str().unwrap(),
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("INFO: unable to find 0000000100000000000000FF in the archive"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Wait until no background process holds the stanza's archive lock.
fn wait_lock_free(site: &Site) {
    let lock = site.dir.path().join("lock/demo-archive.lock");
    let config = format!("--config={}", site.conf.display());
    let begin = Instant::now();
    // a background process started by the last call may not hold the lock yet: wait for it to end
    while lock.exists() || async_running(&config) {
        assert!(
            begin.elapsed() < Duration::from_secs(60),
            "the archive lock is still held"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Is a background (async) pgkeep process of this configuration alive?
fn async_running(config: &str) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.starts_with(PGKEEP) && cmdline.contains(config) && cmdline.contains(":async")
        })
}

/// The site's config with another repository path and extra global options.
fn write_conf_with_repo(site: &Site, repo: &Path, extra: &str) {
    site.write_conf(extra);
    let text = std::fs::read_to_string(&site.conf).expect("conf");
    let text = text.replace(
        &format!("repo1-path={}\n", site.repo().display()),
        &format!("repo1-path={}\n", repo.display()),
    );
    std::fs::write(&site.conf, text).expect("conf");
}

/// Real segments of one cluster, collected by a plain `cp` archive_command.
struct Collected {
    site: Site,
    dir: PathBuf,
    segments: Vec<String>,
}

fn collect_segments(count: usize) -> Collected {
    let collect = TempDir::new().expect("temp dir");
    let dir = collect.path().to_path_buf();
    let site = Site::new(Some(&format!("cp %p {}/%f && true", dir.display())));
    let mut segments = Vec::new();
    for _ in 0..count {
        segments.push(switch(&site.cluster));
    }
    wait_archived(&site.cluster, segments.last().expect("segments"));
    // keep the collection directory alive with the site
    std::mem::forget(collect);
    Collected {
        site,
        dir,
        segments,
    }
}

/// A fake `pg_wal` holding `segments` marked ready, for asynchronous pushes.
fn ready_wal_dir(collected: &Collected, name: &str, segments: &[String]) -> PathBuf {
    let wal = temp_subdir(&collected.site.dir, &format!("{name}/archive_status"));
    let wal = wal.parent().unwrap().to_path_buf();
    for segment in segments {
        std::fs::copy(collected.dir.join(segment), wal.join(segment)).expect("copy segment");
        std::fs::write(wal.join(format!("archive_status/{segment}.ready")), b"").expect("ready");
    }
    give_to_pg_user(&wal).expect("chown");
    wal
}

#[test]
fn segments_cross_between_pgkeep_and_pgbackrest_with_every_compression() {
    let collected = collect_segments(4);
    let site = &collected.site;
    let seg = &collected.segments;
    let source = |s: &str| collected.dir.join(s);
    for (round, ty) in ["none", "gz", "bz2", "lz4", "zst", "zst-encrypted"]
        .iter()
        .enumerate()
    {
        let repo = site.dir.path().join(format!("repo-{ty}"));
        let spool = site.dir.path().join(format!("spool-{ty}"));
        let compress = ty.trim_end_matches("-encrypted");
        let cipher = if ty.ends_with("-encrypted") {
            "repo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=secret-pass\n"
        } else {
            ""
        };
        write_conf_with_repo(
            site,
            &repo,
            &format!(
                "compress-type={compress}\nspool-path={}\n{cipher}",
                spool.display()
            ),
        );
        site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);

        // pgkeep sync, pgkeep async, pgbackrest
        site.ok(
            PGKEEP,
            &[
                "--stanza=demo",
                "archive-push",
                source(&seg[0]).to_str().unwrap(),
            ],
        );
        let wal = ready_wal_dir(&collected, &format!("wal-{round}"), &seg[1..2]);
        site.ok(
            PGKEEP,
            &[
                "--stanza=demo",
                "--archive-async",
                "archive-push",
                wal.join(&seg[1]).to_str().unwrap(),
            ],
        );
        assert!(
            spool
                .join(format!("archive/demo/out/{}.ok", seg[1]))
                .exists(),
            "{ty}: no .ok in the spool"
        );
        site.ok(
            "pgbackrest",
            &[
                "--stanza=demo",
                "archive-push",
                source(&seg[2]).to_str().unwrap(),
            ],
        );
        for s in &seg[..3] {
            let name = stored(&repo, s)
                .unwrap_or_else(|| panic!("{ty}: {s} not stored: {:?}", archive_files(&repo)));
            if compress == "none" {
                assert!(!name.contains('.'), "{ty}: {name}");
            } else {
                assert!(name.ends_with(&format!(".{compress}")), "{ty}: {name}");
            }
        }
        // pushing the same segment again with either tool: a warning, success
        let out = site.run(
            PGKEEP,
            &[
                "--stanza=demo",
                "archive-push",
                source(&seg[2]).to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{ty}: {}", stderr_of(&out));
        assert!(
            stderr_of(&out).contains("already exists in the repo1 archive with the same checksum"),
            "{}",
            stderr_of(&out)
        );
        site.ok(
            "pgbackrest",
            &[
                "--stanza=demo",
                "archive-push",
                source(&seg[0]).to_str().unwrap(),
            ],
        );

        // every segment is fetched byte-identically by both tools
        for s in &seg[..3] {
            for tool in [PGKEEP, "pgbackrest"] {
                let dest = site.dir.path().join(format!(
                    "got-{round}-{s}-{}",
                    if tool == PGKEEP {
                        "pgkeep"
                    } else {
                        "pgbackrest"
                    }
                ));
                site.ok(
                    tool,
                    &["--stanza=demo", "archive-get", s, dest.to_str().unwrap()],
                );
                assert!(
                    std::fs::read(&dest).expect("fetched")
                        == std::fs::read(source(s)).expect("source"),
                    "{ty}: {tool} fetched {s} differently"
                );
            }
        }
        // asynchronous archive-get by pgkeep prefetches the following segments
        let dest = site.dir.path().join(format!("got-async-{round}"));
        site.ok(
            PGKEEP,
            &[
                "--stanza=demo",
                "--archive-async",
                "archive-get",
                &seg[0],
                dest.to_str().unwrap(),
            ],
        );
        assert!(
            std::fs::read(&dest).unwrap() == std::fs::read(source(&seg[0])).unwrap(),
            "{ty}: async get differs"
        );
        let queued = spool.join(format!("archive/demo/in/{}", seg[1]));
        let begin = Instant::now();
        while !queued.exists() {
            assert!(
                begin.elapsed() < Duration::from_secs(20),
                "{ty}: {} was not prefetched",
                seg[1]
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        site.ok(
            PGKEEP,
            &[
                "--stanza=demo",
                "--archive-async",
                "archive-get",
                &seg[1],
                dest.to_str().unwrap(),
            ],
        );
        assert!(
            std::fs::read(&dest).unwrap() == std::fs::read(source(&seg[1])).unwrap(),
            "{ty}: async get differs"
        );
        assert!(!queued.exists(), "the queued segment is moved, not copied");
        wait_lock_free(site);
    }
}

#[test]
fn bad_input_is_refused_with_one_error_and_the_archive_unchanged() {
    let collected = collect_segments(2);
    let site = &collected.site;
    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    site.ok(
        PGKEEP,
        &[
            "--stanza=demo",
            "archive-push",
            collected.dir.join(&collected.segments[0]).to_str().unwrap(),
        ],
    );
    let before = read_tree(&site.repo());
    let dir = site.dir.path();

    // a segment of another cluster (another system id)
    let other = Site::new(None);
    let foreign = dir.join("foreign/000000010000000000000001");
    std::fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    std::fs::copy(
        other
            .cluster
            .data_dir()
            .join("pg_wal/000000010000000000000001"),
        &foreign,
    )
    .expect("copy foreign segment");
    give_to_pg_user(foreign.parent().unwrap()).unwrap();
    let stderr = site.fails(
        PGKEEP,
        &["--stanza=demo", "archive-push", foreign.to_str().unwrap()],
        44,
    );
    assert!(
        stderr.starts_with(&format!(
            "ERROR: [044]: WAL file '{}' version 15, system-id ",
            foreign.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("do not match stanza version 15, system-id"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    site.fails(
        "pgbackrest",
        &["--stanza=demo", "archive-push", foreign.to_str().unwrap()],
        44,
    );

    // a truncated segment
    let truncated = dir.join("bad/000000010000000000000009");
    std::fs::create_dir_all(truncated.parent().unwrap()).unwrap();
    let data = std::fs::read(collected.dir.join(&collected.segments[1])).unwrap();
    std::fs::write(&truncated, &data[..data.len() / 2]).unwrap();
    give_to_pg_user(truncated.parent().unwrap()).unwrap();
    let stderr = site.fails(
        PGKEEP,
        &["--stanza=demo", "archive-push", truncated.to_str().unwrap()],
        42,
    );
    assert!(
        stderr.starts_with(&format!(
            "ERROR: [042]: unable to read 16777216 byte(s) from '{}'",
            truncated.display()
        )),
        "{stderr}"
    );

    // a file that is not WAL at all
    let text = dir.join("bad/00000001000000000000000A");
    std::fs::write(&text, "this is not a WAL segment\n".repeat(100)).unwrap();
    give_to_pg_user(&text).unwrap();
    let stderr = site.fails(
        PGKEEP,
        &["--stanza=demo", "archive-push", text.to_str().unwrap()],
        29,
    );
    assert_eq!(
        stderr,
        "ERROR: [029]: first page header in WAL file is expected to be in long format\n"
    );
    site.fails(
        "pgbackrest",
        &["--stanza=demo", "archive-push", text.to_str().unwrap()],
        29,
    );

    // a missing path
    let missing = dir.join("bad/00000001000000000000000B");
    let stderr = site.fails(
        PGKEEP,
        &["--stanza=demo", "archive-push", missing.to_str().unwrap()],
        55,
    );
    assert_eq!(
        stderr,
        format!(
            "ERROR: [055]: unable to open missing file '{}' for read\n",
            missing.display()
        )
    );
    site.fails(
        "pgbackrest",
        &["--stanza=demo", "archive-push", missing.to_str().unwrap()],
        55,
    );
    // no parameter
    let stderr = site.fails(PGKEEP, &["--stanza=demo", "archive-push"], 43);
    assert_eq!(stderr, "ERROR: [043]: WAL segment to push required\n");

    // an unwritable spool (async)
    let wal = ready_wal_dir(&collected, "wal-bad", &collected.segments[1..2]);
    let stderr = site.fails(
        PGKEEP,
        &[
            "--stanza=demo",
            "--archive-async",
            "--spool-path=/proc/pgkeep-spool",
            "archive-push",
            wal.join(&collected.segments[1]).to_str().unwrap(),
        ],
        47,
    );
    assert!(
        stderr.starts_with("ERROR: [047]: unable to create path '/proc/pgkeep-spool"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // an unknown stanza
    let stderr = site.fails(
        PGKEEP,
        &[
            "--stanza=nope",
            "archive-push",
            collected.dir.join(&collected.segments[1]).to_str().unwrap(),
        ],
        103,
    );
    assert!(
        stderr.starts_with("ERROR: [103]: unable to find a valid repository:\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("repo1: [FileMissingError] unable to load info file"),
        "{stderr}"
    );
    site.fails(
        "pgbackrest",
        &[
            "--stanza=nope",
            "archive-push",
            collected.dir.join(&collected.segments[1]).to_str().unwrap(),
        ],
        103,
    );

    // the same name with other content: refused, nothing overwritten
    let clash = dir.join("clash").join(&collected.segments[0]);
    std::fs::create_dir_all(clash.parent().unwrap()).unwrap();
    std::fs::copy(collected.dir.join(&collected.segments[1]), &clash).unwrap();
    give_to_pg_user(clash.parent().unwrap()).unwrap();
    let stderr = site.fails(
        PGKEEP,
        &[
            "--stanza=demo",
            "--no-archive-header-check",
            "archive-push",
            clash.to_str().unwrap(),
        ],
        45,
    );
    assert_eq!(
        stderr,
        format!(
            "ERROR: [045]: WAL file '{}' already exists in the repo1 archive with a different checksum\n",
            collected.segments[0]
        )
    );

    assert_eq!(read_tree(&site.repo()), before, "the archive changed");

    // archive-push-queue-max: dropped with a warning, success, nothing stored
    let stderr = {
        let out = site.run(
            PGKEEP,
            &[
                "--stanza=demo",
                "--archive-push-queue-max=1",
                "archive-push",
                wal.join(&collected.segments[1]).to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", stderr_of(&out));
        stderr_of(&out)
    };
    assert_eq!(
        stderr,
        format!(
            "WARN: dropped WAL file '{}' because archive queue exceeded 1B\n",
            collected.segments[1]
        )
    );
    assert_eq!(
        read_tree(&site.repo()),
        before,
        "a dropped segment was stored"
    );

    // two repositories, the second without a stanza: the push fails (PostgreSQL retries) but
    // the first keeps its copy, and archive-get falls back to it with a warning
    site.write_conf(&format!("repo2-path={}", dir.join("repo2").display()));
    let segment = &collected.segments[1];
    let stderr = site.fails(
        PGKEEP,
        &[
            "--stanza=demo",
            "archive-push",
            collected.dir.join(segment).to_str().unwrap(),
        ],
        104,
    );
    assert!(
        stderr.starts_with("ERROR: [104]: archive-push command encountered error(s):\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("repo2: [FileMissingError] unable to load info file"),
        "{stderr}"
    );
    assert!(
        stored(&site.repo(), segment).is_some(),
        "repo1 must keep its copy"
    );
    let dest = dir.join("got-multi");
    let out = site.run(
        PGKEEP,
        &[
            "--stanza=demo",
            "archive-get",
            segment,
            dest.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).starts_with("WARN: repo2: [FileMissingError]"),
        "{}",
        stderr_of(&out)
    );
    assert!(std::fs::read(&dest).unwrap() == std::fs::read(collected.dir.join(segment)).unwrap());
}

#[test]
fn async_push_killed_mid_queue_acknowledges_only_what_is_stored_and_recovers() {
    let collected = collect_segments(10);
    let site = &collected.site;
    let spool = site.dir.path().join("spool");
    site.write_conf(&format!(
        "compress-type=bz2\nprocess-max=1\narchive-async=y\nspool-path={}",
        spool.display()
    ));
    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    let wal = ready_wal_dir(&collected, "wal", &collected.segments);
    let out_dir = spool.join("archive/demo/out");

    // the first call starts the background process and returns once its segment is stored
    site.ok(
        PGKEEP,
        &[
            "--stanza=demo",
            "archive-push",
            wal.join(&collected.segments[0]).to_str().unwrap(),
        ],
    );
    let lock = site.dir.path().join("lock/demo-archive.lock");
    let text =
        std::fs::read_to_string(&lock).expect("the background process holds the archive lock");
    let pid: i32 = text
        .split("\"pid\":")
        .nth(1)
        .and_then(|s| s.trim_end_matches(['}', '\n']).parse().ok())
        .expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    std::thread::sleep(Duration::from_millis(100));

    let acknowledged: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".ok").map(str::to_string))
        .collect();
    eprintln!("acknowledged at kill: {}", acknowledged.len());
    assert!(
        !acknowledged.is_empty() && acknowledged.len() < collected.segments.len(),
        "not killed mid-queue: {acknowledged:?}"
    );
    for segment in &acknowledged {
        assert!(
            stored(&site.repo(), segment).is_some(),
            "{segment} acknowledged but not stored"
        );
    }

    // PostgreSQL calls again for every segment: all end up stored exactly once
    for segment in &collected.segments {
        site.ok(
            PGKEEP,
            &[
                "--stanza=demo",
                "archive-push",
                wal.join(segment).to_str().unwrap(),
            ],
        );
    }
    let files = archive_files(&site.repo());
    for segment in &collected.segments {
        let copies = files
            .iter()
            .filter(|f| f.contains(&format!("/{segment}-")))
            .count();
        assert_eq!(copies, 1, "{segment}: {files:?}");
    }
    // what the killed process was writing was replaced by the retry: no temp file is left
    assert!(!files.iter().any(|f| f.ends_with(".tmp")), "{files:?}");
    // the fetched segments are intact
    for segment in &collected.segments {
        let dest = site.dir.path().join(format!("got-{segment}"));
        site.ok(
            "pgbackrest",
            &[
                "--stanza=demo",
                "archive-get",
                segment,
                dest.to_str().unwrap(),
            ],
        );
        assert!(
            std::fs::read(&dest).unwrap() == std::fs::read(collected.dir.join(segment)).unwrap(),
            "{segment}"
        );
    }
}

/// `check` log lines without timestamps, process ids and names that differ between runs.
fn normalize_check(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once("INFO: ").map(|(_, m)| m.to_string()))
        .filter(|l| !l.contains(" command begin ") && !l.contains(" command end"))
        .map(|l| {
            let mut out = String::new();
            for word in l.split(' ') {
                if !out.is_empty() {
                    out.push(' ');
                }
                if word.len() >= 24 && word.chars().take(24).all(|c| c.is_ascii_hexdigit()) {
                    out.push_str("<SEG>");
                } else if word.contains("/archive/demo/15-1/") {
                    out.push_str("<FILE>");
                } else {
                    out.push_str(word);
                }
            }
            out
        })
        .collect()
}

#[test]
fn check_waits_for_the_switched_segment_and_refuses_bad_settings() {
    let site = Site::new(Some(PGKEEP));
    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    let ours = site.ok(
        PGKEEP,
        &["--stanza=demo", "--log-level-console=info", "check"],
    );
    let lines = normalize_check(&ours);
    assert_eq!(
        lines,
        vec![
            "check repo1 configuration (primary)",
            "check repo1 archive for WAL (primary)",
            "WAL segment <SEG> successfully archived to <FILE> on repo1",
        ],
        "{ours}"
    );
    let theirs = site.ok(
        "pgbackrest",
        &[
            "--stanza=demo",
            "--log-level-console=info",
            "--no-archive-check",
            "check",
        ],
    );
    assert_eq!(normalize_check(&theirs), lines, "{theirs}");
    // the path pgBackRest prints: <repo>/archive/demo/<archive-id>/<file>
    let path_ours = ours
        .lines()
        .find(|l| l.contains("successfully archived"))
        .unwrap()
        .split('\'')
        .nth(1)
        .unwrap()
        .to_string();
    assert!(
        path_ours.starts_with(&format!(
            "{}/archive/demo/15-1/0000000",
            site.repo().display()
        )),
        "{path_ours}"
    );
    let path_theirs = theirs
        .lines()
        .find(|l| l.contains("successfully archived"))
        .unwrap()
        .split('\'')
        .nth(1)
        .unwrap()
        .to_string();
    let dir_of = |p: &str| {
        p.rsplit_once('/')
            .and_then(|(d, _)| d.rsplit_once('/').map(|(a, _)| a.to_string()))
    };
    assert_eq!(
        dir_of(&path_ours),
        dir_of(&path_theirs),
        "{path_ours} vs {path_theirs}"
    );

    // archiving stopped: the segment never arrives
    site.ok(PGKEEP, &["--stanza=demo", "stop"]);
    let stderr = site.fails(
        PGKEEP,
        &["--stanza=demo", "--archive-timeout=1", "check"],
        82,
    );
    assert!(stderr.starts_with("ERROR: [082]: WAL segment "), "{stderr}");
    assert!(
        stderr.contains("was not archived before the 1000ms timeout"),
        "{stderr}"
    );
    assert!(
        stderr.contains("HINT: run the 'start' command if the stanza was previously stopped."),
        "{stderr}"
    );
    site.ok(PGKEEP, &["--stanza=demo", "start"]);

    // no stanza in the repository
    let stderr = site.fails(
        PGKEEP,
        &[
            "--stanza=demo",
            "--repo1-path=/nonexistent/pgkeep-repo",
            "check",
        ],
        55,
    );
    assert!(stderr.contains("archive.info"), "{stderr}");

    // archive_mode off
    let off = Site::new(None);
    off.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    let stderr = off.fails(PGKEEP, &["--stanza=demo", "check"], 87);
    assert_eq!(stderr, "ERROR: [087]: archive_mode must be enabled\n");
    off.fails("pgbackrest", &["--stanza=demo", "check"], 87);

    // an archive_command that is not pgkeep (the config path of Site contains both names)
    let mut off = off;
    off.cluster
        .set_config(&[("archive_mode", "on"), ("archive_command", "/bin/true %p")])
        .expect("config");
    off.cluster.restart().expect("restart");
    let stderr = off.fails(PGKEEP, &["--stanza=demo", "check"], 68);
    assert_eq!(
        stderr,
        "ERROR: [068]: archive_command '/bin/true %p' must contain pgkeep or pgbackrest\n"
    );
    off.fails("pgbackrest", &["--stanza=demo", "check"], 68);

    // the cluster is down
    let mut down = Site::new(None);
    down.cluster.stop().expect("stop");
    let stderr = down.fails(PGKEEP, &["--stanza=demo", "check"], 27);
    assert!(
        stderr.contains("ERROR: [027]: no database found"),
        "{stderr}"
    );
    assert!(
        stderr.contains("WARN: unable to check pg1: [DbConnectError]"),
        "{stderr}"
    );
}
