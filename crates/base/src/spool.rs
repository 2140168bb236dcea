//! Disk spools: what a command would otherwise hold in memory once per file, kept in anonymous
//! temporary files instead, so its memory does not grow with the number of files.
//!
//! Contract:
//! - [`TempFile`] is created in the system temp directory (`TMPDIR`, else `/tmp`) under a random
//!   name, mode 0600 (no other user can open it in the moment before it is unlinked), and unlinked
//!   at once: nothing is left behind whatever happens to the process. Its content is transient
//!   work data, never a durable result, so it is not synced. Errors name what the file is for and
//!   the directory; a full temp directory gets a hint to set `TMPDIR`.
//! - Records are byte strings framed by a varint length ([`TempFile::push`], [`RecordReader`]).
//! - [`Sorter`] sorts records with a caller's comparison: records are gathered in a buffer of at
//!   most [`Sorter::BUFFER`] bytes, each full buffer is sorted and written as a run, and the runs
//!   are merged on read ([`Sorted`]). Memory is the buffer while records are pushed and one read
//!   buffer per run while they are read (runs beyond [`Sorter::FAN_IN`] are first merged into
//!   longer runs), whatever the number of records. Records the comparison finds equal keep no
//!   particular order.
//! - Reads and writes use positioned I/O on one descriptor, so any number of readers of one file
//!   can be open at once. A record longer than what is left of its range is corrupt (`Format`),
//!   never an allocation of whatever length the bytes say; a read error ends a merge for good
//!   (every later read returns it), so no record is ever skipped or repeated.
//! - Disk use: the records once, plus once more per merge pass beyond the first (the space of
//!   merged runs is not reused).

use std::cmp::Ordering;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::error::io_cause;
use crate::{Error, ErrorKind, Result};

/// An anonymous temporary file (see the module contract).
#[derive(Debug)]
pub struct TempFile {
    file: Arc<File>,
    /// The directory it was created in, for messages.
    dir: Arc<Path>,
    /// What it holds, for messages.
    what: Arc<str>,
    /// Bytes written so far.
    len: u64,
    /// Records pushed but not yet written.
    pending: Vec<u8>,
}

fn io_error(kind: ErrorKind, what: &str, dir: &Path, e: &std::io::Error) -> Error {
    let err = Error::new(
        kind,
        format!(
            "unable to {what} temporary file in '{}': {}",
            dir.display(),
            io_cause(e)
        ),
    );
    if e.raw_os_error() == Some(28) {
        err.with_hint("set TMPDIR to a directory with more room")
    } else {
        err
    }
}

impl TempFile {
    /// A new empty file in the temp directory; `what` names it in its (already unlinked) name.
    ///
    /// # Errors
    /// `FileWrite` when the file cannot be created there.
    pub fn new(what: &str) -> Result<TempFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::env::temp_dir();
        let mut attempt = 0;
        let (file, path) = loop {
            let mut random = [0u8; 8];
            crate::crypto::random_bytes(&mut random)?;
            let path = dir.join(format!(
                "pgkeep-{}-{}-{:016x}.spool",
                what.replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
                std::process::id(),
                u64::from_le_bytes(random)
            ));
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => break (file, path),
                // a random name taken: try another (a few times, then report it)
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                    attempt += 1;
                }
                Err(e) => {
                    return Err(io_error(
                        ErrorKind::FileOpen,
                        &format!("create the {what}"),
                        &dir,
                        &e,
                    ));
                }
            }
        };
        if let Err(e) = std::fs::remove_file(&path) {
            return Err(io_error(
                ErrorKind::FileRemove,
                &format!("unlink the {what}"),
                &dir,
                &e,
            ));
        }
        Ok(TempFile {
            file: Arc::new(file),
            dir: Arc::from(dir.as_path()),
            what: Arc::from(what),
            len: 0,
            pending: Vec::new(),
        })
    }

    /// Bytes in the file, pushed records not yet written included: where the next record goes.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len + self.pending.len() as u64
    }

    /// True when nothing was written or pushed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append one length-framed record (buffered: [`TempFile::flush`] writes what is pending
    /// before it can be read).
    ///
    /// # Errors
    /// `FileWrite`.
    pub fn push(&mut self, record: &[u8]) -> Result<()> {
        put_varint(&mut self.pending, record.len() as u64);
        self.pending.extend_from_slice(record);
        if self.pending.len() >= WRITE_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    /// Write the pushed records still pending.
    ///
    /// # Errors
    /// `FileWrite`.
    pub fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let written = self.write_at(self.len, &pending);
        self.pending = pending;
        self.pending.clear();
        written
    }

    /// Write `bytes` at `offset` (for fixed-size records written out of order). The file grows as
    /// needed; what was never written reads as zeros.
    ///
    /// # Errors
    /// `FileWrite` (a full disk, for one).
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        if !self.pending.is_empty() {
            self.flush()?;
        }
        self.file.write_all_at(bytes, offset).map_err(|e| {
            io_error(
                ErrorKind::FileWrite,
                &format!("write the {}", self.what),
                &self.dir,
                &e,
            )
        })?;
        self.len = self.len.max(offset + bytes.len() as u64);
        Ok(())
    }

    /// A buffered reader of the records in `start..end` (it shares the descriptor: any number
    /// can be open, and they outlive nothing).
    #[must_use]
    pub fn reader(&self, start: u64, end: u64) -> RecordReader {
        self.reader_with(start, end, 64 * 1024)
    }

    fn reader_with(&self, start: u64, end: u64, capacity: usize) -> RecordReader {
        RecordReader {
            input: BufReader::with_capacity(
                capacity,
                Range {
                    file: Arc::clone(&self.file),
                    pos: start,
                    end,
                },
            ),
            dir: Arc::clone(&self.dir),
            what: Arc::clone(&self.what),
            left: end.saturating_sub(start),
        }
    }

    /// Read exactly `buf.len()` bytes at `offset`; bytes past the end read as zeros.
    ///
    /// # Errors
    /// `FileRead`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        buf.fill(0);
        let mut done = 0usize;
        while let Some(rest) = buf.get_mut(done..) {
            if rest.is_empty() {
                break;
            }
            match self.file.read_at(rest, offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(&self.what, &self.dir, &e)),
            }
        }
        Ok(())
    }
}

