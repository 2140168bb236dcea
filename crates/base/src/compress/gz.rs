//! gzip through flate2's zlib-rs backend, using zlib's own gzip wrapper (windowBits 15 + 16) as
//! pgBackRest does: header mtime 0, OS 3, XFL from the level; members are decoded one after
//! another until the input ends.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::unexpected_eof;
use crate::error::Result;
use crate::io::{Transform, chunk_of, reserve_chunk};

const WINDOW_BITS: u8 = 15;

pub(crate) struct GzCompress {
    /// Always `Some` until drop hands it back to [`IDLE`].
    stream: Option<Compress>,
    level: u32,
}

thread_local! {
    /// Deflate states of finished streams on this thread, one per level, for the next stream.
    /// zlib's state (~380 KB, allocated in pieces) made anew for every file fragments the heap of
    /// a worker that compresses thousands of files (glibc keeps the holes); `reset` gives the same
    /// output as a new state.
    static IDLE: RefCell<Vec<(u32, Compress)>> = const { RefCell::new(Vec::new()) };
}

impl GzCompress {
    /// `level` -1 is zlib's default (6).
    pub(crate) fn new(level: i32) -> GzCompress {
        let level = u32::try_from(level).unwrap_or(6).min(9);
        let reused = IDLE
            .try_with(|idle| {
                let mut idle = idle.borrow_mut();
                let at = idle.iter().position(|(l, _)| *l == level)?;
                Some(idle.swap_remove(at).1)
            })
            .ok()
            .flatten();
        let stream = match reused {
            Some(mut stream) => {
                stream.reset();
                stream
            }
            None => Compress::new_gzip(Compression::new(level), WINDOW_BITS),
        };
        GzCompress {
            stream: Some(stream),
            level,
        }
    }

    fn stream(&mut self) -> Result<&mut Compress> {
        self.stream
            .as_mut()
            .ok_or_else(|| crate::err!(Assert, "gz compress stream already released"))
    }
}

impl Drop for GzCompress {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        let level = self.level;
        // during thread teardown the slot may be gone: the state is then simply freed
        let _ = IDLE.try_with(|idle| {
            let mut idle = idle.borrow_mut();
            if !idle.iter().any(|(l, _)| *l == level) {
                idle.push((level, stream));
            }
        });
    }
}

impl Transform for GzCompress {
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        let input = chunk_of(input);
        reserve_chunk(out);
        let stream = self.stream()?;
        let before = stream.total_in();
        stream
            .compress_vec(input, out, FlushCompress::None)
            .map_err(|e| crate::err!(Assert, "zlib threw error: {e}"))?;
        Ok((stream.total_in() - before) as usize)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        reserve_chunk(out);
        let status = self
            .stream()?
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::{CompressType, compress, decompress};

    fn data(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(seed) ^ (i / 97) as u8)
            .collect()
    }

    /// What a state never used before produces (a new thread has an empty pool).
    fn fresh(level: i32, input: &[u8]) -> Vec<u8> {
        let input = input.to_vec();
        std::thread::spawn(move || compress(CompressType::Gz, level, &input).unwrap())
            .join()
            .unwrap()
    }

    #[test]
    fn a_reused_state_gives_the_bytes_of_a_new_one() {
        let first = data(7, 300_000);
        let second = data(13, 200_000);
        // leave a state half used: reset must wipe its window and pending output
        let mut half = GzCompress::new(6);
        let mut sink = Vec::new();
        half.process(&first, &mut sink).unwrap();
        drop(half);
        for level in [6, 1, 6, 9] {
            let ours = compress(CompressType::Gz, level, &second).unwrap();
            assert_eq!(ours, fresh(level, &second), "level {level}");
            assert_eq!(decompress(CompressType::Gz, &ours).unwrap(), second);
        }
        IDLE.with(|idle| {
            let levels: Vec<u32> = idle.borrow().iter().map(|(l, _)| *l).collect();
            assert_eq!(levels.len(), 3, "one idle state per level: {levels:?}");
        });
    }
}
