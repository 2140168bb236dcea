//! Building a backup's manifest from a data directory, and deriving a diff/incr from its prior
//! (pgBackRest `manifestNewBuild()`, `manifestBuildValidate()`, `manifestBuildIncr()` and
//! `manifestValidate()` in `src/info/manifest.c`).
//!
//! Contract:
//! - [`build`] walks PGDATA (and every link and tablespace reached from it) through a `Storage`
//!   rooted at `/`, fills the targets, paths and links of a manifest and returns its files as a
//!   [`FileList`] in name order.
//!   Exclusions are those of [`pgkeep_pg::datadir`] plus the user's `exclude` list (`x/` = only
//!   the contents of `x`); unlogged relations keep only their `_init` fork. Files get the size,
//!   mtime, mode and owner seen now, no checksum (except zero-length files, whose checksum is
//!   known), and `checksum-page` = true when their pages will be validated.
//! - Link rules are pgBackRest's and fail with `LinkDestination`/`LinkExpected`: no link to a
//!   link, no destination inside PGDATA, no two links to the same directory or file, no directory
//!   link inside another's destination, nothing but links in `pg_tblspc`.
//! - What pgBackRest logs while building comes back as [`Note`]s for the caller to log.
//! - [`validate_build`] records the delta option and the copy start (+1 s when online), and
//!   forces delta when a file's mtime is later than the copy start. [`build_incr`] turns a full
//!   manifest into a diff/incr of `prior`: references are always flattened to the backup that
//!   stores the bytes, delta is forced on the conditions pgBackRest checks; [`unchanged`] tells
//!   which files need no copy. The new and the prior file lists are merged side by side in name
//!   order, the prior's entries streamed from the repository one at a time.
//! - Memory: the file list is on disk ([`super::spool`]); directories are read one entry at a
//!   time and the walk holds only the subdirectories and links of the directory it is in, and the
//!   `_init` forks found (one per unlogged relation). Nothing is held per file.
//! - [`final_problems`] is the strict check made on every file before the final save.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_pg::datadir::{self, DataDir};
use pgkeep_storage::{FileType, InfoLevel, Storage, StorageInfo};

use super::spool::{Cursor, Entry, FileList, FileSorter};
use super::{
    EMPTY_SHA1, LazyManifest, Manifest, ManifestFile, ManifestLink, ManifestPath, ManifestTarget,
    Names, TARGET_PGDATA, TARGET_PGTBLSPC, TargetType,
};
use crate::layout::BackupType;

/// Something worth telling the user while building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Logged at info level.
    Info(String),
    /// Logged as a warning.
    Warn(String),
}

/// What [`build`] needs to know.
#[derive(Debug, Clone)]
pub struct BuildOptions<'a> {
    /// PGDATA as configured (`pg1-path`), absolute, without a trailing `/`.
    pub pg_path: &'a str,
    /// The cluster's data directory rules.
    pub datadir: &'a DataDir,
    /// Online backup: WAL and `archive_status` contents are excluded.
    pub online: bool,
    /// Page checksums are validated (files of database directories get `checksum-page`).
    pub checksum_page: bool,
    /// The user's `exclude` option, relative to PGDATA.
    pub exclude: &'a [String],
    /// `(oid, name)` of every tablespace when online; `None` offline (names become `ts<oid>`).
    pub tablespaces: Option<&'a [(u32, String)]>,
}

/// `pg_data/<rel>` or, for tablespaces, `pg_tblspc/...` -> the path relative to PGDATA.
#[must_use]
pub fn pg_relative(manifest_name: &str) -> &str {
    manifest_name
        .strip_prefix(TARGET_PGDATA)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(manifest_name)
}

/// The manifest name of a file relative to PGDATA (inverse of [`pg_relative`]).
#[must_use]
pub fn manifest_name(rel: &str) -> String {
    if rel == TARGET_PGTBLSPC || rel.starts_with("pg_tblspc/") {
        rel.to_string()
    } else {
        format!("{TARGET_PGDATA}/{rel}")
    }
}

