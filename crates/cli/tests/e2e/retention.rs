//! expire, verify, repo-ls and repo-get against real clusters, side by side with pgbackrest.
//!
//! Backups are made by the real pgbackrest (archiving through `pgbackrest archive-push`). Each expire scenario runs
//! on two copies of the same repository, one expired by pgbackrest and one by pgkeep: their logs, trees,
//! backup.info and `latest` link must be identical, and each tool must read what the other left.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pgkeep_repo::info::{BackupInfo, load_info, save_info};
use pgkeep_storage::posix::PosixStorage;
use pgkeep_testkit::{give_to_pg_user, run_as_owner};

use crate::common::{PGKEEP, Site};

const PGBACKREST: &str = "pgbackrest";

/// Close the current WAL segment with a little data in it and wait until it is archived.
fn switch(site: &Site) {
    let cluster = &site.cluster;
    cluster
        .psql("create table if not exists t (i int, s text)")
        .expect("create table");
    cluster
        .psql("insert into t select i, md5(i::text) from generate_series(1, 500) i")
        .expect("insert");
    let segment = cluster
        .psql("select pg_walfile_name(pg_switch_wal())")
        .expect("switch wal");
    let begin = Instant::now();
    loop {
        let last = cluster
            .psql("select coalesce(last_archived_wal, '') from pg_stat_archiver")
            .expect("pg_stat_archiver");
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

/// Backup labels in a repository, ascending.
fn labels(repo: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(repo.join("backup/demo"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| pgkeep_repo::layout::is_backup_label(n))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A pgbackrest backup of `kind`; returns its label.
fn backup(site: &Site, kind: &str) -> String {
    site.ok(
        PGBACKREST,
        &[
            "--stanza=demo",
            &format!("--type={kind}"),
            "--no-expire-auto",
            "backup",
        ],
    );
    labels(&site.repo()).pop().expect("a backup label")
}

/// Copy a directory tree (symlinks as links) and give it to the cluster's user.
fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&path).expect("readlink"), &target)
                .expect("symlink");
        } else if meta.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
    give_to_pg_user(to).expect("chown");
}

