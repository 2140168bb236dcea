//! WAL archive retention of `expire` (pgBackRest 2.45 `removeExpiredArchive()`).
//!
//! Contract:
//! - Nothing is removed unless archive retention is set (explicitly, or defaulted from `repo-retention-full` /
//!   `repo-retention-diff` by the configuration, or by time-based full retention) and at least that many backups of
//!   `repo-retention-archive-type` exist.
//! - The newest `repo-retention-archive` backups of that type are retained for archive; per archive id (oldest
//!   history entry first) the oldest of them belonging to the id is the *retention backup*. An archive id with no
//!   retained backup at all is removed entirely unless it is the current one.
//! - WAL is kept when it lies in `[archive-start, archive-stop]` of any backup of the id not newer than the
//!   retention backup, or at/after the retention backup's archive start: every retained backup stays consistent,
//!   and point-in-time recovery from the retention backup onwards stays possible. Whole 16-character directories
//!   outside every range go at once; directories up to the retention start are pruned file by file (names compared
//!   by their first 24 characters, so `.backup` and `.partial` files follow their segment). Timeline history files
//!   of timelines older than the retention backup's are removed.
//! - Log lines are pgBackRest's: `repoN: <id> remove archive, start = <first>, stop = <last>` for each run of
//!   removed files, `repoN: remove archive path <absolute path>`, `repoN: <id> no archive to remove`, and (detail)
//!   `repoN: <id> archive retention on backup <label>, start = <seg>[, stop = <seg>]`.

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_repo::ArchiveInfo;
use pgkeep_repo::info::{BackupInfo, load_info};
use pgkeep_repo::layout::{self, BackupType};
use pgkeep_repo::retention::{self, KeepRange, prefix};
use pgkeep_storage::join;

use super::{Expirer, FAULT_ARCHIVE, list_names};

/// A run of removed WAL to log as one line.
#[derive(Default)]
struct Removed {
    total: u64,
    start: Option<String>,
    stop: Option<String>,
}

impl Removed {
    /// Log the pending run, if any (pgBackRest `logExpire()`).
    fn flush(&mut self, expirer: &Expirer<'_>, archive_id: &str) {
        if let Some(start) = self.start.take() {
            expirer.info(&format!(
                "{archive_id} remove archive, start = {start}, stop = {}",
                self.stop.as_deref().unwrap_or_default()
            ));
        }
    }
}

/// Apply archive retention to one repo; `archive_retention` is the effective `repo-retention-archive`.
///
/// # Errors
/// Archive info load errors, `Format` when archive and backup history disagree, storage errors.
pub(super) fn remove_expired(
    expirer: &Expirer<'_>,
    info: &BackupInfo,
    archive_retention: Option<i64>,
) -> Result<()> {
    let keep = archive_retention
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    if keep == 0 {
        let key = expirer.repo.key;
        if expirer.retention.full_time {
            expirer.info("time-based archive retention not met - archive logs will not be expired");
        } else {
            expirer.ctx.log.info(&format!(
                "option 'repo{key}-retention-archive' is not set - archive logs will not be expired"
            ));
        }
        return Ok(());
    }

    let types: &[BackupType] = match expirer.retention.archive_type {
        BackupType::Full => &[BackupType::Full],
        BackupType::Diff => &[BackupType::Full, BackupType::Diff],
        BackupType::Incr => &[BackupType::Full, BackupType::Diff, BackupType::Incr],
    };
    let mut global = retention::labels_of_type(info, types);
    global.reverse();
    if global.is_empty() || keep > global.len() {
        return Ok(());
    }

    let storage = expirer.storage;
    let stanza = expirer.stanza;
    let archive_info: ArchiveInfo = load_info(
        storage,
        &layout::archive_info_path(stanza),
        expirer.repo.cipher_pass.as_deref(),
    )?;
    let mut on_disk: Vec<String> = list_names(storage, &layout::archive_path(stanza))?
        .into_iter()
        .filter(|n| retention::is_archive_id(n))
        .collect();
    retention::sort_archive_ids(&mut on_disk);
    let global_keep: Vec<&String> = global.iter().take(keep).collect();

    // archive.info and backup.info must describe the same clusters, compared from the newest entry down
    for (i, a) in archive_info.history.iter().rev().enumerate() {
        let same =
            info.history.iter().rev().nth(i).is_some_and(|b| {
                b.id == a.id && b.system_id == a.system_id && b.version == a.version
            });
        if !same {
            return Err(Error::new(
                ErrorKind::Format,
                "archive expiration cannot continue - archive and backup history lists do not match",
            ));
        }
    }

    for pg in &archive_info.history {
        let archive_id = pg.archive_id();
        if !on_disk.contains(&archive_id) {
            continue;
        }
        // retained backups of this cluster, oldest first
        let local: Vec<&String> = global
            .iter()
            .rev()
            .filter(|l| info.backups.get(*l).is_some_and(|b| b.db_id == pg.id))
            .collect();
        let Some(&newest_local) = local.last() else {
            if archive_info.current.id != pg.id {
                let path = layout::archive_id_path(stanza, &archive_id);
                expirer.info(&format!(
                    "remove archive path {}",
                    join(storage.root(), &path)
                ));
                if !expirer.dry_run {
                    storage.remove_path(&path, true)?;
                    expirer.fault_once(FAULT_ARCHIVE, "expire-archive-removed");
                }
            }
            continue;
        };
        let retention_label = global_keep
            .iter()
            .rev()
            .find(|l| local.contains(l))
            .copied()
            .unwrap_or(newest_local);
        let Some((ranges, expire_max)) =
            retention::archive_keep_ranges(info, pg.id, retention_label)
        else {
            continue;
        };
        for range in &ranges {
            expirer.ctx.log.detail(&format!(
                "{}: {archive_id} archive retention on backup {}, start = {}{}",
                expirer.name,
                range.label,
                range.start,
                range
                    .stop
                    .as_deref()
                    .map(|s| format!(", stop = {s}"))
                    .unwrap_or_default()
            ));
        }
        let removed = prune(expirer, &archive_id, &ranges, &expire_max)?;
        if removed.total == 0 {
            expirer.info(&format!("{archive_id} no archive to remove"));
        }
        remove_history_files(expirer, &archive_id, &expire_max)?;
    }
    Ok(())
}

