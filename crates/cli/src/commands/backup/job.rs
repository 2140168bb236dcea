//! One unit of backup work: copy one file, or a bundle of small files, from PGDATA into the
//! repository (pgBackRest `backupFile()` in `src/command/backup/file.c`).
//!
//! Contract:
//! - [`execute`] is pure with respect to the backup: it reads PGDATA and writes one repository
//!   file, and reports per file what happened ([`FileResult`]); the caller updates the manifest.
//!   It runs on any worker thread.
//! - Each copied file is read once, through one chain: size and SHA-1 of the original, the page
//!   checksum validator (files with `checksum_page`), compression, encryption, SHA-1 (only when the
//!   bytes are transformed) and size of the stored bytes.
//! - Relation files are read only up to the size recorded in the manifest (`copy_exact_size`):
//!   what PostgreSQL appends during the backup is replayed from WAL.
//! - A file missing from PGDATA (dropped by the database since the manifest was built) is
//!   [`CopyResult::Skip`], unless it must exist (pg_control), which is an error.
//! - Delta: a file with a known checksum is first read to compare; when size and checksum match,
//!   a file referencing a prior backup is not copied ([`CopyResult::NoOp`]).
//! - Resume: a file already stored by the interrupted backup is kept when the stored bytes have
//!   the size and SHA-1 recorded for them ([`CopyResult::Checksum`]); otherwise it is copied again
//!   ([`CopyResult::ReCopy`]).
//! - The repository file is written in place (not atomically), synced when `sync_each`; a
//!   failure removes it.
//!   Bundles concatenate the stored bytes of their files; offsets come back in the results.

use std::io::{Read, Seek, SeekFrom};

use pgkeep_base::compress::CompressType;
use pgkeep_base::io::{CHUNK_SIZE, Chain, FilterSpec, FilterWrite, Observe, copy};
use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_pg::page::{PAGE_SIZE, PageChecksumValidator};
use pgkeep_storage::{ReadOptions, Storage, StorageWrite, WriteOptions};

/// One file of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFile {
    /// Index of the file in the backup's file list (where its result is recorded).
    pub idx: u64,
    /// Manifest name (`pg_data/base/1/1259`).
    pub name: String,
    /// Absolute path to read (through links and tablespaces).
    pub pg_file: String,
    /// Size recorded in the manifest.
    pub size: u64,
    /// Read no more than `size` bytes.
    pub copy_exact_size: bool,
    /// A missing file is skipped rather than an error.
    pub ignore_missing: bool,
    /// Validate page checksums; the segment number gives the first block number.
    pub checksum_page: Option<u32>,
    /// Compare with `checksum` before copying.
    pub delta: bool,
    /// Known SHA-1 of the original (prior backup or resumed backup).
    pub checksum: Option<String>,
    /// The manifest entry references a prior backup.
    pub has_reference: bool,
    /// The file was stored by the interrupted backup being resumed.
    pub resume: bool,
    /// For resume: SHA-1 of the stored bytes, when they differ from the original.
    pub repo_checksum: Option<String>,
    /// For resume: size of the stored bytes.
    pub repo_size: u64,
}

/// A job: one repository file holding one file, or a bundle of several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Repository path to write (relative to the repository root).
    pub repo_file: String,
    /// Bundle id, 0 when not bundled.
    pub bundle_id: u64,
    /// The files, in write order.
    pub files: Vec<JobFile>,
}

/// How files are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    /// Compression of stored files.
    pub compress: CompressType,
    /// Compression level.
    pub level: i32,
    /// Passphrase of the backup set when the repository is encrypted.
    pub cipher_pass: Option<String>,
    /// fsync every stored file. Off when the whole repository file system is flushed once
    /// before the backup is committed (see `flush` in the backup module).
    pub sync_each: bool,
}

