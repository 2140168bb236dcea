//! Reading the stored bytes of one backup file back: where they are (a whole repository file or a
//! slice of a bundle), how they are encoded (the manifest's compression and the backup set's
//! passphrase), and whether what comes out is what the manifest recorded (pgBackRest
//! `restoreFile()` in `src/command/restore/file.c`, `backupFileRepoPathP()`).
//!
//! Contract:
//! - [`StoredLocation::of`] is the only place that turns a manifest entry into a repository read:
//!   a bundled file is `repo-size` bytes at `bno` of `<label or reference>/bundle/<bni>`, any other
//!   file is the whole `<label or reference>/<name><ext>`.
//! - [`copy_verified`] is one pass: stored bytes → decrypt (when the set is encrypted) →
//!   decompress (the manifest's `option-compress-type`) → SHA-1 and byte count of the original →
//!   the writer. It returns only after checking both against the manifest; a mismatch is
//!   `Checksum` (26) with pgBackRest's wording `actual checksum '<a>' does not match expected
//!   checksum '<e>'` (or, when only the size differs, `actual size <a> does not match expected
//!   size <e>`). Decryption and decompression failures keep their own kinds (`Crypto`, `Format`).
//!   Callers add the file's name with [`pgkeep_base::Error::context`].
//! - Block-incremental files (`bi`, 2.45 beta format) are refused with `FeatureNotSupported`, so
//!   nothing is ever written from a format pgkeep does not decode.
//! - Zero-length files need no read at all ([`Expected::is_empty`]); bundles store nothing for them.

use std::io::{Read, Write};

use pgkeep_base::compress::CompressType;
use pgkeep_base::io::{Chain, FilterSpec, Sha1Digest, copy};
use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_storage::{ReadOptions, Storage};

use crate::manifest::{EMPTY_SHA1, Manifest, ManifestFile};

/// How the files of one backup are stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredFormat {
    /// Compression of every file of the backup (`option-compress-type`).
    pub compress: CompressType,
    /// The backup set's passphrase (`[cipher] cipher-pass`) when the repository is encrypted.
    pub cipher_pass: Option<String>,
}

impl std::fmt::Debug for StoredFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredFormat")
            .field("compress", &self.compress)
            .field("encrypted", &self.cipher_pass.is_some())
            .finish()
    }
}

impl StoredFormat {
    /// The format of `manifest`'s files.
    #[must_use]
    pub fn of(manifest: &Manifest) -> StoredFormat {
        StoredFormat {
            compress: manifest.options.compress_type,
            cipher_pass: manifest.cipher_pass.clone(),
        }
    }

    /// The transforms that turn stored bytes back into the original: decrypt, then decompress.
    ///
    /// # Errors
    /// `Assert` only if a built-in transform cannot be built.
    pub fn decode_chain(&self) -> Result<Chain> {
        let mut chain = Chain::new();
        if let Some(pass) = &self.cipher_pass {
            chain.transform(FilterSpec::Decrypt { pass: pass.clone() })?;
        }
        chain.transform(FilterSpec::Decompress { ty: self.compress })?;
        Ok(chain)
    }
}

/// Where one file's stored bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLocation {
    /// Repository path (relative to the repository root).
    pub path: String,
    /// Bundle id, 0 for a file stored on its own.
    pub bundle_id: u64,
    /// Byte offset of the stored bytes in `path`.
    pub offset: u64,
    /// Number of stored bytes to read; `None` = to the end of `path`.
    pub size: Option<u64>,
}

impl StoredLocation {
    /// The location of manifest entry `name` of `manifest` in stanza `stanza`.
    ///
    /// # Errors
    /// `FeatureNotSupported` for block-incremental files.
    pub fn of(
        manifest: &Manifest,
        stanza: &str,
        name: &str,
        file: &ManifestFile,
    ) -> Result<StoredLocation> {
        if file.block_incr.is_some() {
            return Err(Error::new(
                ErrorKind::FeatureNotSupported,
                format!(
                    "file '{name}' of backup '{}' is stored block incremental, which pgkeep cannot read",
                    manifest.backup.label
                ),
            ));
        }
        let path = manifest.file_repo_path(stanza, name, file);
        Ok(if file.bundle_id != 0 {
            StoredLocation {
                path,
                bundle_id: file.bundle_id,
                offset: file.bundle_offset,
                size: Some(file.size_repo),
            }
        } else {
            StoredLocation {
                path,
                bundle_id: 0,
                offset: 0,
                size: None,
            }
        })
    }

