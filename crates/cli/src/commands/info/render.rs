//! Rendering of the `info` command: a plain-data model of what was read from the repositories in,
//! pgBackRest 2.45's exact text or `--output=json` bytes out. No I/O happens here.
//!
//! Contract (the caller, `info/mod.rs`, gathers; this module decides):
//! - The caller passes one [`StanzaData`] per stanza found (any order; rendered sorted by name) with
//!   one [`RepoData`] per *selected* repository (all configured repos, or only `--repo`), in repo
//!   index order (never empty). What was read, or why not, is a [`RepoState`]. When repositories
//!   failed as a whole and no stanza was found, pass one stanza named [`INVALID_STANZA_NAME`] (or
//!   the `--stanza` name) whose failed repos are [`RepoState::Error`] and the others
//!   [`RepoState::MissingStanzaPath`]; when stanzas were found, failed repos are `Error` in each.
//! - Everything pgBackRest derives from that — repo and stanza status codes (incl. `mixed`,
//!   `database mismatch across repos`, `requested backup not found`), the overall cipher, merging the
//!   backups of several repos by stop time, `--set`/`--type` filtering, the `db (current)`/`db (prior)`
//!   grouping and WAL min/max per database — is computed here, in the order `info.c` does it, so
//!   quirks (e.g. history entries listed before an archive lookup failed) come out the same.
//! - Text timestamps are local time; [`render_text_in`] takes the zone so tests can pin it to UTC.
//! - JSON is pgBackRest's writer: compact, keys sorted bytewise, only `" \ \n \r \t \b \f` escaped
//!   (other bytes, incl. other control characters and non-ASCII, are written raw), no trailing newline.

use chrono::TimeZone;

mod json;
mod text;

#[cfg(test)]
mod tests;

/// Name of the stand-in stanza pgBackRest reports when repositories failed and no stanza was found
/// (and none was requested with `--stanza`).
pub const INVALID_STANZA_NAME: &str = "[invalid]";

/// Repository cipher type (`repoN-cipher-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// `none`
    None,
    /// `aes-256-cbc`
    Aes256Cbc,
}

impl Cipher {
    /// The name pgBackRest prints.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Cipher::None => "none",
            Cipher::Aes256Cbc => "aes-256-cbc",
        }
    }
}

/// The options of the `info` command that shape rendering. `--stanza` and `--repo` act through what
/// the caller passes in (only that stanza, only that repo).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InfoRequest {
    /// `--set`: show only this backup label, with manifest details.
    pub set: Option<String>,
    /// `--type`: show only backups of this type (`full`, `diff`, `incr`).
    pub backup_type: Option<String>,
}

/// Backup lock state of a stanza, read once on the host running `info` (pgBackRest reads it only
/// when at least one repo's backup.info and archive.info loaded; otherwise leave it not held).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupLock {
    /// A valid backup lock is held by a running backup/expire.
    pub held: bool,
    /// Progress × 100 from the lock file (`4242` = 42.42%), when the holder recorded it. Text only.
    pub percent_complete: Option<u32>,
}

/// One stanza over the selected repositories.
#[derive(Debug, Clone, PartialEq)]
pub struct StanzaData {
    /// Stanza name (or [`INVALID_STANZA_NAME`]).
    pub name: String,
    /// Backup lock state.
    pub backup_lock: BackupLock,
    /// With `--set`: whether `backup/<stanza>/<set>/backup.manifest` exists on at least one selected
    /// repo. When false, every repo that loaded fine reports `requested backup not found` and shows
    /// nothing. Ignored without `--set`.
    pub set_found: bool,
    /// Selected repositories, in repo index order.
    pub repos: Vec<RepoData>,
}

/// One repository's view of a stanza.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoData {
    /// `N` of `repoN`.
    pub key: u32,
    /// Configured cipher type of the repo.
    pub cipher: Cipher,
    /// What was read.
    pub state: RepoState,
}

