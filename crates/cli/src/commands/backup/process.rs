//! The copy phase (pgBackRest `backupProcess()`, `backupProcessQueue()`, `backupJobCallback()`,
//! `backupJobResult()`): turn the file list into jobs, run them on `process-max` threads, and
//! record what each did.
//!
//! Contract:
//! - Jobs are ordered largest file first (pgBackRest's queue order: size descending; with bundles,
//!   files up to the bundle limit by mtime ascending, then name), so the biggest files start
//!   early and the run ends with small ones. A bundle starts with the next small file and takes,
//!   in queue order, each one that keeps it under `repo-bundle-size`, and ends once
//!   [`LOOKAHEAD_FILES`] files have been passed over (pgBackRest looks through the whole queue,
//!   which is in memory there); ids count from 1 in job order.
//! - Memory does not grow with the number of files: the queue is a [`Sorter`] on disk, read in
//!   order by the workers through a window of at most [`LOOKAHEAD_FILES`] files (a bundle job
//!   being built holds the files it took besides: as many as fit in `repo-bundle-size`), and
//!   what each job did is written by file index to [`Results`] on disk. Worker threads take the next job
//!   from the shared queue and send results over a channel; only the calling thread writes the
//!   results. The first error stops the workers from taking new jobs and is returned once the
//!   running ones have ended. No file content is ever held beyond one chunk buffer per worker.
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
//! - Results: files removed by the database leave the manifest ([`Outcome::Removed`]); copied
//!   files get their sizes, checksums, page results and bundle location and lose any reference
//!   ([`Outcome::Copied`]); page checksum failures are warnings naming the file and pages.

use std::cmp::Ordering as CmpOrdering;
use std::collections::VecDeque;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use pgkeep_base::spool::{Sorted, Sorter, le_u32, le_u64};
use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_pg::datadir::{self, DataDir};
use pgkeep_pg::page::{PAGE_SIZE, PageErrorRange, collapse_errors};
use pgkeep_repo::info::json::Json;
use pgkeep_repo::layout;
use pgkeep_repo::manifest::Checksum;
use pgkeep_repo::manifest::build::{pg_relative, unchanged};
use pgkeep_repo::manifest::spool::{Copied, FileList, Outcome, Results};
use pgkeep_storage::{
    Features, InfoLevel, LinkType, ReadOptions, Storage, StorageInfo, StorageWrite, WriteOptions,
};

use super::job::{self, CopyResult, FileResult, Job, JobFile, JobSettings, PageResult};
use super::resume::RESUMED;
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
    /// Label of the backup being written.
    pub label: &'a str,
    /// Extension of stored files (compression).
    pub ext: &'static str,
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

/// The queue's window: the most files it holds in memory, and how many files a bundle may pass
/// over before it ends.
pub const LOOKAHEAD_FILES: usize = 512;
/// Small files are read ahead of the workers up to this many bytes ...
const PREFETCH_BYTES: u64 = 64 * 1024 * 1024;
/// Files up to this size are read ahead (larger ones are read sequentially, where the kernel's own
/// readahead already keeps the disk busy).
const PREFETCH_FILE_MAX: u64 = 4 * 1024 * 1024;

const Q_CHECKSUM: u16 = 1;
const Q_REPO_CHECKSUM: u16 = 2;
const Q_PAGE: u16 = 4;
const Q_EXACT: u16 = 8;
const Q_IGNORE_MISSING: u16 = 16;
const Q_DELTA: u16 = 32;
const Q_REFERENCE: u16 = 64;
const Q_RESUME: u16 = 128;
const Q_STANDBY: u16 = 256;
/// Bytes before the name in a queue record: size, timestamp, index, repo size (8 each), flags
/// (2), segment (4), name length (4).
const Q_HEADER: usize = 42;
/// Where the name length is.
const Q_NAME_LEN: usize = 38;

fn record_name(record: &[u8]) -> &[u8] {
    let len = le_u32(record, Q_NAME_LEN) as usize;
    record.get(Q_HEADER..Q_HEADER + len).unwrap_or_default()
}

