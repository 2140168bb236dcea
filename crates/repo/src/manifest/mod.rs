//! `backup.manifest`: everything a restore needs to rebuild PGDATA from one backup (pgBackRest
//! `src/info/manifest.c`), byte-compatible with pgBackRest 2.45.
//!
//! Contract:
//! - Entries are held fully resolved: every file, path and link carries its own mode and owner. Load applies the
//!   `[target:*:default]` sections to entries that omit a key; save factors them out again exactly as pgBackRest
//!   does: the defaults are *derived* from the `pg_data` path entry (user, group; path mode = its mode; file mode =
//!   its mode & 0640), not from the most common value, and an entry writes `user`/`group`/`mode` only when it differs.
//!   An owner that had no name is `None` and is written as JSON `false`.
//! - Files, paths, links, targets and databases are `BTreeMap`s keyed by name, so iteration is in byte order — the
//!   order pgBackRest writes and the order a backup or restore walks.
//! - Per-file omission rules (§3.9 of the format notes): `checksum` only when size > 0 (a zero-size file always has
//!   the empty SHA-1 after load), `repo-size` only when it differs from `size`, `bno` only when non-zero, `bi`/`bic`/
//!   `bim` only for block-incremental files, `checksum-page` only when checked, `rck`/`reference`/`bni` when present.
//! - `[backup] backup-reference` is always written; a manifest from before 2.42 without it gets the list derived from
//!   file references plus its own label, as pgBackRest derives it.
//! - Keys and sections this model does not know are kept (in `extra` fields) and written back in sorted position.
//! - Memory: saving streams (`InfoFile::write_to` renders `[target:file]` one entry at a time, never the whole file
//!   or an `Ini` of it); loading frees the file's bytes once parsed and fills the file map in bulk batches, so the
//!   map's nodes are full. A file entry is kept small (a size test guards it): checksums are 20 bytes
//!   ([`Checksum`]), owners and references are shared `Arc<str>`s (one per distinct name, see `Names`), and the
//!   rare parts (page errors, block incremental, unknown keys) are boxed. [`LazyManifest`] loads a manifest whose
//!   file list stays in the repository, streamed each time it is read (a diff/incr's prior).

pub mod build;
mod checksum;
mod lazy;
pub mod spool;

pub use checksum::Checksum;
pub use lazy::LazyManifest;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_pg::PgVersion;

use crate::info::InfoFile;
use crate::info::codec::{
    self, BACKREST_VERSION, Fields, Ini, Section, str_map_json, value_bool, value_i64, value_str,
    value_str_map, value_u32, value_u64,
};
use crate::info::json::{self, Json};
use crate::layout::{self, BackupType, CompressType};

/// SHA-1 of zero bytes: the checksum of every empty file.
pub const EMPTY_SHA1: &str = "da39a3ee5e6b4b0d3255bfef95601890afd80709";
/// Name of the PGDATA target and path.
pub const TARGET_PGDATA: &str = "pg_data";
/// Prefix of tablespace targets.
pub const TARGET_PGTBLSPC: &str = "pg_tblspc";
/// Block-incremental sizes are stored divided by this.
pub const BLOCK_INCR_SIZE_FACTOR: u64 = 8192;
/// Block checksum size assumed when `bic` is absent.
pub const BLOCK_INCR_CHECKSUM_SIZE_MIN: u64 = 6;
/// Extension of block-incremental repository files.
pub const BLOCK_INCR_EXT: &str = ".pgbi";

const SECTION_BACKUP: &str = "backup";
const SECTION_BACKUP_DB: &str = "backup:db";
const SECTION_BACKUP_OPTION: &str = "backup:option";
const SECTION_BACKUP_TARGET: &str = "backup:target";
const SECTION_DB: &str = "db";
const SECTION_METADATA: &str = "metadata";
const SECTION_FILE: &str = "target:file";
const SECTION_FILE_DEFAULT: &str = "target:file:default";
const SECTION_LINK: &str = "target:link";
const SECTION_LINK_DEFAULT: &str = "target:link:default";
const SECTION_PATH: &str = "target:path";
const SECTION_PATH_DEFAULT: &str = "target:path:default";

const KEY_GROUP: &str = "group";
const KEY_MODE: &str = "mode";
const KEY_USER: &str = "user";

/// `[backup]`: identity and timing of the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestBackup {
    /// `backup-label`.
    pub label: String,
    /// `backup-prior`: label of the backup this diff/incr is based on.
    pub prior: Option<String>,
    /// `backup-type`.
    pub backup_type: BackupType,
    /// `backup-reference`: every label the backup needs, in set order, ending with its own.
    pub reference: Vec<String>,
    /// `backup-archive-start`: WAL segment of the start LSN (online backups).
    pub archive_start: Option<String>,
    /// `backup-archive-stop`.
    pub archive_stop: Option<String>,
    /// `backup-lsn-start`, as PostgreSQL prints it.
    pub lsn_start: Option<String>,
    /// `backup-lsn-stop`.
    pub lsn_stop: Option<String>,
    /// `backup-timestamp-copy-start`.
    pub timestamp_copy_start: i64,
    /// `backup-timestamp-start`.
    pub timestamp_start: i64,
    /// `backup-timestamp-stop`.
    pub timestamp_stop: i64,
    /// `backup-bundle` (written only when true).
    pub bundle: bool,
    /// `backup-bundle-raw` (written only with bundle and when true).
    pub bundle_raw: bool,
    /// `backup-block-incr` (written only when true).
    pub block_incr: bool,
}

/// `[backup:db]`: the cluster, as in backup.info's history entry `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestBackupDb {
    /// `db-id`: backup.info history id.
    pub id: u32,
    /// `db-system-id`.
    pub system_id: u64,
    /// `db-catalog-version`.
    pub catalog_version: u32,
    /// `db-control-version`.
    pub control_version: u32,
    /// `db-version`.
    pub version: PgVersion,
}