/// What reading a stanza from one repository produced.
#[derive(Debug, Clone, PartialEq)]
pub enum RepoState {
    /// The stanza is not in the repo's `backup/` listing (or another stanza listed elsewhere is not
    /// here). Status 1.
    MissingStanzaPath,
    /// The stanza directory exists but backup.info (and its copy) is missing. Status 3.
    MissingStanzaData,
    /// Anything else failed (repo unreadable, archive.info missing, decryption, manifest load, ...).
    /// Status 99 with this message.
    Error(RepoError),
    /// backup.info and archive.info (and with `--set` the manifest, when present) were read.
    Loaded(Box<RepoStanza>),
}

/// An error recorded against a repo, shown as `[<type name>] <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoError {
    /// pgBackRest error type name, e.g. `FileMissingError`.
    pub type_name: String,
    /// Message; may span lines (e.g. a `HINT:` line).
    pub message: String,
}

impl RepoError {
    /// The status message pgBackRest shows for this error.
    #[must_use]
    pub fn formatted(&self) -> String {
        format!("[{}] {}", self.type_name, self.message)
    }
}

impl From<&pgkeep_base::Error> for RepoError {
    /// A hint becomes a `HINT:` line of the message, as pgBackRest folds it into the error text.
    fn from(err: &pgkeep_base::Error) -> Self {
        let message = match err.hint() {
            Some(hint) => format!("{}\nHINT: {hint}", err.message()),
            None => err.message().to_string(),
        };
        RepoError {
            type_name: err.kind().name().to_string(),
            message,
        }
    }
}

/// What was read from one repo for a stanza.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoStanza {
    /// `[db] db-id` of backup.info: the current database.
    pub db_current_id: u32,
    /// `[db:history]` of backup.info in file order (oldest first). The last entry is the one whose
    /// archive range is always listed, even when empty.
    pub db_history: Vec<DbHistory>,
    /// `[backup:current]` of backup.info in file order (sorted by label).
    pub backups: Vec<BackupData>,
    /// With `--set`, the manifest of that backup when it exists on this repo.
    pub set_manifest: Option<SetManifest>,
}

/// One backup.info history entry with its archive range.
#[derive(Debug, Clone, PartialEq)]
pub struct DbHistory {
    /// History id.
    pub id: u32,
    /// PostgreSQL system identifier.
    pub system_id: u64,
    /// PostgreSQL version as pgBackRest writes it (`15`, `9.6`).
    pub version: String,
    /// The matching archive id (archive.info history matched by id, else version + system id) and
    /// the WAL found under it; an error when no archive id matches or the listing failed (the repo
    /// then reports that error, after the history entries before this one).
    pub archive: Result<ArchiveRange, RepoError>,
}

/// WAL present in the repository for one archive id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRange {
    /// Archive id, e.g. `15-1`.
    pub archive_id: String,
    /// Oldest WAL segment (24 hex characters): first segment of the first WAL directory (sorted)
    /// that holds any; `None` when there is no WAL.
    pub min: Option<String>,
    /// Newest WAL segment, found the same way from the last directory.
    pub max: Option<String>,
}

/// One `[backup:current]` entry of backup.info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupData {
    /// Backup label.
    pub label: String,
    /// `backup-type`: `full`, `diff` or `incr`.
    pub backup_type: String,
    /// `backup-prior`.
    pub prior: Option<String>,
    /// `backup-reference`.
    pub reference: Option<Vec<String>>,
    /// `backup-archive-start`.
    pub archive_start: Option<String>,
    /// `backup-archive-stop`.
    pub archive_stop: Option<String>,
    /// `backrest-format`.
    pub backrest_format: u32,
    /// `backrest-version`.
    pub backrest_version: String,
    /// `db-id`.
    pub db_id: u32,
    /// `backup-info-size`.
    pub size: u64,
    /// `backup-info-size-delta`.
    pub size_delta: u64,
    /// `backup-info-repo-size`.
    pub repo_size: u64,
    /// `backup-info-repo-size-delta`.
    pub repo_size_delta: u64,
    /// `backup-info-repo-size-map`/`-delta` (block incremental); when present the repo size is
    /// not shown.
    pub repo_size_map: Option<RepoSizeMap>,
    /// `backup-timestamp-start` (unix seconds).
    pub timestamp_start: i64,
    /// `backup-timestamp-stop` (unix seconds).
    pub timestamp_stop: i64,
    /// `backup-error`, absent in backups made before pgBackRest recorded it.
    pub error: Option<bool>,
    /// `backup-lsn-start`.
    pub lsn_start: Option<String>,
    /// `backup-lsn-stop`.
    pub lsn_stop: Option<String>,
    /// `backup-annotation` in file order (pgBackRest writes the keys sorted).
    pub annotation: Option<Vec<(String, String)>>,
}

