//! `archive-push` (pgBackRest `src/command/archive/push/push.c`): PostgreSQL's `archive_command`.
//!
//! Contract:
//! - Synchronous (`archive-async=n`): stop file, queue-max check, stanza check of every
//!   repository, then [`job::push_file`]; success is returned only once the file is durable in
//!   every repository that took it.
//! - Stanza check (pgBackRest `archivePushCheck()`): `pg_control` (when `pg1-path` is set) must
//!   match each repository's current archive.info entry, and repositories must match each other;
//!   a failing repository becomes an error line and the push goes on with the others, failing at
//!   the end. No valid repository at all is `RepoInvalid` `unable to find a valid repository:`.
//! - `archive-push-queue-max`: when the WAL waiting in `pg_wal` (by `archive_status/*.ready`)
//!   exceeds it, the file is reported archived without being stored and a warning says so: the
//!   archive then has a gap and point-in-time recovery across it is impossible. That is
//!   pgBackRest's documented choice (it protects the primary's disk); it is never the default.
//! - Asynchronous foreground: answer from the spool `out` queue (`<wal>.ok` = done, `.error` =
//!   fail with its code), starting the background process at most once when no answer is there
//!   and the archive lock is free, until `archive-timeout`.
//! - Background (`archive-push:async <pg_wal>`): holds the archive lock; cleans `out` (every
//!   non-`.ok` file, and `.ok` files whose `.ready` is gone); pushes every ready WAL file without
//!   an `.ok`, `process-max` at a time in threads, in name order; writes `<wal>.ok` only after
//!   the file is stored, `<wal>.error` when it fails, `global.error` for a failure that stops the
//!   whole run. Killing it at any moment leaves no `.ok` for anything not stored, and a `.error`
//!   is removed by the next run, so the next call of `archive_command` recovers.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_config::{CommandRole, Group, OptionId};
use pgkeep_pg::PgVersion;
use pgkeep_repo::ArchiveInfo;
use pgkeep_repo::info::load_info;
use pgkeep_repo::layout;
use pgkeep_storage::Storage;

use super::job::{self, PushOptions, PushRepo};
use super::{Queue, Spool, Wait, base_name, dir_name, repo_error_line, size_format, wal_path};
use crate::commands::db;
use crate::ctx::Ctx;
use crate::lock;
use crate::log::{Logger, error_text};

/// Most threads one segment's compression gets (more do not pay off for 16 MiB).
const COMPRESS_WORKERS_MAX: usize = 4;

/// Extension of PostgreSQL's "ready to archive" markers.
const STATUS_EXT_READY: &str = ".ready";

/// `archive-push` in any role.
///
/// # Errors
/// See the module contract.
pub fn run(ctx: &Ctx) -> Result<()> {
    match ctx.cfg.role() {
        CommandRole::Async => {
            super::close_inherited_fds();
            super::run_logged(ctx, |log| run_async(ctx, log))
        }
        _ => run_main(ctx),
    }
}

/// The stanza's version, system id and the repositories to push to.
pub struct PushCheck {
    /// Version pushed segments must have.
    pub pg_version: PgVersion,
    /// System id pushed segments must have.
    pub system_id: u64,
    /// Repositories that passed the check.
    pub repos: Vec<PushRepo>,
    /// `repoN: [Type] message` of those that did not.
    pub errors: Vec<String>,
}

/// pgBackRest `archivePushCheck()` (see the module contract).
///
/// # Errors
/// `pg_control` errors; `RepoInvalid` when no repository is usable.
pub fn push_check(ctx: &Ctx, pg_path_set: bool) -> Result<PushCheck> {
    let stanza = ctx.stanza()?;
    let mut expected: Option<(PgVersion, u64)> = None;
    if pg_path_set {
        let control = db::read_control(ctx, ctx.cfg.default_index(Group::Pg))?;
        expected = Some((control.version, control.system_id));
    }
    let mut repos = Vec::new();
    let mut errors = Vec::new();
    let keys = ctx.cfg.indexes(Group::Repo);
    let first_key = keys.first().copied().unwrap_or(1);
    let mut first = true;
    for key in keys {
        let attempt = (|| -> Result<PushRepo> {
            let repo = ctx.repo(key)?;
            let info: ArchiveInfo = load_info(
                repo.storage.as_ref(),
                &layout::archive_info_path(stanza),
                repo.cipher_pass.as_deref(),
            )?;
            let current = *info.current();
            if let Some((version, system_id)) = expected
                && (pg_path_set || !first)
                && (version != current.version || system_id != current.system_id)
            {
                let who = if pg_path_set {
                    "PostgreSQL".to_string()
                } else {
                    format!("repo{first_key} stanza")
                };
                return Err(Error::new(
                    ErrorKind::ArchiveMismatch,
                    format!(
                        "{who} version {version}, system-id {system_id} do not match repo{key} stanza version {}, system-id {}",
                        current.version, current.system_id
                    ),
                )
                .with_hint("are you archiving to the correct stanza?"));
            }
            expected = Some((current.version, current.system_id));
            Ok(PushRepo {
                key,
                storage: repo.storage,
                archive_id: current.archive_id(),
                cipher_pass: info.cipher_pass,
            })
        })();
        first = false;
        match attempt {
            Ok(repo) => repos.push(repo),
            Err(e) => errors.push(repo_error_line(key, &e)),
        }
    }
    match expected {
        Some((pg_version, system_id)) if !repos.is_empty() => Ok(PushCheck {
            pg_version,
            system_id,
            repos,
            errors,
        }),
        _ => Err(Error::new(
            ErrorKind::RepoInvalid,
            format!("unable to find a valid repository:\n{}", errors.join("\n")),
        )),
    }
}

