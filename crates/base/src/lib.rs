//! pgkeep's mechanisms: errors, logging, byte-stream filters, compression and encryption.
//! Knows nothing of PostgreSQL or repositories.

pub mod error;

pub use error::{Error, ErrorKind, Result};
