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
//!   the stored checksums and sizes and are re-verified by the copy phase before being trusted;
//!   everything else (links, special files, bundles) is removed.
//! - The aborted backup is never in backup.info, so it is never listed as a valid backup.

use std::collections::BTreeSet;

use pgkeep_base::Result;
use pgkeep_base::compress::CompressType;
use pgkeep_repo::info::{BACKREST_VERSION, load_info_file};
use pgkeep_repo::layout;
use pgkeep_repo::manifest::Manifest;
use pgkeep_storage::{FileType, InfoLevel, Storage, join};

use crate::log::{Level, Logger};

/// The newest unfinished backup, when it can be resumed as the backup described by `manifest`;
/// an unusable one is removed.
///
/// # Errors
/// Storage errors while listing or removing.
pub fn find(
    repo: &dyn Storage,
    stanza: &str,
    manifest: &Manifest,
    resume: bool,
    backup_pass: Option<&str>,
    log: &Logger,
) -> Result<Option<Manifest>> {
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
        match load_info_file::<Manifest>(repo, &copy_file, backup_pass) {
            Err(_) => format!("unable to read {}.copy", join(repo.root(), &manifest_file)),
            Ok(found) => match usable(&found, manifest) {
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
/// labelled) and `resumed`; returns the files kept, whose manifest entries now carry the stored
/// checksums and sizes.
///
/// # Errors
/// Storage errors.
pub fn clean(
    repo: &dyn Storage,
    stanza: &str,
    manifest: &mut Manifest,
    resumed: &Manifest,
    delta: bool,
    log: &Logger,
) -> Result<BTreeSet<String>> {
    let mut kept = BTreeSet::new();
    let base = layout::backup_label_path(stanza, &manifest.backup.label);
    let mut stack: Vec<(String, Option<String>)> = vec![(base, None)];
    while let Some((dir, parent)) = stack.pop() {
        let mut entries = repo.list(&dir, InfoLevel::Exists)?.unwrap_or_default();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for entry in entries {
            if parent.is_none() && entry.name == layout::copy_path(layout::MANIFEST_FILE).as_str() {
                continue;
            }
            let name = match &parent {
                Some(p) => format!("{p}/{}", entry.name),
                None => entry.name.clone(),
            };
            let path = format!("{dir}/{}", entry.name);
            match entry.file_type {
                FileType::Path => {
                    if manifest.paths.contains_key(&name) {
                        stack.push((path, Some(name)));
                    } else {
                        log.detail(&format!(
                            "remove path '{}' from resumed backup",
                            join(repo.root(), &path)
                        ));
                        repo.remove_path(&path, true)?;
                    }
                }
                FileType::File => {
                    let compress =
                        CompressType::from_file_name(&name).unwrap_or(CompressType::None);
                    let name = name
                        .strip_suffix(compress.ext())
                        .unwrap_or(&name)
                        .to_string();
                    match keep_reason(manifest, resumed, &name, compress, delta) {
                        None => {
                            kept.insert(name);
                        }
                        Some(reason) => {
                            log.detail(&format!(
                                "remove file '{}' from resumed backup ({reason})",
                                join(repo.root(), &path)
                            ));
                            repo.remove(&path, true)?;
                        }
                    }
                }
                FileType::Link => repo.remove(&path, true)?,
                FileType::Special => {
                    log.warn(&format!(
                        "remove special file '{}' from resumed backup",
                        join(repo.root(), &path)
                    ));
                    repo.remove(&path, true)?;
                }
            }
        }
    }
    Ok(kept)
}

/// `None` when the stored file can be kept (and the manifest entry was updated), else why not.
fn keep_reason(
    manifest: &mut Manifest,
    resumed: &Manifest,
    name: &str,
    compress: CompressType,
    delta: bool,
) -> Option<&'static str> {
    if compress != manifest.options.compress_type {
        return Some("mismatched compression type");
    }
    let Some(file) = manifest.files.get_mut(name) else {
        return Some("missing in manifest");
    };
    if file.reference.is_some() {
        return Some("reference in manifest");
    }
    let Some(old) = resumed.files.get(name) else {
        return Some("missing in resumed manifest");
    };
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
