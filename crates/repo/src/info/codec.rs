//! The INI container shared by `archive.info`, `backup.info` and `backup.manifest` (pgBackRest `src/common/ini.c`,
//! `src/info/info.c`), byte-compatible with pgBackRest 2.45.
//!
//! Contract:
//! - [`Ini::parse`] is pgBackRest's strict reader: no trimming, no comments, blank lines ignored, a line that starts
//!   with `[` and ends with `]` opens a section (sections may recur; their keys merge), otherwise the key is the text
//!   before the first `=` whose remainder is valid JSON (so keys may contain `=`). `backrest-format` must be 5 when
//!   present (pgBackRest does not require the key) and
//!   `backrest-checksum` must match the SHA-1 computed over the raw text exactly as pgBackRest does (see
//!   [`Checksum`]); values are kept as their exact raw JSON text. A key repeated within a section keeps the last value
//!   (pgBackRest's scalar behaviour); the checksum still covers every line as written.
//! - [`Ini::render`] writes sections in ascending byte order with a blank line between them, keys in the order held
//!   by each [`Section`] (the typed models keep them sorted; `[db:history]` is numeric), the `[backrest]` header with
//!   `backrest-format=5` and the version of [`Ini::version`], then a second `[backrest]` section holding only the
//!   checksum. Sections without keys are not written.
//! - Errors: `Format` (29) for syntax, a bad value or a wrong format number, `Checksum` (26) for a missing or wrong
//!   checksum; every message names the file when a name was given.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};

use pgkeep_base::{Error, ErrorKind, Result};
use sha1::{Digest, Sha1};

use super::json::{self, Json};

/// The repository format every pgBackRest version since 2.0 reads and writes.
pub const REPOSITORY_FORMAT: u64 = 5;

/// The `backrest-version` we write. pgkeep writes "2.45" so that pgBackRest 2.45 (and later) treat our files exactly
/// like their own.
pub const BACKREST_VERSION: &str = "2.45";

/// Section holding format, version and checksum.
pub const SECTION_BACKREST: &str = "backrest";
/// Key of the repository format.
pub const KEY_FORMAT: &str = "backrest-format";
/// Key of the writer's version.
pub const KEY_VERSION: &str = "backrest-version";
/// Key of the checksum.
pub const KEY_CHECKSUM: &str = "backrest-checksum";
/// Section holding a sub-passphrase.
pub const SECTION_CIPHER: &str = "cipher";
/// Key of the sub-passphrase.
pub const KEY_CIPHER_PASS: &str = "cipher-pass";

/// One section: keys with their raw JSON value text, in the order they are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    entries: Vec<(String, String)>,
}

impl Section {
    /// Raw JSON text of `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Append a key (the caller keeps keys unique and in order; see [`Section::sort`]).
    pub fn push(&mut self, key: impl Into<String>, raw: impl Into<String>) {
        self.entries.push((key.into(), raw.into()));
    }

    /// Append a key with `value` rendered as JSON.
    pub fn push_json(&mut self, key: impl Into<String>, value: &Json) {
        self.entries.push((key.into(), value.render()));
    }

    /// Replace the value of `key`, or append it.
    pub fn set(&mut self, key: &str, raw: impl Into<String>) {
        let raw = raw.into();
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = raw,
            None => self.entries.push((key.to_string(), raw)),
        }
    }

    /// Remove `key`, returning its raw value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let idx = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(idx).1)
    }

    /// Sort keys in ascending byte order (pgBackRest's `strcmp` order).
    pub fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
    }

    /// Keys and raw values in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Take all entries out, in order.
    #[must_use]
    pub fn into_entries(self) -> Vec<(String, String)> {
        self.entries
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the section has no keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A parsed or to-be-written info file: every section except the `[backrest]` bookkeeping, plus the writer version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ini {
    /// `backrest-version` read from the file, or the one to write.
    pub version: String,
    /// Sections by name; `backrest` holds only keys other than format, version and checksum.
    pub sections: BTreeMap<String, Section>,
}

impl Default for Ini {
    fn default() -> Self {
        Ini::new()
    }
}

/// pgBackRest's incremental checksum over (section, key, raw value) triples (`INFO_CHECKSUM_*` in `info.c`):
/// `{` + for each section run `"<section raw>":{` + `json_string(key):<raw value>` joined by `,` + runs joined by `},`
/// + `}}`. The section name is inserted without escaping, the value verbatim.
pub struct Checksum {
    hash: Sha1,
    section_last: Option<String>,
}

impl Default for Checksum {
    fn default() -> Self {
        Checksum::new()
    }
}

impl Checksum {
    /// Start a checksum.
    #[must_use]
    pub fn new() -> Self {
        let mut hash = Sha1::new();
        hash.update(b"{");
        Checksum {
            hash,
            section_last: None,
        }
    }

    /// Add one value.
    pub fn add(&mut self, section: &str, key: &str, raw: &str) {
        if self.section_last.as_deref() == Some(section) {
            self.hash.update(b",");
        } else {
            if self.section_last.is_some() {
                self.hash.update(b"},");
            }
            self.hash.update(b"\"");
            self.hash.update(section.as_bytes());
            self.hash.update(b"\":{");
            self.section_last = Some(section.to_string());
        }
        self.hash.update(json::string(key).as_bytes());
        self.hash.update(b":");
        self.hash.update(raw.as_bytes());
    }

    /// Lower-case hex SHA-1.
    #[must_use]
    pub fn finish(mut self) -> String {
        self.hash.update(b"}}");
        hex(&self.hash.finalize())
    }
}

/// Lower-case hex of `bytes`.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// `" of '<name>'"` for line errors, empty without a name.
fn of_file(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" of '{name}'")
    }
}

