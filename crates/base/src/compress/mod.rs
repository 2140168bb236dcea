//! Compression types and their streaming codecs, as pgBackRest 2.45 stores files.
//!
//! Contract:
//! - Compressors write what pgBackRest writes: gz = gzip member with mtime 0 and OS 3 (zlib's
//!   own header, XFL from the level); lz4 = LZ4 frame, 64 KiB linked blocks, content checksum;
//!   zst = one zstd frame without content checksum or size, as pgBackRest writes it (WAL segments
//!   may use [`CompressType::wal_compressor`]'s other layouts; see `zst.rs`); bz2 = bzip2
//!   stream. Empty input gives a valid empty stream (gz: the 20-byte member pgBackRest stores for
//!   zero-length files).
//! - Decompressors accept any conformant stream of their format, including several
//!   members/frames one after another (and skippable lz4/zstd frames), and emit output in bounded
//!   pieces. Empty or truncated input is `FormatError` "unexpected eof in compressed data";
//!   corrupt input is `FormatError` naming the library's complaint. Nothing panics on input.
//! - `xz` is recognised (pgBackRest reserves the extension) and refused with a clear error.

mod bz2;
mod gz;
mod lz4;
mod zst;

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::{Transform, transform_all};

/// pgBackRest's `compress-type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressType {
    /// No compression: raw bytes, no extension.
    None,
    /// gzip (`.gz`), pgBackRest's default.
    Gz,
    /// bzip2 (`.bz2`).
    Bz2,
    /// LZ4 frame (`.lz4`).
    Lz4,
    /// Zstandard (`.zst`).
    Zst,
}

impl CompressType {
    /// Every type, `None` first.
    pub const ALL: [CompressType; 5] = [
        CompressType::None,
        CompressType::Gz,
        CompressType::Bz2,
        CompressType::Lz4,
        CompressType::Zst,
    ];