/// Every path below `root`, relative, sorted (links as `name -> target`).
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.push(format!(
                    "{rel} -> {}",
                    std::fs::read_link(&path).unwrap().display()
                ));
            } else if meta.is_dir() {
                out.push(format!("{rel}/"));
                stack.push(path);
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// Run `tool` on the repository at `repo` with detail logging and no timestamps.
fn on_repo(site: &Site, tool: &str, repo: &Path, args: &[&str]) -> Output {
    let mut all = vec![
        format!("--repo1-path={}", repo.display()),
        "--stanza=demo".to_string(),
        "--no-log-timestamp".to_string(),
    ];
    if !args.iter().any(|a| a.starts_with("--log-level-console=")) {
        all.push("--log-level-console=detail".to_string());
    }
    all.extend(args.iter().map(|a| (*a).to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    site.run(tool, &refs)
}

/// Output with the parts that differ by design (version, exec id, timing, repository path)
/// normalised; a begin line keeps its options, in their order.
fn normalize(text: &[u8], repo: &Path) -> String {
    String::from_utf8_lossy(text)
        .lines()
        .map(|line| {
            let line = line.replace(&repo.display().to_string(), "REPO");
            if let Some(i) = line.find(" command begin ") {
                let options = line[i..].split_once(": ").map_or("", |(_, o)| o);
                let options: Vec<&str> = options
                    .split(' ')
                    .map(|o| {
                        if o.starts_with("--exec-id=") {
                            "--exec-id=ID"
                        } else {
                            o
                        }
                    })
                    .collect();
                format!("{} command begin: {}", &line[..i], options.join(" "))
            } else if let Some(i) = line.find(" (") {
                if line.contains("command end") {
                    line[..i].to_string()
                } else {
                    line
                }
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run the same command with both tools on two copies of `snapshot`; everything must match. Returns the two
/// repository paths (pgbackrest's, pgkeep's).
fn expire_both(site: &Site, snapshot: &Path, name: &str, args: &[&[&str]]) -> (PathBuf, PathBuf) {
    let theirs = site.dir.path().join(format!("{name}-pgbackrest"));
    let ours = site.dir.path().join(format!("{name}-pgkeep"));
    copy_tree(snapshot, &theirs);
    copy_tree(snapshot, &ours);
    for step in args {
        let a = on_repo(site, PGBACKREST, &theirs, step);
        let b = on_repo(site, PGKEEP, &ours, step);
        assert_eq!(
            a.status.code(),
            b.status.code(),
            "{name} {step:?}: exit codes differ\npgbackrest: {}\npgkeep: {}",
            describe(&a),
            describe(&b)
        );
        assert_eq!(
            normalize(&b.stdout, &ours),
            normalize(&a.stdout, &theirs),
            "{name} {step:?}: stdout differs"
        );
        assert_eq!(
            normalize(&b.stderr, &ours),
            normalize(&a.stderr, &theirs),
            "{name} {step:?}: stderr differs"
        );
    }
    assert_eq!(tree(&ours), tree(&theirs), "{name}: repositories differ");
    for file in ["backup/demo/backup.info", "backup/demo/backup.info.copy"] {
        assert_eq!(
            std::fs::read(ours.join(file)).expect("backup.info"),
            std::fs::read(theirs.join(file)).expect("backup.info"),
            "{name}: {file} differs"
        );
    }
    (theirs, ours)
}

/// First segments of the archive of `repo` (24 characters), sorted.
fn segments(repo: &Path) -> Vec<String> {
    let mut out: Vec<String> = tree(&repo.join("archive/demo/15-1"))
        .into_iter()
        .filter_map(|p| {
            let name = p.rsplit('/').next()?.to_string();
            (name.len() > 41 && name.as_bytes()[24] == b'-').then(|| name[..24].to_string())
        })
        .collect();
    out.sort();
    out
}

fn backup_info(repo: &Path) -> BackupInfo {
    let storage = PosixStorage::new(repo.to_str().unwrap());
    load_info(&storage, "backup/demo/backup.info", None).expect("backup.info")
}

/// The retention chain every expire scenario starts from, with the WAL ranges between the backups.
#[test]
fn expire_matches_pgbackrest_and_keeps_what_retained_backups_need() {
    let site = Site::new(Some(PGBACKREST));
    site.ok(PGBACKREST, &["--stanza=demo", "stanza-create"]);
    let f1 = backup(&site, "full");
    switch(&site);
    let d1 = backup(&site, "diff");
    switch(&site);
    let i1 = backup(&site, "incr");
    switch(&site);
    let rows_at_f2 = site.cluster.psql("select count(*) from t").expect("count");
    let f2 = backup(&site, "full");
    switch(&site);
    let d2 = backup(&site, "diff");
    switch(&site);
    let f3 = backup(&site, "full");
    switch(&site);
    let i3 = backup(&site, "incr");
    switch(&site);
    let snapshot = site.dir.path().join("snapshot");
    copy_tree(&site.repo(), &snapshot);
    let all_segments = segments(&snapshot);
    let info = backup_info(&snapshot);
    let start_of = |label: &str| info.backups[label].archive_start.clone().unwrap();
    let stop_of = |label: &str| info.backups[label].archive_stop.clone().unwrap();

    // count retention: the two newest fulls and their dependents stay; WAL from F2 on stays
    let (theirs, ours) = expire_both(
        &site,
        &snapshot,
        "full2",
        &[&["--repo1-retention-full=2", "expire"]],
    );
    assert_eq!(
        labels(&ours),
        vec![f2.clone(), d2.clone(), f3.clone(), i3.clone()]
    );
    let kept = segments(&ours);
    assert_eq!(kept.first(), Some(&start_of(&f2)), "{kept:?}");
    assert_eq!(kept.last(), all_segments.last());
    assert!(
        all_segments
            .iter()
            .filter(|s| **s >= start_of(&f2))
            .all(|s| kept.contains(s))
    );

    // each tool reads what the other left
    for args in [vec!["info"], vec!["info", "--output=json"]] {
        let expected = stdout(&on_repo(&site, PGBACKREST, &ours, &args));
        assert_eq!(stdout(&on_repo(&site, PGKEEP, &ours, &args)), expected);
        assert_eq!(
            stdout(&on_repo(&site, PGKEEP, &theirs, &args))
                .replace(&theirs.display().to_string(), ""),
            expected.replace(&ours.display().to_string(), "")
        );
    }
    let verify = [
        "--output=text",
        "--verbose",
        "--log-level-console=warn",
        "verify",
    ];
    let a = on_repo(&site, PGBACKREST, &ours, &verify);
    let b = on_repo(&site, PGKEEP, &theirs, &verify);
    assert!(
        a.status.success() && b.status.success(),
        "{}\n{}",
        describe(&a),
        describe(&b)
    );
    assert!(
        stdout(&a).starts_with("stanza: demo\nstatus: ok\n"),
        "{}",
        describe(&a)
    );
    assert_eq!(stdout(&b), stdout(&a));

    // point-in-time recovery into the oldest retained backup, from the repository pgkeep expired
    restore_and_query(&site, &ours, &f2, &rows_at_f2);

    // archive retention below full retention keeps only what older backups need to be consistent
    let (_, ours) = expire_both(
        &site,
        &snapshot,
        "archive1",
        &[&[
            "--repo1-retention-full=3",
            "--repo1-retention-archive=1",
            "expire",
        ]],
    );
    let kept = segments(&ours);
    assert_eq!(labels(&ours).len(), 7);
    for label in [&f1, &d1, &i1, &f2, &d2] {
        let (start, stop) = (start_of(label), stop_of(label));
        assert!(
            all_segments
                .iter()
                .filter(|s| **s >= start && **s <= stop)
                .all(|s| kept.contains(s)),
            "{label} lost WAL between {start} and {stop}: {kept:?}"
        );
    }
    assert!(
        all_segments
            .iter()
            .filter(|s| **s >= start_of(&f3))
            .all(|s| kept.contains(s))
    );
    assert!(
        kept.len() < all_segments.len(),
        "nothing was removed: {kept:?}"
    );
    let out = on_repo(&site, PGKEEP, &ours, &["verify"]);
    assert!(out.status.success(), "{}", describe(&out));

    for (name, args) in [
        (
            "diff1",
            vec![
                "--repo1-retention-full=3",
                "--repo1-retention-diff=1",
                "expire",
            ],
        ),
        (
            "archive-diff",
            vec![
                "--repo1-retention-full=3",
                "--repo1-retention-archive-type=diff",
                "--repo1-retention-archive=2",
                "expire",
            ],
        ),
        (
            "archive-incr",
            vec![
                "--repo1-retention-full=3",
                "--repo1-retention-archive-type=incr",
                "--repo1-retention-archive=2",
                "expire",
            ],
        ),
        (
            "history",
            vec![
                "--repo1-retention-full=1",
                "--repo1-retention-history=0",
                "expire",
            ],
        ),
        ("no-retention", vec!["expire"]),
    ] {
        expire_both(&site, &snapshot, name, &[&args]);
    }
    let (_, dry) = expire_both(
        &site,
        &snapshot,
        "dry-run2",
        &[&["--repo1-retention-full=1", "--dry-run", "expire"]],
    );
    assert_eq!(
        tree(&dry),
        tree(&snapshot),
        "a dry run changed the repository"
    );

    // --set: a diff with its incr; the newest full (latest repointed); the last full is refused
    let set_d1 = format!("--set={d1}");
    let (_, ours) = expire_both(&site, &snapshot, "set-diff", &[&[&set_d1, "expire"]]);
    assert!(!labels(&ours).contains(&d1) && !labels(&ours).contains(&i1));
    let set_f3 = format!("--set={f3}");
    let (_, ours) = expire_both(&site, &snapshot, "set-newest", &[&[&set_f3, "expire"]]);
    assert_eq!(
        std::fs::read_link(ours.join("backup/demo/latest")).unwrap(),
        PathBuf::from(&d2)
    );
    expire_both(
        &site,
        &snapshot,
        "set-last-full",
        &[
            &["--repo1-retention-full=1", "expire"],
            &[&set_f3, "expire"],
            &["--set=20200101-000000F", "expire"],
        ],
    );

    // time-based retention: F1 and F2 ended ten days ago, F3 now
    let aged = site.dir.path().join("aged");
    copy_tree(&snapshot, &aged);
    let storage = PosixStorage::new(aged.to_str().unwrap());
    let mut info = backup_info(&aged);
    let ten_days_ago = chrono::Utc::now().timestamp() - 10 * 86_400;
    for label in [&f1, &d1, &i1, &f2, &d2] {
        let entry = info.backups.get_mut(label.as_str()).unwrap();
        entry.timestamp_start = ten_days_ago;
        entry.timestamp_stop = ten_days_ago + 1;
    }
    save_info(&storage, "backup/demo/backup.info", &info, None).expect("save");
    give_to_pg_user(&aged).expect("chown");
    let (_, ours) = expire_both(
        &site,
        &aged,
        "time",
        &[&[
            "--repo1-retention-full-type=time",
            "--repo1-retention-full=5",
            "expire",
        ]],
    );
    assert_eq!(
        labels(&ours),
        vec![f2.clone(), d2.clone(), f3.clone(), i3.clone()]
    );
    assert_eq!(segments(&ours).first(), Some(&start_of(&f2)));

    // bad input: one line, pgBackRest's code, nothing changed
    let before = tree(&snapshot);
    let out = on_repo(&site, PGKEEP, &snapshot, &["--set=last-tuesday", "expire"]);
    assert_eq!(out.status.code(), Some(32), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().last(),
        Some("ERROR: [032]: 'last-tuesday' is not a valid backup label format")
    );
    assert_eq!(tree(&snapshot), before);

    expire_survives_sigkill(&site, &snapshot);
}

/// A new, empty data directory (0700, owned by the cluster's user).
fn new_data_dir(site: &Site, name: &str) -> PathBuf {
    let data = site.dir.path().join(name);
    std::fs::create_dir_all(&data).expect("mkdir");
    let mut perms = std::fs::metadata(&data).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
    std::fs::set_permissions(&data, perms).unwrap();
    give_to_pg_user(&data).expect("chown");
    data
}

/// The arguments restoring `label` from `repo` into `data` up to its consistency point, WAL fetched by pgbackrest.
fn restore_args(site: &Site, repo: &Path, data: &Path, label: &str) -> Vec<String> {
    let pg1 = format!("--pg1-path={}", data.display());
    vec![
        format!("--repo1-path={}", repo.display()),
        "--stanza=demo".to_string(),
        pg1.clone(),
        format!("--set={label}"),
        // restore cleans the archive-get spool; the restored cluster fetches WAL with plain archive-get
        format!(
            "--spool-path={}",
            site.dir.subdir("spool").expect("spool").display()
        ),
        format!(
            "--recovery-option=restore_command={PGBACKREST} --config={} --repo1-path={} {pg1} --stanza=demo archive-get %f \"%p\"",
            site.conf.display(),
            repo.display()
        ),
        "--type=immediate".to_string(),
        "--target-action=promote".to_string(),
        "--log-level-console=warn".to_string(),
        "restore".to_string(),
    ]
}

/// Restore `label` with pgbackrest to a new directory, recover to its consistency point and check the data.
fn restore_and_query(site: &Site, repo: &Path, label: &str, rows: &str) {
    let data = new_data_dir(site, &format!("restore-{label}"));
    let args = restore_args(site, repo, &data, label);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = site.run(PGBACKREST, &refs);
    assert!(out.status.success(), "restore: {}", describe(&out));
    assert_eq!(start_and_count(site, &data), rows);
}

/// Start a restored data directory, wait for the end of recovery, count the rows of `t`, stop it.
fn start_and_count(site: &Site, data: &Path) -> String {
    let name = data.file_name().unwrap().to_string_lossy().into_owned();
    let socket = site
        .dir
        .subdir(&format!("sock-{name}"))
        .expect("socket dir");
    let port = pgkeep_testkit::free_port().expect("port").to_string();
    let log = site.dir.path().join(format!("{name}.log"));
    let bin = site.cluster.bin_dir();
    let opts = format!("-p {port} -k {} -c archive_mode=off", socket.display());
    let mut start = Command::new(bin.join("pg_ctl"));
    start
        .arg("-D")
        .arg(data)
        .args(["-w", "-t", "120", "-o", &opts, "-l"])
        .arg(&log)
        .arg("start");
    let out = run_as_owner(&start).expect("pg_ctl");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        out.status.success(),
        "restored cluster did not start: {}\n{}",
        describe(&out),
        log_text()
    );
    let query = |sql: &str| -> Output {
        let mut psql = Command::new(bin.join("psql"));
        psql.args(["-X", "-At", "-U", "postgres", "-d", "postgres", "-h"])
            .arg(&socket)
            .args(["-p", &port, "-c", sql]);
        run_as_owner(&psql).expect("psql")
    };
    let begin = Instant::now();
    while stdout(&query("select pg_is_in_recovery()")).trim() != "f" {
        assert!(
            begin.elapsed() < Duration::from_secs(60),
            "recovery did not end\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let count = stdout(&query("select count(*) from t")).trim().to_string();
    let mut stop = Command::new(bin.join("pg_ctl"));
    stop.arg("-D")
        .arg(data)
        .args(["-m", "immediate", "-w", "stop"]);
    let _ = run_as_owner(&stop);
    count
}

/// Processes whose command line contains every one of `needles` (`/proc` scan).
fn pids_with(needles: &[&str]) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.starts_with(PGKEEP) && needles.iter().all(|n| cmdline.contains(n)) {
            pids.push(pid);
        }
    }
    pids
}

/// A pgkeep restore killed part way leaves a directory PostgreSQL refuses to start from (pg_control is written
/// last) and a repository that still verifies; a delta restore over it finishes the job and the cluster starts
/// with the backup's data.
#[test]
fn killed_restore_leaves_nothing_startable_and_a_delta_restore_finishes_it() {
    let site = Site::new(Some(PGBACKREST));
    site.ok(PGBACKREST, &["--stanza=demo", "stanza-create"]);
    site.cluster
        .psql("create table t (i int, s text)")
        .expect("create");
    site.cluster
        .psql("insert into t select i, repeat(md5(i::text), 8) from generate_series(1, 200000) i")
        .expect("load");
    let rows = site.cluster.psql("select count(*) from t").expect("count");
    let label = backup(&site, "full");
    switch(&site);
    let repo = site.repo();

    let data = new_data_dir(&site, "killed-restore");
    let args = restore_args(&site, &repo, &data, &label);
    let mut cmd = Command::new(PGKEEP);
    cmd.arg(format!("--config={}", site.conf.display()))
        .args(&args);
    let mut child = pgkeep_testkit::as_owner(&cmd).unwrap().spawn().unwrap();
    let marker = format!("--pg1-path={}", data.display());
    let begin = Instant::now();
    loop {
        // files are being copied (the manifest saved in the directory says what is being restored)
        let started = data.join("backup.manifest").exists()
            && std::fs::read_dir(data.join("base/5"))
                .map(|d| d.count() > 0)
                .unwrap_or(false);
        if started {
            break;
        }
        assert!(
            begin.elapsed() < Duration::from_secs(60) && child.try_wait().unwrap().is_none(),
            "restore ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let pids = pids_with(&[&marker, "restore"]);
    assert!(!pids.is_empty(), "pgkeep restore not found");
    for pid in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "restore finished before the kill");
    assert!(
        !data.join("global/pg_control").exists(),
        "a killed restore left a startable directory"
    );

    // the repository is untouched and still verifies
    let out = on_repo(
        &site,
        PGKEEP,
        &repo,
        &["--log-level-console=warn", "verify"],
    );
    assert!(out.status.success(), "{}", describe(&out));

    // without --delta the leftovers are refused; with it the restore completes
    let mut again = args.clone();
    again.insert(again.len() - 1, "--delta".to_string());
    let refs: Vec<&str> = again.iter().map(String::as_str).collect();
    let out = site.run(PGKEEP, &refs);
    assert!(out.status.success(), "delta restore: {}", describe(&out));
    assert_eq!(start_and_count(&site, &data), rows);
}

/// SIGKILL expire at each of its fault points: the repository stays valid for both tools, and the next expire
/// finishes the job with the same result as an uninterrupted one.
fn expire_survives_sigkill(site: &Site, snapshot: &Path) {
    let clean = site.dir.path().join("kill-clean");
    copy_tree(snapshot, &clean);
    let out = on_repo(
        site,
        PGKEEP,
        &clean,
        &["--repo1-retention-full=1", "expire"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    for point in [
        "expire-manifest-removed",
        "expire-info-saved",
        "expire-backup-removed",
        "expire-archive-removed",
    ] {
        let repo = site.dir.path().join(format!("kill-{point}"));
        copy_tree(snapshot, &repo);
        let mut cmd = Command::new(PGKEEP);
        cmd.arg(format!("--config={}", site.conf.display()))
            .args([
                &format!("--repo1-path={}", repo.display()),
                "--stanza=demo",
                "--repo1-retention-full=1",
                "expire",
            ])
            .env("PGKEEPTEST_KILL_AT", point);
        let out = run_as_owner(&cmd).expect("run");
        // runuser reports its child's SIGKILL as exit status 128 + 9
        assert!(
            out.status.signal() == Some(9) || out.status.code() == Some(137),
            "{point}: not killed\n{}",
            describe(&out)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("fault point {point}")));
        assert_ne!(
            tree(&repo),
            tree(snapshot),
            "{point}: nothing happened before the kill"
        );

        // both tools find every backup still listed restorable and the WAL they need present
        let out = on_repo(
            site,
            PGKEEP,
            &repo,
            &["--output=text", "--log-level-console=warn", "verify"],
        );
        assert!(
            out.status.success(),
            "{point}: pgkeep verify\n{}",
            describe(&out)
        );
        let out = on_repo(
            site,
            PGBACKREST,
            &repo,
            &["--output=text", "--log-level-console=warn", "verify"],
        );
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "{point}: pgbackrest verify\n{}",
            describe(&out)
        );
        let out = on_repo(site, PGBACKREST, &repo, &["info"]);
        assert!(
            out.status.success(),
            "{point}: pgbackrest info\n{}",
            describe(&out)
        );

        // the lock died with the process; the next expire completes the work
        let out = on_repo(site, PGKEEP, &repo, &["--repo1-retention-full=1", "expire"]);
        assert!(
            out.status.success(),
            "{point}: second expire\n{}",
            describe(&out)
        );
        assert_eq!(
            tree(&repo),
            tree(&clean),
            "{point}: result differs from an uninterrupted expire"
        );
        assert_eq!(
            std::fs::read(repo.join("backup/demo/backup.info")).unwrap(),
            std::fs::read(clean.join("backup/demo/backup.info")).unwrap()
        );
    }
}

/// Run the same command with both tools on the same repository: stdout, stderr and exit code must be identical.
fn same_output(site: &Site, repo: &Path, args: &[&str]) {
    let a = on_repo(site, PGBACKREST, repo, args);
    let b = on_repo(site, PGKEEP, repo, args);
    assert_eq!(
        b.status.code(),
        a.status.code(),
        "{args:?}\npgbackrest: {}\npgkeep: {}",
        describe(&a),
        describe(&b)
    );
    assert!(
        b.stdout == a.stdout,
        "{args:?}: stdout differs\npgbackrest: {}\npgkeep: {}",
        describe(&a),
        describe(&b)
    );
    assert_eq!(
        normalize(&b.stderr, repo),
        normalize(&a.stderr, repo),
        "{args:?}: stderr differs"
    );
}

/// A file of `label` referenced by every later backup of its set.
fn some_backup_file(repo: &Path, label: &str) -> PathBuf {
    let base = repo.join(format!("backup/demo/{label}/pg_data/base/1"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&base)
        .expect("base/1")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "gz"))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 100))
        .collect();
    files.sort();
    files.into_iter().next().expect("a backup file")
}

/// The stored file of `segment` in `repo`.
fn segment_file(repo: &Path, segment: &str) -> PathBuf {
    let dir = repo.join("archive/demo/15-1").join(&segment[..16]);
    std::fs::read_dir(&dir)
        .expect("wal dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{segment}-")))
        })
        .unwrap_or_else(|| panic!("{segment} not archived"))
}