struct Walk<'a, 'o> {
    storage: &'a dyn Storage,
    opts: &'a BuildOptions<'o>,
    manifest: &'a mut Manifest,
    /// Notes with the name they are about, put in name order at the end.
    notes: Vec<(String, Note)>,
    exclude_single: BTreeSet<String>,
    exclude_content: BTreeSet<String>,
    /// (destination dir with trailing `/`, file name for file links, link name for messages)
    links: Vec<(String, Option<String>, String)>,
    /// The files found, in the order found (sorted on disk, see [`FileSorter`]).
    files: FileSorter,
    /// Manifest names of the `_init` forks found in database directories (one per unlogged
    /// relation, usually none).
    init_forks: BTreeSet<String>,
    /// Owner names shared by the entries.
    names: Names,
}

/// Build the targets, paths and links of `manifest` from PGDATA, and the list of its files (on
/// disk: see [`super::spool`]). `storage` must be rooted at `/` (link destinations may be
/// anywhere). Directories are read one entry at a time: memory holds the subdirectories and links
/// of one directory, never its files.
///
/// # Errors
/// Storage errors; `LinkDestination`, `LinkExpected` for links pgBackRest refuses; `Assert` when
/// a tablespace link has no row in the tablespace list (created or dropped during the backup).
pub fn build(
    storage: &dyn Storage,
    manifest: &mut Manifest,
    opts: &BuildOptions<'_>,
) -> Result<(Vec<Note>, FileList)> {
    let mut exclude_single = BTreeSet::new();
    let mut exclude_content = BTreeSet::new();
    for exclude in opts.exclude {
        let name = format!("{TARGET_PGDATA}/{exclude}");
        match name.strip_suffix('/') {
            Some(dir) => exclude_content.insert(dir.to_string()),
            None => exclude_single.insert(name),
        };
    }
    let root = storage
        .info(opts.pg_path, InfoLevel::Detail, true)?
        .ok_or_else(|| missing(opts.pg_path))?;
    manifest.paths.insert(
        TARGET_PGDATA.to_string(),
        ManifestPath {
            mode: root.mode,
            user: root.user.as_deref().map(Arc::from),
            group: root.group.as_deref().map(Arc::from),
            extra: BTreeMap::new(),
        },
    );
    manifest.targets.insert(
        TARGET_PGDATA.to_string(),
        ManifestTarget {
            target_type: TargetType::Path,
            path: opts.pg_path.to_string(),
            file: None,
            tablespace_id: None,
            tablespace_name: None,
            extra: BTreeMap::new(),
        },
    );
    let mut walk = Walk {
        storage,
        opts,
        manifest,
        notes: Vec::new(),
        exclude_single,
        exclude_content,
        links: Vec::new(),
        files: FileSorter::new(),
        init_forks: BTreeSet::new(),
        names: Names::default(),
    };
    if !walk.dir(TARGET_PGDATA, opts.pg_path, false)? {
        return Err(missing(opts.pg_path));
    }
    let Walk {
        mut notes,
        files,
        init_forks,
        ..
    } = walk;
    let dd = opts.datadir;
    // every fork of an unlogged relation (one with an `_init` fork) but the `_init` fork
    let files = files.finish(|name| {
        if init_forks.is_empty() {
            return true;
        }
        let rel = pg_relative(name);
        !(dd.is_database_path(dir_of(rel))
            && datadir::init_fork(rel)
                .is_some_and(|init| init_forks.contains(&manifest_name(&init))))
    })?;
    // the order pgBackRest logs them in: depth first, each directory's entries by name (a
    // directory's contents before a sibling that only extends its name: `a/b` before `a.x`),
    // a tablespace's entries where the walk meets its link, `pg_data/pg_tblspc/<oid>`
    let walk_key = |name: &str| -> Vec<String> {
        let at = if name.starts_with("pg_tblspc/") {
            format!("pg_data/{name}")
        } else {
            name.to_string()
        };
        at.split('/').map(str::to_string).collect()
    };
    notes.sort_by_cached_key(|note| walk_key(&note.0));
    Ok((notes.into_iter().map(|(_, note)| note).collect(), files))
}

