//! One unit of restore work: one repository file, or a run of files of one bundle, written into
//! the data directory (pgBackRest `restoreFile()` in `src/command/restore/file.c`).
//!
//! Contract:
//! - [`execute`] touches only the job's files (absolute paths decided by the caller, through
//!   links) and reads only the job's repository file. It runs on any worker thread.
//! - Delta (`--delta`): an existing file is kept when its size and SHA-1 match the manifest; a
//!   larger one is first truncated to the manifest size (it may only have grown). With
//!   `--force` too, size and modification time must match and the time must be before the
//!   backup's copy start. A kept file gets the manifest's time back. Zeroed files are never kept.
//! - Zero-length files and zeroed files (selective restore: sparse, zero-filled, of the recorded
//!   size) are created without reading the repository.
//! - Every other file is written in place (truncated) in one pass through
//!   [`pgkeep_repo::backup_file::copy_verified`]; a SHA-1 or size mismatch is `Checksum` (26),
//!   `error restoring '<file>': actual checksum '..' does not match expected checksum '..'`, with
//!   the repository file in the hint. Any failure names the file being restored.
//! - Then the file gets the manifest mode exactly, the owner (only when one is given: root
//!   restores) and the manifest mtime. A file on one of [`JobSettings::synced_devices`] is left
//!   to the caller, which flushes those file systems (one `syncfs` each) before the restore may
//!   report success: pgBackRest fsyncs each file as it closes it; deferring lets the workers go
//!   on decoding while the kernel writes back, and needs no list of the files. Any other file
//!   (on a volume mounted below a target, bind-mounted over a restored file, or on a file system
//!   where `syncfs` does not report write-back errors) is fsynced as it is closed, a delta's
//!   truncation included.
//! - Bundled files next to each other are read with one open of the bundle.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use pgkeep_base::io::{Chain, copy};
use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_repo::backup_file::{Expected, StoredFormat, copy_verified, open_range};
use pgkeep_storage::Storage;

/// One file of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFile {
    /// Manifest name (`pg_data/base/1/1259`).
    pub name: String,
    /// Absolute path to write (`global/pg_control` is written under its temp name).
    pub pg_file: String,
    /// Checksum and size of the content.
    pub expected: Expected,
    /// Manifest modification time.
    pub timestamp: i64,
    /// Manifest mode.
    pub mode: u32,
    /// Owner ids to set (root restores only).
    pub owner: Option<(u32, u32)>,
    /// Restore as a sparse zero-filled file (selective restore).
    pub zero: bool,
    /// Offset of the stored bytes in the repository file.
    pub offset: u64,
    /// Size of the stored bytes (`None`: the whole repository file).
    pub size_repo: Option<u64>,
}

/// A job: one repository file and the files restored from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Repository path.
    pub repo_path: String,
    /// Bundle id, 0 for a file stored on its own.
    pub bundle_id: u64,
    /// The files, by offset for a bundle.
    pub files: Vec<JobFile>,
}

/// How the job's files are treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    /// How the backup's files are stored.
    pub format: StoredFormat,
    /// `--delta` (or `--force`).
    pub delta: bool,
    /// `--delta --force`: compare size and time only.
    pub force: bool,
    /// The backup's `backup-timestamp-copy-start`.
    pub copy_start: i64,
    /// Devices (`st_dev`) whose file system the caller flushes with one `syncfs` after the last
    /// job (see [`pgkeep_storage::posix::syncfs_reports_errors`]); a file written anywhere else
    /// (a volume mounted below a target, a file bind-mounted over a restored one, an old kernel,
    /// FUSE) is fsynced as it is closed.
    pub synced_devices: Vec<u64>,
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Copied from the repository.
    Copy,
    /// Kept: the existing file matched (delta).
    Preserve,
    /// Created empty, or sparse and zero-filled.
    Zero,
}

/// Bytes processed so far by all workers (for progress display).
pub type Counter = AtomicU64;

