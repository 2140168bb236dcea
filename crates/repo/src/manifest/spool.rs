//! The file list of a backup being written, kept on disk instead of in a [`Manifest`]'s map, so
//! that a backup's memory does not grow with the number of files (pgBackRest holds every entry in
//! memory). Built on [`pgkeep_base::spool`]'s anonymous temporary files.
//!
//! Contract:
//! - [`FileList`]: entries (`name`, [`ManifestFile`], and a `mark` byte the caller uses for
//!   per-file decisions) in strictly increasing byte order of name, the manifest's order. It is
//!   written once, in order ([`FileListWriter`], which refuses a name out of order), and read any
//!   number of times from the start ([`FileList::iter`]); changing entries means writing a new list.
//!   An entry's index is its position, stable for the life of the list.
//! - [`FileSorter`] takes entries in any order (a directory walk) and yields a [`FileList`],
//!   dropping the names its caller's filter rejects; of a name given twice (a directory listing
//!   that returned an entry twice while it changed) one entry is kept.
//! - Owner names and references are written as indexes into a table of distinct names held in
//!   memory (a cluster has few).
//! - [`Results`]: what the copy did to the entry at each index, as fixed-size records written in
//!   any order and read back in index order; an index never written is "unchanged".
//! - [`each_final`] yields the manifest's final file list: the list with the results applied,
//!   removed files skipped, merged in name order with the few entries held in memory (files the
//!   backup adds at its end); [`Manifest::write_with_files`] renders a manifest from it, streaming.
//! - Memory: one entry at a time plus fixed buffers, whatever the number of files.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use pgkeep_base::spool::{RecordReader, Sorted, Sorter, TempFile, get_varint, le_u64, put_varint};
use pgkeep_base::{Error, ErrorKind, Result};

use super::{BlockIncr, Checksum, ManifestFile};
use crate::info::json::Json;

/// The distinct owner names and references of a list's entries.
#[derive(Debug, Clone, Default)]
pub struct NameTable {
    names: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u64>,
}

impl NameTable {
    fn put(&mut self, name: Option<&Arc<str>>) -> u64 {
        let Some(name) = name else { return 0 };
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        self.names.push(Arc::clone(name));
        let i = self.names.len() as u64;
        self.index.insert(Arc::clone(name), i);
        i
    }

    fn get(&self, i: u64) -> Result<Option<Arc<str>>> {
        if i == 0 {
            return Ok(None);
        }
        usize::try_from(i - 1)
            .ok()
            .and_then(|i| self.names.get(i))
            .map(|n| Some(Arc::clone(n)))
            .ok_or_else(corrupt)
    }
}

fn corrupt() -> Error {
    Error::new(ErrorKind::Format, "temporary file list record is corrupt")
}

/// One entry of a [`FileList`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Manifest name.
    pub name: String,
    /// The entry.
    pub file: ManifestFile,
    /// The caller's per-file byte.
    pub mark: u8,
}

const F_CHECKSUM: u8 = 1;
const F_CHECKSUM_REPO: u8 = 2;
const F_PAGE: u8 = 4;
const F_PAGE_OK: u8 = 8;
const F_PAGE_ERROR: u8 = 16;
const F_BLOCK: u8 = 32;
const F_EXTRA: u8 = 64;

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn get_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8]> {
    let len = usize::try_from(get_varint(input)?).map_err(|_| corrupt())?;
    let (bytes, rest) = input.split_at_checked(len).ok_or_else(corrupt)?;
    *input = rest;
    Ok(bytes)
}

fn get_u8(input: &mut &[u8]) -> Result<u8> {
    let (&byte, rest) = input.split_first().ok_or_else(corrupt)?;
    *input = rest;
    Ok(byte)
}

fn put_checksum(out: &mut Vec<u8>, checksum: &Checksum) {
    match checksum.as_bytes() {
        Some(bytes) => {
            out.push(0);
            out.extend_from_slice(bytes);
        }
        None => {
            out.push(1);
            put_bytes(out, checksum.to_string().as_bytes());
        }
    }
}