/// Refuse an entry the manifest would record under a name a manifest line cannot hold (a line
/// feed): now, naming it (`dir`, escaped), not after the whole copy when the manifest is
/// rendered. Entries skipped by any exclusion rule never get here.
fn recordable(dir: &str, info: &StorageInfo) -> Result<()> {
    if !info.name.contains('\n') {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Format,
        format!(
            "unable to back up '{dir}/{}': its name contains a line feed, which a manifest cannot hold",
            info.name.escape_debug()
        ),
    )
    .with_hint("rename or remove it, or exclude it with --exclude."))
}

fn missing(path: &str) -> Error {
    Error::new(
        ErrorKind::PathMissing,
        format!("unable to list file info for missing path '{path}'"),
    )
}

/// `path` made absolute against `base` with `.` and `..` resolved (pgBackRest `strPathAbsolute`).
fn path_absolute(path: &str, base: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{base}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

fn dir_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => path.get(..i).unwrap_or_default(),
        None => "",
    }
}

fn base_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl Walk<'_, '_> {
    /// Walk the directory `dir_path` (manifest name `parent`): its files as they are read, then
    /// its subdirectories and links in name order. `false` when it does not exist.
    fn dir(&mut self, parent: &str, dir_path: &str, db_path: bool) -> Result<bool> {
        let mut later: Vec<StorageInfo> = Vec::new();
        let storage = self.storage;
        let found = storage.list_each(dir_path, InfoLevel::Detail, &mut |entry| match entry
            .file_type
        {
            FileType::Path | FileType::Link => {
                later.push(entry);
                Ok(())
            }
            FileType::File | FileType::Special => self.info(parent, dir_path, db_path, &entry),
        })?;
        later.sort_by(|a, b| a.name.cmp(&b.name));
        for entry in &later {
            self.info(parent, dir_path, db_path, entry)?;
        }
        Ok(found)
    }

    fn note(&mut self, name: &str, note: Note) {
        self.notes.push((name.to_string(), note));
    }

    fn info(
        &mut self,
        parent: &str,
        pg_path: &str,
        db_path: bool,
        info: &StorageInfo,
    ) -> Result<()> {
        if datadir::is_pgsql_tmp(&info.name) {
            return Ok(());
        }
        let name = format!("{parent}/{}", info.name);
        if self.exclude_single.contains(&name) {
            let text = format!(
                "exclude '{pg_path}/{}' from backup using '{}' exclusion",
                info.name,
                pg_relative(&name)
            );
            self.note(&name, Note::Info(text));
            return Ok(());
        }
        let in_tblspc_dir = parent == format!("{TARGET_PGDATA}/{TARGET_PGTBLSPC}");
        match info.file_type {
            FileType::Path => self.path(parent, pg_path, &name, info, in_tblspc_dir),
            FileType::File => self.file((parent, pg_path), db_path, &name, info, in_tblspc_dir),
            FileType::Link => self.link(parent, pg_path, db_path, &name, info, in_tblspc_dir),
            FileType::Special => {
                let text = format!("exclude special file '{pg_path}/{}' from backup", info.name);
                self.note(&name, Note::Warn(text));
                Ok(())
            }
        }
    }

    fn path(
        &mut self,
        parent: &str,
        pg_path: &str,
        name: &str,
        info: &StorageInfo,
        in_tblspc_dir: bool,
    ) -> Result<()> {
        if in_tblspc_dir {
            return Err(not_a_link(name));
        }
        recordable(pg_path, info)?;
        self.manifest.paths.insert(
            name.to_string(),
            ManifestPath {
                mode: info.mode,
                user: self.names.opt(info.user.as_deref()),
                group: self.names.opt(info.group.as_deref()),
                extra: BTreeMap::new(),
            },
        );
        if self.exclude_content.contains(name) {
            let text = format!(
                "exclude contents of '{pg_path}/{}' from backup using '{}/' exclusion",
                info.name,
                pg_relative(name)
            );
            self.note(name, Note::Info(text));
            return Ok(());
        }
        let dd = self.opts.datadir;
        if parent == TARGET_PGDATA && dd.root_dir_contents_excluded(&info.name) {
            return Ok(());
        }
        let rel = pg_relative(name);
        if dd.wal_status_dir(rel, self.opts.online) {
            return Ok(());
        }
        let sub_path = format!("{pg_path}/{}", info.name);
        let db_path = dd.is_database_path(rel);
        // a directory removed since it was listed (temp dirs come and go) is just skipped
        self.dir(name, &sub_path, db_path)?;
        Ok(())
    }

    fn file(
        &mut self,
        (parent, pg_path): (&str, &str),
        db_path: bool,
        name: &str,
        info: &StorageInfo,
        in_tblspc_dir: bool,
    ) -> Result<()> {
        if in_tblspc_dir {
            return Err(not_a_link(name));
        }
        let dd = self.opts.datadir;
        if db_path && datadir::is_pg_internal_init(&info.name) {
            return Ok(());
        }
        if parent == TARGET_PGDATA && dd.root_file_excluded(&info.name) {
            return Ok(());
        }
        if dd.wal_file_excluded(pg_relative(parent), self.opts.online) {
            return Ok(());
        }
        if db_path && datadir::is_temp_relation(&info.name) {
            return Ok(());
        }
        recordable(pg_path, info)?;
        let mut file = ManifestFile::new(
            info.size,
            info.mtime,
            info.mode,
            self.names.opt(info.user.as_deref()),
            self.names.opt(info.group.as_deref()),
        );
        if db_path && self.opts.checksum_page && dd.checksum_page_file(pg_relative(name)) {
            file.checksum_page = Some(true);
        }
        if db_path && info.name.ends_with("_init") {
            self.init_forks.insert(name.to_string());
        }
        self.files.push(name, &file, 0)
    }

    fn link(
        &mut self,
        parent: &str,
        pg_path: &str,
        db_path: bool,
        name: &str,
        info: &StorageInfo,
        in_tblspc_dir: bool,
    ) -> Result<()> {
        recordable(pg_path, info)?;
        let destination = info.link_destination.clone().unwrap_or_default();
        let absolute = path_absolute(&destination, pg_path);
        if let Some(linked) = self.storage.info(&absolute, InfoLevel::Exists, false)?
            && linked.file_type == FileType::Link
        {
            return Err(Error::new(
                ErrorKind::LinkDestination,
                format!(
                    "link '{pg_path}/{}' cannot reference another link '{absolute}'",
                    info.name
                ),
            ));
        }
        self.manifest.links.insert(
            name.to_string(),
            ManifestLink {
                destination: destination.clone(),
                user: self.names.opt(info.user.as_deref()),
                group: self.names.opt(info.group.as_deref()),
                extra: BTreeMap::new(),
            },
        );
        let mut target = ManifestTarget {
            target_type: TargetType::Link,
            path: destination.clone(),
            file: None,
            tablespace_id: None,
            tablespace_name: None,
            extra: BTreeMap::new(),
        };
        let mut target_name = name.to_string();
        let mut parent = parent.to_string();
        let mut pg_path = pg_path.to_string();
        let mut link_name = info.name.clone();
        if in_tblspc_dir {
            target_name = pg_relative(name).to_string();
            let oid: u32 = info.name.parse().map_err(|_| {
                Error::new(
                    ErrorKind::LinkDestination,
                    format!("tablespace link '{name}' is not named by an oid"),
                )
            })?;
            target.tablespace_id = Some(oid);
            if let Some(list) = self.opts.tablespaces {
                let found = list
                    .iter()
                    .find(|(id, _)| *id == oid)
                    .map(|(_, n)| n.clone());
                target.tablespace_name = Some(found.ok_or_else(|| {
                    Error::new(
                        ErrorKind::Assert,
                        format!("tablespace with oid {oid} not found in tablespace map"),
                    )
                    .with_hint("was a tablespace created or dropped during the backup?")
                })?);
            } else {
                target.tablespace_name = Some(format!("ts{oid}"));
            }
            // the synthetic pg_tblspc paths of the manifest format (ignored by restore)
            if !self.manifest.paths.contains_key(TARGET_PGTBLSPC) {
                let base = self.path_entry(TARGET_PGDATA)?;
                self.manifest
                    .paths
                    .insert(TARGET_PGTBLSPC.to_string(), base);
            }
            let tblspc = self.path_entry(&format!("{TARGET_PGDATA}/{TARGET_PGTBLSPC}"))?;
            self.manifest.paths.insert(target_name.clone(), tblspc);
            parent.clone_from(&target_name);
            pg_path = format!("{pg_path}/{}", info.name);
            link_name = self.opts.datadir.tablespace_id().to_string();
        }
        let link_pg_path = format!("{pg_path}/{link_name}");
        let linked = self.storage.info(&link_pg_path, InfoLevel::Detail, true)?;
        if let Some(linked) = &linked
            && linked.file_type != FileType::Path
        {
            if target.tablespace_id.is_some() {
                return Err(Error::new(
                    ErrorKind::Format,
                    format!("tablespace link '{name}' links to a file"),
                ));
            }
            target.path = dir_of(&destination).to_string();
            target.file = Some(base_of(&destination).to_string());
        }
        self.check_link(&target_name, &target, &absolute)?;
        self.manifest.targets.insert(target_name, target);
        let Some(mut linked) = linked else {
            return Err(Error::new(
                ErrorKind::FileOpen,
                format!("unable to get info for missing path/file '{link_pg_path}'"),
            ));
        };
        linked.name = link_name;
        self.info(&parent, &pg_path, db_path, &linked)
    }

    /// The attributes of an already listed path, for the synthetic tablespace entries.
    fn path_entry(&self, name: &str) -> Result<ManifestPath> {
        self.manifest.paths.get(name).cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::Assert,
                format!("unable to find '{name}' in manifest path list"),
            )
        })
    }

    /// pgBackRest `manifestLinkCheckOne()`: destination outside PGDATA, no overlaps.
    fn check_link(&mut self, name: &str, target: &ManifestTarget, absolute: &str) -> Result<()> {
        let shown = pg_relative(name).to_string();
        let dir = match &target.file {
            Some(_) => format!("{}/", dir_of(absolute)),
            None => format!("{}/", absolute.trim_end_matches('/')),
        };
        let base = format!("{}/", self.opts.pg_path.trim_end_matches('/'));
        let shown_path = dir.trim_end_matches('/').to_string();
        if dir.starts_with(&base) {
            return Err(Error::new(
                ErrorKind::LinkDestination,
                format!("link '{shown}' destination '{shown_path}' is in PGDATA"),
            ));
        }
        for (other_dir, other_file, other_name) in &self.links {
            if *other_dir == dir {
                match (&target.file, other_file) {
                    (Some(a), Some(b)) if a == b => {
                        return Err(Error::new(
                            ErrorKind::LinkDestination,
                            format!(
                                "link '{shown}' ({shown_path}/{a}) destination is the same file as link '{other_name}' ({shown_path}/{b})"
                            ),
                        ));
                    }
                    (Some(_), Some(_)) => {}
                    _ => {
                        return Err(Error::new(
                            ErrorKind::LinkDestination,
                            format!(
                                "link '{shown}' ({shown_path}) destination is the same directory as link '{other_name}' ({})",
                                other_dir.trim_end_matches('/')
                            ),
                        ));
                    }
                }
            } else if target.file.is_none() && other_file.is_none() {
                let (inner, outer, inner_dir, outer_dir) = if dir.starts_with(other_dir.as_str()) {
                    (shown.as_str(), other_name.as_str(), &dir, other_dir)
                } else if other_dir.starts_with(dir.as_str()) {
                    (other_name.as_str(), shown.as_str(), other_dir, &dir)
                } else {
                    continue;
                };
                return Err(Error::new(
                    ErrorKind::LinkDestination,
                    format!(
                        "link '{inner}' ({}) destination is a subdirectory of link '{outer}' ({})",
                        inner_dir.trim_end_matches('/'),
                        outer_dir.trim_end_matches('/')
                    ),
                ));
            }
        }
        self.links.push((dir, target.file.clone(), shown));
        Ok(())
    }
}