/// One file waiting to be copied: what its [`JobFile`] is built from when its job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Queued {
    idx: u64,
    name: String,
    size: u64,
    timestamp: i64,
    repo_size: u64,
    /// Checksums known before the copy (delta, resume).
    checksum: Option<Checksum>,
    repo_checksum: Option<Checksum>,
    checksum_page: Option<u32>,
    copy_exact_size: bool,
    ignore_missing: bool,
    delta: bool,
    has_reference: bool,
    resume: bool,
    /// Read from the standby's PGDATA.
    standby: bool,
}

fn put_checksum(out: &mut Vec<u8>, checksum: &Checksum) {
    let text = checksum.to_string();
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn get_checksum(input: &mut &[u8]) -> Result<Checksum> {
    let corrupt = || Error::new(ErrorKind::Format, "temporary job queue record is corrupt");
    let len = le_u32(input, 0) as usize;
    let text = input.get(4..4 + len).ok_or_else(corrupt)?;
    let text = std::str::from_utf8(text).map_err(|_| corrupt())?;
    let sum = Checksum::parse(text);
    *input = input.get(4 + len..).unwrap_or_default();
    Ok(sum)
}

impl Queued {
    fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        out.extend_from_slice(&self.idx.to_le_bytes());
        out.extend_from_slice(&self.repo_size.to_le_bytes());
        let mut flags = 0u16;
        for (on, flag) in [
            (self.checksum.is_some(), Q_CHECKSUM),
            (self.repo_checksum.is_some(), Q_REPO_CHECKSUM),
            (self.checksum_page.is_some(), Q_PAGE),
            (self.copy_exact_size, Q_EXACT),
            (self.ignore_missing, Q_IGNORE_MISSING),
            (self.delta, Q_DELTA),
            (self.has_reference, Q_REFERENCE),
            (self.resume, Q_RESUME),
            (self.standby, Q_STANDBY),
        ] {
            if on {
                flags |= flag;
            }
        }
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&self.checksum_page.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&(self.name.len() as u32).to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
        if let Some(sum) = &self.checksum {
            put_checksum(out, sum);
        }
        if let Some(sum) = &self.repo_checksum {
            put_checksum(out, sum);
        }
    }

    fn decode(record: &[u8]) -> Result<Queued> {
        let corrupt = || Error::new(ErrorKind::Format, "temporary job queue record is corrupt");
        let flags = u16::from_le_bytes([
            record.get(32).copied().unwrap_or(0),
            record.get(33).copied().unwrap_or(0),
        ]);
        let name_len = le_u32(record, Q_NAME_LEN) as usize;
        let name = record
            .get(Q_HEADER..Q_HEADER + name_len)
            .ok_or_else(corrupt)?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| corrupt())?;
        let mut rest = record.get(Q_HEADER + name_len..).unwrap_or_default();
        let checksum = if flags & Q_CHECKSUM != 0 {
            Some(get_checksum(&mut rest)?)
        } else {
            None
        };
        let repo_checksum = if flags & Q_REPO_CHECKSUM != 0 {
            Some(get_checksum(&mut rest)?)
        } else {
            None
        };
        Ok(Queued {
            size: le_u64(record, 0),
            timestamp: le_u64(record, 8) as i64,
            idx: le_u64(record, 16),
            repo_size: le_u64(record, 24),
            checksum,
            repo_checksum,
            checksum_page: (flags & Q_PAGE != 0).then(|| le_u32(record, 34)),
            copy_exact_size: flags & Q_EXACT != 0,
            ignore_missing: flags & Q_IGNORE_MISSING != 0,
            delta: flags & Q_DELTA != 0,
            has_reference: flags & Q_REFERENCE != 0,
            resume: flags & Q_RESUME != 0,
            standby: flags & Q_STANDBY != 0,
            name,
        })
    }
}

/// The queue order of two records (see the module contract).
type QueueOrder = Box<dyn Fn(&[u8], &[u8]) -> CmpOrdering + Send + Sync>;

fn queue_order(bundle_limit: Option<u64>) -> QueueOrder {
    Box::new(move |a: &[u8], b: &[u8]| {
        let (a_size, b_size) = (le_u64(a, 0), le_u64(b, 0));
        let small = bundle_limit.is_some_and(|l| a_size <= l && b_size <= l);
        let by_size = if small {
            CmpOrdering::Equal
        } else {
            b_size.cmp(&a_size)
        };
        let by_time = if bundle_limit.is_some() {
            (le_u64(a, 8) as i64).cmp(&(le_u64(b, 8) as i64))
        } else {
            CmpOrdering::Equal
        };
        by_size
            .then(by_time)
            .then_with(|| record_name(b).cmp(record_name(a)))
    })
}

