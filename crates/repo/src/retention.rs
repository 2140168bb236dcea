//! How the backups of a stanza depend on each other and on the WAL archive, and how `backup.info` is reconciled
//! with the backup directories actually present (pgBackRest `infoBackupDataDependentList()`,
//! `infoBackupLoadFileReconstruct()` and the range rules of `removeExpiredArchive()` in `src/command/expire/expire.c`).
//!
//! Contract:
//! - [`dependents`] is a backup plus every backup whose `backup-prior` chain leads to it, in pgBackRest's order
//!   (the label first, then dependents oldest to newest). Removing them newest first keeps every remaining backup
//!   restorable at every step.
//! - [`reconstruct`] drops listed backups whose `backup.manifest` is gone (with their dependents) and adds complete
//!   backups found on disk that belong to a known cluster and whose prior is listed; it returns pgBackRest's warning
//!   lines instead of logging, and never writes.
//! - [`archive_keep_ranges`] says which WAL an archive id must keep so that every retained backup of it stays
//!   consistent (`[archive-start, archive-stop]`) and the archive-retention backup can be played forward (an open
//!   range from its archive-start). Comparisons are plain string comparisons, as in pgBackRest.
//! - Nothing here deletes anything; the expire command does, in the order its contract documents.

use pgkeep_base::Result;
use pgkeep_storage::{InfoLevel, Storage};

use crate::layout::{self, BackupType};
use crate::manifest::LazyManifest;
use crate::{BackupInfo, BackupInfoEntry};

/// `label` and every backup depending on it (directly or through other dependents): the label first, then the
/// dependents in label order.
#[must_use]
pub fn dependents(info: &BackupInfo, label: &str) -> Vec<String> {
    let mut result = vec![label.to_string()];
    for (other, entry) in &info.backups {
        if entry.prior.as_ref().is_some_and(|p| result.contains(p)) && !result.contains(other) {
            result.push(other.clone());
        }
    }
    result
}

/// Labels in backup.info whose type (by label) is one of `types`, ascending.
#[must_use]
pub fn labels_of_type(info: &BackupInfo, types: &[BackupType]) -> Vec<String> {
    info.backups
        .keys()
        .filter(|l| layout::backup_type_from_label(l).is_some_and(|t| types.contains(&t)))
        .cloned()
        .collect()
}

/// Directories of `backup/<stanza>` named like backup labels, ascending.
///
/// # Errors
/// Storage errors.
pub fn backup_dirs(storage: &dyn Storage, stanza: &str) -> Result<Vec<String>> {
    let mut labels: Vec<String> = storage
        .list(&layout::backup_path(stanza), InfoLevel::Exists)?
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.name)
        .filter(|n| layout::is_backup_label(n))
        .collect();
    labels.sort();
    Ok(labels)
}

fn exists(storage: &dyn Storage, path: &str) -> Result<bool> {
    Ok(storage.info(path, InfoLevel::Exists, true)?.is_some())
}

/// Reconcile `info` with the backup directories (see the module contract). Returns the warnings pgBackRest logs,
/// in its order.
///
/// # Errors
/// Storage errors, and load errors of a `backup.manifest` that exists but cannot be read.
pub fn reconstruct(
    storage: &dyn Storage,
    stanza: &str,
    info: &mut BackupInfo,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let on_disk = backup_dirs(storage, stanza)?;

    let listed: Vec<String> = info.backups.keys().cloned().collect();
    for label in &listed {
        if !info.backups.contains_key(label)
            || exists(storage, &layout::manifest_path(stanza, label))?
        {
            continue;
        }
        let mut removed = dependents(info, label);
        removed.sort();
        for gone in removed.iter().rev() {
            warnings.push(format!(
                "backup '{gone}' missing manifest removed from {}",
                layout::BACKUP_INFO_FILE
            ));
            info.remove_backup(gone);
        }
    }

    for label in on_disk {
        if info.backups.contains_key(&label) {
            continue;
        }
        let path = layout::manifest_path(stanza, &label);
        if !exists(storage, &path)? {
            continue;
        }
        let manifest = LazyManifest::load_full(storage, &path, info.cipher_pass.as_deref())?;
        let known = info.history.iter().any(|h| {
            h.id == manifest.db.id
                && h.system_id == manifest.db.system_id
                && h.version == manifest.db.version
        });
        let prior_ok = manifest
            .backup
            .prior
            .as_ref()
            .is_none_or(|p| info.backups.contains_key(p));
        if known && prior_ok {
            warnings.push(format!(
                "backup '{label}' found in repository added to {}",
                layout::BACKUP_INFO_FILE
            ));
            info.add_backup(label, BackupInfoEntry::from_manifest(&manifest));
        } else {
            warnings.push(format!(
                "invalid backup '{}' cannot be added to current backups",
                manifest.backup.label
            ));
        }
    }
    Ok(warnings)
}

/// A WAL range one retained backup needs: from `start` to `stop` inclusive, or onwards when `stop` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepRange {
    /// Label of the backup the range belongs to.
    pub label: String,
    /// First segment (24 characters).
    pub start: String,
    /// Last segment; `None` for the archive-retention backup (kept for point-in-time recovery).
    pub stop: Option<String>,
}