fn not_a_link(name: &str) -> Error {
    Error::new(
        ErrorKind::LinkExpected,
        format!("'{name}' is not a symlink - pg_tblspc should contain only symlinks"),
    )
}

/// Record the delta option and copy start time (`copy_start` + 1 s when online, so changes made
/// in the second the manifest was built count as later) and force delta when a file's mtime is
/// after `copy_start`. Returns the warning to log, if any.
///
/// # Errors
/// Read errors of `files`.
pub fn validate_build(
    manifest: &mut Manifest,
    files: &FileList,
    delta: bool,
    copy_start: i64,
) -> Result<Option<String>> {
    manifest.options.delta = Some(delta);
    manifest.backup.timestamp_copy_start = copy_start + i64::from(manifest.options.online);
    if delta {
        return Ok(None);
    }
    let mut iter = files.iter();
    while let Some((_, entry)) = iter.next_entry()? {
        if entry.file.timestamp > copy_start {
            manifest.options.delta = Some(true);
            return Ok(Some(format!(
                "file '{}' has timestamp ({}) in the future (relative to copy start {copy_start}), enabling delta checksum",
                pg_relative(&entry.name),
                entry.file.timestamp
            )));
        }
    }
    Ok(None)
}

/// What the copy phase of a diff/incr must do differently from a full.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncrPlan {
    /// Delta (checksum comparison) is in force: requested, or forced by an anomaly. Which files
    /// need no copy at all follows from it: see [`unchanged`].
    pub delta: bool,
    /// Warnings to log (why delta was forced).
    pub warnings: Vec<String>,
}

