//! The unit of work for one WAL file (pgBackRest `archive/push/file.c`, `archive/get/file.c`):
//! [`push_file`] stores one file in every repository, [`get_file`] restores one file from the
//! first candidate that works. Both are pure over their arguments (no configuration, no
//! logging), so the synchronous commands, the background workers and tests call them alike.
//!
//! Push contract:
//! - The source is read from disk once. For a segment (or `.partial`) the long page header is
//!   checked first when asked: version magic and system id against the stanza (`ArchiveMismatch`
//!   with pgBackRest's message); a file shorter than 512 bytes is `FileRead` like pgBackRest's
//!   exact-size read, and so is a file whose size is not the segment size its header states
//!   (pgBackRest would store it).
//! - Each repository is asked for an existing copy first (a listing). A repository already holding
//!   the segment with the same SHA-1 is left alone (a warning when `mode_check`); with another
//!   SHA-1 the push fails with `ArchiveDuplicate` before anything becomes visible anywhere.
//! - A segment is read once, in 1 MiB pieces (no large fresh allocation, whose page faults cost
//!   more than compressing), and hashed (SHA-1 of the original bytes, in a second thread) while
//!   it is compressed through the filter chain into a temp name in every repository that needs a
//!   copy, encrypted with each repository's archive sub-passphrase where it has one. Once the
//!   SHA-1 is known the temp file is fsynced and renamed to `<file>-<sha1><ext>` (directory
//!   fsynced), so nothing incomplete is ever visible under a name the archive reads. Memory is a
//!   few pieces and the codec's state, whatever the segment size. zst uses several threads for
//!   one segment when [`PushOptions::compress_workers`] says so (a lone synchronous push);
//!   otherwise its filter compresses in independent 512 KiB frames, its fastest single-thread form.
//! - Other files (`.history`, `.backup`) are stored verbatim (encrypted where needed) under their
//!   own name with an atomic, fsynced write; an existing copy is replaced, as pgBackRest does.
//! - A repository that fails is reported in the `Command` error
//!   `archive-push command encountered error(s):` listing `repoN: [Type] message` lines (with
//!   `prior_errors` first), after the other repositories were written: PostgreSQL must retry.
//!
//! Get contract:
//! - Candidates are tried in order; each is decrypted, decompressed (by its extension), checked
//!   against the SHA-1 in its name (segments only) and written through an atomic write that is
//!   committed only after the check passed. A failing candidate becomes a warning
//!   `repoN: <archive-id/...> [Type] message` and the next is tried; when none works the error is
//!   `FileRead` `unable to get <file>:` followed by those lines.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::mpsc;

use pgkeep_base::compress::CompressType;
use pgkeep_base::crypto::Encryptor;
use pgkeep_base::io::{
    Chain, FilterSpec, FilterWrite, Observe, Sha1Digest, Sha1Observer, Transform,
};
use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_pg::PgVersion;
use pgkeep_pg::wal::{self, WalSegSize};
use pgkeep_repo::{archive, layout};
use pgkeep_storage::{ReadOptions, Storage, StorageWrite, WriteOptions, join};

use super::repo_error_line;

/// Bytes pgBackRest reads to check a WAL header.
pub const WAL_HEADER_READ: usize = 512;

/// Size of the pieces a segment is read in.
const PIECE_SIZE: usize = 1024 * 1024;

/// Pieces in flight between the reader and the hashing thread.
const PIECES_IN_FLIGHT: usize = 4;

/// One repository archive-push writes to.
pub struct PushRepo {
    /// The `N` of `repoN`.
    pub key: u32,
    /// Storage rooted at the repository.
    pub storage: Box<dyn Storage>,
    /// Current archive id of the stanza (`15-1`).
    pub archive_id: String,
    /// Archive sub-passphrase (`[cipher] cipher-pass` of archive.info) when encrypted.
    pub cipher_pass: Option<String>,
}

/// What a push checks and how it stores.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Check the WAL header against `pg_version`/`system_id` (`archive-header-check`).
    pub header_check: bool,
    /// Warn about a segment already archived with the same checksum (`archive-mode-check`).
    pub mode_check: bool,
    /// Version of the stanza.
    pub pg_version: PgVersion,
    /// System id of the stanza.
    pub system_id: u64,
    /// `compress-type` for segments.
    pub compress: CompressType,
    /// `compress-level`.
    pub level: i32,
    /// Threads that may compress one segment (zst only; 0 or 1 = this thread). A lone
    /// synchronous push gives it the idle cores; parallel background workers do not.
    pub compress_workers: u32,
}

/// Open a local file for reading, with pgBackRest's messages.
fn open_source(path: &str) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::new(
                ErrorKind::FileMissing,
                format!("unable to open missing file '{path}' for read"),
            )
        } else {
            Error::new(
                ErrorKind::FileOpen,
                format!(
                    "unable to open file '{path}' for read: {}",
                    pgkeep_base::error::io_cause(&e)
                ),
            )
        }
    })
}

/// Fill `buf` from `file` (short only at the end of the file); returns the bytes read.
fn read_piece(file: &mut std::fs::File, buf: &mut [u8], path: &str) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else {
            break;
        };
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Error::io(
                    ErrorKind::FileRead,
                    "unable to read file",
                    path,
                    &e,
                ));
            }
        }
    }
    Ok(filled)
}