/// The jobs of a backup, in the order they run (see the module contract).
pub struct Queue {
    source: Mutex<Source>,
    total: u64,
    files: u64,
    pg_control: bool,
    bundle: Option<Bundling>,
    stanza: String,
    label: String,
    ext: &'static str,
    pg_path: String,
    standby_path: Option<String>,
}

/// The queue's reading end, shared by the workers and the prefetcher.
struct Source {
    sorted: Sorted<QueueOrder>,
    /// The next files, in order (at most [`LOOKAHEAD_FILES`]).
    ahead: VecDeque<Queued>,
    /// Bytes of `ahead`.
    ahead_bytes: u64,
    /// The first `advised` files of `ahead` have been handed to the prefetcher.
    advised: usize,
    exhausted: bool,
    next_bundle: u64,
    record: Vec<u8>,
    /// Files handed out in jobs so far (all of them once the copy is done).
    handed: u64,
    /// The first read error: the queue is over, and every later read returns it, so no file is
    /// ever skipped or handed out twice.
    failed: Option<Error>,
}

impl Source {
    /// Read the next file into `ahead`; false at the end.
    fn read_one(&mut self) -> Result<bool> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let read = if self.exhausted {
            Ok(false)
        } else {
            self.sorted.next_into(&mut self.record)
        };
        let queued =
            match read.and_then(|more| more.then(|| Queued::decode(&self.record)).transpose()) {
                Ok(Some(queued)) => queued,
                Ok(None) => {
                    self.exhausted = true;
                    return Ok(false);
                }
                Err(e) => {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            };
        self.ahead_bytes += queued.size;
        self.ahead.push_back(queued);
        Ok(true)
    }

    /// Fill `ahead` up to `files` files and `bytes` bytes.
    fn fill(&mut self, files: usize, bytes: u64) -> Result<()> {
        while self.ahead.len() < files && self.ahead_bytes < bytes && self.read_one()? {}
        Ok(())
    }

    fn take(&mut self, at: usize) -> Option<Queued> {
        let queued = self.ahead.remove(at)?;
        self.handed += 1;
        self.ahead_bytes -= queued.size;
        if at < self.advised {
            self.advised -= 1;
        }
        Some(queued)
    }

    /// The files of the next job and its bundle id (0: not bundled).
    fn next_job(&mut self, bundle: Option<Bundling>) -> Result<Option<(u64, Vec<Queued>)>> {
        if self.ahead.is_empty() {
            self.read_one()?;
        }
        let Some(first) = self.take(0) else {
            return Ok(None);
        };
        let Some(b) = bundle.filter(|b| first.size <= b.limit) else {
            return Ok(Some((0, vec![first])));
        };
        self.fill(LOOKAHEAD_FILES, u64::MAX)?;
        let mut total = first.size;
        let mut files = vec![first];
        let mut at = 0;
        while total < b.size {
            // each file taken makes room for the next in the queue, so a bundle ends when it is
            // full or when a whole window of files was passed over, not where the window ends
            self.fill(LOOKAHEAD_FILES, u64::MAX)?;
            let Some(next) = self.ahead.get(at) else {
                break;
            };
            if next.size <= b.limit && total + next.size < b.size {
                total += next.size;
                files.extend(self.take(at));
            } else {
                at += 1;
            }
        }
        let id = self.next_bundle;
        self.next_bundle += 1;
        Ok(Some((id, files)))
    }
}