/// True for a file [`build_incr`] took from the prior backup that needs no copy at all: it
/// references the prior's bytes, and delta (`delta`, the manifest's `option-delta` after
/// `build_incr`) does not make the copy compare its content. A rule on the file instead of a list
/// of names, so that a large incremental holds no second copy of its file names.
#[must_use]
pub fn unchanged(file: &ManifestFile, delta: bool) -> bool {
    file.reference.is_some() && !(delta && file.size != 0)
}

/// Turn `manifest` (built by [`build`], validated by [`validate_build`]) and its `files` into a
/// `backup_type` backup on top of `prior`; returns the plan and the new file list. `archive_start`
/// is the new backup's start segment. Files equal in size (and mtime, unless delta) to the prior's
/// take over its checksums, sizes, page results and bundle location, with `reference` naming the
/// backup that stores the bytes. Also inherits the prior's reference list, `backup-bundle-raw` and
/// cipher sub-passphrase. Both file lists are streamed in name order side by side (the prior's
/// from where it is stored, twice when delta is not yet decided: once to decide it, once to take
/// the files over), so a large incremental holds neither list.
///
/// # Errors
/// Those of [`LazyManifest::for_each_file`]: a prior file entry that does not load, a prior that
/// changed since it was loaded, read errors; read and write errors of the file lists.
pub fn build_incr(
    manifest: &mut Manifest,
    files: &FileList,
    prior: &LazyManifest,
    backup_type: BackupType,
    archive_start: Option<&str>,
    bundle: bool,
) -> Result<(IncrPlan, FileList)> {
    let head = &prior.manifest;
    manifest.backup.prior = Some(head.backup.label.clone());
    manifest.backup.reference.clone_from(&head.backup.reference);
    manifest.backup.backup_type = backup_type;
    manifest.backup.bundle_raw = head.backup.bundle_raw;
    manifest.cipher_pass.clone_from(&head.cipher_pass);

    let mut plan = IncrPlan {
        delta: manifest.options.delta.unwrap_or(false),
        ..IncrPlan::default()
    };
    let prior_label = &head.backup.label;
    let timeline = |seg: &str| seg.get(..8).map(str::to_string);
    if let (Some(start), Some(stop)) = (archive_start, head.backup.archive_stop.as_deref())
        && timeline(start) != timeline(stop)
    {
        plan.warnings.push(format!(
            "a timeline switch has occurred since the {prior_label} backup, enabling delta checksum\nHINT: this is normal after restoring from backup or promoting a standby."
        ));
        plan.delta = true;
    } else if head.options.online != manifest.options.online {
        plan.warnings.push(format!(
            "the online option has changed since the {prior_label} backup, enabling delta checksum"
        ));
        plan.delta = true;
    }
    if !plan.delta {
        // the first anomaly in name order (the prior's stored order) forces delta
        let mut anomaly: Option<String> = None;
        let mut cursor = Cursor::new(files)?;
        prior.for_each_file(|name, before| {
            if anomaly.is_some() {
                return Ok(());
            }
            let Some(entry) = cursor.seek(name, &mut |_| Ok(()))? else {
                return Ok(());
            };
            let file = &entry.file;
            if file.timestamp < before.timestamp {
                anomaly = Some(format!(
                    "file '{}' has timestamp earlier than prior backup (prior {}, current {}), enabling delta checksum",
                    pg_relative(name),
                    before.timestamp,
                    file.timestamp
                ));
            } else if file.size != before.size && file.timestamp == before.timestamp {
                anomaly = Some(format!(
                    "file '{}' has same timestamp ({}) as prior but different size (prior {}, current {}), enabling delta checksum",
                    pg_relative(name),
                    file.timestamp,
                    before.size,
                    file.size
                ));
            }
            Ok(())
        })?;
        if let Some(warning) = anomaly {
            plan.warnings.push(warning);
            plan.delta = true;
        }
    }
    manifest.options.delta = Some(plan.delta);
    let prior_label: Arc<str> = Arc::from(prior_label.as_str());
    let delta = plan.delta;
    let mut out = files.rewriter()?;
    let mut write = |e: Entry| out.push(&e.name, &e.file, e.mark);
    let mut cursor = Cursor::new(files)?;
    prior.for_each_file(|name, before| {
        let Some(entry) = cursor.seek(name, &mut write)? else {
            return Ok(());
        };
        let file = &mut entry.file;
        // zero-length files of a bundled backup are never copied and never referenced
        let copy = !(bundle && file.size == 0);
        if !(copy
            && file.size == before.size
            && (delta || file.size == 0 || file.timestamp == before.timestamp))
        {
            return Ok(());
        }
        file.size_repo = before.size_repo;
        file.checksum = before.checksum;
        file.checksum_repo = before.checksum_repo;
        file.reference = Some(before.reference.unwrap_or_else(|| Arc::clone(&prior_label)));
        file.checksum_page = before.checksum_page;
        file.checksum_page_error = before.checksum_page_error;
        file.bundle_id = before.bundle_id;
        file.bundle_offset = before.bundle_offset;
        Ok(())
    })?;
    cursor.drain(&mut write)?;
    Ok((plan, out.finish()?))
}