/// `" in '<name>'"` for whole-file errors, empty without a name.
fn in_file(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" in '{name}'")
    }
}

/// A non-empty line of an info file.
enum Line<'l> {
    /// `[name]`.
    Section(&'l str),
    /// `key=value`: key, raw value text, parsed value.
    Entry(&'l str, &'l str, Json),
}

/// Classify a non-empty line; `section` is the current section (empty before the first).
fn split<'l>(line: &'l str, line_no: usize, name: &str, section: &str) -> Result<Line<'l>> {
    if line.starts_with('[') && line.ends_with(']') {
        let section = line.get(1..line.len().saturating_sub(1)).unwrap_or("");
        if section.is_empty() {
            return Err(Error::new(
                ErrorKind::Format,
                format!(
                    "invalid empty section at line {line_no}{}: {line}",
                    of_file(name)
                ),
            ));
        }
        return Ok(Line::Section(section));
    }
    if section.is_empty() {
        return Err(Error::new(
            ErrorKind::Format,
            format!(
                "key/value found outside of section at line {line_no}{}: {line}",
                of_file(name)
            ),
        ));
    }
    let (key, raw, value) = split_line(line, line_no, name)?;
    if key.is_empty() {
        return Err(Error::new(
            ErrorKind::Format,
            format!(
                "key is zero-length at line {line_no}{}: {line}",
                of_file(name)
            ),
        ));
    }
    Ok(Line::Entry(key, raw, value))
}

/// The `[backrest]` bookkeeping of a file being parsed: checksum, format, version.
struct Verifier {
    checksum: Checksum,
    expected: Option<String>,
    version: String,
}

impl Verifier {
    fn new() -> Self {
        Verifier {
            checksum: Checksum::new(),
            expected: None,
            version: String::new(),
        }
    }

    /// Account for one entry: `None` when it was bookkeeping, else its value back.
    fn entry(
        &mut self,
        section: &str,
        key: &str,
        raw: &str,
        value: Json,
        name: &str,
    ) -> Result<Option<Json>> {
        if section == SECTION_BACKREST && key == KEY_CHECKSUM {
            match value {
                Json::Str(s) => self.expected = Some(s),
                other => {
                    return Err(Error::new(
                        ErrorKind::Format,
                        format!(
                            "checksum must be a string but found {}{}",
                            other.type_name(),
                            in_file(name)
                        ),
                    ));
                }
            }
            return Ok(None);
        }
        self.checksum.add(section, key, raw);
        if section == SECTION_BACKREST && key == KEY_FORMAT {
            if value.as_u64() != Some(REPOSITORY_FORMAT) {
                return Err(Error::new(
                    ErrorKind::Format,
                    format!(
                        "expected format {REPOSITORY_FORMAT} but found {raw}{}",
                        in_file(name)
                    ),
                ));
            }
            return Ok(None);
        }
        if section == SECTION_BACKREST && key == KEY_VERSION {
            match value {
                Json::Str(s) => self.version = s,
                other => {
                    return Err(Error::new(
                        ErrorKind::Format,
                        format!(
                            "version must be a string but found {}{}",
                            other.type_name(),
                            in_file(name)
                        ),
                    ));
                }
            }
            return Ok(None);
        }
        Ok(Some(value))
    }

    /// Check the checksum; the version read.
    fn finish(self, name: &str) -> Result<String> {
        let actual = self.checksum.finish();
        match self.expected {
            None => Err(Error::new(
                ErrorKind::Checksum,
                format!(
                    "invalid checksum{}, actual '{actual}' but no checksum found",
                    in_file(name)
                ),
            )),
            Some(expected) if expected != actual => Err(Error::new(
                ErrorKind::Checksum,
                format!(
                    "invalid checksum{}, actual '{actual}' but expected '{expected}'",
                    in_file(name)
                ),
            )),
            Some(_) => Ok(self.version),
        }
    }
}

impl Ini {
    /// An empty document that will be written with [`BACKREST_VERSION`].
    #[must_use]
    pub fn new() -> Self {
        Ini {
            version: BACKREST_VERSION.to_string(),
            sections: BTreeMap::new(),
        }
    }