    /// Open the stored bytes for reading.
    ///
    /// # Errors
    /// `FileMissing` when the repository file is missing, `FileOpen` on other failures.
    pub fn open(&self, storage: &dyn Storage) -> Result<Box<dyn Read + Send>> {
        open_range(storage, &self.path, self.offset, self.size)
    }
}

/// Open `size` bytes (to the end when `None`) at `offset` of repository file `path`.
///
/// # Errors
/// `FileMissing` when the file is missing, `FileOpen` on other failures.
pub fn open_range(
    storage: &dyn Storage,
    path: &str,
    offset: u64,
    size: Option<u64>,
) -> Result<Box<dyn Read + Send>> {
    let reader = storage.open_read(
        path,
        ReadOptions {
            offset,
            limit: size,
            ignore_missing: false,
            sequential: true,
        },
    )?;
    reader.ok_or_else(|| {
        Error::new(
            ErrorKind::FileMissing,
            format!("unable to open missing file '{path}' for read"),
        )
    })
}

/// What the original bytes of a file must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// SHA-1 of the original content.
    pub sha1: Sha1Digest,
    /// Size of the original content.
    pub size: u64,
}

impl Expected {
    /// The expectation recorded for manifest entry `name`.
    ///
    /// # Errors
    /// `Format` when the entry has no checksum (a partial manifest) or an unreadable one.
    pub fn of(name: &str, file: &ManifestFile) -> Result<Expected> {
        let text = match (&file.checksum, file.size) {
            (_, 0) => EMPTY_SHA1.to_string(),
            (Some(c), _) => match c.as_bytes() {
                Some(bytes) => {
                    return Ok(Expected {
                        sha1: Sha1Digest(*bytes),
                        size: file.size,
                    });
                }
                None => c.to_string(),
            },
            (None, _) => {
                return Err(Error::new(
                    ErrorKind::Format,
                    format!("missing checksum for file '{name}'"),
                ));
            }
        };
        let sha1 = Sha1Digest::from_hex(&text).map_err(|e| {
            Error::new(
                ErrorKind::Format,
                format!("invalid checksum for file '{name}': {}", e.message()),
            )
        })?;
        Ok(Expected {
            sha1,
            size: file.size,
        })
    }

    /// A zero-length file: nothing needs to be read.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Compare what was produced with what was expected.
    ///
    /// # Errors
    /// `Checksum` on any difference.
    pub fn check(&self, sha1: &Sha1Digest, size: u64) -> Result<()> {
        if *sha1 != self.sha1 {
            return Err(Error::new(
                ErrorKind::Checksum,
                format!(
                    "actual checksum '{}' does not match expected checksum '{}'",
                    sha1.to_hex(),
                    self.sha1.to_hex()
                ),
            ));
        }
        if size != self.size {
            return Err(Error::new(
                ErrorKind::Checksum,
                format!(
                    "actual size {size} does not match expected size {}",
                    self.size
                ),
            ));
        }
        Ok(())
    }
}

/// Decode the stored bytes read from `reader` into `writer` in one pass and check them against
/// `expected`. The writer is flushed, not closed.
///
/// # Errors
/// Read and write failures, `Crypto` and `Format` from decoding, `Checksum` on a mismatch.
pub fn copy_verified<R: Read + ?Sized, W: Write + ?Sized>(
    reader: &mut R,
    format: &StoredFormat,
    expected: &Expected,
    writer: &mut W,
) -> Result<()> {
    let mut chain = format.decode_chain()?;
    let sha1 = chain.sha1();
    let size = chain.size();
    let results = copy(reader, chain, writer)?;
    expected.check(&results.get(sha1)?, results.get(size)?)
}