/// `[backup:option]`. Options marked optional may be absent in manifests of old versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestOptions {
    /// `option-archive-check`.
    pub archive_check: bool,
    /// `option-archive-copy`.
    pub archive_copy: bool,
    /// `option-backup-standby`.
    pub backup_standby: Option<bool>,
    /// `option-buffer-size`.
    pub buffer_size: Option<u64>,
    /// `option-checksum-page`.
    pub checksum_page: Option<bool>,
    /// `option-compress-type`, or gz/none from the legacy `option-compress` when absent.
    pub compress_type: CompressType,
    /// `option-compress-level`.
    pub compress_level: Option<u32>,
    /// `option-compress-level-network`.
    pub compress_level_network: Option<u32>,
    /// `option-delta`.
    pub delta: Option<bool>,
    /// `option-hardlink`.
    pub hardlink: bool,
    /// `option-online`.
    pub online: bool,
    /// `option-process-max`.
    pub process_max: Option<u32>,
}

/// Whether a target is the data directory or reached through a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetType {
    /// `path` (only `pg_data`).
    Path,
    /// `link`: a tablespace, a directory or a file symlink inside PGDATA.
    Link,
}

/// One `[backup:target]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestTarget {
    /// `type`.
    pub target_type: TargetType,
    /// `path`: directory of the target (for a file link, the destination's directory).
    pub path: String,
    /// `file`: for a file link, the destination's file name.
    pub file: Option<String>,
    /// `tablespace-id` (written as a string).
    pub tablespace_id: Option<u32>,
    /// `tablespace-name`.
    pub tablespace_name: Option<String>,
    /// Unknown keys, kept.
    pub extra: BTreeMap<String, Json>,
}

/// One `[db]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestDb {
    /// `db-id`: database oid.
    pub id: u32,
    /// `db-last-system-id`: template0's oid.
    pub last_system_id: u32,
    /// Unknown keys, kept.
    pub extra: BTreeMap<String, Json>,
}

/// One `[target:file]` entry, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    /// `size`: original size.
    pub size: u64,
    /// `repo-size`: stored size (equal to `size` when the key is absent).
    pub size_repo: u64,
    /// `timestamp`: mtime at manifest build.
    pub timestamp: i64,
    /// `checksum`: SHA-1 of the original content; `None` while not yet copied (partial manifest). Always
    /// [`EMPTY_SHA1`] for a zero-size file after load.
    pub checksum: Option<Checksum>,
    /// `rck`: SHA-1 of the stored bytes.
    pub checksum_repo: Option<Checksum>,
    /// `checksum-page`: `None` = not checked, `Some(true)` = all pages valid, `Some(false)` = errors.
    pub checksum_page: Option<bool>,
    /// `checksum-page-error`: page numbers and `[first,last]` ranges, kept as JSON (boxed: rare).
    pub checksum_page_error: Option<Box<Json>>,
    /// `reference`: label of the backup storing the file; `None` = this backup. Shared: a manifest references
    /// few backups.
    pub reference: Option<Arc<str>>,
    /// `bni`: bundle id, 0 = not bundled.
    pub bundle_id: u64,
    /// `bno`: offset inside the bundle.
    pub bundle_offset: u64,
    /// Block incremental: `None` = not (boxed: rare).
    pub block_incr: Option<Box<BlockIncr>>,
    /// Permission bits.
    pub mode: u32,
    /// Owner name; `None` when the uid had no name. Shared: a manifest has few distinct owners.
    pub user: Option<Arc<str>>,
    /// Group name; `None` when the gid had no name.
    pub group: Option<Arc<str>>,
    /// Unknown keys (e.g. `szo` of newer versions), kept; `None` when there are none (boxed: rare).
    pub extra: Option<Box<BTreeMap<String, Json>>>,
}

/// The block-incremental fields of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockIncr {
    /// Block size in bytes (`bi` × 8192), never 0.
    pub size: u64,
    /// `bic`: block checksum size ([`BLOCK_INCR_CHECKSUM_SIZE_MIN`] when absent).
    pub checksum_size: u64,
    /// `bim`: size of the block map.
    pub map_size: u64,
}

impl ManifestFile {
    /// A file not yet copied: size, timestamp and owner known, nothing stored.
    #[must_use]
    pub fn new(
        size: u64,
        timestamp: i64,
        mode: u32,
        user: Option<Arc<str>>,
        group: Option<Arc<str>>,
    ) -> Self {
        ManifestFile {
            size,
            size_repo: size,
            timestamp,
            checksum: (size == 0).then(Checksum::empty),
            checksum_repo: None,
            checksum_page: None,
            checksum_page_error: None,
            reference: None,
            bundle_id: 0,
            bundle_offset: 0,
            block_incr: None,
            mode,
            user,
            group,
            extra: None,
        }
    }

    /// Block size in bytes when the file is block incremental, else 0.
    #[must_use]
    pub fn block_incr_size(&self) -> u64 {
        self.block_incr.as_ref().map_or(0, |b| b.size)
    }
}

/// One `[target:path]` entry, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestPath {
    /// Permission bits.
    pub mode: u32,
    /// Owner name; `None` when the uid had no name. Shared: a manifest has few distinct owners.
    pub user: Option<Arc<str>>,
    /// Group name; `None` when the gid had no name.
    pub group: Option<Arc<str>>,
    /// Unknown keys, kept.
    pub extra: BTreeMap<String, Json>,
}

/// One `[target:link]` entry, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestLink {
    /// Link destination as read by readlink.
    pub destination: String,
    /// Owner name; `None` when the uid had no name. Shared: a manifest has few distinct owners.
    pub user: Option<Arc<str>>,
    /// Group name; `None` when the gid had no name.
    pub group: Option<Arc<str>>,
    /// Unknown keys, kept.
    pub extra: BTreeMap<String, Json>,
}

/// The content of `backup.manifest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The pgBackRest version that wrote the loaded file (`backrest-version`); copied into backup.info. Saving
    /// always writes [`BACKREST_VERSION`].
    pub backrest_version: String,
    /// `[backup]`.
    pub backup: ManifestBackup,
    /// `[backup:db]`.
    pub db: ManifestBackupDb,
    /// `[backup:option]`.
    pub options: ManifestOptions,
    /// `[backup:target]` by name (`pg_data`, `pg_data/<link>`, `pg_tblspc/<oid>`).
    pub targets: BTreeMap<String, ManifestTarget>,
    /// `[cipher] cipher-pass`: the passphrase of this backup set's files.
    pub cipher_pass: Option<String>,
    /// `[db]`: databases by name.
    pub databases: BTreeMap<String, ManifestDb>,
    /// `[metadata] annotation`.
    pub annotation: Option<BTreeMap<String, String>>,
    /// `[target:file]` by manifest name.
    pub files: BTreeMap<String, ManifestFile>,
    /// `[target:link]` by name.
    pub links: BTreeMap<String, ManifestLink>,
    /// `[target:path]` by name.
    pub paths: BTreeMap<String, ManifestPath>,
    /// Content this model does not know, kept for round trips.
    pub extra: Ini,
}