    /// Option value: `none`, `gz`, `bz2`, `lz4`, `zst`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            CompressType::None => "none",
            CompressType::Gz => "gz",
            CompressType::Bz2 => "bz2",
            CompressType::Lz4 => "lz4",
            CompressType::Zst => "zst",
        }
    }

    /// File extension with its dot; empty for `None`.
    #[must_use]
    pub fn ext(self) -> &'static str {
        match self {
            CompressType::None => "",
            CompressType::Gz => ".gz",
            CompressType::Bz2 => ".bz2",
            CompressType::Lz4 => ".lz4",
            CompressType::Zst => ".zst",
        }
    }

    /// The type for an option value. `xz` is refused as unsupported.
    pub fn from_name(name: &str) -> Result<CompressType> {
        match CompressType::ALL.into_iter().find(|ty| ty.name() == name) {
            Some(ty) => Ok(ty),
            None if name == "xz" => crate::bail!(
                OptionInvalidValue,
                "compress type 'xz' is not supported by pgkeep (nor by pgBackRest 2.45)"
            ),
            None => crate::bail!(OptionInvalidValue, "invalid compress type '{name}'"),
        }
    }

    /// The type for an extension, with or without its dot (`""` is `None`). `.xz` is refused.
    pub fn from_ext(ext: &str) -> Result<CompressType> {
        let bare = ext.strip_prefix('.').unwrap_or(ext);
        match CompressType::ALL
            .into_iter()
            .find(|ty| ty.ext().trim_start_matches('.') == bare)
        {
            Some(ty) => Ok(ty),
            None if bare == "xz" => {
                crate::bail!(Format, "xz compression (extension '.xz') is not supported")
            }
            None => crate::bail!(Format, "unknown compression extension '{ext}'"),
        }
    }

    /// The type implied by a file name's extension (pgBackRest's `compressTypeFromName`): a name
    /// without a compression extension is `None`; a `.xz` name is refused.
    pub fn from_file_name(name: &str) -> Result<CompressType> {
        if name.ends_with(".xz") {
            crate::bail!(
                Format,
                "file '{name}' is compressed with xz, which is not supported"
            );
        }
        Ok(CompressType::ALL
            .into_iter()
            .skip(1)
            .find(|ty| name.ends_with(ty.ext()))
            .unwrap_or(CompressType::None))
    }

    /// pgBackRest's default `compress-level` for this type (0 for `None`).
    #[must_use]
    pub fn default_level(self) -> i32 {
        match self {
            CompressType::None => 0,
            CompressType::Gz => 6,
            CompressType::Bz2 => 9,
            CompressType::Lz4 => 1,
            CompressType::Zst => 3,
        }
    }

    /// Levels pgBackRest accepts for this type.
    #[must_use]
    pub fn level_range(self) -> RangeInclusive<i32> {
        match self {
            CompressType::None => 0..=0,
            CompressType::Gz => -1..=9,
            CompressType::Bz2 => 1..=9,
            CompressType::Lz4 => -5..=12,
            CompressType::Zst => -7..=22,
        }
    }

    /// A streaming compressor at `level`; `None` for [`CompressType::None`].
    ///
    /// lz4: `lz4_flex` has a single fast mode, so every level produces the same (standard) frame;
    /// pgBackRest's levels only trade speed for size there, so output stays readable everywhere.
    pub fn compressor(self, level: i32) -> Result<Option<Box<dyn Transform>>> {
        let range = self.level_range();
        if self != CompressType::None && !range.contains(&level) {
            crate::bail!(
                OptionInvalidValue,
                "compress level {level} is out of range for '{self}' ({}..{})",
                range.start(),
                range.end()
            );
        }
        Ok(match self {
            CompressType::None => None,
            CompressType::Gz => Some(Box::new(gz::GzCompress::new(level))),
            CompressType::Bz2 => Some(Box::new(bz2::Bz2Compress::new(level))),
            CompressType::Lz4 => Some(Box::new(lz4::Lz4Compress::new())),
            CompressType::Zst => Some(Box::new(zst::ZstCompress::new(level)?)),
        })
    }

    /// The compressor of WAL segments, where CPU per segment is what counts. zst with several
    /// `workers` compresses one ordinary frame on that many threads (sync push: one segment at a
    /// time); zst with one worker writes independent 512 KiB frames (async push: one segment per
    /// worker; see the `zst` module). Other types are [`CompressType::compressor`]. Every layout is read
    /// by every decompressor; none is byte-identical to pgBackRest's beyond 512 KiB.
    pub fn wal_compressor(self, level: i32, workers: u32) -> Result<Option<Box<dyn Transform>>> {
        if self != CompressType::Zst {
            return self.compressor(level);
        }
        self.compressor(level)?;
        Ok(Some(Box::new(if workers > 1 {
            zst::ZstCompress::with_workers(level, workers)?
        } else {
            zst::ZstCompress::framed(level)?
        })))
    }

    /// A streaming decompressor; `None` for [`CompressType::None`].
    pub fn decompressor(self) -> Result<Option<Box<dyn Transform>>> {
        Ok(match self {
            CompressType::None => None,
            CompressType::Gz => Some(Box::new(gz::GzDecompress::new())),
            CompressType::Bz2 => Some(Box::new(bz2::Bz2Decompress::new())),
            CompressType::Lz4 => Some(Box::new(lz4::Lz4Decompress::new())),
            CompressType::Zst => Some(Box::new(zst::ZstDecompress::new()?)),
        })
    }
}

impl fmt::Display for CompressType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CompressType {
    type Err = Error;

    fn from_str(name: &str) -> Result<CompressType> {
        CompressType::from_name(name)
    }
}

/// Compress a whole buffer (for manifests and other small files).
pub fn compress(ty: CompressType, level: i32, data: &[u8]) -> Result<Vec<u8>> {
    match ty.compressor(level)? {
        Some(mut compressor) => transform_all(compressor.as_mut(), data),
        None => Ok(data.to_vec()),
    }
}

/// Decompress a whole buffer (for manifests and other small files).
pub fn decompress(ty: CompressType, data: &[u8]) -> Result<Vec<u8>> {
    match ty.decompressor()? {
        Some(mut decompressor) => transform_all(decompressor.as_mut(), data),
        None => Ok(data.to_vec()),
    }
}

/// pgBackRest's message for a stream that stops early (also for an empty "compressed" file).
pub(crate) fn unexpected_eof() -> Error {
    crate::err!(Format, "unexpected eof in compressed data")
}

#[cfg(test)]
pub(crate) mod tests;
