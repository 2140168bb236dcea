//! aes-256-cbc encryption exactly as pgBackRest (and `openssl enc -aes-256-cbc -md sha1`) writes
//! it, and generation of sub-passphrases.
//!
//! Contract:
//! - Stream layout: ASCII `Salted__`, 8 random salt bytes, then AES-256-CBC ciphertext with
//!   PKCS#7 padding. Key and IV come from OpenSSL's `EVP_BytesToKey` with SHA-1, one iteration,
//!   over the passphrase bytes and the salt. An empty plaintext still gives 32 bytes.
//! - The passphrase is used as raw bytes; a sub-passphrase is its 64-character base64 text (it is
//!   not decoded).
//! - Failures are `CryptoError` with pgBackRest's messages: `cipher header invalid` (the stream
//!   does not start with `Salted__`), `cipher header missing` (it ends before the 16-byte
//!   header), `unable to flush` (truncated ciphertext or bad padding, which is what a wrong
//!   passphrase usually gives). A wrong passphrase is detected only through the padding, so about
//!   1 in 256 wrong passphrases "succeeds" with garbage; callers verify checksums of what they
//!   decrypt, as pgBackRest does.

use aes::Aes256;
use cbc::cipher::array::Array;
use cbc::cipher::consts::U16;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use sha1::{Digest, Sha1};

use crate::error::Result;
use crate::io::{Transform, chunk_of, transform_all};

/// `Salted__`, OpenSSL's marker for a salted stream.
pub const CIPHER_MAGIC: &[u8; 8] = b"Salted__";
/// Magic plus salt.
pub const CIPHER_HEADER_SIZE: usize = 16;
const SALT_SIZE: usize = 8;
const BLOCK: usize = 16;

type Enc = cbc::Encryptor<Aes256>;
type Dec = cbc::Decryptor<Aes256>;

/// Encrypt a whole buffer with `pass` (for info files and other small things).
pub fn encrypt(pass: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    transform_all(&mut Encryptor::new(pass)?, data)
}

/// Decrypt a whole buffer with `pass`.
pub fn decrypt(pass: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    transform_all(&mut Decryptor::new(pass), data)
}

/// True when `data` starts like an encrypted stream (`Salted__`), e.g. to hint that a repository
/// is encrypted.
#[must_use]
pub fn is_encrypted(data: &[u8]) -> bool {
    data.starts_with(CIPHER_MAGIC)
}

/// A new sub-passphrase: 48 random bytes as standard base64, 64 characters, as pgBackRest
/// generates for archive.info, backup.info and each full backup.
pub fn try_generate_pass() -> Result<String> {
    let mut bytes = [0u8; 48];
    random(&mut bytes)?;
    Ok(base64(&bytes))
}

/// [`try_generate_pass`] for callers that cannot handle a failure. The operating system's random
/// source does not fail on any supported platform; if it ever does there is no safe fallback, so
/// this aborts the process (with a message) rather than produce a guessable passphrase.
#[must_use]
pub fn generate_pass() -> String {
    match try_generate_pass() {
        Ok(pass) => pass,
        Err(e) => {
            eprintln!("ERROR: [{}]: {}", e.code(), e.message());
            std::process::abort()
        }
    }
}

/// Fill `buf` with OS randomness.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<()> {
    random(buf)
}

fn random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| crate::err!(Crypto, "unable to generate random bytes: {e}"))
}

/// Standard base64 (`+`, `/`, `=` padding).
#[must_use]
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let symbol = |index: u32| char::from(ALPHABET[(index & 0x3f) as usize]);
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let mut word = [0u8; 3];
        word[..group.len()].copy_from_slice(group);
        let n = u32::from(word[0]) << 16 | u32::from(word[1]) << 8 | u32::from(word[2]);
        text.push(symbol(n >> 18));
        text.push(symbol(n >> 12));
        text.push(if group.len() > 1 { symbol(n >> 6) } else { '=' });
        text.push(if group.len() > 2 { symbol(n) } else { '=' });
    }
    text
}

/// OpenSSL `EVP_BytesToKey(aes-256-cbc, sha1, salt, pass, count 1)`: D1 = SHA1(pass‖salt),
/// Di = SHA1(Di-1‖pass‖salt); key = first 32 bytes of D1‖D2‖D3, IV = the next 16.
fn derive_key_iv(pass: &[u8], salt: &[u8]) -> ([u8; 32], [u8; 16]) {
    let mut material = [0u8; 60];
    let mut previous: Option<[u8; 20]> = None;
    for part in material.chunks_mut(20) {
        let mut hasher = Sha1::new();
        if let Some(previous) = previous {
            hasher.update(previous);
        }
        hasher.update(pass);
        hasher.update(salt);
        let digest: [u8; 20] = hasher.finalize().into();
        part.copy_from_slice(&digest);
        previous = Some(digest);
    }
    let mut key = [0u8; 32];
    let mut iv = [0u8; 16];
    key.copy_from_slice(&material[..32]);
    iv.copy_from_slice(&material[32..48]);
    (key, iv)
}

fn encrypt_blocks(cipher: &mut Enc, data: &mut [u8]) {
    let (blocks, _) = Array::<u8, U16>::slice_as_chunks_mut(data);
    cipher.encrypt_blocks(blocks);
}

fn decrypt_blocks(cipher: &mut Dec, data: &mut [u8]) {
    let (blocks, _) = Array::<u8, U16>::slice_as_chunks_mut(data);
    cipher.decrypt_blocks(blocks);
}