impl Manifest {
    /// An empty manifest to be filled by a backup. The caller adds at least the `pg_data` target and path.
    #[must_use]
    pub fn new(backup: ManifestBackup, db: ManifestBackupDb, options: ManifestOptions) -> Self {
        Manifest {
            backrest_version: BACKREST_VERSION.to_string(),
            backup,
            db,
            options,
            targets: BTreeMap::new(),
            cipher_pass: None,
            databases: BTreeMap::new(),
            annotation: None,
            files: BTreeMap::new(),
            links: BTreeMap::new(),
            paths: BTreeMap::new(),
            extra: Ini::new(),
        }
    }

    /// The label of the backup that stores `file`'s bytes.
    #[must_use]
    pub fn file_backup_label<'a>(&'a self, file: &'a ManifestFile) -> &'a str {
        file.reference.as_deref().unwrap_or(&self.backup.label)
    }

    /// Repository path of a file's bytes: its bundle, or `<label>/<name><ext>` (`.pgbi` for block incremental,
    /// else the manifest's compression extension), where label is the referenced backup when there is one.
    #[must_use]
    pub fn file_repo_path(&self, stanza: &str, name: &str, file: &ManifestFile) -> String {
        let label = self.file_backup_label(file);
        if file.bundle_id != 0 {
            layout::bundle_path(stanza, label, file.bundle_id)
        } else if file.block_incr.is_some() {
            layout::backup_file_path(stanza, label, name, BLOCK_INCR_EXT)
        } else {
            layout::backup_file_path(stanza, label, name, self.options.compress_type.ext())
        }
    }

    /// Defaults derived from the `pg_data` path: (user, group, file mode, path mode).
    fn save_defaults(&self) -> Result<(OwnerName, OwnerName, u32, u32)> {
        let base = self.paths.get(TARGET_PGDATA).ok_or_else(|| {
            Error::new(
                ErrorKind::Format,
                format!("unable to find '{TARGET_PGDATA}' in manifest path list"),
            )
        })?;
        Ok((
            base.user.clone(),
            base.group.clone(),
            base.mode & 0o640,
            base.mode,
        ))
    }
}

/// Files gathered before they are merged into a manifest's file map in batches. A `BTreeMap` filled by ordered
/// inserts keeps its nodes a little over half full, and with a few hundred bytes per entry that slack is the largest
/// part of a big manifest's memory; `BTreeMap::append` rebuilds the map with full nodes. A batch is merged when it
/// reaches half the map's size (at least [`FileMap::BATCH_MIN`] entries), so each entry is moved a small constant
/// number of times on average and the transient memory stays within half the map.
#[derive(Debug, Default)]
pub(crate) struct FileMap {
    files: BTreeMap<String, ManifestFile>,
    pending: BTreeMap<String, ManifestFile>,
}

impl FileMap {
    const BATCH_MIN: usize = 1024;

    /// Add (or replace) a file.
    pub(crate) fn insert(&mut self, name: String, file: ManifestFile) {
        self.pending.insert(name, file);
        if self.pending.len() >= Self::BATCH_MIN.max(self.files.len() / 2) {
            self.files.append(&mut self.pending);
        }
    }

    /// The merged map.
    pub(crate) fn finish(mut self) -> BTreeMap<String, ManifestFile> {
        self.files.append(&mut self.pending);
        self.files
    }
}

/// An owner (user or group) name as entries hold it: `None` when the id had no name.
pub type OwnerName = Option<Arc<str>>;

fn owner_json(owner: Option<&str>) -> Json {
    owner.map_or(Json::Bool(false), Json::str)
}

/// Shares the few distinct owner names and reference labels of a manifest among its entries (a
/// string per entry would be most of a large manifest's memory). Remembers a bounded number of
/// names, so a manifest with unusually many distinct names costs no more than unshared strings.
#[derive(Debug, Default)]
pub(crate) struct Names {
    names: Vec<Arc<str>>,
}

impl Names {
    const MAX: usize = 64;

    /// The shared copy of `name`.
    pub(crate) fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.names.iter().find(|n| ***n == *name) {
            return Arc::clone(known);
        }
        let new: Arc<str> = Arc::from(name);
        if self.names.len() < Self::MAX {
            self.names.push(Arc::clone(&new));
        }
        new
    }

    /// [`Names::get`] through an option.
    pub(crate) fn opt(&mut self, name: Option<&str>) -> Option<Arc<str>> {
        name.map(|n| self.get(n))
    }
}

fn mode_string(mode: u32) -> String {
    format!("{mode:04o}")
}

fn parse_mode(section: &str, key: &str, text: &str) -> Result<u32> {
    if text.is_empty() || !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(Error::new(
            ErrorKind::Format,
            format!("section '{section}', key '{key}': invalid mode '{text}'"),
        ));
    }
    u32::from_str_radix(text, 8).map_err(|_| {
        Error::new(
            ErrorKind::Format,
            format!("section '{section}', key '{key}': invalid mode '{text}'"),
        )
    })
}

fn required(ini: &mut Ini, section: &str, key: &str) -> Result<String> {
    ini.take(section, key).ok_or_else(|| {
        Error::new(
            ErrorKind::Format,
            format!("section '{section}', key '{key}' does not exist"),
        )
    })
}

fn opt_take<T>(
    ini: &mut Ini,
    section: &str,
    key: &str,
    parse: impl Fn(&str, &str, &str) -> Result<T>,
) -> Result<Option<T>> {
    ini.take(section, key)
        .map(|raw| parse(section, key, &raw))
        .transpose()
}

