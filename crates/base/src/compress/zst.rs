//! Zstandard through the `zstd` crate (libzstd): one frame per stream, no content checksum and
//! no content size (streaming, as pgBackRest's `ZSTD_initCStream`); the decoder moves on to the
//! next frame by itself and skips skippable frames.

use zstd::stream::raw::{Decoder, Encoder, InBuffer, Operation, OutBuffer};

use super::unexpected_eof;
use crate::error::Result;
use crate::io::{Transform, chunk_of, reserve_chunk};

fn zst_error(err: &std::io::Error) -> crate::Error {
    crate::err!(Format, "zst error: {err}")
}

pub(crate) struct ZstCompress {
    encoder: Encoder<'static>,
}

impl ZstCompress {
    pub(crate) fn new(level: i32) -> Result<ZstCompress> {
        let encoder = Encoder::new(level).map_err(|e| zst_error(&e))?;
        Ok(ZstCompress { encoder })
    }

    /// libzstd's multi-threaded streaming: `workers` threads compress 2 MiB jobs of the same
    /// single frame (still no content size or checksum), so one stream uses several cores.
    pub(crate) fn with_workers(level: i32, workers: u32) -> Result<ZstCompress> {
        use zstd::stream::raw::CParameter;
        let mut encoder = Encoder::new(level).map_err(|e| zst_error(&e))?;
        if workers > 1 {
            encoder
                .set_parameter(CParameter::NbWorkers(workers))
                .and_then(|()| encoder.set_parameter(CParameter::JobSize(MT_JOB_SIZE)))
                .map_err(|e| zst_error(&e))?;
        }
        Ok(ZstCompress { encoder })
    }
}

/// Compress all of `data` into `out` (cleared first, capacity reused) with libzstd's one-shot API:
/// the frame format of [`ZstCompress`] (no content size, no checksum) without the streaming
/// window copy, whose wrap-around makes most blocks take the slower external-dictionary path.
pub(crate) fn compress_all(level: i32, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
    use zstd::stream::raw::CParameter;
    let mut compressor = zstd::bulk::Compressor::new(level).map_err(|e| zst_error(&e))?;
    compressor
        .set_parameter(CParameter::ContentSizeFlag(false))
        .map_err(|e| zst_error(&e))?;
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(data.len()));
    compressor
        .compress_to_buffer(data, out)
        .map_err(|e| zst_error(&e))?;
    Ok(())
}

/// Job size of multi-threaded compression: small enough that a 16 MiB segment keeps two workers
/// busy, large enough that the ratio does not suffer.
const MT_JOB_SIZE: u32 = 2 * 1024 * 1024;

impl Transform for ZstCompress {
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        let mut input = InBuffer::around(chunk_of(input));
        reserve_chunk(out);
        let pos = out.len();
        let mut output = OutBuffer::around_pos(out, pos);
        self.encoder
            .run(&mut input, &mut output)
            .map_err(|e| zst_error(&e))?;
        Ok(input.pos())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        reserve_chunk(out);
        let pos = out.len();
        let mut output = OutBuffer::around_pos(out, pos);
        let remaining = self
            .encoder
            .finish(&mut output, false)
            .map_err(|e| zst_error(&e))?;
        Ok(remaining == 0)
    }
}

pub(crate) struct ZstDecompress {
    decoder: Decoder<'static>,
    /// The last frame ended and all of its output was delivered.
    frame_done: bool,
    started: bool,
}

impl ZstDecompress {
    pub(crate) fn new() -> Result<ZstDecompress> {
        let decoder = Decoder::new().map_err(|e| zst_error(&e))?;
        Ok(ZstDecompress {
            decoder,
            frame_done: false,
            started: false,
        })
    }

    /// One step; returns (input consumed, output produced).
    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, usize)> {
        let mut input = InBuffer::around(input);
        reserve_chunk(out);
        let pos = out.len();
        let mut output = OutBuffer::around_pos(out, pos);
        let hint = self
            .decoder
            .run(&mut input, &mut output)
            .map_err(|e| zst_error(&e))?;
        let produced = output.pos() - pos;
        self.frame_done = hint == 0;
        Ok((input.pos(), produced))
    }
}

impl Transform for ZstDecompress {
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        self.started = true;
        Ok(self.step(input, out)?.0)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        if !self.started {
            return Err(unexpected_eof());
        }
        if self.frame_done {
            return Ok(true);
        }
        let (_, produced) = self.step(&[], out)?;
        if self.frame_done {
            return Ok(true);
        }
        if produced == 0 {
            return Err(unexpected_eof());
        }
        Ok(false)
    }
}
