//! gzip through flate2's zlib-rs backend, using zlib's own gzip wrapper (windowBits 15 + 16) as
//! pgBackRest does: header mtime 0, OS 3, XFL from the level; members are decoded one after
//! another until the input ends.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::unexpected_eof;
use crate::error::Result;
use crate::io::{Transform, chunk_of, reserve_chunk};

const WINDOW_BITS: u8 = 15;

pub(crate) struct GzCompress {
    stream: Compress,
}

impl GzCompress {
    /// `level` -1 is zlib's default (6).
    pub(crate) fn new(level: i32) -> GzCompress {
        let level = u32::try_from(level).unwrap_or(6).min(9);
        GzCompress {
            stream: Compress::new_gzip(Compression::new(level), WINDOW_BITS),
        }
    }
}

impl Transform for GzCompress {
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        let input = chunk_of(input);
        reserve_chunk(out);
        let before = self.stream.total_in();
        self.stream
            .compress_vec(input, out, FlushCompress::None)
            .map_err(|e| crate::err!(Assert, "zlib threw error: {e}"))?;
        Ok((self.stream.total_in() - before) as usize)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        reserve_chunk(out);
        let status = self
            .stream
            .compress_vec(&[], out, FlushCompress::Finish)
            .map_err(|e| crate::err!(Assert, "zlib threw error: {e}"))?;
        Ok(status == Status::StreamEnd)
    }
}

pub(crate) struct GzDecompress {
    stream: Decompress,
    /// The current member has ended; more input starts a new one.
    member_done: bool,
    started: bool,
}

impl GzDecompress {
    pub(crate) fn new() -> GzDecompress {
        GzDecompress {
            stream: Decompress::new_gzip(WINDOW_BITS),
            member_done: false,
            started: false,
        }
    }

    fn run(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Status> {
        self.stream
            .decompress_vec(input, out, FlushDecompress::None)
            .map_err(|e| {
                crate::err!(
                    Format,
                    "zlib threw error: {}",
                    e.message().unwrap_or("invalid compressed data")
                )
            })
    }
}

impl Transform for GzDecompress {
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        if self.member_done {
            self.stream = Decompress::new_gzip(WINDOW_BITS);
            self.member_done = false;
        }
        self.started = true;
        reserve_chunk(out);
        let before = self.stream.total_in();
        if self.run(input, out)? == Status::StreamEnd {
            self.member_done = true;
        }
        Ok((self.stream.total_in() - before) as usize)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        if !self.started {
            return Err(unexpected_eof());
        }
        if self.member_done {
            return Ok(true);
        }
        // output zlib held back because the last call's buffer was full
        reserve_chunk(out);
        let before = out.len();
        if self.run(&[], out)? == Status::StreamEnd {
            self.member_done = true;
            return Ok(true);
        }
        if out.len() == before {
            return Err(unexpected_eof());
        }
        Ok(false)
    }
}
