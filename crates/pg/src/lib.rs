//! PostgreSQL knowledge for pgkeep: pure functions over bytes plus one SQL client.
//!
//! Contract:
//! - Everything that differs between majors comes from the one table in [`version`]
//!   ([`version::VERSIONS`]); no other module compares version numbers.
//! - [`control`], [`wal`] and [`page`] are pure: they take bytes, never touch the file system or
//!   network, never panic on bad input, and come with builders so tests can fabricate files for
//!   every supported major (10 to 18).
//! - [`client`] is the only module that talks to a server.
//! - Errors are `pgkeep_base::Error` with pgBackRest's kinds and wording.

mod bytes;
pub mod client;
pub mod control;
pub mod datadir;
pub mod page;
pub mod version;
pub mod wal;

pub use client::{Client, ClientOptions};
pub use control::ControlInfo;
pub use page::{PageChecksumResult, PageChecksumValidator};
pub use version::{PgVersion, VersionInfo};
pub use wal::{Lsn, WalHeader, WalSegSize};