/// Check the long page header of a segment from `source`, given its first bytes (at least 512
/// when the file has them) and its size.
///
/// # Errors
/// `FileRead` for a short file or one whose size is not the header's segment size, `Format` /
/// `VersionNotSupported` for a header PostgreSQL did not write, `ArchiveMismatch` for another
/// cluster.
pub fn check_header(
    source: &str,
    first: &[u8],
    size: u64,
    version: PgVersion,
    system_id: u64,
) -> Result<()> {
    if first.len() < WAL_HEADER_READ {
        return Err(Error::new(
            ErrorKind::FileRead,
            format!("unable to read {WAL_HEADER_READ} byte(s) from '{source}'"),
        ));
    }
    let header = wal::header_parse(first)?;
    let Some(wal_version) = header.version else {
        return Err(Error::new(
            ErrorKind::VersionNotSupported,
            format!("unexpected WAL magic {}", header.magic),
        )
        .with_hint("is this version of PostgreSQL supported?"));
    };
    if wal_version != version || header.system_id != system_id {
        return Err(Error::new(
            ErrorKind::ArchiveMismatch,
            format!(
                "WAL file '{source}' version {wal_version}, system-id {} do not match stanza version {version}, system-id {system_id}",
                header.system_id
            ),
        ));
    }
    let seg_size = WalSegSize::new(header.seg_size)?.get();
    if size != u64::from(seg_size) {
        return Err(Error::new(ErrorKind::FileRead, format!("unable to read {seg_size} byte(s) from '{source}'"))
            .with_hint(format!("the WAL segment is {size} byte(s) but its header says segments are {seg_size} byte(s); is it truncated?")));
    }
    Ok(())
}

/// Run `data` through a transform into `out` (appending).
fn transform_into(transform: &mut dyn Transform, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let mut pos = 0;
    while let Some(rest) = data.get(pos..).filter(|r| !r.is_empty()) {
        let used = transform.process(rest, out)?;
        if used == 0 || used > rest.len() {
            return Err(Error::new(ErrorKind::Assert, "encryption made no progress"));
        }
        pos += used;
    }
    Ok(())
}

/// One repository being written: its temp file and its encryption.
struct Target {
    /// Index into the repositories.
    repo: usize,
    temp_path: String,
    writer: Option<Box<dyn StorageWrite>>,
    encryptor: Option<Encryptor>,
    scratch: Vec<u8>,
    error: Option<Error>,
}

impl Target {
    fn write(&mut self, data: &[u8]) {
        let result = match (&mut self.writer, &mut self.encryptor) {
            (Some(writer), Some(encryptor)) => {
                self.scratch.clear();
                transform_into(encryptor, data, &mut self.scratch).and_then(|()| {
                    writer.write_all(&self.scratch).map_err(|e| {
                        Error::from_io_error(
                            &e,
                            ErrorKind::FileWrite,
                            format!("unable to write '{}'", self.temp_path),
                        )
                    })
                })
            }
            (Some(writer), None) => writer.write_all(data).map_err(|e| {
                Error::from_io_error(
                    &e,
                    ErrorKind::FileWrite,
                    format!("unable to write '{}'", self.temp_path),
                )
            }),
            (None, _) => Ok(()),
        };
        if let Err(e) = result {
            self.fail(e);
        }
    }

    /// Drop the writer (which removes its temp file) and remember why.
    fn fail(&mut self, e: Error) {
        self.writer = None;
        self.error.get_or_insert(e);
    }
}

/// The compressed stream, fanned out to every target; a target that fails is dropped without
/// stopping the others (pgBackRest's per-repository error handling).
struct FanOut {
    targets: Vec<Target>,
}