/// Remove the WAL of `archive_id` outside `ranges`; returns the tally (its last run already logged).
fn prune(
    expirer: &Expirer<'_>,
    archive_id: &str,
    ranges: &[KeepRange],
    expire_max: &str,
) -> Result<Removed> {
    let storage = expirer.storage;
    let base = layout::archive_id_path(expirer.stanza, archive_id);
    let mut dirs: Vec<String> = list_names(storage, &base)?
        .into_iter()
        .filter(|n| layout::is_wal_dir(n))
        .collect();
    dirs.sort();
    let mut removed = Removed::default();
    for dir in dirs {
        if !ranges.iter().any(|r| r.holds_dir(&dir)) {
            if !expirer.dry_run {
                storage.remove_path(&format!("{base}/{dir}"), true)?;
                expirer.fault_once(FAULT_ARCHIVE, "expire-archive-removed");
            }
            removed.total += 1;
            removed.start = Some(dir.clone());
            removed.stop = Some(dir);
        } else if dir.as_str() <= prefix(expire_max, 16) {
            let mut files: Vec<String> = list_names(storage, &format!("{base}/{dir}"))?
                .into_iter()
                .filter(|n| n.len() >= 24 && n.bytes().take(24).all(|b| (b'0'..=b'F').contains(&b)))
                .collect();
            files.sort();
            for file in files {
                if ranges.iter().any(|r| r.holds_file(&file)) {
                    removed.flush(expirer, archive_id);
                    continue;
                }
                if !expirer.dry_run {
                    storage.remove(&format!("{base}/{dir}/{file}"), true)?;
                    expirer.fault_once(FAULT_ARCHIVE, "expire-archive-removed");
                }
                removed.total += 1;
                let segment = prefix(&file, 24).to_string();
                if removed.start.is_none() {
                    removed.start = Some(segment.clone());
                }
                removed.stop = Some(segment);
            }
        }
    }
    removed.flush(expirer, archive_id);
    Ok(removed)
}

/// Timeline history files older than the retention backup's timeline.
fn remove_history_files(expirer: &Expirer<'_>, archive_id: &str, expire_max: &str) -> Result<()> {
    let storage = expirer.storage;
    let base = layout::archive_id_path(expirer.stanza, archive_id);
    let timeline = prefix(expire_max, 8);
    let mut files: Vec<String> = list_names(storage, &base)?
        .into_iter()
        .filter(|n| layout::is_timeline_history(n))
        .collect();
    files.sort();
    for file in files {
        if prefix(&file, 8) < timeline {
            if !expirer.dry_run {
                storage.remove(&format!("{base}/{file}"), true)?;
            }
            expirer.info(&format!("{archive_id} remove history file {file}"));
        }
    }
    Ok(())
}