/// Restore the job's files; outcomes in job order.
///
/// # Errors
/// Any failure, naming the file; see the module contract.
pub fn execute(
    job: &Job,
    settings: &JobSettings,
    repo: &dyn Storage,
    counter: &Counter,
) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::with_capacity(job.files.len());
    for file in &job.files {
        let outcome = prepare(file, settings, counter)
            .map_err(|e| e.context(format!("error restoring '{}'", file.pg_file)))?;
        outcomes.push(outcome);
    }
    let mut index = 0;
    while let Some(file) = job.files.get(index) {
        if outcomes.get(index) != Some(&Outcome::Copy) {
            index += 1;
            continue;
        }
        // the run of files to copy that lie back to back in the repository file
        let mut end = index + 1;
        let mut run_size = file.size_repo;
        while job.bundle_id != 0
            && let (Some(next), Some(Outcome::Copy), Some(size)) =
                (job.files.get(end), outcomes.get(end), run_size)
            && next.offset == file.offset + size
            && let Some(next_size) = next.size_repo
        {
            run_size = Some(size + next_size);
            end += 1;
        }
        let mut reader = open_range(repo, &job.repo_path, file.offset, run_size)
            .map_err(|e| e.context(format!("error restoring '{}'", file.pg_file)))?;
        for file in job.files.get(index..end).unwrap_or_default() {
            copy_file(file, settings, &mut reader, counter).map_err(|e| {
                let hint = (e.kind() == ErrorKind::Checksum).then(|| {
                    format!(
                        "the repository file '{}'{} may be corrupt",
                        pgkeep_storage::join(repo.root(), &job.repo_path),
                        if job.bundle_id != 0 {
                            format!(" at offset {}", file.offset)
                        } else {
                            String::new()
                        }
                    )
                });
                let e = e.context(format!("error restoring '{}'", file.pg_file));
                match hint {
                    Some(h) => e.with_hint(h),
                    None => e,
                }
            })?;
        }
        index = end;
    }
    Ok(outcomes)
}

/// Delta check, and creation of zero-length and zeroed files. `Copy` means still to be copied.
fn prepare(file: &JobFile, settings: &JobSettings, counter: &Counter) -> Result<Outcome> {
    if settings.delta
        && !file.zero
        && let Some(meta) = metadata(&file.pg_file)?
    {
        let size = file.expected.size;
        let mtime = mtime_of(&meta);
        if settings.force {
            if meta.len() == size && mtime == file.timestamp && mtime < settings.copy_start {
                counter.fetch_add(size, Ordering::Relaxed);
                return Ok(Outcome::Preserve);
            }
        } else if meta.len() >= size {
            if meta.len() > size {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&file.pg_file)
                    .map_err(|e| {
                        sys(
                            ErrorKind::FileOpen,
                            "unable to open file",
                            &file.pg_file,
                            " for write",
                            &e,
                        )
                    })?;
                f.set_len(size).map_err(|e| {
                    sys(
                        ErrorKind::FileWrite,
                        "unable to truncate file",
                        &file.pg_file,
                        "",
                        &e,
                    )
                })?;
                let _ = sync_unless_covered(&f, &file.pg_file, settings)?;
            }
            if size == 0 || sha1_of(&file.pg_file)? == file.expected.sha1 {
                if mtime != file.timestamp {
                    set_mtime_path(&file.pg_file, file.timestamp)?;
                }
                counter.fetch_add(size, Ordering::Relaxed);
                return Ok(Outcome::Preserve);
            }
        }
    }
    if file.expected.is_empty() || file.zero {
        let mut f = create(file)?;
        if file.zero {
            f.set_len(file.expected.size).map_err(|e| {
                sys(
                    ErrorKind::FileWrite,
                    "unable to truncate",
                    &file.pg_file,
                    "",
                    &e,
                )
            })?;
        }
        finish(&mut f, file, settings)?;
        counter.fetch_add(file.expected.size, Ordering::Relaxed);
        return Ok(Outcome::Zero);
    }
    Ok(Outcome::Copy)
}

fn copy_file(
    file: &JobFile,
    settings: &JobSettings,
    reader: &mut Box<dyn Read + Send>,
    counter: &Counter,
) -> Result<()> {
    let mut f = create(file)?;
    {
        let mut writer = Counting {
            inner: &mut f,
            counter,
            path: &file.pg_file,
        };
        match file.size_repo {
            Some(size) => copy_verified(
                &mut reader.take(size),
                &settings.format,
                &file.expected,
                &mut writer,
            )?,
            None => copy_verified(reader, &settings.format, &file.expected, &mut writer)?,
        }
    }
    finish(&mut f, file, settings)
}

/// Counts what is written, for the progress display.
struct Counting<'a> {
    inner: &'a mut File,
    counter: &'a Counter,
    path: &'a str,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf).map_err(|e| {
            std::io::Error::from(sys(
                ErrorKind::FileWrite,
                "unable to write",
                self.path,
                "",
                &e,
            ))
        })?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn sys(kind: ErrorKind, what: &str, path: &str, tail: &str, e: &std::io::Error) -> Error {
    Error::new(
        kind,
        format!("{what} '{path}'{tail}: {}", pgkeep_base::error::io_cause(e)),
    )
}