/// Owner default of a `[target:*:default]` section: `None` = key absent, `Some(None)` = `false`.
fn take_owner_default(ini: &mut Ini, section: &str, key: &str) -> Result<Option<Option<Arc<str>>>> {
    let Some(raw) = ini.take(section, key) else {
        return Ok(None);
    };
    match codec::value_json(section, key, &raw)? {
        Json::Str(s) => Ok(Some(Some(Arc::from(s)))),
        Json::Bool(false) => Ok(Some(None)),
        other => Err(Error::new(
            ErrorKind::Format,
            format!(
                "section '{section}', key '{key}' must be a name or false but found {}",
                other.type_name()
            ),
        )),
    }
}

/// Resolve an entry's owner: its own value, else the default, else an error naming what is missing.
fn resolve_owner(
    own: Option<Option<String>>,
    default: Option<&Option<Arc<str>>>,
    names: &mut Names,
    section: &str,
    key: &str,
    name: &str,
) -> Result<Option<Arc<str>>> {
    match (own, default) {
        (Some(v), _) => Ok(names.opt(v.as_deref())),
        (None, Some(d)) => Ok(d.clone()),
        (None, None) => Err(Error::new(
            ErrorKind::Format,
            format!("section '{section}:default', key '{key}' does not exist (needed by '{name}')"),
        )),
    }
}

#[derive(Debug)]
struct Defaults {
    user: Option<Option<Arc<str>>>,
    group: Option<Option<Arc<str>>>,
    mode: Option<u32>,
}

fn take_defaults(ini: &mut Ini, section: &str, with_mode: bool) -> Result<Defaults> {
    let user = take_owner_default(ini, section, KEY_USER)?;
    let group = take_owner_default(ini, section, KEY_GROUP)?;
    let mode = if with_mode {
        match ini.take(section, KEY_MODE) {
            Some(raw) => Some(parse_mode(
                section,
                KEY_MODE,
                &value_str(section, KEY_MODE, &raw)?,
            )?),
            None => None,
        }
    } else {
        None
    };
    Ok(Defaults { user, group, mode })
}

fn take_mode(f: &mut Fields<'_>, section: &str, name: &str, default: Option<u32>) -> Result<u32> {
    match f.opt_str(KEY_MODE)? {
        Some(text) => parse_mode(section, name, &text),
        None => default.ok_or_else(|| {
            Error::new(
                ErrorKind::Format,
                format!(
                    "section '{section}:default', key 'mode' does not exist (needed by '{name}')"
                ),
            )
        }),
    }
}

fn load_backup(ini: &mut Ini) -> Result<ManifestBackup> {
    let s = SECTION_BACKUP;
    let label = value_str(s, "backup-label", &required(ini, s, "backup-label")?)?;
    let type_text = value_str(s, "backup-type", &required(ini, s, "backup-type")?)?;
    let backup_type = BackupType::parse(&type_text).ok_or_else(|| {
        Error::new(
            ErrorKind::Format,
            format!("section '{s}', key 'backup-type': invalid backup type '{type_text}'"),
        )
    })?;
    let reference = opt_take(ini, s, "backup-reference", value_str)?
        .map(|list| list.split(',').map(str::to_string).collect::<Vec<_>>());
    Ok(ManifestBackup {
        prior: opt_take(ini, s, "backup-prior", value_str)?,
        archive_start: opt_take(ini, s, "backup-archive-start", value_str)?,
        archive_stop: opt_take(ini, s, "backup-archive-stop", value_str)?,
        lsn_start: opt_take(ini, s, "backup-lsn-start", value_str)?,
        lsn_stop: opt_take(ini, s, "backup-lsn-stop", value_str)?,
        timestamp_copy_start: opt_take(ini, s, "backup-timestamp-copy-start", value_i64)?
            .unwrap_or(0),
        timestamp_start: opt_take(ini, s, "backup-timestamp-start", value_i64)?.unwrap_or(0),
        timestamp_stop: opt_take(ini, s, "backup-timestamp-stop", value_i64)?.unwrap_or(0),
        bundle: opt_take(ini, s, "backup-bundle", value_bool)?.unwrap_or(false),
        bundle_raw: opt_take(ini, s, "backup-bundle-raw", value_bool)?.unwrap_or(false),
        block_incr: opt_take(ini, s, "backup-block-incr", value_bool)?.unwrap_or(false),
        // filled in by the caller when absent (derived from file references)
        reference: reference.unwrap_or_default(),
        label,
        backup_type,
    })
}

fn load_backup_db(ini: &mut Ini) -> Result<ManifestBackupDb> {
    let s = SECTION_BACKUP_DB;
    let version_text = value_str(s, "db-version", &required(ini, s, "db-version")?)?;
    Ok(ManifestBackupDb {
        id: value_u32(s, "db-id", &required(ini, s, "db-id")?)?,
        system_id: value_u64(s, "db-system-id", &required(ini, s, "db-system-id")?)?,
        catalog_version: value_u32(
            s,
            "db-catalog-version",
            &required(ini, s, "db-catalog-version")?,
        )?,
        control_version: value_u32(
            s,
            "db-control-version",
            &required(ini, s, "db-control-version")?,
        )?,
        version: crate::info::archive_info::parse_version(s, "db-version", &version_text)?,
    })
}

fn load_options(ini: &mut Ini) -> Result<ManifestOptions> {
    let s = SECTION_BACKUP_OPTION;
    let compress = opt_take(ini, s, "option-compress", value_bool)?.unwrap_or(false);
    let compress_type = match opt_take(ini, s, "option-compress-type", value_str)? {
        Some(name) => CompressType::from_name(&name).map_err(|_| {
            Error::new(
                ErrorKind::Format,
                format!(
                    "section '{s}', key 'option-compress-type': invalid compression type '{name}'"
                ),
            )
        })?,
        None if compress => CompressType::Gz,
        None => CompressType::None,
    };
    Ok(ManifestOptions {
        archive_check: opt_take(ini, s, "option-archive-check", value_bool)?.unwrap_or(false),
        archive_copy: opt_take(ini, s, "option-archive-copy", value_bool)?.unwrap_or(false),
        backup_standby: opt_take(ini, s, "option-backup-standby", value_bool)?,
        buffer_size: opt_take(ini, s, "option-buffer-size", value_u64)?,
        checksum_page: opt_take(ini, s, "option-checksum-page", value_bool)?,
        compress_type,
        compress_level: opt_take(ini, s, "option-compress-level", value_u32)?,
        compress_level_network: opt_take(ini, s, "option-compress-level-network", value_u32)?,
        delta: opt_take(ini, s, "option-delta", value_bool)?,
        hardlink: opt_take(ini, s, "option-hardlink", value_bool)?.unwrap_or(false),
        online: opt_take(ini, s, "option-online", value_bool)?.unwrap_or(false),
        process_max: opt_take(ini, s, "option-process-max", value_u32)?,
    })
}

