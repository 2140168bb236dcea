//! `archive.info`: which PostgreSQL cluster(s) the WAL archive of a stanza belongs to (pgBackRest
//! `src/info/infoArchive.c`, `infoPg.c`).
//!
//! Contract:
//! - `[db]` holds the current history id; its other keys are rewritten from [`ArchiveInfo::current`] on save, as
//!   pgBackRest rewrites them from the current history entry.
//! - `[db:history]` keeps file order (oldest first, ids ascending) and is written in that order (numeric, not byte
//!   order). Inside each entry the system identifier is stored under `db-id`, a historic typo pgBackRest keeps.
//! - The archive id of history entry *n* is `<version>-<n>` (`15-1`, `9.6-2`).
//! - Unknown sections and unknown keys of `[db]` survive a load/save round trip.

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_pg::PgVersion;

use super::codec::{self, Fields, Ini, Section, value_u32};
use super::json::Json;
use super::{InfoFile, codec::BACKREST_VERSION};

const SECTION_DB: &str = "db";
const SECTION_DB_HISTORY: &str = "db:history";
const KEY_DB_ID: &str = "db-id";
const KEY_DB_SYSTEM_ID: &str = "db-system-id";
const KEY_DB_VERSION: &str = "db-version";

/// One cluster the archive has served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbInfo {
    /// History id (1 for a new stanza, +1 per stanza-upgrade).
    pub id: u32,
    /// PostgreSQL system identifier.
    pub system_id: u64,
    /// PostgreSQL major version.
    pub version: PgVersion,
}

impl DbInfo {
    /// `<version>-<id>`, the archive sub-directory of this entry.
    #[must_use]
    pub fn archive_id(&self) -> String {
        format!("{}-{}", self.version, self.id)
    }
}

/// The content of `archive.info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// The cluster archive-push writes for (`[db]`); equal to the history entry with the same id.
    pub current: DbInfo,
    /// Every cluster, oldest first.
    pub history: Vec<DbInfo>,
    /// Sub-passphrase encrypting the archive (`[cipher] cipher-pass`), when the repository is encrypted.
    pub cipher_pass: Option<String>,
    /// Content this model does not know, kept for round trips.
    pub extra: Ini,
}

impl ArchiveInfo {
    /// A new archive.info for stanza-create: history id 1.
    #[must_use]
    pub fn new(version: PgVersion, system_id: u64, cipher_pass: Option<String>) -> Self {
        let db = DbInfo {
            id: 1,
            system_id,
            version,
        };
        ArchiveInfo {
            current: db,
            history: vec![db],
            cipher_pass,
            extra: Ini::new(),
        }
    }

    /// The current entry.
    #[must_use]
    pub fn current(&self) -> &DbInfo {
        &self.current
    }

    /// stanza-upgrade: add a new current entry with id = current id + 1.
    pub fn add_history(&mut self, version: PgVersion, system_id: u64) {
        let db = DbInfo {
            id: self.current.id.saturating_add(1),
            system_id,
            version,
        };
        self.history.push(db);
        self.current = db;
    }

    /// The archive id (`15-1`) of history entry `history_id`.
    #[must_use]
    pub fn archive_id(&self, history_id: u32) -> Option<String> {
        self.history
            .iter()
            .find(|h| h.id == history_id)
            .map(DbInfo::archive_id)
    }

    /// The archive id of the current entry.
    #[must_use]
    pub fn current_archive_id(&self) -> String {
        self.current.archive_id()
    }

