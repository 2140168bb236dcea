//! A file checksum as the manifest holds it (`checksum`, `rck`): the 20 bytes of a SHA-1 instead of its 40 hex
//! characters in a heap string, since a large manifest holds two per file.
//!
//! Contract:
//! - Text that is exactly 40 lowercase hex digits (everything pgBackRest and pgkeep write) is held as 20 bytes and
//!   renders back to the same 40 characters. Any other text (a damaged or foreign manifest) is kept verbatim, so a
//!   load/save round trip stays byte-identical whatever the file held.
//! - Equality is that of the text: the bytes form is used exactly when the text is canonical, so two checksums are
//!   equal if and only if their texts are.

use std::fmt;

use pgkeep_base::io::Sha1Digest;

/// A `checksum`/`rck` value of `[target:file]`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Checksum(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    /// Canonical: 40 lowercase hex digits.
    Sha1([u8; 20]),
    /// Anything else, as found.
    Text(Box<str>),
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn decode(text: &str) -> Option<[u8; 20]> {
    let bytes = text.as_bytes();
    if bytes.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let (hi, lo) = match pair {
            [hi, lo] => (nibble(*hi)?, nibble(*lo)?),
            _ => return None,
        };
        *slot = hi << 4 | lo;
    }
    Some(out)
}

impl Checksum {
    /// The checksum of `text` (see the module contract for non-canonical text).
    #[must_use]
    pub fn parse(text: &str) -> Self {
        match decode(text) {
            Some(bytes) => Checksum(Repr::Sha1(bytes)),
            None => Checksum(Repr::Text(text.into())),
        }
    }

    /// The checksum of a SHA-1 digest.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 20]) -> Self {
        Checksum(Repr::Sha1(bytes))
    }

    /// The SHA-1 of zero bytes ([`super::EMPTY_SHA1`]).
    #[must_use]
    pub fn empty() -> Self {
        Checksum::parse(super::EMPTY_SHA1)
    }

    /// The 20 bytes, when the text was a canonical SHA-1.
    #[must_use]
    pub fn as_bytes(&self) -> Option<&[u8; 20]> {
        match &self.0 {
            Repr::Sha1(bytes) => Some(bytes),
            Repr::Text(_) => None,
        }
    }

    /// True when the text is `text`, compared without building a string.
    #[must_use]
    pub fn is(&self, text: &str) -> bool {
        match &self.0 {
            Repr::Sha1(bytes) => {
                text.len() == 40
                    && bytes
                        .iter()
                        .zip(text.as_bytes().chunks_exact(2))
                        .all(|(b, pair)| pair == [hex_hi(*b), hex_lo(*b)])
            }
            Repr::Text(own) => **own == *text,
        }
    }

    /// Append the value as a JSON string.
    pub(crate) fn write_json(&self, out: &mut String) {
        match &self.0 {
            Repr::Sha1(bytes) => {
                out.push('"');
                push_hex(out, bytes);
                out.push('"');
            }
            Repr::Text(text) => crate::info::json::write_string(out, text),
        }
    }
}

fn hex_hi(b: u8) -> u8 {
    HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0')
}

fn hex_lo(b: u8) -> u8 {
    HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0')
}

fn push_hex(out: &mut String, bytes: &[u8; 20]) {
    for b in bytes {
        out.push(char::from(hex_hi(*b)));
        out.push(char::from(hex_lo(*b)));
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Sha1(bytes) => {
                let mut text = String::with_capacity(40);
                push_hex(&mut text, bytes);
                f.write_str(&text)
            }
            Repr::Text(text) => f.write_str(text),
        }
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({:?})", self.to_string())
    }
}

impl From<&str> for Checksum {
    fn from(text: &str) -> Self {
        Checksum::parse(text)
    }
}

impl From<String> for Checksum {
    fn from(text: String) -> Self {
        match decode(&text) {
            Some(bytes) => Checksum(Repr::Sha1(bytes)),
            None => Checksum(Repr::Text(text.into_boxed_str())),
        }
    }
}

impl From<Sha1Digest> for Checksum {
    fn from(digest: Sha1Digest) -> Self {
        Checksum::from_bytes(digest.0)
    }
}

impl PartialEq<str> for Checksum {
    fn eq(&self, other: &str) -> bool {
        self.is(other)
    }
}

impl PartialEq<&str> for Checksum {
    fn eq(&self, other: &&str) -> bool {
        self.is(other)
    }
}

impl PartialEq<String> for Checksum {
    fn eq(&self, other: &String) -> bool {
        self.is(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_is_held_as_bytes_and_renders_back() {
        let text = "587b596f04f7db9c2cad3d6b87dd2b3a05de4f35";
        let c = Checksum::parse(text);
        assert!(c.as_bytes().is_some());
        assert_eq!(c.to_string(), text);
        assert!(c == text);
        assert!(c != "587b596f04f7db9c2cad3d6b87dd2b3a05de4f36");
        let mut json = String::new();
        c.write_json(&mut json);
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(Checksum::from(text.to_string()), c);
    }

    #[test]
    fn other_text_is_kept_verbatim() {
        for text in [
            "587B596F04F7DB9C2CAD3D6B87DD2B3A05DE4F35",
            "abc",
            "",
            "ab\\c",
            "587b596f04f7db9c2cad3d6b87dd2b3a05de4f3",
            "587b596f04f7db9c2cad3d6b87dd2b3a05de4f3g",
        ] {
            let c = Checksum::from(text);
            assert!(c.as_bytes().is_none(), "{text}");
            assert_eq!(c.to_string(), text);
            assert!(c == text);
            assert!(c != Checksum::empty());
        }
        let mut json = String::new();
        Checksum::from("ab\\c").write_json(&mut json);
        assert_eq!(json, "\"ab\\\\c\"");
    }

    #[test]
    fn empty_and_digest() {
        assert_eq!(Checksum::empty().to_string(), super::super::EMPTY_SHA1);
        let d = pgkeep_base::io::sha1(b"");
        assert_eq!(Checksum::from(d), Checksum::empty());
    }
}