/// Verify on a damaged copy: fails with [104], names `expected` in its text output; pgbackrest's output is ours
/// without the lines naming files.
fn verify_damaged(site: &Site, repo: &Path, extra: &[&str], expected: &[String]) -> String {
    let mut args = vec![
        "--output=text",
        "--log-level-console=warn",
        "--process-max=2",
    ];
    args.extend_from_slice(extra);
    args.push("verify");
    let out = on_repo(site, PGKEEP, repo, &args);
    assert_eq!(out.status.code(), Some(104), "{}", describe(&out));
    let text = stdout(&out);
    for line in expected {
        assert!(text.lines().any(|l| l == line), "'{line}' not in:\n{text}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("ERROR: [104]: verify command encountered ")),
        "{stderr}"
    );
    text
}

#[test]
fn verify_finds_and_names_damage_and_repo_commands_match_pgbackrest() {
    let site = Site::new(Some(PGBACKREST));
    site.ok(PGBACKREST, &["--stanza=demo", "stanza-create"]);
    let full = backup(&site, "full");
    switch(&site);
    let incr = backup(&site, "incr");
    for _ in 0..3 {
        switch(&site);
    }
    let repo = site.repo();

    // a clean repository: exit 0, nothing printed by default, pgBackRest's text with --verbose
    let out = on_repo(
        &site,
        PGKEEP,
        &repo,
        &["--log-level-console=warn", "verify"],
    );
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        describe(&out)
    );
    same_output(
        &site,
        &repo,
        &[
            "--output=text",
            "--verbose",
            "--log-level-console=warn",
            "verify",
        ],
    );
    same_output(
        &site,
        &repo,
        &[
            "--output=text",
            "--log-level-console=warn",
            "--process-max=3",
            "verify",
        ],
    );

    // repo-ls and repo-get print exactly what pgbackrest prints
    let history = format!(
        "backup/demo/backup.history/{}/{full}.manifest.gz",
        &full[..4]
    );
    let info = backup_info(&repo);
    let start = info.backups[&incr].archive_start.clone().unwrap();
    let wal = segment_file(&repo, &start);
    let wal_rel = wal.strip_prefix(&repo).unwrap().display().to_string();
    let repo_abs = format!("{}/backup/", repo.display());
    for args in [
        vec!["repo-ls"],
        vec!["repo-ls", "--recurse"],
        vec!["repo-ls", "--recurse", "--sort=desc", "--output=json"],
        vec!["repo-ls", "--recurse", "--filter=\\.backup$", "archive"],
        vec![
            "repo-ls",
            "--recurse",
            "--filter=manifest",
            "--output=json",
            "backup/demo",
        ],
        vec!["repo-ls", "--output=json", "backup/demo/backup.info"],
        vec!["repo-ls", &repo_abs],
        vec!["repo-ls", "--output=json", "no/such/path"],
        vec!["repo-ls", "/elsewhere"],
        vec!["repo-ls", "a", "b"],
        vec!["repo-ls", "archive//demo"],
        vec!["repo-get", "backup/demo/backup.info"],
        vec!["repo-get", &wal_rel],
        vec!["repo-get", &history],
        vec!["repo-get", "--raw", "archive/demo/archive.info.copy"],
        vec!["repo-get", "no/such/file"],
        vec!["repo-get", "--ignore-missing", "no/such/file"],
        vec!["repo-get"],
    ] {
        same_output(&site, &repo, &args);
    }

    // damage, each on its own copy: found, named, exit 104
    let bad_file = some_backup_file(&repo, &full);
    let bad_name = bad_file
        .strip_prefix(repo.join("backup/demo"))
        .unwrap()
        .display()
        .to_string();
    let corrupt = site.dir.path().join("corrupt");
    copy_tree(&repo, &corrupt);
    let target = corrupt.join("backup/demo").join(&bad_name);
    let mut bytes = std::fs::read(&target).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&target, bytes).unwrap();
    let ours = verify_damaged(
        &site,
        &corrupt,
        &[],
        &[
            format!(
                "  backup: {full}, status: invalid, total files checked: {n}, total valid files: {m}",
                n = count_files(&corrupt, &full),
                m = count_files(&corrupt, &full) - 1
            ),
            format!("    invalid checksum '{bad_name}'"),
        ],
    );
    let theirs = stdout(&on_repo(
        &site,
        PGBACKREST,
        &corrupt,
        &["--output=text", "--log-level-console=warn", "verify"],
    ));
    let without_names: Vec<&str> = ours
        .lines()
        .filter(|l| !l.starts_with("    invalid checksum '"))
        .collect();
    assert_eq!(
        without_names.join("\n") + "\n",
        theirs,
        "pgbackrest reports the same counts"
    );
    // --set checks one backup (with the files it references)
    verify_damaged(
        &site,
        &corrupt,
        &[&format!("--set={incr}")],
        &[format!("    invalid checksum '{bad_name}'")],
    );

    let missing = site.dir.path().join("missing-wal");
    copy_tree(&repo, &missing);
    std::fs::remove_file(segment_file(&missing, &start)).unwrap();
    verify_damaged(
        &site,
        &missing,
        &[],
        &[format!("    missing WAL '15-1/{start}'")],
    );

    let gap = site.dir.path().join("gap");
    copy_tree(&repo, &gap);
    let all = segments(&gap);
    let after = all
        .iter()
        .filter(|s| **s > info.backups[&incr].archive_stop.clone().unwrap())
        .nth(1)
        .unwrap()
        .clone();
    std::fs::remove_file(segment_file(&gap, &after)).unwrap();
    verify_damaged(&site, &gap, &[], &[format!("    missing WAL '{after}'")]);

    let truncated = site.dir.path().join("truncated");
    copy_tree(&repo, &truncated);
    let manifest = truncated.join(format!("backup/demo/{incr}/backup.manifest"));
    let len = std::fs::metadata(&manifest).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&manifest)
        .unwrap();
    file.set_len(len / 2).unwrap();
    let text = verify_damaged(&site, &truncated, &[], &[]);
    assert!(
        text.contains(&format!("    invalid manifest '{incr}/backup.manifest': ")),
        "{text}"
    );

    // bad input
    let out = on_repo(&site, PGKEEP, &repo, &["--set=20200101-000000F", "verify"]);
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().last(),
        Some("ERROR: [075]: backup set 20200101-000000F is not valid")
    );
}