impl Write for FanOut {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        for target in &mut self.targets {
            target.write(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Push `source` (an absolute path) as `archive_file` to every repository in `repos`; returns the
/// warnings to log. See the module contract.
///
/// # Errors
/// Header and duplicate errors at once; per-repository failures as one `Command` error at the end.
pub fn push_file(
    stanza: &str,
    source: &str,
    archive_file: &str,
    opts: &PushOptions,
    repos: &[PushRepo],
    prior_errors: &[String],
) -> Result<Vec<String>> {
    let mut errors: Vec<String> = prior_errors.to_vec();
    let warnings = if layout::is_wal_segment_or_partial(archive_file) {
        push_segment(stanza, source, archive_file, opts, repos, &mut errors)?
    } else {
        push_other(stanza, source, archive_file, repos, &mut errors)?;
        Vec::new()
    };
    if !errors.is_empty() {
        return Err(Error::new(
            ErrorKind::Command,
            format!(
                "archive-push command encountered error(s):\n{}",
                errors.join("\n")
            ),
        ));
    }
    Ok(warnings)
}

/// `.history` and `.backup` files: small, stored verbatim under their own name.
fn push_other(
    stanza: &str,
    source: &str,
    archive_file: &str,
    repos: &[PushRepo],
    errors: &mut Vec<String>,
) -> Result<()> {
    let mut file = open_source(source)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .map_err(|e| Error::io(ErrorKind::FileRead, "unable to read file", source, &e))?;
    for repo in repos {
        let path = layout::archive_file_path(stanza, &repo.archive_id, archive_file);
        let result = match &repo.cipher_pass {
            Some(pass) => pgkeep_base::crypto::encrypt(pass.as_bytes(), &data).and_then(|bytes| {
                pgkeep_storage::put(
                    repo.storage.as_ref(),
                    &path,
                    &bytes,
                    WriteOptions::default(),
                )
            }),
            None => {
                pgkeep_storage::put(repo.storage.as_ref(), &path, &data, WriteOptions::default())
            }
        };
        if let Err(e) = result {
            errors.push(repo_error_line(repo.key, &e));
        }
    }
    Ok(())
}

/// What each repository holds of `archive_file` already, and which repositories can be used
/// (a failed lookup is an error line and the repository is skipped).
fn existing_copies(
    stanza: &str,
    archive_file: &str,
    repos: &[PushRepo],
    errors: &mut Vec<String>,
) -> (Vec<Option<String>>, Vec<bool>) {
    let mut existing = Vec::with_capacity(repos.len());
    let mut usable = Vec::with_capacity(repos.len());
    for repo in repos {
        match archive::find_segment(
            repo.storage.as_ref(),
            stanza,
            &repo.archive_id,
            archive_file,
        ) {
            Ok(found) => {
                existing.push(found);
                usable.push(true);
            }
            Err(e) => {
                errors.push(repo_error_line(repo.key, &e));
                existing.push(None);
                usable.push(false);
            }
        }
    }
    (existing, usable)
}

/// Existing copies must have the SHA-1 just computed; the warnings to log when they do.
fn compare_existing(
    archive_file: &str,
    sha1: &str,
    existing: &[Option<String>],
    opts: &PushOptions,
    repos: &[PushRepo],
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for (found, repo) in existing.iter().zip(repos) {
        let Some(found) = found else { continue };
        let stored_sha = found
            .get(archive_file.len() + 1..archive_file.len() + 41)
            .unwrap_or("");
        if stored_sha != sha1 {
            return Err(Error::new(
                ErrorKind::ArchiveDuplicate,
                format!(
                    "WAL file '{archive_file}' already exists in the repo{} archive with a different checksum",
                    repo.key
                ),
            ));
        }
        if opts.mode_check {
            warnings.push(format!(
                "WAL file '{archive_file}' already exists in the repo{} archive with the same checksum\nHINT: this is valid in some recovery scenarios but may also indicate a problem.",
                repo.key
            ));
        }
    }
    Ok(warnings)
}

fn push_segment(
    stanza: &str,
    source: &str,
    archive_file: &str,
    opts: &PushOptions,
    repos: &[PushRepo],
    errors: &mut Vec<String>,
) -> Result<Vec<String>> {
    let mut file = open_source(source)?;
    let size = file
        .metadata()
        .map_err(|e| {
            Error::io(
                ErrorKind::FileOpen,
                "unable to get info for file",
                source,
                &e,
            )
        })?
        .len();
    let mut first = vec![0u8; PIECE_SIZE];
    let first_len = read_piece(&mut file, &mut first, source)?;
    first.truncate(first_len);
    if opts.header_check {
        check_header(source, &first, size, opts.pg_version, opts.system_id)?;
    }

    let (existing, usable) = existing_copies(stanza, archive_file, repos, errors);

    // one atomic write per repository that needs a copy, opened under the segment's bare name:
    // the storage writes `<segment>.pgbackrest.tmp` under its own lock and, once the SHA-1 is
    // known, renames it straight to `<segment>-<sha1>[.ext]` (`finish_as`), so a concurrent push
    // of the same segment can never move this writer's bytes under its own name
    let mut targets = Vec::new();
    for (i, repo) in repos.iter().enumerate() {
        if !usable.get(i).copied().unwrap_or(false) || existing.get(i).is_some_and(Option::is_some)
        {
            continue;
        }
        let temp_path = layout::archive_file_path(stanza, &repo.archive_id, archive_file);
        let opts = WriteOptions {
            atomic: true,
            sync_file: true,
            sync_path: true,
            ..WriteOptions::default()
        };
        let opened = repo
            .storage
            .open_write(&temp_path, opts)
            .and_then(|writer| {
                let encryptor = repo
                    .cipher_pass
                    .as_ref()
                    .map(|p| Encryptor::new(p.as_bytes()))
                    .transpose()?;
                Ok((writer, encryptor))
            });
        match opened {
            Ok((writer, encryptor)) => targets.push(Target {
                repo: i,
                temp_path,
                writer: Some(writer),
                encryptor,
                scratch: Vec::new(),
                error: None,
            }),
            Err(e) => errors.push(repo_error_line(repo.key, &e)),
        }
    }

    let (sha1, mut fan_out) = stream_segment(&mut file, source, first, opts, FanOut { targets })?;
    let sha1 = sha1.to_hex();

    // existing copies: same content is fine, other content is refused before anything is renamed
    // (on error, dropping the targets removes their temp files)
    let warnings = compare_existing(archive_file, &sha1, &existing, opts, repos)?;

    // commit: fsync the temp file, rename it to its name, fsync the directory
    let destination = layout::wal_archive_file_name(archive_file, &sha1, opts.compress.ext());
    for target in &mut fan_out.targets {
        let Some(repo) = repos.get(target.repo) else {
            continue;
        };
        let committed = match (target.error.take(), target.writer.take()) {
            (Some(e), _) => Err(e),
            (None, Some(writer)) => writer.finish_as(&destination),
            (None, None) => Err(Error::new(
                ErrorKind::Assert,
                "archive-push target has no writer",
            )),
        };
        if let Err(e) = committed {
            errors.push(repo_error_line(repo.key, &e));
        }
    }
    Ok(warnings)
}

/// Read the rest of `file` after `first`, hashing every byte in a second thread while the
/// compressed stream goes to `fan_out`. Returns the SHA-1 of the whole file and the fan-out, its
/// targets written but not committed.
fn stream_segment(
    file: &mut std::fs::File,
    source: &str,
    first: Vec<u8>,
    opts: &PushOptions,
    fan_out: FanOut,
) -> Result<(Sha1Digest, FanOut)> {
    let write = !fan_out.targets.is_empty();
    let mut chain = Chain::new();
    if write {
        // zst segments: several threads on one frame (sync) or 512 KiB frames (async), see
        // `CompressType::wal_compressor`
        let wal = if opts.compress == CompressType::Zst {
            opts.compress
                .wal_compressor(opts.level, opts.compress_workers)?
        } else {
            None
        };
        match wal {
            Some(transform) => {
                let params = serde_json::json!({
                    "type": opts.compress.name(),
                    "level": opts.level,
                    "workers": opts.compress_workers,
                });
                chain.transform_custom("compress-wal", params, transform);
            }
            None => {
                chain.transform(FilterSpec::Compress {
                    ty: opts.compress,
                    level: opts.level,
                })?;
            }
        }
    }
    let mut filter = FilterWrite::new(fan_out, chain);
    let (to_hasher, hasher_in) = mpsc::sync_channel::<(Arc<Vec<u8>>, usize)>(PIECES_IN_FLIGHT);
    let (hasher_back, recycled) = mpsc::channel::<Arc<Vec<u8>>>();
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            let mut sha1 = Sha1Observer::new();
            for (piece, len) in hasher_in {
                sha1.update(piece.get(..len).unwrap_or_default());
                let _ = hasher_back.send(piece);
            }
            sha1.finish()
        });
        let streamed = (|| -> Result<()> {
            let mut piece = first;
            let mut len = piece.len();
            piece.resize(PIECE_SIZE, 0);
            loop {
                if len == 0 {
                    break;
                }
                let shared = Arc::new(piece);
                to_hasher.send((Arc::clone(&shared), len)).map_err(|_| {
                    Error::new(ErrorKind::Assert, "the sha1 thread of archive-push stopped")
                })?;
                if write {
                    filter.write_data(shared.get(..len).unwrap_or_default())?;
                }
                drop(shared);
                // reuse a piece the hasher is done with, else allocate one
                piece = recycled
                    .try_iter()
                    .find_map(|p| Arc::try_unwrap(p).ok())
                    .unwrap_or_else(|| vec![0u8; PIECE_SIZE]);
                len = read_piece(file, &mut piece, source)?;
            }
            Ok(())
        })();
        drop(to_hasher);
        let sha1 = hasher
            .join()
            .map_err(|_| Error::new(ErrorKind::Assert, "the sha1 thread of archive-push failed"))?;
        streamed?;
        sha1
    })
    .and_then(|sha1| {
        let (mut fan_out, _) = filter.finish()?;
        for target in &mut fan_out.targets {
            if let (Some(encryptor), Some(writer)) = (&mut target.encryptor, &mut target.writer) {
                target.scratch.clear();
                let finished = loop {
                    match encryptor.finish(&mut target.scratch) {
                        Ok(true) => break Ok(()),
                        Ok(false) => {}
                        Err(e) => break Err(e),
                    }
                }
                .and_then(|()| {
                    writer.write_all(&target.scratch).map_err(|e| {
                        Error::from_io_error(
                            &e,
                            ErrorKind::FileWrite,
                            format!("unable to write '{}'", target.temp_path),
                        )
                    })
                });
                if let Err(e) = finished {
                    target.fail(e);
                }
            }
        }
        Ok((sha1, fan_out))
    })
}

