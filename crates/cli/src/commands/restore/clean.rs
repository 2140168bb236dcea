//! Preparing the target directories (pgBackRest `restoreCleanBuild()`).
//!
//! Contract:
//! - [`check`] changes nothing. Each target directory (the data directory, each tablespace's
//!   `PG_<ver>_<catalog>` directory, each directory or file link destination) that exists must
//!   belong to the running user (unless root) and be `rwx` for its owner (`PathOpen`, 53); without
//!   delta it must be empty (`PathNotEmpty`, 40, pgBackRest's message) — `backup.manifest` of an
//!   interrupted restore and, for `--type=preserve`, the recovery files do not count — and a file
//!   link's file must not exist (`FileExists`, 93).
//! - [`build`] then: removes `global/pg_control` (synced) so an unfinished restore cannot start;
//!   walks every existing target and removes what the manifest does not list (files, links whose
//!   destination changed, directories, special files), fixing mode and owner of what it keeps;
//!   creates missing targets, directories and links from the manifest.
//! - The walk never follows a link: a link is removed as a link, a directory is removed with
//!   everything in it only after `lstat` said it is a directory, and only entries found inside
//!   the target directories are ever removed. Nothing outside them is deleted.

use std::os::unix::fs::PermissionsExt;

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_repo::manifest::{Manifest, TARGET_PGDATA};
use pgkeep_storage::posix::PosixStorage;
use pgkeep_storage::{FileType, InfoLevel, LinkType, Storage, StorageInfo};

use super::owner::Owners;
use super::remap::{link_name, pg_relative, target_path};
use crate::log::Logger;

/// One target as the clean sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetDir {
    /// Manifest name of the directory (`pg_data`, `pg_tblspc/16384/PG_15_202209061`, ...).
    pub name: String,
    /// Absolute directory.
    pub path: String,
    /// File name for a file link target.
    pub file: Option<String>,
    /// The data directory.
    pub base: bool,
    /// It exists already.
    pub exists: bool,
}

/// What the clean needs besides the manifest.
pub struct Clean<'a> {
    /// The (remapped) manifest.
    pub manifest: &'a Manifest,
    /// `--delta` or `--force`.
    pub delta: bool,
    /// Top-level files of the data directory that are left alone (backup.manifest, and the
    /// recovery files with `--type=preserve`).
    pub ignore: Vec<&'static str>,
    /// Owner resolution.
    pub owners: &'a Owners,
    /// Logger.
    pub log: &'a Logger,
}

fn local() -> PosixStorage {
    PosixStorage::new("/")
}

fn sys(kind: ErrorKind, what: &str, path: &str, e: &std::io::Error) -> Error {
    Error::io(kind, what, path, e)
}

/// The target directories of the manifest, in target order.
///
/// # Errors
/// When a target's path cannot be resolved.
pub fn targets(manifest: &Manifest) -> Result<Vec<TargetDir>> {
    let ts_id = manifest
        .db
        .version
        .tablespace_id(manifest.db.catalog_version);
    let mut out = Vec::new();
    for (name, target) in &manifest.targets {
        let mut path = target_path(manifest, name)?;
        let mut dir_name = name.clone();
        if target.tablespace_id.unwrap_or(0) != 0 {
            path = format!("{}/{ts_id}", path.trim_end_matches('/'));
            dir_name = format!("{name}/{ts_id}");
        }
        out.push(TargetDir {
            name: dir_name,
            path,
            file: target.file.clone(),
            base: name == TARGET_PGDATA,
            exists: false,
        });
    }
    Ok(out)
}

