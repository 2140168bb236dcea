//! The SQL side of a backup (pgBackRest `dbBackupStart()`, `dbBackupStop()`, `checkDbConfig()`,
//! `backupTime()` in `src/db/db.c` and `src/command/backup/backup.c`).
//!
//! Contract:
//! - Start and stop run on one session (a non-exclusive backup belongs to the session that
//!   started it) and use the function names and arguments of the version table: `pg_backup_start`
//!   / `pg_backup_stop(false)` on 15+, `pg_start_backup(.., .., false)` /
//!   `pg_stop_backup(false, false)` on 10 to 14. The stop never waits for archiving; the backup
//!   checks the repository itself.
//! - The advisory lock is pgBackRest's number, so pgkeep and pgBackRest backups of one cluster
//!   exclude each other.
//! - Start verifies what pgBackRest verifies: pg_control's checkpoint has reached the start LSN and
//!   its timeline is the start segment's; when the start segment is the one that was current
//!   before the start, a WAL switch makes the prior segment complete so archiving can be checked.
//! - Backup from a standby ([`replay_wait`]): the standby must replay past the start LSN and
//!   checkpoint past it (each within `archive-timeout`, the first restarted while replay moves),
//!   and stay on the primary's timeline, before any file is read from it.

use std::time::Duration;

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_pg::client::Client;
use pgkeep_pg::{ControlInfo, Lsn, PgVersion, VersionInfo};

/// pgBackRest's advisory lock id.
pub const ADVISORY_LOCK: &str = "12340078987004321";

/// What the start function returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// Start LSN as PostgreSQL prints it.
    pub lsn: String,
    /// WAL segment of the start LSN.
    pub segment: String,
    /// Segment current before the start; must reach the archive before files are copied.
    pub segment_check: Option<String>,
}

/// What the stop function returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Stop LSN.
    pub lsn: String,
    /// WAL segment of the stop LSN.
    pub segment: String,
    /// Content of `backup_label`.
    pub backup_label: Option<String>,
    /// Content of `tablespace_map`, when not blank.
    pub tablespace_map: Option<String>,
}

/// The start query for `version` (`start_fast` requests an immediate checkpoint).
///
/// # Errors
/// `VersionNotSupported` for a major without a row in the version table.
pub fn start_query(version: PgVersion, start_fast: bool) -> Result<String> {
    let v = version.require_info()?;
    let exclusive = if v.backup_exclusive_arg {
        ", false"
    } else {
        ""
    };
    Ok(format!(
        "select lsn::text as lsn,\n       pg_catalog.pg_{w}file_name(lsn)::text as wal_segment_name\n  from pg_catalog.{f}('pgkeep backup started at ' || current_timestamp, {fast}{exclusive}) as lsn",
        w = v.wal_name,
        f = v.backup_start_fn,
        fast = start_fast,
    ))
}

/// The stop query for `version`.
///
/// # Errors
/// `VersionNotSupported` for a major without a row in the version table.
pub fn stop_query(version: PgVersion) -> Result<String> {
    let v = version.require_info()?;
    let args = if v.backup_exclusive_arg {
        "false, false"
    } else {
        "false"
    };
    Ok(format!(
        "select lsn::text as lsn,\n       pg_catalog.pg_{w}file_name(lsn)::text as wal_segment_name,\n       labelfile::text as backuplabel_file,\n       spcmapfile::text as tablespacemap_file\n  from pg_catalog.{f}({args})",
        w = v.wal_name,
        f = v.backup_stop_fn,
    ))
}

fn row(client: &mut Client, sql: &str, columns: usize) -> Result<Vec<Option<String>>> {
    let rows = client.query_rows(sql)?;
    match rows.as_slice() {
        [row] if row.len() == columns => Ok(row.clone()),
        _ => Err(Error::new(
            ErrorKind::DbQuery,
            format!("unexpected result returned by '{sql}'"),
        )),
    }
}

fn text(value: Option<&Option<String>>, sql: &str) -> Result<String> {
    value
        .cloned()
        .flatten()
        .ok_or_else(|| Error::new(ErrorKind::DbQuery, format!("null returned by '{sql}'")))
}

/// Take the advisory lock that keeps two backups of one cluster apart.
///
/// # Errors
/// `LockAcquire` when another backup holds it.
pub fn advisory_lock(client: &mut Client) -> Result<()> {
    let sql = format!("select pg_catalog.pg_try_advisory_lock({ADVISORY_LOCK})::bool");
    if client.query_value(&sql)?.as_deref() != Some("t") {
        return Err(Error::new(
            ErrorKind::LockAcquire,
            "unable to acquire pgkeep advisory lock",
        )
        .with_hint("is another pgBackRest or pgkeep backup already running on this cluster?"));
    }
    Ok(())
}

