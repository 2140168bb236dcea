//! `backup.info`: the clusters a stanza's backups belong to and one summary per backup (pgBackRest
//! `src/info/infoBackup.c`, `infoPg.c`).
//!
//! Contract:
//! - `[db]` / `[db:history]` follow the rules of [`super::archive_info`], with catalog and control version and the
//!   system identifier under `db-system-id`.
//! - `[backup:current]` holds one JSON object per label, labels in byte order; object keys in byte order with
//!   pgBackRest's presence rules: `backup-archive-start`/`-stop` are always written (`null` when unknown),
//!   `backup-error`, the map sizes, LSNs, prior and reference only when known. Unknown keys of an entry are kept
//!   and written back in sorted position (pgBackRest ignores keys out of sorted position, so position matters).
//! - [`BackupInfoEntry::from_manifest`] computes an entry exactly as pgBackRest's `infoBackupDataAdd()`.

use std::collections::BTreeMap;

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_pg::PgVersion;

use super::InfoFile;
use super::archive_info::{parse_version, put_db, put_history, take_db_id, take_history};
use super::codec::{self, BACKREST_VERSION, Fields, Ini, REPOSITORY_FORMAT, str_map_json};
use super::json::Json;
use crate::layout::{BackupType, CompressType};
use crate::manifest::{Manifest, ManifestFile};

const SECTION_BACKUP_CURRENT: &str = "backup:current";
const SECTION_DB_HISTORY: &str = "db:history";
const KEY_DB_CATALOG_VERSION: &str = "db-catalog-version";
const KEY_DB_CONTROL_VERSION: &str = "db-control-version";
const KEY_DB_ID: &str = "db-id";
const KEY_DB_SYSTEM_ID: &str = "db-system-id";
const KEY_DB_VERSION: &str = "db-version";

/// One cluster backups were taken of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupDbInfo {
    /// History id.
    pub id: u32,
    /// pg_control catalog version.
    pub catalog_version: u32,
    /// pg_control version.
    pub control_version: u32,
    /// PostgreSQL system identifier.
    pub system_id: u64,
    /// PostgreSQL major version.
    pub version: PgVersion,
}

/// One `[backup:current]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfoEntry {
    /// `backrest-format` (5).
    pub backrest_format: u32,
    /// `backrest-version`: the version that made the backup.
    pub backrest_version: String,
    /// `backup-annotation`.
    pub annotation: Option<BTreeMap<String, String>>,
    /// `backup-archive-start` (written as `null` when unknown).
    pub archive_start: Option<String>,
    /// `backup-archive-stop` (written as `null` when unknown).
    pub archive_stop: Option<String>,
    /// `backup-error`: a page checksum error was found; absent in entries older than the flag.
    pub error: Option<bool>,
    /// `backup-info-repo-size`: stored size of all files the backup needs.
    pub repo_size: u64,
    /// `backup-info-repo-size-delta`: stored size of files this backup stored.
    pub repo_size_delta: u64,
    /// `backup-info-repo-size-map` (block incremental only).
    pub repo_size_map: Option<u64>,
    /// `backup-info-repo-size-map-delta` (block incremental only).
    pub repo_size_map_delta: Option<u64>,
    /// `backup-info-size`: original size of all files.
    pub size: u64,
    /// `backup-info-size-delta`: original size of files this backup stored.
    pub size_delta: u64,
    /// `backup-lsn-start`.
    pub lsn_start: Option<String>,
    /// `backup-lsn-stop`.
    pub lsn_stop: Option<String>,
    /// `backup-prior` (diff/incr).
    pub prior: Option<String>,
    /// `backup-reference`: labels this backup depends on, sorted, excluding itself (diff/incr).
    pub reference: Option<Vec<String>>,
    /// `backup-timestamp-start`, Unix seconds.
    pub timestamp_start: i64,
    /// `backup-timestamp-stop`, Unix seconds.
    pub timestamp_stop: i64,
    /// `backup-type`.
    pub backup_type: BackupType,
    /// `db-id`: the history id of the cluster.
    pub db_id: u32,
    /// `option-archive-check`.
    pub option_archive_check: bool,
    /// `option-archive-copy`.
    pub option_archive_copy: bool,
    /// `option-backup-standby`.
    pub option_backup_standby: bool,
    /// `option-checksum-page`.
    pub option_checksum_page: bool,
    /// `option-compress` (compress type is not `none`).
    pub option_compress: bool,
    /// `option-hardlink`.
    pub option_hardlink: bool,
    /// `option-online`.
    pub option_online: bool,
    /// Keys this model does not know, kept for round trips.
    pub extra: BTreeMap<String, Json>,
}