/// One place a requested file was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetCandidate {
    /// Index into the repositories the caller passes to [`get_file`].
    pub repo: usize,
    /// The `N` of `repoN` (for messages).
    pub repo_key: u32,
    /// Archive id holding it.
    pub archive_id: String,
    /// Stored file name (`<seg>-<sha1>.gz`, `00000002.history`).
    pub name: String,
    /// Archive sub-passphrase of that repository when encrypted.
    pub cipher_pass: Option<String>,
}

impl GetCandidate {
    /// `<archive-id>/<dir>/<name>` as pgBackRest names it in messages.
    #[must_use]
    pub fn display(&self, stanza: &str) -> String {
        let full = layout::archive_file_path(stanza, &self.archive_id, &self.name);
        let prefix = format!("{}/", layout::archive_path(stanza));
        full.strip_prefix(&prefix)
            .map_or(full.clone(), str::to_string)
    }
}

/// Result of [`get_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetResult {
    /// Index of the candidate that was restored.
    pub index: usize,
    /// Failed candidates before it, as warning lines.
    pub warnings: Vec<String>,
}

/// Restore `request` from the first working candidate to `dest_path` of `dest`. See the module
/// contract.
///
/// # Errors
/// `FileRead` `unable to get <request>:` with one line per failed candidate.
pub fn get_file(
    stanza: &str,
    request: &str,
    candidates: &[GetCandidate],
    repos: &[&dyn Storage],
    dest: &dyn Storage,
    dest_path: &str,
    dest_opts: &WriteOptions,
) -> Result<GetResult> {
    let mut warnings = Vec::new();
    for (index, candidate) in candidates.iter().enumerate() {
        let attempt = repos
            .get(candidate.repo)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Assert,
                    "archive-get candidate names an unknown repository",
                )
            })
            .and_then(|repo| {
                get_one(
                    stanza, request, candidate, *repo, dest, dest_path, dest_opts,
                )
            });
        match attempt {
            Ok(()) => return Ok(GetResult { index, warnings }),
            Err(e) => warnings.push(format!(
                "repo{}: {} [{}] {}",
                candidate.repo_key,
                candidate.display(stanza),
                e.kind().name(),
                crate::log::error_text(&e)
            )),
        }
    }
    Err(Error::new(
        ErrorKind::FileRead,
        format!("unable to get {request}:\n{}", warnings.join("\n")),
    ))
}