/// Block-incremental map sizes of a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepoSizeMap {
    /// `backup-info-repo-size-map`.
    pub size: u64,
    /// `backup-info-repo-size-map-delta`.
    pub delta: u64,
}

/// What `--set` shows from the backup's manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetManifest {
    /// `[db]` entries in manifest order (templates are skipped when rendering).
    pub databases: Vec<SetDatabase>,
    /// `[backup:target]` entries in manifest order.
    pub targets: Vec<SetTarget>,
    /// Manifest names (`pg_data/base/5/16402`) of files with `"checksum-page":false`, in manifest
    /// order.
    pub page_error_files: Vec<String>,
}

/// A database of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDatabase {
    /// Database name.
    pub name: String,
    /// `db-id`.
    pub oid: u64,
}

/// A `[backup:target]` entry of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetTarget {
    /// Target name: `pg_data`, `pg_data/<link>`, `pg_tblspc/<oid>`.
    pub name: String,
    /// `path`.
    pub path: String,
    /// `file`, for a link to a file.
    pub file: Option<String>,
    /// `type` is `link` (only links are shown).
    pub link: bool,
    /// `tablespace-name`, for a tablespace.
    pub tablespace_name: Option<String>,
    /// `tablespace-id`.
    pub tablespace_id: u32,
}

/// Text output in the local time zone.
#[must_use]
pub fn render_text(stanzas: &[StanzaData], req: &InfoRequest) -> String {
    render_text_in(stanzas, req, &chrono::Local)
}

/// Text output with timestamps shown in `tz`.
#[must_use]
pub fn render_text_in<Tz: TimeZone>(stanzas: &[StanzaData], req: &InfoRequest, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let views = assemble(stanzas, req);
    text::render(&views, req, tz)
}

/// `--output=json` output (no trailing newline).
#[must_use]
pub fn render_json(stanzas: &[StanzaData], req: &InfoRequest) -> String {
    let views = assemble(stanzas, req);
    json::render(&views)
}

/// Status codes (stanza and repo level).
pub(crate) mod status {
    pub const OK: i32 = 0;
    pub const MISSING_STANZA_PATH: i32 = 1;
    pub const NO_BACKUP: i32 = 2;
    pub const MISSING_STANZA_DATA: i32 = 3;
    pub const MIXED: i32 = 4;
    pub const PG_MISMATCH: i32 = 5;
    pub const BACKUP_MISSING: i32 = 6;
    pub const OTHER: i32 = 99;

    /// Fixed message of a code (`other` for 99 at stanza level).
    pub fn message(code: i32) -> &'static str {
        match code {
            OK => "ok",
            MISSING_STANZA_PATH => "missing stanza path",
            NO_BACKUP => "no valid backups",
            MISSING_STANZA_DATA => "missing stanza data",
            MIXED => "different across repos",
            PG_MISMATCH => "database mismatch across repos",
            BACKUP_MISSING => "requested backup not found",
            _ => "other",
        }
    }
}

/// Stanza as pgBackRest assembles it before formatting (its KeyValue tree).
pub(crate) struct StanzaView<'a> {
    pub name: &'a str,
    pub status: i32,
    pub lock: BackupLock,
    /// `None` = mixed.
    pub cipher: Option<Cipher>,
    pub repos: Vec<RepoView>,
    pub db: Vec<DbView<'a>>,
    pub archive: Vec<ArchiveView<'a>>,
    pub backups: Vec<BackupView<'a>>,
    /// System id and version of the first repo that loaded, when any.
    pub current_pg: Option<(u64, &'a str)>,
}

pub(crate) struct RepoView {
    pub key: u32,
    pub cipher: Cipher,
    pub status: i32,
    pub message: String,
}