    /// Parse and verify `data`; `name` (the file's path, may be empty) appears in error messages.
    ///
    /// # Errors
    /// `Format` for invalid UTF-8, syntax errors, invalid JSON values or a format other than 5; `Checksum` when the
    /// checksum is missing or does not match.
    pub fn parse(data: &[u8], name: &str) -> Result<Ini> {
        let text = std::str::from_utf8(data).map_err(|e| {
            Error::new(
                ErrorKind::Format,
                format!("invalid UTF-8 at byte {}{}", e.valid_up_to(), in_file(name)),
            )
        })?;

        let mut ini = Ini {
            version: String::new(),
            sections: BTreeMap::new(),
        };
        // where each (section, key) went, borrowed from `text`: no copy of the names while parsing
        let mut positions: HashMap<(&str, &str), usize> = HashMap::new();
        let mut verifier = Verifier::new();
        let mut section: &str = "";

        for (idx, line) in text.split('\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let (key, raw, value) = match split(line, idx + 1, name, section)? {
                Line::Section(name) => {
                    section = name;
                    continue;
                }
                Line::Entry(key, raw, value) => (key, raw, value),
            };
            if verifier.entry(section, key, raw, value, name)?.is_none() {
                continue;
            }
            let target = match ini.sections.get_mut(section) {
                Some(target) => target,
                None => ini.sections.entry(section.to_string()).or_default(),
            };
            match positions.get(&(section, key)) {
                Some(&pos) => {
                    if let Some(entry) = target.entries.get_mut(pos) {
                        entry.1 = raw.to_string();
                    }
                }
                None => {
                    positions.insert((section, key), target.entries.len());
                    target.push(key, raw);
                }
            }
        }
        ini.version = verifier.finish(name)?;
        Ok(ini)
    }

    /// [`Ini::parse`] reading `reader` one line at a time: the entries of `streamed` are handed to `visit`
    /// (value parsed, in stored order) instead of being kept, so neither the file nor that section is ever held.
    /// `visit` sees entries before the checksum, at the end, is verified: a caller must discard what it did when an
    /// error is returned. Also returns the file's checksum, so that a second read can tell it read the same file.
    ///
    /// # Errors
    /// As [`Ini::parse`]; read errors of `reader` (an error that crossed it, e.g. a decryption failure, comes back
    /// unchanged); any error of `visit`.
    pub fn parse_reader(
        reader: &mut dyn BufRead,
        name: &str,
        streamed: &str,
        visit: &mut dyn FnMut(&str, Json) -> Result<()>,
    ) -> Result<(Ini, String)> {
        let mut ini = Ini {
            version: String::new(),
            sections: BTreeMap::new(),
        };
        let mut positions: HashMap<(String, String), usize> = HashMap::new();
        let mut verifier = Verifier::new();
        let mut section = String::new();
        let mut buf = Vec::new();
        let mut offset = 0usize;
        let mut line_no = 0usize;
        loop {
            buf.clear();
            let read = reader.read_until(b'\n', &mut buf).map_err(|e| {
                Error::from_io_error(
                    &e,
                    ErrorKind::FileRead,
                    format!("unable to read{}", of_file(name)),
                )
            })?;
            if read == 0 {
                break;
            }
            line_no += 1;
            let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let line = std::str::from_utf8(bytes).map_err(|e| {
                Error::new(
                    ErrorKind::Format,
                    format!(
                        "invalid UTF-8 at byte {}{}",
                        offset + e.valid_up_to(),
                        in_file(name)
                    ),
                )
            })?;
            offset += read;
            if line.is_empty() {
                continue;
            }
            let (key, raw, value) = match split(line, line_no, name, &section)? {
                Line::Section(name) => {
                    section.clear();
                    section.push_str(name);
                    continue;
                }
                Line::Entry(key, raw, value) => (key, raw, value),
            };
            let Some(value) = verifier.entry(&section, key, raw, value, name)? else {
                continue;
            };
            if section == streamed {
                visit(key, value)?;
                continue;
            }
            let target = ini.sections.entry(section.clone()).or_default();
            match positions.get(&(section.clone(), key.to_string())) {
                Some(&pos) => {
                    if let Some(entry) = target.entries.get_mut(pos) {
                        entry.1 = raw.to_string();
                    }
                }
                None => {
                    positions.insert((section.clone(), key.to_string()), target.entries.len());
                    target.push(key, raw);
                }
            }
        }
        let checksum = verifier.expected.clone().unwrap_or_default();
        ini.version = verifier.finish(name)?;
        Ok((ini, checksum))
    }

    /// Render the file, computing its checksum.
    ///
    /// # Errors
    /// `Format` when a section or key cannot be represented (empty, contains a line feed, a section name containing
    /// `]` at its end, or a value that is empty or starts with `[`, which a reader would take for a section).
    pub fn render(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.render_to(&mut out, &[])?;
        Ok(out)
    }

    /// Render the file into `out` in bounded memory, computing its checksum on the way (it is written last). The
    /// sections of `produced` are not held: each producer emits its entries, in the order written, when its section's
    /// turn comes in the byte order of section names (a producer that emits nothing writes no section). Output is
    /// passed to `out` in chunks of about 64 KiB; the bytes are those of [`Ini::render`] for the same content.
    ///
    /// # Errors
    /// Those of [`Ini::render`], a producer's errors, and `FileWrite` (or the writer's own error) when `out` fails.
    pub fn render_to(&self, out: &mut dyn Write, produced: &[(&str, Produce<'_>)]) -> Result<()> {
        let mut header = self
            .sections
            .get(SECTION_BACKREST)
            .cloned()
            .unwrap_or_default();
        header.remove(KEY_FORMAT);
        header.remove(KEY_VERSION);
        header.remove(KEY_CHECKSUM);
        header.push(KEY_FORMAT, REPOSITORY_FORMAT.to_string());
        header.push(KEY_VERSION, json::string(&self.version));
        header.sort();

        enum Source<'s, 'p> {
            Held(&'s Section),
            Produced(Produce<'p>),
        }
        let mut all: Vec<(&str, Source<'_, '_>)> = self
            .sections
            .iter()
            .filter(|(name, _)| name.as_str() != SECTION_BACKREST)
            .map(|(name, section)| (name.as_str(), Source::Held(section)))
            .collect();
        all.push((SECTION_BACKREST, Source::Held(&header)));
        all.extend(
            produced
                .iter()
                .map(|(name, produce)| (*name, Source::Produced(*produce))),
        );
        all.sort_by(|a, b| a.0.cmp(b.0));

        let mut sink = Sink {
            out,
            buf: String::with_capacity(SINK_CHUNK + 4096),
            checksum: Checksum::new(),
            first: true,
        };
        for (name, source) in all {
            match source {
                Source::Held(section) => {
                    let mut open = false;
                    for (key, raw) in section.iter() {
                        sink.entry(name, &mut open, key, raw)?;
                    }
                }
                Source::Produced(produce) => {
                    let mut open = false;
                    produce(&mut |key, raw| sink.entry(name, &mut open, key, raw))?;
                }
            }
        }
        let Sink {
            out,
            mut buf,
            checksum,
            ..
        } = sink;
        buf.push('\n');
        buf.push('[');
        buf.push_str(SECTION_BACKREST);
        buf.push_str("]\n");
        buf.push_str(KEY_CHECKSUM);
        buf.push('=');
        buf.push_str(&json::string(&checksum.finish()));
        buf.push('\n');
        write_out(out, &buf)
    }

    /// The section `name`, if present.
    #[must_use]
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.get(name)
    }

    /// The section `name`, created empty when absent.
    pub fn section_mut(&mut self, name: &str) -> &mut Section {
        self.sections.entry(name.to_string()).or_default()
    }

    /// Remove and return a whole section.
    pub fn take_section(&mut self, name: &str) -> Option<Section> {
        self.sections.remove(name)
    }

    /// Remove `key` from `section` and return its raw value (the section disappears when emptied).
    pub fn take(&mut self, section: &str, key: &str) -> Option<String> {
        let sec = self.sections.get_mut(section)?;
        let value = sec.remove(key);
        if sec.is_empty() {
            self.sections.remove(section);
        }
        value
    }

    /// Raw JSON text of `section`/`key`.
    #[must_use]
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections.get(section)?.get(key)
    }

    /// Set `section`/`key` to a raw JSON text.
    pub fn set(&mut self, section: &str, key: &str, raw: impl Into<String>) {
        self.section_mut(section).set(key, raw);
    }

    /// The `[cipher] cipher-pass` value, if any.
    ///
    /// # Errors
    /// `Format` when it is not a JSON string.
    pub fn cipher_pass(&self) -> Result<Option<String>> {
        match self.get(SECTION_CIPHER, KEY_CIPHER_PASS) {
            None => Ok(None),
            Some(raw) => value_str(SECTION_CIPHER, KEY_CIPHER_PASS, raw).map(Some),
        }
    }
}

/// A section whose entries are produced while the file is rendered ([`Ini::render_to`]): it calls `emit(key, raw)`
/// once per entry, in the order they are to be written, and passes on `emit`'s errors.
pub type Produce<'a> = &'a dyn Fn(&mut dyn FnMut(&str, &str) -> Result<()>) -> Result<()>;

/// Bytes gathered before they are passed to the writer.
const SINK_CHUNK: usize = 64 * 1024;

/// The output side of [`Ini::render_to`]: lines, checksum, and the blank line between sections.
struct Sink<'w> {
    out: &'w mut dyn Write,
    buf: String,
    checksum: Checksum,
    first: bool,
}

