//! Command locks and stop files, compatible with pgBackRest 2.45 (`src/common/lock.c`,
//! `src/command/control/`), so pgkeep and pgbackrest exclude each other on the same host.
//!
//! Contract:
//! - A lock is `<lock-path>/<stanza>-<archive|backup>.lock`, opened `O_RDWR|O_CREAT` (0640) and held
//!   with a non-blocking exclusive `flock`. The kernel drops the lock when the process dies, so a
//!   stale file never blocks anyone. Its content is pgBackRest's JSON, byte for byte and without a
//!   newline: `{"execId":"..","pid":N}`, or `{"execId":"..","pctCplt":N,"pid":N}` while a backup
//!   records its progress (percent × 100, see [`BackupPercent`]); `info` shows that percentage.
//! - Release removes the file, then closes it (dropping [`LockGuard`] does both).
//! - A stop file is `<lock-path>/<stanza>.stop` or `<lock-path>/all.stop`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use pgkeep_base::{Error, ErrorKind, Result};

/// Which lock a command takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockType {
    /// The archive lock (archive-push/get async).
    Archive,
    /// The backup lock (backup, expire, annotate).
    Backup,
    /// Both (stanza-create/-upgrade/-delete).
    All,
}

/// Held locks; released (files removed) on drop.
#[derive(Debug)]
pub struct LockGuard {
    held: Vec<(PathBuf, File)>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        for (path, _file) in self.held.drain(..) {
            held_registry().retain(|(p, _)| *p != path);
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Descriptors of the lock files this process holds, so that [`write_backup_data`] rewrites the
/// file it locked (as pgBackRest's `lockWriteData` does through its held descriptor), not
/// whatever file has that name now: a lock file unlinked by a cleaner, or a new one created and
/// locked by another process since, is never written to.
static HELD: std::sync::Mutex<Vec<(PathBuf, File)>> = std::sync::Mutex::new(Vec::new());

fn held_registry() -> std::sync::MutexGuard<'static, Vec<(PathBuf, File)>> {
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Lock file name for a stanza and type.
#[must_use]
pub fn lock_file(lock_path: &str, stanza: &str, archive: bool) -> PathBuf {
    Path::new(lock_path).join(format!(
        "{stanza}-{}.lock",
        if archive { "archive" } else { "backup" }
    ))
}

/// Acquire the locks of `lock_type` for `stanza`, failing at once when another process holds them.
///
/// # Errors
/// `LockAcquire` (50) naming the file, with pgBackRest's hints.
pub fn acquire(
    lock_path: &str,
    stanza: &str,
    lock_type: LockType,
    exec_id: &str,
) -> Result<LockGuard> {
    let kinds: &[bool] = match lock_type {
        LockType::Archive => &[true],
        LockType::Backup => &[false],
        LockType::All => &[true, false],
    };
    let mut guard = LockGuard { held: Vec::new() };
    for &archive in kinds {
        let path = lock_file(lock_path, stanza, archive);
        let file = open_lock(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                // Another process of the same command run (same exec id) counts as holding it for us.
                if read_lock(&path).is_some_and(|data| data.exec_id == exec_id) {
                    continue;
                }
                return Err(Error::new(
                    ErrorKind::LockAcquire,
                    format!(
                        "unable to acquire lock on file '{}': Resource temporarily unavailable\nHINT: is another pgBackRest process running?",
                        path.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(
                    ErrorKind::LockAcquire,
                    "unable to acquire lock on file",
                    path.display(),
                    &e,
                ));
            }
        }
        let mut file = file;
        rewrite(&mut file, &path, &LockData::ours(exec_id, None))?;
        if let Ok(copy) = file.try_clone() {
            held_registry().push((path.clone(), copy));
        }
        guard.held.push((path, file));
    }
    Ok(guard)
}

fn open_lock(path: &Path) -> Result<File> {
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .open(path)
    };
    match open() {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o770)
                    .create(parent)
                    .map_err(|e| {
                        Error::io(
                            ErrorKind::PathCreate,
                            "unable to create path",
                            parent.display(),
                            &e,
                        )
                    })?;
            }
            open().map_err(|e| {
                Error::io(
                    ErrorKind::LockAcquire,
                    "unable to acquire lock on file",
                    path.display(),
                    &e,
                )
            })
        }
        Err(e) => {
            let mut err = Error::io(
                ErrorKind::LockAcquire,
                "unable to acquire lock on file",
                path.display(),
                &e,
            );
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                err = err.with_hint(format!(
                    "does the user running pgkeep have permissions on the '{}' file?",
                    path.display()
                ));
            }
            Err(err)
        }
    }
}

