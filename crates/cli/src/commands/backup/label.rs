//! Backup labels (pgBackRest `backupLabelCreate()`): the start time in the local time zone, made
//! unique and later than every backup in the repository.
//!
//! Contract: the new label must sort after the newest label found among the backup directories
//! and among the newest year of `backup.history`. When it does not, one second is added (and the
//! caller sleeps into that second); when that is still not enough the backup fails with `Clock`
//! ("has the timezone changed?").

use chrono::TimeZone;
use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_repo::layout::{self, BackupType};
use pgkeep_storage::{InfoLevel, Storage};

/// `YYYYMMDD-HHMMSS` of `timestamp` in the local time zone.
///
/// # Errors
/// `Assert` for a timestamp the calendar cannot represent.
pub fn stamp(timestamp: i64) -> Result<String> {
    chrono::Local
        .timestamp_opt(timestamp, 0)
        .single()
        .map(|t| t.format("%Y%m%d-%H%M%S").to_string())
        .ok_or_else(|| Error::new(ErrorKind::Assert, format!("invalid timestamp {timestamp}")))
}

fn format(backup_type: BackupType, prior: Option<&str>, timestamp: i64) -> Result<String> {
    layout::format_backup_label(backup_type, prior, &stamp(timestamp)?).ok_or_else(|| {
        Error::new(
            ErrorKind::Assert,
            format!("unable to format a {} backup label", backup_type.as_str()),
        )
    })
}

/// Sorted names in `path` that pass `keep`.
fn names(storage: &dyn Storage, path: &str, keep: impl Fn(&str) -> bool) -> Result<Vec<String>> {
    let mut list: Vec<String> = storage
        .list(path, InfoLevel::Exists)?
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.name)
        .filter(|n| keep(n))
        .collect();
    list.sort();
    Ok(list)
}

/// The newest label in the repository: backup directories and the newest history year.
///
/// # Errors
/// Storage errors.
pub fn latest(storage: &dyn Storage, stanza: &str) -> Result<Option<String>> {
    let backups = names(
        storage,
        &layout::backup_path(stanza),
        layout::is_backup_label,
    )?;
    let mut latest = backups.last().cloned();
    let history = layout::history_path(stanza);
    let years = names(storage, &history, |n| {
        n.len() == 4 && n.starts_with('2') && n.bytes().all(|b| b.is_ascii_digit())
    })?;
    if let Some(year) = years.last() {
        let labels = names(storage, &format!("{history}/{year}"), |n| {
            n.strip_suffix(layout::HISTORY_MANIFEST_EXT)
                .is_some_and(layout::is_backup_label)
        })?;
        if let Some(last) = labels.last()
            && let Some(label) = last.strip_suffix(layout::HISTORY_MANIFEST_EXT)
            && latest.as_deref().is_none_or(|l| label > l)
        {
            latest = Some(label.to_string());
        }
    }
    Ok(latest)
}

/// A label for a backup started at `timestamp`; the flag says whether a second was added (the
/// caller then waits for the next second before going on).
///
/// # Errors
/// `Clock` when no later label can be made; storage errors.
pub fn create(
    storage: &dyn Storage,
    stanza: &str,
    backup_type: BackupType,
    prior: Option<&str>,
    timestamp: i64,
) -> Result<(String, bool)> {
    let label = format(backup_type, prior, timestamp)?;
    let Some(latest) = latest(storage, stanza)? else {
        return Ok((label, false));
    };
    if label > latest {
        return Ok((label, false));
    }
    let label = format(backup_type, prior, timestamp + 1)?;
    if label <= latest {
        return Err(Error::new(
            ErrorKind::Clock,
            format!("new backup label '{label}' is not later than latest backup label '{latest}'"),
        )
        .with_hint("has the timezone changed?\nHINT: is there clock skew?"));
    }
    Ok((label, true))
}

#[cfg(test)]
mod tests {
    use pgkeep_storage::posix::PosixStorage;

    use super::*;

    #[test]
    fn labels_are_local_time_and_strictly_increasing() {
        let dir = tempfile::tempdir().unwrap();
        let storage = PosixStorage::new(dir.path().to_str().unwrap());
        let t = 1_800_000_000;
        let (full, bumped) = create(&storage, "demo", BackupType::Full, None, t).unwrap();
        assert!(!bumped);
        assert_eq!(full, format!("{}F", stamp(t).unwrap()));
        std::fs::create_dir_all(dir.path().join("backup/demo").join(&full)).unwrap();
        // same second again: one second later
        let (again, bumped) = create(&storage, "demo", BackupType::Full, None, t).unwrap();
        assert!(bumped);
        assert_eq!(again, format!("{}F", stamp(t + 1).unwrap()));
        let (incr, _) = create(&storage, "demo", BackupType::Incr, Some(&full), t + 5).unwrap();
        assert_eq!(incr, format!("{full}_{}I", stamp(t + 5).unwrap()));
        // a history entry two seconds ahead makes the clock look wrong
        let later = format!("{}F", stamp(t + 10).unwrap());
        let year = dir
            .path()
            .join("backup/demo/backup.history")
            .join(&later[..4]);
        std::fs::create_dir_all(&year).unwrap();
        std::fs::write(year.join(format!("{later}.manifest.gz")), b"").unwrap();
        assert_eq!(latest(&storage, "demo").unwrap(), Some(later.clone()));
        let err = create(&storage, "demo", BackupType::Full, None, t).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Clock);
        assert!(err.message().contains(&later), "{}", err.message());
    }
}