/// Number of files in the manifest of `label`.
fn count_files(repo: &Path, label: &str) -> usize {
    let storage = PosixStorage::new(repo.to_str().unwrap());
    let manifest: pgkeep_repo::Manifest = load_info(
        &storage,
        &format!("backup/demo/{label}/backup.manifest"),
        None,
    )
    .expect("manifest");
    manifest.files.len()
}

#[test]
fn encrypted_repository_reads_like_pgbackrest() {
    let site = Site::new(Some(PGBACKREST));
    site.write_conf("repo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=RetentionTestPass\n");
    site.ok(PGBACKREST, &["--stanza=demo", "stanza-create"]);
    let full = backup(&site, "full");
    switch(&site);
    let repo = site.repo();
    let storage = PosixStorage::new(repo.to_str().unwrap());
    let info: BackupInfo = load_info(
        &storage,
        "backup/demo/backup.info",
        Some("RetentionTestPass"),
    )
    .expect("info");
    let start = info.backups[&full].archive_start.clone().unwrap();
    let wal = segment_file(&repo, &start);
    let wal_rel = wal.strip_prefix(&repo).unwrap().display().to_string();
    let backup_history = format!(
        "{}/{}.00000028.backup",
        &wal_rel[..wal_rel.rfind('/').unwrap()],
        start
    );
    let history = format!(
        "backup/demo/backup.history/{}/{full}.manifest.gz",
        &full[..4]
    );
    for args in [
        vec!["repo-get", "archive/demo/archive.info"],
        vec!["repo-get", "backup/demo/backup.info.copy"],
        vec!["repo-get", &wal_rel],
        vec!["repo-get", &backup_history],
        vec!["repo-get", &history],
        vec!["repo-get", &format!("backup/demo/{full}/backup.manifest")],
        vec![
            "repo-get",
            &format!("backup/demo/{full}/pg_data/PG_VERSION.gz"),
        ],
        vec![
            "repo-get",
            "--raw",
            &format!("backup/demo/{full}/pg_data/PG_VERSION.gz"),
        ],
        vec!["repo-ls", "--recurse", "--output=json", "archive"],
    ] {
        same_output(&site, &repo, &args);
    }
    // the stanza option must match the path
    let args = [
        "--stanza=other",
        &format!("--repo1-path={}", repo.display()),
        "repo-get",
        "backup/demo/backup.info",
    ];
    let a = site.run(PGBACKREST, &args);
    let b = site.run(PGKEEP, &args);
    assert_eq!(b.status.code(), Some(32));
    assert_eq!(b.status.code(), a.status.code());
    assert_eq!(
        String::from_utf8_lossy(&b.stderr),
        String::from_utf8_lossy(&a.stderr)
    );

    same_output(
        &site,
        &repo,
        &[
            "--output=text",
            "--verbose",
            "--log-level-console=warn",
            "verify",
        ],
    );
    let out = on_repo(&site, PGKEEP, &repo, &["verify"]);
    assert!(out.status.success(), "{}", describe(&out));
}

