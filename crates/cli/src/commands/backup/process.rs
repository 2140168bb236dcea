//! The copy phase (pgBackRest `backupProcess()`, `backupProcessQueue()`, `backupJobCallback()`,
//! `backupJobResult()`): turn the manifest into jobs, run them on `process-max` threads, and fold
//! the results back into the manifest.
//!
//! Contract:
//! - Jobs are ordered largest file first (pgBackRest's queue order: size descending; with bundles,
//!   files up to the bundle limit by mtime ascending, then name), so the biggest files start
//!   early and the run ends with small ones. Bundles are filled greedily in that order until
//!   their size reaches `repo-bundle-size`; ids count from 1 in job order.
//! - Worker threads pull the next job from a shared counter and send results over a channel; only
//!   the calling thread touches the manifest. The first error stops the workers from taking new
//!   jobs and is returned once the running ones have ended. Memory is the [`Queue`] (a name and a
//!   few numbers per file; paths are built by the worker when it takes the job) plus one chunk
//!   buffer per worker: no file content is ever held.
//! - The caller's `tick` runs after every result and, while waiting, a few times a second (the
//!   database ping, the periodic manifest save for resume, the percentage in the lock file).
//! - Progress: the detail line of each file carries pgBackRest's running percentage
//!   ([`crate::progress::percent_x100`]). When the live display is wanted ([`crate::progress`]),
//!   it shows the bytes of finished jobs plus the bytes read so far by the running ones, so a
//!   large file moves the line while it is copied.
//! - Backup from a standby: files replication keeps identical on both clusters (relations and
//!   transaction status, [`standby_file`]) are read under the standby's `pg-path`, everything else
//!   (pg_control above all) under the primary's. A file missing on the standby is skipped like
//!   one dropped by the database: WAL replay recreates it.
//! - Results: files removed by the database leave the manifest; copied files get their sizes,
//!   checksums, page results and bundle location and lose any reference; page checksum failures
//!   are warnings naming the file and pages.

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_pg::datadir::{self, DataDir};
use pgkeep_pg::page::{PAGE_SIZE, PageErrorRange, collapse_errors};
use pgkeep_repo::info::json::Json;
use pgkeep_repo::layout;
use pgkeep_repo::manifest::build::{pg_relative, unchanged};
use pgkeep_repo::manifest::{Checksum, Manifest};
use pgkeep_storage::{
    Features, InfoLevel, LinkType, ReadOptions, Storage, StorageInfo, StorageWrite, WriteOptions,
};

use super::job::{self, CopyResult, FileResult, Job, JobFile, JobSettings, PageResult};
use crate::commands::archive::size_format;
use crate::log::{Level, Logger};

/// Bundling limits (`repo-bundle-size`, `repo-bundle-limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bundling {
    /// A bundle is closed once its files reach this many bytes.
    pub size: u64,
    /// Files larger than this are stored on their own.
    pub limit: u64,
}

/// Everything needed to plan the jobs of a backup.
pub struct Plan<'a> {
    /// Stanza.
    pub stanza: &'a str,
    /// PGDATA.
    pub pg_path: &'a str,
    /// Data directory rules.
    pub datadir: &'a DataDir,
    /// Bundling, when on.
    pub bundle: Option<Bundling>,
    /// Delta is in force.
    pub delta: bool,
    /// Files stored by the interrupted backup being resumed.
    pub resumed: &'a BTreeSet<String>,
    /// Backup from a standby: where its files are read.
    pub standby: Option<StandbySource<'a>>,
}

/// The standby a backup reads most files from.
#[derive(Debug, Clone, Copy)]
pub struct StandbySource<'a> {
    /// The standby's PGDATA.
    pub pg_path: &'a str,
    /// Transaction status directory of the version (`pg_xact`).
    pub xact_path: &'a str,
}

/// May the file `name` (a manifest name) be read from the standby? Only what replication keeps
/// identical on both clusters once the standby has replayed past the backup start: files under
/// `base`, `global`, the transaction status directories and tablespaces (pgBackRest's
/// `standbyExp`) — except pg_control, which must come from the primary.
#[must_use]
pub fn standby_file(name: &str, xact_path: &str) -> bool {
    let rel = pg_relative(name);
    if rel == datadir::PG_CONTROL {
        return false;
    }
    match rel.split_once('/') {
        Some((top, _)) => {
            ["base", "global", "pg_multixact", datadir::TABLESPACE_DIR].contains(&top)
                || top == xact_path
        }
        None => false,
    }
}

/// The file system path of a manifest file (through links and tablespaces).
#[must_use]
pub fn pg_file(pg_path: &str, name: &str) -> String {
    format!("{}/{}", pg_path.trim_end_matches('/'), pg_relative(name))
}