fn metadata(path: &str) -> Result<Option<std::fs::Metadata>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(sys(
            ErrorKind::FileOpen,
            "unable to get info for path/file",
            path,
            "",
            &e,
        )),
    }
}

fn mtime_of(meta: &std::fs::Metadata) -> i64 {
    meta.mtime()
}

fn time_of(secs: i64) -> SystemTime {
    match u64::try_from(secs) {
        Ok(s) => SystemTime::UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()),
    }
}

fn set_mtime_path(path: &str, secs: i64) -> Result<()> {
    let f = File::options()
        .write(true)
        .open(path)
        .or_else(|_| File::open(path))
        .map_err(|e| sys(ErrorKind::FileInfo, "unable to set time for", path, "", &e))?;
    f.set_modified(time_of(secs))
        .map_err(|e| sys(ErrorKind::FileInfo, "unable to set time for", path, "", &e))
}

/// SHA-1 of a file of the data directory.
fn sha1_of(path: &str) -> Result<pgkeep_base::io::Sha1Digest> {
    let mut f = File::open(path).map_err(|e| {
        sys(
            ErrorKind::FileOpen,
            "unable to open file",
            path,
            " for read",
            &e,
        )
    })?;
    let mut chain = Chain::new();
    let key = chain.sha1();
    let results = copy(&mut f, chain, &mut std::io::sink())
        .map_err(|e| e.context(format!("unable to read '{path}'")))?;
    results.get(key)
}

/// Open for writing in place (following a file link), truncated.
fn create(file: &JobFile) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(file.mode)
        .open(&file.pg_file)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::new(
                    ErrorKind::FileMissing,
                    format!(
                        "unable to open file '{}' for write in missing path",
                        file.pg_file
                    ),
                )
            } else {
                sys(
                    ErrorKind::FileOpen,
                    "unable to open file",
                    &file.pg_file,
                    " for write",
                    &e,
                )
            }
        })
}

/// fsync `f` unless its file system is one the caller flushes at the end
/// ([`JobSettings::synced_devices`]); true when it was synced here.
fn sync_unless_covered(f: &File, path: &str, settings: &JobSettings) -> Result<bool> {
    let device = f
        .metadata()
        .map_err(|e| sys(ErrorKind::FileInfo, "unable to get info for", path, "", &e))?
        .dev();
    if settings.synced_devices.contains(&device) {
        return Ok(false);
    }
    f.sync_all()
        .map_err(|e| sys(ErrorKind::FileSync, "unable to sync file", path, "", &e))?;
    Ok(true)
}

