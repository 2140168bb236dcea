//! End-to-end tests of the `pgkeep` binary against real PostgreSQL clusters and the real
//! `pgbackrest` 2.45 binary (installed by `scripts/install-deps.sh`). One test binary, one module
//! per area.
//!
//! Every command runs as the cluster's OS user, as it would in production (PostgreSQL's
//! `archive_command` runs as that user, so the repository belongs to it). A test whose cluster or
//! tool cannot start fails with the reason; nothing is skipped.

#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

mod archive;
mod backup;
mod common;
mod faults;
mod majors;
mod restore;
mod retention;
mod stanza;