impl JobSettings {
    /// True when stored bytes differ from the original (an `rck` is recorded).
    #[must_use]
    pub fn transforms(&self) -> bool {
        self.compress != CompressType::None || self.cipher_pass.is_some()
    }
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyResult {
    /// Copied.
    Copy,
    /// Copied again: the resumed copy did not match.
    ReCopy,
    /// The resumed copy matched and was kept.
    Checksum,
    /// Unchanged since the prior backup (delta): nothing stored.
    NoOp,
    /// Removed from PGDATA during the backup.
    Skip,
}

/// Page checksum outcome of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageResult {
    /// No error and aligned.
    pub valid: bool,
    /// The size is a multiple of the page size.
    pub align: bool,
    /// Failed block numbers, ascending.
    pub errors: Vec<u32>,
}

/// The outcome of one file of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileResult {
    /// What happened.
    pub result: CopyResult,
    /// Bytes read (the file's size in the backup).
    pub size: u64,
    /// SHA-1 of what was read (hex).
    pub checksum: Option<String>,
    /// Stored size.
    pub repo_size: u64,
    /// SHA-1 of the stored bytes (hex), when they differ from the original.
    pub repo_checksum: Option<String>,
    /// Offset in the bundle.
    pub bundle_offset: u64,
    /// Page checksum results, when checked.
    pub page: Option<PageResult>,
}

impl FileResult {
    fn of(result: CopyResult) -> FileResult {
        FileResult {
            result,
            size: 0,
            checksum: None,
            repo_size: 0,
            repo_checksum: None,
            bundle_offset: 0,
            page: None,
        }
    }
}

/// The page checksum validator as a chain observer; a page that fails is re-read from disk once
/// and ignored when it changed (PostgreSQL was writing it).
pub struct PageObserver {
    validator: Option<PageChecksumValidator>,
}

impl PageObserver {
    /// An observer for segment `segment_no` of the file at `path`.
    #[must_use]
    pub fn new(segment_no: u32, path: &str) -> PageObserver {
        let path = path.to_string();
        let recheck = Box::new(move |index: u32, page: &[u8; PAGE_SIZE]| -> bool {
            reread_page(&path, index).is_some_and(|now| now.as_slice() != page.as_slice())
        });
        PageObserver {
            validator: Some(PageChecksumValidator::new(segment_no, None).with_recheck(recheck)),
        }
    }
}

/// The page at `index` as it is on disk now; `None` when it cannot be read whole.
fn reread_page(path: &str, index: u32) -> Option<Vec<u8>> {
    let mut file = std::fs::File::open(path).ok()?;
    let offset = u64::from(index).checked_mul(PAGE_SIZE as u64)?;
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut page = vec![0u8; PAGE_SIZE];
    file.read_exact(&mut page).ok()?;
    Some(page)
}

impl Observe for PageObserver {
    /// `(valid, align, errors)`: a plain tuple keeps the result serializable without a serde
    /// dependency here; [`PageResult::from`] names the fields.
    type Output = (bool, bool, Vec<u32>);

    fn update(&mut self, data: &[u8]) {
        if let Some(v) = self.validator.as_mut() {
            v.update(data);
        }
    }

    fn finish(&mut self) -> Result<(bool, bool, Vec<u32>)> {
        let validator = self
            .validator
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Assert, "page checksum result already taken"))?;
        let result = validator.result();
        Ok((result.valid, result.align, result.errors))
    }
}

impl From<(bool, bool, Vec<u32>)> for PageResult {
    fn from((valid, align, errors): (bool, bool, Vec<u32>)) -> PageResult {
        PageResult {
            valid,
            align,
            errors,
        }
    }
}

fn pg_read(pg: &dyn Storage, file: &JobFile) -> Result<Option<Box<dyn Read + Send>>> {
    pg.open_read(
        &file.pg_file,
        ReadOptions {
            offset: 0,
            limit: file.copy_exact_size.then_some(file.size),
            ignore_missing: file.ignore_missing,
            sequential: true,
        },
    )
}

