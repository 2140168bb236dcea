//! The end of a backup (pgBackRest `backupFilePut()`, `backupArchiveCheckCopy()`,
//! `backupComplete()`, `backupManifestSaveCopy()`).
//!
//! Contract:
//! - [`put_file`] stores content returned by the stop function (`backup_label`,
//!   `tablespace_map`) as a backup file with the owner of `pg_data` and its mode & 0644.
//! - [`archive_check_copy`] waits (up to `archive-timeout`) until every WAL segment from the start
//!   to the stop LSN is in the archive; with `archive-copy` each is re-encoded into the backup as
//!   `pg_data/pg_wal/<segment>` (checksum taken from the archive name).
//! - The backup's files are its [`Files`]: the file list and the copy's results on disk, merged
//!   with the few files added at the end (`backup_label`, `tablespace_map`, archive-copied WAL),
//!   which are held in the manifest's own map.
//! - [`save_copy`] writes `backup.manifest.copy` (encrypted with the backup.info sub-pass).
//! - Manifests are rendered streaming into the repository writers (neither the rendering nor the
//!   file list is ever held in memory); a file is committed only once its whole rendering is
//!   written.
//! - [`complete`] is the only place a backup becomes visible, in this order: strict manifest
//!   validation (and the sums backup.info records, in the same pass); `backup.manifest.copy`, then the same bytes as `backup.manifest`; the gz history
//!   copy; the `latest` link; backup.info (main, then copy); archive.info rewritten. A failure
//!   before backup.info is saved leaves a resumable, unlisted backup.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use pgkeep_base::compress::CompressType;
use pgkeep_base::io::{Chain, FilterSpec, FilterWrite, copy};
use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_pg::Lsn;
use pgkeep_pg::wal::{self, WalSegSize};
use pgkeep_repo::info::FileTotals;
use pgkeep_repo::info::{load_info, save_info};
use pgkeep_repo::manifest::build::{final_problems, final_result};
use pgkeep_repo::manifest::spool::{FileList, Results, each_final};
use pgkeep_repo::manifest::{Checksum, Manifest, ManifestFile, OwnerName, TARGET_PGDATA};
use pgkeep_repo::{ArchiveInfo, BackupInfo, BackupInfoEntry, layout};
use pgkeep_storage::{LinkType, ReadOptions, Storage, StorageWrite, WriteOptions, join};

use super::job::JobSettings;
use crate::commands::archive::wait_for_segment;
use crate::log::Logger;

/// Mode, user and group of files pgkeep creates in the backup: `pg_data`'s, mode & 0644.
fn created_attributes(manifest: &Manifest) -> Result<(u32, OwnerName, OwnerName)> {
    let base = manifest.paths.get(TARGET_PGDATA).ok_or_else(|| {
        Error::new(
            ErrorKind::Assert,
            "unable to find 'pg_data' in manifest path list",
        )
    })?;
    Ok((base.mode & 0o644, base.user.clone(), base.group.clone()))
}

/// Store `content` as `pg_data/<name>` of the backup and add it to the manifest.
///
/// # Errors
/// Write and filter errors.
pub fn put_file(
    repo: &dyn Storage,
    stanza: &str,
    manifest: &mut Manifest,
    settings: &JobSettings,
    name: &str,
    timestamp: i64,
    content: &str,
) -> Result<()> {
    let manifest_name = format!("{TARGET_PGDATA}/{name}");
    let path = layout::backup_file_path(
        stanza,
        &manifest.backup.label,
        &manifest_name,
        settings.compress.ext(),
    );
    let mut chain = Chain::new();
    let sha = chain.sha1();
    chain.transform(FilterSpec::Compress {
        ty: settings.compress,
        level: settings.level,
    })?;
    if let Some(pass) = &settings.cipher_pass {
        chain.transform(FilterSpec::Encrypt { pass: pass.clone() })?;
    }
    let repo_sha = settings.transforms().then(|| chain.sha1());
    let repo_size = chain.size();
    let mut out = repo.open_write(&path, WriteOptions::default())?;
    let results = copy(&mut content.as_bytes(), chain, &mut *out)?;
    out.finish()?;
    let (mode, user, group) = created_attributes(manifest)?;
    let mut file = ManifestFile::new(content.len() as u64, timestamp, mode, user, group);
    file.checksum = Some(results.get(sha)?.into());
    file.size_repo = results.get(repo_size)?;
    file.checksum_repo = match repo_sha {
        Some(key) => Some(results.get(key)?.into()),
        None => None,
    };
    manifest.files.insert(manifest_name, file);
    Ok(())
}

/// The file list of the backup being written and what the copy did (see the module contract).
#[derive(Clone, Copy)]
pub struct Files<'a> {
    /// The files found in PGDATA (after diff/incr and resume decisions).
    pub list: &'a FileList,
    /// What the copy did, once it ran.
    pub results: Option<&'a Results>,
}

