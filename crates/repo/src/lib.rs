//! pgkeep's repository model, byte-compatible with pgBackRest 2.45: the info files (`archive.info`,
//! `backup.info`), the backup manifest, every repository path and name rule, and reading the WAL archive.
//!
//! Contract:
//! - [`info`] holds the INI container ([`info::codec`]), its JSON dialect ([`info::json`]), the typed info files
//!   and the generic [`info::load_info`] / [`info::save_info`] with `.copy` fallback and encryption.
//! - [`manifest`] models `backup.manifest`; it is an [`info::InfoFile`] too, so the same load/save applies.
//! - [`layout`] is the only place repository paths, labels and archive file names are built or recognised.
//! - [`archive`] answers questions about the stored WAL (one segment's file, the min/max range).
//! - [`retention`] relates backups to each other and to the WAL they need, and reconciles backup.info with the
//!   backup directories present.
//! - [`backup_file`] reads one backup file of a manifest back (bundle slices, decrypt, decompress) and verifies it.
//! - Nothing here knows a concrete storage driver; everything goes through `pgkeep_storage::Storage`.

pub mod archive;
pub mod backup_file;
mod cipher;
pub mod info;
pub mod layout;
pub mod manifest;
pub mod retention;

#[cfg(test)]
mod test_storage;

pub use info::archive_info::ArchiveInfo;
pub use info::backup_info::{BackupInfo, BackupInfoEntry};
pub use info::{InfoFile, load_info, save_info};
pub use manifest::Manifest;