    /// pgBackRest `infoArchiveIdHistoryMatch()`: the archive id of the entry matching `history_id`, version and
    /// system id; failing that, the newest entry matching version and system id.
    ///
    /// # Errors
    /// `ArchiveMismatch` when no entry matches version and system id.
    pub fn archive_id_match(
        &self,
        history_id: u32,
        version: PgVersion,
        system_id: u64,
    ) -> Result<String> {
        let same = |h: &&DbInfo| h.system_id == system_id && h.version == version;
        self.history
            .iter()
            .rev()
            .find(|h| h.id == history_id && same(h))
            .or_else(|| self.history.iter().rev().find(same))
            .map(DbInfo::archive_id)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::ArchiveMismatch,
                    format!(
                        "unable to retrieve the archive id for database version '{version}' and system-id '{system_id}'"
                    ),
                )
            })
    }
}

/// Read `[db]` db-id and `[db:history]` of an info file; `system_id_key` is `db-id` (archive.info typo) or
/// `db-system-id` (backup.info). Shared with backup.info.
pub(crate) fn take_db_id(ini: &mut Ini) -> Result<u32> {
    let raw = ini
        .take(SECTION_DB, KEY_DB_ID)
        .ok_or_else(|| Error::new(ErrorKind::Format, "current id is missing"))?;
    let id = value_u32(SECTION_DB, KEY_DB_ID, &raw)?;
    if id == 0 {
        return Err(Error::new(ErrorKind::Format, "current id is missing"));
    }
    // the rest of [db] is derived from the current history entry on save
    ini.take(SECTION_DB, KEY_DB_SYSTEM_ID);
    ini.take(SECTION_DB, KEY_DB_VERSION);
    Ok(id)
}

/// The numeric id of a `[db:history]` key.
pub(crate) fn history_id(key: &str) -> Result<u32> {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::new(
            ErrorKind::Format,
            format!("invalid history id '{key}' in section '{SECTION_DB_HISTORY}'"),
        ));
    }
    key.parse::<u32>().map_err(|_| {
        Error::new(
            ErrorKind::Format,
            format!("history id '{key}' is out of range"),
        )
    })
}

/// Parse a version field.
pub(crate) fn parse_version(section: &str, key: &str, text: &str) -> Result<PgVersion> {
    text.parse::<PgVersion>().map_err(|e| {
        Error::new(
            ErrorKind::Format,
            format!("section '{section}', key '{key}': {}", e.message()),
        )
    })
}

/// Write `[db:history]`: the given entries in order, then unknown keys that were kept.
pub(crate) fn put_history(ini: &mut Ini, entries: Vec<(String, String)>) {
    let extra = ini.take_section(SECTION_DB_HISTORY).unwrap_or_default();
    let section = ini.section_mut(SECTION_DB_HISTORY);
    for (k, v) in entries {
        section.push(k, v);
    }
    for (k, v) in extra.into_entries() {
        section.push(k, v);
    }
}

/// Write `[db]` from the given keys plus kept unknown keys, sorted.
pub(crate) fn put_db(ini: &mut Ini, entries: Vec<(&str, String)>) {
    let section: &mut Section = ini.section_mut(SECTION_DB);
    for (k, v) in entries {
        section.set(k, v);
    }
    section.sort();
}

/// `[db:history]` as `(id, fields)` pairs in file order; the section is removed from `ini`.
pub(crate) fn take_history(ini: &mut Ini) -> Result<Vec<(u32, String, String)>> {
    let section = ini
        .take_section(SECTION_DB_HISTORY)
        .ok_or_else(|| Error::new(ErrorKind::Format, "history is missing"))?;
    let mut out = Vec::with_capacity(section.len());
    for (key, raw) in section.into_entries() {
        out.push((history_id(&key)?, key, raw));
    }
    if out.is_empty() {
        return Err(Error::new(ErrorKind::Format, "history is missing"));
    }
    Ok(out)
}