/// The content of a lock file (pgBackRest `LockData`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockData {
    /// Exec id of the holder: processes of one command run share it.
    pub exec_id: String,
    /// Progress of a running backup, percent × 100 (`4242` = 42.42%), when recorded.
    pub percent_complete: Option<u32>,
    /// Process id of the holder.
    pub pid: i64,
}

impl LockData {
    /// The data of this process.
    #[must_use]
    pub fn ours(exec_id: &str, percent_complete: Option<u32>) -> LockData {
        LockData {
            exec_id: exec_id.to_string(),
            percent_complete,
            pid: i64::from(std::process::id()),
        }
    }

    /// The bytes pgBackRest writes: keys in its order, no whitespace, no newline.
    #[must_use]
    pub fn to_json(&self) -> String {
        let exec_id = serde_json::Value::String(self.exec_id.clone());
        match self.percent_complete {
            Some(pct) => format!(
                "{{\"execId\":{exec_id},\"pctCplt\":{pct},\"pid\":{}}}",
                self.pid
            ),
            None => format!("{{\"execId\":{exec_id},\"pid\":{}}}", self.pid),
        }
    }

    /// Parse lock file content; `None` when it is not a valid lock (pgBackRest's "invalid"): not a
    /// JSON object, `execId` or `pid` missing, or a `pctCplt` that is not an unsigned 32-bit number.
    /// Whatever follows the object is ignored, as pgBackRest ignores it.
    #[must_use]
    pub fn parse(text: &str) -> Option<LockData> {
        let value: serde_json::Value = serde_json::Deserializer::from_str(text)
            .into_iter()
            .next()?
            .ok()?;
        let exec_id = value.get("execId")?.as_str()?.to_string();
        let pid = value.get("pid")?.as_i64()?;
        let percent_complete = match value.get("pctCplt") {
            None => None,
            Some(v) => Some(u32::try_from(v.as_u64()?).ok()?),
        };
        Some(LockData {
            exec_id,
            percent_complete,
            pid,
        })
    }
}

/// Replace the content of an open lock file: write from the start, then cut what is left of a
/// longer previous content. A reader never sees an empty file this way (a backup's content only
/// grows while it copies); at worst, while the content shrinks, it sees the new JSON followed by a
/// tail of the old one, which [`LockData::parse`] ignores as pgBackRest's reader does.
fn rewrite(file: &mut File, path: &Path, data: &LockData) -> Result<()> {
    let bytes = data.to_json();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.write_all(bytes.as_bytes()))
        .and_then(|()| file.set_len(bytes.len() as u64))
        .map_err(|e| {
            Error::io(
                ErrorKind::FileWrite,
                "unable to write lock file",
                path.display(),
                &e,
            )
        })
}

/// Read a lock file; `None` when absent, unreadable or invalid.
#[must_use]
pub fn read_lock(path: &Path) -> Option<LockData> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    LockData::parse(&text)
}

/// Is the lock held by a live process right now? Returns the lock content when it is.
#[must_use]
pub fn held(path: &Path) -> Option<LockData> {
    let file = File::open(path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(_) => read_lock(path),
    }
}

/// Rewrite the backup lock of `stanza`, held by this command run, with `percent_complete`
/// (pgBackRest `lockWriteData()`); `None` removes the percentage, as pgBackRest does before the
/// expire that follows a backup.
///
/// # Errors
/// `FileOpen`/`FileWrite` naming the lock file.
pub fn write_backup_data(
    lock_path: &str,
    stanza: &str,
    exec_id: &str,
    percent_complete: Option<u32>,
) -> Result<()> {
    let path = lock_file(lock_path, stanza, false);
    {
        let mut held = held_registry();
        if let Some((_, file)) = held.iter_mut().find(|(p, _)| *p == path) {
            return rewrite(file, &path, &LockData::ours(exec_id, percent_complete));
        }
    }
    let mut file = OpenOptions::new().write(true).open(&path).map_err(|e| {
        Error::io(
            ErrorKind::FileOpen,
            "unable to open lock file",
            path.display(),
            &e,
        )
    })?;
    rewrite(&mut file, &path, &LockData::ours(exec_id, percent_complete))
}