/// Streaming encryptor (a [`Transform`]).
pub struct Encryptor {
    cipher: Enc,
    /// Magic and salt, until written.
    header: Option<[u8; CIPHER_HEADER_SIZE]>,
    partial: Vec<u8>,
}

impl Encryptor {
    /// Encrypt with `pass` and a fresh random salt.
    pub fn new(pass: &[u8]) -> Result<Encryptor> {
        let mut salt = [0u8; SALT_SIZE];
        random(&mut salt)?;
        Ok(Encryptor::with_salt(pass, salt))
    }

    /// Encrypt with a chosen salt: reproducible output for tests and comparisons; never reuse a
    /// salt for real data.
    #[must_use]
    pub fn with_salt(pass: &[u8], salt: [u8; SALT_SIZE]) -> Encryptor {
        let (key, iv) = derive_key_iv(pass, &salt);
        let mut header = [0u8; CIPHER_HEADER_SIZE];
        header[..8].copy_from_slice(CIPHER_MAGIC);
        header[8..].copy_from_slice(&salt);
        Encryptor {
            cipher: Enc::new(&key.into(), &iv.into()),
            header: Some(header),
            partial: Vec::with_capacity(BLOCK),
        }
    }

    fn write_header(&mut self, out: &mut Vec<u8>) {
        if let Some(header) = self.header.take() {
            out.extend_from_slice(&header);
        }
    }
}

impl Transform for Encryptor {
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        let input = chunk_of(input);
        self.write_header(out);
        let mut rest = input;
        if !self.partial.is_empty() {
            let (head, tail) = rest.split_at((BLOCK - self.partial.len()).min(rest.len()));
            self.partial.extend_from_slice(head);
            rest = tail;
            if self.partial.len() < BLOCK {
                return Ok(input.len());
            }
            let start = out.len();
            out.extend_from_slice(&self.partial);
            self.partial.clear();
            encrypt_blocks(&mut self.cipher, &mut out[start..]);
        }
        let (whole, tail) = rest.split_at(rest.len() / BLOCK * BLOCK);
        let start = out.len();
        out.extend_from_slice(whole);
        encrypt_blocks(&mut self.cipher, &mut out[start..]);
        self.partial.extend_from_slice(tail);
        Ok(input.len())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        self.write_header(out);
        let pad = BLOCK - self.partial.len();
        let start = out.len();
        out.extend_from_slice(&self.partial);
        out.resize(start + BLOCK, pad as u8);
        self.partial.clear();
        encrypt_blocks(&mut self.cipher, &mut out[start..]);
        Ok(true)
    }
}

/// Streaming decryptor (a [`Transform`]).
pub struct Decryptor {
    pass: Vec<u8>,
    header: Vec<u8>,
    cipher: Option<Dec>,
    /// Ciphertext not yet decrypted: an incomplete block, or the last whole block, which is kept
    /// back because it holds the padding.
    tail: Vec<u8>,
}

impl Decryptor {
    /// Decrypt with `pass`; the salt comes from the stream's header.
    #[must_use]
    pub fn new(pass: &[u8]) -> Decryptor {
        Decryptor {
            pass: pass.to_vec(),
            header: Vec::with_capacity(CIPHER_HEADER_SIZE),
            cipher: None,
            tail: Vec::with_capacity(BLOCK),
        }
    }
}

impl Transform for Decryptor {
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        let input = chunk_of(input);
        let mut rest = input;
        if self.cipher.is_none() {
            let (head, tail) =
                rest.split_at((CIPHER_HEADER_SIZE - self.header.len()).min(rest.len()));
            self.header.extend_from_slice(head);
            rest = tail;
            if self.header.len() < CIPHER_HEADER_SIZE {
                return Ok(input.len());
            }
            let (magic, salt) = self.header.split_at(CIPHER_MAGIC.len());
            if magic != CIPHER_MAGIC {
                crate::bail!(Crypto, "cipher header invalid");
            }
            let (key, iv) = derive_key_iv(&self.pass, salt);
            self.cipher = Some(Dec::new(&key.into(), &iv.into()));
        }
        let Some(cipher) = self.cipher.as_mut() else {
            crate::bail!(Crypto, "cipher header missing");
        };
        let total = self.tail.len() + rest.len();
        if total <= BLOCK {
            self.tail.extend_from_slice(rest);
            return Ok(input.len());
        }
        // keep back an incomplete block, or the last whole block (it holds the padding)
        let keep = match total % BLOCK {
            0 => BLOCK,
            partial => partial,
        };
        let (now, later) = rest.split_at(total - keep - self.tail.len());
        let start = out.len();
        out.extend_from_slice(&self.tail);
        out.extend_from_slice(now);
        self.tail.clear();
        self.tail.extend_from_slice(later);
        decrypt_blocks(cipher, &mut out[start..]);
        Ok(input.len())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        let Some(cipher) = self.cipher.as_mut() else {
            crate::bail!(Crypto, "cipher header missing");
        };
        if self.tail.len() != BLOCK {
            crate::bail!(Crypto, "unable to flush");
        }
        decrypt_blocks(cipher, &mut self.tail);
        let pad = usize::from(self.tail.last().copied().unwrap_or(0));
        let Some(data_len) = BLOCK.checked_sub(pad).filter(|_| pad > 0) else {
            crate::bail!(Crypto, "unable to flush");
        };
        let (data, padding) = self.tail.split_at(data_len);
        if padding.iter().any(|&byte| usize::from(byte) != pad) {
            crate::bail!(Crypto, "unable to flush");
        }
        out.extend_from_slice(data);
        self.tail.clear();
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