impl Queue {
    /// True when there is nothing to copy.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.files == 0
    }

    /// Bytes to copy (sizes recorded in the manifest).
    #[must_use]
    pub fn total_size(&self) -> u64 {
        self.total
    }

    /// True when pg_control is among the files to copy.
    #[must_use]
    pub fn has_pg_control(&self) -> bool {
        self.pg_control
    }

    fn pg_file_of(&self, file: &Queued) -> String {
        let pg_path = match (&self.standby_path, file.standby) {
            (Some(standby), true) => standby,
            _ => &self.pg_path,
        };
        pg_file(pg_path, &file.name)
    }

    /// The next job, ready to run; `None` when all have been taken.
    ///
    /// # Errors
    /// Read errors of the queue's temporary file.
    pub fn next_job(&self) -> Result<Option<Job>> {
        let next = self
            .source
            .lock()
            .map_err(|_| Error::new(ErrorKind::Assert, "backup job queue lock poisoned"))?
            .next_job(self.bundle)?;
        let Some((bundle_id, queued)) = next else {
            return Ok(None);
        };
        let files: Vec<JobFile> = queued
            .into_iter()
            .map(|q| JobFile {
                pg_file: self.pg_file_of(&q),
                idx: q.idx,
                name: q.name,
                size: q.size,
                copy_exact_size: q.copy_exact_size,
                ignore_missing: q.ignore_missing,
                checksum_page: q.checksum_page,
                delta: q.delta,
                checksum: q.checksum.as_ref().map(ToString::to_string),
                has_reference: q.has_reference,
                resume: q.resume,
                repo_checksum: q.repo_checksum.as_ref().map(ToString::to_string),
                repo_size: q.repo_size,
            })
            .collect();
        let repo_file = if bundle_id != 0 {
            layout::bundle_path(&self.stanza, &self.label, bundle_id)
        } else {
            let name = files.first().map_or("", |f| f.name.as_str());
            layout::backup_file_path(&self.stanza, &self.label, name, self.ext)
        };
        Ok(Some(Job {
            repo_file,
            bundle_id,
            files,
        }))
    }

    /// Paths of small files the workers will read soon that were not yet handed out for read
    /// ahead; empty when there are none (yet). Best effort: a queue read error ends read ahead.
    fn prefetch_batch(&self) -> Option<Vec<String>> {
        let mut source = self.source.lock().ok()?;
        source.fill(LOOKAHEAD_FILES, PREFETCH_BYTES).ok()?;
        let start = source.advised;
        source.advised = source.ahead.len();
        let batch: Vec<String> = source
            .ahead
            .iter()
            .skip(start)
            .filter(|f| f.size > 0 && f.size <= PREFETCH_FILE_MAX)
            .map(|f| self.pg_file_of(f))
            .collect();
        if batch.is_empty() && source.exhausted && source.ahead.is_empty() {
            return None;
        }
        Some(batch)
    }
}