/// One file waiting in the [`Queue`]: what its [`JobFile`] is built from when its job runs. Paths
/// are not held (they are rebuilt from the name), nor checksums the job does not need; the name is
/// a range of the queue's one string of names (no allocation per file).
#[derive(Debug)]
struct Queued {
    name_start: u32,
    name_len: u32,
    size: u64,
    repo_size: u64,
    /// Checksums known before the copy (delta, resume); boxed because they are rare.
    known: Option<Box<Known>>,
    checksum_page: Option<u32>,
    copy_exact_size: bool,
    ignore_missing: bool,
    delta: bool,
    has_reference: bool,
    resume: bool,
    /// Read from the standby's PGDATA.
    standby: bool,
}

/// Checksums of a queued file known before the copy.
#[derive(Debug)]
struct Known {
    checksum: Option<Checksum>,
    repo_checksum: Option<Checksum>,
}

/// One job of the [`Queue`]: `len` files from `start` in the queue's file list.
#[derive(Debug, Clone, Copy)]
struct Span {
    bundle_id: u32,
    start: u32,
    len: u32,
}

/// The jobs of a backup, in the order they run. Held compactly for the whole copy (one name and a
/// few numbers per file); each [`Job`] is built by the worker that runs it ([`Queue::job`]) and
/// dropped once its results are folded into the manifest.
#[derive(Debug)]
pub struct Queue {
    /// In job order: the files of job `i` are `jobs[i].start..+len`.
    files: Vec<Queued>,
    /// Every queued name, one after the other.
    names: String,
    jobs: Vec<Span>,
    stanza: String,
    label: String,
    ext: &'static str,
    pg_path: String,
    standby_path: Option<String>,
}

impl Queue {
    /// True when there is nothing to copy.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Bytes to copy (sizes recorded in the manifest).
    #[must_use]
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Manifest names of the files to copy, in job order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|f| self.name(f))
    }

    fn name(&self, file: &Queued) -> &str {
        let start = file.name_start as usize;
        self.names
            .get(start..start + file.name_len as usize)
            .unwrap_or_default()
    }

    fn files_of(&self, span: Span) -> &[Queued] {
        self.files
            .get(span.start as usize..(span.start + span.len) as usize)
            .unwrap_or_default()
    }

    fn pg_file_of(&self, file: &Queued) -> String {
        let pg_path = match (&self.standby_path, file.standby) {
            (Some(standby), true) => standby,
            _ => &self.pg_path,
        };
        pg_file(pg_path, self.name(file))
    }

    /// The job `idx`, ready to run.
    #[must_use]
    pub fn job(&self, idx: usize) -> Option<Job> {
        let span = *self.jobs.get(idx)?;
        let files: Vec<JobFile> = self
            .files_of(span)
            .iter()
            .map(|q| {
                let (checksum, repo_checksum) = match q.known.as_deref() {
                    Some(k) => (
                        k.checksum.as_ref().map(ToString::to_string),
                        k.repo_checksum.as_ref().map(ToString::to_string),
                    ),
                    None => (None, None),
                };
                JobFile {
                    name: self.name(q).to_string(),
                    pg_file: self.pg_file_of(q),
                    size: q.size,
                    copy_exact_size: q.copy_exact_size,
                    ignore_missing: q.ignore_missing,
                    checksum_page: q.checksum_page,
                    delta: q.delta,
                    checksum,
                    has_reference: q.has_reference,
                    resume: q.resume,
                    repo_checksum,
                    repo_size: q.repo_size,
                }
            })
            .collect();
        let repo_file = if span.bundle_id != 0 {
            layout::bundle_path(&self.stanza, &self.label, u64::from(span.bundle_id))
        } else {
            let name = files.first().map_or("", |f| f.name.as_str());
            layout::backup_file_path(&self.stanza, &self.label, name, self.ext)
        };
        Some(Job {
            repo_file,
            bundle_id: u64::from(span.bundle_id),
            files,
        })
    }
}

