//! A manifest loaded with its file list left where it is stored: what a diff/incr needs of its prior. A parsed file
//! entry costs a few hundred bytes and its line of text one to two hundred; the prior's entries are only needed once
//! or twice, in order, while the new manifest is matched against them, so they are read again from the repository
//! each time and never held.
//!
//! Contract:
//! - [`LazyManifest::load`] verifies the whole file exactly as [`crate::info::load_info`] does (`.copy` fallback,
//!   decryption, syntax of every line, `backrest-checksum`) while streaming it, and builds everything but the file
//!   list; [`LazyManifest::manifest`] has an empty `files` map (unless built from a manifest in memory with
//!   [`LazyManifest::from`]).
//! - [`LazyManifest::for_each_file`] streams the copy that loaded again (verifying its checksum again: an error, at
//!   the end, if it changed) and yields each file entry in stored order (name order for any manifest pgBackRest or
//!   pgkeep wrote), resolved with the `[target:file:default]` values as a full load resolves it. A name stored twice
//!   is yielded twice, the later value last.
//! - A manifest without `backup-reference` (before pgBackRest 2.42) gets the list derived from its file references
//!   plus its own label, as a full load derives it.
//! - Memory: one line at a time plus the decryption buffer, whatever the number of files.

use std::sync::Arc;

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_storage::{Storage, join};

use super::{
    Defaults, Manifest, ManifestFile, Names, SECTION_BACKUP, SECTION_FILE, load_file_fields,
};
use crate::info::codec::{Fields, Ini};
use crate::info::json::Json;
use crate::info::{InfoFile, load_with, named, read_stream};

/// A manifest whose `[target:file]` entries are read on demand (see the module contract).
pub struct LazyManifest<'s> {
    /// Everything but the file entries.
    pub manifest: Manifest,
    /// Where the file entries are.
    source: Source<'s>,
    /// `[target:file:default]`.
    file_defaults: Defaults,
}

/// Where a [`LazyManifest`]'s file entries are read from.
enum Source<'s> {
    /// In `manifest.files`.
    Memory,
    /// The verified plaintext of the whole file, and its name for messages.
    Text(String, String),
    /// A repository file.
    Stored {
        storage: &'s dyn Storage,
        /// The copy that loaded (main or `.copy`).
        path: String,
        cipher_pass: Option<String>,
        /// Its `backrest-checksum`: a later read must find the same.
        checksum: String,
    },
}

impl std::fmt::Debug for LazyManifest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            Source::Memory => "memory".to_string(),
            Source::Text(text, name) => format!("text of {} bytes from '{name}'", text.len()),
            Source::Stored { storage, path, .. } => join(storage.root(), path),
        };
        f.debug_struct("LazyManifest")
            .field("manifest", &self.manifest)
            .field("source", &source)
            .finish_non_exhaustive()
    }
}

/// Distinct file references in stored order (for a manifest without `backup-reference`).
#[derive(Default)]
struct References(Vec<Arc<str>>);

impl References {
    fn add(&mut self, value: &Json) {
        if let Some(r) = value
            .as_object()
            .and_then(|map| map.get("reference"))
            .and_then(Json::as_str)
            && !self.0.iter().any(|known| **known == *r)
        {
            self.0.push(Arc::from(r));
        }
    }

    /// The reference list: these, then `label` unless already there.
    fn list(self, label: &str) -> Vec<String> {
        let mut list: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        if !list.iter().any(|r| r == label) {
            list.push(label.to_string());
        }
        list
    }
}

