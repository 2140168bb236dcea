//! bzip2 through the `bzip2` crate (pure-Rust libbz2 port): `BZh` + level digit; streams are
//! decoded one after another until the input ends.

use bzip2::{Action, Compress, Compression, Decompress, Status};

use super::unexpected_eof;
use crate::error::{Error, ErrorKind, Result};
use crate::io::{Transform, chunk_of, reserve_chunk};

pub(crate) struct Bz2Compress {
    stream: Compress,
}

impl Bz2Compress {
    pub(crate) fn new(level: i32) -> Bz2Compress {
        let level = u32::try_from(level).unwrap_or(9).clamp(1, 9);
        Bz2Compress {
            // work factor 0 = the library default (30), as pgBackRest passes
            stream: Compress::new(Compression::new(level), 0),
        }
    }
}

fn bz2_error(err: bzip2::Error) -> Error {
    let (kind, code, text) = match err {
        bzip2::Error::Sequence => (ErrorKind::Assert, -1, "sequence error"),
        bzip2::Error::Param => (ErrorKind::Assert, -2, "param error"),
        bzip2::Error::Data => (ErrorKind::Format, -4, "data error"),
        bzip2::Error::DataMagic => (ErrorKind::Format, -5, "data error magic"),
    };
    Error::new(kind, format!("bz2 error: [{code}] {text}"))
}

impl Transform for Bz2Compress {
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        let input = chunk_of(input);
        reserve_chunk(out);
        let before = self.stream.total_in();
        self.stream
            .compress_vec(input, out, Action::Run)
            .map_err(bz2_error)?;
        Ok((self.stream.total_in() - before) as usize)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        reserve_chunk(out);
        let status = self
            .stream
            .compress_vec(&[], out, Action::Finish)
            .map_err(bz2_error)?;
        Ok(status == Status::StreamEnd)
    }
}

pub(crate) struct Bz2Decompress {
    stream: Decompress,
    /// The current stream has ended; more input starts a new one.
    stream_done: bool,
    started: bool,
}

impl Bz2Decompress {
    pub(crate) fn new() -> Bz2Decompress {
        Bz2Decompress {
            stream: Decompress::new(false),
            stream_done: false,
            started: false,
        }
    }

    fn run(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Status> {
        match self.stream.decompress_vec(input, out) {
            Ok(Status::MemNeeded) => crate::bail!(Memory, "bz2 error: [-3] memory error"),
            Ok(status) => Ok(status),
            Err(e) => Err(bz2_error(e)),
        }
    }
}

impl Transform for Bz2Decompress {
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        if self.stream_done {
            self.stream = Decompress::new(false);
            self.stream_done = false;
        }
        self.started = true;
        reserve_chunk(out);
        let before = self.stream.total_in();
        if self.run(input, out)? == Status::StreamEnd {
            self.stream_done = true;
        }
        Ok((self.stream.total_in() - before) as usize)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        if !self.started {
            return Err(unexpected_eof());
        }
        if self.stream_done {
            return Ok(true);
        }
        reserve_chunk(out);
        let before = out.len();
        if self.run(&[], out)? == Status::StreamEnd {
            self.stream_done = true;
            return Ok(true);
        }
        if out.len() == before {
            return Err(unexpected_eof());
        }
        Ok(false)
    }
}