/// Files to copy, in queue order, and the string their names are ranges of.
fn queue(manifest: &Manifest, plan: &Plan<'_>) -> Result<(Vec<Queued>, String)> {
    let mut files: Vec<(&String, &pgkeep_repo::manifest::ManifestFile)> = manifest
        .files
        .iter()
        .filter(|(_, file)| {
            // zero-length files of a bundled backup are never stored
            let stored_empty = plan.bundle.is_some() && file.size == 0;
            !stored_empty && !unchanged(file, plan.delta)
        })
        .collect();
    let bundle_limit = plan.bundle.map(|b| b.limit);
    // descending: larger first; among bundled sizes older first; then name descending
    // a total order (names are unique): the unstable sort needs no buffer
    files.sort_unstable_by(|(an, a), (bn, b)| {
        let small = bundle_limit.is_some_and(|l| a.size <= l && b.size <= l);
        let by_size = if small {
            std::cmp::Ordering::Equal
        } else {
            b.size.cmp(&a.size)
        };
        let by_time = if bundle_limit.is_some() {
            a.timestamp.cmp(&b.timestamp)
        } else {
            std::cmp::Ordering::Equal
        };
        by_size.then(by_time).then_with(|| bn.cmp(an))
    });
    let names_len: usize = files.iter().map(|(name, _)| name.len()).sum();
    if u32::try_from(names_len).is_err() || u32::try_from(files.len()).is_err() {
        return Err(Error::new(
            ErrorKind::Assert,
            format!(
                "unable to queue {} files ({names_len} bytes of names): too many for one backup",
                files.len()
            ),
        ));
    }
    let mut names = String::with_capacity(names_len);
    let queued = files
        .into_iter()
        .map(|(name, file)| {
            let rel = pg_relative(name);
            let has_reference = file.reference.is_some();
            let resume = plan.resumed.contains(name);
            let delta = plan.delta && has_reference && file.size != 0;
            let repo_checksum = file.checksum_repo.clone().filter(|_| resume);
            let known = (file.checksum.is_some() && (delta || resume) || repo_checksum.is_some())
                .then(|| {
                    Box::new(Known {
                        checksum: file.checksum.clone(),
                        repo_checksum,
                    })
                });
            // in range: checked above
            let name_start = names.len() as u32;
            names.push_str(name);
            Queued {
                name_start,
                name_len: name.len() as u32,
                size: file.size,
                repo_size: file.size_repo,
                known,
                checksum_page: file
                    .checksum_page
                    .is_some()
                    .then(|| datadir::segment_no(rel)),
                copy_exact_size: plan.datadir.copy_exact_size(rel),
                ignore_missing: rel != datadir::PG_CONTROL,
                delta,
                has_reference,
                resume,
                standby: plan
                    .standby
                    .is_some_and(|standby| standby_file(name, standby.xact_path)),
            }
        })
        .collect();
    Ok((queued, names))
}

/// Record that the file at `idx` goes to position `*placed`, the next one.
fn place(dest: &mut [u32], idx: usize, placed: &mut u32) {
    if let Some(slot) = dest.get_mut(idx) {
        *slot = *placed;
    }
    *placed += 1;
}

/// Move every file to its position in `dest` (`dest[i]` = where the file now at `i` goes; a
/// permutation), in place.
fn permute(files: &mut [Queued], mut dest: Vec<u32>) {
    for i in 0..files.len() {
        while let Some(&j) = dest.get(i) {
            let j = j as usize;
            if j == i || j >= files.len() {
                break;
            }
            files.swap(i, j);
            dest.swap(i, j);
        }
    }
}

/// Group the queue into jobs: single files, or bundles of small files. The files are put in job
/// order in place (a flag and an index per file meanwhile, never a second queue).
///
/// # Errors
/// `Assert` when the files or their names are too many to index with 32 bits.
pub fn jobs(manifest: &Manifest, plan: &Plan<'_>) -> Result<Queue> {
    let (mut files, names) = queue(manifest, plan)?;
    let count = files.len();
    let mut taken = vec![false; count];
    // dest[i] = position in job order of the file now at i (count fits in u32: checked by queue)
    let mut dest = vec![0u32; count];
    let mut placed = 0u32;
    let mut jobs = Vec::with_capacity(if plan.bundle.is_some() { 0 } else { count });
    let mut bundle_id = 1u32;
    let mut start = 0usize;
    loop {
        while taken.get(start).copied() == Some(true) {
            start += 1;
        }
        let (Some(first), Some(flag)) = (files.get(start), taken.get_mut(start)) else {
            break;
        };
        *flag = true;
        let span_start = placed;
        place(&mut dest, start, &mut placed);
        match plan.bundle {
            Some(b) if first.size <= b.limit => {
                let mut total = first.size;
                let mut idx = start + 1;
                while total < b.size && idx < count {
                    if let (Some(file), Some(flag)) = (files.get(idx), taken.get_mut(idx))
                        && !*flag
                        && file.size <= b.limit
                        && total + file.size < b.size
                    {
                        total += file.size;
                        *flag = true;
                        place(&mut dest, idx, &mut placed);
                    }
                    idx += 1;
                }
                jobs.push(Span {
                    bundle_id,
                    start: span_start,
                    len: placed - span_start,
                });
                bundle_id += 1;
            }
            _ => {
                jobs.push(Span {
                    bundle_id: 0,
                    start: span_start,
                    len: 1,
                });
            }
        }
    }
    drop(taken);
    permute(&mut files, dest);
    Ok(Queue {
        files,
        names,
        jobs,
        stanza: plan.stanza.to_string(),
        label: manifest.backup.label.clone(),
        ext: manifest.options.compress_type.ext(),
        pg_path: plan.pg_path.to_string(),
        standby_path: plan.standby.map(|s| s.pg_path.to_string()),
    })
}

/// Running totals for progress messages.
struct Progress {
    total: u64,
    done: u64,
}

impl Progress {
    /// Count `size` as done; `<size>, <pct>%` with two decimals, as pgBackRest logs it.
    fn text(&mut self, size: u64) -> String {
        self.done += size;
        let pct = crate::progress::percent_x100(self.done, self.total);
        format!("{}, {}.{:02}%", size_format(size), pct / 100, pct % 100)
    }
}

