//! Info files (`archive.info`, `backup.info`) and the generic load/save of everything stored in the INI container,
//! including `backup.manifest`.
//!
//! Contract:
//! - [`InfoFile`] ties a typed model to the container: `from_ini`/`to_ini` convert, [`InfoFile::from_bytes`] and
//!   [`InfoFile::to_bytes`] add parsing, checksum verification and rendering.
//! - [`load_info`] reads `X`, then `X.copy`; the first that decrypts, parses and verifies wins. When both fail the
//!   error reads like pgBackRest's: `unable to load <kind> 'X' or 'X.copy':` followed by one line per file,
//!   `<ErrorName>: <message>`. Its kind is the first failure's kind, except that a missing file gives way to any
//!   other kind, and two different non-missing kinds become `FileOpen` (pgBackRest `infoLoad()`); two missing files
//!   give `FileMissing` (55). Hints (e.g. `is or was the repo encrypted?`) are collected, one per line.
//! - [`save_info`] renders once, encrypts once (so both copies hold identical bytes, even the salt), then writes `X`
//!   and afterwards `X.copy`, each atomically: a crash leaves at least one complete, valid twin.
//! - Encryption is the OpenSSL-compatible `Salted__` format of `pgkeep_base::crypto`; `cipher_pass` is the
//!   passphrase protecting this file (the repository pass for info files, the backup.info sub-pass for manifests).

pub mod archive_info;
pub mod backup_info;
pub mod codec;
pub mod json;

use pgkeep_base::{Error, ErrorKind, Result};
use std::io::BufRead;

use pgkeep_base::io::{Chain, FilterRead, FilterSpec};
use pgkeep_storage::{ReadOptions, Storage, WriteOptions, get, join, put};

pub use archive_info::{ArchiveInfo, DbInfo};
pub use backup_info::{BackupDbInfo, BackupInfo, BackupInfoEntry, FileTotals};
pub use codec::{BACKREST_VERSION, Ini, REPOSITORY_FORMAT};

use crate::layout::copy_path;

/// Hint pgBackRest gives when decryption fails or an encrypted file is read without a passphrase.
pub const HINT_ENCRYPTED: &str = "is or was the repo encrypted?";

/// The OpenSSL header every encrypted repository file starts with.
const CIPHER_MAGIC: &[u8] = b"Salted__";

/// A typed model stored in pgBackRest's INI container.
pub trait InfoFile: Sized {
    /// What the file is called in load errors: `info file` or `backup manifest file`.
    const KIND: &'static str;

    /// Hint lines added when neither copy can be loaded (pgBackRest adds command-specific advice).
    const LOAD_HINT: Option<&'static str> = None;

    /// Build the model from a verified container.
    ///
    /// # Errors
    /// `Format` when a required section or key is missing or has the wrong type.
    fn from_ini(ini: Ini) -> Result<Self>;

    /// Build the container to write (version [`BACKREST_VERSION`]).
    ///
    /// # Errors
    /// `Format` when the model cannot be represented.
    fn to_ini(&self) -> Result<Ini>;

    /// Parse, verify and convert plaintext bytes; `name` (a path, may be empty) appears in error messages.
    ///
    /// # Errors
    /// `Format` or `Checksum` as described in [`codec`].
    fn from_bytes(data: &[u8], name: &str) -> Result<Self> {
        from_ini_named(Ini::parse(data, name)?, name)
    }

    /// Render plaintext bytes, checksum included.
    ///
    /// # Errors
    /// `Format` when the model cannot be represented.
    fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// Render plaintext bytes, checksum included, into `out`. Models that can be large (the manifest) override this
    /// to stream without holding the whole rendering; the bytes are always those of [`Ini::render`].
    ///
    /// # Errors
    /// `Format` when the model cannot be represented; `FileWrite` (or the writer's own error) when `out` fails.
    fn write_to(&self, out: &mut dyn std::io::Write) -> Result<()> {
        self.to_ini()?.render_to(out, &[])
    }
}

