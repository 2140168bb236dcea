//! Unit tests of expire on synthetic repositories: the paths the end-to-end comparison with pgbackrest does not
//! reach (several archive ids, timelines, mismatched histories, resumable backups, refusals, locks).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use pgkeep_config::ParseInput;
use pgkeep_repo::info::{ArchiveInfo, BackupInfo, BackupInfoEntry, save_info};
use pgkeep_storage::posix::PosixStorage;

use super::*;
use crate::log::{Level, LogSettings, Logger};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let fixture = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(fixture.repo()).unwrap();
        fixture
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn storage(&self) -> PosixStorage {
        PosixStorage::new(self.repo().to_str().unwrap())
    }

    fn touch(&self, path: &str) {
        let full = self.repo().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, b"x").unwrap();
    }

    fn exists(&self, path: &str) -> bool {
        self.repo().join(path).exists()
    }

    /// A context for `expire` with `args`, logging to a file at detail level.
    fn ctx(&self, args: &[&str]) -> Ctx {
        let mut all = vec![
            "--stanza=demo".to_string(),
            format!("--repo1-path={}", self.repo().display()),
            format!("--lock-path={}", self.dir.path().join("lock").display()),
        ];
        all.extend(args.iter().map(|a| (*a).to_string()));
        all.push("expire".to_string());
        let cfg = pgkeep_config::parse(&ParseInput {
            args: all,
            env: Vec::new(),
            default_config: Vec::new(),
            default_include_path: self.dir.path().join("conf.d").display().to_string(),
        })
        .unwrap();
        let mut log = Logger::new(LogSettings {
            console: Level::Off,
            stderr: Level::Off,
            file: Level::Detail,
            timestamp: false,
            process: 0,
        });
        log.open_file(self.log_path().to_str().unwrap());
        Ctx {
            cfg,
            log: Arc::new(log),
            exec_id: "1-aaaaaaaa".to_string(),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("expire.log")
    }

    /// Log lines written so far (without the banner).
    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains("PROCESS START") && !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}

fn entry(
    ty: BackupType,
    prior: Option<&str>,
    db_id: u32,
    start: &str,
    stop: &str,
) -> BackupInfoEntry {
    BackupInfoEntry {
        backrest_format: 5,
        backrest_version: "2.45".to_string(),
        annotation: None,
        archive_start: Some(start.to_string()),
        archive_stop: Some(stop.to_string()),
        error: Some(false),
        repo_size: 1,
        repo_size_delta: 1,
        repo_size_map: None,
        repo_size_map_delta: None,
        size: 1,
        size_delta: 1,
        lsn_start: None,
        lsn_stop: None,
        prior: prior.map(str::to_string),
        reference: prior.map(|p| vec![p.to_string()]),
        timestamp_start: 1_767_225_600,
        timestamp_stop: 1_767_225_601,
        backup_type: ty,
        db_id,
        option_archive_check: true,
        option_archive_copy: false,
        option_backup_standby: false,
        option_checksum_page: true,
        option_compress: true,
        option_hardlink: false,
        option_online: true,
        extra: BTreeMap::new(),
    }
}

/// Two clusters (15-1 with system id 1, then 15-2 after a stanza-upgrade), backups as given, every backup with
/// both manifests on disk.
fn repository(f: &Fixture, backups: &[(&str, BackupInfoEntry)]) -> (ArchiveInfo, BackupInfo) {
    let v15 = "15".parse().unwrap();
    let mut archive = ArchiveInfo::new(v15, 1, None);
    archive.add_history(v15, 2);
    let mut info = BackupInfo::new(v15, 1, 1300, 202_209_061, None);
    info.add_history(v15, 2, 1300, 202_209_061);
    for (label, e) in backups {
        info.add_backup(*label, e.clone());
        f.touch(&format!("backup/demo/{label}/backup.manifest"));
        f.touch(&format!("backup/demo/{label}/backup.manifest.copy"));
        f.touch(&format!("backup/demo/{label}/pg_data/PG_VERSION.gz"));
    }
    let storage = f.storage();
    save_info(&storage, "archive/demo/archive.info", &archive, None).unwrap();
    save_info(&storage, "backup/demo/backup.info", &info, None).unwrap();
    (archive, info)
}

fn wal(f: &Fixture, archive_id: &str, segment: &str) -> String {
    let path = format!(
        "archive/demo/{archive_id}/{}/{segment}-{SHA}.gz",
        &segment[..16]
    );
    f.touch(&path);
    path
}

const F1: &str = "20260101-000000F";
const F2: &str = "20260102-000000F";
const F3: &str = "20260103-000000F";