impl Sink<'_> {
    /// Write one entry of `section`, opening the section first when `open` is still false.
    fn entry(&mut self, section: &str, open: &mut bool, key: &str, raw: &str) -> Result<()> {
        if !*open {
            if section.is_empty() || section.contains('\n') {
                return Err(Error::new(
                    ErrorKind::Format,
                    format!(
                        "unable to write section '{section}': name is empty or contains a line feed"
                    ),
                ));
            }
            if !self.first {
                self.buf.push('\n');
            }
            self.first = false;
            self.buf.push('[');
            self.buf.push_str(section);
            self.buf.push_str("]\n");
            *open = true;
        }
        check_entry(section, key, raw)?;
        self.checksum.add(section, key, raw);
        self.buf.push_str(key);
        self.buf.push('=');
        self.buf.push_str(raw);
        self.buf.push('\n');
        if self.buf.len() >= SINK_CHUNK {
            write_out(self.out, &self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<()> {
    out.write_all(text.as_bytes())
        .map_err(|e| Error::from_io_error(&e, ErrorKind::FileWrite, "unable to write info file"))
}

/// Validate one entry before writing it: the line must read back as the same key and value.
fn check_entry(section: &str, key: &str, raw: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::new(
            ErrorKind::Format,
            format!("unable to write key '{key}' in section '{section}': {why}"),
        ))
    };
    if key.is_empty() {
        return bad("key is empty");
    }
    if key.contains('\n') || raw.contains('\n') {
        return bad("line feed in key or value");
    }
    if raw.is_empty() || raw.starts_with('[') {
        return bad("value must be JSON and not an array");
    }
    if key.starts_with('[') && raw.ends_with(']') {
        return bad("line would read as a section");
    }
    Ok(())
}

/// Split a key/value line at the first `=` whose remainder is valid JSON (pgBackRest's retry).
fn split_line<'a>(line: &'a str, line_no: usize, name: &str) -> Result<(&'a str, &'a str, Json)> {
    let mut search = 0;
    let mut last_err = None;
    while let Some(found) = line.get(search..).and_then(|rest| rest.find('=')) {
        let eq = search + found;
        let key = line.get(..eq).unwrap_or("");
        let raw = line.get(eq + 1..).unwrap_or("");
        match Json::parse(raw) {
            Ok(value) => return Ok((key, raw, value)),
            Err(e) => last_err = Some(e),
        }
        search = eq + 1;
    }
    Err(Error::new(
        ErrorKind::Format,
        match last_err {
            None => format!(
                "missing '=' in key/value at line {line_no}{}: {line}",
                of_file(name)
            ),
            Some(e) => format!(
                "invalid JSON value at line {line_no}{} '{line}': {e}",
                of_file(name)
            ),
        },
    ))
}

