//! Built-in observers: byte count and SHA-1 (pgBackRest's file checksum).
//!
//! Contract: [`Sha1Digest`] prints, serializes and parses as 40 lowercase hex characters, the
//! form used in manifests, archive file names and `backrest-checksum`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha1::Digest;

use super::filter::Observe;
use crate::error::Result;

/// A SHA-1 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Sha1Digest(pub [u8; 20]);

impl Sha1Digest {
    /// The digest of `data`.
    #[must_use]
    pub fn of(data: &[u8]) -> Sha1Digest {
        Sha1Digest(sha1::Sha1::digest(data).into())
    }

    /// 40 lowercase hex characters.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parse 40 hex characters (either case).
    pub fn from_hex(text: &str) -> Result<Sha1Digest> {
        let bytes = text.as_bytes();
        let mut out = [0u8; 20];
        if bytes.len() != 40 {
            crate::bail!(Format, "invalid sha1 '{text}': expected 40 hex characters");
        }
        for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            match (hex_value(pair[0]), hex_value(pair[1])) {
                (Some(hi), Some(lo)) => *byte = hi << 4 | lo,
                _ => crate::bail!(Format, "invalid sha1 '{text}': not hex"),
            }
        }
        Ok(Sha1Digest(out))
    }

    /// The raw 20 bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

/// SHA-1 of `data` in one call.
#[must_use]
pub fn sha1(data: &[u8]) -> Sha1Digest {
    Sha1Digest::of(data)
}

/// Lowercase hex of any bytes.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Sha1Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha1Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha1Digest({})", self.to_hex())
    }
}

impl Serialize for Sha1Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha1Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Sha1Digest::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// Observer: SHA-1 of the bytes at its position.
#[derive(Default, Clone)]
pub struct Sha1Observer(sha1::Sha1);

impl Sha1Observer {
    /// A fresh hasher.
    #[must_use]
    pub fn new() -> Sha1Observer {
        Sha1Observer::default()
    }
}

impl Observe for Sha1Observer {
    type Output = Sha1Digest;

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finish(&mut self) -> Result<Sha1Digest> {
        Ok(Sha1Digest(std::mem::take(&mut self.0).finalize().into()))
    }
}

/// Observer: number of bytes at its position.
#[derive(Default, Clone, Copy)]
pub struct SizeObserver(u64);

impl SizeObserver {
    /// A counter at zero.
    #[must_use]
    pub fn new() -> SizeObserver {
        SizeObserver(0)
    }
}

impl Observe for SizeObserver {
    type Output = u64;

    fn update(&mut self, data: &[u8]) {
        self.0 += data.len() as u64;
    }

    fn finish(&mut self) -> Result<u64> {
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_known_vectors() {
        assert_eq!(
            sha1(b"").to_hex(),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        assert_eq!(
            sha1(b"abc").to_hex(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            sha1(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").to_hex(),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        // one million 'a' fed in uneven pieces
        let mut observer = Sha1Observer::new();
        let data = vec![b'a'; 1_000_000];
        for piece in data.chunks(99_991) {
            Observe::update(&mut observer, piece);
        }
        assert_eq!(
            Observe::finish(&mut observer).unwrap().to_hex(),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }

    #[test]
    fn hex_round_trip_and_rejects_bad_text() {
        let digest = sha1(b"15\n");
        assert_eq!(Sha1Digest::from_hex(&digest.to_hex()).unwrap(), digest);
        assert_eq!(
            Sha1Digest::from_hex(&digest.to_hex().to_uppercase()).unwrap(),
            digest
        );
        assert!(Sha1Digest::from_hex("abc").is_err());
        assert!(Sha1Digest::from_hex(&"zz".repeat(20)).is_err());
        assert!(Sha1Digest::from_hex(&"é".repeat(20)).is_err());
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, format!("\"{digest}\""));
        assert_eq!(serde_json::from_str::<Sha1Digest>(&json).unwrap(), digest);
    }

    #[test]
    fn size_counts_bytes() {
        let mut size = SizeObserver::new();
        Observe::update(&mut size, b"abc");
        Observe::update(&mut size, &[0; 1000]);
        assert_eq!(Observe::finish(&mut size).unwrap(), 1003);
    }
}