/// Queue the files of `files` that need copying (one pass over the list, sorted on disk into job
/// order).
///
/// # Errors
/// Read errors of the list, write errors of the queue's temporary file.
pub fn jobs(files: &FileList, plan: &Plan<'_>) -> Result<Queue> {
    let mut sorter = Sorter::new("job queue", queue_order(plan.bundle.map(|b| b.limit)));
    let mut total = 0u64;
    let mut pg_control = false;
    let mut record = Vec::new();
    files.for_each(|idx, entry| {
        let file = &entry.file;
        // zero-length files of a bundled backup are never stored
        if (plan.bundle.is_some() && file.size == 0) || unchanged(file, plan.delta) {
            return Ok(());
        }
        let rel = pg_relative(&entry.name);
        let has_reference = file.reference.is_some();
        let resume = entry.mark & RESUMED != 0;
        // a resumed file is delta-checked too (pgBackRest `backupResumeClean()` sets its delta):
        // under delta, resume does not compare timestamps, so the database file must still
        // match the stored copy's checksum for the copy to be kept
        let delta = plan.delta && file.size != 0 && (has_reference || resume);
        let queued = Queued {
            idx,
            size: file.size,
            timestamp: file.timestamp,
            repo_size: file.size_repo,
            checksum: file.checksum.clone().filter(|_| delta || resume),
            repo_checksum: file.checksum_repo.clone().filter(|_| resume),
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
                .is_some_and(|standby| standby_file(&entry.name, standby.xact_path)),
            name: entry.name,
        };
        pg_control |= !queued.ignore_missing;
        total += queued.size;
        queued.encode(&mut record);
        sorter.push(&record)
    })?;
    let count = sorter.len();
    Ok(Queue {
        source: Mutex::new(Source {
            sorted: sorter.finish()?,
            ahead: VecDeque::new(),
            ahead_bytes: 0,
            advised: 0,
            exhausted: false,
            next_bundle: 1,
            record: Vec::new(),
            handed: 0,
            failed: None,
        }),
        total,
        files: count,
        pg_control,
        bundle: plan.bundle,
        stanza: plan.stanza.to_string(),
        label: plan.label.to_string(),
        ext: plan.ext,
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

    fn sync_all_covers(&self, path: &str) -> bool {
        self.inner.sync_all_covers(path)
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

/// A hex SHA-1 of a job result as 20 bytes.
fn sha1_bytes(hex: Option<&String>, name: &str) -> Result<Option<[u8; 20]>> {
    hex.map(|h| {
        Checksum::parse(h).as_bytes().copied().ok_or_else(|| {
            Error::new(
                ErrorKind::Assert,
                format!("invalid checksum '{h}' computed for '{name}'"),
            )
        })
    })
    .transpose()
}

/// Record one job's results; `pid` is the worker that ran it (from 1), shown on its lines.
fn apply(
    results: &mut Results,
    (pid, job, outcomes): (u32, Job, Vec<FileResult>),
    progress: &mut Progress,
    log: &Logger,
) -> Result<()> {
    let detail = log.enabled(Level::Detail);
    for (file, result) in job.files.iter().zip(outcomes) {
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
            CopyResult::NoOp => log.log_pid(
                pid,
                Level::Detail,
                &format!("match file from prior backup {shown} ({progress_text}){checksum}"),
            ),
            CopyResult::Checksum => log.log_pid(
                pid,
                Level::Detail,
                &format!("checksum resumed file {shown} ({progress_text}){checksum}"),
            ),
            CopyResult::Skip => {
                log.log_pid(
                    pid,
                    Level::Detail,
                    &format!("skip file removed by database {shown}"),
                );
                results.put(file.idx, &Outcome::Removed)?;
            }
            CopyResult::Copy | CopyResult::ReCopy => {
                if result.result == CopyResult::ReCopy {
                    log.warn(&format!(
                        "resumed backup file {} does not have expected checksum {}. The file will be recopied and backup will continue but this may be an issue unless the resumed backup path in the repository is known to be corrupted.\nNOTE: this does not indicate a problem with the PostgreSQL page checksums.",
                        file.name,
                        file.checksum.as_deref().unwrap_or_default()
                    ));
                }
                log.log_pid(
                    pid,
                    Level::Detail,
                    &format!("backup file {shown} ({progress_text}){checksum}"),
                );
                let mut copied = Copied {
                    size: result.size,
                    size_repo: result.repo_size,
                    checksum: sha1_bytes(result.checksum.as_ref(), &file.name)?,
                    checksum_repo: sha1_bytes(result.repo_checksum.as_ref(), &file.name)?,
                    checksum_page: None,
                    checksum_page_error: None,
                    bundle_id: job.bundle_id,
                    bundle_offset: result.bundle_offset,
                };
                if let Some(page) = &result.page {
                    if let Some(warning) = page_warning(page, shown, result.size) {
                        log.warn(&warning);
                    }
                    copied.checksum_page = Some(page.valid);
                    if !page.valid && page.align {
                        copied.checksum_page_error = Some(page_error_json(&page.errors));
                    }
                }
                results.put(file.idx, &Outcome::Copied(copied))?;
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

/// Ask the kernel to read the small files of the next jobs into the page cache
/// (`posix_fadvise(WILLNEED)`, which only queues the reads), so a worker finds them there instead
/// of waiting for the disk once per file: with thousands of small files the copy is otherwise
/// bound by read latency, not bandwidth. The window is the queue's lookahead (bounded in bytes and
/// files); the hints are best effort and never fail the backup.
fn prefetch(queue: &Queue, done: &AtomicBool) {
    while !done.load(Ordering::Relaxed) {
        let Some(batch) = queue.prefetch_batch() else {
            return;
        };
        if batch.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(2));
            continue;
        }
        for path in batch {
            if let Ok(handle) = std::fs::File::open(path) {
                let _ = nix::fcntl::posix_fadvise(
                    &handle,
                    0,
                    0,
                    nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
                );
            }
        }
    }
}

/// Run the jobs of `queue`, recording what they did in `results`. `tick` is called after every
/// result and a few times a second while waiting, with the results so far and the bytes of the
/// finished jobs.
///
/// # Errors
/// The first job error or `tick` error; read and write errors of the temporary files.
pub fn run(
    queue: &Queue,
    workers: &Workers<'_>,
    results: &mut Results,
    tick: &mut dyn FnMut(&Results, u64) -> Result<()>,
) -> Result<()> {
    let total = queue.total_size();
    let mut progress = Progress { total, done: 0 };
    let mut display = crate::progress::Progress::new(workers.log, "backup", total);
    let live = display.enabled();
    let threads = workers.process_max.max(1);
    let reading: Vec<Arc<AtomicU64>> = (0..threads).map(|_| Arc::default()).collect();
    let abort = AtomicBool::new(false);
    let mut first_error: Option<Error> = None;
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // bounded: results waiting for the calling thread never pile up in memory (a worker
        // waits instead)
        let (tx, rx) = mpsc::sync_channel::<Result<(u32, Job, Vec<FileResult>)>>(threads * 16);
        if workers.prefetch {
            let done = &done;
            scope.spawn(move || prefetch(queue, done));
        }
        for (pid, read) in (1u32..).zip(&reading) {
            let tx = tx.clone();
            let abort = &abort;
            let counted = Counted {
                inner: workers.pg,
                read: Arc::clone(read),
            };
            scope.spawn(move || {
                let pg: &dyn Storage = if live { &counted } else { workers.pg };
                let mut buffer = Vec::new();
                while !abort.load(Ordering::Relaxed) {
                    let job = match queue.next_job() {
                        Ok(Some(job)) => job,
                        Ok(None) => break,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            break;
                        }
                    };
                    let result =
                        job::execute(&job, workers.settings, pg, workers.repo, &mut buffer)
                            .map(|files| (pid, job, files));
                    counted.read.store(0, Ordering::Relaxed);
                    let failed = result.is_err();
                    if tx.send(result).is_err() || failed {
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
                Ok(Ok(done_job)) => {
                    if first_error.is_some() {
                        continue;
                    }
                    let applied = apply(results, done_job, &mut progress, workers.log);
                    if let Err(e) = applied.and_then(|()| tick(results, progress.done)) {
                        fail(e, &mut first_error);
                    }
                    display.update(progress.done + running());
                }
                Ok(Err(e)) => fail(e, &mut first_error),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if first_error.is_none()
                        && let Err(e) = tick(results, progress.done)
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
    // every queued file went into a job (a defect otherwise: refuse to record the backup)
    let handed = queue
        .source
        .lock()
        .map_err(|_| Error::new(ErrorKind::Assert, "backup job queue lock poisoned"))?
        .handed;
    if handed != queue.files {
        return Err(Error::new(
            ErrorKind::Assert,
            format!(
                "backup job queue handed out {handed} of {} files",
                queue.files
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use pgkeep_pg::PgVersion;
    use pgkeep_repo::manifest::ManifestFile;
    use pgkeep_repo::manifest::spool::{FileListWriter, each_final};

    use super::*;

    fn list(files: &[(&str, u64, i64)]) -> FileList {
        let map: BTreeMap<String, ManifestFile> = files
            .iter()
            .map(|(name, size, ts)| {
                (
                    (*name).to_string(),
                    ManifestFile::new(*size, *ts, 0o600, None, None),
                )
            })
            .collect();
        FileList::from_map(&map).unwrap()
    }

    /// Every job of the queue, as the workers take them.
    fn all(queue: &Queue) -> Vec<Job> {
        let mut jobs = Vec::new();
        while let Some(job) = queue.next_job().unwrap() {
            jobs.push(job);
        }
        jobs
    }

    fn plan_for(dd: &DataDir, bundle: Option<Bundling>) -> Plan<'_> {
        Plan {
            label: "20260101-000000F",
            ext: ".lz4",
            stanza: "demo",
            pg_path: "/pg",
            datadir: dd,
            bundle,
            delta: false,
            standby: None,
        }
    }

    fn datadir() -> DataDir {
        DataDir::new(PgVersion::from_major(15).unwrap(), 202_209_061).unwrap()
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

        let dd = datadir();
        let files = list(&[
            ("pg_data/global/pg_control", 8192, 1),
            ("pg_data/base/5/1", 8192, 1),
            ("pg_data/PG_VERSION", 3, 1),
        ]);
        let plan = Plan {
            standby: Some(StandbySource {
                pg_path: "/standby",
                xact_path: "pg_xact",
            }),
            ..plan_for(&dd, None)
        };
        let mut read: Vec<(String, String)> = all(&jobs(&files, &plan).unwrap())
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
        let dd = datadir();
        let files = list(&[
            ("pg_data/a", 10, 5),
            ("pg_data/b", 300, 5),
            ("pg_data/c", 40, 1),
            ("pg_data/d", 60, 2),
            ("pg_data/e", 0, 1),
            ("pg_data/global/pg_control", 8192, 1),
        ]);
        let queue = jobs(&files, &plan_for(&dd, None)).unwrap();
        assert_eq!(queue.total_size(), 8192 + 410);
        assert!(queue.has_pg_control());
        let order: Vec<(String, u64)> = all(&queue)
            .into_iter()
            .map(|j| (j.files[0].name.clone(), j.files[0].idx))
            .collect();
        assert_eq!(
            order,
            [
                ("pg_data/global/pg_control".to_string(), 5),
                ("pg_data/b".to_string(), 1),
                ("pg_data/d".to_string(), 3),
                ("pg_data/c".to_string(), 2),
                ("pg_data/a".to_string(), 0),
                ("pg_data/e".to_string(), 4),
            ]
        );
        let bundled = all(&jobs(
            &files,
            &plan_for(
                &dd,
                Some(Bundling {
                    size: 100,
                    limit: 100,
                }),
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
    fn a_large_queue_is_read_through_its_window_in_order() {
        let dd = datadir();
        let n = 20_000u64;
        let mut w = FileListWriter::new().unwrap();
        for i in 0..n {
            // sizes repeat, so the name breaks ties (descending)
            let f = ManifestFile::new(1 + (i * 37) % 1000, 1, 0o600, None, None);
            w.push(&format!("pg_data/base/1/{i:06}"), &f, 0).unwrap();
        }
        let files = w.finish().unwrap();
        let queue = jobs(&files, &plan_for(&dd, None)).unwrap();
        // the prefetcher takes part of the window while the workers drain it
        let batch = queue.prefetch_batch().unwrap();
        assert_eq!(batch.len(), LOOKAHEAD_FILES);
        let taken = all(&queue);
        assert_eq!(taken.len() as u64, n);
        let keys: Vec<(u64, String)> = taken
            .iter()
            .map(|j| (j.files[0].size, j.files[0].name.clone()))
            .collect();
        assert!(
            keys.windows(2)
                .all(|w| w[0].0 > w[1].0 || (w[0].0 == w[1].0 && w[0].1 > w[1].1)),
            "size descending, then name descending"
        );
        assert!(queue.prefetch_batch().is_none(), "exhausted");
    }

    #[test]
    fn a_bundle_is_not_cut_short_by_the_window() {
        let dd = datadir();
        let mut w = FileListWriter::new().unwrap();
        // 3 * LOOKAHEAD_FILES small files, more than one window holds
        let n = 3 * LOOKAHEAD_FILES as u64;
        for i in 0..n {
            let f = ManifestFile::new(10, 1, 0o600, None, None);
            w.push(&format!("pg_data/base/1/{i:06}"), &f, 0).unwrap();
        }
        let files = w.finish().unwrap();
        let bundling = Bundling {
            size: 10 * n + 5,
            limit: 100,
        };
        let taken = all(&jobs(&files, &plan_for(&dd, Some(bundling))).unwrap());
        let sizes: Vec<(u64, usize)> = taken.iter().map(|j| (j.bundle_id, j.files.len())).collect();
        assert_eq!(sizes, [(1, n as usize)], "one bundle holds every file");
        // a bundle that is full leaves the rest for the next one
        let bundling = Bundling {
            size: 10 * 1000 + 5,
            limit: 100,
        };
        let taken = all(&jobs(&files, &plan_for(&dd, Some(bundling))).unwrap());
        let sizes: Vec<(u64, usize)> = taken.iter().map(|j| (j.bundle_id, j.files.len())).collect();
        assert_eq!(sizes, [(1, 1000), (2, n as usize - 1000)]);
    }

    #[test]
    fn jobs_carry_checksums_only_when_needed() {
        let dd = datadir();
        let mut w = FileListWriter::new().unwrap();
        // a and b are taken from the prior backup; c is new and was stored by a resumed backup
        for name in ["pg_data/a", "pg_data/b"] {
            let mut f = ManifestFile::new(
                if name.ends_with('a') { 10 } else { 20 },
                1,
                0o600,
                None,
                None,
            );
            f.reference = Some("20250101-000000F".into());
            f.checksum = Some(Checksum::parse(&name.replace("pg_data/", "").repeat(40)));
            w.push(name, &f, 0).unwrap();
        }
        let mut c = ManifestFile::new(30, 1, 0o600, None, None);
        c.checksum = Some(Checksum::parse(&"c".repeat(40)));
        c.checksum_repo = Some(Checksum::parse(&"e".repeat(40)));
        w.push("pg_data/c", &c, RESUMED).unwrap();
        let files = w.finish().unwrap();
        // without delta the referenced files need no copy at all
        let plain = all(&jobs(&files, &plan_for(&dd, None)).unwrap());
        let names: Vec<&str> = plain.iter().map(|j| j.files[0].name.as_str()).collect();
        assert_eq!(names, ["pg_data/c"]);
        assert_eq!(plain[0].files[0].checksum, Some("c".repeat(40)));
        assert!(!plain[0].files[0].delta);
        assert_eq!(plain[0].files[0].repo_checksum, Some("e".repeat(40)));
        assert_eq!(plain[0].files[0].pg_file, "/pg/c");
        assert!(plain[0].files[0].resume);
        assert_eq!(
            plain[0].repo_file,
            "backup/demo/20260101-000000F/pg_data/c.lz4"
        );
        // with delta they are compared, so they carry their checksum
        let plan = Plan {
            delta: true,
            ..plan_for(&dd, None)
        };
        let delta = all(&jobs(&files, &plan).unwrap());
        let got: Vec<(&str, bool, Option<&str>, bool)> = delta
            .iter()
            .map(|j| {
                let f = &j.files[0];
                (
                    f.name.as_str(),
                    f.delta,
                    f.checksum.as_deref().map(|c| &c[..1]),
                    f.resume,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                // resumed under delta: the database file is compared too
                ("pg_data/c", true, Some("c"), true),
                ("pg_data/b", true, Some("b"), false),
                ("pg_data/a", true, Some("a"), false),
            ]
        );
    }

    #[test]
    fn files_removed_during_the_backup_leave_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let pg_path = dir.path().join("pg");
        std::fs::create_dir_all(pg_path.join("global")).unwrap();
        std::fs::write(pg_path.join("global/pg_control"), vec![1u8; 8192]).unwrap();
        std::fs::write(pg_path.join("kept"), b"abc").unwrap();
        let files = list(&[
            ("pg_data/dropped", 5, 1),
            ("pg_data/global/pg_control", 8192, 1),
            ("pg_data/kept", 3, 1),
        ]);
        let dd = datadir();
        let pg_path = pg_path.to_str().unwrap().to_string();
        let plan = Plan {
            pg_path: &pg_path,
            ..plan_for(&dd, None)
        };
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
        let mut results = Results::new().unwrap();
        run(
            &jobs(&files, &plan).unwrap(),
            &workers,
            &mut results,
            &mut |_, _| {
                ticks += 1;
                Ok(())
            },
        )
        .unwrap();
        assert!(ticks >= 2);
        let mut got = BTreeMap::new();
        each_final(&files, Some(&results), &BTreeMap::new(), &mut |name, f| {
            got.insert(name.to_string(), f.clone());
            Ok(())
        })
        .unwrap();
        let names: Vec<&str> = got.keys().map(String::as_str).collect();
        assert_eq!(names, ["pg_data/global/pg_control", "pg_data/kept"]);
        let kept = &got["pg_data/kept"];
        assert_eq!(kept.size, 3);
        assert!(kept.checksum.is_some() && kept.checksum_repo.is_some());
        assert!(
            dir.path()
                .join("repo/backup/demo/20260101-000000F/pg_data/kept.lz4")
                .exists()
        );
        // an error in a job (pg_control gone) ends the run with that error
        std::fs::remove_file(dir.path().join("pg/global/pg_control")).unwrap();
        let mut results = Results::new().unwrap();
        let err = run(
            &jobs(&files, &plan).unwrap(),
            &workers,
            &mut results,
            &mut |_, _| Ok(()),
        )
        .unwrap_err();
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