/// Parse a raw value as JSON, naming section and key on failure.
///
/// # Errors
/// `Format` when the text is not JSON.
pub fn value_json(section: &str, key: &str, raw: &str) -> Result<Json> {
    Json::parse(raw).map_err(|e| {
        Error::new(
            ErrorKind::Format,
            format!("invalid JSON in section '{section}', key '{key}': {e}"),
        )
    })
}

fn wrong_type(section: &str, key: &str, expected: &str, found: &Json) -> Error {
    Error::new(
        ErrorKind::Format,
        format!(
            "section '{section}', key '{key}' must be {expected} but found {}",
            found.type_name()
        ),
    )
}

/// A raw value that must be a JSON string.
///
/// # Errors
/// `Format` otherwise.
pub fn value_str(section: &str, key: &str, raw: &str) -> Result<String> {
    match value_json(section, key, raw)? {
        Json::Str(s) => Ok(s),
        other => Err(wrong_type(section, key, "a string", &other)),
    }
}

/// A raw value that must be a JSON string or `null` (`None`).
///
/// # Errors
/// `Format` otherwise.
pub fn value_str_or_null(section: &str, key: &str, raw: &str) -> Result<Option<String>> {
    match value_json(section, key, raw)? {
        Json::Str(s) => Ok(Some(s)),
        Json::Null => Ok(None),
        other => Err(wrong_type(section, key, "a string", &other)),
    }
}

/// A raw value that must be a non-negative JSON integer.
///
/// # Errors
/// `Format` otherwise.
pub fn value_u64(section: &str, key: &str, raw: &str) -> Result<u64> {
    let value = value_json(section, key, raw)?;
    value
        .as_u64()
        .ok_or_else(|| wrong_type(section, key, "an unsigned integer", &value))
}

/// A raw value that must be a JSON integer within `u32`.
///
/// # Errors
/// `Format` otherwise.
pub fn value_u32(section: &str, key: &str, raw: &str) -> Result<u32> {
    let value = value_u64(section, key, raw)?;
    u32::try_from(value).map_err(|_| {
        Error::new(
            ErrorKind::Format,
            format!("section '{section}', key '{key}': {value} is out of range for uint"),
        )
    })
}

/// A raw value that must be a JSON integer within `i64`.
///
/// # Errors
/// `Format` otherwise.
pub fn value_i64(section: &str, key: &str, raw: &str) -> Result<i64> {
    let value = value_json(section, key, raw)?;
    value
        .as_i64()
        .ok_or_else(|| wrong_type(section, key, "an integer", &value))
}

/// A raw value that must be a JSON boolean.
///
/// # Errors
/// `Format` otherwise.
pub fn value_bool(section: &str, key: &str, raw: &str) -> Result<bool> {
    let value = value_json(section, key, raw)?;
    value
        .as_bool()
        .ok_or_else(|| wrong_type(section, key, "a boolean", &value))
}

/// A raw value that must be a JSON object.
///
/// # Errors
/// `Format` otherwise.
pub fn value_object(section: &str, key: &str, raw: &str) -> Result<BTreeMap<String, Json>> {
    match value_json(section, key, raw)? {
        Json::Object(map) => Ok(map),
        other => Err(wrong_type(section, key, "an object", &other)),
    }
}

/// A raw value that must be a JSON object of strings (annotations).
///
/// # Errors
/// `Format` otherwise.
pub fn value_str_map(section: &str, key: &str, raw: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, v) in value_object(section, key, raw)? {
        match v {
            Json::Str(s) => {
                out.insert(k, s);
            }
            other => return Err(wrong_type(section, key, "an object of strings", &other)),
        }
    }
    Ok(out)
}

/// Typed access to the fields of one JSON object value (an entry of `[backup:current]`, `[target:file]`, ...):
/// known fields are taken out; what remains are unknown keys that the models keep and write back.
pub struct Fields<'a> {
    section: &'a str,
    key: &'a str,
    map: BTreeMap<String, Json>,
}

impl<'a> Fields<'a> {
    /// Parse the raw value of `section`/`key` as an object.
    ///
    /// # Errors
    /// `Format` when it is not a JSON object.
    pub fn parse(section: &'a str, key: &'a str, raw: &str) -> Result<Self> {
        Ok(Fields {
            section,
            key,
            map: value_object(section, key, raw)?,
        })
    }

    /// [`Fields::parse`] for a value already parsed.
    ///
    /// # Errors
    /// `Format` when it is not a JSON object.
    pub fn from_json(section: &'a str, key: &'a str, value: Json) -> Result<Self> {
        match value {
            Json::Object(map) => Ok(Fields { section, key, map }),
            other => Err(wrong_type(section, key, "an object", &other)),
        }
    }

    fn err(&self, field: &str, expected: &str, found: &Json) -> Error {
        Error::new(
            ErrorKind::Format,
            format!(
                "section '{}', key '{}': field '{field}' must be {expected} but found {}",
                self.section,
                self.key,
                found.type_name()
            ),
        )
    }

