//! The two kinds of filter and the data that describes them.
//!
//! Contract: an *observer* ([`Observe`]) sees bytes and produces one result at the end; it never
//! changes the stream. A *transform* ([`Transform`]) turns input bytes into output bytes
//! (compress, encrypt, ...). Every filter a [`super::Chain`] holds is described by a
//! [`FilterSpec`], so a chain can be sent somewhere as data and rebuilt there; filters defined in
//! other crates travel as [`FilterSpec::Custom`] and are rebuilt by a [`FilterFactory`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::CHUNK_SIZE;
use crate::compress::CompressType;
use crate::error::Result;

/// A filter that watches the bytes at its position in a chain and yields a result once the
/// stream has ended (byte count, SHA-1, a page-checksum report...).
///
/// The result type is serializable so results can cross a process boundary with the stream.
pub trait Observe: Send {
    /// The value this observer yields.
    type Output: Serialize + DeserializeOwned;

    /// See the next bytes of the stream. Called with non-empty slices, in stream order.
    fn update(&mut self, data: &[u8]);

    /// The result, called once after the last [`Observe::update`].
    fn finish(&mut self) -> Result<Self::Output>;
}

/// An [`Observe`] with its result type erased to JSON; what a chain stores. Implemented for
/// every [`Observe`], so implement that instead.
pub trait DynObserve: Send {
    /// See [`Observe::update`].
    fn update(&mut self, data: &[u8]);
    /// The result as a JSON value.
    fn finish_value(&mut self) -> Result<serde_json::Value>;
}

impl<O: Observe> DynObserve for O {
    fn update(&mut self, data: &[u8]) {
        Observe::update(self, data);
    }

    fn finish_value(&mut self) -> Result<serde_json::Value> {
        let output = Observe::finish(self)?;
        serde_json::to_value(output)
            .map_err(|e| crate::err!(Assert, "unable to serialize filter result: {e}"))
    }
}

/// A filter that turns a byte stream into another one.
///
/// The chain calls [`Transform::process`] until all input is consumed, then
/// [`Transform::finish`] until it returns `true`. Each call must consume input or append output
/// (a call that does neither is reported as an error rather than looping). To keep memory bounded
/// whatever the compression ratio, a transform appends about [`CHUNK_SIZE`] bytes per call at
/// most and keeps the rest inside until the next call; it consumes at most about `CHUNK_SIZE`
/// bytes of input per call too.
pub trait Transform: Send {
    /// Consume a prefix of `input` (never empty) and append output to `out`, which may already
    /// hold bytes. Returns how many input bytes were consumed.
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize>;

    /// After the last input: append what is left (held-back output, trailers, padding) and
    /// return `true` once nothing remains. Errors if the input was incomplete.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<bool>;
}

/// A filter described as data. A chain built from the same specs (and the same custom
/// factory) behaves identically wherever it is built.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "filter", rename_all = "kebab-case")]
pub enum FilterSpec {
    /// Observer: number of bytes (`u64`).
    Size,
    /// Observer: SHA-1 of the bytes ([`super::Sha1Digest`]).
    Sha1,
    /// Transform: compress with `ty` at `level` (a no-op for [`CompressType::None`]).
    Compress {
        /// Compression type.
        ty: CompressType,
        /// Level, within [`CompressType::level_range`].
        level: i32,
    },
    /// Transform: decompress `ty` (a no-op for [`CompressType::None`]).
    Decompress {
        /// Compression type.
        ty: CompressType,
    },
    /// Transform: aes-256-cbc encrypt with a passphrase (OpenSSL `Salted__` framing).
    Encrypt {
        /// Passphrase (raw bytes of the configured string or sub-passphrase).
        pass: String,
    },
    /// Transform: aes-256-cbc decrypt with a passphrase.
    Decrypt {
        /// Passphrase.
        pass: String,
    },
    /// A filter defined in another crate, rebuilt by a [`FilterFactory`].
    Custom {
        /// Name the factory knows the filter by, e.g. `page-checksum`.
        name: String,
        /// Parameters the factory needs to rebuild it.
        params: serde_json::Value,
    },
}

impl FilterSpec {
    /// Compress with `ty` at its default level.
    #[must_use]
    pub fn compress(ty: CompressType) -> FilterSpec {
        FilterSpec::Compress {
            ty,
            level: ty.default_level(),
        }
    }

    /// Short name for messages and debugging (never shows a passphrase).
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            FilterSpec::Size => "size".to_string(),
            FilterSpec::Sha1 => "sha1".to_string(),
            FilterSpec::Compress { ty, level } => format!("compress-{ty}:{level}"),
            FilterSpec::Decompress { ty } => format!("decompress-{ty}"),
            FilterSpec::Encrypt { .. } => "encrypt-aes-256-cbc".to_string(),
            FilterSpec::Decrypt { .. } => "decrypt-aes-256-cbc".to_string(),
            FilterSpec::Custom { name, .. } => name.clone(),
        }
    }
}

/// Passphrases are redacted so a spec can be logged.
impl std::fmt::Debug for FilterSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilterSpec::Custom { name, params } => write!(f, "Custom({name}, {params})"),
            other => f.write_str(&other.name()),
        }
    }
}

/// A custom filter instance built by a [`FilterFactory`].
pub enum CustomFilter {
    /// An observer.
    Observe(Box<dyn DynObserve>),
    /// A transform.
    Transform(Box<dyn Transform>),
}

/// Rebuilds [`FilterSpec::Custom`] filters (page checksum, block incremental, ...) where a chain
/// is rebuilt from specs, e.g. on a remote.
pub trait FilterFactory {
    /// The filter named `name` built from `params`, or `None` if this factory does not know it.
    fn build(&self, name: &str, params: &serde_json::Value) -> Result<Option<CustomFilter>>;
}

/// Run a whole buffer through one transform and return all of its output — for small things
/// (info files, manifests) that are handled in memory anyway.
pub fn transform_all(transform: &mut dyn Transform, data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len().clamp(64, CHUNK_SIZE));
    transform_all_into(transform, data, &mut out)?;
    Ok(out)
}

/// [`transform_all`] appending to `out`, whose capacity is reused.
fn transform_all_into(transform: &mut dyn Transform, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let mut pos = 0;
    while let Some(rest) = data.get(pos..).filter(|rest| !rest.is_empty()) {
        let before = out.len();
        let used = transform.process(rest, out)?;
        if used > rest.len() || (used == 0 && out.len() == before) {
            crate::bail!(Assert, "filter made no progress");
        }
        pos += used;
    }
    loop {
        let before = out.len();
        if transform.finish(out)? {
            return Ok(());
        }
        if out.len() == before {
            crate::bail!(Assert, "filter made no progress");
        }
    }
}

/// Make room for about one chunk of output at the end of `out`.
pub(crate) fn reserve_chunk(out: &mut Vec<u8>) {
    out.reserve(CHUNK_SIZE);
}

/// At most one chunk of `input`: transforms consume input in bounded steps.
pub(crate) fn chunk_of(input: &[u8]) -> &[u8] {
    input.get(..CHUNK_SIZE).unwrap_or(input)
}
