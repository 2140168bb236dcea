//! Unit tests of verify on a synthetic repository with real (1 MiB) WAL segments: the checks pgkeep adds beyond
//! pgBackRest — WAL a backup needs, point-in-time recovery gaps across a timeline switch, history files, damaged
//! info and manifest twins.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use pgkeep_base::io::sha1;
use pgkeep_config::ParseInput;
use pgkeep_pg::wal::{WalHeader, header_build};
use pgkeep_repo::info::{BackupInfoEntry, save_info};
use pgkeep_repo::layout::BackupType;
use pgkeep_repo::manifest::{
    ManifestBackup, ManifestBackupDb, ManifestFile, ManifestOptions, ManifestPath, ManifestTarget,
    TargetType,
};
use pgkeep_storage::posix::PosixStorage;

use super::*;
use crate::log::{Level, LogSettings, Logger};

const SEG_SIZE: u32 = 1024 * 1024;
const FULL: &str = "20260101-000000F";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn storage(&self) -> PosixStorage {
        PosixStorage::new(self.repo().to_str().unwrap())
    }

    fn write(&self, path: &str, data: &[u8]) {
        let full = self.repo().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, data).unwrap();
    }

    fn ctx(&self, args: &[&str]) -> Ctx {
        let mut all = vec![
            "--stanza=demo".to_string(),
            format!("--repo1-path={}", self.repo().display()),
            "--process-max=2".to_string(),
        ];
        all.extend(args.iter().map(|a| (*a).to_string()));
        all.push("verify".to_string());
        let cfg = pgkeep_config::parse(&ParseInput {
            args: all,
            env: Vec::new(),
            default_config: Vec::new(),
            default_include_path: self.dir.path().join("conf.d").display().to_string(),
        })
        .unwrap();
        Ctx {
            cfg,
            log: Arc::new(Logger::new(LogSettings {
                console: Level::Off,
                stderr: Level::Off,
                file: Level::Off,
                timestamp: false,
                process: 0,
            })),
            exec_id: "1-aaaaaaaa".to_string(),
        }
    }

    fn report(&self, args: &[&str]) -> Report {
        let ctx = self.ctx(args);
        let repo = ctx.repo(1).unwrap();
        Verifier {
            ctx: &ctx,
            repo: &repo,
            storage: repo.storage.as_ref(),
            stanza: "demo",
            threads: 2,
        }
        .verify(ctx.cfg.str(OptionId::Set))
        .unwrap()
    }

    /// A 1 MiB segment, gzipped, stored under its checksum name; returns the repository path.
    fn segment(&self, name: &str) -> String {
        let timeline = u32::from_str_radix(&name[..8], 16).unwrap();
        let seg = u64::from_str_radix(&name[16..], 16).unwrap();
        let header = WalHeader::new(
            "15".parse().unwrap(),
            timeline,
            seg * u64::from(SEG_SIZE),
            7,
            SEG_SIZE,
        )
        .unwrap();
        let mut content = vec![0u8; SEG_SIZE as usize];
        content[..LONG_HEADER_SIZE].copy_from_slice(&header_build(&header));
        content[100..100 + name.len()].copy_from_slice(name.as_bytes());
        let gz = pgkeep_base::compress::compress(CompressType::Gz, 1, &content).unwrap();
        let path = format!(
            "archive/demo/15-1/{}/{name}-{}.gz",
            &name[..16],
            sha1(&content).to_hex()
        );
        self.write(&path, &gz);
        path
    }
}