pub(crate) struct DbView<'a> {
    pub id: u32,
    pub repo_key: u32,
    pub system_id: u64,
    pub version: &'a str,
}

pub(crate) struct ArchiveView<'a> {
    pub db_id: u32,
    pub repo_key: u32,
    pub archive_id: &'a str,
    pub min: Option<&'a str>,
    pub max: Option<&'a str>,
}

pub(crate) struct BackupView<'a> {
    pub data: &'a BackupData,
    pub repo_key: u32,
    /// `error`, forced true when the manifest lists page errors.
    pub error: Option<bool>,
    /// Present with `--set`.
    pub set: Option<SetView<'a>>,
}

pub(crate) struct SetView<'a> {
    pub databases: Vec<&'a SetDatabase>,
    /// (name, destination)
    pub links: Vec<(String, String)>,
    /// (name, oid, destination)
    pub tablespaces: Vec<(&'a str, u32, &'a str)>,
    pub errors: Vec<&'a str>,
}

/// Path of a manifest entry relative to PGDATA (`pg_data/x` → `x`; tablespace paths unchanged).
fn pg_relative(name: &str) -> &str {
    name.strip_prefix("pg_data/").unwrap_or(name)
}

fn set_view(manifest: Option<&SetManifest>) -> SetView<'_> {
    let mut view = SetView {
        databases: Vec::new(),
        links: Vec::new(),
        tablespaces: Vec::new(),
        errors: Vec::new(),
    };
    let Some(manifest) = manifest else {
        return view;
    };
    view.databases = manifest
        .databases
        .iter()
        .filter(|db| db.name != "template0" && db.name != "template1")
        .collect();
    for target in manifest.targets.iter().filter(|t| t.link) {
        if let Some(ts_name) = &target.tablespace_name {
            view.tablespaces
                .push((ts_name.as_str(), target.tablespace_id, target.path.as_str()));
        } else if let Some(file) = &target.file {
            view.links
                .push((file.clone(), format!("{}/{}", target.path, file)));
        } else {
            view.links
                .push((pg_relative(&target.name).to_string(), target.path.clone()));
        }
    }
    view.errors = manifest
        .page_error_files
        .iter()
        .map(|name| pg_relative(name))
        .collect();
    view
}

fn assemble<'a>(stanzas: &'a [StanzaData], req: &InfoRequest) -> Vec<StanzaView<'a>> {
    let mut sorted: Vec<&StanzaData> = stanzas.iter().collect();
    sorted.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    sorted
        .into_iter()
        .map(|s| assemble_stanza(s, req))
        .collect()
}