    /// An error for a required field that is absent (pgBackRest: `required key '...' not found`).
    #[must_use]
    pub fn missing(&self, field: &str) -> Error {
        Error::new(
            ErrorKind::Format,
            format!(
                "section '{}', key '{}': required key '{field}' not found",
                self.section, self.key
            ),
        )
    }

    /// Take a field as raw JSON.
    pub fn take(&mut self, field: &str) -> Option<Json> {
        self.map.remove(field)
    }

    /// Take an optional string field (`null` counts as absent).
    ///
    /// # Errors
    /// `Format` when present with another type.
    pub fn opt_str(&mut self, field: &str) -> Result<Option<String>> {
        match self.map.remove(field) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Str(s)) => Ok(Some(s)),
            Some(other) => Err(self.err(field, "a string", &other)),
        }
    }

    /// Take a required string field.
    ///
    /// # Errors
    /// `Format` when absent or of another type.
    pub fn req_str(&mut self, field: &str) -> Result<String> {
        self.opt_str(field)?.ok_or_else(|| self.missing(field))
    }

    /// Take an optional unsigned integer field.
    ///
    /// # Errors
    /// `Format` when present with another type.
    pub fn opt_u64(&mut self, field: &str) -> Result<Option<u64>> {
        match self.map.remove(field) {
            None => Ok(None),
            Some(Json::UInt(v)) => Ok(Some(v)),
            Some(other) => Err(self.err(field, "an unsigned integer", &other)),
        }
    }

    /// Take a required unsigned integer field.
    ///
    /// # Errors
    /// `Format` when absent or of another type.
    pub fn req_u64(&mut self, field: &str) -> Result<u64> {
        self.opt_u64(field)?.ok_or_else(|| self.missing(field))
    }

    /// Take a required unsigned integer field within `u32`.
    ///
    /// # Errors
    /// `Format` when absent, of another type or out of range.
    pub fn req_u32(&mut self, field: &str) -> Result<u32> {
        let value = self.req_u64(field)?;
        u32::try_from(value).map_err(|_| {
            Error::new(
                ErrorKind::Format,
                format!(
                    "section '{}', key '{}': field '{field}' value {value} is out of range for uint",
                    self.section, self.key
                ),
            )
        })
    }

    /// Take an optional signed integer field.
    ///
    /// # Errors
    /// `Format` when present with another type or out of range.
    pub fn opt_i64(&mut self, field: &str) -> Result<Option<i64>> {
        match self.map.remove(field) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(i) => Ok(Some(i)),
                None => Err(self.err(field, "an integer", &v)),
            },
        }
    }

    /// Take a required signed integer field.
    ///
    /// # Errors
    /// `Format` when absent, of another type or out of range.
    pub fn req_i64(&mut self, field: &str) -> Result<i64> {
        self.opt_i64(field)?.ok_or_else(|| self.missing(field))
    }

    /// Take an optional boolean field.
    ///
    /// # Errors
    /// `Format` when present with another type.
    pub fn opt_bool(&mut self, field: &str) -> Result<Option<bool>> {
        match self.map.remove(field) {
            None => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(self.err(field, "a boolean", &other)),
        }
    }

    /// Take a required boolean field.
    ///
    /// # Errors
    /// `Format` when absent or of another type.
    pub fn req_bool(&mut self, field: &str) -> Result<bool> {
        self.opt_bool(field)?.ok_or_else(|| self.missing(field))
    }

    /// Take an optional owner field: a name, or `false` for an id that had no name (`Some(None)`).
    ///
    /// # Errors
    /// `Format` for `true` or another type.
    pub fn opt_owner(&mut self, field: &str) -> Result<Option<Option<String>>> {
        match self.map.remove(field) {
            None => Ok(None),
            Some(Json::Str(s)) => Ok(Some(Some(s))),
            Some(Json::Bool(false)) => Ok(Some(None)),
            Some(other) => Err(self.err(field, "a name or false", &other)),
        }
    }

    /// Take an optional object of string values (annotations).
    ///
    /// # Errors
    /// `Format` when present with another shape.
    pub fn opt_str_map(&mut self, field: &str) -> Result<Option<BTreeMap<String, String>>> {
        match self.map.remove(field) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Object(map)) => {
                let mut out = BTreeMap::new();
                for (k, v) in map {
                    match v {
                        Json::Str(s) => {
                            out.insert(k, s);
                        }
                        other => return Err(self.err(field, "an object of strings", &other)),
                    }
                }
                Ok(Some(out))
            }
            Some(other) => Err(self.err(field, "an object", &other)),
        }
    }

    /// The fields not taken. An empty rest is a fresh map: a `BTreeMap` emptied by removals keeps
    /// its node allocated (about 600 bytes), which every entry of a large manifest would carry.
    #[must_use]
    pub fn rest(self) -> BTreeMap<String, Json> {
        if self.map.is_empty() {
            BTreeMap::new()
        } else {
            self.map
        }
    }
}

