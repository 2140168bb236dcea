//! The data directory (PGDATA) as a backup sees it: what is excluded, which files are relations,
//! which are page-checksummed, how relation segments and tablespaces are named.
//!
//! Contract:
//! - Every rule matches pgBackRest 2.45 (`manifestBuildInfo()` and `manifestNewBuild()` in
//!   `src/info/manifest.c`, `backupProcessFilePrimary()` and `segmentNumber()` in
//!   `src/command/backup/`), including the quirks of its regular expressions.
//! - Paths are relative to PGDATA and `/`-separated. Files of a tablespace are named through the
//!   link in `pg_tblspc`: `pg_tblspc/<oid>/PG_<major>_<catalog>/<db oid>/<relfilenode>`.
//! - Pure functions over names: nothing here touches the file system.
//! - What differs between majors comes from the version table ([`crate::version`]); the one
//!   rule it has no column for (`backup_manifest`, written by PostgreSQL 13+) is a row of
//!   [`ROOT_FILE_EXCLUSIONS`].

use pgkeep_base::Result;

use crate::version::{PgVersion, RecoveryStyle, VersionInfo};

/// pg_control, relative to PGDATA.
pub const PG_CONTROL: &str = "global/pg_control";
/// The file naming the major version (in PGDATA and every database directory).
pub const PG_VERSION: &str = "PG_VERSION";
/// Map of relation file nodes (every database directory and `global`).
pub const PG_FILENODE_MAP: &str = "pg_filenode.map";
/// The backup label returned by the backup stop function.
pub const BACKUP_LABEL: &str = "backup_label";
/// The tablespace map returned by the backup stop function.
pub const TABLESPACE_MAP: &str = "tablespace_map";
/// Pid file of a running postmaster.
pub const POSTMASTER_PID: &str = "postmaster.pid";
/// Directory holding one symlink per tablespace.
pub const TABLESPACE_DIR: &str = "pg_tblspc";
/// Status directory inside the WAL directory.
pub const ARCHIVE_STATUS_DIR: &str = "archive_status";
/// Prefix of temporary files and directories (anywhere in the cluster).
pub const PGSQL_TMP_PREFIX: &str = "pgsql_tmp";
/// Relation cache init file in database directories.
pub const PG_INTERNAL_INIT: &str = "pg_internal.init";

/// Directories in the PGDATA root that are kept but whose contents are not backed up: their
/// files are recreated or reset by PostgreSQL and useless after a restore.
pub const ROOT_DIR_CONTENT_EXCLUSIONS: &[&str] = &[
    "pg_dynshmem",
    "pg_notify",
    "pg_replslot",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
];

/// Files in the PGDATA root that are never backed up, with the majors they apply to
/// (`min..=max`, inclusive). Recovery files depend on the recovery style and are handled
/// separately.
pub const ROOT_FILE_EXCLUSIONS: &[(&str, u32, u32)] = &[
    ("postmaster.pid", 0, u32::MAX),
    ("postmaster.opts", 0, u32::MAX),
    ("backup_label.old", 0, u32::MAX),
    // non-exclusive backups (every supported major) return the label from the stop function
    ("backup_label", 0, u32::MAX),
    ("postgresql.auto.conf.tmp", 0, u32::MAX),
    ("backup_manifest", 13, u32::MAX),
    ("backup_manifest.tmp", 13, u32::MAX),
];

/// The data directory rules of one major.
#[derive(Debug, Clone)]
pub struct DataDir {
    info: &'static VersionInfo,
    tablespace_id: String,
}

impl DataDir {
    /// Rules for `version`, whose tablespace directories are `PG_<major>_<catalog_version>`.
    ///
    /// # Errors
    /// `VersionNotSupported` for a major without a row in the version table.
    pub fn new(version: PgVersion, catalog_version: u32) -> Result<DataDir> {
        Ok(DataDir {
            info: version.require_info()?,
            tablespace_id: version.tablespace_id(catalog_version),
        })
    }