fn load_target(name: &str, raw: &str) -> Result<ManifestTarget> {
    let s = SECTION_BACKUP_TARGET;
    let mut f = Fields::parse(s, name, raw)?;
    let file = f.opt_str("file")?;
    let path = f.req_str("path")?;
    let tablespace_id = match f.opt_str("tablespace-id")? {
        Some(text) => Some(text.parse::<u32>().map_err(|_| {
            Error::new(
                ErrorKind::Format,
                format!("section '{s}', key '{name}': invalid tablespace-id '{text}'"),
            )
        })?),
        None => None,
    };
    let tablespace_name = if tablespace_id.is_some() {
        Some(f.req_str("tablespace-name")?)
    } else {
        f.opt_str("tablespace-name")?
    };
    let type_text = f.req_str("type")?;
    let target_type = match type_text.as_str() {
        "path" => TargetType::Path,
        "link" => TargetType::Link,
        _ => {
            return Err(Error::new(
                ErrorKind::Format,
                format!("section '{s}', key '{name}': invalid target type '{type_text}'"),
            ));
        }
    };
    Ok(ManifestTarget {
        target_type,
        path,
        file,
        tablespace_id,
        tablespace_name,
        extra: f.rest(),
    })
}

fn load_file(
    name: &str,
    raw: &str,
    defaults: &Defaults,
    names: &mut Names,
) -> Result<ManifestFile> {
    load_file_fields(
        name,
        Fields::parse(SECTION_FILE, name, raw)?,
        defaults,
        names,
    )
}

fn load_file_fields(
    name: &str,
    mut f: Fields<'_>,
    defaults: &Defaults,
    names: &mut Names,
) -> Result<ManifestFile> {
    let s = SECTION_FILE;
    let block_incr = match f.opt_u64("bi")? {
        Some(bi) => {
            let block = BlockIncr {
                size: bi.saturating_mul(BLOCK_INCR_SIZE_FACTOR),
                checksum_size: f.opt_u64("bic")?.unwrap_or(BLOCK_INCR_CHECKSUM_SIZE_MIN),
                map_size: f.opt_u64("bim")?.unwrap_or(0),
            };
            (block.size != 0).then(|| Box::new(block))
        }
        None => None,
    };
    let bundle_id = f.opt_u64("bni")?.unwrap_or(0);
    let bundle_offset = f.opt_u64("bno")?.unwrap_or(0);
    let checksum = f.opt_str("checksum")?.map(Checksum::from);
    let checksum_page = f.opt_bool("checksum-page")?;
    let checksum_page_error = f.take("checksum-page-error").map(Box::new);
    let group = resolve_owner(
        f.opt_owner(KEY_GROUP)?,
        defaults.group.as_ref(),
        names,
        s,
        KEY_GROUP,
        name,
    )?;
    let mode = take_mode(&mut f, s, name, defaults.mode)?;
    let checksum_repo = f.opt_str("rck")?.map(Checksum::from);
    let reference = names.opt(f.opt_str("reference")?.as_deref());
    let size_repo = f.opt_u64("repo-size")?;
    let size = f
        .opt_u64("size")?
        .ok_or_else(|| Error::new(ErrorKind::Format, format!("missing size for file '{name}'")))?;
    let timestamp = f.opt_i64("timestamp")?.ok_or_else(|| {
        Error::new(
            ErrorKind::Format,
            format!("missing timestamp for file '{name}'"),
        )
    })?;
    let user = resolve_owner(
        f.opt_owner(KEY_USER)?,
        defaults.user.as_ref(),
        names,
        s,
        KEY_USER,
        name,
    )?;
    Ok(ManifestFile {
        size,
        size_repo: size_repo.unwrap_or(size),
        timestamp,
        checksum: if size == 0 {
            Some(Checksum::empty())
        } else {
            checksum
        },
        checksum_repo,
        checksum_page,
        checksum_page_error,
        reference,
        bundle_id,
        bundle_offset,
        block_incr,
        mode,
        user,
        group,
        extra: {
            let rest = f.rest();
            (!rest.is_empty()).then(|| Box::new(rest))
        },
    })
}

impl ManifestFile {
    fn to_json(&self, user: Option<&str>, group: Option<&str>, mode: u32) -> Json {
        let mut map = self.extra.as_deref().cloned().unwrap_or_default();
        let mut put = |k: &str, v: Json| {
            map.insert(k.to_string(), v);
        };
        if let Some(block) = &self.block_incr {
            put("bi", Json::UInt(block.size / BLOCK_INCR_SIZE_FACTOR));
            if block.checksum_size != BLOCK_INCR_CHECKSUM_SIZE_MIN {
                put("bic", Json::UInt(block.checksum_size));
            }
            if block.map_size != 0 {
                put("bim", Json::UInt(block.map_size));
            }
        }
        if self.bundle_id != 0 {
            put("bni", Json::UInt(self.bundle_id));
            if self.bundle_offset != 0 {
                put("bno", Json::UInt(self.bundle_offset));
            }
        }
        if self.size != 0
            && let Some(c) = &self.checksum
        {
            put("checksum", Json::str(c.to_string()));
        }
        if let Some(ok) = self.checksum_page {
            put("checksum-page", Json::Bool(ok));
        }
        if let Some(list) = &self.checksum_page_error {
            put("checksum-page-error", Json::clone(list));
        }
        if self.group.as_deref() != group {
            put(KEY_GROUP, owner_json(self.group.as_deref()));
        }
        if self.mode != mode {
            put(KEY_MODE, Json::Str(mode_string(self.mode)));
        }
        if let Some(c) = &self.checksum_repo {
            put("rck", Json::str(c.to_string()));
        }
        if let Some(r) = &self.reference {
            put("reference", Json::str(&**r));
        }
        if self.size_repo != self.size {
            put("repo-size", Json::UInt(self.size_repo));
        }
        put("size", Json::UInt(self.size));
        put("timestamp", Json::int(self.timestamp));
        if self.user.as_deref() != user {
            put(KEY_USER, owner_json(self.user.as_deref()));
        }
        Json::Object(map)
    }
}