fn get_one(
    stanza: &str,
    request: &str,
    candidate: &GetCandidate,
    repo: &dyn Storage,
    dest: &dyn Storage,
    dest_path: &str,
    dest_opts: &WriteOptions,
) -> Result<()> {
    let path = layout::archive_file_path(stanza, &candidate.archive_id, &candidate.name);
    let mut chain = Chain::new();
    if let Some(pass) = &candidate.cipher_pass {
        chain.transform(FilterSpec::Decrypt { pass: pass.clone() })?;
    }
    chain.transform(FilterSpec::Decompress {
        ty: CompressType::from_file_name(&candidate.name)?,
    })?;
    let sha1_key = chain.sha1();
    let Some(mut reader) = repo.open_read(&path, ReadOptions::default())? else {
        return Err(Error::new(
            ErrorKind::FileMissing,
            format!(
                "unable to open missing file '{}' for read",
                join(repo.root(), &path)
            ),
        ));
    };
    let writer = dest.open_write(dest_path, dest_opts.clone())?;
    let mut filter = FilterWrite::new(writer, chain);
    let mut buf = vec![0u8; pgkeep_base::io::CHUNK_SIZE];
    loop {
        let read = reader.read(&mut buf).map_err(|e| {
            Error::from_io_error(
                &e,
                ErrorKind::FileRead,
                format!("unable to read '{}'", join(repo.root(), &path)),
            )
        })?;
        match buf.get(..read) {
            Some(data) if !data.is_empty() => filter.write_data(data)?,
            _ => break,
        }
    }
    let (writer, results) = filter.finish()?;
    if layout::is_wal_segment_or_partial(request) {
        let expected = candidate
            .name
            .get(request.len() + 1..request.len() + 41)
            .unwrap_or("");
        let actual = results.get(sha1_key)?.to_hex();
        if actual != expected {
            // dropping the writer discards the temp file: nothing appears under the destination
            return Err(Error::new(
                ErrorKind::Checksum,
                format!(
                    "'{}' has checksum {actual} but its name says {expected}",
                    join(repo.root(), &path)
                ),
            ));
        }
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgkeep_pg::WalHeader;
    use pgkeep_storage::posix::PosixStorage;

    const SYSID: u64 = 7_300_000_000_000_000_001;
    const SEG: &str = "000000010000000000000003";
    const SEG_SIZE: u32 = 1024 * 1024;

    fn v15() -> PgVersion {
        PgVersion::from_major(15).unwrap()
    }

    /// A 1 MiB segment with a valid long header and compressible content.
    fn segment(system_id: u64, fill: u8) -> Vec<u8> {
        let header =
            WalHeader::new(v15(), 1, 3 * u64::from(SEG_SIZE), system_id, SEG_SIZE).unwrap();
        let mut data = vec![fill; SEG_SIZE as usize];
        data[..40].copy_from_slice(&wal::header_build(&header));
        data
    }

    fn opts(compress: CompressType) -> PushOptions {
        PushOptions {
            header_check: true,
            mode_check: true,
            pg_version: v15(),
            system_id: SYSID,
            compress,
            level: compress.default_level(),
            compress_workers: 2,
        }
    }

    fn push_test(
        stanza: &str,
        source: &str,
        file: &str,
        opts: &PushOptions,
        repos: &[PushRepo],
        prior: &[String],
    ) -> Result<Vec<String>> {
        // zst in several threads (one frame) and in one (a frame per 512 KiB) must give the same
        // answer and the same repository
        let threaded = push_file(stanza, source, file, opts, repos, prior);
        if threaded
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::ArchiveDuplicate)
            || !layout::is_wal_segment_or_partial(file)
        {
            return threaded;
        }
        let single = push_file(stanza, source, file, &one_thread(opts), repos, prior);
        match (&threaded, &single) {
            (Ok(_), Ok(warnings)) => {
                // the second push found the first one's copies
                assert!(
                    warnings.len() <= repos.len() || !opts.mode_check,
                    "{warnings:?}"
                );
            }
            (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "{a:?} vs {b:?}"),
            (a, b) => panic!("threaded {a:?} but single-threaded {b:?}"),
        }
        threaded
    }

    /// `opts` compressing in the pushing thread only (as background workers do).
    fn one_thread(opts: &PushOptions) -> PushOptions {
        PushOptions {
            compress_workers: 1,
            ..opts.clone()
        }
    }

    struct Setup {
        dir: tempfile::TempDir,
        repos: Vec<PushRepo>,
    }

    fn setup(keys: &[(u32, Option<&str>)]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let repos = keys
            .iter()
            .map(|(key, pass)| PushRepo {
                key: *key,
                storage: Box::new(PosixStorage::new(
                    dir.path().join(format!("repo{key}")).to_str().unwrap(),
                )),
                archive_id: "15-1".to_string(),
                cipher_pass: pass.map(str::to_string),
            })
            .collect();
        Setup { dir, repos }
    }

    fn write_source(dir: &tempfile::TempDir, name: &str, data: &[u8]) -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        path.to_str().unwrap().to_string()
    }

    fn stored(s: &Setup, key: u32) -> Vec<String> {
        let dir = s
            .dir
            .path()
            .join(format!("repo{key}/archive/demo/15-1/0000000100000000"));
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn segments_are_stored_compressed_under_their_sha1_and_restored() {
        for ty in CompressType::ALL {
            let s = setup(&[(1, None)]);
            let data = segment(SYSID, 7);
            let source = write_source(&s.dir, SEG, &data);
            let warnings = push_test("demo", &source, SEG, &opts(ty), &s.repos, &[]).unwrap();
            assert!(warnings.is_empty());
            let sha = Sha1Digest::of(&data).to_hex();
            let name = format!("{SEG}-{sha}{}", ty.ext());
            assert_eq!(stored(&s, 1), vec![name.clone()], "{ty}");
            let raw = std::fs::read(
                s.dir
                    .path()
                    .join(format!("repo1/archive/demo/15-1/0000000100000000/{name}")),
            )
            .unwrap();
            assert_eq!(pgkeep_base::compress::decompress(ty, &raw).unwrap(), data);

            // restore it
            let candidates = vec![GetCandidate {
                repo: 0,
                repo_key: 1,
                archive_id: "15-1".into(),
                name: name.clone(),
                cipher_pass: None,
            }];
            let dest = PosixStorage::new(s.dir.path().to_str().unwrap());
            let storages: Vec<&dyn Storage> = s.repos.iter().map(|r| r.storage.as_ref()).collect();
            let got = get_file(
                "demo",
                SEG,
                &candidates,
                &storages,
                &dest,
                "RECOVERYXLOG",
                &WriteOptions::default(),
            )
            .unwrap();
            assert_eq!(
                got,
                GetResult {
                    index: 0,
                    warnings: vec![]
                }
            );
            assert_eq!(
                std::fs::read(s.dir.path().join("RECOVERYXLOG")).unwrap(),
                data
            );
        }
    }

    #[test]
    fn threaded_and_single_thread_pushes_store_the_same_segment() {
        for ty in CompressType::ALL {
            let threaded = setup(&[(1, None), (2, Some("pass"))]);
            let single = setup(&[(1, None), (2, Some("pass"))]);
            // 3 MiB + 17: zst frames end inside the segment and the last one is short
            let mut data = segment(SYSID, 6);
            data.resize(3 * SEG_SIZE as usize + 17, 6);
            data[SEG_SIZE as usize..]
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| {
                    *b = u8::try_from(i % 251).unwrap();
                });
            let source = write_source(&threaded.dir, SEG, &data);
            let header_off = PushOptions {
                header_check: false,
                ..opts(ty)
            };
            push_file("demo", &source, SEG, &header_off, &threaded.repos, &[]).unwrap();
            let one = one_thread(&header_off);
            push_file("demo", &source, SEG, &one, &single.repos, &[]).unwrap();
            for key in [1, 2] {
                assert_eq!(stored(&threaded, key), stored(&single, key), "{ty}");
                let name = stored(&single, key).pop().unwrap();
                let raw = std::fs::read(single.dir.path().join(format!(
                    "repo{key}/archive/demo/15-1/0000000100000000/{name}"
                )))
                .unwrap();
                let plain = if key == 2 {
                    pgkeep_base::crypto::decrypt(b"pass", &raw).unwrap()
                } else {
                    raw
                };
                assert_eq!(
                    pgkeep_base::compress::decompress(ty, &plain).unwrap(),
                    data,
                    "{ty}"
                );
            }
            // pushed again: the same checksum, warnings, nothing written
            let warnings = push_file("demo", &source, SEG, &one, &single.repos, &[]).unwrap();
            assert_eq!(warnings.len(), 2);
            let other = write_source(&single.dir, "other", &segment(SYSID, 7));
            let err = push_file("demo", &other, SEG, &one, &single.repos, &[]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ArchiveDuplicate);
        }
    }

    #[test]
    fn encrypted_repositories_get_their_own_sub_pass() {
        let s = setup(&[(1, Some("sub-pass-one")), (2, None)]);
        let data = segment(SYSID, 1);
        let source = write_source(&s.dir, SEG, &data);
        push_test(
            "demo",
            &source,
            SEG,
            &opts(CompressType::Lz4),
            &s.repos,
            &[],
        )
        .unwrap();
        let name = stored(&s, 1).pop().unwrap();
        assert_eq!(stored(&s, 2), vec![name.clone()]);
        let raw = std::fs::read(
            s.dir
                .path()
                .join(format!("repo1/archive/demo/15-1/0000000100000000/{name}")),
        )
        .unwrap();
        assert!(raw.starts_with(b"Salted__"));
        let plain = pgkeep_base::crypto::decrypt(b"sub-pass-one", &raw).unwrap();
        assert_eq!(
            pgkeep_base::compress::decompress(CompressType::Lz4, &plain).unwrap(),
            data
        );

        // get falls back from a candidate with the wrong pass to the next one
        let dest = PosixStorage::new(s.dir.path().to_str().unwrap());
        let storages: Vec<&dyn Storage> = s.repos.iter().map(|r| r.storage.as_ref()).collect();
        let candidates = vec![
            GetCandidate {
                repo: 0,
                repo_key: 1,
                archive_id: "15-1".into(),
                name: name.clone(),
                cipher_pass: Some("wrong".into()),
            },
            GetCandidate {
                repo: 1,
                repo_key: 2,
                archive_id: "15-1".into(),
                name: name.clone(),
                cipher_pass: None,
            },
        ];
        let got = get_file(
            "demo",
            SEG,
            &candidates,
            &storages,
            &dest,
            "out",
            &WriteOptions::default(),
        )
        .unwrap();
        assert_eq!(got.index, 1);
        assert_eq!(got.warnings.len(), 1);
        assert!(
            got.warnings[0].starts_with(&format!("repo1: 15-1/0000000100000000/{name} [")),
            "{:?}",
            got.warnings
        );
        assert_eq!(std::fs::read(s.dir.path().join("out")).unwrap(), data);
    }

    #[test]
    fn same_checksum_warns_and_different_checksum_is_refused() {
        let s = setup(&[(1, None)]);
        let data = segment(SYSID, 2);
        let source = write_source(&s.dir, SEG, &data);
        push_test("demo", &source, SEG, &opts(CompressType::Gz), &s.repos, &[]).unwrap();
        let before = stored(&s, 1);
        let warnings =
            push_test("demo", &source, SEG, &opts(CompressType::Gz), &s.repos, &[]).unwrap();
        assert_eq!(
            warnings,
            vec![format!(
                "WAL file '{SEG}' already exists in the repo1 archive with the same checksum\nHINT: this is valid in some recovery scenarios but may also indicate a problem."
            )]
        );
        let mut quiet = opts(CompressType::Gz);
        quiet.mode_check = false;
        assert!(
            push_test("demo", &source, SEG, &quiet, &s.repos, &[])
                .unwrap()
                .is_empty()
        );

        let other = write_source(&s.dir, "other", &segment(SYSID, 3));
        let err =
            push_test("demo", &other, SEG, &opts(CompressType::Gz), &s.repos, &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArchiveDuplicate);
        assert_eq!(
            err.message(),
            format!(
                "WAL file '{SEG}' already exists in the repo1 archive with a different checksum"
            )
        );
        assert_eq!(stored(&s, 1), before);
    }

    #[test]
    fn bad_segments_are_refused_before_anything_is_written() {
        let s = setup(&[(1, None)]);
        let foreign = write_source(&s.dir, "foreign", &segment(SYSID + 1, 0));
        let err = push_test(
            "demo",
            &foreign,
            SEG,
            &opts(CompressType::Gz),
            &s.repos,
            &[],
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArchiveMismatch);
        assert_eq!(
            err.message(),
            format!(
                "WAL file '{foreign}' version 15, system-id {} do not match stanza version 15, system-id {SYSID}",
                SYSID + 1
            )
        );

        let mut truncated = segment(SYSID, 0);
        truncated.truncate(SEG_SIZE as usize / 2);
        let truncated = write_source(&s.dir, "truncated", &truncated);
        let err = push_test(
            "demo",
            &truncated,
            SEG,
            &opts(CompressType::Gz),
            &s.repos,
            &[],
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileRead);
        assert_eq!(
            err.message(),
            format!("unable to read {SEG_SIZE} byte(s) from '{truncated}'")
        );

        let tiny = write_source(&s.dir, "tiny", b"short");
        let err =
            push_test("demo", &tiny, SEG, &opts(CompressType::Gz), &s.repos, &[]).unwrap_err();
        assert_eq!(
            err.message(),
            format!("unable to read 512 byte(s) from '{tiny}'")
        );

        let text = write_source(&s.dir, "text", &vec![b'x'; 4096]);
        let err =
            push_test("demo", &text, SEG, &opts(CompressType::Gz), &s.repos, &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Format);
        assert_eq!(
            err.message(),
            "first page header in WAL file is expected to be in long format"
        );

        let mut magic = segment(SYSID, 0);
        magic[0] = 0x01;
        magic[1] = 0x00;
        let magic = write_source(&s.dir, "magic", &magic);
        let err =
            push_test("demo", &magic, SEG, &opts(CompressType::Gz), &s.repos, &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::VersionNotSupported);
        assert_eq!(err.message(), "unexpected WAL magic 1");

        let missing = s.dir.path().join("missing").to_str().unwrap().to_string();
        let err = push_test(
            "demo",
            &missing,
            SEG,
            &opts(CompressType::Gz),
            &s.repos,
            &[],
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileMissing);
        assert_eq!(
            err.message(),
            format!("unable to open missing file '{missing}' for read")
        );

        assert!(
            !s.dir.path().join("repo1").exists(),
            "nothing may be written"
        );

        // without the header check a foreign segment is stored
        let mut unchecked = opts(CompressType::Gz);
        unchecked.header_check = false;
        push_test("demo", &foreign, SEG, &unchecked, &s.repos, &[]).unwrap();
        assert_eq!(stored(&s, 1).len(), 1);
    }

    #[test]
    fn history_and_backup_files_are_stored_verbatim() {
        let s = setup(&[(1, Some("pass"))]);
        let history = write_source(
            &s.dir,
            "00000002.history",
            b"1\t0/3000000\tno recovery target specified\n",
        );
        push_test(
            "demo",
            &history,
            "00000002.history",
            &opts(CompressType::Zst),
            &s.repos,
            &[],
        )
        .unwrap();
        let raw = std::fs::read(
            s.dir
                .path()
                .join("repo1/archive/demo/15-1/00000002.history"),
        )
        .unwrap();
        assert_eq!(
            pgkeep_base::crypto::decrypt(b"pass", &raw).unwrap(),
            b"1\t0/3000000\tno recovery target specified\n"
        );
        let backup_name = "000000010000000000000002.00000028.backup";
        let backup = write_source(&s.dir, backup_name, b"START WAL LOCATION: 0/2000028\n");
        push_test(
            "demo",
            &backup,
            backup_name,
            &opts(CompressType::Zst),
            &s.repos,
            &[],
        )
        .unwrap();
        assert_eq!(stored(&s, 1), vec![backup_name.to_string()]);
        // pushed again: overwritten, no duplicate check for these
        push_test(
            "demo",
            &backup,
            backup_name,
            &opts(CompressType::Zst),
            &s.repos,
            &[],
        )
        .unwrap();

        let dest = PosixStorage::new(s.dir.path().to_str().unwrap());
        let storages: Vec<&dyn Storage> = s.repos.iter().map(|r| r.storage.as_ref()).collect();
        let candidates = vec![GetCandidate {
            repo: 0,
            repo_key: 1,
            archive_id: "15-1".into(),
            name: "00000002.history".into(),
            cipher_pass: Some("pass".into()),
        }];
        assert_eq!(candidates[0].display("demo"), "15-1/00000002.history");
        get_file(
            "demo",
            "00000002.history",
            &candidates,
            &storages,
            &dest,
            "got.history",
            &WriteOptions::default(),
        )
        .unwrap();
        assert_eq!(
            std::fs::read(s.dir.path().join("got.history")).unwrap(),
            b"1\t0/3000000\tno recovery target specified\n"
        );
    }

    #[test]
    fn a_duplicate_in_one_repository_leaves_no_temp_file_in_the_others() {
        let s = setup(&[(1, None), (2, Some("pass"))]);
        let first = write_source(&s.dir, "first", &segment(SYSID, 8));
        push_test(
            "demo",
            &first,
            SEG,
            &opts(CompressType::Zst),
            &s.repos[..1],
            &[],
        )
        .unwrap();
        let other = write_source(&s.dir, "other", &segment(SYSID, 9));
        let err =
            push_test("demo", &other, SEG, &opts(CompressType::Zst), &s.repos, &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArchiveDuplicate);
        assert!(stored(&s, 2).is_empty(), "{:?}", stored(&s, 2));
        // the same content: repo2 gets its copy, repo1 a warning
        let warnings =
            push_test("demo", &first, SEG, &opts(CompressType::Zst), &s.repos, &[]).unwrap();
        assert_eq!(warnings.len(), 1);
        assert_eq!(stored(&s, 1), stored(&s, 2));
    }

    #[test]
    fn a_failing_repository_fails_the_push_but_the_others_keep_their_copy() {
        let mut s = setup(&[(1, None), (2, None)]);
        s.repos[1].storage = Box::new(PosixStorage::new("/proc/pgkeep-no-repo"));
        let data = segment(SYSID, 4);
        let source = write_source(&s.dir, SEG, &data);
        let err = push_test(
            "demo",
            &source,
            SEG,
            &opts(CompressType::Lz4),
            &s.repos,
            &["repo3: [FileMissingError] gone".to_string()],
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Command);
        assert!(err.message().starts_with("archive-push command encountered error(s):\nrepo3: [FileMissingError] gone\nrepo2: ["), "{}", err.message());
        assert_eq!(stored(&s, 1).len(), 1);
    }

    #[test]
    fn corrupt_archive_files_are_not_restored() {
        let s = setup(&[(1, None)]);
        let data = segment(SYSID, 5);
        let source = write_source(&s.dir, SEG, &data);
        push_test(
            "demo",
            &source,
            SEG,
            &opts(CompressType::None),
            &s.repos,
            &[],
        )
        .unwrap();
        let name = stored(&s, 1).pop().unwrap();
        let path = s
            .dir
            .path()
            .join(format!("repo1/archive/demo/15-1/0000000100000000/{name}"));
        let mut raw = std::fs::read(&path).unwrap();
        raw[1000] ^= 0xFF;
        std::fs::write(&path, raw).unwrap();
        let dest = PosixStorage::new(s.dir.path().to_str().unwrap());
        let storages: Vec<&dyn Storage> = s.repos.iter().map(|r| r.storage.as_ref()).collect();
        let candidates = vec![GetCandidate {
            repo: 0,
            repo_key: 1,
            archive_id: "15-1".into(),
            name,
            cipher_pass: None,
        }];
        let err = get_file(
            "demo",
            SEG,
            &candidates,
            &storages,
            &dest,
            "RECOVERYXLOG",
            &WriteOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileRead);
        assert!(
            err.message().starts_with(&format!(
                "unable to get {SEG}:\nrepo1: 15-1/0000000100000000/{SEG}-"
            )),
            "{}",
            err.message()
        );
        assert!(
            err.message().contains("[ChecksumError]"),
            "{}",
            err.message()
        );
        assert!(!s.dir.path().join("RECOVERYXLOG").exists());
        assert!(!s.dir.path().join("RECOVERYXLOG.pgbackrest.tmp").exists());
    }
}