impl KeepRange {
    /// Is the 16-character WAL directory `dir` (timeline + log) inside this range?
    #[must_use]
    pub fn holds_dir(&self, dir: &str) -> bool {
        dir >= prefix(&self.start, 16)
            && self
                .stop
                .as_deref()
                .is_none_or(|stop| dir <= prefix(stop, 16))
    }

    /// Is the archive file `name` (its first 24 characters) inside this range?
    #[must_use]
    pub fn holds_file(&self, name: &str) -> bool {
        let segment = prefix(name, 24);
        segment >= self.start.as_str() && self.stop.as_deref().is_none_or(|stop| segment <= stop)
    }
}

/// The first `n` bytes of `s` (all of it when shorter or not on a character boundary).
#[must_use]
pub fn prefix(s: &str, n: usize) -> &str {
    s.get(..n).unwrap_or(s)
}

/// The WAL ranges archive id `pg_id` keeps when `retention_label` is the oldest backup retained for archive
/// retention: one closed range per older-or-equal backup of that cluster with an archive start, the retention
/// backup's own range open-ended. Also returns the retention backup's archive start (`archiveExpireMax`), below
/// which individual files may be removed. `None` when the retention backup has no archive start (an offline
/// backup cannot anchor archive expiration).
#[must_use]
pub fn archive_keep_ranges(
    info: &BackupInfo,
    pg_id: u32,
    retention_label: &str,
) -> Option<(Vec<KeepRange>, String)> {
    let retention = info.backups.get(retention_label)?;
    let expire_max = retention.archive_start.clone()?;
    let mut ranges = Vec::new();
    for (label, entry) in &info.backups {
        if entry.db_id != pg_id || label.as_str() > retention_label {
            continue;
        }
        let Some(start) = entry.archive_start.clone() else {
            continue;
        };
        let stop = if label == retention_label {
            None
        } else {
            entry.archive_stop.clone()
        };
        ranges.push(KeepRange {
            label: label.clone(),
            start,
            stop,
        });
    }
    Some((ranges, expire_max))
}

/// Sort archive ids (`<version>-<id>`) by their history id, as pgBackRest's `archiveIdComparator()`.
pub fn sort_archive_ids(ids: &mut [String]) {
    ids.sort_by_key(|id| archive_id_pg_id(id).unwrap_or(0));
}

/// The history id of an archive id (`15-2` gives 2).
#[must_use]
pub fn archive_id_pg_id(archive_id: &str) -> Option<u32> {
    archive_id
        .rsplit_once('-')
        .and_then(|(_, id)| id.parse().ok())
}