impl<'s> LazyManifest<'s> {
    /// Load `path` of `storage` (falling back to `path.copy`), decrypting with `cipher_pass`; the file entries stay
    /// in the repository.
    ///
    /// # Errors
    /// As [`crate::info::load_info`] for a manifest.
    pub fn load(
        storage: &'s dyn Storage,
        path: &str,
        cipher_pass: Option<&str>,
    ) -> Result<LazyManifest<'s>> {
        load_with(
            path,
            &join(storage.root(), path),
            Manifest::KIND,
            Manifest::LOAD_HINT,
            &mut |candidate| Self::load_one(storage, candidate, cipher_pass),
        )
    }

    /// [`LazyManifest::load`] of one candidate file, without fallback.
    fn load_one(
        storage: &'s dyn Storage,
        candidate: &str,
        cipher_pass: Option<&str>,
    ) -> Result<LazyManifest<'s>> {
        let (manifest, file_defaults, checksum) =
            read_stream(storage, candidate, cipher_pass, &mut |reader, name| {
                let mut references = References::default();
                let (ini, checksum) =
                    Ini::parse_reader(reader, name, SECTION_FILE, &mut |_, value| {
                        references.add(&value);
                        Ok(())
                    })?;
                let (manifest, file_defaults) = head(ini, name, references)?;
                Ok((manifest, file_defaults, checksum))
            })?;
        Ok(LazyManifest {
            manifest,
            source: Source::Stored {
                storage,
                path: candidate.to_string(),
                cipher_pass: cipher_pass.map(str::to_string),
                checksum,
            },
            file_defaults,
        })
    }

    /// The whole manifest, loaded as [`crate::info::load_info`] loads it (a failure anywhere in `path`, its file
    /// entries included, falls back to `path.copy`), its entries streamed into the map one at a time: the
    /// transient memory is one entry, never the file's text and its parse beside the map.
    ///
    /// # Errors
    /// As [`crate::info::load_info`] for a manifest.
    pub fn load_full(
        storage: &'s dyn Storage,
        path: &str,
        cipher_pass: Option<&str>,
    ) -> Result<Manifest> {
        load_with(
            path,
            &join(storage.root(), path),
            Manifest::KIND,
            Manifest::LOAD_HINT,
            &mut |candidate| Self::load_one(storage, candidate, cipher_pass)?.into_manifest(),
        )
    }

    /// Parse and verify plaintext bytes, kept as the source of the file entries; `name` (a path, may be empty)
    /// appears in error messages.
    ///
    /// # Errors
    /// `Format` or `Checksum` as [`InfoFile::from_bytes`].
    pub fn from_plain(plain: Vec<u8>, name: &str) -> Result<LazyManifest<'static>> {
        let mut references = References::default();
        let (ini, _) = Ini::parse_reader(
            &mut plain.as_slice(),
            name,
            SECTION_FILE,
            &mut |_, value| {
                references.add(&value);
                Ok(())
            },
        )?;
        let (manifest, file_defaults) = head(ini, name, references)?;
        // parse_reader has checked every line is UTF-8
        let text = String::from_utf8(plain).unwrap_or_default();
        Ok(LazyManifest {
            manifest,
            source: Source::Text(text, name.to_string()),
            file_defaults,
        })
    }

    /// The whole manifest, its file entries streamed into `files` one at a time: a full load whose transient memory
    /// is one entry, never the file's text and its parse beside the map (what [`crate::info::load_info`] holds).
    ///
    /// # Errors
    /// Those of [`LazyManifest::for_each_file`].
    pub fn into_manifest(self) -> Result<Manifest> {
        if let Source::Memory = &self.source {
            return Ok(self.manifest);
        }
        let mut files = super::FileMap::default();
        self.for_each_file(|name, file| {
            files.insert(name.to_string(), file);
            Ok(())
        })?;
        let mut manifest = self.manifest;
        manifest.files = files.finish();
        Ok(manifest)
    }

    /// Visit every file entry (see the module contract); stops at the first error of `visit`. Entries visited
    /// before an error must be considered unverified.
    ///
    /// # Errors
    /// `Format` for an entry that does not load (named with the file), `Checksum` when the file changed since it
    /// loaded, read errors, and any error of `visit`.
    pub fn for_each_file(
        &self,
        mut visit: impl FnMut(&str, ManifestFile) -> Result<()>,
    ) -> Result<()> {
        if let Source::Memory = &self.source {
            for (name, file) in &self.manifest.files {
                visit(name, file.clone())?;
            }
            return Ok(());
        }
        let mut names = Names::default();
        let mut entry = |name: &str, key: &str, value: Json| -> Result<()> {
            let file = named(
                Fields::from_json(SECTION_FILE, key, value)
                    .and_then(|f| load_file_fields(key, f, &self.file_defaults, &mut names)),
                name,
            )?;
            visit(key, file)
        };
        match &self.source {
            Source::Memory => Ok(()),
            Source::Text(text, name) => Ini::parse_reader(
                &mut text.as_bytes(),
                name,
                SECTION_FILE,
                &mut |key, value| entry(name, key, value),
            )
            .map(drop),
            Source::Stored {
                storage,
                path,
                cipher_pass,
                checksum,
            } => read_stream(
                *storage,
                path,
                cipher_pass.as_deref(),
                &mut |reader, name| {
                    let (_, again) =
                        Ini::parse_reader(reader, name, SECTION_FILE, &mut |key, value| {
                            entry(name, key, value)
                        })?;
                    if again == *checksum {
                        Ok(())
                    } else {
                        Err(Error::new(
                            ErrorKind::Checksum,
                            format!("backup manifest file '{name}' changed since it was loaded"),
                        ))
                    }
                },
            ),
        }
    }
}

