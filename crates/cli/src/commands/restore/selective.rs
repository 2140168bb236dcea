//! Selective restore: which databases' files are restored as sparse zero-filled files
//! (pgBackRest `restoreSelectiveExpression()`, `restoreFileZeroed()`).
//!
//! Contract:
//! - Databases are found from `PG_VERSION` files (`pg_data/base/<oid>/`, and
//!   `pg_tblspc/<id>/<PG_ver_cat>/<oid>/`) plus the manifest's system databases (names
//!   `postgres`, `template0`, `template1`, or oid < 16384). `--db-include`/`--db-exclude` name a
//!   database by name or oid; an unknown one is `DbMissing` (80).
//! - Only `--db-exclude`: exactly those are zeroed (a system database too, when named).
//!   With `--db-include`: every database neither included nor a system database is zeroed, plus
//!   the excluded ones; including a system database, or one also excluded, is `DbInvalid` (81).
//! - A zeroed database keeps its `PG_VERSION` so PostgreSQL still recognises the directory; the
//!   user drops the database after recovery.

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_repo::manifest::Manifest;

/// First oid of user-created objects; lower oids are system databases.
const FIRST_NORMAL_OID: u32 = 16384;
const SYSTEM_DB_NAMES: [&str; 3] = ["postgres", "template0", "template1"];

/// The plan: manifest-name prefixes whose files are zeroed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Zeroed {
    prefixes: Vec<String>,
    /// Messages for the log: (detail?, text).
    pub notes: Vec<(bool, String)>,
}

impl Zeroed {
    /// Nothing is zeroed.
    #[must_use]
    pub fn none() -> Zeroed {
        Zeroed::default()
    }

    /// Is manifest file `name` zeroed?
    #[must_use]
    pub fn is_zeroed(&self, name: &str) -> bool {
        !self.prefixes.is_empty()
            && !name.ends_with("/PG_VERSION")
            && self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }
}

/// The database oid of a `PG_VERSION` file name, if it is one of a database directory.
fn db_of_pg_version(name: &str, tablespace_id: &str) -> Option<String> {
    let dir = name.strip_suffix("/PG_VERSION")?;
    let oid = if let Some(rest) = dir.strip_prefix("pg_data/base/") {
        rest
    } else {
        let rest = dir.strip_prefix("pg_tblspc/")?;
        let (ts, rest) = rest.split_once('/')?;
        if ts.is_empty() || !ts.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        rest.strip_prefix(tablespace_id)?.strip_prefix('/')?
    };
    (!oid.is_empty() && oid.bytes().all(|b| b.is_ascii_digit())).then(|| oid.to_string())
}

fn is_system_oid(oid: &str) -> bool {
    oid.parse::<u32>().is_ok_and(|o| o < FIRST_NORMAL_OID)
}