    /// The version table row.
    #[must_use]
    pub fn info(&self) -> &'static VersionInfo {
        self.info
    }

    /// `PG_<major>_<catalog>`: the directory of this cluster inside each tablespace.
    #[must_use]
    pub fn tablespace_id(&self) -> &str {
        &self.tablespace_id
    }

    /// The WAL directory (`pg_wal`).
    #[must_use]
    pub fn wal_dir(&self) -> &'static str {
        self.info.wal_path
    }

    /// Is `name` (in the PGDATA root) a directory whose contents are not backed up? The WAL
    /// directory's contents are handled by [`DataDir::wal_file_excluded`].
    #[must_use]
    pub fn root_dir_contents_excluded(&self, name: &str) -> bool {
        ROOT_DIR_CONTENT_EXCLUSIONS.contains(&name)
    }

    /// Is the file `name` in the PGDATA root excluded?
    #[must_use]
    pub fn root_file_excluded(&self, name: &str) -> bool {
        let major = self.info.major;
        let recovery = match self.info.recovery {
            RecoveryStyle::RecoveryConf => ["recovery.conf", "recovery.done"],
            RecoveryStyle::SignalFile => ["recovery.signal", "standby.signal"],
        };
        recovery.contains(&name)
            || ROOT_FILE_EXCLUSIONS
                .iter()
                .any(|(file, min, max)| *file == name && (*min..=*max).contains(&major))
    }

    /// Are the contents of directory `rel` excluded because it is the WAL archive status
    /// directory and the backup is online?
    #[must_use]
    pub fn wal_status_dir(&self, rel: &str, online: bool) -> bool {
        online
            && rel
                .strip_prefix(self.info.wal_path)
                .and_then(|rest| rest.strip_prefix('/'))
                == Some(ARCHIVE_STATUS_DIR)
    }

    /// Is a file directly in directory `parent_rel` excluded because it is WAL and the backup
    /// is online (the WAL comes from the archive)?
    #[must_use]
    pub fn wal_file_excluded(&self, parent_rel: &str, online: bool) -> bool {
        online && parent_rel == self.info.wal_path
    }

    /// Is `rel` a database directory: `global`, `base/<oid>` or
    /// `pg_tblspc/<oid>/PG_<major>_<catalog>/<oid>`?
    #[must_use]
    pub fn is_database_path(&self, rel: &str) -> bool {
        if rel == "global" {
            return true;
        }
        if let Some(oid) = rel.strip_prefix("base/") {
            return is_digits(oid);
        }
        let Some(rest) = rel.strip_prefix("pg_tblspc/") else {
            return false;
        };
        let mut parts = rest.split('/');
        matches!(
            (parts.next(), parts.next(), parts.next(), parts.next()),
            (Some(ts), Some(id), Some(db), None)
                if is_digits(ts) && id == self.tablespace_id && is_digits(db)
        )
    }

    /// Is `rel` (a file in a database directory) a relation whose page checksums are checked?
    /// Everything but `pg_filenode.map`, `PG_VERSION` and `global/pg_control` is.
    #[must_use]
    pub fn checksum_page_file(&self, rel: &str) -> bool {
        let name = base_name(rel);
        name != PG_FILENODE_MAP && name != PG_VERSION && rel != PG_CONTROL
    }

    /// Is `rel` read only up to the size recorded when the manifest was built? True for the
    /// files PostgreSQL extends while running (relations, transaction status), whose tail is
    /// rewritten by WAL replay anyway; not for pg_control, which must be read whole.
    #[must_use]
    pub fn copy_exact_size(&self, rel: &str) -> bool {
        if rel == PG_CONTROL {
            return false;
        }
        let top = rel.split('/').next().unwrap_or_default();
        rel.contains('/')
            && (top == "base"
                || top == "global"
                || top == self.info.xact_path
                || top == "pg_multixact"
                || top == TABLESPACE_DIR)
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn base_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

/// Is `name` (any file or directory, anywhere) temporary (`pgsql_tmp*`)?
#[must_use]
pub fn is_pgsql_tmp(name: &str) -> bool {
    name.starts_with(PGSQL_TMP_PREFIX)
}

/// `[0-9]+(_(fsm|vm))?(\.[0-9]+)?` on the whole of `s`.
fn is_relation_tail(s: &str) -> bool {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let mut rest = s.get(digits..).unwrap_or_default();
    for fork in ["_fsm", "_vm"] {
        if let Some(r) = rest.strip_prefix(fork) {
            rest = r;
            break;
        }
    }
    match rest.strip_prefix('.') {
        None => rest.is_empty(),
        Some(seg) => is_digits(seg),
    }
}

/// Is `name` a relation file (`<relfilenode>[_fsm|_vm][.<segment>]`)? `_init` forks are not.
#[must_use]
pub fn is_relation_file(name: &str) -> bool {
    is_relation_tail(name)
}

/// Is `name` a temporary relation (`t<backend>_<relfilenode>[_fsm|_vm][.<segment>]`)?
#[must_use]
pub fn is_temp_relation(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('t') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0
        && rest
            .get(digits..)
            .and_then(|r| r.strip_prefix('_'))
            .is_some_and(is_relation_tail)
}

/// Is `name` (a file in a database directory) the relation cache init file or one of its
/// leftover temp copies (`pg_internal.init.<pid>`)? Like pgBackRest, a suffix counts when it
/// holds a `.` followed by a digit.
#[must_use]
pub fn is_pg_internal_init(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PG_INTERNAL_INIT) else {
        return false;
    };
    rest.is_empty()
        || rest
            .as_bytes()
            .windows(2)
            .any(|w| w.first() == Some(&b'.') && w.get(1).is_some_and(u8::is_ascii_digit))
}

