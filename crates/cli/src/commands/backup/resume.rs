//! Resuming an interrupted backup (pgBackRest `backupResumeFind()`, `backupResumeClean()`).
//!
//! Contract:
//! - Only the newest backup directory can be resumed, and only when it has no `backup.manifest`
//!   (it never completed) but a loadable `backup.manifest.copy` of the same pgBackRest format
//!   version, backup type, prior label and compression type. Any other unfinished newest backup
//!   is removed, with a warning saying why (info level when `resume` is off).
//! - Cleaning walks the resumed directory: paths the new manifest lacks are removed, and a stored
//!   file is kept only when both manifests list it without a reference, with the same size (and
//!   mtime unless delta), a checksum recorded, and the backup's compression. Kept files take over
//!   the stored checksums and sizes, are marked [`RESUMED`] in the new file list and are
//!   re-verified by the copy phase before being trusted; everything else (links, special files,
//!   bundles) is removed.
//! - Memory does not grow with the number of files: the stored files' names are sorted on disk and
//!   merged in name order with the new file list, then with the resumed manifest's entries, which
//!   are streamed from the repository ([`LazyManifest`]).
//! - The aborted backup is never in backup.info, so it is never listed as a valid backup.

use pgkeep_base::Result;
use pgkeep_base::compress::CompressType;
use pgkeep_base::spool::Sorter;
use pgkeep_repo::info::BACKREST_VERSION;
use pgkeep_repo::layout;
use pgkeep_repo::manifest::spool::{Cursor, Entry, FileList};
use pgkeep_repo::manifest::{LazyManifest, Manifest, ManifestFile};
use pgkeep_storage::{FileType, InfoLevel, Storage, StorageInfo, join};

use crate::log::{Level, Logger};

/// Mark of a file list entry whose stored copy is kept from the resumed backup.
pub const RESUMED: u8 = 1;
/// Mark while cleaning: stored with the right compression, not yet checked against the resumed
/// manifest.
const STORED: u8 = 2;

/// The newest unfinished backup, when it can be resumed as the backup described by `manifest`;
/// an unusable one is removed.
///
/// # Errors
/// Storage errors while listing or removing.
pub fn find<'r>(
    repo: &'r dyn Storage,
    stanza: &str,
    manifest: &Manifest,
    resume: bool,
    backup_pass: Option<&str>,
    log: &Logger,
) -> Result<Option<LazyManifest<'r>>> {
    let mut labels: Vec<String> = repo
        .list(&layout::backup_path(stanza), InfoLevel::Exists)?
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.name)
        .filter(|n| layout::is_backup_label(n))
        .collect();
    labels.sort();
    let Some(label) = labels.pop() else {
        return Ok(None);
    };
    let manifest_file = layout::manifest_path(stanza, &label);
    if repo
        .info(&manifest_file, InfoLevel::Exists, true)?
        .is_some()
    {
        return Ok(None);
    }
    let copy_file = layout::copy_path(&manifest_file);
    let reason = if repo.info(&copy_file, InfoLevel::Exists, true)?.is_none() {
        "partially deleted by prior resume or invalid".to_string()
    } else if !resume {
        "resume is disabled".to_string()
    } else {
        // the main file is absent: this reads the copy, its file entries left in the repository
        // every file entry must load too (read once here), or the clean would fail part way
        let loaded = LazyManifest::load(repo, &manifest_file, backup_pass)
            .and_then(|found| found.for_each_file(|_, _| Ok(())).map(|()| found));
        match loaded {
            Err(_) => format!("unable to read {}.copy", join(repo.root(), &manifest_file)),
            Ok(found) => match usable(&found.manifest, manifest) {
                None => return Ok(Some(found)),
                Some(reason) => reason,
            },
        }
    };
    log.log(
        if resume { Level::Warn } else { Level::Info },
        None,
        &format!("backup '{label}' cannot be resumed: {reason}"),
    );
    repo.remove_path(&layout::backup_label_path(stanza, &label), true)?;
    Ok(None)
}