fn get_checksum(input: &mut &[u8]) -> Result<Checksum> {
    match get_u8(input)? {
        0 => {
            let (bytes, rest) = input.split_at_checked(20).ok_or_else(corrupt)?;
            *input = rest;
            let mut raw = [0u8; 20];
            raw.copy_from_slice(bytes);
            Ok(Checksum::from_bytes(raw))
        }
        _ => {
            let text = std::str::from_utf8(get_bytes(input)?).map_err(|_| corrupt())?;
            Ok(Checksum::parse(text))
        }
    }
}

fn get_json(input: &mut &[u8]) -> Result<Json> {
    let text = std::str::from_utf8(get_bytes(input)?).map_err(|_| corrupt())?;
    Json::parse(text).map_err(|_| corrupt())
}

/// Append the record of an entry.
fn encode(out: &mut Vec<u8>, table: &mut NameTable, name: &str, file: &ManifestFile, mark: u8) {
    put_bytes(out, name.as_bytes());
    out.push(mark);
    put_varint(out, file.size);
    put_varint(out, file.size_repo);
    // zigzag: timestamps may be negative
    put_varint(out, ((file.timestamp << 1) ^ (file.timestamp >> 63)) as u64);
    put_varint(out, u64::from(file.mode));
    put_varint(out, table.put(file.user.as_ref()));
    put_varint(out, table.put(file.group.as_ref()));
    put_varint(out, table.put(file.reference.as_ref()));
    put_varint(out, file.bundle_id);
    put_varint(out, file.bundle_offset);
    let mut flags = 0u8;
    if file.checksum.is_some() {
        flags |= F_CHECKSUM;
    }
    if file.checksum_repo.is_some() {
        flags |= F_CHECKSUM_REPO;
    }
    if let Some(ok) = file.checksum_page {
        flags |= F_PAGE;
        if ok {
            flags |= F_PAGE_OK;
        }
    }
    if file.checksum_page_error.is_some() {
        flags |= F_PAGE_ERROR;
    }
    if file.block_incr.is_some() {
        flags |= F_BLOCK;
    }
    if file.extra.is_some() {
        flags |= F_EXTRA;
    }
    out.push(flags);
    if let Some(c) = &file.checksum {
        put_checksum(out, c);
    }
    if let Some(c) = &file.checksum_repo {
        put_checksum(out, c);
    }
    if let Some(list) = &file.checksum_page_error {
        put_bytes(out, list.render().as_bytes());
    }
    if let Some(block) = &file.block_incr {
        put_varint(out, block.size);
        put_varint(out, block.checksum_size);
        put_varint(out, block.map_size);
    }
    if let Some(extra) = &file.extra {
        put_bytes(out, Json::Object((**extra).clone()).render().as_bytes());
    }
}

/// The name of a record, without decoding the rest.
fn record_name(record: &[u8]) -> Result<&[u8]> {
    let mut input = record;
    get_bytes(&mut input)
}

fn decode(mut input: &[u8], table: &NameTable) -> Result<Entry> {
    let input = &mut input;
    let name = String::from_utf8(get_bytes(input)?.to_vec()).map_err(|_| corrupt())?;
    let mark = get_u8(input)?;
    let size = get_varint(input)?;
    let size_repo = get_varint(input)?;
    let zig = get_varint(input)?;
    let timestamp = ((zig >> 1) as i64) ^ -((zig & 1) as i64);
    let mode = u32::try_from(get_varint(input)?).map_err(|_| corrupt())?;
    let user = table.get(get_varint(input)?)?;
    let group = table.get(get_varint(input)?)?;
    let reference = table.get(get_varint(input)?)?;
    let bundle_id = get_varint(input)?;
    let bundle_offset = get_varint(input)?;
    let flags = get_u8(input)?;
    let checksum = if flags & F_CHECKSUM != 0 {
        Some(get_checksum(input)?)
    } else {
        None
    };
    let checksum_repo = if flags & F_CHECKSUM_REPO != 0 {
        Some(get_checksum(input)?)
    } else {
        None
    };
    let checksum_page = (flags & F_PAGE != 0).then_some(flags & F_PAGE_OK != 0);
    let checksum_page_error = if flags & F_PAGE_ERROR != 0 {
        Some(Box::new(get_json(input)?))
    } else {
        None
    };
    let block_incr = if flags & F_BLOCK != 0 {
        Some(Box::new(BlockIncr {
            size: get_varint(input)?,
            checksum_size: get_varint(input)?,
            map_size: get_varint(input)?,
        }))
    } else {
        None
    };
    let extra = if flags & F_EXTRA != 0 {
        match get_json(input)? {
            Json::Object(map) => Some(Box::new(map)),
            _ => return Err(corrupt()),
        }
    } else {
        None
    };
    Ok(Entry {
        name,
        file: ManifestFile {
            size,
            size_repo,
            timestamp,
            checksum,
            checksum_repo,
            checksum_page,
            checksum_page_error,
            reference,
            bundle_id,
            bundle_offset,
            block_incr,
            mode,
            user,
            group,
            extra,
        },
        mark,
    })
}