/// The options of a push from the configuration and the stanza check; `jobs` segments are pushed
/// at the same time and the cores left over go to each segment's compression.
fn push_options(ctx: &Ctx, check: &PushCheck, jobs: usize) -> Result<PushOptions> {
    let (compress, level) = super::compress_settings(ctx)?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let workers = (cores / jobs.max(1)).min(COMPRESS_WORKERS_MAX);
    Ok(PushOptions {
        header_check: ctx.cfg.bool(OptionId::ArchiveHeaderCheck),
        mode_check: ctx.cfg.bool(OptionId::ArchiveModeCheck),
        pg_version: check.pg_version,
        system_id: check.system_id,
        compress,
        level,
        compress_workers: u32::try_from(workers).unwrap_or(1),
    })
}

/// WAL files PostgreSQL has marked ready in `<wal_dir>/archive_status`, sorted.
///
/// # Errors
/// `PathMissing` when `archive_status` is missing; other listing errors.
pub fn ready_list(wal_dir: &str) -> Result<Vec<String>> {
    let status = format!("{wal_dir}/archive_status");
    let entries = std::fs::read_dir(&status).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::new(
                ErrorKind::PathMissing,
                format!("unable to list file info for missing path '{status}'"),
            )
        } else {
            Error::io(
                ErrorKind::PathOpen,
                "unable to list file info for path",
                &status,
                &e,
            )
        }
    })?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            Error::io(
                ErrorKind::PathOpen,
                "unable to list file info for path",
                &status,
                &e,
            )
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(wal) = name.strip_suffix(STATUS_EXT_READY) {
            names.push(wal.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// pgBackRest `archivePushDrop()`: does the WAL in `list` add up to more than `queue_max` bytes?
///
/// # Errors
/// When a listed WAL file cannot be examined.
pub fn queue_exceeded(wal_dir: &str, list: &[String], queue_max: u64) -> Result<bool> {
    let mut total: u64 = 0;
    for name in list {
        let path = format!("{wal_dir}/{name}");
        let meta = std::fs::metadata(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::new(
                    ErrorKind::FileOpen,
                    format!("unable to get info for missing path/file '{path}'"),
                )
            } else {
                Error::io(
                    ErrorKind::FileOpen,
                    "unable to get info for path/file",
                    &path,
                    &e,
                )
            }
        })?;
        total = total.saturating_add(meta.len());
        if total > queue_max {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The warning of a dropped WAL file.
#[must_use]
pub fn drop_warning(wal: &str, queue_max: u64) -> String {
    format!(
        "dropped WAL file '{wal}' because archive queue exceeded {}",
        size_format(queue_max)
    )
}

fn queue_max(ctx: &Ctx) -> Option<u64> {
    ctx.cfg
        .int(OptionId::ArchivePushQueueMax)
        .and_then(|v| u64::try_from(v).ok())
}

fn run_main(ctx: &Ctx) -> Result<()> {
    let [param] = ctx.cfg.params() else {
        return Err(Error::new(
            ErrorKind::ParamRequired,
            "WAL segment to push required",
        ));
    };
    let stanza = ctx.stanza()?;
    lock::stop_test(ctx.lock_path(), Some(stanza))?;
    let pg_path = ctx.cfg.str(OptionId::PgPath);
    let wal_file = wal_path(param, pg_path, ctx.cfg.command().name())?;
    let archive_file = base_name(&wal_file).to_string();

    if ctx.cfg.bool(OptionId::ArchiveAsync) {
        return push_async_foreground(ctx, &wal_file, &archive_file);
    }

    if let Some(max) = queue_max(ctx) {
        let wal_dir = dir_name(&wal_file);
        if queue_exceeded(wal_dir, &ready_list(wal_dir)?, max)? {
            ctx.log.warn(&drop_warning(&archive_file, max));
            return Ok(());
        }
    }
    let check = push_check(ctx, pg_path.is_some())?;
    let opts = push_options(ctx, &check, 1)?;
    let warnings = job::push_file(
        stanza,
        &wal_file,
        &archive_file,
        &opts,
        &check.repos,
        &check.errors,
    )?;
    for warning in &warnings {
        ctx.log.warn(warning);
    }
    ctx.log
        .info(&format!("pushed WAL file '{archive_file}' to the archive"));
    Ok(())
}

fn push_async_foreground(ctx: &Ctx, wal_file: &str, archive_file: &str) -> Result<()> {
    let stanza = ctx.stanza()?;
    if ctx.cfg.str(OptionId::PgPath).is_none() {
        return Err(Error::new(
            ErrorKind::OptionRequired,
            "'archive-push' command in async mode requires option 'pg1-path'",
        ));
    }
    let spool = Spool::of(ctx, Queue::Out)?;
    let timeout = ctx
        .cfg
        .time(OptionId::ArchiveTimeout)
        .unwrap_or(std::time::Duration::from_secs(60));
    let mut wait = Wait::new(timeout);
    let mut forked = false;
    let mut throw_on_error = false;
    let mut pushed;
    loop {
        pushed = spool.status(archive_file, throw_on_error, true, &ctx.log)?;
        if !pushed
            && !forked
            && let Ok(guard) = lock::acquire(
                ctx.lock_path(),
                stanza,
                lock::LockType::Archive,
                &ctx.exec_id,
            )
        {
            // the spool must be writable, or the background process could never answer
            spool.ensure_writable()?;
            spool.error_clear(archive_file)?;
            drop(guard);
            super::spawn_async(ctx, "archive-push:async", &[dir_name(wal_file).to_string()])?;
            forked = true;
        }
        throw_on_error = true;
        if pushed || !wait.more() {
            break;
        }
    }
    if !pushed {
        return Err(super::async_timeout(ctx, "push", archive_file, "to"));
    }
    ctx.log.info(&format!(
        "pushed WAL file '{archive_file}' to the archive asynchronously"
    ));
    Ok(())
}

/// pgBackRest `archivePushProcessList()`: clean the `out` queue and return the ready WAL files
/// without an `.ok`.
fn process_list(spool: &Spool, wal_dir: &str) -> Result<Vec<String>> {
    spool.storage().path_create("", None)?;
    let mut ok = Vec::new();
    for name in spool.list()? {
        match name.strip_suffix(super::STATUS_EXT_OK) {
            Some(wal) => ok.push(wal.to_string()),
            None => spool.remove(&name)?,
        }
    }
    let ready = ready_list(wal_dir)?;
    for wal in &ok {
        if ready.binary_search(wal).is_err() {
            spool.remove(&format!("{wal}{}", super::STATUS_EXT_OK))?;
        }
    }
    ok.sort();
    Ok(ready
        .into_iter()
        .filter(|wal| ok.binary_search(wal).is_err())
        .collect())
}

fn run_async(ctx: &Ctx, log: &Logger) -> Result<()> {
    let stanza = ctx.stanza()?;
    let [wal_dir] = ctx.cfg.params() else {
        return Err(Error::new(
            ErrorKind::ParamRequired,
            "WAL path to push required",
        ));
    };
    let _lock = lock::acquire(
        ctx.lock_path(),
        stanza,
        lock::LockType::Archive,
        &ctx.exec_id,
    )?;
    let spool = Spool::of(ctx, Queue::Out)?;
    let result = push_async_body(ctx, log, &spool, wal_dir);
    if let Err(e) = &result {
        // one error file answers for every WAL file this run did not
        let _ = spool.write_error(None, e.code(), &error_text(e));
    }
    result
}

fn push_async_body(ctx: &Ctx, log: &Logger, spool: &Spool, wal_dir: &str) -> Result<()> {
    let stanza = ctx.stanza()?;
    lock::stop_test(ctx.lock_path(), Some(stanza))?;
    let list = process_list(spool, wal_dir)?;
    let (Some(first), Some(last)) = (list.first(), list.last()) else {
        return Err(Error::new(ErrorKind::Assert, "no WAL files to process"));
    };
    log.info(&format!(
        "push {} WAL file(s) to archive: {first}{}",
        list.len(),
        if list.len() == 1 {
            String::new()
        } else {
            format!("...{last}")
        }
    ));
    if let Some(max) = queue_max(ctx)
        && queue_exceeded(wal_dir, &list, max)?
    {
        for wal in &list {
            let warning = drop_warning(wal, max);
            spool.write_ok(wal, Some(&warning))?;
            log.warn(&warning);
        }
        return Ok(());
    }
    let check = push_check(ctx, true)?;
    let workers = usize::try_from(ctx.cfg.int(OptionId::ProcessMax).unwrap_or(1))
        .unwrap_or(1)
        .clamp(1, list.len());
    let opts = push_options(ctx, &check, workers)?;
    let next = AtomicUsize::new(0);
    let status_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for pid in 1..=u32::try_from(workers).unwrap_or(1) {
            let (next, status_error, list, check, opts) =
                (&next, &status_error, &list, &check, &opts);
            scope.spawn(move || {
                while let Some(wal) = list.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let worker = super::Worker { pid, log };
                    let written = push_one(stanza, &worker, spool, wal_dir, wal, check, opts);
                    if let Err(e) = written
                        && let Ok(mut slot) = status_error.lock()
                    {
                        slot.get_or_insert(e);
                    }
                }
            });
        }
    });
    match status_error.into_inner() {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Push one ready WAL file in the background (logged as worker `log.pid`) and answer with its
/// status file; only a failure to write the status file is returned.
fn push_one(
    stanza: &str,
    log: &super::Worker<'_>,
    spool: &Spool,
    wal_dir: &str,
    wal: &str,
    check: &PushCheck,
    opts: &PushOptions,
) -> Result<()> {
    let source = format!("{}/{wal}", wal_dir.trim_end_matches('/'));
    match job::push_file(stanza, &source, wal, opts, &check.repos, &check.errors) {
        Ok(warnings) => {
            for warning in &warnings {
                log.warn(warning);
            }
            log.detail(&format!("pushed WAL file '{wal}' to the archive"));
            let warning = (!warnings.is_empty()).then(|| warnings.join("\n"));
            spool.write_ok(wal, warning.as_deref())
        }
        Err(e) => {
            let text = error_text(&e);
            log.warn(&format!(
                "could not push WAL file '{wal}' to the archive (will be retried): [{}] {text}",
                e.code()
            ));
            spool.write_error(Some(wal), e.code(), &text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_files_and_the_queue_limit() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().to_str().unwrap();
        let err = ready_list(wal_dir).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PathMissing);
        std::fs::create_dir(dir.path().join("archive_status")).unwrap();
        for (name, size) in [
            ("000000010000000000000002", 1000),
            ("000000010000000000000001", 1000),
        ] {
            std::fs::write(dir.path().join(name), vec![0u8; size]).unwrap();
            std::fs::write(dir.path().join(format!("archive_status/{name}.ready")), b"").unwrap();
        }
        std::fs::write(
            dir.path()
                .join("archive_status/000000010000000000000000.done"),
            b"",
        )
        .unwrap();
        let list = ready_list(wal_dir).unwrap();
        assert_eq!(
            list,
            vec!["000000010000000000000001", "000000010000000000000002"]
        );
        assert!(!queue_exceeded(wal_dir, &list, 2000).unwrap());
        assert!(queue_exceeded(wal_dir, &list, 1999).unwrap());
        let missing = vec!["000000010000000000000009".to_string()];
        assert_eq!(
            queue_exceeded(wal_dir, &missing, 1).unwrap_err().kind(),
            ErrorKind::FileOpen
        );
        assert_eq!(
            drop_warning("000000010000000000000001", 16 * 1024 * 1024),
            "dropped WAL file '000000010000000000000001' because archive queue exceeded 16MB"
        );
    }

    #[test]
    fn the_process_list_cleans_the_out_queue() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("pg_wal");
        std::fs::create_dir_all(wal_dir.join("archive_status")).unwrap();
        for name in [
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000003",
        ] {
            std::fs::write(wal_dir.join(format!("archive_status/{name}.ready")), b"").unwrap();
        }
        let spool = Spool::new(
            dir.path().join("spool").to_str().unwrap(),
            "demo",
            Queue::Out,
        );
        spool.ensure_writable().unwrap();
        spool.write_ok("000000010000000000000001", None).unwrap();
        spool.write_ok("000000010000000000000000", None).unwrap(); // acknowledged by PostgreSQL: gone
        spool
            .write_error(Some("000000010000000000000002"), 45, "old")
            .unwrap();
        spool.write_error(None, 25, "old").unwrap();
        let list = process_list(&spool, wal_dir.to_str().unwrap()).unwrap();
        assert_eq!(
            list,
            vec!["000000010000000000000002", "000000010000000000000003"]
        );
        assert_eq!(spool.list().unwrap(), vec!["000000010000000000000001.ok"]);
    }
}
