//! Byte-stream filter chains: one pass over a stream that transforms it (compress, encrypt, ...)
//! and observes it at any point (size, SHA-1, page checksums). This is pgBackRest's
//! `IoFilterGroup`, with typed result keys instead of lookups by filter type and index.
//!
//! Contract:
//! - A [`Chain`] is built from [`FilterSpec`]s (filters from other crates travel as
//!   [`FilterSpec::Custom`]); [`Chain::specs`] gives the list back, so the same chain can be
//!   rebuilt by a worker or a remote with [`Chain::from_specs`].
//! - Filters run in the order added. An observer sees exactly the bytes at its position: before
//!   a compressor it sees the original bytes; after an encryptor, the stored bytes.
//! - Adding an observer returns a [`ResultKey<T>`]; once the stream has ended, the
//!   [`FilterResults`] answer that key with a `T`. Results are serializable and indexed by
//!   observer position, so results computed by a rebuilt chain answer the original keys.
//! - [`FilterRead`] pulls (wraps a reader), [`FilterWrite`] pushes (wraps a writer; `finish()`
//!   ends the stream), [`copy`] is one complete pass.
//! - Data moves in pieces of about [`CHUNK_SIZE`]; no filter needs the whole stream in memory,
//!   and decompressors emit output in bounded pieces, so a 1 GiB file of zeros that compresses
//!   to a few KiB still streams in bounded memory.
//! - Errors that cross `std::io::Read`/`Write` carry the pgkeep [`crate::Error`] inside the
//!   `io::Error`; [`copy`], the `finish` methods and [`crate::Error::from_io_error`] recover it.

mod chain;
mod filter;
mod hash;
mod read;
mod write;

#[cfg(test)]
mod tests;

pub use chain::{Chain, FilterResults, ResultKey};
pub use filter::{
    CustomFilter, DynObserve, FilterFactory, FilterSpec, Observe, Transform, transform_all,
};
pub use hash::{Sha1Digest, Sha1Observer, SizeObserver, hex, sha1};
pub use read::FilterRead;
pub use write::{FilterWrite, copy};

pub(crate) use filter::{chunk_of, reserve_chunk};

/// Size of the pieces data moves in: big enough to amortise per-call costs, small enough to stay
/// in cache between filters.
pub const CHUNK_SIZE: usize = 256 * 1024;
