//! pgkeep's mechanisms: errors, logging, byte-stream filters, compression and encryption.
//! Knows nothing of PostgreSQL or repositories.

pub mod compress;
pub mod crypto;
pub mod error;
pub mod io;
pub mod spool;

pub use error::{Error, ErrorKind, Result};
