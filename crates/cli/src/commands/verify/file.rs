//! Verify one stored file (pgBackRest 2.45 `src/command/verify/file.c`, made stricter).
//!
//! Contract:
//! - A [`FileCheck`] describes what a stored file must be: its repository path (and byte range inside a bundle),
//!   the SHA-1 and size of the stored bytes when known (`rck`, `repo-size`), and the SHA-1 and size of the content
//!   after decryption and decompression.
//! - [`verify`] reads the file once: stored bytes → SHA-1 + size → decrypt → decompress → SHA-1 + size. pgBackRest
//!   checks only the stored checksum when one is recorded; pgkeep checks both layers, so a file that matches its
//!   `rck` but does not decompress to its content is found too.
//! - The outcome is one [`Outcome`]: missing file, checksum or size mismatch (stored bytes first, then content), or
//!   any other failure (unreadable, cannot decrypt or decompress) with its message. A stored-checksum mismatch
//!   wins over a decompression failure it explains.

use pgkeep_base::Result;
use pgkeep_base::compress::CompressType;
use pgkeep_base::io::{Chain, FilterRead, FilterSpec, Sha1Digest};
use pgkeep_storage::{ReadOptions, Storage};

/// What a stored file must be.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileCheck {
    /// Repository path (a bundle for bundled files).
    pub path: String,
    /// Offset inside the file (bundles).
    pub offset: u64,
    /// Bytes to read from `offset` (bundles); `None` reads to the end.
    pub limit: Option<u64>,
    /// Passphrase the stored bytes are encrypted with.
    pub cipher_pass: Option<String>,
    /// Compression of the stored bytes.
    pub compress: CompressType,
    /// SHA-1 (hex) of the content.
    pub checksum: String,
    /// Size of the content.
    pub size: u64,
    /// SHA-1 (hex) of the stored bytes, when recorded.
    pub repo_checksum: Option<String>,
    /// Size of the stored bytes, when recorded.
    pub repo_size: Option<u64>,
}

/// The verdict on one file, with pgBackRest's reason names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything matches.
    Ok,
    /// The file does not exist.
    Missing,
    /// A SHA-1 differs.
    ChecksumInvalid,
    /// A size differs.
    SizeInvalid,
    /// Anything else, with the error.
    Other(String),
}

impl Outcome {
    /// pgBackRest's `verifyErrorMsg()` text (`ok` for a valid file).
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Missing => "file missing",
            Outcome::ChecksumInvalid => "invalid checksum",
            Outcome::SizeInvalid => "invalid size",
            Outcome::Other(_) => "invalid result",
        }
    }
}

/// Read and check one file.
#[must_use]
pub fn verify(storage: &dyn Storage, check: &FileCheck) -> Outcome {
    match verify_inner(storage, check) {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Other(format!("[{}] {}", e.code(), e.message())),
    }
}