impl ManifestFile {
    /// Append the JSON of [`ManifestFile::to_json`] to `out` without building it: keys in byte order, written
    /// directly. Files with kept unknown keys go through `to_json` (the keys must be merged in order).
    fn write_json(&self, out: &mut String, user: Option<&str>, group: Option<&str>, mode: u32) {
        if self.extra.as_ref().is_some_and(|e| !e.is_empty()) {
            self.to_json(user, group, mode).write(out);
            return;
        }
        let mut first = true;
        let mut key = |out: &mut String, k: &str| {
            out.push_str(if first { "{\"" } else { ",\"" });
            first = false;
            out.push_str(k);
            out.push_str("\":");
        };
        let uint = |out: &mut String, v: u64| {
            let _ = write!(out, "{v}");
        };
        if let Some(block) = &self.block_incr {
            key(out, "bi");
            uint(out, block.size / BLOCK_INCR_SIZE_FACTOR);
            if block.checksum_size != BLOCK_INCR_CHECKSUM_SIZE_MIN {
                key(out, "bic");
                uint(out, block.checksum_size);
            }
            if block.map_size != 0 {
                key(out, "bim");
                uint(out, block.map_size);
            }
        }
        if self.bundle_id != 0 {
            key(out, "bni");
            uint(out, self.bundle_id);
            if self.bundle_offset != 0 {
                key(out, "bno");
                uint(out, self.bundle_offset);
            }
        }
        if self.size != 0
            && let Some(c) = &self.checksum
        {
            key(out, "checksum");
            c.write_json(out);
        }
        if let Some(ok) = self.checksum_page {
            key(out, "checksum-page");
            out.push_str(if ok { "true" } else { "false" });
        }
        if let Some(list) = &self.checksum_page_error {
            key(out, "checksum-page-error");
            list.write(out);
        }
        if self.group.as_deref() != group {
            key(out, KEY_GROUP);
            owner_json(self.group.as_deref()).write(out);
        }
        if self.mode != mode {
            key(out, KEY_MODE);
            json::write_string(out, &mode_string(self.mode));
        }
        if let Some(c) = &self.checksum_repo {
            key(out, "rck");
            c.write_json(out);
        }
        if let Some(r) = &self.reference {
            key(out, "reference");
            json::write_string(out, r);
        }
        if self.size_repo != self.size {
            key(out, "repo-size");
            uint(out, self.size_repo);
        }
        key(out, "size");
        uint(out, self.size);
        key(out, "timestamp");
        let _ = write!(out, "{}", self.timestamp);
        if self.user.as_deref() != user {
            key(out, KEY_USER);
            owner_json(self.user.as_deref()).write(out);
        }
        out.push('}');
    }
}

/// Merge `entries` into `section` of `ini` (kept unknown keys included) and sort.
fn put_section(ini: &mut Ini, section: &str, entries: Vec<(&str, Json)>) {
    let sec: &mut Section = ini.section_mut(section);
    for (k, v) in entries {
        sec.set(k, v.render());
    }
    sec.sort();
}

/// Write a map of entries into `section`, merged with kept unknown keys, sorted.
fn put_map<'a>(ini: &mut Ini, section: &str, entries: impl Iterator<Item = (&'a String, Json)>) {
    let kept = ini.take_section(section).unwrap_or_default();
    let sec = ini.section_mut(section);
    for (k, v) in entries {
        sec.push(k.as_str(), v.render());
    }
    let had_kept = !kept.is_empty();
    for (k, v) in kept.into_entries() {
        sec.push(k, v);
    }
    if had_kept {
        sec.sort();
    }
}

impl InfoFile for Manifest {
    const KIND: &'static str = "backup manifest file";

    fn from_ini(ini: Ini) -> Result<Self> {
        Manifest::from_ini_parts(ini).map(|(manifest, _)| manifest)
    }

    fn to_ini(&self) -> Result<Ini> {
        self.ini(true)
    }

    /// Streams `[target:file]` (one entry rendered at a time) instead of building it in an [`Ini`] first; the bytes
    /// are those of `to_ini()?.render()`.
    fn write_to(&self, out: &mut dyn std::io::Write) -> Result<()> {
        let kept_files = self
            .extra
            .section(SECTION_FILE)
            .is_some_and(|s| !s.is_empty());
        if kept_files {
            // unknown keys kept in [target:file] are merged and sorted with the files: not worth streaming
            return self.ini(true)?.render_to(out, &[]);
        }
        let (user, group, file_mode, _) = self.save_defaults()?;
        let produce = |emit: &mut dyn FnMut(&str, &str) -> Result<()>| -> Result<()> {
            let mut raw = String::new();
            for (name, file) in &self.files {
                raw.clear();
                file.write_json(&mut raw, user.as_deref(), group.as_deref(), file_mode);
                emit(name, &raw)?;
            }
            Ok(())
        };
        self.ini(false)?.render_to(out, &[(SECTION_FILE, &produce)])
    }
}

/// Yields a manifest's file entries in name order to the callback it is given.
pub type EachFile<'a> =
    dyn Fn(&mut dyn FnMut(&str, &ManifestFile) -> Result<()>) -> Result<()> + 'a;

impl Manifest {
    /// Render the manifest as [`InfoFile::write_to`] does, with `[target:file]` taken from `files`
    /// (entries in name order) instead of `self.files`: how a backup whose file list is on disk
    /// ([`spool`]) saves its manifest, one entry in memory at a time.
    ///
    /// # Errors
    /// `Assert` when the manifest keeps unknown `[target:file]` keys (a loaded manifest, never a
    /// backup's); `each`'s errors; write errors.
    pub fn write_with_files(
        &self,
        out: &mut dyn std::io::Write,
        files: &EachFile<'_>,
    ) -> Result<()> {
        if self
            .extra
            .section(SECTION_FILE)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(Error::new(
                ErrorKind::Assert,
                "a manifest with kept file keys cannot be rendered from a file list",
            ));
        }
        let (user, group, file_mode, _) = self.save_defaults()?;
        let produce = |emit: &mut dyn FnMut(&str, &str) -> Result<()>| -> Result<()> {
            let mut raw = String::new();
            files(&mut |name, file| {
                raw.clear();
                file.write_json(&mut raw, user.as_deref(), group.as_deref(), file_mode);
                emit(name, &raw)
            })
        };
        self.ini(false)?.render_to(out, &[(SECTION_FILE, &produce)])
    }
}

