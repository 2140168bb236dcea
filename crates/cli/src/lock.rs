//! Command locks and stop files, compatible with pgBackRest 2.45 (`src/common/lock.c`,
//! `src/command/control/`), so pgkeep and pgbackrest exclude each other on the same host.
//!
//! Contract:
//! - A lock is `<lock-path>/<stanza>-<archive|backup>.lock`, opened `O_RDWR|O_CREAT` (0640) and held
//!   with a non-blocking exclusive `flock`. The kernel drops the lock when the process dies, so a
//!   stale file never blocks anyone; its content is one line of JSON `{"execId":"..","pid":N}`.
//! - Release removes the file, then closes it (dropping [`LockGuard`] does both).
//! - A stop file is `<lock-path>/<stanza>.stop` or `<lock-path>/all.stop`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
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
            let _ = std::fs::remove_file(&path);
        }
    }
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
                if read_lock(&path).is_some_and(|(id, _, _)| id == exec_id) {
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
        let content = format!(
            "{{\"execId\":\"{exec_id}\",\"pid\":{}}}\n",
            std::process::id()
        );
        file.set_len(0)
            .and_then(|()| file.write_all(content.as_bytes()))
            .map_err(|e| {
                Error::io(
                    ErrorKind::FileWrite,
                    "unable to write lock file",
                    path.display(),
                    &e,
                )
            })?;
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

/// Read a lock file: `(exec id, pid, percent complete x100)`; `None` when absent or unreadable.
#[must_use]
pub fn read_lock(path: &Path) -> Option<(String, i64, Option<u64>)> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    let value: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    let exec_id = value.get("execId")?.as_str()?.to_string();
    let pid = value.get("pid")?.as_i64()?;
    let pct = value.get("pctCplt").and_then(serde_json::Value::as_u64);
    Some((exec_id, pid, pct))
}

/// Is the lock held by a live process right now? Returns the lock content when it is.
#[must_use]
pub fn held(path: &Path) -> Option<(String, i64, Option<u64>)> {
    let file = File::open(path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(_) => read_lock(path),
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
        let (id, pid, pct) = read_lock(&backup).unwrap();
        assert_eq!(
            (id.as_str(), pid, pct),
            ("1-aaaaaaaa", i64::from(std::process::id()), None)
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
