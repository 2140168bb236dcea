//! Zstandard through the `zstd` crate (libzstd), compressed as pgBackRest does: libzstd's
//! streaming compressor at the configured level, no content size, no content checksum.
//!
//! Two layouts, both read by every zstd decoder (pgBackRest's `ZSTD_decompressStream` loop
//! included; the decoder moves on to the next frame by itself and skips skippable frames):
//! - [`ZstCompress::new`]: one frame, byte-identical to pgBackRest's. Backups use it: their files
//!   can hold redundancy further apart than a frame (on the backup benchmark's text relations,
//!   512 KiB frames made the repository 10% larger, one 64 MiB sample 2.9 times larger).
//! - [`ZstCompress::framed`]: a new independent frame after every [`FRAME_INPUT`] bytes of input,
//!   for WAL segments. The streaming compressor keeps its window (2 MiB at level 3) in a ring
//!   buffer; once that wraps, blocks take libzstd's slower external-dictionary path and the match
//!   search misses the CPU cache. A frame per 512 KiB never wraps: on 16 MiB segments at level 3,
//!   25% less CPU than one frame (45 vs 58 ms for the archive benchmark's segments, 13 vs 17 ms for
//!   pgbench's) for the history lost at frame edges (1% smaller on the former, 1.4% larger on the
//!   latter). A segment is written once and read at most once, so CPU is what counts there.

use zstd::stream::raw::{Decoder, Encoder, InBuffer, Operation, OutBuffer};

use super::unexpected_eof;
use crate::error::Result;
use crate::io::{Transform, chunk_of, reserve_chunk};

/// Input bytes per frame (see the module header).
pub(crate) const FRAME_INPUT: usize = 512 * 1024;

fn zst_error(err: &std::io::Error) -> crate::Error {
    crate::err!(Format, "zst error: {err}")
}

pub(crate) struct ZstCompress {
    encoder: Encoder<'static>,
    /// Input bytes the current frame holds.
    frame_in: usize,
    /// Input bytes after which a frame ends; `usize::MAX` keeps one frame (pgBackRest's layout,
    /// and multi-threaded mode, whose workers split the frame themselves).
    frame_max: usize,
}

impl ZstCompress {
    /// One frame, as pgBackRest writes it.
    pub(crate) fn new(level: i32) -> Result<ZstCompress> {
        let encoder = Encoder::new(level).map_err(|e| zst_error(&e))?;
        Ok(ZstCompress {
            encoder,
            frame_in: 0,
            frame_max: usize::MAX,
        })
    }

    /// A new frame every [`FRAME_INPUT`] bytes of input (see the module header).
    pub(crate) fn framed(level: i32) -> Result<ZstCompress> {
        let mut compress = ZstCompress::new(level)?;
        compress.frame_max = FRAME_INPUT;
        Ok(compress)
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
        Ok(ZstCompress {
            encoder,
            frame_in: 0,
            frame_max: usize::MAX,
        })
    }

    /// Write the end of the current frame; returns true once it is all in `out`.
    fn end_frame(&mut self, out: &mut Vec<u8>) -> Result<bool> {
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

/// Job size of multi-threaded compression: small enough that a 16 MiB segment keeps two workers
/// busy, large enough that the ratio does not suffer.
const MT_JOB_SIZE: u32 = 2 * 1024 * 1024;

impl Transform for ZstCompress {
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        if self.frame_in >= self.frame_max {
            // the frame is full: end it (appending output, taking no input) before the next one
            if self.end_frame(out)? {
                self.encoder.reinit().map_err(|e| zst_error(&e))?;
                self.frame_in = 0;
            }
            return Ok(0);
        }
        let room = self.frame_max - self.frame_in;
        let input = chunk_of(input);
        let mut input = InBuffer::around(input.get(..room).unwrap_or(input));
        reserve_chunk(out);
        let pos = out.len();
        let mut output = OutBuffer::around_pos(out, pos);
        self.encoder
            .run(&mut input, &mut output)
            .map_err(|e| zst_error(&e))?;
        self.frame_in += input.pos();
        Ok(input.pos())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        self.end_frame(out)
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