/// Plan a selective restore (see the module contract).
///
/// # Errors
/// `Format` when the backup holds no database at all, `DbMissing`, `DbInvalid`.
pub fn plan(manifest: &Manifest, include: &[String], exclude: &[String]) -> Result<Zeroed> {
    if include.is_empty() && exclude.is_empty() {
        return Ok(Zeroed::none());
    }
    let tablespace_id = manifest
        .db
        .version
        .tablespace_id(manifest.db.catalog_version);
    let mut system: Vec<String> = Vec::new();
    let mut dbs: Vec<String> = Vec::new();
    for (name, db) in &manifest.databases {
        if SYSTEM_DB_NAMES.contains(&name.as_str()) || db.id < FIRST_NORMAL_OID {
            system.push(db.id.to_string());
            dbs.push(db.id.to_string());
        }
    }
    for name in manifest.files.keys() {
        if let Some(oid) = db_of_pg_version(name, &tablespace_id) {
            if is_system_oid(&oid) && !system.contains(&oid) {
                system.push(oid.clone());
            }
            if !dbs.contains(&oid) {
                dbs.push(oid);
            }
        }
    }
    // sorted as text, as pgBackRest lists them
    dbs.sort();
    dbs.dedup();
    if dbs.is_empty() {
        return Err(Error::new(
            ErrorKind::Format,
            "no databases found for selective restore",
        )
        .with_hint("is this a valid cluster?"));
    }
    let mut notes = vec![(
        true,
        format!("databases found for selective restore ({})", dbs.join(", ")),
    )];
    let resolve = |db: &String, what: &str| -> Result<String> {
        if dbs.contains(db) {
            return Ok(db.clone());
        }
        match manifest.databases.get(db) {
            Some(entry) if dbs.contains(&entry.id.to_string()) => Ok(entry.id.to_string()),
            _ => Err(Error::new(
                ErrorKind::DbMissing,
                format!("database to {what} '{db}' does not exist"),
            )),
        }
    };
    let mut excluded: Vec<String> = Vec::new();
    for db in exclude {
        excluded.push(resolve(db, "exclude")?);
    }
    let mut zero = dbs.clone();
    for db in include {
        let id = resolve(db, "include")?;
        if system.contains(&id) {
            return Err(Error::new(
                ErrorKind::DbInvalid,
                "system databases (template0, postgres, etc.) are included by default",
            ));
        }
        if excluded.contains(&id) {
            return Err(Error::new(
                ErrorKind::DbInvalid,
                format!("database to include '{db}' is in the exclude list"),
            ));
        }
        zero.retain(|d| *d != id);
    }
    let zero: Vec<String> = if include.is_empty() {
        let mut e = excluded.clone();
        e.sort();
        e.dedup();
        e
    } else {
        zero.into_iter()
            .filter(|d| !system.contains(d) || excluded.contains(d))
            .collect()
    };
    if zero.is_empty() {
        notes.push((
            false,
            "nothing to filter - all user databases have been selected".to_string(),
        ));
        return Ok(Zeroed {
            prefixes: Vec::new(),
            notes,
        });
    }
    notes.push((
        true,
        format!(
            "databases excluded (zeroed) from selective restore ({})",
            zero.join(", ")
        ),
    ));
    let tablespaces: Vec<&String> = manifest
        .targets
        .iter()
        .filter(|(_, t)| t.tablespace_id.unwrap_or(0) != 0)
        .map(|(name, _)| name)
        .collect();
    let mut prefixes = Vec::new();
    for db in &zero {
        prefixes.push(format!("pg_data/base/{db}/"));
        for ts in &tablespaces {
            prefixes.push(format!("{ts}/{tablespace_id}/{db}/"));
        }
    }
    Ok(Zeroed { prefixes, notes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::restore::remap::tests::manifest_from_text;

    fn manifest() -> Manifest {
        let mut text = String::from(
            "[backup]\nbackup-label=\"20240101-000000F\"\nbackup-type=\"full\"\n\n[backup:db]\ndb-catalog-version=202209061\ndb-control-version=1300\ndb-id=1\ndb-system-id=1\ndb-version=\"15\"\n\n[backup:option]\noption-archive-check=true\noption-archive-copy=false\noption-compress=false\noption-hardlink=false\noption-online=true\n\n[backup:target]\npg_data={\"path\":\"/d\",\"type\":\"path\"}\npg_tblspc/16384={\"path\":\"/ts\",\"tablespace-id\":\"16384\",\"tablespace-name\":\"ts1\",\"type\":\"link\"}\n\n[db]\napp={\"db-id\":16385,\"db-last-system-id\":4}\nother={\"db-id\":16390,\"db-last-system-id\":4}\npostgres={\"db-id\":5,\"db-last-system-id\":4}\ntemplate0={\"db-id\":4,\"db-last-system-id\":4}\ntemplate1={\"db-id\":1,\"db-last-system-id\":4}\n\n[target:file]\n",
        );
        for name in [
            "pg_data/base/1/PG_VERSION",
            "pg_data/base/1/1259",
            "pg_data/base/4/PG_VERSION",
            "pg_data/base/5/PG_VERSION",
            "pg_data/base/16385/PG_VERSION",
            "pg_data/base/16385/16400",
            "pg_data/base/16390/PG_VERSION",
            "pg_data/base/16390/16500",
            "pg_tblspc/16384/PG_15_202209061/16385/PG_VERSION",
            "pg_tblspc/16384/PG_15_202209061/16385/16401",
            "pg_data/global/1262",
        ] {
            text.push_str(&format!(
                "{name}={{\"checksum\":\"587b596f04f7db9c2cad3d6b87dd2b3a05de4f35\",\"size\":3,\"timestamp\":1}}\n"
            ));
        }
        text.push_str("\n[target:file:default]\ngroup=\"postgres\"\nmode=\"0600\"\nuser=\"postgres\"\n\n[target:path]\npg_data={}\n\n[target:path:default]\ngroup=\"postgres\"\nmode=\"0700\"\nuser=\"postgres\"\n");
        manifest_from_text(&text)
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn include_zeroes_every_other_user_database() {
        let m = manifest();
        let z = plan(&m, &s(&["app"]), &[]).unwrap();
        assert!(!z.prefixes.is_empty());
        assert!(z.is_zeroed("pg_data/base/16390/16500"));
        assert!(!z.is_zeroed("pg_data/base/16390/PG_VERSION"));
        assert!(!z.is_zeroed("pg_data/base/16385/16400"));
        assert!(!z.is_zeroed("pg_tblspc/16384/PG_15_202209061/16385/16401"));
        assert!(!z.is_zeroed("pg_data/base/1/1259"));
        assert!(!z.is_zeroed("pg_data/global/1262"));
        assert_eq!(
            z.notes,
            vec![
                (
                    true,
                    "databases found for selective restore (1, 16385, 16390, 4, 5)".to_string()
                ),
                (
                    true,
                    "databases excluded (zeroed) from selective restore (16390)".to_string()
                ),
            ]
        );
    }

    #[test]
    fn exclude_zeroes_only_those_in_base_and_tablespaces() {
        let m = manifest();
        let z = plan(&m, &[], &s(&["16385"])).unwrap();
        assert!(z.is_zeroed("pg_data/base/16385/16400"));
        assert!(z.is_zeroed("pg_tblspc/16384/PG_15_202209061/16385/16401"));
        assert!(!z.is_zeroed("pg_data/base/16390/16500"));
        // a system database can be excluded explicitly
        let z = plan(&m, &s(&["app"]), &s(&["template1"])).unwrap();
        assert!(z.is_zeroed("pg_data/base/1/1259"));
        assert!(z.is_zeroed("pg_data/base/16390/16500"));
        // everything included: nothing to do
        let z = plan(&m, &s(&["app", "other"]), &[]).unwrap();
        assert!(z.prefixes.is_empty());
        assert!(!z.is_zeroed("pg_data/base/16390/16500"));
    }

    #[test]
    fn bad_names() {
        let m = manifest();
        let err = plan(&m, &s(&["nope"]), &[]).unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (80, "database to include 'nope' does not exist")
        );
        let err = plan(&m, &[], &s(&["nope"])).unwrap_err();
        assert_eq!(err.message(), "database to exclude 'nope' does not exist");
        let err = plan(&m, &s(&["postgres"]), &[]).unwrap_err();
        assert_eq!(err.code(), 81);
        let err = plan(&m, &s(&["app"]), &s(&["16385"])).unwrap_err();
        assert_eq!(
            err.message(),
            "database to include 'app' is in the exclude list"
        );
    }
}