/// `^[0-9]+(\.[0-9]+)*-[0-9]+$`: an archive id directory.
#[must_use]
pub fn is_archive_id(name: &str) -> bool {
    let Some((version, id)) = name.rsplit_once('-') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(id) && version.split('.').all(digits)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::info::InfoFile;
    use crate::test_storage::MemStorage;

    const BACKUP_INFO: &[u8] = include_bytes!("../tests/fixtures/gen/repo1-backup.info");
    const FULL_MANIFEST_GZ: &[u8] = include_bytes!("../tests/fixtures/gen/repo1-full.manifest.gz");
    const FULL: &str = "20261125-043833F";
    const INCR: &str = "20261125-043833F_20261125-043844I";

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// backup.info of the fixture plus synthetic diff/incr/full entries copied from the incr entry.
    fn chain() -> BackupInfo {
        let mut info = BackupInfo::from_bytes(BACKUP_INFO, "").unwrap();
        let template = info.backups[INCR].clone();
        let add = |info: &mut BackupInfo,
                   label: &str,
                   prior: &str,
                   ty: BackupType,
                   start: &str,
                   stop: &str| {
            let mut e = template.clone();
            e.prior = (!prior.is_empty()).then(|| prior.to_string());
            e.backup_type = ty;
            e.archive_start = Some(start.to_string());
            e.archive_stop = Some(stop.to_string());
            info.add_backup(label, e);
        };
        add(
            &mut info,
            "20261125-043833F_20261125-050000D",
            FULL,
            BackupType::Diff,
            "00000001000000000000000A",
            "00000001000000000000000B",
        );
        add(
            &mut info,
            "20261125-043833F_20261125-050100I",
            "20261125-043833F_20261125-050000D",
            BackupType::Incr,
            "00000001000000000000000C",
            "00000001000000000000000C",
        );
        add(
            &mut info,
            "20261125-060000F",
            "",
            BackupType::Full,
            "000000010000000100000000",
            "000000010000000100000001",
        );
        add(
            &mut info,
            "20261125-060000F_20261125-060100I",
            "20261125-060000F",
            BackupType::Incr,
            "000000010000000100000003",
            "000000010000000100000003",
        );
        info
    }

    #[test]
    fn dependents_follow_the_prior_chain() {
        let info = chain();
        assert_eq!(
            dependents(&info, FULL),
            vec![
                FULL.to_string(),
                INCR.to_string(),
                "20261125-043833F_20261125-050000D".to_string(),
                "20261125-043833F_20261125-050100I".to_string(),
            ]
        );
        assert_eq!(
            dependents(&info, "20261125-043833F_20261125-050000D"),
            vec![
                "20261125-043833F_20261125-050000D".to_string(),
                "20261125-043833F_20261125-050100I".to_string()
            ]
        );
        assert_eq!(
            dependents(&info, "20261125-060000F_20261125-060100I").len(),
            1
        );
        assert_eq!(
            labels_of_type(&info, &[BackupType::Full]),
            vec![FULL.to_string(), "20261125-060000F".to_string()]
        );
        assert_eq!(
            labels_of_type(&info, &[BackupType::Full, BackupType::Diff]).len(),
            3
        );
    }

    #[test]
    fn keep_ranges_close_older_backups_and_open_the_retention_backup() {
        let info = chain();
        let (ranges, max) = archive_keep_ranges(&info, 1, "20261125-060000F").unwrap();
        assert_eq!(max, "000000010000000100000000");
        assert_eq!(ranges.len(), 5);
        let last = ranges.last().unwrap();
        assert_eq!(last.label, "20261125-060000F");
        assert_eq!(last.stop, None);
        let first = &ranges[0];
        assert_eq!(
            (first.start.as_str(), first.stop.as_deref()),
            ("000000010000000000000002", Some("000000010000000000000002"))
        );
        assert!(first.holds_file("000000010000000000000002-abc.gz"));
        assert!(first.holds_file("000000010000000000000002.00000028.backup"));
        assert!(!first.holds_file("000000010000000000000003-abc.gz"));
        assert!(first.holds_dir("0000000100000000"));
        assert!(!first.holds_dir("0000000100000001"));
        assert!(last.holds_dir("0000000100000007"));
        assert!(last.holds_file("000000010000000200000000"));
        // another cluster's id keeps nothing; an unknown label anchors nothing
        assert!(
            archive_keep_ranges(&info, 2, "20261125-060000F")
                .unwrap()
                .0
                .is_empty()
        );
        assert!(archive_keep_ranges(&info, 1, "20990101-000000F").is_none());
        let mut offline = info.clone();
        offline
            .backups
            .get_mut("20261125-060000F")
            .unwrap()
            .archive_start = None;
        assert!(archive_keep_ranges(&offline, 1, "20261125-060000F").is_none());
    }

    #[test]
    fn archive_ids_sort_by_history_id() {
        let mut ids = vec!["9.6-3".to_string(), "15-10".to_string(), "10-2".to_string()];
        sort_archive_ids(&mut ids);
        assert_eq!(ids, ["10-2", "9.6-3", "15-10"]);
        assert!(is_archive_id("9.6-3"));
        assert!(is_archive_id("15-1"));
        assert!(!is_archive_id("15-"));
        assert!(!is_archive_id("archive.info"));
        assert!(!is_archive_id("9..6-1"));
        assert_eq!(archive_id_pg_id("15-12"), Some(12));
        assert_eq!(prefix("abc", 16), "abc");
    }

    #[test]
    fn reconstruct_drops_missing_and_adds_found_backups() {
        let storage = MemStorage::new();
        let manifest = gunzip(FULL_MANIFEST_GZ);
        let mut info = chain();
        // the full's manifest exists; nothing else does: the full stays, every other listed backup goes
        storage.insert(&layout::manifest_path("demo", FULL), &manifest);
        let warnings = reconstruct(&storage, "demo", &mut info).unwrap();
        assert_eq!(
            info.backups.keys().cloned().collect::<Vec<_>>(),
            vec![FULL.to_string()]
        );
        assert_eq!(
            warnings,
            vec![
                "backup '20261125-043833F_20261125-043844I' missing manifest removed from backup.info",
                "backup '20261125-043833F_20261125-050100I' missing manifest removed from backup.info",
                "backup '20261125-043833F_20261125-050000D' missing manifest removed from backup.info",
                "backup '20261125-060000F_20261125-060100I' missing manifest removed from backup.info",
                "backup '20261125-060000F' missing manifest removed from backup.info",
            ]
        );

        // a complete backup on disk that backup.info lost is added back with the entry pgBackRest computes
        let full_entry = info.remove_backup(FULL).unwrap();
        let warnings = reconstruct(&storage, "demo", &mut info).unwrap();
        assert_eq!(
            warnings,
            vec![format!(
                "backup '{FULL}' found in repository added to backup.info"
            )]
        );
        assert_eq!(info.backups[FULL], full_entry);

        // an unfinished backup (only the copy) is left alone; one of an unknown cluster is refused
        storage.insert(
            &layout::copy_path(&layout::manifest_path("demo", "20261126-000000F")),
            &manifest,
        );
        let mut other = info.clone();
        other.remove_backup(FULL);
        other.history[0].system_id += 1;
        let warnings = reconstruct(&storage, "demo", &mut other).unwrap();
        assert_eq!(
            warnings,
            vec![format!(
                "invalid backup '{FULL}' cannot be added to current backups"
            )]
        );
        assert!(other.backups.is_empty());
        // nothing was written
        assert!(storage.read("backup/demo/backup.info").is_none());
    }
}