impl Files<'_> {
    /// Every file of the manifest, in name order, as it stands now.
    ///
    /// # Errors
    /// Read errors of the temporary files, and `each`'s.
    pub fn each(
        &self,
        manifest: &Manifest,
        each: &mut dyn FnMut(&str, &ManifestFile) -> Result<()>,
    ) -> Result<()> {
        each_final(self.list, self.results, &manifest.files, each)
    }
}

/// Write `backup.manifest.copy` of the manifest's label.
///
/// # Errors
/// Rendering, encryption and write errors.
pub fn save_copy(
    repo: &dyn Storage,
    stanza: &str,
    manifest: &Manifest,
    files: Files<'_>,
    backup_pass: Option<&str>,
) -> Result<()> {
    let path = layout::copy_path(&layout::manifest_path(stanza, &manifest.backup.label));
    store_manifest(repo, manifest, files, backup_pass, &[path], None)
}

/// Several writers fed the same bytes.
struct Tee(Vec<Box<dyn StorageWrite>>);

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for out in &mut self.0 {
            out.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.iter_mut().try_for_each(Write::flush)
    }
}

/// The stored manifest and, optionally, its gz history copy, both fed by one rendering.
struct Fan<'a> {
    stored: &'a mut FilterWrite<Tee>,
    history: Option<&'a mut FilterWrite<Box<dyn StorageWrite>>>,
}

impl Write for Fan<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stored.write_all(buf)?;
        if let Some(history) = self.history.as_mut() {
            history.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Render the manifest once, streaming (it is never held whole, see
/// [`pgkeep_repo::InfoFile::write_to`]), into every path of `twins` (encrypted once, so they hold
/// identical bytes) and, when given, into the gz history copy. Each file is written atomically and
/// committed only after the whole rendering succeeded, in the order given, the history copy last.
fn store_manifest(
    repo: &dyn Storage,
    manifest: &Manifest,
    files: Files<'_>,
    backup_pass: Option<&str>,
    twins: &[String],
    history: Option<&str>,
) -> Result<()> {
    let encrypted = |mut chain: Chain| -> Result<Chain> {
        if let Some(pass) = backup_pass {
            chain.transform(FilterSpec::Encrypt {
                pass: pass.to_string(),
            })?;
        }
        Ok(chain)
    };
    let writers = twins
        .iter()
        .map(|path| repo.open_write(path, WriteOptions::default()))
        .collect::<Result<Vec<_>>>()?;
    let mut stored = FilterWrite::new(Tee(writers), encrypted(Chain::new())?);
    let mut history = match history {
        Some(path) => {
            let mut chain = Chain::new();
            chain.transform(FilterSpec::Compress {
                ty: CompressType::Gz,
                level: 9,
            })?;
            let out = repo.open_write(path, WriteOptions::default())?;
            Some(FilterWrite::new(out, encrypted(chain)?))
        }
        None => None,
    };
    manifest.write_with_files(
        &mut Fan {
            stored: &mut stored,
            history: history.as_mut(),
        },
        &|emit| files.each(manifest, emit),
    )?;
    let (Tee(writers), _) = stored.finish()?;
    for out in writers {
        out.finish()?;
    }
    if let Some(history) = history {
        let (out, _) = history.finish()?;
        out.finish()?;
    }
    Ok(())
}

/// Where the WAL of the backup is and how the backup stores files.
pub struct ArchiveCheck<'a> {
    /// Archive id (`15-1`).
    pub archive_id: &'a str,
    /// Archive sub-passphrase, when encrypted.
    pub archive_pass: Option<&'a str>,
    /// Timeline of the backup.
    pub timeline: u32,
    /// WAL segment size.
    pub wal_seg_size: WalSegSize,
    /// `archive-timeout`.
    pub timeout: Duration,
    /// `archive-copy`.
    pub copy: bool,
    /// How backup files are stored.
    pub settings: &'a JobSettings,
}

/// Wait for (and with `archive-copy`, copy) every WAL segment the backup needs.
///
/// # Errors
/// `ArchiveTimeout`; read, write and filter errors.
pub fn archive_check_copy(
    repo: &dyn Storage,
    stanza: &str,
    manifest: &mut Manifest,
    check: &ArchiveCheck<'_>,
    log: &Logger,
) -> Result<()> {
    let parse = |lsn: Option<&String>| -> Result<Lsn> {
        lsn.ok_or_else(|| Error::new(ErrorKind::Assert, "backup has no start or stop lsn"))?
            .parse()
    };
    let start = parse(manifest.backup.lsn_start.as_ref())?;
    let stop = parse(manifest.backup.lsn_stop.as_ref())?;
    let segments = wal::segment_range(check.timeline, start, stop, check.wal_seg_size);
    log.info(&format!(
        "check archive for segment(s) {}:{}",
        segments.first().map_or("", String::as_str),
        segments.last().map_or("", String::as_str)
    ));
    let (mode, user, group) = created_attributes(manifest)?;
    let wal_dir = manifest.db.version.require_info()?.wal_path;
    for segment in &segments {
        let found = wait_for_segment(repo, stanza, check.archive_id, segment, check.timeout)?;
        if !check.copy {
            continue;
        }
        log.detail(&format!("copy segment {segment} to backup"));
        let archived = CompressType::from_file_name(&found)?;
        let source = layout::archive_file_path(stanza, check.archive_id, &found);
        let mut reader = repo
            .open_read(&source, ReadOptions::default())?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::FileMissing,
                    format!(
                        "unable to open missing file '{}' for read",
                        join(repo.root(), &source)
                    ),
                )
            })?;
        let mut chain = Chain::new();
        if let Some(pass) = check.archive_pass {
            chain.transform(FilterSpec::Decrypt {
                pass: pass.to_string(),
            })?;
        }
        if archived != check.settings.compress {
            chain.transform(FilterSpec::Decompress { ty: archived })?;
            chain.transform(FilterSpec::Compress {
                ty: check.settings.compress,
                level: check.settings.level,
            })?;
        }
        if let Some(pass) = &check.settings.cipher_pass {
            chain.transform(FilterSpec::Encrypt { pass: pass.clone() })?;
        }
        let size = chain.size();
        let name = format!("{TARGET_PGDATA}/{wal_dir}/{segment}");
        let path = layout::backup_file_path(
            stanza,
            &manifest.backup.label,
            &name,
            check.settings.compress.ext(),
        );
        let mut out = repo.open_write(&path, WriteOptions::default())?;
        let results = copy(&mut reader, chain, &mut *out)?;
        out.finish()?;
        let mut file = ManifestFile::new(
            u64::from(check.wal_seg_size.get()),
            manifest.backup.timestamp_stop,
            mode,
            user.clone(),
            group.clone(),
        );
        file.size_repo = results.get(size)?;
        file.checksum = found.get(25..65).map(Checksum::from);
        manifest.files.insert(name, file);
    }
    Ok(())
}

