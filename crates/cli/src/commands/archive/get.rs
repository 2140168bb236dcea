//! `archive-get` (pgBackRest `src/command/archive/get/get.c`): PostgreSQL's `restore_command`.
//!
//! Contract:
//! - Exit code 0: the file was restored to the destination (atomically: nothing is visible
//!   under the destination name unless it is complete and verified). Exit code 1: the file is in
//!   no repository; nothing was written (logged at info: `unable to find <file> in the archive`),
//!   so PostgreSQL ends recovery or switches to streaming. Anything else is an error with its code.
//! - Where to look (pgBackRest `archiveGetCheck()`): the cluster is identified by `pg_control` in
//!   `pg1-path`. In each repository (only `--repo` when given, else all, in key order) every
//!   archive.info history entry with that version and system id is searched, newest first; an
//!   older entry only when its archive-id directory exists. A repository that fails, or has no
//!   matching entry (`ArchiveMismatch` `unable to retrieve the archive id for database version
//!   ...`), is a warning; when every repository fails the error is `RepoInvalid`
//!   `unable to find a valid repository`.
//! - Matches with different SHA-1s are `ArchiveDuplicate` (`duplicates found for WAL segment ...`);
//!   matches with the same content are fallbacks tried in order (repository order, newest archive
//!   id first), see [`job::get_file`].
//! - Asynchronous (`archive-async=y`, segments only; `.history` and `.partial` files are always
//!   fetched synchronously): the foreground moves `in/<seg>` from the spool when present; otherwise
//!   (or when the queue is less than half full) it starts `archive-get:async` with the segments that
//!   should follow, after removing from `in` everything that is not one of them, so a timeline
//!   switch or a new recovery never consumes stale files. `<seg>.ok` without `<seg>` means "not in
//!   the archive"; with `archive-missing-retry` the first such answer is checked once more.
//! - The background process fetches the list in parallel (`process-max` threads), stops at the
//!   first segment that is missing (its `.ok` says so) or in error, writes each segment under a
//!   temp name, then its `.ok` when it carries warnings, then renames it into the queue.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_config::{CommandRole, Group, OptionId};
use pgkeep_pg::wal::{Segment, WalSegSize};
use pgkeep_repo::ArchiveInfo;
use pgkeep_repo::info::load_info;
use pgkeep_repo::layout;
use pgkeep_storage::posix::PosixStorage;
use pgkeep_storage::{InfoLevel, Storage, WriteOptions};

use super::job::{self, GetCandidate};
use super::{Queue, Spool, Wait, base_name, wal_path};
use crate::commands::db;
use crate::ctx::Ctx;
use crate::lock;
use crate::log::{Logger, error_text};

/// Most segments one background run is asked for (a 4 PiB queue would otherwise be billions).
const QUEUE_SEGMENTS_MAX: usize = 4096;

/// Temp extension of a segment being fetched into the queue (pgBackRest's).
const TEMP_EXT: &str = ".pgbackrest.tmp";

/// `archive-get` in any role; returns the exit code (0 found, 1 not found).
///
/// # Errors
/// See the module contract.
pub fn run(ctx: &Ctx) -> Result<u8> {
    match ctx.cfg.role() {
        CommandRole::Async => {
            super::close_inherited_fds();
            super::run_logged(ctx, |log| run_async(ctx, log)).map(|()| 0)
        }
        _ => run_main(ctx),
    }
}

/// A repository searched by archive-get.
struct GetRepo {
    key: u32,
    storage: Box<dyn Storage>,
    cipher_pass: Option<String>,
    /// Archive ids to search, newest first.
    archive_ids: Vec<String>,
    /// Names listed per (archive id, segment directory).
    listed: HashMap<(String, String), Vec<String>>,
    /// Warnings already logged for this repository.
    warned: Vec<String>,
}

/// Where one requested file was found.
struct FileMap {
    request: String,
    actual: Vec<GetCandidate>,
    warnings: Vec<String>,
}

/// An error that stops the search.
struct CheckError {
    kind: ErrorKind,
    file: Option<String>,
    message: String,
    warnings: Vec<String>,
}