/// The `_init` fork of the relation file `rel` (`base/5/16384.1` -> `base/5/16384_init`);
/// `None` when `rel` is not a relation file. A relation whose init fork exists is unlogged: only
/// the init fork is backed up.
#[must_use]
pub fn init_fork(rel: &str) -> Option<String> {
    let name = base_name(rel);
    if !is_relation_file(name) {
        return None;
    }
    let dir = rel.get(..rel.len() - name.len()).unwrap_or_default();
    let id_len = name.bytes().take_while(u8::is_ascii_digit).count();
    let id = name.get(..id_len)?;
    Some(format!("{dir}{id}_init"))
}

/// Segment number of a relation file: the number after a final `.<digits>`, else 0
/// (`16384.2` -> 2, `16384` -> 0). Block numbers of page checksums count from
/// `segment * 131072`.
#[must_use]
pub fn segment_no(rel: &str) -> u32 {
    match rel.rsplit_once('.') {
        Some((_, seg)) if is_digits(seg) => seg.parse().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dd(major: u32) -> DataDir {
        let v = PgVersion::from_major(major).unwrap();
        DataDir::new(v, v.require_info().unwrap().catalog_version).unwrap()
    }

    #[test]
    fn tablespace_id_and_database_paths() {
        let d = dd(15);
        assert_eq!(d.tablespace_id(), "PG_15_202209061");
        for yes in [
            "global",
            "base/1",
            "base/16384",
            "pg_tblspc/16385/PG_15_202209061/5",
        ] {
            assert!(d.is_database_path(yes), "{yes}");
        }
        for no in [
            "base",
            "base/x1",
            "base/1/2",
            "pg_tblspc/16385",
            "pg_tblspc/16385/PG_15_202209061",
            "pg_tblspc/16385/PG_14_202107181/5",
            "pg_tblspc/16385/PG_15_202209061/5/6",
            "pg_wal",
            "globalx",
        ] {
            assert!(!d.is_database_path(no), "{no}");
        }
    }

    #[test]
    fn root_files_by_major() {
        let d15 = dd(15);
        let d11 = dd(11);
        let d12 = dd(12);
        for f in [
            "postmaster.pid",
            "postmaster.opts",
            "backup_label",
            "backup_label.old",
            "postgresql.auto.conf.tmp",
            "recovery.signal",
            "standby.signal",
            "backup_manifest",
            "backup_manifest.tmp",
        ] {
            assert!(d15.root_file_excluded(f), "{f}");
        }
        assert!(!d15.root_file_excluded("recovery.conf"));
        assert!(!d15.root_file_excluded("postgresql.conf"));
        assert!(d11.root_file_excluded("recovery.conf"));
        assert!(d11.root_file_excluded("recovery.done"));
        assert!(!d11.root_file_excluded("recovery.signal"));
        assert!(!d12.root_file_excluded("backup_manifest"));
        assert!(dd(13).root_file_excluded("backup_manifest"));
    }

    #[test]
    fn root_dirs_and_wal() {
        let d = dd(15);
        for name in ROOT_DIR_CONTENT_EXCLUSIONS {
            assert!(d.root_dir_contents_excluded(name));
        }
        assert!(!d.root_dir_contents_excluded("pg_stat"));
        assert!(!d.root_dir_contents_excluded("pg_logical"));
        assert!(d.wal_status_dir("pg_wal/archive_status", true));
        assert!(!d.wal_status_dir("pg_wal/archive_status", false));
        assert!(!d.wal_status_dir("pg_walx/archive_status", true));
        assert!(d.wal_file_excluded("pg_wal", true));
        assert!(!d.wal_file_excluded("pg_wal", false));
        assert!(!d.wal_file_excluded("pg_wal/archive_status", true));
        assert_eq!(d.wal_dir(), "pg_wal");
    }

    #[test]
    fn relation_names() {
        for yes in [
            "1",
            "16384",
            "16384_fsm",
            "16384_vm",
            "16384.1",
            "16384_vm.12",
        ] {
            assert!(is_relation_file(yes), "{yes}");
        }
        for no in [
            "",
            "16384_init",
            "16384_init.1",
            "16384.",
            "16384.x",
            "x1",
            "16384_fsm_vm",
        ] {
            assert!(!is_relation_file(no), "{no}");
        }
        for yes in ["t3_16384", "t12_1_fsm", "t1_2.3", "t1_2_vm.4"] {
            assert!(is_temp_relation(yes), "{yes}");
        }
        for no in ["t_16384", "t3", "t3_", "16384", "t3_x", "tt3_1"] {
            assert!(!is_temp_relation(no), "{no}");
        }
    }

    #[test]
    fn internal_init_and_tmp() {
        assert!(is_pg_internal_init("pg_internal.init"));
        assert!(is_pg_internal_init("pg_internal.init.1234"));
        assert!(!is_pg_internal_init("pg_internal.initx"));
        assert!(!is_pg_internal_init("pg_internal"));
        assert!(is_pgsql_tmp("pgsql_tmp"));
        assert!(is_pgsql_tmp("pgsql_tmp123.4"));
        assert!(!is_pgsql_tmp("xpgsql_tmp"));
    }

    #[test]
    fn init_forks_and_segments() {
        assert_eq!(
            init_fork("base/5/16384.1").as_deref(),
            Some("base/5/16384_init")
        );
        assert_eq!(
            init_fork("pg_tblspc/1/PG_15_202209061/5/77_vm").as_deref(),
            Some("pg_tblspc/1/PG_15_202209061/5/77_init")
        );
        assert_eq!(init_fork("base/5/16384_init"), None);
        assert_eq!(init_fork("base/5/PG_VERSION"), None);
        assert_eq!(segment_no("base/5/16384.2"), 2);
        assert_eq!(segment_no("base/5/16384"), 0);
        assert_eq!(segment_no("base/5/16384_fsm"), 0);
        assert_eq!(segment_no("base/5/x.y"), 0);
    }

    #[test]
    fn checksum_and_exact_size() {
        let d = dd(15);
        assert!(d.checksum_page_file("base/5/16384"));
        assert!(!d.checksum_page_file("base/5/PG_VERSION"));
        assert!(!d.checksum_page_file("base/5/pg_filenode.map"));
        assert!(!d.checksum_page_file("global/pg_control"));
        assert!(d.checksum_page_file("global/1260"));
        assert!(d.copy_exact_size("base/5/16384"));
        assert!(d.copy_exact_size("global/1260"));
        assert!(d.copy_exact_size("pg_xact/0000"));
        assert!(d.copy_exact_size("pg_multixact/members/0000"));
        assert!(d.copy_exact_size("pg_tblspc/1/PG_15_202209061/5/1"));
        assert!(!d.copy_exact_size("global/pg_control"));
        assert!(!d.copy_exact_size("postgresql.conf"));
        assert!(!d.copy_exact_size("pg_stat/x"));
        assert!(!d.copy_exact_size("base"));
    }
}