/// A backup's progress as recorded in its lock file (pgBackRest `backupJobResult()`): zero when the
/// copy starts, then rewritten whenever the percentage (× 100, from bytes copied over bytes to copy)
/// has grown by more than 0.10% since it was last written — a few hundred writes at most.
#[derive(Debug)]
pub struct BackupPercent {
    lock_path: String,
    stanza: String,
    exec_id: String,
    current: u32,
}

impl BackupPercent {
    /// Record 0% in the lock file.
    ///
    /// # Errors
    /// As [`write_backup_data`].
    pub fn start(lock_path: &str, stanza: &str, exec_id: &str) -> Result<BackupPercent> {
        write_backup_data(lock_path, stanza, exec_id, Some(0))?;
        Ok(BackupPercent {
            lock_path: lock_path.to_string(),
            stanza: stanza.to_string(),
            exec_id: exec_id.to_string(),
            current: 0,
        })
    }

    /// `done` of `total` bytes are copied: rewrite the lock file when the change is significant.
    ///
    /// # Errors
    /// As [`write_backup_data`].
    pub fn update(&mut self, done: u64, total: u64) -> Result<()> {
        let percent = crate::progress::percent_x100(done, total);
        if percent.wrapping_sub(self.current) > 10 {
            self.current = percent;
            write_backup_data(&self.lock_path, &self.stanza, &self.exec_id, Some(percent))?;
        }
        Ok(())
    }
}

/// Stop file name: `<lock-path>/<stanza>.stop`, or `all.stop` without a stanza.
#[must_use]
pub fn stop_file(lock_path: &str, stanza: Option<&str>) -> PathBuf {
    Path::new(lock_path).join(format!("{}.stop", stanza.unwrap_or("all")))
}

/// Fail with `Stop` (62) when a stop file exists for the stanza or for all stanzas.
///
/// # Errors
/// `Stop` when stopped.
pub fn stop_test(lock_path: &str, stanza: Option<&str>) -> Result<()> {
    if let Some(stanza) = stanza
        && stop_file(lock_path, Some(stanza)).exists()
    {
        return Err(Error::new(
            ErrorKind::Stop,
            format!("stop file exists for stanza {stanza}"),
        ));
    }
    if stop_file(lock_path, None).exists() {
        return Err(Error::new(
            ErrorKind::Stop,
            "stop file exists for all stanzas",
        ));
    }
    Ok(())
}