/// Start the backup. `read_control` re-reads pg_control after the start checkpoint.
///
/// # Errors
/// Query failures; `DbMismatch` when pg_control does not show the start checkpoint or timeline.
pub fn start(
    client: &mut Client,
    start_fast: bool,
    archive_check: bool,
    read_control: &dyn Fn() -> Result<ControlInfo>,
) -> Result<Started> {
    let segment_check = if archive_check {
        Some(client.current_wal_file()?)
    } else {
        None
    };
    let sql = start_query(client.version(), start_fast)?;
    let values = row(client, &sql, 2)?;
    let lsn = text(values.first(), &sql)?;
    let segment = text(values.get(1), &sql)?;
    let control = read_control()?;
    let lsn_value: Lsn = lsn.parse()?;
    if control.checkpoint < lsn_value.0 {
        return Err(Error::new(
            ErrorKind::DbMismatch,
            format!(
                "current checkpoint '{}' is less than backup start '{lsn}'",
                Lsn(control.checkpoint)
            ),
        ));
    }
    if segment_check.as_deref() == Some(segment.as_str()) {
        client.switch_wal()?;
    }
    let timeline = pgkeep_pg::wal::timeline_of(&segment)?;
    if timeline != control.timeline {
        return Err(Error::new(
            ErrorKind::DbMismatch,
            format!(
                "WAL timeline {timeline} does not match pg_control timeline {}",
                control.timeline
            ),
        ));
    }
    Ok(Started {
        lsn,
        segment,
        segment_check,
    })
}

/// Stop the backup.
///
/// # Errors
/// Query failures.
pub fn stop(client: &mut Client) -> Result<Stopped> {
    let sql = stop_query(client.version())?;
    let values = row(client, &sql, 4)?;
    let tablespace_map = values
        .get(3)
        .cloned()
        .flatten()
        .filter(|map| !map.trim().is_empty());
    Ok(Stopped {
        lsn: text(values.first(), &sql)?,
        segment: text(values.get(1), &sql)?,
        backup_label: values.get(2).cloned().flatten(),
        tablespace_map,
    })
}

/// How often the standby is asked how far it has replayed.
const REPLAY_POLL: Duration = Duration::from_millis(100);

/// The replay query of a backup from a standby: replay LSN, whether it is past `target`, and
/// (after the first round) whether it moved past the LSN seen last time.
///
/// # Errors
/// `VersionNotSupported` for a major without a row in the version table.
pub fn replay_query(version: PgVersion, target: &str, last: Option<&str>) -> Result<String> {
    let v = version.require_info()?;
    let progress = last
        .map(|last| format!(",\n       (replayLsn > '{last}')::bool as replayProgress"))
        .unwrap_or_default();
    Ok(format!(
        "select replayLsn::text,\n       (replayLsn > '{target}')::bool as targetReached{progress}\n  from {} as replayLsn",
        replay_function(v)
    ))
}

fn replay_function(v: &VersionInfo) -> String {
    format!("pg_catalog.pg_last_{}_replay_{}()", v.wal_name, v.lsn_name)
}

/// The checkpoint query of a backup from a standby: is the last checkpoint past `target`?
///
/// # Errors
/// `VersionNotSupported` for a major without a row in the version table.
pub fn checkpoint_query(version: PgVersion, target: &str) -> Result<String> {
    let v = version.require_info()?;
    Ok(format!(
        "select (checkpoint_{l} > '{target}')::bool as targetReached,\n       checkpoint_{l}::text as checkpointLsn\n  from pg_catalog.pg_control_checkpoint()",
        l = v.lsn_name
    ))
}