/// A run of `tool` with `PGKEEP_PROGRESS` set to `progress`, or removed.
fn run_progress(site: &Site, tool: &str, args: &[&str], progress: Option<&str>) -> Output {
    let mut cmd = Command::new(tool);
    cmd.arg(format!("--config={}", site.conf.display()))
        .args(args);
    match progress {
        Some(value) => cmd.env("PGKEEP_PROGRESS", value),
        None => cmd.env_remove("PGKEEP_PROGRESS"),
    };
    run_as_owner(&cmd).expect("run")
}

/// What a backup logs from its `backup command end` line on — the expire that follows it — with the
/// prior and new labels, WAL names, the version and the exec id normalised.
fn after_backup(out: &Output, prior: &str, new: &str) -> String {
    let text = stdout(out);
    let Some(start) = text.find("backup command end") else {
        panic!("no backup command end:\n{}", describe(out));
    };
    text[start..]
        .lines()
        .map(|line| {
            let line = line.replace(prior, "PRIOR").replace(new, "NEW");
            let words: Vec<String> = line
                .split(' ')
                .map(|w| {
                    let bare = w.trim_end_matches(',');
                    if bare.len() == 24 && bare.bytes().all(|b| b.is_ascii_hexdigit()) {
                        w.replace(bare, "WAL")
                    } else if w.starts_with("--exec-id=") {
                        "--exec-id=ID".to_string()
                    } else if w == "2.45:" || w == format!("{}:", env!("CARGO_PKG_VERSION")) {
                        "VERSION:".to_string()
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            words.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `backup` runs `expire` afterwards (`expire-auto`) exactly as pgBackRest 2.45 does: the backup's end line, the
/// expire's begin line with only the options valid for expire, the same retention decisions and lines. Also the
/// live progress display: drawn on stderr when forced with `PGKEEP_PROGRESS=1`, nothing otherwise.
#[test]
fn backup_runs_expire_afterwards_like_pgbackrest() {
    let site = Site::new(Some(PGBACKREST));
    site.write_conf("repo1-retention-full=1\n");
    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    let args = [
        "--stanza=demo",
        "--type=full",
        "--log-level-console=info",
        "--no-log-timestamp",
        "backup",
    ];

    // first full: nothing to expire yet; the progress line is drawn in place, then erased
    let first = run_progress(&site, PGKEEP, &args, Some("1"));
    assert!(first.status.success(), "{}", describe(&first));
    let err = String::from_utf8_lossy(&first.stderr).into_owned();
    assert!(err.starts_with("\rbackup "), "{err:?}");
    assert!(err.contains("% (") && err.contains(" of "), "{err:?}");
    assert!(err.ends_with('\r'), "progress line not erased: {err:?}");
    assert!(!err.contains('\n'), "{err:?}");
    let l1 = labels(&site.repo()).pop().expect("first label");
    let out = stdout(&first);
    let end = out.find("P00   INFO: backup command end: completed successfully\n");
    let begin = out.find("P00   INFO: expire command begin ");
    let expire_end = out.find("P00   INFO: expire command end: completed successfully\n");
    assert!(
        end.is_some() && begin > end && expire_end > begin && out.ends_with("successfully\n"),
        "{out}"
    );
    assert!(!out.contains("expire full backup"), "{out}");
    switch(&site);

    // second full: the first is expired by the expire that follows; no progress without a terminal
    let second = run_progress(&site, PGKEEP, &args, None);
    assert!(second.status.success(), "{}", describe(&second));
    assert!(second.stderr.is_empty(), "{}", describe(&second));
    let l2 = labels(&site.repo()).pop().expect("second label");
    assert_eq!(labels(&site.repo()), vec![l2.clone()]);
    let out = stdout(&second);
    for line in [
        format!("P00   INFO: repo1: expire full backup {l1}\n"),
        format!("P00   INFO: repo1: remove expired backup {l1}\n"),
    ] {
        assert!(out.contains(&line), "{line} missing:\n{out}");
    }
    assert_eq!(
        backup_info(&site.repo())
            .backups
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        vec![l2.clone()]
    );
    switch(&site);

    // pgbackrest's own backup on the same repository expires pgkeep's backup with the same lines
    let third = run_progress(&site, PGBACKREST, &args, None);
    assert!(third.status.success(), "{}", describe(&third));
    let l3 = labels(&site.repo()).pop().expect("third label");
    assert_eq!(labels(&site.repo()), vec![l3.clone()]);
    assert_eq!(
        after_backup(&second, &l1, &l2),
        after_backup(&third, &l2, &l3),
        "pgkeep:\n{}\npgbackrest:\n{}",
        stdout(&second),
        stdout(&third)
    );

    // --no-expire-auto: the backup ends alone
    switch(&site);
    let mut quiet = args.to_vec();
    quiet.insert(0, "--no-expire-auto");
    let fourth = run_progress(&site, PGKEEP, &quiet, None);
    assert!(fourth.status.success(), "{}", describe(&fourth));
    let out = stdout(&fourth);
    assert!(!out.contains("expire command"), "{out}");
    assert!(
        out.ends_with("P00   INFO: backup command end: completed successfully\n"),
        "{out}"
    );
    assert_eq!(labels(&site.repo()).len(), 2);
}

/// `info` while a backup runs: the percentage the backup records in its lock file is shown as pgBackRest 2.45
/// shows it. A lock file written and held by the test gives the same bytes from both tools (text and JSON); a real
/// pgkeep backup records its progress there, and both tools see it running.
#[test]
fn info_shows_a_running_backup_like_pgbackrest() {
    let site = Site::new(Some(PGBACKREST));
    site.write_conf("compress-level=9\n");
    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    site.ok(PGKEEP, &["--stanza=demo", "--type=full", "backup"]);
    let lock_dir = site.dir.path().join("lock");
    let lock_file = lock_dir.join("demo-backup.lock");

    // a lock held by the test, with and without a percentage, and invalid
    for (content, shown) in [
        (
            r#"{"execId":"1-00000001","pctCplt":2345,"pid":1}"#,
            Some("status: ok (backup/expire running - 23.45% complete)\n"),
        ),
        (
            r#"{"execId":"1-00000001","pctCplt":5,"pid":1}"#,
            Some("status: ok (backup/expire running - 0.05% complete)\n"),
        ),
        (
            r#"{"execId":"1-00000001","pid":1}"#,
            Some("status: ok (backup/expire running)\n"),
        ),
        (r#"{"pid":1}"#, None),
    ] {
        std::fs::write(&lock_file, content).unwrap();
        give_to_pg_user(&lock_file).unwrap();
        let held = std::fs::File::open(&lock_file).unwrap();
        held.lock().unwrap();
        for args in [
            &["--stanza=demo", "info"][..],
            &["--stanza=demo", "--output=json", "info"],
        ] {
            let theirs = site.ok(PGBACKREST, args);
            let ours = site.ok(PGKEEP, args);
            assert_eq!(ours, theirs, "{content} {args:?}");
        }
        let text = site.ok(PGKEEP, &["--stanza=demo", "info"]);
        match shown {
            Some(status) => assert!(text.contains(status), "{content}: {text}"),
            None => assert!(text.contains("status: ok\n"), "{content}: {text}"),
        }
        drop(held);
        // not held: nothing is running, whatever the file says
        assert!(
            site.ok(PGKEEP, &["--stanza=demo", "info"])
                .contains("status: ok\n")
        );
    }
    std::fs::remove_file(&lock_file).unwrap();

    // a real backup records its progress in the lock file while it copies
    // two large tables: the percentage in the lock file moves once the first is copied, and the
    // second keeps the backup running long enough to be looked at
    for table in ["big", "big2"] {
        site.cluster
            .psql(&format!(
                "create table {table} as select i, repeat(md5(i::text), 8) s from generate_series(1, 300000) i"
            ))
            .unwrap();
    }
    let mut cmd = Command::new(PGKEEP);
    cmd.arg(format!("--config={}", site.conf.display())).args([
        "--stanza=demo",
        "--type=full",
        "--process-max=1",
        "backup",
    ]);
    let mut child = pgkeep_testkit::as_owner(&cmd)
        .unwrap()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let begin = Instant::now();
    let mut seen = Vec::new();
    let mut infos = None;
    while child.try_wait().unwrap().is_none() {
        assert!(
            begin.elapsed() < Duration::from_secs(120),
            "backup too slow"
        );
        let pct = std::fs::read_to_string(&lock_file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["pctCplt"].as_u64());
        if let Some(pct) = pct {
            if seen.last() != Some(&pct) {
                seen.push(pct);
            }
            if infos.is_none() && pct > 0 && pct < 9000 {
                let ours = site.ok(PGKEEP, &["--stanza=demo", "info"]);
                let theirs = site.ok(PGBACKREST, &["--stanza=demo", "info"]);
                // a sample taken as the backup ended does not count: look again
                if [&ours, &theirs].iter().all(|t| t.contains("running - ")) {
                    infos = Some((pct, ours, theirs));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(child.wait().unwrap().success());
    let (pct, ours, theirs) = infos.unwrap_or_else(|| panic!("no progress seen: {seen:?}"));
    for text in [&ours, &theirs] {
        let status = text
            .lines()
            .find(|l| l.contains("status: "))
            .unwrap_or_default();
        let shown = status
            .strip_prefix("    status: ok (backup/expire running - ")
            .and_then(|s| s.strip_suffix("% complete)"))
            .unwrap_or_else(|| panic!("{text}"));
        let (whole, hundredths) = shown.split_once('.').unwrap();
        let shown: u64 = whole.parse::<u64>().unwrap() * 100 + hundredths.parse::<u64>().unwrap();
        assert!(shown >= pct && shown < 10_000, "{pct} {text}");
    }
    // recorded from 0 upwards, never more often than every 0.1%
    assert_eq!(seen.first(), Some(&0), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[1] > w[0] + 10), "{seen:?}");
    // gone once the backup (and its expire) ended
    assert!(!lock_file.exists());
    assert!(
        site.ok(PGKEEP, &["--stanza=demo", "info"])
            .contains("status: ok\n")
    );
}