#[test]
fn old_archive_ids_and_old_timelines_go_with_their_backups() {
    let f = Fixture::new();
    repository(
        &f,
        &[
            (
                F1,
                entry(
                    BackupType::Full,
                    None,
                    1,
                    "000000010000000000000002",
                    "000000010000000000000002",
                ),
            ),
            (
                F2,
                entry(
                    BackupType::Full,
                    None,
                    2,
                    "000000030000000000000005",
                    "000000030000000000000005",
                ),
            ),
            (
                F3,
                entry(
                    BackupType::Full,
                    None,
                    2,
                    "000000030000000000000007",
                    "000000030000000000000007",
                ),
            ),
        ],
    );
    let old = wal(&f, "15-1", "000000010000000000000002");
    let tl2 = wal(&f, "15-2", "000000020000000000000004");
    let before = wal(&f, "15-2", "000000030000000000000004");
    let kept: Vec<String> = [
        "000000030000000000000005",
        "000000030000000000000006",
        "000000030000000000000008",
    ]
    .iter()
    .map(|s| wal(&f, "15-2", s))
    .collect();
    f.touch("archive/demo/15-2/00000002.history");
    f.touch("archive/demo/15-2/00000003.history");

    run(&f.ctx(&["--repo1-retention-full=2"])).unwrap();

    assert!(!f.exists(&format!("backup/demo/{F1}")));
    assert!(f.exists(&format!("backup/demo/{F2}/backup.manifest")));
    assert!(!f.exists(&old) && !f.exists("archive/demo/15-1"));
    assert!(!f.exists(&tl2) && !f.exists(&before));
    assert!(kept.iter().all(|k| f.exists(k)), "{kept:?}");
    assert!(!f.exists("archive/demo/15-2/00000002.history"));
    assert!(f.exists("archive/demo/15-2/00000003.history"));
    let root = f.repo().display().to_string();
    assert_eq!(
        f.log(),
        vec![
            format!("P00   INFO: repo1: expire full backup {F1}"),
            format!("P00   INFO: repo1: remove expired backup {F1}"),
            format!("P00   INFO: repo1: remove archive path {root}/archive/demo/15-1"),
            format!(
                "P00 DETAIL: repo1: 15-2 archive retention on backup {F2}, start = 000000030000000000000005"
            ),
            "P00   INFO: repo1: 15-2 remove archive, start = 0000000200000000, stop = 000000030000000000000004"
                .to_string(),
            "P00   INFO: repo1: 15-2 remove history file 00000002.history".to_string(),
        ]
    );
    let info: BackupInfo = load_info(&f.storage(), "backup/demo/backup.info", None).unwrap();
    assert_eq!(info.backups.keys().collect::<Vec<_>>(), vec![F2, F3]);
}

#[test]
fn histories_that_disagree_stop_archive_expiration_after_backups_are_expired() {
    let f = Fixture::new();
    let (mut archive, _) = repository(
        &f,
        &[
            (
                F2,
                entry(
                    BackupType::Full,
                    None,
                    2,
                    "000000010000000000000005",
                    "000000010000000000000005",
                ),
            ),
            (
                F3,
                entry(
                    BackupType::Full,
                    None,
                    2,
                    "000000010000000000000007",
                    "000000010000000000000007",
                ),
            ),
        ],
    );
    archive.history[0].system_id = 99;
    save_info(&f.storage(), "archive/demo/archive.info", &archive, None).unwrap();
    let segment = wal(&f, "15-2", "000000010000000000000004");

    let err = run(&f.ctx(&["--repo1-retention-full=1"])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Command);
    assert_eq!(
        err.message(),
        "expire command encountered 1 error(s), check the log file for details"
    );
    assert_eq!(
        f.log().last().map(String::as_str),
        Some(
            "P00  ERROR: [029]: repo1: archive expiration cannot continue - archive and backup history lists do not match"
        )
    );
    // backup.info was saved and the expired backup removed before the archive step failed
    assert!(!f.exists(&format!("backup/demo/{F2}")));
    assert!(f.exists(&segment));
}

#[test]
fn dry_run_reports_and_changes_nothing() {
    let f = Fixture::new();
    repository(
        &f,
        &[
            (
                F2,
                entry(
                    BackupType::Full,
                    None,
                    2,
                    "000000010000000000000005",
                    "000000010000000000000005",
                ),
            ),
            (
                F3,
                entry(
                    BackupType::Full,
                    None,
                    2,
                    "000000010000000000000007",
                    "000000010000000000000007",
                ),
            ),
        ],
    );
    let segment = wal(&f, "15-2", "000000010000000000000004");
    let before = std::fs::read(f.repo().join("backup/demo/backup.info")).unwrap();
    let ctx = f.ctx(&["--repo1-retention-full=1", "--dry-run"]);
    ctx.log.set_dry_run(true);
    run(&ctx).unwrap();
    assert!(f.exists(&format!("backup/demo/{F2}/backup.manifest")) && f.exists(&segment));
    assert_eq!(
        std::fs::read(f.repo().join("backup/demo/backup.info")).unwrap(),
        before
    );
    assert_eq!(
        f.log(),
        vec![
            format!("P00   INFO: [DRY-RUN] repo1: expire full backup {F2}"),
            format!("P00   INFO: [DRY-RUN] repo1: remove expired backup {F2}"),
            format!(
                "P00 DETAIL: [DRY-RUN] repo1: 15-2 archive retention on backup {F3}, start = 000000010000000000000007"
            ),
            "P00   INFO: [DRY-RUN] repo1: 15-2 remove archive, start = 000000010000000000000004, stop = 000000010000000000000004".to_string(),
        ]
    );
}