impl Manifest {
    /// [`InfoFile::from_ini`], also returning the `[target:file:default]` values the file entries were resolved with.
    fn from_ini_parts(mut ini: Ini) -> Result<(Manifest, Defaults)> {
        let backrest_version = std::mem::replace(&mut ini.version, BACKREST_VERSION.to_string());
        let cipher_pass = ini.cipher_pass()?;
        ini.take(codec::SECTION_CIPHER, codec::KEY_CIPHER_PASS);

        let mut backup = load_backup(&mut ini)?;
        let reference_found = !backup.reference.is_empty();
        let db = load_backup_db(&mut ini)?;
        let options = load_options(&mut ini)?;

        let mut targets = BTreeMap::new();
        if let Some(section) = ini.take_section(SECTION_BACKUP_TARGET) {
            for (name, raw) in section.into_entries() {
                let target = load_target(&name, &raw)?;
                targets.insert(name, target);
            }
        }
        if !targets.contains_key(TARGET_PGDATA) {
            return Err(Error::new(
                ErrorKind::Format,
                format!("unable to find '{TARGET_PGDATA}' in manifest target list"),
            ));
        }

        let mut databases = BTreeMap::new();
        if let Some(section) = ini.take_section(SECTION_DB) {
            for (name, raw) in section.into_entries() {
                let mut f = Fields::parse(SECTION_DB, &name, &raw)?;
                let db = ManifestDb {
                    id: f.req_u32("db-id")?,
                    last_system_id: f.req_u32("db-last-system-id")?,
                    extra: f.rest(),
                };
                databases.insert(name, db);
            }
        }

        let annotation = opt_take(&mut ini, SECTION_METADATA, "annotation", value_str_map)?;

        let file_defaults = take_defaults(&mut ini, SECTION_FILE_DEFAULT, true)?;
        let path_defaults = take_defaults(&mut ini, SECTION_PATH_DEFAULT, true)?;
        let link_defaults = take_defaults(&mut ini, SECTION_LINK_DEFAULT, false)?;

        let mut names = Names::default();
        let mut files = FileMap::default();
        if let Some(section) = ini.take_section(SECTION_FILE) {
            for (name, raw) in section.into_entries() {
                let file = load_file(&name, &raw, &file_defaults, &mut names)?;
                if !reference_found
                    && let Some(r) = &file.reference
                    && !backup.reference.iter().any(|b| **b == **r)
                {
                    backup.reference.push(r.to_string());
                }
                files.insert(name, file);
            }
        }
        let files = files.finish();
        if !reference_found && !backup.reference.contains(&backup.label) {
            backup.reference.push(backup.label.clone());
        }

        let mut links = BTreeMap::new();
        if let Some(section) = ini.take_section(SECTION_LINK) {
            for (name, raw) in section.into_entries() {
                let mut f = Fields::parse(SECTION_LINK, &name, &raw)?;
                let destination = f.req_str("destination")?;
                let group = resolve_owner(
                    f.opt_owner(KEY_GROUP)?,
                    link_defaults.group.as_ref(),
                    &mut names,
                    SECTION_LINK,
                    KEY_GROUP,
                    &name,
                )?;
                let user = resolve_owner(
                    f.opt_owner(KEY_USER)?,
                    link_defaults.user.as_ref(),
                    &mut names,
                    SECTION_LINK,
                    KEY_USER,
                    &name,
                )?;
                let link = ManifestLink {
                    destination,
                    user,
                    group,
                    extra: f.rest(),
                };
                links.insert(name, link);
            }
        }

        let mut paths = BTreeMap::new();
        if let Some(section) = ini.take_section(SECTION_PATH) {
            for (name, raw) in section.into_entries() {
                let mut f = Fields::parse(SECTION_PATH, &name, &raw)?;
                let group = resolve_owner(
                    f.opt_owner(KEY_GROUP)?,
                    path_defaults.group.as_ref(),
                    &mut names,
                    SECTION_PATH,
                    KEY_GROUP,
                    &name,
                )?;
                let mode = take_mode(&mut f, SECTION_PATH, &name, path_defaults.mode)?;
                let user = resolve_owner(
                    f.opt_owner(KEY_USER)?,
                    path_defaults.user.as_ref(),
                    &mut names,
                    SECTION_PATH,
                    KEY_USER,
                    &name,
                )?;
                let path = ManifestPath {
                    mode,
                    user,
                    group,
                    extra: f.rest(),
                };
                paths.insert(name, path);
            }
        }

        Ok((
            Manifest {
                backrest_version,
                backup,
                db,
                options,
                targets,
                cipher_pass,
                databases,
                annotation,
                files,
                links,
                paths,
                extra: ini,
            },
            file_defaults,
        ))
    }