/// The content of `backup.info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// The current cluster (`[db]`).
    pub current: BackupDbInfo,
    /// Every cluster, oldest first.
    pub history: Vec<BackupDbInfo>,
    /// Backups by label.
    pub backups: BTreeMap<String, BackupInfoEntry>,
    /// Sub-passphrase encrypting manifests (`[cipher] cipher-pass`), when the repository is encrypted.
    pub cipher_pass: Option<String>,
    /// Content this model does not know, kept for round trips.
    pub extra: Ini,
}

impl BackupInfo {
    /// A new backup.info for stanza-create: history id 1, no backups.
    #[must_use]
    pub fn new(
        version: PgVersion,
        system_id: u64,
        control_version: u32,
        catalog_version: u32,
        cipher_pass: Option<String>,
    ) -> Self {
        let db = BackupDbInfo {
            id: 1,
            catalog_version,
            control_version,
            system_id,
            version,
        };
        BackupInfo {
            current: db,
            history: vec![db],
            backups: BTreeMap::new(),
            cipher_pass,
            extra: Ini::new(),
        }
    }

    /// The current entry.
    #[must_use]
    pub fn current(&self) -> &BackupDbInfo {
        &self.current
    }

    /// stanza-upgrade: add a new current entry with id = current id + 1.
    pub fn add_history(
        &mut self,
        version: PgVersion,
        system_id: u64,
        control_version: u32,
        catalog_version: u32,
    ) {
        let db = BackupDbInfo {
            id: self.current.id.saturating_add(1),
            catalog_version,
            control_version,
            system_id,
            version,
        };
        self.history.push(db);
        self.current = db;
    }

    /// The history entry with `id`.
    #[must_use]
    pub fn history_entry(&self, id: u32) -> Option<&BackupDbInfo> {
        self.history.iter().find(|h| h.id == id)
    }

    /// Add (or replace) a backup.
    pub fn add_backup(&mut self, label: impl Into<String>, entry: BackupInfoEntry) {
        self.backups.insert(label.into(), entry);
    }

    /// Remove a backup, returning its entry.
    pub fn remove_backup(&mut self, label: &str) -> Option<BackupInfoEntry> {
        self.backups.remove(label)
    }
}

/// The sums over a backup's files that its backup.info entry records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileTotals {
    size: u64,
    size_delta: u64,
    repo_size: u64,
    repo_size_delta: u64,
    map: u64,
    map_delta: u64,
    error: bool,
}

impl FileTotals {
    /// Count one file: sizes over all files (repo size falling back to the original size when
    /// zero), deltas over files without a reference, an error when its pages failed.
    pub fn add(&mut self, file: &ManifestFile) {
        let stored = if file.size_repo > 0 {
            file.size_repo
        } else {
            file.size
        };
        let map = file.block_incr.as_ref().map_or(0, |b| b.map_size);
        self.size = self.size.saturating_add(file.size);
        self.repo_size = self.repo_size.saturating_add(stored);
        self.map = self.map.saturating_add(map);
        if file.reference.is_none() {
            self.size_delta = self.size_delta.saturating_add(file.size);
            self.repo_size_delta = self.repo_size_delta.saturating_add(stored);
            self.map_delta = self.map_delta.saturating_add(map);
        }
        if file.checksum_page == Some(false) {
            self.error = true;
        }
    }
}

impl BackupInfoEntry {
    /// The entry pgBackRest adds for a completed backup (`infoBackupDataAdd()`): sizes summed over all files (repo
    /// size falling back to the original size when zero), deltas over files without a reference, `backup-error` when
    /// any file has page errors, `backup-reference` = the manifest's reference list sorted without this backup's
    /// own label (diff/incr only), options copied (`option-compress` = compress type is not `none`).
    #[must_use]
    pub fn from_manifest(manifest: &Manifest) -> Self {
        let mut totals = FileTotals::default();
        for file in manifest.files.values() {
            totals.add(file);
        }
        BackupInfoEntry::from_manifest_totals(manifest, &totals)
    }