/// pgBackRest `dbReplayWait()`: wait until the standby has replayed past `target` (the backup
/// start LSN on the primary), then checkpoint it and wait until its checkpoint is past `target`
/// too, so its data files are at least as new as the backup start. `standby_checkpoint` is the
/// checkpoint in the standby's pg_control when it was connected; `read_control` re-reads that
/// file. The timeout restarts whenever replay makes progress.
///
/// # Errors
/// `DbMismatch` when the standby was ahead of the primary or ends on another timeline;
/// `ArchiveTimeout` when replay or the checkpoint does not get there within `timeout`, or the
/// server is not a standby (any more).
pub fn replay_wait(
    client: &mut Client,
    standby_checkpoint: u64,
    target: &str,
    timeline: u32,
    timeout: Duration,
    read_control: &dyn Fn() -> Result<ControlInfo>,
) -> Result<()> {
    let target_value: Lsn = target.parse()?;
    if standby_checkpoint > target_value.0 {
        return Err(Error::new(
            ErrorKind::DbMismatch,
            format!(
                "standby checkpoint '{}' is ahead of target '{target}'",
                Lsn(standby_checkpoint)
            ),
        ));
    }
    let version = client.version();
    let function = replay_function(version.require_info()?);
    let mut deadline = std::time::Instant::now() + timeout;
    let mut last: Option<String> = None;
    loop {
        let sql = replay_query(version, target, last.as_deref())?;
        let values = row(client, &sql, if last.is_some() { 3 } else { 2 })?;
        let Some(replay) = values.first().cloned().flatten() else {
            return Err(Error::new(
                ErrorKind::ArchiveTimeout,
                format!("unable to query replay lsn on the standby using '{function}'"),
            )
            .with_hint("Is this a standby?"));
        };
        let reached = values.get(1).cloned().flatten().as_deref() == Some("t");
        let progress = values.get(2).cloned().flatten().is_none_or(|p| p == "t");
        last = Some(replay.clone());
        if reached {
            break;
        }
        if progress {
            deadline = std::time::Instant::now() + timeout;
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::new(
                ErrorKind::ArchiveTimeout,
                format!("timeout before standby replayed to {target} - only reached {replay}"),
            )
            .with_hint("is replication running and current on the standby?\nHINT: disable the 'backup-standby' option to backup directly from the primary."));
        }
        std::thread::sleep(REPLAY_POLL);
    }

    client.execute("checkpoint")?;
    let deadline = std::time::Instant::now() + timeout;
    let sql = checkpoint_query(version, target)?;
    loop {
        let values = row(client, &sql, 2)?;
        if values.first().cloned().flatten().as_deref() == Some("t") {
            break;
        }
        if std::time::Instant::now() >= deadline {
            let checkpoint = values.get(1).cloned().flatten().unwrap_or_default();
            return Err(Error::new(
                ErrorKind::ArchiveTimeout,
                format!(
                    "timeout before standby checkpoint lsn reached {target} - only reached {checkpoint}"
                ),
            ));
        }
        std::thread::sleep(REPLAY_POLL);
    }

    let control = read_control()?;
    if control.timeline != timeline {
        return Err(Error::new(
            ErrorKind::DbMismatch,
            format!(
                "standby is on timeline {} but expected {timeline}",
                control.timeline
            ),
        ));
    }
    Ok(())
}

/// `checkpoint_timeout` in seconds.
///
/// # Errors
/// Query failures.
pub fn checkpoint_timeout(client: &mut Client) -> Result<Option<Duration>> {
    Ok(client
        .setting("checkpoint_timeout")?
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs))
}

/// The database clock in seconds; with `wait_remainder`, sleep into the next second first (so
/// the copy start time has no one-second ambiguity) and return the second that was waited out.
///
/// # Errors
/// Query failures; `Kernel` when the server clock does not advance.
pub fn time(client: &mut Client, wait_remainder: bool) -> Result<i64> {
    let mut ms = client.time_now_ms()?;
    let result = ms.div_euclid(1000);
    if !wait_remainder {
        return Ok(result);
    }
    for _ in 0..3 {
        let sleep = (result + 1) * 1000 - ms;
        if let Ok(sleep) = u64::try_from(sleep) {
            std::thread::sleep(Duration::from_millis(sleep));
        }
        ms = client.time_now_ms()?;
        if ms.div_euclid(1000) > result {
            return Ok(result);
        }
    }
    Err(Error::new(
        ErrorKind::Kernel,
        "PostgreSQL clock has not advanced to the next second after 3 tries",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_follow_the_version_table() {
        let v15 = PgVersion::from_major(15).unwrap();
        let v14 = PgVersion::from_major(14).unwrap();
        let q = start_query(v15, true).unwrap();
        assert!(q.contains("pg_catalog.pg_backup_start('pgkeep backup started at ' || current_timestamp, true) as lsn"), "{q}");
        assert!(q.contains("pg_catalog.pg_walfile_name(lsn)"));
        let q = start_query(v14, false).unwrap();
        assert!(q.contains("pg_catalog.pg_start_backup('pgkeep backup started at ' || current_timestamp, false, false) as lsn"), "{q}");
        assert!(
            stop_query(v15)
                .unwrap()
                .ends_with("from pg_catalog.pg_backup_stop(false)")
        );
        assert!(
            stop_query(v14)
                .unwrap()
                .ends_with("from pg_catalog.pg_stop_backup(false, false)")
        );
        assert!(
            stop_query(PgVersion::from_major(10).unwrap())
                .unwrap()
                .contains("labelfile::text")
        );
    }

    #[test]
    fn standby_queries_follow_the_version_table() {
        let v15 = PgVersion::from_major(15).unwrap();
        assert_eq!(
            replay_query(v15, "0/3000028", None).unwrap(),
            "select replayLsn::text,\n       (replayLsn > '0/3000028')::bool as targetReached\n  from pg_catalog.pg_last_wal_replay_lsn() as replayLsn"
        );
        let q = replay_query(v15, "0/3000028", Some("0/2000000")).unwrap();
        assert!(
            q.contains("(replayLsn > '0/2000000')::bool as replayProgress\n  from"),
            "{q}"
        );
        assert_eq!(
            checkpoint_query(v15, "0/3000028").unwrap(),
            "select (checkpoint_lsn > '0/3000028')::bool as targetReached,\n       checkpoint_lsn::text as checkpointLsn\n  from pg_catalog.pg_control_checkpoint()"
        );
    }
}