/// Entries in name order, on disk (see the module contract).
#[derive(Debug)]
pub struct FileList {
    spool: TempFile,
    count: u64,
    table: NameTable,
}

impl FileList {
    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True when there is no entry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entries from the first, in name order.
    #[must_use]
    pub fn iter(&self) -> FileIter<'_> {
        FileIter {
            reader: self.spool.reader(0, self.spool.len()),
            table: &self.table,
            record: Vec::new(),
            next_index: 0,
        }
    }

    /// A writer of a new list sharing this one's name table (for a changed copy of this list).
    ///
    /// # Errors
    /// `FileWrite` when the temporary file cannot be created.
    pub fn rewriter(&self) -> Result<FileListWriter> {
        FileListWriter::with_table(self.table.clone())
    }

    /// Call `each` with every entry and its index, in order.
    ///
    /// # Errors
    /// Read errors, and `each`'s.
    pub fn for_each(&self, mut each: impl FnMut(u64, Entry) -> Result<()>) -> Result<()> {
        let mut iter = self.iter();
        while let Some((idx, entry)) = iter.next_entry()? {
            each(idx, entry)?;
        }
        Ok(())
    }

    /// A list of the entries of a map (for lists small enough to hold: tests, tools).
    ///
    /// # Errors
    /// `FileWrite` of the temporary file.
    pub fn from_map(files: &BTreeMap<String, ManifestFile>) -> Result<FileList> {
        let mut out = FileListWriter::new()?;
        for (name, file) in files {
            out.push(name, file, 0)?;
        }
        out.finish()
    }

    /// The entries as a map (for lists small enough to hold: tests, tools).
    ///
    /// # Errors
    /// Read errors.
    pub fn to_map(&self) -> Result<BTreeMap<String, ManifestFile>> {
        let mut map = BTreeMap::new();
        self.for_each(|_, e| {
            map.insert(e.name, e.file);
            Ok(())
        })?;
        Ok(map)
    }

    /// A new list of the entries `change` keeps (`Ok(false)` drops one), as it changed them.
    ///
    /// # Errors
    /// Read and write errors, and `change`'s.
    pub fn rewrite(&self, mut change: impl FnMut(&mut Entry) -> Result<bool>) -> Result<FileList> {
        let mut out = self.rewriter()?;
        let mut iter = self.iter();
        while let Some((_, mut entry)) = iter.next_entry()? {
            if change(&mut entry)? {
                out.push(&entry.name, &entry.file, entry.mark)?;
            }
        }
        out.finish()
    }
}

/// Reads a [`FileList`] in order.
pub struct FileIter<'a> {
    reader: RecordReader,
    table: &'a NameTable,
    record: Vec<u8>,
    next_index: u64,
}

impl FileIter<'_> {
    /// The next entry and its index; `None` at the end.
    ///
    /// # Errors
    /// Read errors; `Format` for a corrupt record.
    pub fn next_entry(&mut self) -> Result<Option<(u64, Entry)>> {
        if !self.reader.next_into(&mut self.record)? {
            return Ok(None);
        }
        let entry = decode(&self.record, self.table)?;
        let idx = self.next_index;
        self.next_index += 1;
        Ok(Some((idx, entry)))
    }
}

/// Walks a [`FileList`] alongside another list in name order (a merge join).
pub struct Cursor<'a> {
    iter: FileIter<'a>,
    current: Option<Entry>,
}