fn read_error(what: &str, dir: &Path, e: &std::io::Error) -> Error {
    Error::new(
        ErrorKind::FileRead,
        format!(
            "unable to read the {what} temporary file in '{}': {}",
            dir.display(),
            io_cause(e)
        ),
    )
}

/// Reads a range of a shared descriptor.
struct Range {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for Range {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = usize::try_from(self.end.saturating_sub(self.pos)).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        let Some(slice) = buf.get_mut(..want) else {
            return Ok(0);
        };
        if slice.is_empty() {
            return Ok(0);
        }
        let n = self.file.read_at(slice, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Bytes of pushed records a [`TempFile`] gathers before it writes them.
const WRITE_BUFFER: usize = 64 * 1024;

/// The little-endian `u64` at `at` of a fixed-layout record (0 past its end).
#[must_use]
pub fn le_u64(record: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    if let Some(bytes) = record.get(at..at + 8) {
        raw.copy_from_slice(bytes);
    }
    u64::from_le_bytes(raw)
}

/// The little-endian `u32` at `at` of a fixed-layout record (0 past its end).
#[must_use]
pub fn le_u32(record: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    if let Some(bytes) = record.get(at..at + 4) {
        raw.copy_from_slice(bytes);
    }
    u32::from_le_bytes(raw)
}

/// Append `value` as a LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Read a LEB128 varint from the front of `input`, advancing it.
///
/// # Errors
/// `Format` when the input ends inside it or it does not fit 64 bits.
pub fn get_varint(input: &mut &[u8]) -> Result<u64> {
    let mut value = 0u64;
    let mut shift = 0u32;
    loop {
        let Some((&byte, rest)) = input.split_first() else {
            return Err(corrupt());
        };
        *input = rest;
        if shift > 63 {
            return Err(corrupt());
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
}

fn corrupt() -> Error {
    Error::new(ErrorKind::Format, "temporary spool record is corrupt")
}

/// Reads length-framed records back.
pub struct RecordReader {
    input: BufReader<Range>,
    dir: Arc<Path>,
    what: Arc<str>,
    /// Bytes of the range not yet consumed.
    left: u64,
}

impl RecordReader {
    /// The next record into `buf` (replacing its content); `false` at the end.
    ///
    /// # Errors
    /// `FileRead`; `Format` for a truncated record.
    pub fn next_into(&mut self, buf: &mut Vec<u8>) -> Result<bool> {
        let mut len = 0u64;
        let mut shift = 0u32;
        let mut first = true;
        loop {
            let mut byte = [0u8; 1];
            match self.input.read(&mut byte) {
                // the end of the file is the end only where the range ends: a file shortened
                // under the reader must not drop records silently
                Ok(0) if first && self.left == 0 => return Ok(false),
                Ok(0) => return Err(corrupt()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(&self.what, &self.dir, &e)),
            }
            first = false;
            self.left = self.left.saturating_sub(1);
            if shift > 63 {
                return Err(corrupt());
            }
            len |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        if len > self.left {
            return Err(corrupt());
        }
        self.left -= len;
        let len = usize::try_from(len).map_err(|_| corrupt())?;
        buf.clear();
        buf.resize(len, 0);
        self.input.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                corrupt()
            } else {
                read_error(&self.what, &self.dir, &e)
            }
        })?;
        Ok(true)
    }
}

/// Sorts records too many to hold (see the module contract).
pub struct Sorter<C> {
    what: &'static str,
    cmp: C,
    /// Records of the run being gathered, one after the other.
    buf: Vec<u8>,
    /// `(start, len)` of each gathered record in `buf`.
    items: Vec<(u32, u32)>,
    /// Sorted runs written so far: ranges of `spool`.
    runs: Vec<(u64, u64)>,
    spool: Option<TempFile>,
    count: u64,
    /// Bytes gathered before a run is written ([`Sorter::BUFFER`]; smaller in tests).
    buffer: usize,
}

impl<C: Fn(&[u8], &[u8]) -> Ordering> Sorter<C> {
    /// Bytes of records gathered before they are sorted and written as a run.
    pub const BUFFER: usize = 4 * 1024 * 1024;
    /// Most runs merged at once (each has its read buffer).
    pub const FAN_IN: usize = 64;
    /// Read buffer of each run while merging.
    const RUN_BUFFER: usize = 32 * 1024;

    /// An empty sorter ordering records by `cmp`; `what` names its temporary file.
    pub fn new(what: &'static str, cmp: C) -> Self {
        Sorter {
            what,
            cmp,
            buf: Vec::new(),
            items: Vec::new(),
            runs: Vec::new(),
            spool: None,
            count: 0,
            buffer: Self::BUFFER,
        }
    }

    /// Records pushed so far.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True when nothing was pushed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Add a record.
    ///
    /// # Errors
    /// `FileWrite` when a run cannot be written; `Assert` for a record over 4 GiB.
    pub fn push(&mut self, record: &[u8]) -> Result<()> {
        if !self.items.is_empty() && self.buf.len() + record.len() > self.buffer {
            self.spill()?;
        }
        let (Ok(start), Ok(len)) = (u32::try_from(self.buf.len()), u32::try_from(record.len()))
        else {
            return Err(Error::new(
                ErrorKind::Assert,
                format!(
                    "{} record of {} bytes too large to sort",
                    self.what,
                    record.len()
                ),
            ));
        };
        if self.buf.capacity() == 0 {
            // once, the whole run: growing by doubling would leave freed pieces behind (only
            // the pages written count as memory)
            self.buf.reserve_exact(self.buffer);
        }
        self.buf.extend_from_slice(record);
        self.items.push((start, len));
        self.count += 1;
        Ok(())
    }

    fn sort_items(&mut self) {
        let (buf, cmp) = (&self.buf, &self.cmp);
        let get = |(start, len): (u32, u32)| {
            buf.get(start as usize..start as usize + len as usize)
                .unwrap_or_default()
        };
        self.items.sort_unstable_by(|a, b| cmp(get(*a), get(*b)));
    }

    /// Sort the gathered records and write them as a run.
    fn spill(&mut self) -> Result<()> {
        self.sort_items();
        let spool = match &mut self.spool {
            Some(spool) => spool,
            none => none.insert(TempFile::new(self.what)?),
        };
        let run_start = spool.len();
        for (start, len) in self.items.drain(..) {
            spool.push(
                self.buf
                    .get(start as usize..start as usize + len as usize)
                    .unwrap_or_default(),
            )?;
        }
        spool.flush()?;
        self.runs.push((run_start, spool.len()));
        self.buf.clear();
        Ok(())
    }

    /// The records in order. With everything still in memory the buffer itself is read;
    /// otherwise the last run is written too and the runs are merged.
    ///
    /// # Errors
    /// `FileWrite`/`FileRead` of the temporary file.
    pub fn finish(mut self) -> Result<Sorted<C>> {
        if self.runs.is_empty() {
            self.sort_items();
            return Ok(Sorted {
                inner: Inner::Memory {
                    buf: self.buf,
                    items: self.items.into_iter(),
                },
                cmp: self.cmp,
            });
        }
        if !self.items.is_empty() {
            self.spill()?;
        }
        self.buf = Vec::new();
        self.items = Vec::new();
        let Some(mut spool) = self.spool.take() else {
            return Err(Error::new(ErrorKind::Assert, "sorter runs without a file"));
        };
        let mut runs = std::mem::take(&mut self.runs);
        // merge passes until one merge can read every run
        while runs.len() > Self::FAN_IN {
            let mut longer = Vec::new();
            for group in runs.chunks(Self::FAN_IN) {
                let mut merge = Merge::new(&spool, group, Self::RUN_BUFFER)?;
                let run_start = spool.len();
                let mut record = Vec::new();
                while merge.next_into(&mut record, &self.cmp)? {
                    spool.push(&record)?;
                }
                spool.flush()?;
                longer.push((run_start, spool.len()));
            }
            runs = longer;
        }
        let merge = Merge::new(&spool, &runs, Self::RUN_BUFFER)?;
        Ok(Sorted {
            inner: Inner::Merge {
                merge,
                _spool: spool,
            },
            cmp: self.cmp,
        })
    }
}

/// The heads of several sorted runs.
struct Merge {
    readers: Vec<RecordReader>,
    /// The current record of each run; `None` once it is exhausted.
    heads: Vec<Option<Vec<u8>>>,
    /// The first read error: the merge is over, and every later read returns it.
    failed: Option<Error>,
}

impl Merge {
    fn new(spool: &TempFile, runs: &[(u64, u64)], capacity: usize) -> Result<Merge> {
        let mut readers = Vec::with_capacity(runs.len());
        let mut heads = Vec::with_capacity(runs.len());
        for (start, end) in runs {
            let mut reader = spool.reader_with(*start, *end, capacity);
            let mut head = Vec::new();
            let live = reader.next_into(&mut head)?;
            readers.push(reader);
            heads.push(live.then_some(head));
        }
        Ok(Merge {
            readers,
            heads,
            failed: None,
        })
    }

    fn next_into(
        &mut self,
        out: &mut Vec<u8>,
        cmp: &impl Fn(&[u8], &[u8]) -> Ordering,
    ) -> Result<bool> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut best: Option<usize> = None;
        for (i, head) in self.heads.iter().enumerate() {
            let Some(head) = head else { continue };
            let better = match best
                .and_then(|b| self.heads.get(b))
                .and_then(Option::as_ref)
            {
                Some(current) => cmp(head, current) == Ordering::Less,
                None => true,
            };
            if better {
                best = Some(i);
            }
        }
        let Some(best) = best else {
            return Ok(false);
        };
        let (Some(slot), Some(reader)) = (self.heads.get_mut(best), self.readers.get_mut(best))
        else {
            return Ok(false);
        };
        if let Some(head) = slot.as_mut() {
            std::mem::swap(head, out);
            match reader.next_into(head) {
                Ok(true) => {}
                Ok(false) => *slot = None,
                Err(e) => {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(true)
    }
}

enum Inner {
    Memory {
        buf: Vec<u8>,
        items: std::vec::IntoIter<(u32, u32)>,
    },
    Merge {
        merge: Merge,
        /// Keeps the runs' file open (the readers share its descriptor).
        _spool: TempFile,
    },
}

/// The records of a [`Sorter`], in order.
pub struct Sorted<C> {
    inner: Inner,
    cmp: C,
}

impl<C: Fn(&[u8], &[u8]) -> Ordering> Sorted<C> {
    /// The next record into `out` (replacing its content); `false` at the end.
    ///
    /// # Errors
    /// `FileRead`; `Format` for a corrupt run.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        match &mut self.inner {
            Inner::Memory { buf, items } => match items.next() {
                Some((start, len)) => {
                    out.clear();
                    out.extend_from_slice(
                        buf.get(start as usize..start as usize + len as usize)
                            .unwrap_or_default(),
                    );
                    Ok(true)
                }
                None => Ok(false),
            },
            Inner::Merge { merge, .. } => merge.next_into(out, &self.cmp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain<C: Fn(&[u8], &[u8]) -> Ordering>(mut sorted: Sorted<C>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut rec = Vec::new();
        while sorted.next_into(&mut rec).unwrap() {
            out.push(rec.clone());
        }
        out
    }

    #[test]
    fn varints_round_trip_and_truncation_is_an_error() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            let mut input = buf.as_slice();
            assert_eq!(get_varint(&mut input).unwrap(), v);
            assert!(input.is_empty());
            let mut cut = buf.get(..buf.len() - 1).unwrap();
            if !cut.is_empty() || buf.len() == 1 {
                assert_eq!(get_varint(&mut cut).unwrap_err().kind(), ErrorKind::Format);
            }
        }
    }

    #[test]
    fn records_round_trip_through_a_temp_file_that_leaves_no_name() {
        let mine = format!("pgkeep-test-{}-", std::process::id());
        let named = || {
            std::fs::read_dir(std::env::temp_dir())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with(&mine)
                })
                .count()
        };
        let mut spool = TempFile::new("test").unwrap();
        for i in 0..10_000u32 {
            spool.push(format!("record {i}").as_bytes()).unwrap();
        }
        spool.push(b"").unwrap();
        spool.flush().unwrap();
        let (start, end) = (0, spool.len());
        let mut reader = spool.reader(start, end);
        let mut rec = Vec::new();
        for i in 0..10_000u32 {
            assert!(reader.next_into(&mut rec).unwrap());
            assert_eq!(rec, format!("record {i}").as_bytes());
        }
        assert!(reader.next_into(&mut rec).unwrap());
        assert!(rec.is_empty());
        assert!(!reader.next_into(&mut rec).unwrap());
        // a file that ends before its range (shortened under the reader) is corrupt, even at a
        // record boundary: no record is dropped silently
        let mut short = spool.reader(start, end + 10);
        let err = loop {
            match short.next_into(&mut rec) {
                Ok(true) => {}
                Ok(false) => panic!("a short file read as a complete one"),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ErrorKind::Format);
        // a range cut inside a record is corrupt, not a short read
        let mut cut = spool.reader(0, 5);
        assert_eq!(
            cut.next_into(&mut rec).unwrap_err().kind(),
            ErrorKind::Format
        );
        // fixed records written out of order; unwritten ones read as zeros
        spool.write_at(end + 100, b"abc").unwrap();
        let mut fixed = [9u8; 6];
        spool.read_at(end + 97, &mut fixed).unwrap();
        assert_eq!(fixed, [0, 0, 0, b'a', b'b', b'c']);
        spool.read_at(end + 200, &mut fixed).unwrap();
        assert_eq!(fixed, [0; 6]);
        assert_eq!(named(), 0, "unlinked at once");
        // a length beyond the range is corrupt, not an allocation of that size
        let mut huge = Vec::new();
        put_varint(&mut huge, u64::MAX >> 1);
        let at = spool.len();
        spool.write_at(at, &huge).unwrap();
        let mut bad = spool.reader(at, at + huge.len() as u64);
        assert_eq!(
            bad.next_into(&mut rec).unwrap_err().kind(),
            ErrorKind::Format
        );
    }

    #[test]
    fn sorts_in_memory_and_through_merged_runs() {
        // a pseudo-random permutation of 0..n as zero-padded text, sorted back
        let n = 300_000u64;
        let key = |i: u64| format!("{:012}-{}", (i * 7_919) % n, "x".repeat((i % 40) as usize));
        let mut small = Sorter::new("test", |a: &[u8], b: &[u8]| a.cmp(b));
        for i in 0..1000 {
            small.push(key(i).as_bytes()).unwrap();
        }
        assert_eq!(small.len(), 1000);
        let got = drain(small.finish().unwrap());
        assert!(got.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(got.len(), 1000);

        let mut big = Sorter::new("test", |a: &[u8], b: &[u8]| b.cmp(a));
        for i in 0..n {
            big.push(key(i).as_bytes()).unwrap();
        }
        assert!(big.runs.len() >= 2, "spilled {} runs", big.runs.len());
        let got = drain(big.finish().unwrap());
        assert_eq!(got.len() as u64, n);
        assert!(got.windows(2).all(|w| w[0] >= w[1]), "descending");
        let mut want: Vec<Vec<u8>> = (0..n).map(|i| key(i).into_bytes()).collect();
        want.sort_by(|a, b| b.cmp(a));
        assert_eq!(got, want);
    }

    #[test]
    fn more_runs_than_the_fan_in_are_merged_in_passes() {
        type Cmp = fn(&[u8], &[u8]) -> Ordering;
        let n = 100_000u64;
        let mut sorter: Sorter<Cmp> = Sorter::new("test", |a, b| a.cmp(b));
        // small runs: over 200, so more than one merge pass (fan-in 64)
        sorter.buffer = 4096;
        for i in 0..n {
            sorter
                .push(format!("{:09}", (i * 104_729) % n).as_bytes())
                .unwrap();
        }
        assert!(
            sorter.runs.len() > Sorter::<Cmp>::FAN_IN * 3,
            "{} runs",
            sorter.runs.len()
        );
        let got = drain(sorter.finish().unwrap());
        assert_eq!(got.len() as u64, n);
        let want: Vec<Vec<u8>> = (0..n).map(|i| format!("{i:09}").into_bytes()).collect();
        assert_eq!(got, want);
    }
}