fn assemble_stanza<'a>(stanza: &'a StanzaData, req: &InfoRequest) -> StanzaView<'a> {
    let set_missing = req.set.is_some() && !stanza.set_found;

    // The current database is taken from the first repo whose info files loaded
    let current_pg = stanza.repos.iter().find_map(|repo| match &repo.state {
        RepoState::Loaded(loaded) => {
            let current = loaded
                .db_history
                .iter()
                .find(|db| db.id == loaded.db_current_id)
                .or_else(|| loaded.db_history.last());
            current.map(|db| (db.system_id, db.version.as_str()))
        }
        _ => None,
    });

    let mut view = StanzaView {
        name: &stanza.name,
        status: -1,
        lock: stanza.backup_lock,
        cipher: None,
        repos: Vec::new(),
        db: Vec::new(),
        archive: Vec::new(),
        backups: Vec::new(),
        current_pg,
    };

    // Repos whose backups take part, with their set manifest
    let mut sources: Vec<(u32, &RepoStanza)> = Vec::new();

    for (idx, repo) in stanza.repos.iter().enumerate() {
        let (mut code, mut message) = match &repo.state {
            RepoState::MissingStanzaPath => (status::MISSING_STANZA_PATH, None),
            RepoState::MissingStanzaData => (status::MISSING_STANZA_DATA, None),
            RepoState::Error(err) => (status::OTHER, Some(err.formatted())),
            RepoState::Loaded(_) if set_missing => (status::BACKUP_MISSING, None),
            RepoState::Loaded(_) => (status::OK, None),
        };
        let mut loaded = match &repo.state {
            RepoState::Loaded(loaded) if !set_missing => Some(loaded.as_ref()),
            _ => None,
        };

        if let Some(repo_stanza) = loaded {
            let last = repo_stanza.db_history.len().saturating_sub(1);
            let mut failed = false;
            for (pos, db) in repo_stanza.db_history.iter().enumerate() {
                view.db.push(DbView {
                    id: db.id,
                    repo_key: repo.key,
                    system_id: db.system_id,
                    version: &db.version,
                });
                match &db.archive {
                    Ok(range) => {
                        if pos == last || range.min.is_some() {
                            view.archive.push(ArchiveView {
                                db_id: db.id,
                                repo_key: repo.key,
                                archive_id: &range.archive_id,
                                min: range.min.as_deref(),
                                max: range.max.as_deref(),
                            });
                        }
                    }
                    Err(err) => {
                        code = status::OTHER;
                        message = Some(err.formatted());
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                loaded = None;
            } else {
                let current = repo_stanza
                    .db_history
                    .iter()
                    .find(|db| db.id == repo_stanza.db_current_id)
                    .or_else(|| repo_stanza.db_history.last());
                let matches = match (current, view.current_pg) {
                    (Some(db), Some((system_id, version))) => {
                        db.system_id == system_id && db.version == version
                    }
                    _ => false,
                };
                if !matches {
                    view.status = status::PG_MISMATCH;
                }
            }
        }

        if let Some(repo_stanza) = loaded {
            if code == status::OK && repo_stanza.backups.is_empty() {
                code = status::NO_BACKUP;
            }
            sources.push((repo.key, repo_stanza));
        }

        if view.status != status::PG_MISMATCH {
            view.status = if idx == 0 || view.status == code {
                code
            } else {
                status::MIXED
            };
        }

        view.cipher = if idx == 0 || view.cipher == Some(repo.cipher) {
            Some(repo.cipher)
        } else {
            None
        };

        view.repos.push(RepoView {
            key: repo.key,
            cipher: repo.cipher,
            status: code,
            message: message.unwrap_or_else(|| status::message(code).to_string()),
        });
    }

    view.backups = merge_backups(&sources, req);
    view
}

/// All backups of the repos, oldest stop time first (ties: the earlier repo), then filtered.
fn merge_backups<'a>(sources: &[(u32, &'a RepoStanza)], req: &InfoRequest) -> Vec<BackupView<'a>> {
    let mut next_idx = vec![0usize; sources.len()];
    let total: usize = sources.iter().map(|(_, r)| r.backups.len()).sum();
    let mut result = Vec::new();
    let mut pick = 0usize;

    for _ in 0..total {
        // pgBackRest uses 0 as "nothing chosen yet", so a zero stop time never wins over a later repo
        let mut next_time = 0i64;
        for (source_idx, (_, repo_stanza)) in sources.iter().enumerate() {
            let Some(backup) = next_idx
                .get(source_idx)
                .and_then(|&i| repo_stanza.backups.get(i))
            else {
                continue;
            };
            if next_time == 0 || backup.timestamp_stop < next_time {
                next_time = backup.timestamp_stop;
                pick = source_idx;
            }
        }
        let (Some((repo_key, repo_stanza)), Some(slot)) =
            (sources.get(pick), next_idx.get_mut(pick))
        else {
            break;
        };
        let Some(backup) = repo_stanza.backups.get(*slot) else {
            break;
        };
        *slot += 1;

        if req.set.as_ref().is_some_and(|set| &backup.label != set)
            || req
                .backup_type
                .as_ref()
                .is_some_and(|backup_type| &backup.backup_type != backup_type)
        {
            continue;
        }

        let set = req
            .set
            .as_ref()
            .map(|_| set_view(repo_stanza.set_manifest.as_ref()));
        let error = match &set {
            Some(set) if !set.errors.is_empty() => Some(true),
            _ => backup.error,
        };
        result.push(BackupView {
            data: backup,
            repo_key: *repo_key,
            error,
            set,
        });
    }
    result
}
