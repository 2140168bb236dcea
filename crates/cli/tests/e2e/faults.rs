//! Faults at the command level on a real cluster: a disk write that fails part way through a
//! backup, an archive-push and a restore (the real kernel refusing the write: `RLIMIT_FSIZE` with
//! `SIGXFSZ` ignored, so `write()` fails with `EFBIG` exactly where a full disk would fail with
//! `ENOSPC`), a backup into a repository on a small tmpfs that fills up (the kernel's own
//! `ENOSPC`; mounting needs root, and the test fails saying so without it), and commands racing
//! each other on one stanza. After each fault the repository must be as it was: a one-line error
//! with a non-zero exit, nothing new listed, no temp file left, `verify` clean, and the next run
//! succeeds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pgkeep_testkit::{as_owner, run_as_owner};

use crate::common::{PGKEEP, Site, files_below};

/// Run pgkeep as the cluster owner with writes limited to `limit_kib` KiB per file.
fn limited(site: &Site, limit_kib: u64, args: &[&str]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(r#"trap '' XFSZ; ulimit -f "$1"; shift; exec "$@""#)
        .arg("bash")
        .arg(limit_kib.to_string())
        .arg(PGKEEP)
        .arg(format!("--config={}", site.conf.display()))
        .args(args);
    run_as_owner(&cmd).unwrap_or_else(|e| panic!("unable to run pgkeep {args:?}: {e}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one `ERROR:` line of a failed command, checked for shape.
fn one_error_line(out: &Output, what: &str) -> String {
    assert!(
        !out.status.success(),
        "{what}: expected a failure, got success\nstderr: {}",
        stderr(out)
    );
    let code = out.status.code().unwrap_or(-1);
    let text = stderr(out);
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR: [")).collect();
    assert_eq!(errors.len(), 1, "{what}: one error line expected:\n{text}");
    let line = errors[0].to_string();
    assert!(
        line.contains(&format!("ERROR: [{code:03}]: ")),
        "{what}: the exit code {code} is the error's code: {line}"
    );
    assert!(!text.contains("panicked"), "{what}: panic:\n{text}");
    line
}

/// Every file under `root` whose name is a temp name of an atomic write.
fn temp_files(root: &Path) -> Vec<PathBuf> {
    files_below(root)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect()
}

/// Files of the stanza's archive whose name starts with `segment`.
fn stored_copies(repo: &Path, segment: &str) -> Vec<PathBuf> {
    files_below(&repo.join("archive/demo"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(segment))
        })
        .collect()
}

/// Backup labels listed by `pgkeep info --output=json`.
fn listed(site: &Site) -> Vec<String> {
    let json = site.ok(PGKEEP, &["--stanza=demo", "info", "--output=json"]);
    let value: serde_json::Value = serde_json::from_str(&json).expect("info json");
    value[0]["backup"]
        .as_array()
        .map(|backups| {
            backups
                .iter()
                .filter_map(|b| b["label"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn verify_clean(site: &Site, what: &str) {
    let out = site.run(PGKEEP, &["--stanza=demo", "verify"]);
    assert!(
        out.status.success(),
        "{what}: verify must pass ({:?}):\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

#[test]
fn failed_disk_writes_leave_the_repository_as_it_was() {
    let site = Site::new(Some(PGKEEP));
    let spool = site.dir.subdir("spool").expect("spool dir");
    site.write_conf(&format!(
        "spool-path={}\ncompress-type=none\nprocess-max=2\n",
        spool.display()
    ));
    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    let c = &site.cluster;
    c.psql("create table big (i int, s text)").unwrap();
    // about 8 MB in one relation file: larger than the 4 MiB write limit below
    c.psql("insert into big select i, repeat(md5(i::text), 4) from generate_series(1, 45000) i")
        .unwrap();
    site.ok(PGKEEP, &["--stanza=demo", "backup", "--type=full"]);
    let before = listed(&site);
    assert_eq!(before.len(), 1);
    let repo = site.repo();
    let backup_info = std::fs::read(repo.join("backup/demo/backup.info")).unwrap();

    // backup: the big relation file can't be written
    c.psql("insert into big select i, md5(i::text) from generate_series(1, 1000) i")
        .unwrap();
    for ty in ["full", "incr"] {
        let out = limited(
            &site,
            4096,
            &["--stanza=demo", "backup", &format!("--type={ty}")],
        );
        let line = one_error_line(&out, &format!("{ty} backup under a write limit"));
        assert!(
            line.contains("File too large") && line.contains(&repo.display().to_string()),
            "the error names the repository file and the cause: {line}"
        );
        assert_eq!(
            listed(&site),
            before,
            "nothing new listed after a failed {ty} backup"
        );
        assert_eq!(
            std::fs::read(repo.join("backup/demo/backup.info")).unwrap(),
            backup_info,
            "backup.info unchanged after a failed {ty} backup"
        );
        assert_eq!(temp_files(&repo), Vec::<PathBuf>::new(), "temp files left");
        verify_clean(&site, &format!("after the failed {ty} backup"));
    }
    // backup: the temp directory for the file list is unusable
    let mut cmd = Command::new("env");
    cmd.arg(format!(
        "TMPDIR={}",
        site.dir.path().join("no-such-dir").display()
    ))
    .arg(PGKEEP)
    .arg(format!("--config={}", site.conf.display()))
    .args(["--stanza=demo", "backup", "--type=incr"]);
    let out = run_as_owner(&cmd).expect("run pgkeep backup");
    let line = one_error_line(&out, "backup without a temp directory");
    assert!(
        line.contains("temporary file") && line.contains("no-such-dir"),
        "the error names the temp directory: {line}"
    );
    assert_eq!(listed(&site), before, "nothing new listed");
    assert_eq!(
        std::fs::read(repo.join("backup/demo/backup.info")).unwrap(),
        backup_info,
        "backup.info unchanged"
    );

    // the next run (resume or not) succeeds and is listed
    site.ok(PGKEEP, &["--stanza=demo", "backup", "--type=incr"]);
    let after = listed(&site);
    assert_eq!(after.len(), 2, "{after:?}");
    verify_clean(&site, "after the successful incr backup");

    // restore: a data file can't be written; the target is never left startable
    let target = site.dir.subdir("restored").expect("restore dir");
    pgkeep_testkit::give_to_pg_user(&target).unwrap();
    std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let pg1 = format!("--pg1-path={}", target.display());
    let out = limited(&site, 4096, &["--stanza=demo", "restore", &pg1]);
    let line = one_error_line(&out, "restore under a write limit");
    assert!(
        line.contains("File too large") && line.contains(&target.display().to_string()),
        "the error names the target file and the cause: {line}"
    );
    assert!(
        !target.join("global/pg_control").exists(),
        "an aborted restore must not leave pg_control"
    );
    assert_eq!(
        temp_files(&target),
        Vec::<PathBuf>::new(),
        "temp files left"
    );
    site.ok(PGKEEP, &["--stanza=demo", "restore", "--delta", &pg1]);
    assert!(target.join("global/pg_control").exists());
    let big = c
        .psql("select pg_relation_filepath('big')")
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        std::fs::metadata(target.join(&big)).unwrap().len(),
        std::fs::metadata(c.data_dir().join(&big)).unwrap().len(),
        "the big relation file is whole after the delta restore"
    );

    // archive-push (last: the segment pushed here is the one PostgreSQL is writing now, so it
    // must not be archived by the server afterwards)
    // a WAL record first: on a segment boundary the name would be the previous, archived segment
    c.psql("insert into big values (0, 'x')").unwrap();
    let current = c
        .psql("select pg_walfile_name(pg_current_wal_insert_lsn())")
        .unwrap()
        .trim()
        .to_string();
    let copy = site.dir.path().join(&current);
    std::fs::copy(c.data_dir().join("pg_wal").join(&current), &copy).unwrap();
    pgkeep_testkit::give_to_pg_user(&copy).unwrap();
    let copy_arg = copy.display().to_string();
    let out = limited(&site, 4096, &["--stanza=demo", "archive-push", &copy_arg]);
    // pgBackRest's shape: `archive-push command encountered error(s):` and a line per repository
    let line = one_error_line(&out, "archive-push under a write limit");
    assert!(line.contains("[104]"), "{line}");
    let text = stderr(&out);
    assert!(
        text.contains("repo1: [FileWriteError]") && text.contains("File too large"),
        "{text}"
    );
    assert_eq!(
        stored_copies(&repo, &current).len(),
        0,
        "nothing stored for {current}"
    );
    assert_eq!(temp_files(&repo), Vec::<PathBuf>::new(), "temp files left");
    site.ok(PGKEEP, &["--stanza=demo", "archive-push", &copy_arg]);
    assert_eq!(
        stored_copies(&repo, &current).len(),
        1,
        "{current} stored once"
    );
}

/// A tmpfs mounted on a directory for the length of a test; unmounted (lazily, so a process still
/// inside cannot keep it) when dropped, also when an assertion failed.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mount a `size_mib` MiB tmpfs on `dir` (created), owned by the owner of `owner_of` so the
    /// cluster's OS user can write it. Fails the test with the reason when the mount is refused.
    fn mount(dir: &Path, size_mib: u64, owner_of: &Path) -> Tmpfs {
        use std::os::unix::fs::MetadataExt;
        std::fs::create_dir_all(dir).unwrap();
        let owner = std::fs::metadata(owner_of).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!(
                "size={size_mib}m,uid={},gid={},mode=0700",
                owner.uid(),
                owner.gid()
            ))
            .arg("pgkeep-test-enospc")
            .arg(dir)
            .output()
            .unwrap_or_else(|e| panic!("unable to run mount (needs root): {e}"));
        assert!(
            out.status.success(),
            "unable to mount a {size_mib} MiB tmpfs on '{}' ({}; the test needs root): {}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    /// Grow (or shrink) the mounted tmpfs to `size_mib` MiB.
    fn resize(&self, size_mib: u64) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size_mib}m")])
            .arg(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("unable to run mount: {e}"));
        assert!(
            out.status.success(),
            "unable to resize the tmpfs on '{}' to {size_mib} MiB: {}",
            self.dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        match Command::new("umount").arg("-l").arg(&self.dir).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "unable to unmount '{}': {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("unable to run umount -l '{}': {e}", self.dir.display()),
        }
    }
}

#[test]
fn a_full_disk_leaves_the_repository_as_it_was() {
    let site = Site::new(Some(PGKEEP));
    let c = &site.cluster;
    // The table's WAL must not reach the small disk: it is made and archived while the
    // repository is an ordinary directory, which is then moved aside.
    let settings = "compress-type=lz4\nprocess-max=2\n";
    site.write_conf(settings);
    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    c.psql("create table big (i int, s text)").unwrap();
    // about 35 MB of distinct hex digits: lz4 finds no repeats in them, so the stored files
    // stay about this size
    c.psql(
        "insert into big select i, md5(i::text) || md5('a' || i) || md5('b' || i) \
         from generate_series(1, 240000) i",
    )
    .unwrap();
    crate::common::archive_now(c);

    let repo = site.repo();
    std::fs::rename(&repo, site.dir.path().join("scratch-repo")).unwrap();

    // the repository now: a 16 MiB tmpfs, room for stanza-create but not for the backup (about
    // 34 MiB stored once it succeeds); declared after `site`, so unmounted before its temp dir
    // is removed
    let disk = Tmpfs::mount(&repo, 16, site.dir.path());
    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    assert_eq!(listed(&site), Vec::<String>::new());
    let info_files = ["backup.info", "backup.info.copy"].map(|n| repo.join("backup/demo").join(n));
    let info_before = info_files.each_ref().map(|p| std::fs::read(p).unwrap());

    let out = site.run(PGKEEP, &["--stanza=demo", "backup", "--type=full"]);
    let line = one_error_line(&out, "full backup onto a full disk");
    assert!(
        line.contains("[28] No space left on device") && line.contains(&repo.display().to_string()),
        "the error names the repository file and the cause: {line}"
    );
    eprintln!("backup onto a full disk: {line}");
    assert_eq!(
        listed(&site),
        Vec::<String>::new(),
        "nothing listed after the failed backup"
    );
    for (path, before) in info_files.iter().zip(&info_before) {
        assert_eq!(
            &std::fs::read(path).unwrap(),
            before,
            "{} unchanged after the failed backup",
            path.display()
        );
    }
    assert_eq!(temp_files(&repo), Vec::<PathBuf>::new(), "temp files left");
    verify_clean(&site, "after the backup onto a full disk");

    // room made: the next run succeeds and is listed
    disk.resize(256);
    site.ok(PGKEEP, &["--stanza=demo", "backup", "--type=full"]);
    assert_eq!(listed(&site).len(), 1, "the backup is listed");
    assert_eq!(temp_files(&repo), Vec::<PathBuf>::new(), "temp files left");
    verify_clean(&site, "after the backup with room");
    drop(disk);
}

/// Start pgkeep as the cluster owner in the background.
fn spawn(site: &Site, args: &[&str]) -> std::process::Child {
    let mut cmd = Command::new(PGKEEP);
    cmd.arg(format!("--config={}", site.conf.display()))
        .args(args);
    as_owner(&cmd)
        .unwrap_or_else(|e| panic!("unable to wrap pgkeep {args:?}: {e}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("unable to start pgkeep {args:?}: {e}"))
}

#[test]
fn racing_commands_are_refused_by_the_lock_and_leave_one_consistent_repository() {
    // Every segment takes 3 s to archive, so a backup holds its lock while it waits for WAL.
    let site = Site::new(Some(&format!("sleep 3 && {PGKEEP}")));
    let spool = site.dir.subdir("spool").expect("spool dir");
    site.write_conf(&format!("spool-path={}\n", spool.display()));
    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    site.cluster
        .psql("create table t as select generate_series(1, 1000) i")
        .unwrap();
    let lock = site.dir.path().join("lock/demo-backup.lock");

    // two backups, then a backup and an expire: the second command of each pair is refused by
    // the backup lock while the first one runs
    for (second, expected) in [
        (vec!["--stanza=demo", "backup", "--type=full"], 50),
        (
            vec!["--stanza=demo", "expire", "--repo1-retention-full=1"],
            50,
        ),
    ] {
        let mut first = spawn(&site, &["--stanza=demo", "backup", "--type=full"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !lock.exists() {
            if first.try_wait().unwrap().is_some() {
                let out = first.wait_with_output().unwrap();
                panic!("the backup ended before the race: {}", stderr(&out));
            }
            assert!(Instant::now() < deadline, "the backup never took its lock");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        let out = site.run(PGKEEP, &second);
        let line = one_error_line(&out, &format!("{second:?} while a backup runs"));
        assert_eq!(out.status.code(), Some(expected), "{line}");
        assert!(
            line.contains("unable to acquire lock on file") && line.contains("demo-backup.lock"),
            "{line}"
        );
        let done = first.wait_with_output().unwrap();
        assert!(
            done.status.success(),
            "the first backup must finish: {}",
            stderr(&done)
        );
    }
    assert_eq!(listed(&site).len(), 2, "two backups listed");
    verify_clean(&site, "after the races");

    // the same segment pushed by several processes at once: all succeed, stored once
    site.cluster.psql("insert into t values (0)").unwrap();
    let current = site
        .cluster
        .psql("select pg_walfile_name(pg_current_wal_insert_lsn())")
        .unwrap()
        .trim()
        .to_string();
    let copy = site.dir.path().join(&current);
    std::fs::copy(site.cluster.data_dir().join("pg_wal").join(&current), &copy).unwrap();
    pgkeep_testkit::give_to_pg_user(&copy).unwrap();
    let copy_arg = copy.display().to_string();
    let pushes: Vec<_> = (0..4)
        .map(|_| spawn(&site, &["--stanza=demo", "archive-push", &copy_arg]))
        .collect();
    for push in pushes {
        let out = push.wait_with_output().unwrap();
        assert!(out.status.success(), "concurrent push: {}", stderr(&out));
    }
    let stored = stored_copies(&site.repo(), &current);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(temp_files(&site.repo()), Vec::<PathBuf>::new());
}