struct CheckResult {
    repos: Vec<GetRepo>,
    maps: Vec<FileMap>,
    error: Option<CheckError>,
    /// Repository warnings of the check itself (every file carries them too).
    warnings: Vec<String>,
}

/// Add `line` to `list` once; log it when asked and new.
fn warn_once(list: &mut Vec<String>, log: Option<&Logger>, line: String) {
    if !list.contains(&line) {
        if let Some(log) = log {
            log.warn(&line);
        }
        list.push(line);
    }
}

fn repo_line(key: u32, kind: ErrorKind, message: &str) -> String {
    format!("repo{key}: [{}] {message}", kind.name())
}

/// pgBackRest `archiveGetCheck()`: find each of `requests` in order, stopping at the first that is
/// missing or in error.
fn get_check(ctx: &Ctx, log: &Logger, requests: &[String]) -> Result<CheckResult> {
    let stanza = ctx.stanza()?;
    let control = db::read_control(ctx, ctx.cfg.default_index(Group::Pg))?;
    let mut warnings: Vec<String> = Vec::new();
    let mut repos = Vec::new();
    for key in ctx.repo_keys() {
        let attempt = (|| -> Result<Option<GetRepo>> {
            let repo = ctx.repo(key)?;
            let info: ArchiveInfo = load_info(
                repo.storage.as_ref(),
                &layout::archive_info_path(stanza),
                repo.cipher_pass.as_deref(),
            )?;
            let mut archive_ids = Vec::new();
            let mut dirs: Option<Vec<String>> = None;
            for (i, entry) in info.history.iter().rev().enumerate() {
                if entry.system_id != control.system_id || entry.version != control.version {
                    continue;
                }
                let archive_id = entry.archive_id();
                if i > 0 {
                    if dirs.is_none() {
                        let listed = repo
                            .storage
                            .list(&layout::archive_path(stanza), InfoLevel::Exists)?
                            .unwrap_or_default();
                        dirs = Some(listed.into_iter().map(|e| e.name).collect());
                    }
                    if !dirs.as_ref().is_some_and(|d| d.contains(&archive_id)) {
                        continue;
                    }
                }
                archive_ids.push(archive_id);
            }
            if archive_ids.is_empty() {
                return Ok(None);
            }
            Ok(Some(GetRepo {
                key,
                storage: repo.storage,
                cipher_pass: info.cipher_pass,
                archive_ids,
                listed: HashMap::new(),
                warned: Vec::new(),
            }))
        })();
        match attempt {
            Ok(Some(repo)) => repos.push(repo),
            Ok(None) => warn_once(
                &mut warnings,
                Some(log),
                repo_line(
                    key,
                    ErrorKind::ArchiveMismatch,
                    &format!(
                        "unable to retrieve the archive id for database version '{}' and system-id '{}'",
                        control.version, control.system_id
                    ),
                ),
            ),
            Err(e) => warn_once(
                &mut warnings,
                Some(log),
                repo_line(key, e.kind(), &error_text(&e)),
            ),
        }
    }
    if repos.is_empty() {
        return Ok(CheckResult {
            repos,
            maps: Vec::new(),
            error: Some(CheckError {
                kind: ErrorKind::RepoInvalid,
                file: None,
                message: "unable to find a valid repository".to_string(),
                warnings: warnings.clone(),
            }),
            warnings,
        });
    }
    let mut result = CheckResult {
        repos,
        maps: Vec::new(),
        error: None,
        warnings: warnings.clone(),
    };
    for request in requests {
        if !find(stanza, log, request, &mut result, &warnings) {
            break;
        }
    }
    Ok(result)
}