impl<'a> Cursor<'a> {
    /// At the first entry of `files`.
    ///
    /// # Errors
    /// Read errors.
    pub fn new(files: &'a FileList) -> Result<Cursor<'a>> {
        let mut iter = files.iter();
        let current = iter.next_entry()?.map(|(_, e)| e);
        Ok(Cursor { iter, current })
    }

    /// Move to the first entry not before `name`, handing each passed one to `passed`; the entry
    /// named `name`, when there is one.
    ///
    /// # Errors
    /// Read errors, and `passed`'s.
    pub fn seek(
        &mut self,
        name: &str,
        passed: &mut dyn FnMut(Entry) -> Result<()>,
    ) -> Result<Option<&mut Entry>> {
        while self
            .current
            .as_ref()
            .is_some_and(|e| e.name.as_str() < name)
        {
            if let Some(entry) = self.current.take() {
                passed(entry)?;
            }
            self.current = self.iter.next_entry()?.map(|(_, e)| e);
        }
        Ok(self.current.as_mut().filter(|e| e.name == name))
    }

    /// Hand every remaining entry to `passed`.
    ///
    /// # Errors
    /// Read errors, and `passed`'s.
    pub fn drain(mut self, passed: &mut dyn FnMut(Entry) -> Result<()>) -> Result<()> {
        while let Some(entry) = self.current.take() {
            passed(entry)?;
            self.current = self.iter.next_entry()?.map(|(_, e)| e);
        }
        Ok(())
    }
}

fn out_of_order(name: &str, last: &[u8]) -> Error {
    Error::new(
        ErrorKind::Assert,
        format!(
            "file list entry '{name}' is not after '{}'",
            String::from_utf8_lossy(last)
        ),
    )
}

/// Writes a [`FileList`], in name order.
pub struct FileListWriter {
    spool: TempFile,
    count: u64,
    table: NameTable,
    last: Vec<u8>,
    record: Vec<u8>,
}

impl FileListWriter {
    /// An empty list to write.
    ///
    /// # Errors
    /// `FileWrite` when the temporary file cannot be created.
    pub fn new() -> Result<FileListWriter> {
        FileListWriter::with_table(NameTable::default())
    }

    fn with_table(table: NameTable) -> Result<FileListWriter> {
        Ok(FileListWriter {
            spool: TempFile::new("file list")?,
            count: 0,
            table,
            last: Vec::new(),
            record: Vec::new(),
        })
    }

    /// Append an entry; its name must come after the last one's.
    ///
    /// # Errors
    /// `Assert` for a name out of order; `FileWrite`.
    pub fn push(&mut self, name: &str, file: &ManifestFile, mark: u8) -> Result<()> {
        if self.count > 0 && name.as_bytes() <= self.last.as_slice() {
            return Err(out_of_order(name, &self.last));
        }
        self.last.clear();
        self.last.extend_from_slice(name.as_bytes());
        self.record.clear();
        encode(&mut self.record, &mut self.table, name, file, mark);
        let record = std::mem::take(&mut self.record);
        let pushed = self.push_record(&record);
        self.record = record;
        pushed
    }

    fn push_record(&mut self, record: &[u8]) -> Result<()> {
        self.count += 1;
        self.spool.push(record)
    }

    /// The list.
    ///
    /// # Errors
    /// `FileWrite`.
    pub fn finish(mut self) -> Result<FileList> {
        self.spool.flush()?;
        Ok(FileList {
            spool: self.spool,
            count: self.count,
            table: self.table,
        })
    }
}

/// Record order of a [`FileSorter`]: by name.
fn by_name(a: &[u8], b: &[u8]) -> Ordering {
    match (record_name(a), record_name(b)) {
        (Ok(a), Ok(b)) => a.cmp(b),
        (a, b) => a.is_ok().cmp(&b.is_ok()),
    }
}

type ByName = fn(&[u8], &[u8]) -> Ordering;

/// Gathers entries in any order into a [`FileList`] (see the module contract).
pub struct FileSorter {
    sorter: Sorter<ByName>,
    table: NameTable,
    record: Vec<u8>,
}

impl Default for FileSorter {
    fn default() -> Self {
        FileSorter::new()
    }
}

impl FileSorter {
    /// An empty sorter.
    #[must_use]
    pub fn new() -> FileSorter {
        FileSorter {
            sorter: Sorter::new("file list", by_name as ByName),
            table: NameTable::default(),
            record: Vec::new(),
        }
    }