/// A string-to-string map as a JSON object value.
#[must_use]
pub fn str_map_json(map: &BTreeMap<String, String>) -> Json {
    Json::Object(
        map.iter()
            .map(|(k, v)| (k.clone(), Json::Str(v.clone())))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_checksum(body: &str) -> String {
        // compute the checksum our way, then append
        let mut checksum = Checksum::new();
        let mut sec = String::new();
        for line in body.lines() {
            if line.is_empty() {
                continue;
            }
            if line.starts_with('[') && line.ends_with(']') {
                sec = line[1..line.len() - 1].to_string();
                continue;
            }
            let (k, raw, _) = split_line(line, 0, "").unwrap();
            checksum.add(&sec, k, raw);
        }
        let sum = checksum.finish();
        format!("{body}\n[backrest]\nbackrest-checksum=\"{sum}\"\n")
    }

    const SAMPLES: [&[u8]; 10] = [
        include_bytes!("../../tests/fixtures/samples/archive.info.repo1"),
        include_bytes!("../../tests/fixtures/samples/archive.info.repo2-decrypted"),
        include_bytes!("../../tests/fixtures/samples/backup.info.repo1"),
        include_bytes!("../../tests/fixtures/samples/backup.info.repo2-decrypted"),
        include_bytes!("../../tests/fixtures/samples/backup.info.repo3-bundle"),
        include_bytes!("../../tests/fixtures/gen/repo1-archive.info"),
        include_bytes!("../../tests/fixtures/gen/repo1-backup.info"),
        include_bytes!("../../tests/fixtures/gen/repo2-bundle-backup.info"),
        include_bytes!("../../tests/fixtures/gen/repo1-full.manifest.gz"),
        include_bytes!("../../tests/fixtures/gen/repo2-bundle-incr.manifest.gz"),
    ];

    fn plain(sample: &[u8]) -> Vec<u8> {
        if sample.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(sample), &mut out)
                .unwrap();
            out
        } else {
            sample.to_vec()
        }
    }

    #[test]
    fn every_verbatim_sample_verifies_and_re_renders_byte_identically() {
        for sample in SAMPLES {
            let data = plain(sample);
            let ini = Ini::parse(&data, "sample").unwrap();
            assert_eq!(ini.version, "2.45");
            assert!(ini.render().unwrap() == data);
        }
    }

    #[test]
    fn a_tampered_sample_fails_its_checksum() {
        for sample in SAMPLES {
            let text = String::from_utf8(plain(sample)).unwrap();
            let tampered = text.replacen("\"15\"", "\"14\"", 1);
            assert_ne!(tampered, text);
            let err = Ini::parse(tampered.as_bytes(), "x").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Checksum);
            // the stored checksum itself tampered
            let pos = text.rfind("backrest-checksum=\"").unwrap() + 19;
            let mut bytes = text.clone().into_bytes();
            bytes[pos] = if bytes[pos] == b'0' { b'1' } else { b'0' };
            let err = Ini::parse(&bytes, "x").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Checksum);
        }
    }

    #[test]
    fn checksum_matches_pgbackrest_documented_example() {
        let mut checksum = Checksum::new();
        checksum.add("backrest", "backrest-format", "5");
        checksum.add("backrest", "backrest-version", "\"2.45\"");
        checksum.add("db", "db-id", "1");
        checksum.add("db", "db-system-id", "7711938428110036608");
        checksum.add("db", "db-version", "\"15\"");
        checksum.add(
            "db:history",
            "1",
            "{\"db-id\":7711938428110036608,\"db-version\":\"15\"}",
        );
        assert_eq!(
            checksum.finish(),
            "3da6c0ef9af632a402feb0a0700a610db8b900ab"
        );
    }

    #[test]
    fn keys_with_equals_quotes_spaces_and_utf8_round_trip() {
        let mut ini = Ini::new();
        let files = ini.section_mut("target:file");
        files.push("pg_data/odd dir/we=ird \"name\".txt", "{\"size\":1}");
        files.push("pg_data/a=1", "2");
        files.push("pg_data/k=", "\"v\"");
        files.push("pg_data/ünï.txt", "{\"size\":2}");
        files.push("pg_data/x={}", "{}");
        let bytes = ini.render().unwrap();
        let back = Ini::parse(&bytes, "").unwrap();
        assert_eq!(back, ini);
        assert_eq!(back.render().unwrap(), bytes);
        assert_eq!(
            back.get("target:file", "pg_data/odd dir/we=ird \"name\".txt"),
            Some("{\"size\":1}")
        );
        assert_eq!(back.get("target:file", "pg_data/k="), Some("\"v\""));
        assert_eq!(back.get("target:file", "pg_data/x={}"), Some("{}"));
    }

    #[test]
    fn render_sorts_sections_and_writes_header_and_checksum() {
        let mut ini = Ini::new();
        ini.set("db", "db-id", "1");
        ini.set("cipher", "cipher-pass", "\"x\"");
        ini.set("backup:current", "L", "{}");
        ini.section_mut("empty");
        let text = String::from_utf8(ini.render().unwrap()).unwrap();
        assert!(text.starts_with(
            "[backrest]\nbackrest-format=5\nbackrest-version=\"2.45\"\n\n[backup:current]\nL={}\n\n[cipher]\ncipher-pass=\"x\"\n\n[db]\ndb-id=1\n\n[backrest]\nbackrest-checksum=\""
        ));
        assert!(!text.contains("[empty]"));
        assert!(text.ends_with("\"\n"));
        Ini::parse(text.as_bytes(), "").unwrap();
    }

    #[test]
    fn version_written_is_the_document_version() {
        let mut ini = Ini::new();
        ini.version = "2.99".to_string();
        ini.set("db", "db-id", "1");
        let text = String::from_utf8(ini.render().unwrap()).unwrap();
        assert!(text.contains("backrest-version=\"2.99\"\n"));
        assert_eq!(Ini::parse(text.as_bytes(), "").unwrap().version, "2.99");
    }

    #[test]
    fn wrong_format_is_a_format_error() {
        let text = with_checksum(
            "[backrest]\nbackrest-format=4\nbackrest-version=\"2.45\"\n\n[db]\ndb-id=1\n",
        );
        let err = Ini::parse(text.as_bytes(), "/r/archive.info").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Format);
        assert_eq!(
            err.message(),
            "expected format 5 but found 4 in '/r/archive.info'"
        );
    }

    #[test]
    fn checksum_errors() {
        let good = with_checksum(
            "[backrest]\nbackrest-format=5\nbackrest-version=\"2.45\"\n\n[db]\ndb-id=1\n",
        );
        Ini::parse(good.as_bytes(), "f").unwrap();

        let tampered = good.replace("db-id=1", "db-id=2");
        let err = Ini::parse(tampered.as_bytes(), "f").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Checksum);
        assert!(
            err.message()
                .starts_with("invalid checksum in 'f', actual '")
        );
        assert!(err.message().contains("' but expected '"));

        let missing = "[backrest]\nbackrest-format=5\n\n[db]\ndb-id=1\n";
        let err = Ini::parse(missing.as_bytes(), "").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Checksum);
        assert!(err.message().ends_with("but no checksum found"));
    }

    #[test]
    fn syntax_errors_name_line_and_file() {
        let cases = [
            (
                "x=1\n",
                "key/value found outside of section at line 1 of 'f': x=1",
            ),
            ("[]\n", "invalid empty section at line 1 of 'f': []"),
            (
                "[db]\nnoequals\n",
                "missing '=' in key/value at line 2 of 'f': noequals",
            ),
            ("[db]\n=1\n", "key is zero-length at line 2 of 'f': =1"),
            (
                "[db]\nk=v\n",
                "invalid JSON value at line 2 of 'f' 'k=v': invalid type at: v",
            ),
            // CR is not trimmed: the section line does not end with ']'
            (
                "[db]\r\nk=1\n",
                "key/value found outside of section at line 1 of 'f': [db]\r",
            ),
        ];
        for (text, message) in cases {
            let err = Ini::parse(text.as_bytes(), "f").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Format, "{text:?}");
            assert_eq!(err.message(), message, "{text:?}");
        }
        let err = Ini::parse(b"[db]\nk=\"\xff\"\n", "f").unwrap_err();
        assert_eq!(err.message(), "invalid UTF-8 at byte 8 in 'f'");
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_and_the_checksum_covers_both() {
        let text = with_checksum(
            "[backrest]\nbackrest-format=5\nbackrest-version=\"2.45\"\n\n[db]\ndb-id=1\ndb-version=\"15\"\ndb-id=2\n",
        );
        let ini = Ini::parse(text.as_bytes(), "").unwrap();
        let db: Vec<_> = ini.section("db").unwrap().iter().collect();
        assert_eq!(db, vec![("db-id", "2"), ("db-version", "\"15\"")]);
    }

    #[test]
    fn recurring_sections_merge() {
        let text = with_checksum(
            "[backrest]\nbackrest-format=5\nbackrest-version=\"2.45\"\n\n[db]\na=1\n\n[x]\nb=2\n\n[db]\nc=3\n",
        );
        let ini = Ini::parse(text.as_bytes(), "").unwrap();
        assert_eq!(ini.get("db", "c"), Some("3"));
        assert_eq!(ini.section("db").unwrap().len(), 2);
    }

    #[test]
    fn unknown_backrest_keys_are_kept() {
        let text = with_checksum(
            "[backrest]\nbackrest-format=5\nbackrest-version=\"2.45\"\nbackrest-zz=1\n\n[db]\na=1\n",
        );
        let ini = Ini::parse(text.as_bytes(), "").unwrap();
        assert_eq!(ini.get("backrest", "backrest-zz"), Some("1"));
        assert_eq!(ini.render().unwrap(), text.as_bytes());
    }

    #[test]
    fn render_refuses_unrepresentable_entries() {
        let mut ini = Ini::new();
        ini.set("target:file", "a\nb", "1");
        assert_eq!(ini.render().unwrap_err().kind(), ErrorKind::Format);
        let mut ini = Ini::new();
        ini.set("db", "k", "[1]");
        assert!(ini.render().is_err());
        let mut ini = Ini::new();
        ini.set("db", "k", "");
        assert!(ini.render().is_err());
    }

    #[test]
    fn fields_take_typed_values_and_keep_the_rest() {
        let mut f = Fields::parse(
            "s",
            "k",
            r#"{"a":"x","b":5,"c":true,"d":false,"e":-3,"n":null,"z":{"q":1}}"#,
        )
        .unwrap();
        assert_eq!(f.req_str("a").unwrap(), "x");
        assert_eq!(f.req_u32("b").unwrap(), 5);
        assert!(f.req_bool("c").unwrap());
        assert_eq!(f.opt_owner("d").unwrap(), Some(None));
        assert_eq!(f.req_i64("e").unwrap(), -3);
        assert_eq!(f.opt_str("n").unwrap(), None);
        assert!(f.req_str("missing").is_err());
        let err = f.req_u64("z").unwrap_err();
        assert!(
            err.message()
                .contains("field 'z' must be an unsigned integer")
        );
        assert!(f.rest().is_empty());
    }
}