fn verify_inner(storage: &dyn Storage, check: &FileCheck) -> Result<Outcome> {
    let open = || {
        storage.open_read(
            &check.path,
            ReadOptions {
                offset: check.offset,
                limit: check.limit,
                ignore_missing: true,
                sequential: true,
            },
        )
    };
    let Some(source) = open()? else {
        return Ok(Outcome::Missing);
    };
    let mut chain = Chain::new();
    let stored_sha1 = chain.sha1();
    let stored_size = chain.size();
    if let Some(pass) = &check.cipher_pass {
        chain.transform(FilterSpec::Decrypt { pass: pass.clone() })?;
    }
    chain.transform(FilterSpec::Decompress { ty: check.compress })?;
    let content_sha1 = chain.sha1();
    let content_size = chain.size();

    let stored_verdict = |sha1: Sha1Digest, size: u64| -> Option<Outcome> {
        if check
            .repo_checksum
            .as_ref()
            .is_some_and(|c| *c != sha1.to_hex())
        {
            Some(Outcome::ChecksumInvalid)
        } else if check.repo_size.is_some_and(|s| s != size) {
            Some(Outcome::SizeInvalid)
        } else {
            None
        }
    };

    let results = match FilterRead::new(source, chain).finish() {
        Ok(results) => results,
        Err(failure) => {
            // the content could not be decoded: the stored checksum tells whether the file was damaged at rest
            let Some(source) = open()? else {
                return Ok(Outcome::Missing);
            };
            let mut raw = Chain::new();
            let sha1 = raw.sha1();
            let size = raw.size();
            let raw_results = FilterRead::new(source, raw).finish()?;
            if let Some(outcome) = stored_verdict(raw_results.get(sha1)?, raw_results.get(size)?) {
                return Ok(outcome);
            }
            return Ok(Outcome::Other(format!(
                "[{}] {}",
                failure.code(),
                failure.message()
            )));
        }
    };
    if let Some(outcome) = stored_verdict(results.get(stored_sha1)?, results.get(stored_size)?) {
        return Ok(outcome);
    }
    if results.get(content_sha1)?.to_hex() != check.checksum {
        return Ok(Outcome::ChecksumInvalid);
    }
    if results.get(content_size)? != check.size {
        return Ok(Outcome::SizeInvalid);
    }
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgkeep_base::io::sha1;
    use pgkeep_storage::posix::PosixStorage;

    fn store(dir: &std::path::Path, name: &str, data: &[u8]) {
        std::fs::write(dir.join(name), data).unwrap();
    }

    fn check(
        path: &str,
        content: &[u8],
        stored: &[u8],
        compress: CompressType,
        pass: Option<&str>,
    ) -> FileCheck {
        FileCheck {
            path: path.to_string(),
            offset: 0,
            limit: None,
            cipher_pass: pass.map(str::to_string),
            compress,
            checksum: sha1(content).to_hex(),
            size: content.len() as u64,
            repo_checksum: Some(sha1(stored).to_hex()),
            repo_size: Some(stored.len() as u64),
        }
    }

    #[test]
    fn compressed_and_encrypted_files_are_checked_at_both_layers() {
        let dir = tempfile::tempdir().unwrap();
        let storage = PosixStorage::new(dir.path().to_str().unwrap());
        let content = b"some relation data ".repeat(1000);
        let gz = pgkeep_base::compress::compress(CompressType::Gz, 6, &content).unwrap();
        let enc = pgkeep_base::crypto::encrypt(b"pass", &gz).unwrap();
        store(dir.path(), "f.gz", &enc);
        let good = check("f.gz", &content, &enc, CompressType::Gz, Some("pass"));
        assert_eq!(verify(&storage, &good), Outcome::Ok);

        // without rck the content checksum still decides
        let mut no_rck = good.clone();
        no_rck.repo_checksum = None;
        no_rck.repo_size = None;
        assert_eq!(verify(&storage, &no_rck), Outcome::Ok);
        no_rck.checksum = sha1(b"other").to_hex();
        assert_eq!(verify(&storage, &no_rck), Outcome::ChecksumInvalid);
        let mut wrong_size = good.clone();
        wrong_size.size += 1;
        assert_eq!(verify(&storage, &wrong_size), Outcome::SizeInvalid);

        // a flipped byte at rest: the stored checksum catches it even though decryption fails
        let mut damaged = enc.clone();
        let mid = damaged.len() / 2;
        damaged[mid] ^= 0xff;
        store(dir.path(), "f.gz", &damaged);
        assert_eq!(verify(&storage, &good), Outcome::ChecksumInvalid);
        // ... and without rck it is reported as a decode failure with the error
        let mut plain_check = good.clone();
        plain_check.repo_checksum = None;
        plain_check.repo_size = None;
        assert!(matches!(verify(&storage, &plain_check), Outcome::Other(m) if m.starts_with("[")));

        // truncated: stored size differs before anything else
        store(dir.path(), "f.gz", &enc[..enc.len() - 16]);
        let mut size_only = good.clone();
        size_only.repo_checksum = None;
        assert_eq!(verify(&storage, &size_only), Outcome::SizeInvalid);

        std::fs::remove_file(dir.path().join("f.gz")).unwrap();
        assert_eq!(verify(&storage, &good), Outcome::Missing);
        assert_eq!(Outcome::Missing.reason(), "file missing");
    }

    #[test]
    fn bundled_files_are_read_from_their_range() {
        let dir = tempfile::tempdir().unwrap();
        let storage = PosixStorage::new(dir.path().to_str().unwrap());
        let a = pgkeep_base::compress::compress(CompressType::Gz, 6, b"first").unwrap();
        let b = pgkeep_base::compress::compress(CompressType::Gz, 6, b"second file").unwrap();
        let mut bundle = a.clone();
        bundle.extend_from_slice(&b);
        store(dir.path(), "1", &bundle);
        let mut second = check("1", b"second file", &b, CompressType::Gz, None);
        second.offset = a.len() as u64;
        second.limit = Some(b.len() as u64);
        assert_eq!(verify(&storage, &second), Outcome::Ok);
        // a bundle cut short
        store(dir.path(), "1", &bundle[..bundle.len() - 3]);
        assert_eq!(verify(&storage, &second), Outcome::ChecksumInvalid);
    }
}