    /// [`BackupInfoEntry::from_manifest`] with the file sums taken from `totals` instead of
    /// `manifest.files` (a backup whose file list is on disk).
    #[must_use]
    pub fn from_manifest_totals(manifest: &Manifest, totals: &FileTotals) -> Self {
        let FileTotals {
            size,
            size_delta,
            repo_size,
            repo_size_delta,
            map,
            map_delta,
            error,
        } = *totals;
        let backup = &manifest.backup;
        let (reference, prior) = if backup.backup_type == BackupType::Full {
            (None, None)
        } else {
            let mut list = manifest.backup.reference.clone();
            list.sort();
            if let Some(pos) = list.iter().rposition(|l| *l == backup.label) {
                list.remove(pos);
            }
            (Some(list), backup.prior.clone())
        };
        let options = &manifest.options;
        BackupInfoEntry {
            backrest_format: u32::try_from(REPOSITORY_FORMAT).unwrap_or(5),
            backrest_version: manifest.backrest_version.clone(),
            annotation: manifest.annotation.clone(),
            archive_start: backup.archive_start.clone(),
            archive_stop: backup.archive_stop.clone(),
            error: Some(error),
            repo_size,
            repo_size_delta,
            repo_size_map: backup.block_incr.then_some(map),
            repo_size_map_delta: backup.block_incr.then_some(map_delta),
            size,
            size_delta,
            lsn_start: backup.lsn_start.clone(),
            lsn_stop: backup.lsn_stop.clone(),
            prior,
            reference,
            timestamp_start: backup.timestamp_start,
            timestamp_stop: backup.timestamp_stop,
            backup_type: backup.backup_type,
            db_id: manifest.db.id,
            option_archive_check: options.archive_check,
            option_archive_copy: options.archive_copy,
            option_backup_standby: options.backup_standby.unwrap_or(false),
            option_checksum_page: options.checksum_page.unwrap_or(false),
            option_compress: options.compress_type != CompressType::None,
            option_hardlink: options.hardlink,
            option_online: options.online,
            extra: BTreeMap::new(),
        }
    }