    /// Entries added so far.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.sorter.len()
    }

    /// True when nothing was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.sorter.is_empty()
    }

    /// Add an entry.
    ///
    /// # Errors
    /// `FileWrite` of the temporary file.
    pub fn push(&mut self, name: &str, file: &ManifestFile, mark: u8) -> Result<()> {
        self.record.clear();
        encode(&mut self.record, &mut self.table, name, file, mark);
        self.sorter.push(&self.record)
    }

    /// The list of the entries whose name `keep` accepts, in name order (one entry per name).
    ///
    /// # Errors
    /// Read and write errors.
    pub fn finish(self, mut keep: impl FnMut(&str) -> bool) -> Result<FileList> {
        let mut sorted: Sorted<ByName> = self.sorter.finish()?;
        let mut out = FileListWriter::with_table(self.table)?;
        let mut record = Vec::new();
        while sorted.next_into(&mut record)? {
            let name = std::str::from_utf8(record_name(&record)?).map_err(|_| corrupt())?;
            if out.count > 0 && name.as_bytes() == out.last.as_slice() {
                continue;
            }
            if out.count > 0 && name.as_bytes() < out.last.as_slice() {
                return Err(out_of_order(name, &out.last));
            }
            if !keep(name) {
                continue;
            }
            out.last.clear();
            out.last.extend_from_slice(name.as_bytes());
            out.push_record(&record)?;
        }
        out.finish()
    }
}

/// What the copy did to one file (the absence of an outcome: nothing, the entry stands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The database removed it during the backup: it leaves the manifest.
    Removed,
    /// Stored by this backup.
    Copied(Copied),
}

/// The facts of a file stored by this backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Bytes copied.
    pub size: u64,
    /// Bytes stored.
    pub size_repo: u64,
    /// SHA-1 of the content.
    pub checksum: Option<[u8; 20]>,
    /// SHA-1 of the stored bytes, when they differ from the content.
    pub checksum_repo: Option<[u8; 20]>,
    /// Page checksum result, when checked.
    pub checksum_page: Option<bool>,
    /// The pages that failed, as the manifest lists them.
    pub checksum_page_error: Option<Json>,
    /// Bundle id, 0 when stored alone.
    pub bundle_id: u64,
    /// Offset in the bundle.
    pub bundle_offset: u64,
}

impl Copied {
    /// Apply to the manifest entry: the stored facts replace those taken from a prior backup.
    pub fn apply(&self, file: &mut ManifestFile) {
        file.size = self.size;
        file.size_repo = self.size_repo;
        file.checksum = self.checksum.map(Checksum::from_bytes);
        file.checksum_repo = self.checksum_repo.map(Checksum::from_bytes);
        if self.checksum_page.is_some() {
            file.checksum_page = self.checksum_page;
        }
        file.checksum_page_error = self.checksum_page_error.clone().map(Box::new);
        file.reference = None;
        file.bundle_id = self.bundle_id;
        file.bundle_offset = self.bundle_offset;
    }
}

/// Size of one record of [`Results`].
const RESULT_SIZE: usize = 96;
const STATE_REMOVED: u8 = 1;
const STATE_COPIED: u8 = 2;

/// What the copy did, by file index (see the module contract).
#[derive(Debug)]
pub struct Results {
    fixed: TempFile,
    /// Page error lists, appended; records point into it.
    errors: TempFile,
}

impl Results {
    /// No outcome yet.
    ///
    /// # Errors
    /// `FileWrite` when the temporary files cannot be created.
    pub fn new() -> Result<Results> {
        Ok(Results {
            fixed: TempFile::new("copy results")?,
            errors: TempFile::new("page errors")?,
        })
    }