/// pgBackRest `archiveGetFind()` for one request; `false` when it was not found or in error.
fn find(
    stanza: &str,
    log: &Logger,
    request: &str,
    result: &mut CheckResult,
    warnings: &[String],
) -> bool {
    let is_segment = layout::is_wal_segment_or_partial(request);
    let mut matches: Vec<GetCandidate> = Vec::new();
    let mut file_warnings: Vec<String> = warnings.to_vec();
    let mut errors = 0;
    for (index, repo) in result.repos.iter_mut().enumerate() {
        let attempt = (|| -> Result<()> {
            for archive_id in &repo.archive_ids {
                if is_segment {
                    let dir = request.get(..16).unwrap_or(request).to_string();
                    let cache_key = (archive_id.clone(), dir);
                    if !repo.listed.contains_key(&cache_key) {
                        let path = layout::wal_segment_dir(stanza, archive_id, request);
                        let names: Vec<String> = repo
                            .storage
                            .list(&path, InfoLevel::Exists)?
                            .unwrap_or_default()
                            .into_iter()
                            .map(|e| e.name)
                            .filter(|n| layout::is_wal_archive_file(n))
                            .collect();
                        repo.listed.insert(cache_key.clone(), names);
                    }
                    let mut found: Vec<&String> = repo
                        .listed
                        .get(&cache_key)
                        .map(|names| {
                            names
                                .iter()
                                .filter(|n| layout::is_archive_file_of(n, request))
                                .collect()
                        })
                        .unwrap_or_default();
                    found.sort();
                    for name in found {
                        matches.push(GetCandidate {
                            repo: index,
                            repo_key: repo.key,
                            archive_id: archive_id.clone(),
                            name: name.clone(),
                            cipher_pass: repo.cipher_pass.clone(),
                        });
                    }
                } else {
                    let path = layout::archive_file_path(stanza, archive_id, request);
                    if repo.storage.info(&path, InfoLevel::Exists, true)?.is_some() {
                        matches.push(GetCandidate {
                            repo: index,
                            repo_key: repo.key,
                            archive_id: archive_id.clone(),
                            name: request.to_string(),
                            cipher_pass: repo.cipher_pass.clone(),
                        });
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = attempt {
            errors += 1;
            let line = repo_line(repo.key, e.kind(), &error_text(&e));
            warn_once(&mut repo.warned, Some(log), line.clone());
            warn_once(&mut file_warnings, None, line);
        }
    }
    if errors == result.repos.len() {
        result.error = Some(CheckError {
            kind: ErrorKind::RepoInvalid,
            file: Some(request.to_string()),
            message: "unable to find a valid repository".to_string(),
            warnings: file_warnings,
        });
        return false;
    }
    if matches.is_empty() {
        return false;
    }
    if is_segment {
        let sha = |c: &GetCandidate| {
            c.name
                .get(request.len() + 1..request.len() + 41)
                .unwrap_or("")
                .to_string()
        };
        let mut hashes: Vec<String> = matches.iter().map(sha).collect();
        hashes.sort();
        hashes.dedup();
        if hashes.len() > 1 {
            let mut sorted: Vec<(u32, String)> = matches
                .iter()
                .map(|c| (c.repo_key, c.display(stanza)))
                .collect();
            sorted.sort();
            let mut message = String::new();
            let mut last_key = 0;
            for (key, file) in sorted {
                if key == last_key {
                    message.push(',');
                } else {
                    message.push_str(&format!("\nrepo{key}:"));
                    last_key = key;
                }
                message.push_str(&format!(" {file}"));
            }
            result.error = Some(CheckError {
                kind: ErrorKind::ArchiveDuplicate,
                file: Some(request.to_string()),
                message: format!(
                    "duplicates found for WAL segment {request}:{message}\nHINT: are multiple primaries archiving to this stanza?"
                ),
                warnings: file_warnings,
            });
            return false;
        }
    }
    result.maps.push(FileMap {
        request: request.to_string(),
        actual: matches,
        warnings: file_warnings,
    });
    true
}

fn storages(repos: &[GetRepo]) -> Vec<&dyn Storage> {
    repos.iter().map(|r| r.storage.as_ref()).collect()
}

fn run_main(ctx: &Ctx) -> Result<u8> {
    let params = ctx.cfg.params();
    let (segment_param, dest_param) = match params {
        [a, b] => (a, b),
        [] => {
            return Err(Error::new(
                ErrorKind::ParamRequired,
                "WAL segment to get required",
            ));
        }
        [_] => {
            return Err(Error::new(
                ErrorKind::ParamRequired,
                "path to copy WAL segment required",
            ));
        }
        _ => {
            return Err(Error::new(
                ErrorKind::ParamInvalid,
                "extra parameters found",
            ));
        }
    };
    let stanza = ctx.stanza()?;
    let segment = base_name(segment_param).to_string();
    let pg_path = ctx.pg_path(ctx.cfg.default_index(Group::Pg))?;
    let destination = wal_path(dest_param, Some(pg_path), ctx.cfg.command().name())?;

    if ctx.cfg.bool(OptionId::ArchiveAsync) && layout::is_wal_segment(&segment) {
        return get_async_foreground(ctx, &segment, &destination);
    }

    let check = get_check(ctx, &ctx.log, std::slice::from_ref(&segment))?;
    if let Some(error) = check.error {
        return Err(Error::new(error.kind, error.message));
    }
    let Some(map) = check.maps.first() else {
        ctx.log
            .info(&format!("unable to find {segment} in the archive"));
        return Ok(1);
    };
    lock::stop_test(ctx.lock_path(), Some(stanza))?;
    let root = PosixStorage::new("/");
    let opts = WriteOptions {
        create_path: false,
        sync_path: false,
        ..WriteOptions::default()
    };
    let got = job::get_file(
        stanza,
        &map.request,
        &map.actual,
        &storages(&check.repos),
        &root,
        &destination,
        &opts,
    )?;
    for warning in &got.warnings {
        ctx.log.warn(warning);
    }
    if let Some(file) = map.actual.get(got.index) {
        ctx.log.info(&format!(
            "found {segment} in the repo{}: {} archive",
            file.repo_key, file.archive_id
        ));
    }
    Ok(0)
}

/// Rename `from` to `to`, copying when they are on different file systems.
fn move_file(from: &str, to: &str) -> Result<()> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
            std::fs::copy(from, to).map_err(|e| {
                Error::io(
                    ErrorKind::FileMove,
                    "unable to copy",
                    format!("{from}' to '{to}"),
                    &e,
                )
            })?;
            std::fs::remove_file(from)
                .map_err(|e| Error::io(ErrorKind::FileRemove, "unable to remove", from, &e))
        }
        Err(e) => Err(Error::new(
            ErrorKind::FileMove,
            format!(
                "unable to move '{from}' to '{to}': {}",
                pgkeep_base::error::io_cause(&e)
            ),
        )),
    }
}

/// pgBackRest `queueNeed()`: clean the `in` queue of everything but the segments wanted next and
/// return those still to fetch.
fn queue_need(
    spool: &Spool,
    segment: &str,
    found: bool,
    queue_max: u64,
    size: WalSegSize,
) -> Result<Vec<String>> {
    let first = if found {
        Segment::parse(segment, size)?.next(size)
    } else {
        Segment::parse(segment, size)?
    };
    // at least two (pgBackRest's floor); at most what one command line can reasonably carry
    let total = usize::try_from(queue_max / u64::from(size.get()))
        .unwrap_or(usize::MAX)
        .clamp(2, QUEUE_SEGMENTS_MAX);
    let mut ideal = Vec::with_capacity(total);
    let mut current = first;
    for _ in 0..total {
        ideal.push(current.to_string());
        current = current.next(size);
    }
    ideal.sort();
    let actual = spool.list()?;
    let mut keep = Vec::new();
    for file in &actual {
        if ideal.binary_search(file).is_ok() {
            keep.push(file.clone());
        } else {
            // an ok file listed with its segment carries that segment's warnings: kept
            let ok_of_listed = file
                .strip_suffix(super::STATUS_EXT_OK)
                .is_some_and(|wal| actual.binary_search_by(|a| a.as_str().cmp(wal)).is_ok());
            if !ok_of_listed {
                spool.remove(file)?;
            }
        }
    }
    keep.sort();
    Ok(ideal
        .into_iter()
        .filter(|wal| keep.binary_search(wal).is_err())
        .collect())
}

fn get_async_foreground(ctx: &Ctx, segment: &str, destination: &str) -> Result<u8> {
    let stanza = ctx.stanza()?;
    let spool = Spool::of(ctx, Queue::In)?;
    let timeout = ctx
        .cfg
        .time(OptionId::ArchiveTimeout)
        .unwrap_or(std::time::Duration::from_secs(60));
    let queue_max = ctx
        .cfg
        .int(OptionId::ArchiveGetQueueMax)
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(128 << 20);
    let mut wait = Wait::new(timeout);
    let mut first = true;
    let mut found;
    let mut found_ok = false;
    let mut queue_full = false;
    let mut forked = false;
    loop {
        found = spool.exists(segment)?;
        let missing_retry = first && ctx.cfg.bool(OptionId::ArchiveMissingRetry);
        if spool.status(segment, !first, found || !missing_retry, &ctx.log)? {
            spool.remove(&format!("{segment}{}", super::STATUS_EXT_OK))?;
            if !found && !missing_retry {
                found_ok = true;
                break;
            }
        }
        if found {
            move_file(&spool.path(segment), destination)?;
            ctx.log
                .info(&format!("found {segment} in the archive asynchronously"));
            let queued = spool
                .list()?
                .into_iter()
                .filter(|n| layout::is_wal_segment(n))
                .count();
            if queued > 0 {
                let size = std::fs::metadata(destination).map_or(0, |m| m.len());
                queue_full = (queued as u64).saturating_mul(size) > queue_max / 2;
            }
        }
        if !forked
            && (!found || !queue_full)
            && let Ok(guard) = lock::acquire(
                ctx.lock_path(),
                stanza,
                lock::LockType::Archive,
                &ctx.exec_id,
            )
        {
            let control = db::read_control(ctx, ctx.cfg.default_index(Group::Pg))?;
            spool.ensure_writable()?;
            let need = queue_need(&spool, segment, found, queue_max, control.wal_seg_size()?)?;
            spool.error_clear(segment)?;
            drop(guard);
            if !need.is_empty() {
                super::spawn_async(ctx, "archive-get:async", &need)?;
            }
            forked = true;
        }
        if found {
            return Ok(0);
        }
        first = false;
        if !wait.more() {
            break;
        }
    }
    if !found_ok {
        return Err(super::async_timeout(ctx, "get", segment, "from"));
    }
    ctx.log.info(&format!(
        "unable to find {segment} in the archive asynchronously"
    ));
    Ok(1)
}

fn run_async(ctx: &Ctx, log: &Logger) -> Result<()> {
    let stanza = ctx.stanza()?;
    let _lock = lock::acquire(
        ctx.lock_path(),
        stanza,
        lock::LockType::Archive,
        &ctx.exec_id,
    )?;
    let spool = Spool::of(ctx, Queue::In)?;
    let result = get_async_body(ctx, log, &spool);
    if let Err(e) = &result {
        let _ = spool.write_error(None, e.code(), &error_text(e));
    }
    result
}

fn get_async_body(ctx: &Ctx, log: &Logger, spool: &Spool) -> Result<()> {
    let stanza = ctx.stanza()?;
    let params = ctx.cfg.params();
    let (Some(first), Some(last)) = (params.first(), params.last()) else {
        return Err(Error::new(
            ErrorKind::ParamInvalid,
            "at least one wal segment is required",
        ));
    };
    log.info(&format!(
        "get {} WAL file(s) from archive: {first}{}",
        params.len(),
        if params.len() == 1 {
            String::new()
        } else {
            format!("...{last}")
        }
    ));
    let check = get_check(ctx, log, params)?;
    let missing = if check.maps.len() < params.len() {
        params.get(check.maps.len())
    } else {
        None
    };
    if !check.maps.is_empty() {
        let workers = usize::try_from(ctx.cfg.int(OptionId::ProcessMax).unwrap_or(1))
            .unwrap_or(1)
            .clamp(1, check.maps.len());
        let repos = storages(&check.repos);
        let next = AtomicUsize::new(0);
        let status_error: Mutex<Option<Error>> = Mutex::new(None);
        let opts = WriteOptions {
            atomic: false,
            create_path: false,
            sync_path: false,
            ..WriteOptions::default()
        };
        std::thread::scope(|scope| {
            for pid in 1..=u32::try_from(workers).unwrap_or(1) {
                let (next, status_error, maps, repos, opts) =
                    (&next, &status_error, &check.maps, &repos, &opts);
                scope.spawn(move || {
                    while let Some(map) = maps.get(next.fetch_add(1, Ordering::SeqCst)) {
                        let worker = super::Worker { pid, log };
                        let outcome = fetch_one(ctx, &worker, spool, stanza, map, repos, opts);
                        if let Err(e) = outcome
                            && let Ok(mut slot) = status_error.lock()
                        {
                            slot.get_or_insert(e);
                        }
                    }
                });
            }
        });
        if let Ok(Some(e)) = status_error.into_inner() {
            return Err(e);
        }
    }
    if let Some(error) = check.error {
        log.warn(&format!("[{}] {}", error.kind.name(), error.message));
        let mut message = error.message;
        if !error.warnings.is_empty() {
            message.push('\n');
            message.push_str(&error.warnings.join("\n"));
        }
        spool.write_error(error.file.as_deref(), error.kind.code(), &message)?;
    } else if let Some(missing) = missing {
        log.detail(&format!("unable to find {missing} in the archive"));
        let warnings = (!check.warnings.is_empty()).then(|| check.warnings.join("\n"));
        spool.write_ok(missing, warnings.as_deref())?;
    }
    Ok(())
}

/// Fetch one segment into the queue; its own failure becomes its `.error` file (only a failure
/// to write status files is returned).
fn fetch_one(
    ctx: &Ctx,
    log: &super::Worker<'_>,
    spool: &Spool,
    stanza: &str,
    map: &FileMap,
    repos: &[&dyn Storage],
    opts: &WriteOptions,
) -> Result<()> {
    let temp = format!("{}{TEMP_EXT}", map.request);
    let got = lock::stop_test(ctx.lock_path(), Some(stanza)).and_then(|()| {
        job::get_file(
            stanza,
            &map.request,
            &map.actual,
            repos,
            spool.storage(),
            &temp,
            opts,
        )
    });
    match got {
        Ok(got) => {
            for warning in &got.warnings {
                log.warn(warning);
            }
            let mut warnings = map.warnings.clone();
            warnings.extend(got.warnings);
            if !warnings.is_empty() {
                spool.write_ok(&map.request, Some(&warnings.join("\n")))?;
            }
            if let Some(file) = map.actual.get(got.index) {
                log.detail(&format!(
                    "found {} in the repo{}: {} archive",
                    map.request, file.repo_key, file.archive_id
                ));
            }
            // renamed after the ok file so the foreground never sees the segment without it
            move_file(&spool.path(&temp), &spool.path(&map.request))
        }
        Err(e) => {
            log.warn(&format!("[{}] {}", e.kind().name(), error_text(&e)));
            let mut message = error_text(&e);
            if !map.warnings.is_empty() {
                message.push('\n');
                message.push_str(&map.warnings.join("\n"));
            }
            spool.write_error(Some(&map.request), e.code(), &message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_keeps_only_the_segments_wanted_next() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().to_str().unwrap(), "demo", Queue::In);
        spool.ensure_writable().unwrap();
        let size = WalSegSize::DEFAULT;
        for name in [
            "000000010000000000000005",
            "000000010000000000000006",
            "000000010000000000000006.ok",
            "000000010000000000000009.ok",
            "000000010000000000000003",
            "000000010000000000000007.pgbackrest.tmp",
            "000000020000000000000006",
            "global.error",
        ] {
            std::fs::write(spool.path(name), b"x").unwrap();
        }
        // found 04: want 05..0C (128 MiB / 16 MiB = 8)
        let need = queue_need(&spool, "000000010000000000000004", true, 128 << 20, size).unwrap();
        assert_eq!(
            need,
            vec![
                "000000010000000000000007",
                "000000010000000000000008",
                "000000010000000000000009",
                "00000001000000000000000A",
                "00000001000000000000000B",
                "00000001000000000000000C"
            ]
        );
        assert_eq!(
            spool.list().unwrap(),
            vec![
                "000000010000000000000005",
                "000000010000000000000006",
                "000000010000000000000006.ok"
            ]
        );
        // not found: start with the segment itself, at least two
        let need = queue_need(&spool, "00000001000000000000000F", false, 0, size).unwrap();
        assert_eq!(
            need,
            vec!["00000001000000000000000F", "000000010000000000000010"]
        );
        // an ok file whose segment was listed with it survives one round (pgBackRest does the same)
        assert_eq!(spool.list().unwrap(), vec!["000000010000000000000006.ok"]);
    }
}