/// Size and SHA-1 of a whole stream.
fn digest(reader: &mut dyn Read) -> Result<(u64, String)> {
    let mut chain = Chain::new();
    let size = chain.size();
    let sha = chain.sha1();
    let results = copy(reader, chain, &mut std::io::sink())?;
    Ok((results.get(size)?, results.get(sha)?.to_hex()))
}

/// [`copy`] with the caller's read buffer: a worker reuses one buffer for every file instead of
/// allocating a chunk per file (fewer large allocations, less heap churn between files).
fn pump(
    reader: &mut dyn Read,
    chain: Chain,
    out: &mut dyn std::io::Write,
    buffer: &mut Vec<u8>,
) -> Result<pgkeep_base::io::FilterResults> {
    if buffer.len() < CHUNK_SIZE {
        buffer.resize(CHUNK_SIZE, 0);
    }
    let mut filter = FilterWrite::new(out, chain);
    loop {
        let read = match reader.read(buffer) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::from_io_error(
                    &e,
                    ErrorKind::FileRead,
                    "unable to read",
                ));
            }
        };
        match buffer.get(..read) {
            Some(data) if !data.is_empty() => filter.write_data(data)?,
            _ => break,
        }
    }
    let (_, results) = filter.finish()?;
    Ok(results)
}