    /// Record the outcome of the file at `idx` (a later call replaces an earlier one).
    ///
    /// # Errors
    /// `FileWrite`.
    pub fn put(&mut self, idx: u64, outcome: &Outcome) -> Result<()> {
        let mut record = [0u8; RESULT_SIZE];
        let mut set = |at: usize, v: u64| {
            if let Some(slot) = record.get_mut(at..at + 8) {
                slot.copy_from_slice(&v.to_le_bytes());
            }
        };
        match outcome {
            Outcome::Removed => {
                record[0] = STATE_REMOVED;
            }
            Outcome::Copied(c) => {
                set(8, c.size);
                set(16, c.size_repo);
                set(24, c.bundle_id);
                set(32, c.bundle_offset);
                if let Some(list) = &c.checksum_page_error {
                    let text = list.render();
                    let at = self.errors.len();
                    self.errors.write_at(at, text.as_bytes())?;
                    set(80, at);
                    set(88, text.len() as u64);
                }
                let mut flags = 0u8;
                if let Some(sum) = &c.checksum {
                    flags |= F_CHECKSUM;
                    record[40..60].copy_from_slice(sum);
                }
                if let Some(sum) = &c.checksum_repo {
                    flags |= F_CHECKSUM_REPO;
                    record[60..80].copy_from_slice(sum);
                }
                if let Some(ok) = c.checksum_page {
                    flags |= F_PAGE;
                    if ok {
                        flags |= F_PAGE_OK;
                    }
                }
                if c.checksum_page_error.is_some() {
                    flags |= F_PAGE_ERROR;
                }
                record[0] = STATE_COPIED;
                record[1] = flags;
            }
        }
        self.fixed.write_at(idx * RESULT_SIZE as u64, &record)
    }

    /// The outcome of every index from 0, in order.
    #[must_use]
    pub fn reader(&self) -> ResultReader<'_> {
        ResultReader {
            results: self,
            buf: Vec::new(),
            buf_start: 0,
            next: 0,
        }
    }

    fn decode(&self, record: &[u8]) -> Result<Option<Outcome>> {
        let state = record.first().copied().unwrap_or(0);
        let flags = record.get(1).copied().unwrap_or(0);
        match state {
            0 => Ok(None),
            STATE_REMOVED => Ok(Some(Outcome::Removed)),
            STATE_COPIED => {
                let sum = |at: usize| -> Option<[u8; 20]> {
                    let mut raw = [0u8; 20];
                    raw.copy_from_slice(record.get(at..at + 20)?);
                    Some(raw)
                };
                let checksum_page_error = if flags & F_PAGE_ERROR != 0 {
                    let (at, len) = (le_u64(record, 80), le_u64(record, 88));
                    if at.saturating_add(len) > self.errors.len() {
                        return Err(corrupt());
                    }
                    let len = usize::try_from(len).map_err(|_| corrupt())?;
                    let mut text = vec![0u8; len];
                    self.errors.read_at(le_u64(record, 80), &mut text)?;
                    let text = std::str::from_utf8(&text).map_err(|_| corrupt())?;
                    Some(Json::parse(text).map_err(|_| corrupt())?)
                } else {
                    None
                };
                Ok(Some(Outcome::Copied(Copied {
                    size: le_u64(record, 8),
                    size_repo: le_u64(record, 16),
                    bundle_id: le_u64(record, 24),
                    bundle_offset: le_u64(record, 32),
                    checksum: if flags & F_CHECKSUM != 0 {
                        sum(40)
                    } else {
                        None
                    },
                    checksum_repo: if flags & F_CHECKSUM_REPO != 0 {
                        sum(60)
                    } else {
                        None
                    },
                    checksum_page: (flags & F_PAGE != 0).then_some(flags & F_PAGE_OK != 0),
                    checksum_page_error,
                })))
            }
            _ => Err(corrupt()),
        }
    }
}

/// Reads [`Results`] in index order.
pub struct ResultReader<'a> {
    results: &'a Results,
    buf: Vec<u8>,
    buf_start: u64,
    next: u64,
}

impl ResultReader<'_> {
    /// Records read at once.
    const CHUNK: u64 = 682;

    /// The outcome of the next index.
    ///
    /// # Errors
    /// Read errors; `Format` for a corrupt record.
    pub fn next_outcome(&mut self) -> Result<Option<Outcome>> {
        let size = RESULT_SIZE as u64;
        let end = self.buf_start + self.buf.len() as u64 / size;
        if self.next >= end {
            self.buf_start = self.next;
            self.buf.resize((Self::CHUNK * size) as usize, 0);
            self.results
                .fixed
                .read_at(self.buf_start * size, &mut self.buf)?;
        }
        let at = ((self.next - self.buf_start) * size) as usize;
        self.next += 1;
        let record = self.buf.get(at..at + RESULT_SIZE).unwrap_or_default();
        self.results.decode(record)
    }
}