/// The manifest without files, and the file defaults, from a parse that streamed `[target:file]` away.
fn head(ini: Ini, name: &str, references: References) -> Result<(Manifest, Defaults)> {
    let reference_found = ini.get(SECTION_BACKUP, "backup-reference").is_some();
    let (mut manifest, file_defaults) = named(Manifest::from_ini_parts(ini), name)?;
    if !reference_found {
        manifest.backup.reference = references.list(&manifest.backup.label);
    }
    Ok((manifest, file_defaults))
}

impl From<Manifest> for LazyManifest<'static> {
    /// A manifest in memory, its files held in its map (tests, callers that have it loaded anyway).
    fn from(manifest: Manifest) -> Self {
        LazyManifest {
            manifest,
            source: Source::Memory,
            file_defaults: Defaults {
                user: None,
                group: None,
                mode: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::{load_info, save_info};
    use crate::test_storage::MemStorage;

    /// The entries `lazy` yields, in order.
    fn files_of(lazy: &LazyManifest<'_>) -> Vec<(String, ManifestFile)> {
        let mut read = Vec::new();
        lazy.for_each_file(|name, file| {
            read.push((name.to_string(), file));
            Ok(())
        })
        .unwrap();
        read
    }

    #[test]
    fn files_stay_text_and_read_back_as_a_full_load() {
        for (path, bytes) in super::super::tests::fixture_manifests() {
            let full = Manifest::from_bytes(&bytes, &path).unwrap();
            let lazy = LazyManifest::from_plain(bytes, &path).unwrap();
            assert!(lazy.manifest.files.is_empty(), "{path}");
            let read = files_of(&lazy);
            let expected: Vec<(String, ManifestFile)> = full.files.clone().into_iter().collect();
            assert_eq!(read, expected, "{path}");
            assert_eq!(lazy.into_manifest().unwrap(), full, "{path}");
        }
    }

    #[test]
    fn stored_manifest_streams_plain_and_encrypted_with_copy_fallback() {
        let (name, bytes) = super::super::tests::fixture_manifests()
            .into_iter()
            .nth(1)
            .unwrap();
        let full = Manifest::from_bytes(&bytes, &name).unwrap();
        let expected: Vec<(String, ManifestFile)> = full.files.clone().into_iter().collect();
        for pass in [None, Some("sub-pass")] {
            let storage = MemStorage::new();
            let path = "backup/demo/L/backup.manifest";
            save_info(&storage, path, &full, pass).unwrap();
            let whole = LazyManifest::load(&storage, path, pass).unwrap();
            assert_eq!(
                whole.into_manifest().unwrap(),
                full,
                "a full load, entry by entry"
            );
            let lazy = LazyManifest::load(&storage, path, pass).unwrap();
            assert!(lazy.manifest.files.is_empty());
            let mut head = full.clone();
            head.files.clear();
            assert_eq!(lazy.manifest, head);
            assert_eq!(files_of(&lazy), expected);
            // the main file lost: the copy loads, and is the one read again
            storage.delete(path);
            let lazy = LazyManifest::load(&storage, path, pass).unwrap();
            assert_eq!(files_of(&lazy), expected);
            // the copy changed after the load: reading the files again refuses it
            let copy = format!("{path}.copy");
            let mut other = full.clone();
            other.files.clear();
            save_info(&storage, path, &other, pass).unwrap();
            let err = lazy.for_each_file(|_, _| Ok(())).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Checksum, "{err:?}");
            assert!(storage.read(&copy).is_some());
        }
    }

    #[test]
    fn load_errors_read_like_load_info() {
        let storage = MemStorage::new();
        let path = "backup/demo/L/backup.manifest";
        let lazy_err = LazyManifest::load(&storage, path, None).unwrap_err();
        let full_err = load_info::<Manifest>(&storage, path, None).unwrap_err();
        assert_eq!(lazy_err.kind(), full_err.kind());
        assert_eq!(lazy_err.message(), full_err.message());
        // encrypted, read without a passphrase / with a wrong one: the hint
        let (_, bytes) = super::super::tests::fixture_manifests()
            .into_iter()
            .next()
            .unwrap();
        let full = Manifest::from_bytes(&bytes, "").unwrap();
        save_info(&storage, path, &full, Some("right")).unwrap();
        for pass in [None, Some("wrong")] {
            let lazy_err = LazyManifest::load(&storage, path, pass).unwrap_err();
            let full_err = load_info::<Manifest>(&storage, path, pass).unwrap_err();
            assert_eq!(lazy_err.kind(), full_err.kind(), "{pass:?}");
            assert_eq!(lazy_err.hint(), full_err.hint(), "{pass:?}");
        }
    }

    #[test]
    fn reference_list_derived_without_backup_reference() {
        let text = "[backrest]\nbackrest-format=5\nbackrest-version=\"2.41\"\n\n[backup]\nbackup-label=\"20240102-000000F_20240103-000000I\"\nbackup-type=\"incr\"\n\n[backup:db]\ndb-catalog-version=202209061\ndb-control-version=1300\ndb-id=1\ndb-system-id=1\ndb-version=\"15\"\n\n[backup:option]\noption-archive-check=true\noption-archive-copy=false\noption-compress=false\noption-hardlink=false\noption-online=true\n\n[backup:target]\npg_data={\"path\":\"/d\",\"type\":\"path\"}\n\n[target:file]\npg_data/a={\"reference\":\"20240102-000000F\",\"size\":1,\"timestamp\":1}\npg_data/b={\"size\":1,\"timestamp\":1}\n\n[target:file:default]\ngroup=\"pg\"\nmode=\"0600\"\nuser=\"pg\"\n\n[target:path]\npg_data={}\n\n[target:path:default]\ngroup=\"pg\"\nmode=\"0700\"\nuser=\"pg\"\n";
        let bytes = super::super::tests::rechecksum_excerpt(text.as_bytes());
        let full = Manifest::from_bytes(&bytes, "").unwrap();
        let lazy = LazyManifest::from_plain(bytes, "").unwrap();
        assert_eq!(
            lazy.manifest.backup.reference,
            ["20240102-000000F", "20240102-000000F_20240103-000000I"]
        );
        assert_eq!(lazy.manifest.backup.reference, full.backup.reference);
    }

    #[test]
    fn a_full_load_falls_back_to_the_copy_for_a_bad_entry() {
        let good = "[backrest]\nbackrest-format=5\nbackrest-version=\"2.45\"\n\n[backup]\nbackup-label=\"20240102-000000F\"\nbackup-reference=\"20240102-000000F\"\nbackup-type=\"full\"\n\n[backup:db]\ndb-catalog-version=202209061\ndb-control-version=1300\ndb-id=1\ndb-system-id=1\ndb-version=\"15\"\n\n[backup:option]\noption-archive-check=true\noption-archive-copy=false\noption-compress=false\noption-hardlink=false\noption-online=true\n\n[backup:target]\npg_data={\"path\":\"/d\",\"type\":\"path\"}\n\n[target:file]\npg_data/a={\"size\":1,\"timestamp\":1}\n\n[target:file:default]\ngroup=\"pg\"\nmode=\"0600\"\nuser=\"pg\"\n\n[target:path]\npg_data={}\n\n[target:path:default]\ngroup=\"pg\"\nmode=\"0700\"\nuser=\"pg\"\n";
        // a well-formed file (its checksum right) whose one entry does not load
        let bad = good.replace("{\"size\":1,", "{\"size\":\"one\",");
        let good = super::super::tests::rechecksum_excerpt(good.as_bytes());
        let bad = super::super::tests::rechecksum_excerpt(bad.as_bytes());
        let storage = MemStorage::new();
        let path = "backup/demo/L/backup.manifest";
        storage.insert(path, &bad);
        storage.insert(&format!("{path}.copy"), &good);
        // the head of the main file loads; its entry fails only when the entries are read
        let head_only = LazyManifest::load(&storage, path, None).unwrap();
        assert!(head_only.into_manifest().is_err());
        let loaded = LazyManifest::load_full(&storage, path, None).unwrap();
        assert_eq!(loaded, Manifest::from_bytes(&good, "").unwrap());
        assert_eq!(loaded, load_info::<Manifest>(&storage, path, None).unwrap());
        // with no good copy, both files are named, as load_info names them
        storage.insert(&format!("{path}.copy"), &bad);
        let err = LazyManifest::load_full(&storage, path, None).unwrap_err();
        let full_err = load_info::<Manifest>(&storage, path, None).unwrap_err();
        assert_eq!(err.kind(), full_err.kind());
        assert_eq!(err.message(), full_err.message());
    }

    #[test]
    fn damaged_file_is_refused_at_load() {
        let (path, bytes) = super::super::tests::fixture_manifests()
            .into_iter()
            .next()
            .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let at = text.find("[target:file]\n").unwrap() + "[target:file]\n".len();
        let mut damaged = text.clone();
        damaged.insert_str(at, "pg_data/zzz={\"size\":1,\"timestamp\":1}\n");
        let err = LazyManifest::from_plain(damaged.into_bytes(), &path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Checksum);
    }
}