    fn parse(label: &str, raw: &str) -> Result<Self> {
        let mut f = Fields::parse(SECTION_BACKUP_CURRENT, label, raw)?;
        let backrest_format = f.req_u32("backrest-format")?;
        let backrest_version = f.req_str("backrest-version")?;
        let annotation = f.opt_str_map("backup-annotation")?;
        let archive_start = f.opt_str("backup-archive-start")?;
        let archive_stop = f.opt_str("backup-archive-stop")?;
        let error = f.opt_bool("backup-error")?;
        let repo_size = f.req_u64("backup-info-repo-size")?;
        let repo_size_delta = f.req_u64("backup-info-repo-size-delta")?;
        let repo_size_map = f.opt_u64("backup-info-repo-size-map")?;
        let repo_size_map_delta = match repo_size_map {
            Some(_) => Some(f.req_u64("backup-info-repo-size-map-delta")?),
            None => f.opt_u64("backup-info-repo-size-map-delta")?,
        };
        let size = f.req_u64("backup-info-size")?;
        let size_delta = f.req_u64("backup-info-size-delta")?;
        let lsn_start = f.opt_str("backup-lsn-start")?;
        let lsn_stop = f.opt_str("backup-lsn-stop")?;
        let prior = f.opt_str("backup-prior")?;
        let reference = match f.take("backup-reference") {
            None | Some(Json::Null) => None,
            Some(Json::Array(items)) => {
                let mut list = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Json::Str(s) => list.push(s),
                        other => {
                            return Err(Error::new(
                                ErrorKind::Format,
                                format!(
                                    "section '{SECTION_BACKUP_CURRENT}', key '{label}': field 'backup-reference' must hold strings but found {}",
                                    other.type_name()
                                ),
                            ));
                        }
                    }
                }
                Some(list)
            }
            Some(other) => {
                return Err(Error::new(
                    ErrorKind::Format,
                    format!(
                        "section '{SECTION_BACKUP_CURRENT}', key '{label}': field 'backup-reference' must be an array but found {}",
                        other.type_name()
                    ),
                ));
            }
        };
        let timestamp_start = f.req_i64("backup-timestamp-start")?;
        let timestamp_stop = f.req_i64("backup-timestamp-stop")?;
        let type_text = f.req_str("backup-type")?;
        let backup_type = BackupType::parse(&type_text).ok_or_else(|| {
            Error::new(
                ErrorKind::Format,
                format!(
                    "section '{SECTION_BACKUP_CURRENT}', key '{label}': invalid backup type '{type_text}'"
                ),
            )
        })?;
        let db_id = f.req_u32(KEY_DB_ID)?;
        Ok(BackupInfoEntry {
            backrest_format,
            backrest_version,
            annotation,
            archive_start,
            archive_stop,
            error,
            repo_size,
            repo_size_delta,
            repo_size_map,
            repo_size_map_delta,
            size,
            size_delta,
            lsn_start,
            lsn_stop,
            prior,
            reference,
            timestamp_start,
            timestamp_stop,
            backup_type,
            db_id,
            option_archive_check: f.req_bool("option-archive-check")?,
            option_archive_copy: f.req_bool("option-archive-copy")?,
            option_backup_standby: f.req_bool("option-backup-standby")?,
            option_checksum_page: f.req_bool("option-checksum-page")?,
            option_compress: f.req_bool("option-compress")?,
            option_hardlink: f.req_bool("option-hardlink")?,
            option_online: f.req_bool("option-online")?,
            extra: f.rest(),
        })
    }

    fn to_json(&self) -> Json {
        let mut map = self.extra.clone();
        let mut put = |k: &str, v: Json| {
            map.insert(k.to_string(), v);
        };
        let opt_str = |v: &Option<String>| v.as_ref().map_or(Json::Null, |s| Json::str(s.as_str()));
        put(
            "backrest-format",
            Json::UInt(u64::from(self.backrest_format)),
        );
        put(
            "backrest-version",
            Json::str(self.backrest_version.as_str()),
        );
        if let Some(a) = &self.annotation {
            put("backup-annotation", str_map_json(a));
        }
        put("backup-archive-start", opt_str(&self.archive_start));
        put("backup-archive-stop", opt_str(&self.archive_stop));
        if let Some(e) = self.error {
            put("backup-error", Json::Bool(e));
        }
        put("backup-info-repo-size", Json::UInt(self.repo_size));
        put(
            "backup-info-repo-size-delta",
            Json::UInt(self.repo_size_delta),
        );
        if let Some(v) = self.repo_size_map {
            put("backup-info-repo-size-map", Json::UInt(v));
        }
        if let Some(v) = self.repo_size_map_delta {
            put("backup-info-repo-size-map-delta", Json::UInt(v));
        }
        put("backup-info-size", Json::UInt(self.size));
        put("backup-info-size-delta", Json::UInt(self.size_delta));
        if let Some(v) = &self.lsn_start {
            put("backup-lsn-start", Json::str(v.as_str()));
        }
        if let Some(v) = &self.lsn_stop {
            put("backup-lsn-stop", Json::str(v.as_str()));
        }
        if let Some(v) = &self.prior {
            put("backup-prior", Json::str(v.as_str()));
        }
        if let Some(list) = &self.reference {
            put(
                "backup-reference",
                Json::Array(list.iter().map(|s| Json::str(s.as_str())).collect()),
            );
        }
        put("backup-timestamp-start", Json::int(self.timestamp_start));
        put("backup-timestamp-stop", Json::int(self.timestamp_stop));
        put("backup-type", Json::str(self.backup_type.as_str()));
        put(KEY_DB_ID, Json::UInt(u64::from(self.db_id)));
        put(
            "option-archive-check",
            Json::Bool(self.option_archive_check),
        );
        put("option-archive-copy", Json::Bool(self.option_archive_copy));
        put(
            "option-backup-standby",
            Json::Bool(self.option_backup_standby),
        );
        put(
            "option-checksum-page",
            Json::Bool(self.option_checksum_page),
        );
        put("option-compress", Json::Bool(self.option_compress));
        put("option-hardlink", Json::Bool(self.option_hardlink));
        put("option-online", Json::Bool(self.option_online));
        Json::Object(map)
    }
}