/// The PostgreSQL storage of one worker, counting the bytes read through it for the live
/// display. The worker resets the count when it hands a job's results over, so the count is
/// what the running job has read so far.
struct Counted<'a> {
    inner: &'a dyn Storage,
    read: Arc<AtomicU64>,
}

/// A read of [`Counted`].
struct CountedRead {
    inner: Box<dyn Read + Send>,
    read: Arc<AtomicU64>,
}

impl Read for CountedRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Storage for Counted<'_> {
    fn driver(&self) -> &'static str {
        self.inner.driver()
    }

    fn features(&self) -> Features {
        self.inner.features()
    }

    fn root(&self) -> &str {
        self.inner.root()
    }

    fn info(&self, path: &str, level: InfoLevel, follow_link: bool) -> Result<Option<StorageInfo>> {
        self.inner.info(path, level, follow_link)
    }

    fn list(&self, path: &str, level: InfoLevel) -> Result<Option<Vec<StorageInfo>>> {
        self.inner.list(path, level)
    }

    fn open_read(&self, path: &str, opts: ReadOptions) -> Result<Option<Box<dyn Read + Send>>> {
        Ok(self.inner.open_read(path, opts)?.map(|inner| {
            Box::new(CountedRead {
                inner,
                read: Arc::clone(&self.read),
            }) as Box<dyn Read + Send>
        }))
    }

    fn open_write(&self, path: &str, opts: WriteOptions) -> Result<Box<dyn StorageWrite>> {
        self.inner.open_write(path, opts)
    }

    fn remove(&self, path: &str, ignore_missing: bool) -> Result<()> {
        self.inner.remove(path, ignore_missing)
    }

    fn remove_path(&self, path: &str, recurse: bool) -> Result<()> {
        self.inner.remove_path(path, recurse)
    }

    fn path_create(&self, path: &str, mode: Option<u32>) -> Result<()> {
        self.inner.path_create(path, mode)
    }

    fn sync_all(&self, path: &str) -> Result<()> {
        self.inner.sync_all(path)
    }

    fn path_sync(&self, path: &str) -> Result<()> {
        self.inner.path_sync(path)
    }

    fn link_create(&self, target: &str, link_path: &str, link_type: LinkType) -> Result<()> {
        self.inner.link_create(target, link_path, link_type)
    }

    fn move_file(&self, from: &str, to: &str) -> Result<()> {
        self.inner.move_file(from, to)
    }
}

/// The manifest's `checksum-page-error` for a list of failed blocks.
fn page_error_json(errors: &[u32]) -> Json {
    Json::Array(
        collapse_errors(errors)
            .into_iter()
            .map(|r| match r {
                PageErrorRange::Single(b) => Json::UInt(u64::from(b)),
                PageErrorRange::Range(a, b) => {
                    Json::Array(vec![Json::UInt(u64::from(a)), Json::UInt(u64::from(b))])
                }
            })
            .collect(),
    )
}

/// The warning for a file whose pages failed, `None` when they did not.
fn page_warning(page: &PageResult, file: &str, size: u64) -> Option<String> {
    if page.valid {
        return None;
    }
    if !page.align {
        return Some(format!(
            "page misalignment in file {file}: file size {size} is not divisible by page size {PAGE_SIZE}"
        ));
    }
    let mut count = 0;
    let list: Vec<String> = collapse_errors(&page.errors)
        .into_iter()
        .map(|r| match r {
            PageErrorRange::Single(b) => {
                count += 1;
                b.to_string()
            }
            PageErrorRange::Range(a, b) => {
                count += 2;
                format!("{a}-{b}")
            }
        })
        .collect();
    let plural = if count > 1 { "s" } else { "" };
    Some(format!(
        "invalid page checksum{plural} found in file {file} at page{plural} {}",
        list.join(", ")
    ))
}