/// Mode, owner, time and sync of a written file.
fn finish(f: &mut File, file: &JobFile, settings: &JobSettings) -> Result<()> {
    let path = &file.pg_file;
    f.set_permissions(std::fs::Permissions::from_mode(file.mode))
        .map_err(|e| sys(ErrorKind::FileMode, "unable to set mode for", path, "", &e))?;
    if let Some((uid, gid)) = file.owner {
        std::os::unix::fs::fchown(&*f, Some(uid), Some(gid)).map_err(|e| {
            sys(
                ErrorKind::FileOwner,
                "unable to set ownership for",
                path,
                "",
                &e,
            )
        })?;
    }
    f.set_modified(time_of(file.timestamp))
        .map_err(|e| sys(ErrorKind::FileInfo, "unable to set time for", path, "", &e))?;
    sync_unless_covered(f, path, settings).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgkeep_base::compress::CompressType;
    use pgkeep_base::io::{FilterSpec, sha1};
    use pgkeep_storage::posix::PosixStorage;
    use std::os::unix::fs::MetadataExt;

    struct Fixture {
        dir: tempfile::TempDir,
        repo: PosixStorage,
        format: StoredFormat,
    }

    impl Fixture {
        fn new(compress: CompressType, pass: Option<&str>) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("repo")).unwrap();
            std::fs::create_dir_all(dir.path().join("pg")).unwrap();
            let repo = PosixStorage::new(dir.path().join("repo").to_str().unwrap());
            Fixture {
                dir,
                repo,
                format: StoredFormat {
                    compress,
                    cipher_pass: pass.map(str::to_string),
                },
            }
        }

        fn encode(&self, data: &[u8]) -> Vec<u8> {
            let mut chain = Chain::new();
            chain
                .transform(FilterSpec::compress(self.format.compress))
                .unwrap();
            if let Some(pass) = &self.format.cipher_pass {
                chain
                    .transform(FilterSpec::Encrypt { pass: pass.clone() })
                    .unwrap();
            }
            let mut out = Vec::new();
            copy(&mut &data[..], chain, &mut out).unwrap();
            out
        }

        fn pg(&self, name: &str) -> String {
            self.dir.path().join("pg").join(name).display().to_string()
        }

        fn file(&self, name: &str, data: &[u8]) -> JobFile {
            JobFile {
                name: format!("pg_data/{name}"),
                pg_file: self.pg(name),
                expected: Expected {
                    sha1: sha1(data),
                    size: data.len() as u64,
                },
                timestamp: 1_700_000_000,
                mode: 0o640,
                owner: None,
                zero: false,
                offset: 0,
                size_repo: None,
            }
        }

        fn settings(&self, delta: bool, force: bool) -> JobSettings {
            JobSettings {
                format: self.format.clone(),
                delta,
                force,
                copy_start: 1_800_000_000,
                synced_devices: Vec::new(),
            }
        }

        fn put(&self, path: &str, data: &[u8]) {
            pgkeep_storage::put(&self.repo, path, data, Default::default()).unwrap();
        }
    }

    #[test]
    fn single_file_is_decoded_verified_and_stamped() {
        let fx = Fixture::new(CompressType::Zst, Some("pass"));
        let data: Vec<u8> = (0..500_000u32).map(|i| (i % 13) as u8).collect();
        fx.put("f.zst", &fx.encode(&data));
        let job = Job {
            repo_path: "f.zst".into(),
            bundle_id: 0,
            files: vec![fx.file("f", &data)],
        };
        let counter = Counter::new(0);
        let out = execute(&job, &fx.settings(false, false), &fx.repo, &counter).unwrap();
        assert_eq!(out, vec![Outcome::Copy]);
        assert_eq!(std::fs::read(fx.pg("f")).unwrap(), data);
        let meta = std::fs::metadata(fx.pg("f")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert_eq!(meta.mtime(), 1_700_000_000);
        assert_eq!(counter.load(Ordering::Relaxed), data.len() as u64);
    }

    #[test]
    fn bundle_runs_zero_length_and_zeroed_files() {
        let fx = Fixture::new(CompressType::Gz, None);
        let a = b"aaaa".to_vec();
        let b = vec![9u8; 70_000];
        let c = b"cccccc".to_vec();
        let (sa, sb, sc) = (fx.encode(&a), fx.encode(&b), fx.encode(&c));
        let mut bundle = sa.clone();
        bundle.extend_from_slice(&sb);
        bundle.extend_from_slice(&sc);
        fx.put("bundle/1", &bundle);
        let mut files = Vec::new();
        let mut offset = 0;
        for (name, data, stored) in [("a", &a, &sa), ("b", &b, &sb), ("c", &c, &sc)] {
            let mut f = fx.file(name, data);
            f.offset = offset;
            f.size_repo = Some(stored.len() as u64);
            offset += stored.len() as u64;
            files.push(f);
        }
        files[1].zero = true;
        let mut empty = fx.file("empty", b"");
        empty.mode = 0o600;
        let job = Job {
            repo_path: "bundle/1".into(),
            bundle_id: 1,
            files,
        };
        let counter = Counter::new(0);
        let out = execute(&job, &fx.settings(false, false), &fx.repo, &counter).unwrap();
        assert_eq!(out, vec![Outcome::Copy, Outcome::Zero, Outcome::Copy]);
        assert_eq!(std::fs::read(fx.pg("a")).unwrap(), a);
        assert_eq!(std::fs::read(fx.pg("b")).unwrap(), vec![0u8; 70_000]);
        // sparse: no blocks allocated for the zeroed file
        assert_eq!(std::fs::metadata(fx.pg("b")).unwrap().blocks(), 0);
        assert_eq!(std::fs::read(fx.pg("c")).unwrap(), c);

        let job = Job {
            repo_path: "missing".into(),
            bundle_id: 0,
            files: vec![empty],
        };
        let out = execute(&job, &fx.settings(false, false), &fx.repo, &counter).unwrap();
        assert_eq!(out, vec![Outcome::Zero]);
        let meta = std::fs::metadata(fx.pg("empty")).unwrap();
        assert_eq!((meta.len(), meta.mode() & 0o777), (0, 0o600));
    }

    #[test]
    fn delta_keeps_matching_files_and_replaces_others() {
        let fx = Fixture::new(CompressType::Lz4, None);
        let data = b"content of the backup".to_vec();
        fx.put("f.lz4", &fx.encode(&data));
        let job = Job {
            repo_path: "f.lz4".into(),
            bundle_id: 0,
            files: vec![fx.file("f", &data)],
        };
        let counter = Counter::new(0);
        // same content, other time: kept, time put back
        std::fs::write(fx.pg("f"), &data).unwrap();
        let out = execute(&job, &fx.settings(true, false), &fx.repo, &counter).unwrap();
        assert_eq!(out, vec![Outcome::Preserve]);
        assert_eq!(
            std::fs::metadata(fx.pg("f")).unwrap().mtime(),
            1_700_000_000
        );
        // grown file: truncated, then kept
        let mut grown = data.clone();
        grown.extend_from_slice(b"appended later");
        std::fs::write(fx.pg("f"), &grown).unwrap();
        let out = execute(&job, &fx.settings(true, false), &fx.repo, &counter).unwrap();
        assert_eq!(out, vec![Outcome::Preserve]);
        assert_eq!(std::fs::read(fx.pg("f")).unwrap(), data);
        // changed content: copied
        std::fs::write(fx.pg("f"), b"content of the BACKUP").unwrap();
        let out = execute(&job, &fx.settings(true, false), &fx.repo, &counter).unwrap();
        assert_eq!(out, vec![Outcome::Copy]);
        assert_eq!(std::fs::read(fx.pg("f")).unwrap(), data);
        // force: same size and time is enough, even with other content
        std::fs::write(fx.pg("f"), b"content of the BACKUP").unwrap();
        set_mtime_path(&fx.pg("f"), 1_700_000_000).unwrap();
        let out = execute(&job, &fx.settings(true, true), &fx.repo, &counter).unwrap();
        assert_eq!(out, vec![Outcome::Preserve]);
        // force with another time: copied
        set_mtime_path(&fx.pg("f"), 1_700_000_001).unwrap();
        let out = execute(&job, &fx.settings(true, true), &fx.repo, &counter).unwrap();
        assert_eq!(out, vec![Outcome::Copy]);
        assert_eq!(std::fs::read(fx.pg("f")).unwrap(), data);
    }

    #[test]
    fn files_off_the_flushed_file_systems_are_synced_as_they_are_closed() {
        let fx = Fixture::new(CompressType::None, None);
        let path = fx.pg("f");
        std::fs::write(&path, b"data").unwrap();
        let f = File::open(&path).unwrap();
        let device = f.metadata().unwrap().dev();
        let mut settings = fx.settings(false, false);
        // a device the caller does not flush (or none at all): synced here
        assert!(sync_unless_covered(&f, &path, &settings).unwrap());
        settings.synced_devices = vec![device.wrapping_add(1)];
        assert!(sync_unless_covered(&f, &path, &settings).unwrap());
        // the caller flushes this one
        settings.synced_devices.push(device);
        assert!(!sync_unless_covered(&f, &path, &settings).unwrap());
    }

    #[test]
    fn corrupt_stored_bytes_name_the_file_and_the_repository_file() {
        let fx = Fixture::new(CompressType::None, None);
        let data = b"original bytes".to_vec();
        let mut stored = fx.encode(&data);
        stored[0] ^= 0x20;
        fx.put("f", &stored);
        let job = Job {
            repo_path: "f".into(),
            bundle_id: 0,
            files: vec![fx.file("f", &data)],
        };
        let err =
            execute(&job, &fx.settings(false, false), &fx.repo, &Counter::new(0)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Checksum);
        assert_eq!(
            err.message(),
            format!(
                "error restoring '{}': actual checksum '{}' does not match expected checksum '{}'",
                fx.pg("f"),
                sha1(&stored).to_hex(),
                sha1(&data).to_hex()
            )
        );
        assert_eq!(
            err.hint(),
            Some(
                format!(
                    "the repository file '{}/repo/f' may be corrupt",
                    fx.dir.path().display()
                )
                .as_str()
            )
        );

        let job = Job {
            repo_path: "nowhere".into(),
            bundle_id: 0,
            files: vec![fx.file("g", &data)],
        };
        let err =
            execute(&job, &fx.settings(false, false), &fx.repo, &Counter::new(0)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileMissing);
        assert!(
            err.message()
                .starts_with(&format!("error restoring '{}': ", fx.pg("g")))
        );
    }
}