/// Why `found` cannot be resumed as `new`, or `None` when it can.
fn usable(found: &Manifest, new: &Manifest) -> Option<String> {
    let f = &found.backup;
    let n = &new.backup;
    if found.backrest_version != BACKREST_VERSION {
        Some(format!(
            "new pgBackRest version '{BACKREST_VERSION}' does not match resumable pgBackRest version '{}'",
            found.backrest_version
        ))
    } else if f.backup_type != n.backup_type {
        Some(format!(
            "new backup type '{}' does not match resumable backup type '{}'",
            n.backup_type.as_str(),
            f.backup_type.as_str()
        ))
    } else if f.prior != n.prior {
        Some(format!(
            "new prior backup label '{}' does not match resumable prior backup label '{}'",
            f.prior.as_deref().unwrap_or("<undef>"),
            n.prior.as_deref().unwrap_or("<undef>")
        ))
    } else if found.options.compress_type != new.options.compress_type {
        Some(format!(
            "new compression '{}' does not match resumable compression '{}'",
            new.options.compress_type.name(),
            found.options.compress_type.name()
        ))
    } else {
        None
    }
}

/// Clean the resumed backup directory of `manifest.backup.label` against `manifest` (already
/// labelled), its `files` and the `resumed` manifest; returns the new file list, in which the
/// files kept carry the stored checksums and sizes and the [`RESUMED`] mark.
///
/// # Errors
/// Storage errors; read and write errors of the temporary files.
pub fn clean(
    repo: &dyn Storage,
    stanza: &str,
    manifest: &Manifest,
    files: &FileList,
    resumed: &LazyManifest,
    delta: bool,
    log: &Logger,
) -> Result<FileList> {
    let base = layout::backup_label_path(stanza, &manifest.backup.label);
    let compress = manifest.options.compress_type;
    let remove = |path: &str, reason: &str| -> Result<()> {
        log.detail(&format!(
            "remove file '{}' from resumed backup ({reason})",
            join(repo.root(), path)
        ));
        repo.remove(path, true)
    };

    // the stored files, sorted on disk: `<manifest name>\0<stored path>`
    let mut stored = Sorter::new("resumed file list", |a: &[u8], b: &[u8]| a.cmp(b));
    let mut stack: Vec<(String, Option<String>)> = vec![(base.clone(), None)];
    while let Some((dir, parent)) = stack.pop() {
        let mut later: Vec<StorageInfo> = Vec::new();
        repo.list_each(&dir, InfoLevel::Exists, &mut |entry| {
            if entry.file_type != FileType::File {
                later.push(entry);
                return Ok(());
            }
            let name = match &parent {
                Some(p) => format!("{p}/{}", entry.name),
                None if entry.name == layout::copy_path(layout::MANIFEST_FILE) => return Ok(()),
                None => entry.name.clone(),
            };
            let path = format!("{dir}/{}", entry.name);
            let ext = CompressType::from_file_name(&name)
                .unwrap_or(CompressType::None)
                .ext();
            let name = name.strip_suffix(ext).unwrap_or(&name);
            stored.push(format!("{name}\0{path}").as_bytes())
        })?;
        later.sort_by(|a, b| a.name.cmp(&b.name));
        for entry in later {
            let name = match &parent {
                Some(p) => format!("{p}/{}", entry.name),
                None => entry.name.clone(),
            };
            let path = format!("{dir}/{}", entry.name);
            match entry.file_type {
                FileType::Path if manifest.paths.contains_key(&name) => {
                    stack.push((path, Some(name)));
                }
                FileType::Path => {
                    log.detail(&format!(
                        "remove path '{}' from resumed backup",
                        join(repo.root(), &path)
                    ));
                    repo.remove_path(&path, true)?;
                }
                FileType::Special => {
                    log.warn(&format!(
                        "remove special file '{}' from resumed backup",
                        join(repo.root(), &path)
                    ));
                    repo.remove(&path, true)?;
                }
                FileType::Link | FileType::File => repo.remove(&path, true)?,
            }
        }
    }

    // first pass: stored files against the new list
    let mut stored = stored.finish()?;
    let mut record = Vec::new();
    let mut next_stored = |record: &mut Vec<u8>| -> Result<Option<(String, String)>> {
        if !stored.next_into(record)? {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(record);
        let (name, path) = text.split_once('\0').unwrap_or((&text, ""));
        Ok(Some((name.to_string(), path.to_string())))
    };
    let mut current = next_stored(&mut record)?;
    let mismatched =
        |path: &str| CompressType::from_file_name(path).unwrap_or(CompressType::None) != compress;
    let mut first = files.rewriter()?;
    let mut iter = files.iter();
    while let Some((_, mut entry)) = iter.next_entry()? {
        entry.mark = 0;
        while let Some((name, path)) = current.as_ref().filter(|(n, _)| *n <= entry.name) {
            if mismatched(path) {
                remove(path, "mismatched compression type")?;
            } else if *name != entry.name {
                remove(path, "missing in manifest")?;
            } else if entry.file.reference.is_some() {
                remove(path, "reference in manifest")?;
            } else {
                entry.mark = STORED;
            }
            current = next_stored(&mut record)?;
        }
        first.push(&entry.name, &entry.file, entry.mark)?;
    }
    while let Some((_, path)) = current {
        let reason = if mismatched(&path) {
            "mismatched compression type"
        } else {
            "missing in manifest"
        };
        remove(&path, reason)?;
        current = next_stored(&mut record)?;
    }
    let first = first.finish()?;

    // second pass: stored files against the resumed manifest
    let stored_path = |name: &str| format!("{base}/{name}{}", compress.ext());
    let mut out = first.rewriter()?;
    let mut write = |mut e: Entry| -> Result<()> {
        if e.mark == STORED {
            remove(&stored_path(&e.name), "missing in resumed manifest")?;
            e.mark = 0;
        }
        out.push(&e.name, &e.file, e.mark)
    };
    let mut cursor = Cursor::new(&first)?;
    resumed.for_each_file(|name, old| {
        let Some(entry) = cursor.seek(name, &mut write)? else {
            return Ok(());
        };
        if entry.mark != STORED {
            return Ok(());
        }
        match keep_reason(&mut entry.file, &old, delta) {
            None => entry.mark = RESUMED,
            Some(reason) => {
                remove(&stored_path(name), reason)?;
                entry.mark = 0;
            }
        }
        Ok(())
    })?;
    cursor.drain(&mut write)?;
    out.finish()
}

/// `None` when the stored file can be kept (and `file` took over the stored facts), else why not.
fn keep_reason(file: &mut ManifestFile, old: &ManifestFile, delta: bool) -> Option<&'static str> {
    if old.reference.is_some() {
        return Some("reference in resumed manifest");
    }
    if old.checksum.is_none() {
        return Some("no checksum in resumed manifest");
    }
    if file.size != old.size {
        return Some("mismatched size");
    }
    if !delta && file.timestamp != old.timestamp {
        return Some("mismatched timestamp");
    }
    if file.size == 0 {
        return Some("zero size");
    }
    file.size_repo = old.size_repo;
    file.checksum.clone_from(&old.checksum);
    file.checksum_repo.clone_from(&old.checksum_repo);
    file.checksum_page = old.checksum_page;
    file.checksum_page_error
        .clone_from(&old.checksum_page_error);
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use pgkeep_pg::PgVersion;
    use pgkeep_repo::layout::BackupType;
    use pgkeep_repo::manifest::{
        Checksum, ManifestBackup, ManifestBackupDb, ManifestOptions, ManifestPath,
    };
    use pgkeep_storage::posix::PosixStorage;

    use super::*;

    const LABEL: &str = "20260101-000000F";

    fn manifest() -> Manifest {
        let mut m = Manifest::new(
            ManifestBackup {
                label: LABEL.to_string(),
                prior: None,
                backup_type: BackupType::Full,
                reference: Vec::new(),
                archive_start: None,
                archive_stop: None,
                lsn_start: None,
                lsn_stop: None,
                timestamp_copy_start: 0,
                timestamp_start: 0,
                timestamp_stop: 0,
                bundle: false,
                bundle_raw: false,
                block_incr: false,
            },
            ManifestBackupDb {
                id: 1,
                system_id: 1,
                catalog_version: 202_209_061,
                control_version: 1300,
                version: PgVersion::from_major(15).unwrap(),
            },
            ManifestOptions {
                archive_check: true,
                archive_copy: false,
                backup_standby: None,
                buffer_size: None,
                checksum_page: None,
                compress_type: CompressType::Lz4,
                compress_level: None,
                compress_level_network: None,
                delta: None,
                hardlink: false,
                online: true,
                process_max: None,
            },
        );
        m.paths.insert(
            "pg_data".to_string(),
            ManifestPath {
                mode: 0o700,
                user: None,
                group: None,
                extra: BTreeMap::new(),
            },
        );
        m
    }

    fn file(size: u64) -> ManifestFile {
        ManifestFile::new(size, 100, 0o600, None, None)
    }

    fn stored(size: u64, sum: u8) -> ManifestFile {
        let mut f = file(size);
        f.checksum = Some(Checksum::from_bytes([sum; 20]));
        f.checksum_repo = Some(Checksum::from_bytes([sum + 1; 20]));
        f.size_repo = size / 2;
        f
    }

    #[test]
    fn clean_keeps_only_what_both_manifests_agree_on_and_removes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let base = dir.path().join(format!("backup/demo/{LABEL}"));
        for path in [
            "pg_data/keep.lz4",
            "pg_data/gz.gz",
            "pg_data/gone.lz4",
            "pg_data/ref.lz4",
            "pg_data/noold.lz4",
            "pg_data/size.lz4",
            "pg_data/zero.lz4",
            "pg_data/ts.lz4",
            "pg_data/nosum.lz4",
            "pg_data/oldref.lz4",
            "extra_dir/x.lz4",
            "bundle/1",
            "backup.manifest.copy",
        ] {
            let p = base.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let new = manifest();
        let mut list: BTreeMap<String, ManifestFile> = BTreeMap::new();
        for name in [
            "keep",
            "gz",
            "noold",
            "size",
            "zero",
            "notstored",
            "ts",
            "nosum",
            "oldref",
        ] {
            list.insert(
                format!("pg_data/{name}"),
                file(if name == "zero" { 0 } else { 10 }),
            );
        }
        let mut referenced = file(10);
        referenced.reference = Some(Arc::from("20251231-000000F"));
        list.insert("pg_data/ref".to_string(), referenced);
        let files = FileList::from_map(&list).unwrap();

        let mut old = manifest();
        for name in ["keep", "gz", "ref", "zero", "notstored"] {
            old.files.insert(format!("pg_data/{name}"), stored(10, 1));
        }
        old.files.insert("pg_data/size".to_string(), stored(11, 1));
        old.files.insert("pg_data/zero".to_string(), file(0));
        let mut older = stored(10, 3);
        older.timestamp = 99;
        old.files.insert("pg_data/ts".to_string(), older);
        old.files.insert("pg_data/nosum".to_string(), file(10));
        let mut old_ref = stored(10, 1);
        old_ref.reference = Some(Arc::from("20251231-000000F"));
        old.files.insert("pg_data/oldref".to_string(), old_ref);
        let resumed = LazyManifest::from(old.clone());

        let log = Logger::new(crate::log::LogSettings {
            console: Level::Off,
            stderr: Level::Off,
            file: Level::Off,
            timestamp: false,
            process: 0,
        });
        let repo = PosixStorage::new(root);
        let out = clean(&repo, "demo", &new, &files, &resumed, false, &log).unwrap();

        let mut left: Vec<String> = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    left.push(p.strip_prefix(&base).unwrap().to_str().unwrap().to_string());
                }
            }
        }
        left.sort();
        assert_eq!(left, ["backup.manifest.copy", "pg_data/keep.lz4"]);
        assert!(!base.join("extra_dir").exists() && !base.join("bundle").exists());

        let mut marks = BTreeMap::new();
        out.for_each(|_, e| {
            marks.insert(e.name.clone(), (e.mark, e.file));
            Ok(())
        })
        .unwrap();
        assert_eq!(marks.len(), 10, "every entry stays in the list");
        let (mark, keep) = &marks["pg_data/keep"];
        assert_eq!(*mark, RESUMED);
        assert_eq!(keep.checksum, Some(Checksum::from_bytes([1; 20])));
        assert_eq!(keep.checksum_repo, Some(Checksum::from_bytes([2; 20])));
        assert_eq!(keep.size_repo, 5);
        for (name, (mark, file)) in &marks {
            if name != "pg_data/keep" {
                assert_eq!(*mark, 0, "{name}");
                assert_eq!(file.checksum_repo, None, "{name} took nothing over");
            }
        }

        // with delta a different mtime does not matter: the file is kept (and re-verified later)
        std::fs::write(base.join("pg_data/ts.lz4"), b"x").unwrap();
        let resumed = LazyManifest::from(old);
        let out = clean(&repo, "demo", &new, &files, &resumed, true, &log).unwrap();
        let mut kept = Vec::new();
        out.for_each(|_, e| {
            if e.mark == RESUMED {
                kept.push(e.name);
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(kept, ["pg_data/keep", "pg_data/ts"]);
        assert!(base.join("pg_data/ts.lz4").exists());
    }
}