impl InfoFile for BackupInfo {
    const KIND: &'static str = "info file";
    const LOAD_HINT: Option<&'static str> = Some(
        "backup.info cannot be opened and is required to perform a backup.\n\
         HINT: has a stanza-create been performed?",
    );

    fn from_ini(mut ini: Ini) -> Result<Self> {
        let cipher_pass = ini.cipher_pass()?;
        ini.take(codec::SECTION_CIPHER, codec::KEY_CIPHER_PASS);
        let current_id = take_db_id(&mut ini)?;
        ini.take("db", KEY_DB_CATALOG_VERSION);
        ini.take("db", KEY_DB_CONTROL_VERSION);

        let mut history = Vec::new();
        for (id, key, raw) in take_history(&mut ini)? {
            let mut f = Fields::parse(SECTION_DB_HISTORY, &key, &raw)?;
            let catalog_version = f.req_u32(KEY_DB_CATALOG_VERSION)?;
            let control_version = f.req_u32(KEY_DB_CONTROL_VERSION)?;
            let system_id = f.req_u64(KEY_DB_SYSTEM_ID)?;
            let version = parse_version(SECTION_DB_HISTORY, &key, &f.req_str(KEY_DB_VERSION)?)?;
            history.push(BackupDbInfo {
                id,
                catalog_version,
                control_version,
                system_id,
                version,
            });
        }
        let current = history
            .iter()
            .find(|h| h.id == current_id)
            .copied()
            .ok_or_else(|| Error::new(ErrorKind::Format, "unable to find current id in history"))?;

        let mut backups = BTreeMap::new();
        if let Some(section) = ini.take_section(SECTION_BACKUP_CURRENT) {
            for (label, raw) in section.into_entries() {
                let entry = BackupInfoEntry::parse(&label, &raw)?;
                backups.insert(label, entry);
            }
        }

        ini.version = BACKREST_VERSION.to_string();
        Ok(BackupInfo {
            current,
            history,
            backups,
            cipher_pass,
            extra: ini,
        })
    }

    fn to_ini(&self) -> Result<Ini> {
        let mut ini = self.extra.clone();
        ini.version = BACKREST_VERSION.to_string();
        if !self.backups.is_empty() {
            let section = ini.section_mut(SECTION_BACKUP_CURRENT);
            for (label, entry) in &self.backups {
                section.set(label, entry.to_json().render());
            }
            section.sort();
        }
        if let Some(pass) = &self.cipher_pass {
            ini.set(
                codec::SECTION_CIPHER,
                codec::KEY_CIPHER_PASS,
                Json::str(pass.as_str()).render(),
            );
        }
        let c = &self.current;
        put_db(
            &mut ini,
            vec![
                (KEY_DB_CATALOG_VERSION, c.catalog_version.to_string()),
                (KEY_DB_CONTROL_VERSION, c.control_version.to_string()),
                (KEY_DB_ID, c.id.to_string()),
                (KEY_DB_SYSTEM_ID, c.system_id.to_string()),
                (KEY_DB_VERSION, Json::str(c.version.to_string()).render()),
            ],
        );
        let entries = self
            .history
            .iter()
            .map(|h| {
                let value = Json::Object(
                    [
                        (
                            KEY_DB_CATALOG_VERSION.to_string(),
                            Json::UInt(u64::from(h.catalog_version)),
                        ),
                        (
                            KEY_DB_CONTROL_VERSION.to_string(),
                            Json::UInt(u64::from(h.control_version)),
                        ),
                        (KEY_DB_SYSTEM_ID.to_string(), Json::UInt(h.system_id)),
                        (KEY_DB_VERSION.to_string(), Json::str(h.version.to_string())),
                    ]
                    .into(),
                );
                (h.id.to_string(), value.render())
            })
            .collect();
        put_history(&mut ini, entries);
        Ok(ini)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO1: &[u8] = include_bytes!("../../tests/fixtures/samples/backup.info.repo1");
    const REPO3: &[u8] = include_bytes!("../../tests/fixtures/samples/backup.info.repo3-bundle");
    const REPO2: &[u8] = include_bytes!("../../tests/fixtures/samples/backup.info.repo2-decrypted");
    const GEN1: &[u8] = include_bytes!("../../tests/fixtures/gen/repo1-backup.info");
    const GEN2: &[u8] = include_bytes!("../../tests/fixtures/gen/repo2-bundle-backup.info");

    #[test]
    fn loads_and_saves_the_samples_byte_identically() {
        for sample in [REPO1, REPO2, REPO3, GEN1, GEN2] {
            let info = BackupInfo::from_bytes(sample, "backup.info").unwrap();
            assert_eq!(info.to_bytes().unwrap(), sample);
            assert!(info.extra.sections.is_empty(), "{:?}", info.extra);
            for entry in info.backups.values() {
                assert!(entry.extra.is_empty());
            }
        }
    }

    #[test]
    fn sample_values() {
        let info = BackupInfo::from_bytes(REPO1, "").unwrap();
        assert_eq!(info.current.catalog_version, 202_209_061);
        assert_eq!(info.current.control_version, 1300);
        assert_eq!(info.backups.len(), 4);
        let incr = &info.backups["20261125-030019F_20261125-030510I"];
        assert_eq!(incr.backup_type, BackupType::Incr);
        assert_eq!(incr.error, Some(true));
        assert_eq!(incr.annotation.as_ref().unwrap()["note"], "hello world");
        assert_eq!(incr.reference.as_ref().unwrap().len(), 3);
        assert_eq!(incr.lsn_start.as_deref(), Some("0/20000028"));
        assert_eq!(incr.timestamp_start, 1_795_575_910);
        let full = &info.backups["20261125-030019F"];
        assert_eq!(full.reference, None);
        assert_eq!(full.prior, None);
        let info2 = BackupInfo::from_bytes(REPO2, "").unwrap();
        assert!(
            info2
                .cipher_pass
                .as_deref()
                .unwrap()
                .starts_with("QtsdcQX7")
        );
    }

    #[test]
    fn new_and_upgrade() {
        let info = BackupInfo::new("15".parse().unwrap(), 7, 1300, 202_209_061, None);
        let text = String::from_utf8(info.to_bytes().unwrap()).unwrap();
        assert!(text.starts_with("[backrest]\nbackrest-format=5\nbackrest-version=\"2.45\"\n\n[db]\ndb-catalog-version=202209061\ndb-control-version=1300\ndb-id=1\ndb-system-id=7\ndb-version=\"15\"\n\n[db:history]\n1={\"db-catalog-version\":202209061,\"db-control-version\":1300,\"db-system-id\":7,\"db-version\":\"15\"}\n\n[backrest]\n"));
        assert!(!text.contains("backup:current"));
        let mut info = BackupInfo::from_bytes(text.as_bytes(), "").unwrap();
        info.add_history("16".parse().unwrap(), 8, 1300, 202_307_071);
        assert_eq!(info.current.id, 2);
        assert_eq!(info.history_entry(1).unwrap().system_id, 7);
        let back = BackupInfo::from_bytes(&info.to_bytes().unwrap(), "").unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn entries_keep_unknown_keys_in_sorted_position_and_null_archive() {
        let mut info = BackupInfo::from_bytes(REPO3, "").unwrap();
        let mut entry = info.backups["20261125-030115F"].clone();
        entry.archive_start = None;
        entry.archive_stop = None;
        entry.error = None;
        entry.extra.insert("backup-zzz".to_string(), Json::UInt(1));
        entry.extra.insert("aaa".to_string(), Json::Bool(true));
        info.add_backup("20261125-030115F", entry.clone());
        let text = String::from_utf8(info.to_bytes().unwrap()).unwrap();
        assert!(text.contains("20261125-030115F={\"aaa\":true,\"backrest-format\":5,\"backrest-version\":\"2.45\",\"backup-archive-start\":null,\"backup-archive-stop\":null,\"backup-info-repo-size\":"));
        assert!(text.contains("\"backup-type\":\"full\",\"backup-zzz\":1,\"db-id\":1,"));
        let back = BackupInfo::from_bytes(text.as_bytes(), "").unwrap();
        assert_eq!(back.backups["20261125-030115F"], entry);
        assert!(info.remove_backup("20261125-030115F").is_some());
    }

    #[test]
    fn entry_errors_name_the_label() {
        let mut ini = Ini::parse(REPO3, "").unwrap();
        let raw = ini
            .get(SECTION_BACKUP_CURRENT, "20261125-030115F")
            .unwrap()
            .to_string();
        ini.set(
            SECTION_BACKUP_CURRENT,
            "20261125-030115F",
            raw.replace("\"backup-info-size\":37517603,", ""),
        );
        let err = BackupInfo::from_bytes(&ini.render().unwrap(), "").unwrap_err();
        assert_eq!(
            err.message(),
            "section 'backup:current', key '20261125-030115F': required key 'backup-info-size' not found"
        );
        let mut ini = Ini::parse(REPO3, "").unwrap();
        ini.set(
            SECTION_BACKUP_CURRENT,
            "20261125-030115F",
            raw.replace("\"full\"", "\"weekly\""),
        );
        let err = BackupInfo::from_bytes(&ini.render().unwrap(), "").unwrap_err();
        assert!(err.message().ends_with("invalid backup type 'weekly'"));
    }
}