#[test]
fn adhoc_expire_spares_an_unrelated_resumable_backup_and_refuses_the_last_full() {
    let f = Fixture::new();
    repository(
        &f,
        &[
            (
                F1,
                entry(
                    BackupType::Full,
                    None,
                    2,
                    "000000010000000000000002",
                    "000000010000000000000002",
                ),
            ),
            (
                F2,
                entry(
                    BackupType::Full,
                    None,
                    2,
                    "000000010000000000000005",
                    "000000010000000000000005",
                ),
            ),
        ],
    );
    // an unfinished newer backup: only the manifest copy
    f.touch(&format!("backup/demo/{F3}/backup.manifest.copy"));
    run(&f.ctx(&[&format!("--set={F1}")])).unwrap();
    assert!(!f.exists(&format!("backup/demo/{F1}")));
    assert!(f.exists(&format!("backup/demo/{F3}/backup.manifest.copy")));
    assert!(
        f.log()
            .contains(&format!("P00   INFO: repo1: expire adhoc backup {F1}"))
    );

    // the only full left cannot go
    let err = run(&f.ctx(&[&format!("--set={F2}")])).unwrap_err();
    assert_eq!(err.code(), 104);
    assert!(f.log().contains(&format!(
        "P00  ERROR: [075]: repo1: full backup {F2} cannot be expired until another full backup has been created on this repo"
    )));
    assert!(f.exists(&format!("backup/demo/{F2}/backup.manifest")));

    // retention expire removes the unfinished backup
    run(&f.ctx(&[])).unwrap();
    assert!(!f.exists(&format!("backup/demo/{F3}")));

    // a label that is not there: a warning, and success
    run(&f.ctx(&["--set=20200101-000000F"])).unwrap();
    assert!(
        f.log()
            .contains(&"P00   WARN: backup 20200101-000000F does not exist".to_string())
    );
}

#[test]
fn a_held_lock_or_a_stop_file_refuses_to_run() {
    let f = Fixture::new();
    repository(&f, &[]);
    let lock_path = f.dir.path().join("lock");
    let held = lock::acquire(
        lock_path.to_str().unwrap(),
        "demo",
        lock::LockType::Backup,
        "2-bbbbbbbb",
    )
    .unwrap();
    let err = run(&f.ctx(&[])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockAcquire);
    drop(held);
    // the same exec id (a backup running expire-auto) shares the lock
    let shared = lock::acquire(
        lock_path.to_str().unwrap(),
        "demo",
        lock::LockType::Backup,
        "1-aaaaaaaa",
    )
    .unwrap();
    run_after_backup(&f.ctx(&[])).unwrap();
    drop(shared);
    std::fs::write(
        lock::stop_file(lock_path.to_str().unwrap(), Some("demo")),
        b"",
    )
    .unwrap();
    assert_eq!(run(&f.ctx(&[])).unwrap_err().kind(), ErrorKind::Stop);
}

#[test]
fn history_manifests_older_than_retention_go_unless_current() {
    let f = Fixture::new();
    repository(
        &f,
        &[(
            F2,
            entry(
                BackupType::Full,
                None,
                2,
                "000000010000000000000005",
                "000000010000000000000005",
            ),
        )],
    );
    f.touch("backup/demo/backup.history/2019/20190101-000000F.manifest.gz");
    f.touch(&format!("backup/demo/backup.history/2026/{F1}.manifest.gz"));
    f.touch(&format!("backup/demo/backup.history/2026/{F2}.manifest.gz"));
    f.touch("backup/demo/backup.history/2026/not-a-manifest");
    run(&f.ctx(&["--repo1-retention-history=0"])).unwrap();
    assert!(!f.exists("backup/demo/backup.history/2019"));
    let year = label_at(chrono::Utc::now().timestamp());
    if year.starts_with("2026") {
        assert!(!f.exists(&format!("backup/demo/backup.history/2026/{F1}.manifest.gz")));
    }
    assert!(f.exists(&format!("backup/demo/backup.history/2026/{F2}.manifest.gz")));
    assert!(f.exists("backup/demo/backup.history/2026/not-a-manifest"));
    assert!(
        f.log()
            .contains(&"P00   INFO: repo1: remove expired backup history path 2019".to_string())
    );
}