/// Make the backup visible (see the module contract); returns the number of files.
///
/// # Errors
/// Validation (`Format`), storage, rendering and encryption errors.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site, at the end of the backup"
)]
pub fn complete(
    repo: &dyn Storage,
    stanza: &str,
    manifest: &Manifest,
    files: Files<'_>,
    backup_info: &mut BackupInfo,
    backup_pass: Option<&str>,
    repo_pass: Option<&str>,
    log: &Logger,
) -> Result<u64> {
    let mut problems = String::new();
    let mut totals = FileTotals::default();
    let mut count = 0u64;
    files.each(manifest, &mut |name, file| {
        final_problems(name, file, &mut problems);
        totals.add(file);
        count += 1;
        Ok(())
    })?;
    final_result(&problems)?;
    let label = &manifest.backup.label;
    let manifest_path = layout::manifest_path(stanza, label);
    // rendered once, streaming: the stored manifest (encrypted when the repository is), its copy
    // and its gz history
    store_manifest(
        repo,
        manifest,
        files,
        backup_pass,
        &[layout::copy_path(&manifest_path), manifest_path],
        Some(&layout::history_manifest_path(stanza, label)),
    )?;
    if repo.features().path_sync {
        repo.path_sync(&layout::history_path(stanza))?;
    }

    if repo.features().symlink {
        let latest = layout::latest_link(stanza);
        repo.remove(&latest, true)?;
        repo.link_create(label, &latest, LinkType::Soft)?;
    }

    backup_info.add_backup(
        label.clone(),
        BackupInfoEntry::from_manifest_totals(manifest, &totals),
    );
    save_info(
        repo,
        &layout::backup_info_path(stanza),
        backup_info,
        repo_pass,
    )?;

    let archive_path = layout::archive_info_path(stanza);
    let archive_info: ArchiveInfo = load_info(repo, &archive_path, repo_pass)?;
    save_info(repo, &archive_path, &archive_info, repo_pass)?;
    log.debug(&format!("backup {label} completed"));
    Ok(count)
}

/// pgBackRest `infoBackupLoadFileReconstruct()` (the one implementation is
/// [`pgkeep_repo::retention::reconstruct`]), with its warnings logged.
///
/// # Errors
/// Storage and manifest load errors.
pub fn reconstruct(
    repo: &dyn Storage,
    stanza: &str,
    info: &mut BackupInfo,
    log: &Logger,
) -> Result<()> {
    for warning in pgkeep_repo::retention::reconstruct(repo, stanza, info)? {
        log.warn(&warning);
    }
    Ok(())
}

/// The annotation map with empty values dropped; `None` when nothing is left.
#[must_use]
pub fn annotation(pairs: &[(String, String)]) -> Option<BTreeMap<String, String>> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .cloned()
        .collect();
    (!map.is_empty()).then_some(map)
}
