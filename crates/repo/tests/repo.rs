//! Crate integration: the repository model over the real posix driver, on a copy of files written by pgBackRest
//! 2.45 (see `tests/fixtures/README.md`).

use pgkeep_repo::info::{ArchiveInfo, BackupInfo, load_info, save_info};
use pgkeep_repo::layout;
use pgkeep_storage::Storage;
use pgkeep_storage::posix::PosixStorage;

const ARCHIVE: &[u8] = include_bytes!("fixtures/gen/repo1-archive.info");
const BACKUP: &[u8] = include_bytes!("fixtures/gen/repo1-backup.info");

#[test]
fn posix_round_trip_of_pgbackrest_info_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    let stanza_archive = dir.path().join("archive/demo");
    let stanza_backup = dir.path().join("backup/demo");
    std::fs::create_dir_all(&stanza_archive).unwrap();
    std::fs::create_dir_all(&stanza_backup).unwrap();
    // only the .copy twins exist: load must fall back
    std::fs::write(stanza_archive.join("archive.info.copy"), ARCHIVE).unwrap();
    std::fs::write(stanza_backup.join("backup.info.copy"), BACKUP).unwrap();

    let storage = PosixStorage::new(root);
    let storage: &dyn Storage = &storage;
    let archive: ArchiveInfo =
        load_info(storage, &layout::archive_info_path("demo"), None).unwrap();
    let backup: BackupInfo = load_info(storage, &layout::backup_info_path("demo"), None).unwrap();
    assert_eq!(archive.current.system_id, backup.current.system_id);
    assert_eq!(backup.backups.len(), 2);

    save_info(storage, &layout::archive_info_path("demo"), &archive, None).unwrap();
    save_info(storage, &layout::backup_info_path("demo"), &backup, None).unwrap();
    assert_eq!(
        std::fs::read(stanza_archive.join("archive.info")).unwrap(),
        ARCHIVE
    );
    assert_eq!(
        std::fs::read(stanza_backup.join("backup.info")).unwrap(),
        BACKUP
    );
    assert_eq!(
        std::fs::read(stanza_backup.join("backup.info.copy")).unwrap(),
        BACKUP
    );
}