/// The original content of manifest entry `name`, read from the repository and verified (for
/// small files such as `PG_VERSION` or `pg_control`).
///
/// # Errors
/// `Format` for an entry that is missing or has no checksum, the errors of [`StoredLocation`] and
/// [`copy_verified`], each naming the entry.
pub fn read(
    storage: &dyn Storage,
    manifest: &Manifest,
    stanza: &str,
    name: &str,
) -> Result<Vec<u8>> {
    let file = manifest.files.get(name).ok_or_else(|| {
        Error::new(
            ErrorKind::Format,
            format!("unable to find '{name}' in manifest file list"),
        )
    })?;
    let expected = Expected::of(name, file)?;
    if expected.is_empty() {
        return Ok(Vec::new());
    }
    let location = StoredLocation::of(manifest, stanza, name, file)?;
    let mut reader = location.open(storage)?;
    let mut out = Vec::with_capacity(usize::try_from(file.size).unwrap_or(0).min(1 << 24));
    copy_verified(
        &mut reader,
        &StoredFormat::of(manifest),
        &expected,
        &mut out,
    )
    .map_err(|e| e.context(format!("unable to read '{name}' from '{}'", location.path)))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgkeep_base::io::sha1;
    use pgkeep_storage::posix::PosixStorage;

    use crate::layout::{BackupType, backup_file_path, bundle_path};
    use crate::manifest::{ManifestBackup, ManifestBackupDb, ManifestOptions};

    const PASS: &str = "subpass-of-the-backup-set";

    fn manifest(compress: CompressType, pass: Option<&str>) -> Manifest {
        let backup = ManifestBackup {
            label: "20240101-000000F_20240102-000000I".to_string(),
            prior: Some("20240101-000000F".to_string()),
            backup_type: BackupType::Incr,
            reference: vec![
                "20240101-000000F".to_string(),
                "20240101-000000F_20240102-000000I".to_string(),
            ],
            archive_start: None,
            archive_stop: None,
            lsn_start: None,
            lsn_stop: None,
            timestamp_copy_start: 0,
            timestamp_start: 0,
            timestamp_stop: 0,
            bundle: true,
            bundle_raw: false,
            block_incr: false,
        };
        let db = ManifestBackupDb {
            id: 1,
            system_id: 1,
            catalog_version: 202_209_061,
            control_version: 1300,
            version: pgkeep_pg::PgVersion::from_major(15).unwrap(),
        };
        let options = ManifestOptions {
            archive_check: true,
            archive_copy: false,
            backup_standby: None,
            buffer_size: None,
            checksum_page: None,
            compress_type: compress,
            compress_level: None,
            compress_level_network: None,
            delta: None,
            hardlink: false,
            online: true,
            process_max: None,
        };
        let mut m = Manifest::new(backup, db, options);
        m.cipher_pass = pass.map(str::to_string);
        m
    }

    fn encode(data: &[u8], format: &StoredFormat) -> Vec<u8> {
        let mut chain = Chain::new();
        chain
            .transform(FilterSpec::compress(format.compress))
            .unwrap();
        if let Some(pass) = &format.cipher_pass {
            chain
                .transform(FilterSpec::Encrypt { pass: pass.clone() })
                .unwrap();
        }
        let mut out = Vec::new();
        copy(&mut &data[..], chain, &mut out).unwrap();
        out
    }

    fn entry(data: &[u8]) -> ManifestFile {
        let mut f = ManifestFile::new(data.len() as u64, 0, 0o600, None, None);
        f.checksum = Some(sha1(data).to_hex().into());
        f
    }

    #[test]
    fn every_compression_and_cipher_round_trips() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for compress in CompressType::ALL {
            for pass in [None, Some(PASS)] {
                let format = StoredFormat {
                    compress,
                    cipher_pass: pass.map(str::to_string),
                };
                let stored = encode(&data, &format);
                let expected = Expected::of("pg_data/x", &entry(&data)).unwrap();
                let mut out = Vec::new();
                copy_verified(&mut &stored[..], &format, &expected, &mut out).unwrap();
                assert_eq!(out, data, "{compress:?} encrypted={}", pass.is_some());
            }
        }
    }

    #[test]
    fn a_changed_byte_is_a_checksum_error_naming_both_digests() {
        let data = b"the original content".to_vec();
        let format = StoredFormat {
            compress: CompressType::None,
            cipher_pass: None,
        };
        let mut stored = encode(&data, &format);
        stored[3] ^= 1;
        let expected = Expected::of("pg_data/x", &entry(&data)).unwrap();
        let err = copy_verified(&mut &stored[..], &format, &expected, &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Checksum);
        assert_eq!(
            err.message(),
            format!(
                "actual checksum '{}' does not match expected checksum '{}'",
                sha1(&stored).to_hex(),
                sha1(&data).to_hex()
            )
        );
    }

    #[test]
    fn corrupt_compressed_or_encrypted_bytes_keep_their_kind() {
        let data = vec![7u8; 100_000];
        let gz = StoredFormat {
            compress: CompressType::Gz,
            cipher_pass: None,
        };
        let mut stored = encode(&data, &gz);
        let n = stored.len();
        stored.truncate(n - 9);
        let expected = Expected::of("pg_data/x", &entry(&data)).unwrap();
        let err = copy_verified(&mut &stored[..], &gz, &expected, &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Format, "{err}");

        let enc = StoredFormat {
            compress: CompressType::None,
            cipher_pass: Some(PASS.to_string()),
        };
        let stored = encode(&data, &enc);
        let wrong = StoredFormat {
            compress: CompressType::None,
            cipher_pass: Some("another pass".to_string()),
        };
        let err = copy_verified(&mut &stored[..], &wrong, &expected, &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Crypto, "{err}");
    }

    #[test]
    fn expectation_of_entries() {
        let empty = ManifestFile::new(0, 0, 0o600, None, None);
        let e = Expected::of("pg_data/empty", &empty).unwrap();
        assert!(e.is_empty());
        assert_eq!(e.sha1.to_hex(), EMPTY_SHA1);

        let mut partial = ManifestFile::new(5, 0, 0o600, None, None);
        partial.checksum = None;
        let err = Expected::of("pg_data/partial", &partial).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Format);
        assert_eq!(err.message(), "missing checksum for file 'pg_data/partial'");

        partial.checksum = Some("xyz".into());
        assert_eq!(
            Expected::of("pg_data/partial", &partial)
                .unwrap_err()
                .kind(),
            ErrorKind::Format
        );

        let full = Expected::of("pg_data/a", &entry(b"abc")).unwrap();
        let err = full.check(&sha1(b"abc"), 4).unwrap_err();
        assert_eq!(
            err.message(),
            "actual size 4 does not match expected size 3"
        );
    }

    #[test]
    fn locations_of_plain_referenced_bundled_and_block_files() {
        let m = manifest(CompressType::Zst, None);
        let mut plain = entry(b"abc");
        let loc = StoredLocation::of(&m, "demo", "pg_data/PG_VERSION", &plain).unwrap();
        assert_eq!(
            loc,
            StoredLocation {
                path: backup_file_path("demo", &m.backup.label, "pg_data/PG_VERSION", ".zst"),
                bundle_id: 0,
                offset: 0,
                size: None,
            }
        );
        plain.reference = Some("20240101-000000F".into());
        plain.bundle_id = 3;
        plain.bundle_offset = 77;
        plain.size_repo = 12;
        let loc = StoredLocation::of(&m, "demo", "pg_data/PG_VERSION", &plain).unwrap();
        assert_eq!(
            loc,
            StoredLocation {
                path: bundle_path("demo", "20240101-000000F", 3),
                bundle_id: 3,
                offset: 77,
                size: Some(12),
            }
        );
        plain.block_incr = Some(Box::new(crate::manifest::BlockIncr {
            size: 8192,
            checksum_size: crate::manifest::BLOCK_INCR_CHECKSUM_SIZE_MIN,
            map_size: 0,
        }));
        let err = StoredLocation::of(&m, "demo", "pg_data/PG_VERSION", &plain).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FeatureNotSupported);
    }

    #[test]
    fn read_a_bundled_file_from_posix_storage() {
        let dir = tempfile::tempdir().unwrap();
        let storage = PosixStorage::new(dir.path().to_str().unwrap());
        let mut m = manifest(CompressType::Lz4, Some(PASS));
        let format = StoredFormat::of(&m);
        let one = b"first file".to_vec();
        let two: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
        let s1 = encode(&one, &format);
        let s2 = encode(&two, &format);
        let mut bundle = s1.clone();
        bundle.extend_from_slice(&s2);
        let label = m.backup.label.clone();
        let path = bundle_path("demo", &label, 1);
        pgkeep_storage::put(&storage, &path, &bundle, Default::default()).unwrap();

        for (name, data, offset, stored) in [
            ("pg_data/one", &one, 0, &s1),
            ("pg_data/two", &two, s1.len() as u64, &s2),
        ] {
            let mut f = entry(data);
            f.bundle_id = 1;
            f.bundle_offset = offset;
            f.size_repo = stored.len() as u64;
            m.files.insert(name.to_string(), f);
        }
        m.files.insert(
            "pg_data/empty".to_string(),
            ManifestFile::new(0, 0, 0o600, None, None),
        );
        assert_eq!(read(&storage, &m, "demo", "pg_data/two").unwrap(), two);
        assert_eq!(read(&storage, &m, "demo", "pg_data/one").unwrap(), one);
        assert!(
            read(&storage, &m, "demo", "pg_data/empty")
                .unwrap()
                .is_empty()
        );

        // a slice in the wrong place fails naming the entry and the repository file
        if let Some(f) = m.files.get_mut("pg_data/two") {
            f.bundle_offset += 1;
        }
        let err = read(&storage, &m, "demo", "pg_data/two").unwrap_err();
        assert!(
            err.message()
                .starts_with(&format!("unable to read 'pg_data/two' from '{path}': ")),
            "{}",
            err.message()
        );
        let err = read(&storage, &m, "demo", "pg_data/none").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Format);
    }
}