/// A stanza with one full backup (one file) whose WAL is 000000010000000000000002..3, then a promotion to timeline
/// 2 at segment 5, WAL up to 000000020000000000000007, and 00000002.history.
fn fixture() -> Fixture {
    let f = Fixture {
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::create_dir_all(f.repo()).unwrap();
    let storage = f.storage();
    let v15 = "15".parse().unwrap();
    let archive = ArchiveInfo::new(v15, 7, None);
    let mut info = BackupInfo::new(v15, 7, 1300, 202_209_061, None);

    let content = b"15\n";
    let stored = pgkeep_base::compress::compress(CompressType::Gz, 6, content).unwrap();
    f.write(
        &format!("backup/demo/{FULL}/pg_data/PG_VERSION.gz"),
        &stored,
    );
    let mut manifest = Manifest::new(
        ManifestBackup {
            label: FULL.to_string(),
            prior: None,
            backup_type: BackupType::Full,
            reference: vec![FULL.to_string()],
            archive_start: Some("000000010000000000000002".to_string()),
            archive_stop: Some("000000010000000000000003".to_string()),
            lsn_start: Some("0/2000028".to_string()),
            lsn_stop: Some("0/3000100".to_string()),
            timestamp_copy_start: 1_767_225_600,
            timestamp_start: 1_767_225_600,
            timestamp_stop: 1_767_225_601,
            bundle: false,
            bundle_raw: false,
            block_incr: false,
        },
        ManifestBackupDb {
            id: 1,
            system_id: 7,
            catalog_version: 202_209_061,
            control_version: 1300,
            version: v15,
        },
        ManifestOptions {
            archive_check: true,
            archive_copy: false,
            backup_standby: Some(false),
            buffer_size: Some(1_048_576),
            checksum_page: Some(true),
            compress_type: CompressType::Gz,
            compress_level: Some(6),
            compress_level_network: Some(3),
            delta: Some(false),
            hardlink: false,
            online: true,
            process_max: Some(1),
        },
    );
    manifest.targets.insert(
        "pg_data".to_string(),
        ManifestTarget {
            target_type: TargetType::Path,
            path: "/data".to_string(),
            file: None,
            tablespace_id: None,
            tablespace_name: None,
            extra: BTreeMap::new(),
        },
    );
    manifest.paths.insert(
        "pg_data".to_string(),
        ManifestPath {
            mode: 0o700,
            user: Some("postgres".into()),
            group: Some("postgres".into()),
            extra: BTreeMap::new(),
        },
    );
    let mut file = ManifestFile::new(
        3,
        1_767_225_600,
        0o600,
        Some("postgres".into()),
        Some("postgres".into()),
    );
    file.checksum = Some(sha1(content).into());
    file.checksum_repo = Some(sha1(&stored).into());
    file.size_repo = stored.len() as u64;
    manifest
        .files
        .insert("pg_data/PG_VERSION".to_string(), file);
    save_info(
        &storage,
        &layout::manifest_path("demo", FULL),
        &manifest,
        None,
    )
    .unwrap();
    info.add_backup(FULL, BackupInfoEntry::from_manifest(&manifest));
    save_info(&storage, "archive/demo/archive.info", &archive, None).unwrap();
    save_info(&storage, "backup/demo/backup.info", &info, None).unwrap();

    for name in [
        "000000010000000000000001",
        "000000010000000000000002",
        "000000010000000000000003",
        "000000010000000000000004",
        "000000020000000000000005",
        "000000020000000000000006",
        "000000020000000000000007",
    ] {
        f.segment(name);
    }
    f.write(
        "archive/demo/15-1/00000002.history",
        b"1\t0/5000000\tno recovery target specified\n",
    );
    f
}

#[test]
fn a_clean_repository_has_no_errors_and_pgbackrest_s_ranges() {
    let f = fixture();
    let report = f.report(&[]);
    assert_eq!(report.errors, 0, "{report:#?}");
    let archive = &report.archives[0];
    assert_eq!((archive.total_wal, archive.valid_wal), (7, 7));
    let ranges: Vec<(&str, &str)> = archive
        .ranges
        .iter()
        .map(|r| (r.start.as_str(), r.stop.as_str()))
        .collect();
    assert_eq!(
        ranges,
        vec![
            ("000000010000000000000001", "000000010000000000000004"),
            ("000000020000000000000005", "000000020000000000000007"),
        ]
    );
    assert_eq!(report.backups[0].status, BackupStatus::Valid);
    assert_eq!(report.backups[0].valid_files, 1);
    assert_eq!(render::render_text(&report, false), "");
}

#[test]
fn missing_wal_gaps_and_history_files_are_errors() {
    let f = fixture();
    let storage = f.storage();
    let remove = |segment: &str| {
        let dir = format!("archive/demo/15-1/{}", &segment[..16]);
        for e in storage.list(&dir, InfoLevel::Exists).unwrap().unwrap() {
            if e.name.starts_with(segment) {
                storage.remove(&format!("{dir}/{}", e.name), false).unwrap();
            }
        }
    };
    remove("000000010000000000000003");
    remove("000000020000000000000006");
    std::fs::remove_file(f.repo().join("archive/demo/15-1/00000002.history")).unwrap();
    let report = f.report(&[]);
    assert_eq!(report.errors, 4, "{report:#?}");
    assert_eq!(
        report.backups[0].missing_wal,
        vec![(
            "15-1/000000010000000000000003".to_string(),
            "15-1/000000010000000000000003".to_string()
        )]
    );
    assert_eq!(report.backups[0].status, BackupStatus::Invalid);
    let archive = &report.archives[0];
    // the gap at 3 is also on the way from the backup to the newest WAL; 6 on timeline 2 as well
    assert_eq!(
        archive.missing_wal,
        vec![
            (
                "000000010000000000000003".to_string(),
                "000000010000000000000003".to_string()
            ),
            (
                "000000020000000000000006".to_string(),
                "000000020000000000000006".to_string()
            ),
        ]
    );
    assert_eq!(
        archive.history,
        vec![("15-1/00000002.history".to_string(), None)]
    );
    let text = render::render_text(&report, false);
    assert!(
        text.contains("\n    missing history file '15-1/00000002.history'"),
        "{text}"
    );
    assert!(
        text.contains("\n    missing WAL '15-1/000000010000000000000003'"),
        "{text}"
    );
}

#[test]
fn damaged_files_twins_and_history_are_named() {
    let f = fixture();
    // a WAL file whose content does not match its name, a history file that is not one, a damaged info copy
    let path = f.segment("000000020000000000000007");
    let mut bytes = std::fs::read(f.repo().join(&path)).unwrap();
    let other = f.segment("000000010000000000000004");
    bytes.clone_from(&std::fs::read(f.repo().join(&other)).unwrap());
    std::fs::write(f.repo().join(&path), bytes).unwrap();
    f.write("archive/demo/15-1/00000002.history", b"garbage\n");
    f.write("backup/demo/backup.info.copy", b"[backrest]\n");
    f.write(&format!("backup/demo/{FULL}/backup.manifest.copy"), b"");
    let report = f.report(&[]);
    assert_eq!(report.archives[0].ranges[1].invalid.len(), 1);
    assert_eq!(
        report.archives[0].ranges[1].invalid[0].reason,
        "invalid checksum"
    );
    assert!(
        matches!(&report.archives[0].history[..], [(name, Some(_))] if name == "15-1/00000002.history")
    );
    assert_eq!(report.info_errors.len(), 1);
    assert_eq!(report.info_errors[0].0, "backup.info.copy");
    assert_eq!(report.backups[0].manifest_errors.len(), 1);
    assert_eq!(
        report.backups[0].manifest_errors[0].0,
        format!("{FULL}/backup.manifest.copy")
    );
    assert_eq!(report.errors, 4, "{report:#?}");

    // --set limits the archive to the backup's own WAL, which is intact
    let report = f.report(&[&format!("--set={FULL}")]);
    assert_eq!(report.archives[0].total_wal, 2);
    assert_eq!(report.errors, 2, "{report:#?}");
}

#[test]
fn history_files_are_parsed() {
    let f = fixture();
    let storage = f.storage();
    let path = "archive/demo/15-1/00000002.history";
    assert!(read_history(&storage, path, None, 2).unwrap());
    assert!(!read_history(&storage, "archive/demo/15-1/00000009.history", None, 9).unwrap());
    // a parent timeline must be older than the file's own
    assert!(read_history(&storage, path, None, 1).is_err());
    f.write(path, b"# comment\n\n1\t0/5000000\treason\n2\tnot-an-lsn\n");
    assert!(read_history(&storage, path, None, 3).is_err());
}

#[test]
fn histories_must_agree() {
    let v15 = "15".parse().unwrap();
    let archive = ArchiveInfo::new(v15, 7, None);
    let backup = BackupInfo::new(v15, 7, 1300, 202_209_061, None);
    check_history(&archive, &backup).unwrap();
    let mut other = BackupInfo::new(v15, 8, 1300, 202_209_061, None);
    let err = check_history(&archive, &other).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FileInvalid);
    assert!(
        err.message()
            .starts_with("backup info file and archive info file do not match\narchive: id = 1")
    );
    other.history[0].system_id = 7;
    other.current.system_id = 7;
    other.add_history(v15, 7, 1300, 202_209_061);
    let mut upgraded = archive.clone();
    upgraded.add_history(v15, 7);
    upgraded.history[0].system_id = 1;
    let err = check_history(&upgraded, &other).unwrap_err();
    assert_eq!(
        err.message(),
        "archive and backup history lists do not match"
    );
}
