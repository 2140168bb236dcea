//! `start` and `stop`: remove or create the stop file that keeps commands from running
//! (pgBackRest `src/command/control/`). `stop --force` also sends SIGTERM to the processes that hold
//! the stanza's locks.

use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

use pgkeep_base::{Error, ErrorKind, Result};

use crate::ctx::Ctx;
use crate::lock;

/// `start`.
///
/// # Errors
/// When the stop file exists but cannot be removed.
pub fn start(ctx: &Ctx) -> Result<()> {
    let stop_file = lock::stop_file(ctx.lock_path(), ctx.stanza_opt());
    match std::fs::remove_file(&stop_file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            ctx.log.warn(&match ctx.stanza_opt() {
                Some(stanza) => format!("stop file does not exist for stanza {stanza}"),
                None => "stop file does not exist".to_string(),
            });
            Ok(())
        }
        Err(e) => Err(Error::io(
            ErrorKind::FileRemove,
            "unable to remove",
            stop_file.display(),
            &e,
        )),
    }
}

/// `stop`.
///
/// # Errors
/// When the lock path or the stop file cannot be created.
pub fn stop(ctx: &Ctx) -> Result<()> {
    let lock_path = ctx.lock_path();
    let stop_file = lock::stop_file(lock_path, ctx.stanza_opt());
    if stop_file.exists() {
        ctx.log.warn(&match ctx.stanza_opt() {
            Some(stanza) => format!("stop file already exists for stanza {stanza}"),
            None => "stop file already exists for all stanzas".to_string(),
        });
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o770)
        .create(lock_path)
        .map_err(|e| {
            Error::io(
                ErrorKind::PathCreate,
                "unable to create path",
                lock_path,
                &e,
            )
        })?;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .open(&stop_file)
        .map_err(|e| {
            Error::io(
                ErrorKind::FileOpen,
                "unable to open file",
                stop_file.display(),
                &e,
            )
        })?;
    file.sync_all().map_err(|e| {
        Error::io(
            ErrorKind::FileSync,
            "unable to sync file",
            stop_file.display(),
            &e,
        )
    })?;
    if let Ok(dir) = std::fs::File::open(lock_path) {
        let _ = dir.sync_all();
    }

    if ctx.force() {
        terminate_lock_holders(ctx, lock_path)?;
    }
    Ok(())
}

/// Send SIGTERM to every process holding a lock of the stanza (or of any stanza).
fn terminate_lock_holders(ctx: &Ctx, lock_path: &str) -> Result<()> {
    let entries = std::fs::read_dir(lock_path).map_err(|e| {
        Error::io(
            ErrorKind::PathOpen,
            "unable to list file info for path",
            lock_path,
            &e,
        )
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        if !name.ends_with(".lock") {
            continue;
        }
        if let Some(stanza) = ctx.stanza_opt()
            && name != format!("{stanza}-archive.lock")
            && name != format!("{stanza}-backup.lock")
        {
            continue;
        }
        let path = std::path::Path::new(lock_path).join(&name);
        let Some(lock::LockData { pid, .. }) = lock::held(&path) else {
            ctx.log
                .warn(&format!("unable to read lock file {}", path.display()));
            continue;
        };
        let Ok(pid) = i32::try_from(pid) else {
            continue;
        };
        match nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        ) {
            Ok(()) => ctx.log.info(&format!("sent term signal to process {pid}")),
            Err(_) => ctx
                .log
                .warn(&format!("unable to send term signal to process {pid}")),
        }
    }
    Ok(())
}