/// Fold one job's results into the manifest; returns the names removed by the database.
fn apply(
    manifest: &mut Manifest,
    job: &Job,
    results: Vec<FileResult>,
    progress: &mut Progress,
    log: &Logger,
    removed: &mut Vec<String>,
) -> Result<()> {
    let detail = log.enabled(Level::Detail);
    for (file, result) in job.files.iter().zip(results) {
        let shown = &file.pg_file;
        let progress_text = progress.text(result.size);
        // the per-file lines are formatted only when someone reads them
        let (progress_text, checksum) = if detail {
            let bundle = if job.bundle_id != 0 && result.result != CopyResult::NoOp {
                format!("bundle {}/{}, ", job.bundle_id, result.bundle_offset)
            } else {
                String::new()
            };
            let checksum = match (&result.checksum, result.size) {
                (Some(c), s) if s != 0 => format!(" checksum {c}"),
                _ => String::new(),
            };
            (format!("{bundle}{progress_text}"), checksum)
        } else {
            (String::new(), String::new())
        };
        match result.result {
            CopyResult::NoOp => log.detail(&format!(
                "match file from prior backup {shown} ({progress_text}){checksum}"
            )),
            CopyResult::Checksum => log.detail(&format!(
                "checksum resumed file {shown} ({progress_text}){checksum}"
            )),
            CopyResult::Skip => {
                log.detail(&format!("skip file removed by database {shown}"));
                removed.push(file.name.clone());
            }
            CopyResult::Copy | CopyResult::ReCopy => {
                let entry = manifest.files.get_mut(&file.name).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Assert,
                        format!("unable to find '{}' in manifest file list", file.name),
                    )
                })?;
                if result.result == CopyResult::ReCopy {
                    log.warn(&format!(
                        "resumed backup file {} does not have expected checksum {}. The file will be recopied and backup will continue but this may be an issue unless the resumed backup path in the repository is known to be corrupted.\nNOTE: this does not indicate a problem with the PostgreSQL page checksums.",
                        file.name,
                        entry.checksum.as_ref().map(ToString::to_string).unwrap_or_default()
                    ));
                }
                log.detail(&format!("backup file {shown} ({progress_text}){checksum}"));
                entry.checksum_page_error = None;
                if let Some(page) = &result.page {
                    if let Some(warning) = page_warning(page, shown, result.size) {
                        log.warn(&warning);
                    }
                    entry.checksum_page = Some(page.valid);
                    if !page.valid && page.align {
                        entry.checksum_page_error = Some(Box::new(page_error_json(&page.errors)));
                    }
                }
                entry.size = result.size;
                entry.size_repo = result.repo_size;
                entry.checksum = result.checksum.map(Checksum::from);
                entry.checksum_repo = result.repo_checksum.map(Checksum::from);
                entry.reference = None;
                entry.bundle_id = job.bundle_id;
                entry.bundle_offset = result.bundle_offset;
            }
        }
    }
    Ok(())
}

/// Where and how the workers run.
pub struct Workers<'a> {
    /// Number of threads.
    pub process_max: usize,
    /// How files are stored.
    pub settings: &'a JobSettings,
    /// PostgreSQL host storage rooted at `/`.
    pub pg: &'a dyn Storage,
    /// The repository.
    pub repo: &'a dyn Storage,
    /// Logger.
    pub log: &'a Logger,
    /// Read small files ahead of the workers ([`prefetch`]); PGDATA must be a local file system.
    pub prefetch: bool,
}

/// Small files are read ahead of the workers up to this many bytes ...
const PREFETCH_BYTES: u64 = 64 * 1024 * 1024;
/// ... and this many files.
const PREFETCH_FILES: usize = 512;
/// Files up to this size are read ahead (larger ones are read sequentially, where the kernel's own
/// readahead already keeps the disk busy).
const PREFETCH_FILE_MAX: u64 = 4 * 1024 * 1024;