/// Run one job. `pg` is rooted at `/`; `repo` is the repository; `buffer` is the worker's read
/// buffer.
///
/// # Errors
/// Read, write and filter errors; `FileMissing` for a missing file that must exist.
pub fn execute(
    job: &Job,
    settings: &JobSettings,
    pg: &dyn Storage,
    repo: &dyn Storage,
    buffer: &mut Vec<u8>,
) -> Result<Vec<FileResult>> {
    let mut results: Vec<FileResult> = Vec::with_capacity(job.files.len());
    // checks before any copy: delta against the pg file, resume against the stored file
    for file in &job.files {
        let mut result = FileResult::of(CopyResult::Copy);
        let mut pg_match = false;
        if file.delta {
            match pg_read(pg, file)? {
                None => result.result = CopyResult::Skip,
                Some(mut reader) => {
                    let (size, sha) = digest(&mut reader)?;
                    if size == file.size && file.checksum.as_deref() == Some(sha.as_str()) {
                        pg_match = true;
                        if file.has_reference {
                            result = FileResult::of(CopyResult::NoOp);
                            result.size = size;
                            result.checksum = Some(sha);
                        }
                    }
                }
            }
        }
        if file.resume {
            if result.result == CopyResult::Skip {
                repo.remove(&job.repo_file, true)?;
            } else if !file.delta || pg_match {
                result.result = match repo.open_read(
                    &job.repo_file,
                    ReadOptions {
                        ignore_missing: true,
                        ..ReadOptions::default()
                    },
                )? {
                    Some(mut reader) => {
                        let (size, sha) = digest(&mut reader)?;
                        let expected = file.repo_checksum.as_ref().or(file.checksum.as_ref());
                        if size == file.repo_size && expected == Some(&sha) {
                            result.size = file.size;
                            result.checksum.clone_from(&file.checksum);
                            CopyResult::Checksum
                        } else {
                            CopyResult::ReCopy
                        }
                    }
                    None => CopyResult::ReCopy,
                };
            }
        }
        results.push(result);
    }

    let mut write: Option<Box<dyn StorageWrite>> = None;
    let mut offset = 0u64;
    for (file, result) in job.files.iter().zip(results.iter_mut()) {
        if !matches!(result.result, CopyResult::Copy | CopyResult::ReCopy) {
            continue;
        }
        let Some(mut reader) = pg_read(pg, file)? else {
            result.result = CopyResult::Skip;
            continue;
        };
        let out = match write.as_mut() {
            Some(out) => out,
            None => write.insert(repo.open_write(
                &job.repo_file,
                WriteOptions {
                    atomic: false,
                    sync_file: settings.sync_each,
                    // the disk writes while the next files are read and compressed; the final
                    // flush still writes everything if the hint is not taken
                    writeback: !settings.sync_each,
                    sync_path: false,
                    ..WriteOptions::default()
                },
            )?),
        };
        let mut chain = Chain::new();
        let size = chain.size();
        let sha = chain.sha1();
        let page = file.checksum_page.map(|segment_no| {
            chain.observe(
                "page-checksum",
                serde_json::json!({ "segment": segment_no, "file": file.pg_file }),
                PageObserver::new(segment_no, &file.pg_file),
            )
        });
        chain.transform(FilterSpec::Compress {
            ty: settings.compress,
            level: settings.level,
        })?;
        if let Some(pass) = &settings.cipher_pass {
            chain.transform(FilterSpec::Encrypt { pass: pass.clone() })?;
        }
        let repo_sha = settings.transforms().then(|| chain.sha1());
        let repo_size = chain.size();
        let filtered = pump(&mut reader, chain, &mut **out, buffer).map_err(|e| {
            Error::new(
                e.kind(),
                format!("unable to back up '{}': {}", file.pg_file, e.message()),
            )
        })?;
        result.size = filtered.get(size)?;
        result.checksum = Some(filtered.get(sha)?.to_hex());
        result.repo_size = filtered.get(repo_size)?;
        result.repo_checksum = match repo_sha {
            Some(key) => Some(filtered.get(key)?.to_hex()),
            None => None,
        };
        result.page = match page {
            Some(key) => Some(PageResult::from(filtered.get(key)?)),
            None => None,
        };
        result.bundle_offset = offset;
        offset += result.repo_size;
    }
    if let Some(out) = write {
        out.finish()?;
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use pgkeep_base::io::sha1;
    use pgkeep_storage::posix::PosixStorage;

    use super::*;

    fn file(path: &std::path::Path, name: &str, size: u64) -> JobFile {
        JobFile {
            idx: 0,
            name: format!("pg_data/{name}"),
            pg_file: path.join(name).to_str().unwrap().to_string(),
            size,
            copy_exact_size: false,
            ignore_missing: true,
            checksum_page: None,
            delta: false,
            checksum: None,
            has_reference: false,
            resume: false,
            repo_checksum: None,
            repo_size: 0,
        }
    }

    fn settings(compress: CompressType, pass: Option<&str>) -> JobSettings {
        JobSettings {
            compress,
            level: compress.default_level(),
            cipher_pass: pass.map(str::to_string),
            sync_each: false,
        }
    }

    #[test]
    fn copies_compresses_encrypts_and_reports_both_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let pg_dir = dir.path().join("pg");
        std::fs::create_dir(&pg_dir).unwrap();
        let data = b"hello backup".repeat(1000);
        std::fs::write(pg_dir.join("a"), &data).unwrap();
        let repo = PosixStorage::new(dir.path().join("repo").to_str().unwrap());
        let pg = PosixStorage::new("/");
        let job = Job {
            repo_file: "b/pg_data/a.gz".into(),
            bundle_id: 0,
            files: vec![file(&pg_dir, "a", data.len() as u64)],
        };
        let out = execute(
            &job,
            &settings(CompressType::Gz, Some("pass")),
            &pg,
            &repo,
            &mut Vec::new(),
        )
        .unwrap();
        let r = &out[0];
        assert_eq!(r.result, CopyResult::Copy);
        assert_eq!(r.size, data.len() as u64);
        assert_eq!(r.checksum.as_deref(), Some(sha1(&data).to_hex().as_str()));
        let stored = std::fs::read(dir.path().join("repo/b/pg_data/a.gz")).unwrap();
        assert_eq!(r.repo_size, stored.len() as u64);
        assert_eq!(r.repo_checksum, Some(sha1(&stored).to_hex()));
        let plain = pgkeep_base::crypto::decrypt(b"pass", &stored).unwrap();
        let back = pgkeep_base::compress::decompress(CompressType::Gz, &plain).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn exact_size_missing_files_and_bundles() {
        let dir = tempfile::tempdir().unwrap();
        let pg_dir = dir.path().join("pg");
        std::fs::create_dir(&pg_dir).unwrap();
        std::fs::write(pg_dir.join("grown"), b"0123456789").unwrap();
        std::fs::write(pg_dir.join("small"), b"abc").unwrap();
        std::fs::write(pg_dir.join("empty"), b"").unwrap();
        let repo = PosixStorage::new(dir.path().join("repo").to_str().unwrap());
        let pg = PosixStorage::new("/");
        let mut grown = file(&pg_dir, "grown", 4);
        grown.copy_exact_size = true;
        let job = Job {
            repo_file: "b/bundle/1".into(),
            bundle_id: 1,
            files: vec![
                grown,
                file(&pg_dir, "gone", 3),
                file(&pg_dir, "small", 3),
                file(&pg_dir, "empty", 0),
            ],
        };
        let out = execute(
            &job,
            &settings(CompressType::None, None),
            &pg,
            &repo,
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(out[0].size, 4);
        assert_eq!(out[0].repo_checksum, None);
        assert_eq!(out[1].result, CopyResult::Skip);
        assert_eq!((out[2].bundle_offset, out[2].repo_size), (4, 3));
        assert_eq!(out[3].bundle_offset, 7);
        assert_eq!(
            out[3].checksum.as_deref(),
            Some(pgkeep_repo::manifest::EMPTY_SHA1)
        );
        let stored = std::fs::read(dir.path().join("repo/b/bundle/1")).unwrap();
        assert_eq!(stored, b"0123abc");
        // pg_control must exist
        let mut control = file(&pg_dir, "pg_control", 8192);
        control.ignore_missing = false;
        let job = Job {
            repo_file: "b/pg_data/global/pg_control".into(),
            bundle_id: 0,
            files: vec![control],
        };
        let err = execute(
            &job,
            &settings(CompressType::None, None),
            &pg,
            &repo,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileMissing);
        // nothing written when every file is gone
        let job = Job {
            repo_file: "b/bundle/2".into(),
            bundle_id: 2,
            files: vec![file(&pg_dir, "gone", 3)],
        };
        execute(
            &job,
            &settings(CompressType::Gz, None),
            &pg,
            &repo,
            &mut Vec::new(),
        )
        .unwrap();
        assert!(!dir.path().join("repo/b/bundle/2").exists());
    }

    #[test]
    fn delta_skips_unchanged_referenced_files() {
        let dir = tempfile::tempdir().unwrap();
        let pg_dir = dir.path().join("pg");
        std::fs::create_dir(&pg_dir).unwrap();
        std::fs::write(pg_dir.join("same"), b"same").unwrap();
        std::fs::write(pg_dir.join("changed"), b"new!").unwrap();
        let repo = PosixStorage::new(dir.path().join("repo").to_str().unwrap());
        let pg = PosixStorage::new("/");
        let mut same = file(&pg_dir, "same", 4);
        same.delta = true;
        same.has_reference = true;
        same.checksum = Some(sha1(b"same").to_hex());
        let mut changed = file(&pg_dir, "changed", 4);
        changed.delta = true;
        changed.has_reference = true;
        changed.checksum = Some(sha1(b"old!").to_hex());
        for (f, expect) in [(same, CopyResult::NoOp), (changed, CopyResult::Copy)] {
            let job = Job {
                repo_file: format!("b/{}", f.name),
                bundle_id: 0,
                files: vec![f],
            };
            let out = execute(
                &job,
                &settings(CompressType::Lz4, None),
                &pg,
                &repo,
                &mut Vec::new(),
            )
            .unwrap();
            assert_eq!(out[0].result, expect);
        }
        assert!(!dir.path().join("repo/b/pg_data/same").exists());
        assert!(dir.path().join("repo/b/pg_data/changed").exists());
    }

    #[test]
    fn resume_keeps_matching_copies_only() {
        let dir = tempfile::tempdir().unwrap();
        let pg_dir = dir.path().join("pg");
        std::fs::create_dir(&pg_dir).unwrap();
        std::fs::write(pg_dir.join("f"), b"content").unwrap();
        let repo_dir = dir.path().join("repo");
        std::fs::create_dir_all(repo_dir.join("b")).unwrap();
        std::fs::write(repo_dir.join("b/f"), b"content").unwrap();
        let repo = PosixStorage::new(repo_dir.to_str().unwrap());
        let pg = PosixStorage::new("/");
        let mut f = file(&pg_dir, "f", 7);
        f.resume = true;
        f.checksum = Some(sha1(b"content").to_hex());
        f.repo_size = 7;
        let job = Job {
            repo_file: "b/f".into(),
            bundle_id: 0,
            files: vec![f],
        };
        let s = settings(CompressType::None, None);
        assert_eq!(
            execute(&job, &s, &pg, &repo, &mut Vec::new()).unwrap()[0].result,
            CopyResult::Checksum
        );
        std::fs::write(repo_dir.join("b/f"), b"damaged").unwrap();
        assert_eq!(
            execute(&job, &s, &pg, &repo, &mut Vec::new()).unwrap()[0].result,
            CopyResult::ReCopy
        );
        assert_eq!(std::fs::read(repo_dir.join("b/f")).unwrap(), b"content");
        // under delta the database file is compared as well: a file changed in place since the
        // interrupted run (same size) is copied again even though the stored copy is intact
        let mut delta = job.clone();
        delta.files[0].delta = true;
        assert_eq!(
            execute(&delta, &s, &pg, &repo, &mut Vec::new()).unwrap()[0].result,
            CopyResult::Checksum
        );
        std::fs::write(pg_dir.join("f"), b"CONTENT").unwrap();
        let out = execute(&delta, &s, &pg, &repo, &mut Vec::new()).unwrap();
        assert_eq!(out[0].result, CopyResult::Copy);
        assert_eq!(std::fs::read(repo_dir.join("b/f")).unwrap(), b"CONTENT");
        // and one gone from the database is removed from the repository
        std::fs::remove_file(pg_dir.join("f")).unwrap();
        let out = execute(&delta, &s, &pg, &repo, &mut Vec::new()).unwrap();
        assert_eq!(out[0].result, CopyResult::Skip);
        assert!(!repo_dir.join("b/f").exists());
    }

    #[test]
    fn page_errors_are_reported_with_block_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let pg_dir = dir.path().join("pg");
        std::fs::create_dir(&pg_dir).unwrap();
        // two non-empty pages with garbage checksums, segment 1
        let mut data = vec![0u8; PAGE_SIZE * 3];
        data[PAGE_SIZE + 100] = 1;
        data[PAGE_SIZE + 14] = 1; // pd_upper != 0
        data[2 * PAGE_SIZE + 14] = 1;
        data[2 * PAGE_SIZE + 200] = 9;
        std::fs::write(pg_dir.join("16384.1"), &data).unwrap();
        let repo = PosixStorage::new(dir.path().join("repo").to_str().unwrap());
        let mut f = file(&pg_dir, "16384.1", data.len() as u64);
        f.checksum_page = Some(1);
        let job = Job {
            repo_file: "b/x".into(),
            bundle_id: 0,
            files: vec![f],
        };
        let out = execute(
            &job,
            &settings(CompressType::Zst, None),
            &PosixStorage::new("/"),
            &repo,
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(
            out[0].page,
            Some(PageResult {
                valid: false,
                align: true,
                errors: vec![131_073, 131_074],
            })
        );
    }
}