    /// The container, `[target:file]` included only when `files` is set.
    fn ini(&self, files: bool) -> Result<Ini> {
        let (user_default, group_default, file_mode_default, path_mode_default) =
            self.save_defaults()?;
        let mut ini = self.extra.clone();
        ini.version = BACKREST_VERSION.to_string();

        let b = &self.backup;
        let opt = |v: &Option<String>| v.as_ref().map(|s| Json::str(s.as_str()));
        let mut backup: Vec<(&str, Json)> = vec![
            ("backup-label", Json::str(b.label.as_str())),
            ("backup-reference", Json::str(b.reference.join(","))),
            (
                "backup-timestamp-copy-start",
                Json::int(b.timestamp_copy_start),
            ),
            ("backup-timestamp-start", Json::int(b.timestamp_start)),
            ("backup-timestamp-stop", Json::int(b.timestamp_stop)),
            ("backup-type", Json::str(b.backup_type.as_str())),
        ];
        for (key, value) in [
            ("backup-archive-start", opt(&b.archive_start)),
            ("backup-archive-stop", opt(&b.archive_stop)),
            ("backup-lsn-start", opt(&b.lsn_start)),
            ("backup-lsn-stop", opt(&b.lsn_stop)),
            ("backup-prior", opt(&b.prior)),
        ] {
            if let Some(v) = value {
                backup.push((key, v));
            }
        }
        if b.block_incr {
            backup.push(("backup-block-incr", Json::Bool(true)));
        }
        if b.bundle {
            backup.push(("backup-bundle", Json::Bool(true)));
            if b.bundle_raw {
                backup.push(("backup-bundle-raw", Json::Bool(true)));
            }
        }
        put_section(&mut ini, SECTION_BACKUP, backup);

        let d = &self.db;
        put_section(
            &mut ini,
            SECTION_BACKUP_DB,
            vec![
                (
                    "db-catalog-version",
                    Json::UInt(u64::from(d.catalog_version)),
                ),
                (
                    "db-control-version",
                    Json::UInt(u64::from(d.control_version)),
                ),
                ("db-id", Json::UInt(u64::from(d.id))),
                ("db-system-id", Json::UInt(d.system_id)),
                ("db-version", Json::str(d.version.to_string())),
            ],
        );

        let o = &self.options;
        let mut options: Vec<(&str, Json)> = vec![
            ("option-archive-check", Json::Bool(o.archive_check)),
            ("option-archive-copy", Json::Bool(o.archive_copy)),
            (
                "option-compress",
                Json::Bool(o.compress_type != CompressType::None),
            ),
            ("option-compress-type", Json::str(o.compress_type.name())),
            ("option-hardlink", Json::Bool(o.hardlink)),
            ("option-online", Json::Bool(o.online)),
        ];
        let bools = [
            ("option-backup-standby", o.backup_standby),
            ("option-checksum-page", o.checksum_page),
            ("option-delta", o.delta),
        ];
        for (key, value) in bools {
            if let Some(v) = value {
                options.push((key, Json::Bool(v)));
            }
        }
        if let Some(v) = o.buffer_size {
            options.push(("option-buffer-size", Json::UInt(v)));
        }
        let numbers = [
            ("option-compress-level", o.compress_level),
            ("option-compress-level-network", o.compress_level_network),
            ("option-process-max", o.process_max),
        ];
        for (key, value) in numbers {
            if let Some(v) = value {
                options.push((key, Json::UInt(u64::from(v))));
            }
        }
        put_section(&mut ini, SECTION_BACKUP_OPTION, options);

        put_map(
            &mut ini,
            SECTION_BACKUP_TARGET,
            self.targets.iter().map(|(name, t)| {
                let mut map = t.extra.clone();
                if let Some(file) = &t.file {
                    map.insert("file".to_string(), Json::str(file.as_str()));
                }
                map.insert("path".to_string(), Json::str(t.path.as_str()));
                if let Some(id) = t.tablespace_id {
                    map.insert("tablespace-id".to_string(), Json::str(id.to_string()));
                }
                if let Some(n) = &t.tablespace_name {
                    map.insert("tablespace-name".to_string(), Json::str(n.as_str()));
                }
                let kind = match t.target_type {
                    TargetType::Path => "path",
                    TargetType::Link => "link",
                };
                map.insert("type".to_string(), Json::str(kind));
                (name, Json::Object(map))
            }),
        );

        if let Some(pass) = &self.cipher_pass {
            ini.set(
                codec::SECTION_CIPHER,
                codec::KEY_CIPHER_PASS,
                Json::str(pass.as_str()).render(),
            );
        }

        put_map(
            &mut ini,
            SECTION_DB,
            self.databases.iter().map(|(name, db)| {
                let mut map = db.extra.clone();
                map.insert("db-id".to_string(), Json::UInt(u64::from(db.id)));
                map.insert(
                    "db-last-system-id".to_string(),
                    Json::UInt(u64::from(db.last_system_id)),
                );
                (name, Json::Object(map))
            }),
        );

        if let Some(a) = &self.annotation {
            put_section(
                &mut ini,
                SECTION_METADATA,
                vec![("annotation", str_map_json(a))],
            );
        }

        if files {
            put_map(
                &mut ini,
                SECTION_FILE,
                self.files.iter().map(|(name, file)| {
                    (
                        name,
                        file.to_json(
                            user_default.as_deref(),
                            group_default.as_deref(),
                            file_mode_default,
                        ),
                    )
                }),
            );
        }
        put_section(
            &mut ini,
            SECTION_FILE_DEFAULT,
            vec![
                (KEY_GROUP, owner_json(group_default.as_deref())),
                (KEY_MODE, Json::Str(mode_string(file_mode_default))),
                (KEY_USER, owner_json(user_default.as_deref())),
            ],
        );

        put_map(
            &mut ini,
            SECTION_LINK,
            self.links.iter().map(|(name, link)| {
                let mut map = link.extra.clone();
                map.insert(
                    "destination".to_string(),
                    Json::str(link.destination.as_str()),
                );
                if link.group != group_default {
                    map.insert(KEY_GROUP.to_string(), owner_json(link.group.as_deref()));
                }
                if link.user != user_default {
                    map.insert(KEY_USER.to_string(), owner_json(link.user.as_deref()));
                }
                (name, Json::Object(map))
            }),
        );
        if !self.links.is_empty() {
            put_section(
                &mut ini,
                SECTION_LINK_DEFAULT,
                vec![
                    (KEY_GROUP, owner_json(group_default.as_deref())),
                    (KEY_USER, owner_json(user_default.as_deref())),
                ],
            );
        }

        put_map(
            &mut ini,
            SECTION_PATH,
            self.paths.iter().map(|(name, path)| {
                let mut map = path.extra.clone();
                if path.group != group_default {
                    map.insert(KEY_GROUP.to_string(), owner_json(path.group.as_deref()));
                }
                if path.mode != path_mode_default {
                    map.insert(KEY_MODE.to_string(), Json::Str(mode_string(path.mode)));
                }
                if path.user != user_default {
                    map.insert(KEY_USER.to_string(), owner_json(path.user.as_deref()));
                }
                (name, Json::Object(map))
            }),
        );
        put_section(
            &mut ini,
            SECTION_PATH_DEFAULT,
            vec![
                (KEY_GROUP, owner_json(group_default.as_deref())),
                (KEY_MODE, Json::Str(mode_string(path_mode_default))),
                (KEY_USER, owner_json(user_default.as_deref())),
            ],
        );
        Ok(ini)
    }
}

#[cfg(test)]
mod tests;