/// [`InfoFile::from_ini`] with `name` added to error messages.
fn from_ini_named<T: InfoFile>(ini: Ini, name: &str) -> Result<T> {
    named(T::from_ini(ini), name)
}

/// `result` with `name` added to its error message (unless empty).
pub(crate) fn named<T>(result: Result<T>, name: &str) -> Result<T> {
    result.map_err(|e| {
        if name.is_empty() {
            e
        } else {
            let message = format!("{} in '{name}'", e.message());
            rebuild(&e, message)
        }
    })
}

/// [`decode_info`] for bytes the caller no longer needs: each buffer (stored, decrypted) is freed as soon as the next
/// form exists, so a large file (a manifest) is not held twice while the model is built.
fn decode_info_owned<T: InfoFile>(
    data: Vec<u8>,
    name: &str,
    cipher_pass: Option<&str>,
) -> Result<T> {
    let looks_encrypted = data.starts_with(CIPHER_MAGIC);
    let plain = match cipher_pass {
        Some(pass) => decrypt_info(pass, &data)?,
        None => data,
    };
    let hint = |e: Error| {
        if cipher_pass.is_none() && looks_encrypted {
            e.with_hint(HINT_ENCRYPTED)
        } else {
            e
        }
    };
    let ini = Ini::parse(&plain, name).map_err(hint)?;
    drop(plain);
    from_ini_named(ini, name).map_err(hint)
}

/// A copy of `e` with another message (kind and hint kept).
fn rebuild(e: &Error, message: String) -> Error {
    let out = Error::new(e.kind(), message);
    match e.hint() {
        Some(h) => out.with_hint(h),
        None => out,
    }
}

/// Decrypt (when `cipher_pass` is set) and parse one file's bytes. `name` is used in messages.
///
/// # Errors
/// `Crypto` (with the encryption hint) when decryption fails; `Format`/`Checksum` from parsing, with the encryption
/// hint when the bytes look encrypted but no passphrase was given.
pub fn decode_info<T: InfoFile>(data: &[u8], name: &str, cipher_pass: Option<&str>) -> Result<T> {
    match cipher_pass {
        Some(pass) => {
            let plain = decrypt_info(pass, data)?;
            T::from_bytes(&plain, name)
        }
        None => T::from_bytes(data, name).map_err(|e| {
            if data.starts_with(CIPHER_MAGIC) {
                e.with_hint(HINT_ENCRYPTED)
            } else {
                e
            }
        }),
    }
}

/// Render and (when `cipher_pass` is set) encrypt a model.
///
/// # Errors
/// `Format` when the model cannot be rendered, `Crypto` when encryption fails.
pub fn encode_info<T: InfoFile>(info: &T, cipher_pass: Option<&str>) -> Result<Vec<u8>> {
    let plain = info.to_bytes()?;
    match cipher_pass {
        Some(pass) => crate::cipher::encrypt(pass.as_bytes(), &plain),
        None => Ok(plain),
    }
}

/// Load exactly one file (no `.copy` fallback), e.g. the `.copy` of an unfinished backup's manifest.
///
/// # Errors
/// `FileMissing` (`unable to open missing file '<path>' for read`), storage errors, and those of [`decode_info`].
pub fn load_info_file<T: InfoFile>(
    storage: &dyn Storage,
    path: &str,
    cipher_pass: Option<&str>,
) -> Result<T> {
    let display = join(storage.root(), path);
    match get(storage, path)? {
        None => Err(Error::new(
            ErrorKind::FileMissing,
            format!("unable to open missing file '{display}' for read"),
        )),
        Some(data) => decode_info_owned(data, &display, cipher_pass),
    }
}

/// Load `path`, falling back to `path.copy` (see the module contract for the combined error).
///
/// # Errors
/// When neither copy loads: one error naming both files and each cause.
pub fn load_info<T: InfoFile>(
    storage: &dyn Storage,
    path: &str,
    cipher_pass: Option<&str>,
) -> Result<T> {
    load_with(
        path,
        &join(storage.root(), path),
        T::KIND,
        T::LOAD_HINT,
        &mut |candidate| load_info_file(storage, candidate, cipher_pass),
    )
}