/// Give the manifest its label; the label ends the reference list.
pub fn set_label(manifest: &mut Manifest, label: &str) {
    manifest.backup.label = label.to_string();
    manifest.backup.reference.push(label.to_string());
}

/// pgBackRest `manifestValidate(strict)` for one file: every file has a checksum, a zero-length
/// file the empty one, a non-empty file a non-zero repository size. Problems are appended to
/// `problems`, one per line.
pub fn final_problems(name: &str, file: &ManifestFile, problems: &mut String) {
    match &file.checksum {
        None => problems.push_str(&format!("\nmissing checksum for file '{name}'")),
        Some(c) if file.size == 0 && c != EMPTY_SHA1 => problems.push_str(&format!(
            "\ninvalid checksum '{c}' for zero size file '{name}'"
        )),
        Some(_) => {}
    }
    if file.size_repo == 0 && file.size != 0 {
        problems.push_str(&format!("\nrepo size must be > 0 for file '{name}'"));
    }
}

/// The error of [`final_problems`] found, if any.
///
/// # Errors
/// `Format` listing every problem.
pub fn final_result(problems: &str) -> Result<()> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Format,
            format!("manifest validation failed:{problems}"),
        ))
    }
}

/// [`final_problems`] of every file of a manifest held in memory.
///
/// # Errors
/// `Format` listing every problem, one per line.
pub fn validate_final(manifest: &Manifest) -> Result<()> {
    let mut problems = String::new();
    for (name, file) in &manifest.files {
        final_problems(name, file, &mut problems);
    }
    final_result(&problems)
}

#[cfg(test)]
mod tests;
