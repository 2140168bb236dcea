//! Push side of a chain: a writer that runs what is written through the chain into `W`.
//!
//! Contract: nothing is complete until [`FilterWrite::finish`], which flushes every transform
//! (trailers, padding), flushes `W`, and returns `W` with the results; dropping a
//! `FilterWrite` unfinished leaves `W` holding a truncated stream. [`copy`] is one whole pass.

use std::io::{Read, Write};

use super::CHUNK_SIZE;
use super::chain::{Chain, FilterResults, Push, read_source};
use crate::error::{Error, ErrorKind, Result};

/// A writer that runs a [`Chain`] over what is written and passes the result to `W`.
pub struct FilterWrite<W: Write> {
    writer: W,
    push: Push,
}

impl<W: Write> FilterWrite<W> {
    /// Filter what is written through `chain` into `writer`.
    pub fn new(writer: W, chain: Chain) -> FilterWrite<W> {
        FilterWrite {
            writer,
            push: Push::new(chain),
        }
    }

    /// Like [`Write::write_all`] with a pgkeep error.
    pub fn write_data(&mut self, data: &[u8]) -> Result<()> {
        let writer = &mut self.writer;
        self.push.write(data, &mut |out| write_out(writer, out))
    }

    /// End the stream: flush the transforms and `W`; return `W` and the observers' results.
    pub fn finish(self) -> Result<(W, FilterResults)> {
        let FilterWrite { mut writer, push } = self;
        let results = push.finish(&mut |out| write_out(&mut writer, out))?;
        writer
            .flush()
            .map_err(|e| Error::from_io_error(&e, ErrorKind::FileWrite, "unable to flush"))?;
        Ok((writer, results))
    }

    /// The destination writer.
    pub fn get_ref(&self) -> &W {
        &self.writer
    }

    /// The destination writer; writing to it directly corrupts the stream.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.writer
    }
}

fn write_out<W: Write + ?Sized>(writer: &mut W, data: &[u8]) -> Result<()> {
    writer
        .write_all(data)
        .map_err(|e| Error::from_io_error(&e, ErrorKind::FileWrite, "unable to write"))
}

impl<W: Write> Write for FilterWrite<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_data(buf)?;
        Ok(buf.len())
    }

    /// Flushes `W` only: a transform cannot emit a partial block mid-stream.
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

/// Read `reader` to the end through `chain` into `writer` in one pass; returns the results.
/// `writer` is flushed, not closed.
pub fn copy<R: Read + ?Sized, W: Write + ?Sized>(
    reader: &mut R,
    chain: Chain,
    writer: &mut W,
) -> Result<FilterResults> {
    let mut filter = FilterWrite::new(writer, chain);
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        let read = read_source(reader, &mut buf)?;
        match buf.get(..read) {
            Some(data) if !data.is_empty() => filter.write_data(data)?,
            _ => break,
        }
    }
    let (_, results) = filter.finish()?;
    Ok(results)
}