impl Clean<'_> {
    /// Validate the targets without changing anything (see the module contract).
    ///
    /// # Errors
    /// `PathOpen`, `PathNotEmpty`, `FileExists`, listing failures.
    pub fn check(&self, targets: &mut [TargetDir]) -> Result<()> {
        let storage = local();
        let mut checked: Vec<String> = Vec::new();
        for target in targets.iter_mut() {
            if !checked.contains(&target.path) {
                self.log.detail(&format!("check '{}' exists", target.path));
                checked.push(target.path.clone());
            }
            let Some(info) = storage.info(&target.path, InfoLevel::Detail, true)? else {
                continue;
            };
            if !self.owners.is_root() && info.uid != self.owners.current().0 {
                return Err(Error::new(
                    ErrorKind::PathOpen,
                    format!(
                        "unable to restore to path '{}' not owned by current user",
                        target.path
                    ),
                ));
            }
            if info.mode & 0o700 != 0o700 {
                return Err(Error::new(
                    ErrorKind::PathOpen,
                    format!(
                        "unable to restore to path '{}' without rwx permissions",
                        target.path
                    ),
                ));
            }
            if !self.delta {
                match &target.file {
                    None => {
                        let entries = storage
                            .list(&target.path, InfoLevel::Exists)?
                            .unwrap_or_default();
                        let blocking = entries.iter().any(|e| {
                            !(target.base
                                && e.file_type == FileType::File
                                && self.ignore.contains(&e.name.as_str()))
                        });
                        if blocking {
                            return Err(Error::new(
                                ErrorKind::PathNotEmpty,
                                format!(
                                    "unable to restore to path '{}' because it contains files",
                                    target.path
                                ),
                            )
                            .with_hint("try using --delta if this is what you intended."));
                        }
                    }
                    Some(file) => {
                        let full = format!("{}/{file}", target.path.trim_end_matches('/'));
                        if storage.info(&full, InfoLevel::Exists, false)?.is_some() {
                            return Err(Error::new(
                                ErrorKind::FileExists,
                                format!(
                                    "unable to restore file '{full}' because it already exists"
                                ),
                            )
                            .with_hint("try using --delta if this is what you intended."));
                        }
                    }
                }
            }
            target.exists = true;
        }
        Ok(())
    }

    /// Clean existing targets and build the directory and link structure (see the module
    /// contract). `pg_path` is the data directory.
    ///
    /// # Errors
    /// Any file-system failure, naming the path.
    pub fn build(&self, targets: &[TargetDir], pg_path: &str) -> Result<()> {
        let storage = local();
        let pg_control = format!("{pg_path}/global/pg_control");
        if storage
            .info(&pg_control, InfoLevel::Exists, false)?
            .is_some()
        {
            self.log.detail(
                "remove 'global/pg_control' so cluster will not start if restore does not complete",
            );
            storage.remove(&pg_control, false)?;
            storage.path_sync(&format!("{pg_path}/global"))?;
        }

        for target in targets {
            if target.exists {
                if target.file.is_some() {
                    continue;
                }
                if self.delta {
                    self.log.info(&format!(
                        "remove invalid files/links/paths from '{}'",
                        target.path
                    ));
                }
                let info = storage
                    .info(&target.path, InfoLevel::Detail, true)?
                    .ok_or_else(|| missing(&target.path))?;
                let path_entry = self.manifest.paths.get(&target.name).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Format,
                        format!("unable to find '{}' in manifest path list", target.name),
                    )
                })?;
                self.fix_owner(
                    &target.path,
                    path_entry.user.as_deref(),
                    path_entry.group.as_deref(),
                    (info.uid, info.gid),
                    false,
                )?;
                self.fix_mode(&target.path, path_entry.mode, &info)?;
                self.clean_dir(&storage, &target.path, &target.name, target.base)?;
            } else {
                let entry = if target.file.is_some() {
                    self.manifest.paths.get(TARGET_PGDATA)
                } else {
                    self.manifest.paths.get(&target.name)
                };
                let (mode, user, group) = entry
                    .map(|p| (p.mode, p.user.as_deref(), p.group.as_deref()))
                    .unwrap_or((0o700, None, None));
                self.log.detail(&format!("create path '{}'", target.path));
                storage.path_create(&target.path, Some(mode))?;
                self.set_owner_new(&target.path, user, group)?;
            }
        }

        // directories and directory links
        for (name, path) in &self.manifest.paths {
            if name == "pg_tblspc" {
                continue;
            }
            let pg = pg_file(pg_path, name);
            if let Some(link) = self.manifest.links.get(&link_name(name)) {
                if storage.info(&pg, InfoLevel::Exists, false)?.is_none() {
                    self.log
                        .detail(&format!("create symlink '{pg}' to '{}'", link.destination));
                    storage.link_create(&link.destination, &pg, LinkType::Soft)?;
                    self.set_owner_new(&pg, link.user.as_deref(), link.group.as_deref())?;
                }
            } else if storage.info(&pg, InfoLevel::Exists, false)?.is_none() {
                self.log.detail(&format!("create path '{pg}'"));
                std::fs::DirBuilder::new()
                    .create(&pg)
                    .map_err(|e| sys(ErrorKind::PathCreate, "unable to create path", &pg, &e))?;
                std::fs::set_permissions(&pg, std::fs::Permissions::from_mode(path.mode))
                    .map_err(|e| sys(ErrorKind::FileMode, "unable to set mode for", &pg, &e))?;
                self.set_owner_new(&pg, path.user.as_deref(), path.group.as_deref())?;
            }
        }

        // file links (they have no directory entry)
        for (name, link) in &self.manifest.links {
            let pg = pg_file(pg_path, name);
            if storage.info(&pg, InfoLevel::Exists, false)?.is_none() {
                self.log
                    .detail(&format!("create symlink '{pg}' to '{}'", link.destination));
                storage.link_create(&link.destination, &pg, LinkType::Soft)?;
                self.set_owner_new(&pg, link.user.as_deref(), link.group.as_deref())?;
            }
        }
        Ok(())
    }

    /// Remove from `dir` (manifest name `name`) whatever the manifest does not list; fix what it
    /// keeps; recurse into kept directories.
    fn clean_dir(&self, storage: &PosixStorage, dir: &str, name: &str, base: bool) -> Result<()> {
        let mut entries = storage
            .list(dir, InfoLevel::Detail)?
            .ok_or_else(|| missing(dir))?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for entry in entries {
            if base
                && entry.file_type == FileType::File
                && self.ignore.contains(&entry.name.as_str())
            {
                continue;
            }
            let manifest_name = format!("{name}/{}", entry.name);
            let pg = format!("{}/{}", dir.trim_end_matches('/'), entry.name);
            let link = self.manifest.links.get(&manifest_name);
            match entry.file_type {
                FileType::File => match self.manifest.files.get(&manifest_name) {
                    Some(file) if link.is_none() => {
                        self.fix_owner(
                            &pg,
                            file.user.as_deref(),
                            file.group.as_deref(),
                            (entry.uid, entry.gid),
                            false,
                        )?;
                        self.fix_mode(&pg, file.mode, &entry)?;
                    }
                    _ => {
                        self.log.detail(&format!("remove invalid file '{pg}'"));
                        storage.remove(&pg, false)?;
                    }
                },
                FileType::Link => match link {
                    Some(link)
                        if entry.link_destination.as_deref() == Some(link.destination.as_str()) =>
                    {
                        self.fix_owner(
                            &pg,
                            link.user.as_deref(),
                            link.group.as_deref(),
                            (entry.uid, entry.gid),
                            false,
                        )?;
                    }
                    Some(_) => {
                        self.log
                            .detail(&format!("remove link '{pg}' because destination changed"));
                        storage.remove(&pg, false)?;
                    }
                    None => {
                        self.log.detail(&format!("remove invalid link '{pg}'"));
                        storage.remove(&pg, false)?;
                    }
                },
                FileType::Path => match self.manifest.paths.get(&manifest_name) {
                    Some(path) if link.is_none() => {
                        self.fix_owner(
                            &pg,
                            path.user.as_deref(),
                            path.group.as_deref(),
                            (entry.uid, entry.gid),
                            false,
                        )?;
                        self.fix_mode(&pg, path.mode, &entry)?;
                        self.clean_dir(storage, &pg, &manifest_name, false)?;
                    }
                    _ => {
                        self.log.detail(&format!("remove invalid path '{pg}'"));
                        storage.remove_path(&pg, true)?;
                    }
                },
                FileType::Special => {
                    self.log.detail(&format!("remove special file '{pg}'"));
                    storage.remove(&pg, false)?;
                }
            }
        }
        Ok(())
    }

    /// Give `path` the expected owner when `actual` (uid, gid) differs.
    fn fix_owner(
        &self,
        path: &str,
        user: Option<&str>,
        group: Option<&str>,
        actual: (u32, u32),
        new: bool,
    ) -> Result<()> {
        let expected = self.owners.expected(user, group);
        if actual != expected {
            if !new {
                self.log.detail(&format!("update ownership for '{path}'"));
            }
            std::os::unix::fs::lchown(path, Some(expected.0), Some(expected.1)).map_err(|e| {
                sys(
                    ErrorKind::FileOwner,
                    "unable to set ownership for",
                    path,
                    &e,
                )
            })?;
        }
        Ok(())
    }

    /// Owner of something just created (by the running user).
    fn set_owner_new(&self, path: &str, user: Option<&str>, group: Option<&str>) -> Result<()> {
        self.fix_owner(path, user, group, self.owners.current(), true)
    }

    fn fix_mode(&self, path: &str, mode: u32, info: &StorageInfo) -> Result<()> {
        if info.mode != mode {
            self.log
                .detail(&format!("update mode for '{path}' to {mode:04o}"));
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| sys(ErrorKind::FileMode, "unable to set mode for", path, &e))?;
        }
        Ok(())
    }
}

fn missing(path: &str) -> Error {
    Error::new(
        ErrorKind::PathMissing,
        format!("unable to list file info for missing path '{path}'"),
    )
}

/// Absolute path in the data directory of a manifest name (through links and tablespaces).
#[must_use]
pub fn pg_file(pg_path: &str, name: &str) -> String {
    let rel = pg_relative(name);
    if rel.is_empty() {
        pg_path.to_string()
    } else {
        format!("{}/{rel}", pg_path.trim_end_matches('/'))
    }
}