/// A new exec id: `<pid>-<8 hex>`.
#[must_use]
pub fn new_exec_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(16))
        .unwrap_or(0);
    format!(
        "{}-{:08x}",
        std::process::id(),
        nanos.wrapping_mul(2_654_435_761)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks");
        let lp = path.to_str().unwrap();
        let guard = acquire(lp, "demo", LockType::All, "1-aaaaaaaa").unwrap();
        let backup = lock_file(lp, "demo", false);
        assert_eq!(
            std::fs::read_to_string(&backup).unwrap(),
            format!(
                "{{\"execId\":\"1-aaaaaaaa\",\"pid\":{}}}",
                std::process::id()
            )
        );
        assert_eq!(
            read_lock(&backup).unwrap(),
            LockData::ours("1-aaaaaaaa", None)
        );
        assert!(held(&backup).is_some());
        let err = acquire(lp, "demo", LockType::Backup, "2-bbbbbbbb").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LockAcquire);
        assert!(
            err.message().contains("demo-backup.lock"),
            "{}",
            err.message()
        );
        // same exec id: treated as held by us
        let _again = acquire(lp, "demo", LockType::Backup, "1-aaaaaaaa").unwrap();
        drop(guard);
        assert!(!backup.exists());
        let _other = acquire(lp, "demo", LockType::Backup, "2-bbbbbbbb").unwrap();
    }

    #[test]
    fn lock_data_round_trips_in_pgbackrest_bytes() {
        let data = LockData {
            exec_id: "123-abcdef01".to_string(),
            percent_complete: Some(2345),
            pid: 123,
        };
        let text = data.to_json();
        assert_eq!(
            text,
            r#"{"execId":"123-abcdef01","pctCplt":2345,"pid":123}"#
        );
        assert_eq!(LockData::parse(&text), Some(data.clone()));
        let plain = LockData {
            percent_complete: None,
            ..data
        };
        assert_eq!(plain.to_json(), r#"{"execId":"123-abcdef01","pid":123}"#);
        assert_eq!(LockData::parse(&plain.to_json()), Some(plain));
        // what pgBackRest wrote, with a trailing newline from an older pgkeep
        assert_eq!(
            LockData::parse("{\"execId\":\"9-x\",\"pid\":9}\n").map(|d| d.pid),
            Some(9)
        );
        // a shorter content written over a longer one, caught before the cut
        assert_eq!(
            LockData::parse(r#"{"execId":"a","pid":1}"pid":1}"#).map(|d| d.percent_complete),
            Some(None)
        );
        // invalid locks, as pgBackRest's reader rejects them
        assert_eq!(LockData::parse(r#"{"pid":1}"#), None);
        assert_eq!(
            LockData::parse(r#"{"execId":"a","pctCplt":-1,"pid":1}"#),
            None
        );
        assert_eq!(
            LockData::parse(r#"{"execId":"a","pctCplt":"1","pid":1}"#),
            None
        );
        assert_eq!(
            LockData::parse(r#"{"execId":"a","pctCplt":4294967296,"pid":1}"#),
            None
        );
        assert_eq!(LockData::parse(""), None);
    }

    #[test]
    fn backup_percent_is_written_when_it_moves_more_than_a_tenth() {
        let dir = tempfile::tempdir().unwrap();
        let lp = dir.path().to_str().unwrap();
        let guard = acquire(lp, "demo", LockType::Backup, "7-00000007").unwrap();
        let path = lock_file(lp, "demo", false);
        let pct = || held(&path).unwrap().percent_complete;
        let mut percent = BackupPercent::start(lp, "demo", "7-00000007").unwrap();
        assert_eq!(pct(), Some(0));
        percent.update(10, 10_000).unwrap(); // 0.10%: not more than 0.10
        assert_eq!((pct(), percent.current), (Some(0), 0));
        percent.update(11, 10_000).unwrap(); // 0.11%
        assert_eq!(pct(), Some(11));
        percent.update(2_345, 10_000).unwrap();
        assert_eq!(pct(), Some(2345));
        percent.update(10_000, 10_000).unwrap();
        assert_eq!(pct(), Some(10_000));
        // shorter content after longer: no leftover bytes
        write_backup_data(lp, "demo", "7-00000007", None).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!(
                "{{\"execId\":\"7-00000007\",\"pid\":{}}}",
                std::process::id()
            )
        );
        drop(guard);
        assert!(held(&path).is_none());
        assert!(write_backup_data(lp, "demo", "7-00000007", Some(1)).is_err());
    }

    #[test]
    fn progress_goes_to_the_held_lock_file_not_to_a_new_file_of_that_name() {
        let dir = tempfile::tempdir().unwrap();
        let lp = dir.path().to_str().unwrap();
        let guard = acquire(lp, "held", LockType::Backup, "1-bbbbbbbb").unwrap();
        let path = lock_file(lp, "held", false);
        write_backup_data(lp, "held", "1-bbbbbbbb", Some(1234)).unwrap();
        assert_eq!(read_lock(&path).unwrap().percent_complete, Some(1234));
        // a cleaner removed the file and someone else made one with that name
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "other").unwrap();
        write_backup_data(lp, "held", "1-bbbbbbbb", Some(5000)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "other");
        drop(guard);
        // released: the registry no longer knows the path, a write goes by name again
        std::fs::write(&path, "").unwrap();
        write_backup_data(lp, "held", "1-bbbbbbbb", Some(7)).unwrap();
        assert_eq!(read_lock(&path).unwrap().percent_complete, Some(7));
    }

    #[test]
    fn stop_files_block_by_stanza_and_all() {
        let dir = tempfile::tempdir().unwrap();
        let lp = dir.path().to_str().unwrap();
        stop_test(lp, Some("demo")).unwrap();
        std::fs::write(stop_file(lp, Some("demo")), b"").unwrap();
        assert_eq!(
            stop_test(lp, Some("demo")).unwrap_err().message(),
            "stop file exists for stanza demo"
        );
        stop_test(lp, Some("other")).unwrap();
        std::fs::write(stop_file(lp, None), b"").unwrap();
        assert_eq!(stop_test(lp, Some("other")).unwrap_err().code(), 62);
    }

    #[test]
    fn exec_id_has_pid_and_8_hex() {
        let id = new_exec_id();
        let (pid, hex) = id.split_once('-').unwrap();
        assert_eq!(pid, std::process::id().to_string());
        assert_eq!(hex.len(), 8);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