/// Call `each` with every file of the final manifest, in name order: the entries of `list` with
/// their `results` applied (removed ones skipped) merged with `added` (an added entry replaces a
/// listed one of the same name).
///
/// # Errors
/// Read errors, and `each`'s.
pub fn each_final(
    list: &FileList,
    results: Option<&Results>,
    added: &BTreeMap<String, ManifestFile>,
    each: &mut dyn FnMut(&str, &ManifestFile) -> Result<()>,
) -> Result<()> {
    let mut reader = results.map(Results::reader);
    let mut added = added.iter().peekable();
    let mut iter = list.iter();
    while let Some((_, mut entry)) = iter.next_entry()? {
        let outcome = match reader.as_mut() {
            Some(r) => r.next_outcome()?,
            None => None,
        };
        while let Some((name, file)) = added.next_if(|(name, _)| **name < entry.name) {
            each(name, file)?;
        }
        if added.peek().is_some_and(|(name, _)| **name == entry.name) {
            continue;
        }
        match outcome {
            Some(Outcome::Removed) => continue,
            Some(Outcome::Copied(c)) => c.apply(&mut entry.file),
            None => {}
        }
        each(&entry.name, &entry.file)?;
    }
    for (name, file) in added {
        each(name, file)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64, ts: i64) -> ManifestFile {
        ManifestFile::new(size, ts, 0o600, Some(Arc::from("postgres")), None)
    }

    fn rich() -> ManifestFile {
        let mut f = file(8192 * 3, -5);
        f.checksum = Some(Checksum::parse(&"ab".repeat(20)));
        f.checksum_repo = Some(Checksum::parse("not canonical"));
        f.checksum_page = Some(false);
        f.checksum_page_error = Some(Box::new(Json::parse("[1,[3,5]]").unwrap()));
        f.reference = Some(Arc::from("20260101-000000F"));
        f.bundle_id = 7;
        f.bundle_offset = 1234;
        f.block_incr = Some(Box::new(BlockIncr {
            size: 16384,
            checksum_size: 6,
            map_size: 99,
        }));
        f.extra = Some(Box::new(
            [("szo".to_string(), Json::UInt(5))].into_iter().collect(),
        ));
        f
    }

    #[test]
    fn entries_round_trip_with_every_field() {
        let mut w = FileListWriter::new().unwrap();
        w.push("pg_data/a", &file(0, 1), 0).unwrap();
        w.push("pg_data/b", &rich(), 3).unwrap();
        assert_eq!(
            w.push("pg_data/a", &file(1, 1), 0).unwrap_err().kind(),
            ErrorKind::Assert
        );
        let list = w.finish().unwrap();
        assert_eq!(list.len(), 2);
        let mut got = Vec::new();
        list.for_each(|idx, e| {
            got.push((idx, e));
            Ok(())
        })
        .unwrap();
        assert_eq!(got[0].0, 0);
        assert_eq!(got[0].1.file, file(0, 1));
        assert_eq!(got[1].1.name, "pg_data/b");
        assert_eq!(got[1].1.file, rich());
        assert_eq!(got[1].1.mark, 3);
        // a rewrite changes and drops entries, keeping the order
        let changed = list
            .rewrite(|e| {
                e.mark = 9;
                Ok(e.name != "pg_data/a")
            })
            .unwrap();
        assert_eq!(changed.len(), 1);
        changed
            .for_each(|idx, e| {
                assert_eq!((idx, e.mark, e.file), (0, 9, rich()));
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn the_sorter_orders_by_bytes_filters_and_keeps_one_entry_per_name() {
        let mut s = FileSorter::new();
        // byte order: '.' < '/' < '_', so a directory's files sort after a same-prefix file
        for name in [
            "pg_data/base/1/2_init",
            "pg_data/base/1/2",
            "pg_data/base.x",
            "pg_data/base/1/2.1",
            "pg_tblspc/1/x",
        ] {
            s.push(name, &file(1, 1), 0).unwrap();
        }
        let list = s.finish(|name| name != "pg_data/base/1/2.1").unwrap();
        let mut names = Vec::new();
        list.for_each(|_, e| {
            names.push(e.name);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            names,
            [
                "pg_data/base.x",
                "pg_data/base/1/2",
                "pg_data/base/1/2_init",
                "pg_tblspc/1/x"
            ]
        );
        let mut twice = FileSorter::new();
        twice.push("a", &file(1, 1), 0).unwrap();
        twice.push("a", &file(1, 1), 0).unwrap();
        twice.push("b", &file(2, 1), 0).unwrap();
        let once = twice.finish(|_| true).unwrap();
        assert_eq!(once.len(), 2, "one entry per name");
    }

    #[test]
    fn many_entries_spill_and_come_back_sorted() {
        let mut s = FileSorter::new();
        let n = 120_000u64;
        for i in 0..n {
            let id = (i * 7_919) % n;
            s.push(&format!("pg_data/base/5/{id}"), &file(id, 1), 0)
                .unwrap();
        }
        let list = s.finish(|_| true).unwrap();
        assert_eq!(list.len(), n);
        let mut last = String::new();
        list.for_each(|_, e| {
            assert!(e.name > last);
            assert_eq!(
                e.name.strip_prefix("pg_data/base/5/").unwrap(),
                e.file.size.to_string()
            );
            last = e.name;
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn results_apply_in_index_order_and_merge_with_added_entries() {
        let mut w = FileListWriter::new().unwrap();
        let mut referenced = file(10, 1);
        referenced.reference = Some(Arc::from("20260101-000000F"));
        referenced.checksum = Some(Checksum::parse(&"cd".repeat(20)));
        for name in ["pg_data/a", "pg_data/c", "pg_data/d", "pg_data/e"] {
            w.push(name, &referenced, 0).unwrap();
        }
        let list = w.finish().unwrap();
        let mut results = Results::new().unwrap();
        let copied = Copied {
            size: 11,
            size_repo: 7,
            checksum: Some([1; 20]),
            checksum_repo: Some([2; 20]),
            checksum_page: Some(false),
            checksum_page_error: Some(Json::parse("[0]").unwrap()),
            bundle_id: 3,
            bundle_offset: 40,
        };
        // out of order, and index 3 far beyond what is written before it
        results.put(3, &Outcome::Removed).unwrap();
        results.put(1, &Outcome::Copied(copied.clone())).unwrap();
        let added: BTreeMap<String, ManifestFile> = [
            ("pg_data/b".to_string(), file(1, 2)),
            ("pg_data/d".to_string(), file(2, 2)),
            ("pg_data/z".to_string(), file(3, 2)),
        ]
        .into();
        let mut got = Vec::new();
        each_final(&list, Some(&results), &added, &mut |name, f| {
            got.push((name.to_string(), f.clone()));
            Ok(())
        })
        .unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "pg_data/a",
                "pg_data/b",
                "pg_data/c",
                "pg_data/d",
                "pg_data/z"
            ]
        );
        assert_eq!(got[0].1, referenced, "no outcome: unchanged");
        let c = &got[2].1;
        assert_eq!(
            (c.size, c.size_repo, c.bundle_id, c.bundle_offset),
            (11, 7, 3, 40)
        );
        assert_eq!(c.reference, None);
        assert_eq!(c.checksum, Some(Checksum::from_bytes([1; 20])));
        assert_eq!(c.checksum_page, Some(false));
        assert_eq!(c.checksum_page_error.as_deref().unwrap().render(), "[0]");
        assert_eq!(got[3].1, file(2, 2), "added replaces listed");
        // a reader past many unwritten records
        let mut far = Results::new().unwrap();
        far.put(5000, &Outcome::Removed).unwrap();
        let mut r = far.reader();
        for _ in 0..5000 {
            assert_eq!(r.next_outcome().unwrap(), None);
        }
        assert_eq!(r.next_outcome().unwrap(), Some(Outcome::Removed));
        assert_eq!(r.next_outcome().unwrap(), None);
    }
}
