//! The one door from the repository model to block encryption: whole-buffer encrypt/decrypt in pgBackRest's
//! OpenSSL `Salted__` aes-256-cbc format.
//!
//! Contract: `pass` is the raw bytes of the passphrase text (sub-passphrases are used as their base64 text, never
//! decoded). Errors are `Crypto` (95).

use pgkeep_base::Result;

/// Encrypt a whole buffer.
///
/// # Errors
/// `Crypto` when encryption fails.
pub fn encrypt(pass: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    pgkeep_base::crypto::encrypt(pass, data)
}

/// Decrypt a whole buffer.
///
/// # Errors
/// `Crypto` for a missing header, a wrong passphrase (bad padding) or truncated data.
pub fn decrypt(pass: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    pgkeep_base::crypto::decrypt(pass, data)
}
