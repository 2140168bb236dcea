//! Pull side of a chain: a reader whose bytes are the source's bytes after the chain.
//!
//! Contract: reading returns the transformed stream and ends (read returns 0) exactly when the
//! last transform has finished. [`FilterRead::finish`] reads whatever the caller left unread
//! (discarding it) so every observer has seen the whole stream, then returns the results.
//! Errors inside `Read`/`BufRead` carry the pgkeep [`crate::Error`] (see
//! [`crate::Error::from_io_error`]); [`FilterRead::read_data`] returns it directly.

use std::io::{BufRead, Read};

use super::chain::{Chain, FilterResults, Pull};
use crate::error::Result;

const DIRECT_READ_MIN: usize = 16 * 1024;

/// A reader that runs a [`Chain`] over what it reads from `R`.
pub struct FilterRead<R: Read> {
    reader: R,
    pull: Pull,
}

impl<R: Read> FilterRead<R> {
    /// Filter `reader` through `chain`.
    pub fn new(reader: R, chain: Chain) -> FilterRead<R> {
        FilterRead {
            reader,
            pull: Pull::new(chain),
        }
    }

    /// Like [`Read::read`] with a pgkeep error.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // with no transform, large reads go straight into the caller's buffer (no copy); small
        // ones are served from a chunk-sized buffer so they do not each cost a read of the source
        if self.pull.passthrough() && !self.pull.buffered() && buf.len() >= DIRECT_READ_MIN {
            return self.pull.read_direct(&mut self.reader, buf);
        }
        let data = self.pull.fill(&mut self.reader)?;
        let amount = data.len().min(buf.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..amount), data.get(..amount)) {
            to.copy_from_slice(from);
        }
        self.pull.consume(amount);
        Ok(amount)
    }

    /// Read the rest of the transformed stream into a vector.
    pub fn read_all(&mut self) -> Result<Vec<u8>> {
        let mut all = Vec::new();
        loop {
            let data = self.pull.fill(&mut self.reader)?;
            if data.is_empty() {
                return Ok(all);
            }
            all.extend_from_slice(data);
            let amount = data.len();
            self.pull.consume(amount);
        }
    }

    /// Drain the stream and return the observers' results.
    pub fn finish(mut self) -> Result<FilterResults> {
        self.pull.finish(&mut self.reader)
    }

    /// The source reader.
    pub fn get_ref(&self) -> &R {
        &self.reader
    }

    /// The source reader; reading from it directly corrupts the stream.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.reader
    }
}

impl<R: Read> Read for FilterRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Ok(self.read_data(buf)?)
    }
}

impl<R: Read> BufRead for FilterRead<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        Ok(self.pull.fill(&mut self.reader)?)
    }

    fn consume(&mut self, amount: usize) {
        self.pull.consume(amount);
    }
}