impl InfoFile for ArchiveInfo {
    const KIND: &'static str = "info file";
    const LOAD_HINT: Option<&'static str> = Some(
        "archive.info cannot be opened but is required to push/get WAL segments.\n\
         HINT: is archive_command configured correctly in postgresql.conf?\n\
         HINT: has a stanza-create been performed?\n\
         HINT: use --no-archive-check to disable archive checks during backup if you have an alternate archiving scheme.",
    );

    fn from_ini(mut ini: Ini) -> Result<Self> {
        let cipher_pass = ini.cipher_pass()?;
        ini.take(codec::SECTION_CIPHER, codec::KEY_CIPHER_PASS);
        let current_id = take_db_id(&mut ini)?;

        let mut history = Vec::new();
        for (id, key, raw) in take_history(&mut ini)? {
            let mut f = Fields::parse(SECTION_DB_HISTORY, &key, &raw)?;
            let system_id = f.req_u64(KEY_DB_ID)?;
            let version = parse_version(SECTION_DB_HISTORY, &key, &f.req_str(KEY_DB_VERSION)?)?;
            history.push(DbInfo {
                id,
                system_id,
                version,
            });
        }
        let current = history
            .iter()
            .find(|h| h.id == current_id)
            .copied()
            .ok_or_else(|| Error::new(ErrorKind::Format, "unable to find current id in history"))?;

        ini.version = BACKREST_VERSION.to_string();
        Ok(ArchiveInfo {
            current,
            history,
            cipher_pass,
            extra: ini,
        })
    }

    fn to_ini(&self) -> Result<Ini> {
        let mut ini = self.extra.clone();
        ini.version = BACKREST_VERSION.to_string();
        if let Some(pass) = &self.cipher_pass {
            ini.set(
                codec::SECTION_CIPHER,
                codec::KEY_CIPHER_PASS,
                Json::str(pass.as_str()).render(),
            );
        }
        put_db(
            &mut ini,
            vec![
                (KEY_DB_ID, self.current.id.to_string()),
                (KEY_DB_SYSTEM_ID, self.current.system_id.to_string()),
                (
                    KEY_DB_VERSION,
                    Json::str(self.current.version.to_string()).render(),
                ),
            ],
        );
        let entries = self
            .history
            .iter()
            .map(|h| {
                let value = Json::Object(
                    [
                        (KEY_DB_ID.to_string(), Json::UInt(h.system_id)),
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

    const SAMPLE: &[u8] = include_bytes!("../../tests/fixtures/samples/archive.info.repo1");
    const SAMPLE_CIPHER: &[u8] =
        include_bytes!("../../tests/fixtures/samples/archive.info.repo2-decrypted");

    fn v15() -> PgVersion {
        "15".parse().unwrap()
    }

    #[test]
    fn loads_and_saves_the_samples_byte_identically() {
        for sample in [SAMPLE, SAMPLE_CIPHER] {
            let info = ArchiveInfo::from_bytes(sample, "archive.info").unwrap();
            assert_eq!(info.current.id, 1);
            assert_eq!(info.current.system_id, 7_711_938_428_110_036_608);
            assert_eq!(info.current.version, v15());
            assert_eq!(info.current_archive_id(), "15-1");
            assert_eq!(info.to_bytes().unwrap(), sample);
        }
        let info = ArchiveInfo::from_bytes(SAMPLE_CIPHER, "").unwrap();
        assert_eq!(
            info.cipher_pass.as_deref(),
            Some("X8FNlczGo5v5JL1CMlulNmceb1L7sJHrsVaIZOW4rwIkQgaUqWcJCTVH7gGPijCy")
        );
    }

    #[test]
    fn new_matches_what_stanza_create_writes() {
        let info = ArchiveInfo::new(v15(), 7_711_938_428_110_036_608, None);
        assert_eq!(info.to_bytes().unwrap(), SAMPLE);
    }

    #[test]
    fn upgrade_adds_history_and_ids() {
        let mut info = ArchiveInfo::new("9.6".parse().unwrap(), 1, None);
        info.add_history(v15(), 2);
        assert_eq!(info.current.id, 2);
        assert_eq!(info.archive_id(1).as_deref(), Some("9.6-1"));
        assert_eq!(info.current_archive_id(), "15-2");
        assert_eq!(info.archive_id(3), None);
        for _ in 0..9 {
            info.add_history(v15(), 2);
        }
        let text = String::from_utf8(info.to_bytes().unwrap()).unwrap();
        // history is written in numeric order: 9 before 10
        let nine = text.find("\n9={").unwrap();
        let ten = text.find("\n10={").unwrap();
        assert!(nine < ten);
        assert!(text.contains("[db]\ndb-id=11\ndb-system-id=2\ndb-version=\"15\"\n"));
        assert!(text.contains("1={\"db-id\":1,\"db-version\":\"9.6\"}\n"));
        let back = ArchiveInfo::from_bytes(text.as_bytes(), "").unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn archive_id_match_prefers_exact_then_newest() {
        let mut info = ArchiveInfo::new(v15(), 10, None);
        info.add_history("14".parse().unwrap(), 20);
        info.add_history(v15(), 10);
        assert_eq!(info.archive_id_match(1, v15(), 10).unwrap(), "15-1");
        assert_eq!(info.archive_id_match(9, v15(), 10).unwrap(), "15-3");
        let err = info.archive_id_match(1, v15(), 99).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArchiveMismatch);
        assert_eq!(
            err.message(),
            "unable to retrieve the archive id for database version '15' and system-id '99'"
        );
    }

    fn with_checksum(body: &str) -> Vec<u8> {
        // round trip through the codec to compute the checksum
        let mut ini = Ini::new();
        let mut section = String::new();
        for line in body.lines() {
            if line.is_empty() {
                continue;
            }
            if line.starts_with('[') {
                section = line[1..line.len() - 1].to_string();
                continue;
            }
            let (k, v) = line.split_once('=').unwrap();
            ini.section_mut(&section).push(k, v);
        }
        ini.render().unwrap()
    }

    #[test]
    fn structural_errors() {
        let cases = [
            (
                "[db]\ndb-version=\"15\"\n[db:history]\n1={\"db-id\":1,\"db-version\":\"15\"}\n",
                "current id is missing",
            ),
            ("[db]\ndb-id=1\n", "history is missing"),
            (
                "[db]\ndb-id=2\n[db:history]\n1={\"db-id\":1,\"db-version\":\"15\"}\n",
                "unable to find current id in history",
            ),
            (
                "[db]\ndb-id=1\n[db:history]\n1={\"db-version\":\"15\"}\n",
                "section 'db:history', key '1': required key 'db-id' not found",
            ),
            (
                "[db]\ndb-id=1\n[db:history]\nx={\"db-id\":1,\"db-version\":\"15\"}\n",
                "invalid history id 'x' in section 'db:history'",
            ),
            (
                "[db]\ndb-id=1\n[db:history]\n1={\"db-id\":1,\"db-version\":\"abc\"}\n",
                "section 'db:history', key '1': version 'abc' format is invalid",
            ),
        ];
        for (body, message) in cases {
            let err = ArchiveInfo::from_bytes(&with_checksum(body), "").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Format, "{body}");
            assert_eq!(err.message(), message, "{body}");
        }
        let err = ArchiveInfo::from_bytes(
            &with_checksum("[db]\ndb-id=2\n[db:history]\n1={\"db-id\":1,\"db-version\":\"15\"}\n"),
            "/r/archive.info",
        )
        .unwrap_err();
        assert_eq!(
            err.message(),
            "unable to find current id in history in '/r/archive.info'"
        );
    }

    #[test]
    fn unknown_content_survives() {
        let body = "[db]\ndb-id=1\ndb-system-id=5\ndb-version=\"15\"\nzz-new=true\n[db:history]\n1={\"db-id\":5,\"db-version\":\"15\"}\n[future]\nk=\"v\"\n";
        let bytes = with_checksum(body);
        let info = ArchiveInfo::from_bytes(&bytes, "").unwrap();
        assert_eq!(info.to_bytes().unwrap(), bytes);
    }
}