/// [`load_info`]'s fallback with another loader: `load_one(path)`, then `load_one(path.copy)`; `display` is `path`
/// as shown in messages, `kind` and `load_hint` as [`InfoFile::KIND`] and [`InfoFile::LOAD_HINT`].
pub(crate) fn load_with<T>(
    path: &str,
    display: &str,
    kind: &str,
    load_hint: Option<&str>,
    load_one: &mut dyn FnMut(&str) -> Result<T>,
) -> Result<T> {
    let copy = copy_path(path);
    let mut failures = Vec::with_capacity(2);
    for candidate in [path, copy.as_str()] {
        match load_one(candidate) {
            Ok(info) => return Ok(info),
            Err(e) => failures.push(e),
        }
    }
    Err(combine_load_errors(display, &failures, kind, load_hint))
}

/// Read one info file as a stream (never whole in memory): open `path`, decrypt while reading when `cipher_pass` is
/// set, and hand the plaintext to `parse` with the path to show in messages. Errors get the encryption hint as
/// [`decode_info`] gives it: a decryption failure always, any other when the bytes look encrypted but no passphrase
/// was given.
///
/// # Errors
/// `FileMissing` (`unable to open missing file '<path>' for read`), storage errors, and those of `parse`.
pub(crate) fn read_stream<T>(
    storage: &dyn Storage,
    path: &str,
    cipher_pass: Option<&str>,
    parse: &mut dyn FnMut(&mut dyn BufRead, &str) -> Result<T>,
) -> Result<T> {
    let display = join(storage.root(), path);
    let Some(source) = storage.open_read(
        path,
        ReadOptions {
            ignore_missing: true,
            ..ReadOptions::default()
        },
    )?
    else {
        return Err(Error::new(
            ErrorKind::FileMissing,
            format!("unable to open missing file '{display}' for read"),
        ));
    };
    let mut chain = Chain::new();
    if let Some(pass) = cipher_pass {
        chain.transform(FilterSpec::Decrypt {
            pass: pass.to_string(),
        })?;
    }
    let mut reader = FilterRead::new(source, chain);
    let looks_encrypted = cipher_pass.is_none()
        && reader
            .fill_buf()
            .is_ok_and(|head| head.starts_with(CIPHER_MAGIC));
    if cipher_pass.is_some()
        && let Ok(head) = reader.fill_buf()
    {
        plausible(head).map_err(|e| e.with_hint(HINT_ENCRYPTED))?;
    }
    let result = parse(&mut reader, &display);
    let err = match result {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    // garbage from a wrong passphrase fails the parse before the padding check at the end fails the
    // decryption: as with a whole-buffer decryption, the decryption error is the one reported
    let err = match (cipher_pass, err.kind()) {
        (Some(_), kind) if kind != ErrorKind::Crypto => {
            match std::io::copy(&mut reader, &mut std::io::sink()) {
                Err(e) => {
                    let drained = Error::from_io_error(&e, ErrorKind::FileRead, &display);
                    if drained.kind() == ErrorKind::Crypto {
                        drained
                    } else {
                        err
                    }
                }
                Ok(_) => err,
            }
        }
        _ => err,
    };
    Err(
        if looks_encrypted || (cipher_pass.is_some() && err.kind() == ErrorKind::Crypto) {
            err.with_hint(HINT_ENCRYPTED)
        } else {
            err
        },
    )
}

/// Decrypt a whole info file with `pass`: decryption errors, and plaintext that is not an info
/// file ([`plausible`]), are `Crypto` errors with the encryption hint.
fn decrypt_info(pass: &str, data: &[u8]) -> Result<Vec<u8>> {
    crate::cipher::decrypt(pass.as_bytes(), data)
        .and_then(|plain| plausible(&plain).map(|()| plain))
        .map_err(|e| e.with_hint(HINT_ENCRYPTED))
}

/// Decrypted bytes must start like an info file (`[backrest]`): a wrong passphrase yields random
/// bytes whose padding still checks out about once in 256 tries, and those must be reported as the
/// decryption failure they are, not as a damaged file.
fn plausible(plain: &[u8]) -> Result<()> {
    match plain.first() {
        Some(&first) if first != b'[' => Err(Error::new(
            ErrorKind::Crypto,
            "decrypted content is not an info file (wrong passphrase)",
        )),
        _ => Ok(()),
    }
}

/// pgBackRest's `infoLoad()` error folding.
fn combine_load_errors(
    display: &str,
    failures: &[Error],
    what: &str,
    load_hint: Option<&str>,
) -> Error {
    let mut kind: Option<ErrorKind> = None;
    let mut message = format!("unable to load {what} '{display}' or '{display}.copy':");
    let mut hints: Vec<&str> = Vec::new();
    for e in failures {
        kind = Some(match kind {
            None => e.kind(),
            Some(k) if k == e.kind() => k,
            Some(ErrorKind::FileMissing) => e.kind(),
            Some(k) if e.kind() == ErrorKind::FileMissing => k,
            Some(_) => ErrorKind::FileOpen,
        });
        message.push('\n');
        message.push_str(e.kind().name());
        message.push_str(": ");
        message.push_str(e.message());
        if let Some(h) = e.hint()
            && !hints.contains(&h)
        {
            hints.push(h);
        }
    }
    if let Some(h) = load_hint {
        hints.push(h);
    }
    let err = Error::new(kind.unwrap_or(ErrorKind::FileMissing), message);
    if hints.is_empty() {
        err
    } else {
        err.with_hint(hints.join("\nHINT: "))
    }
}

/// Write one file atomically with the already encoded bytes.
///
/// # Errors
/// Storage errors.
pub fn write_info_file(storage: &dyn Storage, path: &str, data: &[u8]) -> Result<()> {
    put(storage, path, data, WriteOptions::default())
}

/// Save `info` to `path` and then to `path.copy`, byte-identical (one encryption for both).
///
/// # Errors
/// Rendering, encryption or storage errors; when writing the main file fails the copy is not touched.
pub fn save_info<T: InfoFile>(
    storage: &dyn Storage,
    path: &str,
    info: &T,
    cipher_pass: Option<&str>,
) -> Result<()> {
    let data = encode_info(info, cipher_pass)?;
    write_info_file(storage, path, &data)?;
    write_info_file(storage, &copy_path(path), &data)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::layout;
    use crate::manifest::Manifest;
    use crate::test_storage::MemStorage;

    const ARCHIVE: &[u8] = include_bytes!("../../tests/fixtures/samples/archive.info.repo1");
    const ENC_ARCHIVE: &[u8] = include_bytes!("../../tests/fixtures/gen/repo3-enc-archive.info");
    const ENC_BACKUP: &[u8] = include_bytes!("../../tests/fixtures/gen/repo3-enc-backup.info");
    const ENC_HISTORY: &[u8] =
        include_bytes!("../../tests/fixtures/gen/repo3-enc-full.history.manifest.gz");
    const ENC_PASS: &str = "FixturePass123";

    const PATH: &str = "archive/demo/archive.info";
    const SHOWN: &str = "/mem/archive/demo/archive.info";

    fn tampered() -> Vec<u8> {
        String::from_utf8(ARCHIVE.to_vec())
            .unwrap()
            .replace("db-id=1", "db-id=2")
            .into_bytes()
    }

    #[test]
    fn save_writes_identical_twins_and_load_reads_them() {
        let s = MemStorage::new();
        let info = ArchiveInfo::from_bytes(ARCHIVE, "").unwrap();
        save_info(&s, PATH, &info, None).unwrap();
        assert_eq!(s.read(PATH).unwrap(), ARCHIVE);
        assert_eq!(s.read(&layout::copy_path(PATH)).unwrap(), ARCHIVE);
        let back: ArchiveInfo = load_info(&s, PATH, None).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn missing_or_damaged_main_falls_back_to_copy() {
        let s = MemStorage::new();
        s.insert(&layout::copy_path(PATH), ARCHIVE);
        let info: ArchiveInfo = load_info(&s, PATH, None).unwrap();
        assert_eq!(info.current.id, 1);
        s.insert(PATH, &tampered());
        let info: ArchiveInfo = load_info(&s, PATH, None).unwrap();
        assert_eq!(info.current.id, 1);
        // a good main file is preferred over a bad copy
        s.insert(PATH, ARCHIVE);
        s.insert(&layout::copy_path(PATH), b"garbage");
        let info: ArchiveInfo = load_info(&s, PATH, None).unwrap();
        assert_eq!(info.current.id, 1);
    }

    #[test]
    fn both_missing_is_file_missing_naming_both() {
        let s = MemStorage::new();
        let err = load_info::<ArchiveInfo>(&s, PATH, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileMissing);
        assert_eq!(err.code(), 55);
        assert_eq!(
            err.message(),
            format!(
                "unable to load info file '{SHOWN}' or '{SHOWN}.copy':\n\
                 FileMissingError: unable to open missing file '{SHOWN}' for read\n\
                 FileMissingError: unable to open missing file '{SHOWN}.copy' for read"
            )
        );
        let hint = err.hint().unwrap();
        assert!(hint.starts_with(
            "archive.info cannot be opened but is required to push/get WAL segments."
        ));
        assert!(hint.contains("\nHINT: has a stanza-create been performed?"));
        let err = load_info::<BackupInfo>(&s, "backup/demo/backup.info", None).unwrap_err();
        assert!(
            err.hint()
                .unwrap()
                .starts_with("backup.info cannot be opened and is required to perform a backup.")
        );
        let err = load_info::<Manifest>(&s, "backup/demo/L/backup.manifest", None).unwrap_err();
        assert!(err.message().starts_with(
            "unable to load backup manifest file '/mem/backup/demo/L/backup.manifest' or"
        ));
        assert_eq!(err.hint(), None);
    }

    #[test]
    fn error_kind_folding_follows_pgbackrest() {
        let s = MemStorage::new();
        // checksum + missing => checksum
        s.insert(PATH, &tampered());
        let err = load_info::<ArchiveInfo>(&s, PATH, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Checksum);
        let lines: Vec<&str> = err.message().lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with(&format!(
            "ChecksumError: invalid checksum in '{SHOWN}', actual '"
        )));
        assert_eq!(
            lines[2],
            format!("FileMissingError: unable to open missing file '{SHOWN}.copy' for read")
        );
        // missing + checksum => checksum
        s.delete(PATH);
        s.insert(&layout::copy_path(PATH), &tampered());
        let err = load_info::<ArchiveInfo>(&s, PATH, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Checksum);
        // format + checksum => file open
        s.insert(PATH, b"[db]\nnoequals\n");
        let err = load_info::<ArchiveInfo>(&s, PATH, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileOpen);
        assert!(err.message().contains(&format!(
            "\nFormatError: missing '=' in key/value at line 2 of '{SHOWN}': noequals\nChecksumError: "
        )));
    }

    #[test]
    fn real_encrypted_info_files_load() {
        let s = MemStorage::new();
        s.insert("archive/demo/archive.info", ENC_ARCHIVE);
        s.insert("backup/demo/backup.info", ENC_BACKUP);
        let archive: ArchiveInfo =
            load_info(&s, "archive/demo/archive.info", Some(ENC_PASS)).unwrap();
        assert_eq!(archive.current_archive_id(), "15-1");
        assert_eq!(archive.cipher_pass.as_deref().map(str::len), Some(64));
        let backup: BackupInfo = load_info(&s, "backup/demo/backup.info", Some(ENC_PASS)).unwrap();
        assert_eq!(backup.backups.len(), 2);
        let sub = backup.cipher_pass.clone().unwrap();

        // the history manifest: backup.info sub-pass, then gunzip
        let gz = crate::cipher::decrypt(sub.as_bytes(), ENC_HISTORY).unwrap();
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut plain)
            .unwrap();
        let manifest = Manifest::from_bytes(&plain, "").unwrap();
        assert_eq!(manifest.backup.label, "20261125-043840F");
        assert_eq!(manifest.cipher_pass.as_deref().map(str::len), Some(64));
        assert_eq!(manifest.to_bytes().unwrap(), plain);
        assert_eq!(
            BackupInfoEntry::from_manifest(&manifest),
            backup.backups["20261125-043840F"]
        );
        // and a plaintext re-save decrypts to the same model
        let encoded = encode_info(&backup, Some(ENC_PASS)).unwrap();
        assert!(encoded.starts_with(CIPHER_MAGIC));
        let back: BackupInfo = decode_info(&encoded, "", Some(ENC_PASS)).unwrap();
        assert_eq!(back, backup);
    }

    #[test]
    fn encryption_errors_carry_the_hint() {
        let s = MemStorage::new();
        s.insert(PATH, ENC_ARCHIVE);
        s.insert(&layout::copy_path(PATH), ENC_ARCHIVE);
        let err = load_info::<ArchiveInfo>(&s, PATH, Some("wrong")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Crypto);
        // a wrong passphrase is a decryption error every time, also the ~1 in 256 times its
        // garbage ends in valid padding (each save draws a new salt)
        let info = ArchiveInfo::from_bytes(ARCHIVE, "").unwrap();
        for _ in 0..600 {
            let t = MemStorage::new();
            save_info(&t, PATH, &info, Some("right")).unwrap();
            for pass in ["wrong", "other"] {
                let err = load_info::<ArchiveInfo>(&t, PATH, Some(pass)).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Crypto, "{}", err.message());
                assert!(err.hint().unwrap().starts_with(HINT_ENCRYPTED));
                let bytes = t.read(PATH).unwrap();
                let err = decode_info::<ArchiveInfo>(&bytes, "", Some(pass)).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Crypto, "{}", err.message());
            }
        }
        assert!(
            err.message().contains("\nCryptoError: "),
            "{}",
            err.message()
        );
        assert!(err.hint().unwrap().starts_with(HINT_ENCRYPTED));
        let err = load_info::<ArchiveInfo>(&s, PATH, None).unwrap_err();
        assert!(err.hint().unwrap().starts_with(HINT_ENCRYPTED));
        // a plaintext file read with a passphrase
        s.insert(PATH, ARCHIVE);
        s.insert(&layout::copy_path(PATH), ARCHIVE);
        let err = load_info::<ArchiveInfo>(&s, PATH, Some(ENC_PASS)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Crypto);
        assert!(err.hint().unwrap().starts_with(HINT_ENCRYPTED));
    }

    #[test]
    fn encrypted_twins_are_byte_identical() {
        let s = MemStorage::new();
        let info = ArchiveInfo::from_bytes(ARCHIVE, "").unwrap();
        save_info(&s, PATH, &info, Some("secret")).unwrap();
        let main = s.read(PATH).unwrap();
        assert!(main.starts_with(CIPHER_MAGIC));
        assert_eq!(s.read(&layout::copy_path(PATH)).unwrap(), main);
        let back: ArchiveInfo = load_info(&s, PATH, Some("secret")).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn a_failed_main_write_leaves_the_copy_alone() {
        let s = MemStorage::new();
        s.insert(&layout::copy_path(PATH), b"old copy");
        s.fail_write(PATH);
        let info = ArchiveInfo::from_bytes(ARCHIVE, "").unwrap();
        let err = save_info(&s, PATH, &info, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileWrite);
        assert_eq!(s.read(&layout::copy_path(PATH)).unwrap(), b"old copy");
        assert_eq!(s.read(PATH), None);
    }

    #[test]
    fn single_file_load() {
        let s = MemStorage::new();
        s.insert(&layout::copy_path(PATH), ARCHIVE);
        let err = load_info_file::<ArchiveInfo>(&s, PATH, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileMissing);
        let info: ArchiveInfo = load_info_file(&s, &layout::copy_path(PATH), None).unwrap();
        assert_eq!(info.current.id, 1);
        write_info_file(&s, PATH, ARCHIVE).unwrap();
        assert_eq!(s.read(PATH).unwrap(), ARCHIVE);
    }
}