/// Ask the kernel to read the small files of the next jobs into the page cache
/// (`posix_fadvise(WILLNEED)`, which only queues the reads), so a worker finds them there instead
/// of waiting for the disk once per file: with thousands of small files the copy is otherwise
/// bound by read latency, not bandwidth. The window is bounded in bytes and files; the hints are
/// best effort and never fail the backup.
fn prefetch(queue: &Queue, next: &AtomicUsize, done: &AtomicBool) {
    let mut ahead = 0usize;
    while !done.load(Ordering::Relaxed) {
        let head = next.load(Ordering::Relaxed);
        if head >= queue.jobs.len() {
            return;
        }
        ahead = ahead.max(head);
        let mut bytes = 0u64;
        let mut files = 0usize;
        for span in queue.jobs.iter().take(ahead).skip(head) {
            let job = queue.files_of(*span);
            bytes += job.iter().map(|f| f.size).sum::<u64>();
            files += job.len();
        }
        let mut issued = false;
        while bytes < PREFETCH_BYTES && files < PREFETCH_FILES {
            let Some(span) = queue.jobs.get(ahead) else {
                break;
            };
            for file in queue.files_of(*span) {
                if file.size > 0
                    && file.size <= PREFETCH_FILE_MAX
                    && let Ok(handle) = std::fs::File::open(queue.pg_file_of(file))
                {
                    let _ = nix::fcntl::posix_fadvise(
                        &handle,
                        0,
                        0,
                        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
                    );
                }
                bytes += file.size;
                files += 1;
            }
            ahead += 1;
            issued = true;
        }
        if !issued {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

/// Run `jobs` and fold their results into `manifest`. `tick` is called after every result and a
/// few times a second while waiting, with the bytes of the finished jobs.
///
/// # Errors
/// The first job error or `tick` error.
pub fn run(
    manifest: &mut Manifest,
    jobs: &Queue,
    workers: &Workers<'_>,
    tick: &mut dyn FnMut(&Manifest, u64) -> Result<()>,
) -> Result<()> {
    let total = jobs.total_size();
    let mut progress = Progress { total, done: 0 };
    let mut display = crate::progress::Progress::new(workers.log, "backup", total);
    let live = display.enabled();
    let threads = workers.process_max.max(1);
    let reading: Vec<Arc<AtomicU64>> = (0..threads).map(|_| Arc::default()).collect();
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let mut removed = Vec::new();
    let mut first_error: Option<Error> = None;
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(Job, Result<Vec<FileResult>>)>();
        if workers.prefetch {
            let (next, done) = (&next, &done);
            scope.spawn(move || prefetch(jobs, next, done));
        }
        for read in &reading {
            let tx = tx.clone();
            let (next, abort) = (&next, &abort);
            let counted = Counted {
                inner: workers.pg,
                read: Arc::clone(read),
            };
            scope.spawn(move || {
                let pg: &dyn Storage = if live { &counted } else { workers.pg };
                let mut buffer = Vec::new();
                while !abort.load(Ordering::Relaxed) {
                    let idx = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.job(idx) else {
                        break;
                    };
                    let result =
                        job::execute(&job, workers.settings, pg, workers.repo, &mut buffer);
                    counted.read.store(0, Ordering::Relaxed);
                    let failed = result.is_err();
                    if tx.send((job, result)).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let fail = |e: Error, first: &mut Option<Error>| {
            abort.store(true, Ordering::Relaxed);
            if first.is_none() {
                *first = Some(e);
            }
        };
        let running = || -> u64 { reading.iter().map(|r| r.load(Ordering::Relaxed)).sum() };
        loop {
            match rx.recv_timeout(crate::progress::REDRAW) {
                Ok((job, Ok(results))) => {
                    if first_error.is_some() {
                        continue;
                    }
                    let applied = apply(
                        manifest,
                        &job,
                        results,
                        &mut progress,
                        workers.log,
                        &mut removed,
                    );
                    if let Err(e) = applied.and_then(|()| tick(manifest, progress.done)) {
                        fail(e, &mut first_error);
                    }
                    display.update(progress.done + running());
                }
                Ok((_, Err(e))) => fail(e, &mut first_error),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if first_error.is_none()
                        && let Err(e) = tick(manifest, progress.done)
                    {
                        fail(e, &mut first_error);
                    }
                    display.update(progress.done + running());
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        done.store(true, Ordering::Relaxed);
    });
    display.finish();
    if let Some(e) = first_error {
        return Err(e);
    }
    for name in removed {
        manifest.files.remove(&name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use pgkeep_pg::PgVersion;
    use pgkeep_repo::manifest::ManifestFile;

    use super::*;

    fn manifest(files: &[(&str, u64, i64)]) -> Manifest {
        use pgkeep_repo::layout::{BackupType, CompressType};
        use pgkeep_repo::manifest::{ManifestBackup, ManifestBackupDb, ManifestOptions};
        let mut m = Manifest::new(
            ManifestBackup {
                label: "20260101-000000F".to_string(),
                prior: None,
                backup_type: BackupType::Full,
                reference: Vec::new(),
                archive_start: None,
                archive_stop: None,
                lsn_start: None,
                lsn_stop: None,
                timestamp_copy_start: 0,
                timestamp_start: 0,
                timestamp_stop: 0,
                bundle: false,
                bundle_raw: false,
                block_incr: false,
            },
            ManifestBackupDb {
                id: 1,
                system_id: 1,
                catalog_version: 202_209_061,
                control_version: 1300,
                version: PgVersion::from_major(15).unwrap(),
            },
            ManifestOptions {
                archive_check: true,
                archive_copy: false,
                backup_standby: None,
                buffer_size: None,
                checksum_page: None,
                compress_type: CompressType::Lz4,
                compress_level: None,
                compress_level_network: None,
                delta: None,
                hardlink: false,
                online: true,
                process_max: None,
            },
        );
        for (name, size, ts) in files {
            m.files.insert(
                (*name).to_string(),
                ManifestFile::new(*size, *ts, 0o600, None, None),
            );
        }
        m
    }

    /// Every job of the queue, as the workers build them.
    fn all(queue: &Queue) -> Vec<Job> {
        (0..queue.jobs.len())
            .map(|idx| queue.job(idx).unwrap())
            .collect()
    }

    fn plan_for<'a>(
        dd: &'a DataDir,
        bundle: Option<Bundling>,
        empty: &'a BTreeSet<String>,
    ) -> Plan<'a> {
        Plan {
            stanza: "demo",
            pg_path: "/pg",
            datadir: dd,
            bundle,
            delta: false,
            resumed: empty,
            standby: None,
        }
    }

    #[test]
    fn standby_files_are_what_pgbackrest_copies_from_the_standby() {
        for name in [
            "pg_data/base/5/16384",
            "pg_data/base/5/16384.1",
            "pg_data/global/1260",
            "pg_data/pg_xact/0000",
            "pg_data/pg_multixact/members/0000",
            "pg_tblspc/16385/PG_15_202209061/5/16386",
        ] {
            assert!(standby_file(name, "pg_xact"), "{name}");
        }
        for name in [
            "pg_data/global/pg_control",
            "pg_data/PG_VERSION",
            "pg_data/postgresql.auto.conf",
            "pg_data/pg_logical/replorigin_checkpoint",
            "pg_data/pg_clog/0000",
            "pg_data/backup_label",
            "pg_data/base",
        ] {
            assert!(!standby_file(name, "pg_xact"), "{name}");
        }
        assert!(standby_file("pg_data/pg_clog/0000", "pg_clog"));

        let dd = DataDir::new(PgVersion::from_major(15).unwrap(), 202_209_061).unwrap();
        let empty = BTreeSet::new();
        let m = manifest(&[
            ("pg_data/global/pg_control", 8192, 1),
            ("pg_data/base/5/1", 8192, 1),
            ("pg_data/PG_VERSION", 3, 1),
        ]);
        let plan = Plan {
            standby: Some(StandbySource {
                pg_path: "/standby",
                xact_path: "pg_xact",
            }),
            ..plan_for(&dd, None, &empty)
        };
        let mut read: Vec<(String, String)> = all(&jobs(&m, &plan).unwrap())
            .into_iter()
            .flat_map(|j| j.files)
            .map(|f| (f.name, f.pg_file))
            .collect();
        read.sort();
        assert_eq!(
            read,
            [
                (
                    "pg_data/PG_VERSION".to_string(),
                    "/pg/PG_VERSION".to_string()
                ),
                (
                    "pg_data/base/5/1".to_string(),
                    "/standby/base/5/1".to_string()
                ),
                (
                    "pg_data/global/pg_control".to_string(),
                    "/pg/global/pg_control".to_string()
                ),
            ]
        );
    }

    #[test]
    fn largest_first_and_bundles_filled_greedily() {
        let dd = DataDir::new(PgVersion::from_major(15).unwrap(), 202_209_061).unwrap();
        let empty = BTreeSet::new();
        let m = manifest(&[
            ("pg_data/a", 10, 5),
            ("pg_data/b", 300, 5),
            ("pg_data/c", 40, 1),
            ("pg_data/d", 60, 2),
            ("pg_data/e", 0, 1),
            ("pg_data/global/pg_control", 8192, 1),
        ]);
        let plan = plan_for(&dd, None, &empty);
        let order: Vec<String> = all(&jobs(&m, &plan).unwrap())
            .into_iter()
            .map(|j| j.files[0].name.clone())
            .collect();
        assert_eq!(
            order,
            [
                "pg_data/global/pg_control",
                "pg_data/b",
                "pg_data/d",
                "pg_data/c",
                "pg_data/a",
                "pg_data/e"
            ]
        );
        let bundled = all(&jobs(
            &m,
            &plan_for(
                &dd,
                Some(Bundling {
                    size: 100,
                    limit: 100,
                }),
                &empty,
            ),
        )
        .unwrap());
        let shape: Vec<(u64, Vec<&str>)> = bundled
            .iter()
            .map(|j| {
                (
                    j.bundle_id,
                    j.files.iter().map(|f| f.name.as_str()).collect(),
                )
            })
            .collect();
        // zero-length files are not copied when bundling; oldest first (c, d, a), and a file
        // that would fill the bundle to its size (d: 40 + 60) waits for the next one
        assert_eq!(
            shape,
            [
                (0, vec!["pg_data/global/pg_control"]),
                (0, vec!["pg_data/b"]),
                (1, vec!["pg_data/c", "pg_data/a"]),
                (2, vec!["pg_data/d"]),
            ]
        );
        assert_eq!(
            bundled[2].repo_file,
            "backup/demo/20260101-000000F/bundle/1"
        );
        assert_eq!(
            bundled[1].repo_file,
            "backup/demo/20260101-000000F/pg_data/b.lz4"
        );
        assert!(!bundled[0].files[0].ignore_missing);
        assert!(bundled[1].files[0].ignore_missing);
    }

    #[test]
    fn jobs_are_built_by_the_queue_with_checksums_only_when_needed() {
        let dd = DataDir::new(PgVersion::from_major(15).unwrap(), 202_209_061).unwrap();
        let empty = BTreeSet::new();
        let mut m = manifest(&[
            ("pg_data/a", 10, 1),
            ("pg_data/b", 20, 1),
            ("pg_data/c", 30, 1),
        ]);
        // a and b are taken from the prior backup; c is new
        for name in ["pg_data/a", "pg_data/b"] {
            let f = m.files.get_mut(name).unwrap();
            f.reference = Some("20250101-000000F".into());
            f.checksum = Some(name.replace("pg_data/", "").repeat(40).into());
        }
        m.files.get_mut("pg_data/c").unwrap().checksum_repo = Some("r".repeat(40).into());
        // without delta the referenced files need no copy at all
        let plain = all(&jobs(&m, &plan_for(&dd, None, &empty)).unwrap());
        let names: Vec<&str> = plain.iter().map(|j| j.files[0].name.as_str()).collect();
        assert_eq!(names, ["pg_data/c"]);
        assert_eq!(plain[0].files[0].checksum, None);
        assert_eq!(plain[0].files[0].repo_checksum, None);
        assert_eq!(plain[0].files[0].pg_file, "/pg/c");
        assert_eq!(
            plain[0].repo_file,
            "backup/demo/20260101-000000F/pg_data/c.lz4"
        );
        // with delta they are compared, so they carry their checksum; a resumed file its stored one
        let resumed: BTreeSet<String> = ["pg_data/c".to_string()].into();
        let plan = Plan {
            delta: true,
            resumed: &resumed,
            ..plan_for(&dd, None, &empty)
        };
        let delta = all(&jobs(&m, &plan).unwrap());
        let got: Vec<(&str, bool, Option<&str>, Option<&str>)> = delta
            .iter()
            .map(|j| {
                let f = &j.files[0];
                (
                    f.name.as_str(),
                    f.delta,
                    f.checksum.as_deref().map(|c| &c[..1]),
                    f.repo_checksum.as_deref().map(|c| &c[..1]),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("pg_data/c", false, None, Some("r")),
                ("pg_data/b", true, Some("b"), None),
                ("pg_data/a", true, Some("a"), None),
            ]
        );
        assert!(delta[0].files[0].resume && !delta[1].files[0].resume);
    }

    #[test]
    fn files_removed_during_the_backup_leave_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let pg_path = dir.path().join("pg");
        std::fs::create_dir_all(pg_path.join("global")).unwrap();
        std::fs::write(pg_path.join("global/pg_control"), vec![1u8; 8192]).unwrap();
        std::fs::write(pg_path.join("kept"), b"abc").unwrap();
        let mut m = manifest(&[
            ("pg_data/global/pg_control", 8192, 1),
            ("pg_data/kept", 3, 1),
            ("pg_data/dropped", 5, 1),
        ]);
        let dd = DataDir::new(PgVersion::from_major(15).unwrap(), 202_209_061).unwrap();
        let empty = BTreeSet::new();
        let pg_path = pg_path.to_str().unwrap().to_string();
        let plan = Plan {
            pg_path: &pg_path,
            ..plan_for(&dd, None, &empty)
        };
        let jobs = jobs(&m, &plan).unwrap();
        let repo =
            pgkeep_storage::posix::PosixStorage::new(dir.path().join("repo").to_str().unwrap());
        let settings = JobSettings {
            compress: pgkeep_repo::layout::CompressType::Lz4,
            level: 1,
            cipher_pass: None,
            sync_each: false,
        };
        let log = Logger::new(crate::log::LogSettings {
            console: Level::Off,
            stderr: Level::Off,
            file: Level::Off,
            timestamp: false,
            process: 0,
        });
        let workers = Workers {
            process_max: 2,
            settings: &settings,
            pg: &pgkeep_storage::posix::PosixStorage::new("/"),
            repo: &repo,
            log: &log,
            prefetch: true,
        };
        let mut ticks = 0;
        run(&mut m, &jobs, &workers, &mut |_, _| {
            ticks += 1;
            Ok(())
        })
        .unwrap();
        assert!(ticks >= 2);
        let names: Vec<&str> = m.files.keys().map(String::as_str).collect();
        assert_eq!(names, ["pg_data/global/pg_control", "pg_data/kept"]);
        let kept = &m.files["pg_data/kept"];
        assert_eq!(kept.size, 3);
        assert!(kept.checksum.is_some() && kept.checksum_repo.is_some());
        assert!(
            dir.path()
                .join("repo/backup/demo/20260101-000000F/pg_data/kept.lz4")
                .exists()
        );
        // an error in a job (pg_control gone) ends the run with that error
        std::fs::remove_file(dir.path().join("pg/global/pg_control")).unwrap();
        let err = run(&mut m, &jobs, &workers, &mut |_, _| Ok(())).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileMissing);
    }

    #[test]
    fn page_warnings_like_pgbackrest() {
        let bad = PageResult {
            valid: false,
            align: true,
            errors: vec![2, 3, 6],
        };
        assert_eq!(
            page_warning(&bad, "/pg/base/5/1", 73728).unwrap(),
            "invalid page checksums found in file /pg/base/5/1 at pages 2-3, 6"
        );
        assert_eq!(page_error_json(&bad.errors).render(), "[[2,3],6]");
        let one = PageResult {
            valid: false,
            align: true,
            errors: vec![0],
        };
        assert_eq!(
            page_warning(&one, "f", 8192).unwrap(),
            "invalid page checksum found in file f at page 0"
        );
        let misaligned = PageResult {
            valid: false,
            align: false,
            errors: vec![],
        };
        assert_eq!(
            page_warning(&misaligned, "f", 100).unwrap(),
            "page misalignment in file f: file size 100 is not divisible by page size 8192"
        );
        assert_eq!(
            page_warning(
                &PageResult {
                    valid: true,
                    align: true,
                    errors: vec![]
                },
                "f",
                0
            ),
            None
        );
    }
}
