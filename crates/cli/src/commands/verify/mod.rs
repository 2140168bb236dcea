//! `verify`: check every file of a stanza's repository (pgBackRest 2.45 `src/command/verify/verify.c`), and fail
//! when anything is wrong.
//!
//! Contract:
//! - One repository (`--repo`, else the first configured). The info files are loaded as pgBackRest does (main,
//!   else copy); if neither twin of `backup.info` or `archive.info` loads, or their histories disagree, nothing
//!   else is checked.
//! - Every WAL segment of every archive id (`^[0-F]{24}-[0-f]{40}(<ext>)?$`) is read, decrypted with the archive
//!   sub-passphrase and decompressed; its SHA-1 must equal the one in its name and its size the segment size read
//!   from the first segment's header. Every file of every backup directory's manifest is read the same way
//!   ([`file`]; where and how it is stored comes from `pgkeep_repo::backup_file`, as for restore); a file shared
//!   by several backups is read once. Block-incremental files, which pgkeep cannot decode, are reported invalid. Reads run on `process-max` threads.
//! - Beyond pgBackRest (which only reports and exits 0), pgkeep also counts as errors: an info file or manifest
//!   twin that exists but does not load, or a manifest copy missing beside its main file; a backup listed in
//!   `backup.info` whose directory is gone; WAL a listed backup needs between its archive start and stop; gaps in
//!   the WAL after the newest backup's archive start (point-in-time recovery from the newest backup must reach the
//!   newest segment); a missing or unreadable timeline history file for any timeline from the newest backup's
//!   onwards; archive id directories archive.info does not know. A backup whose `backup.manifest` is missing is not
//!   damaged: it is running (the newest, unlisted), being expired (expire removes the manifests before it saves
//!   backup.info, so an interrupted expire leaves listed backups without them) or a leftover the next expire or
//!   backup removes; it is reported as pgBackRest does (and with a warning when listed), not as an error.
//! - `--set=<label>` verifies that backup (with the files it references in older backups) and the WAL between its
//!   archive start and stop only.
//! - Output: `--output=text` prints [`render::render_text`] (pgBackRest's text, plus lines naming each problem);
//!   the same text is logged at info level. Each failed file is also logged as a warning. `--output=json` (when
//!   the configuration allows it) prints [`render::render_json`].
//! - Exit: 0 when nothing is wrong; otherwise the result is printed and the command fails with
//!   `[104] verify command encountered N error(s), check the log file for details` (`CommandError`, the code
//!   pgBackRest uses for a multi-part command that found errors).

pub mod file;
pub mod render;
pub mod wal;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};

use pgkeep_base::compress::CompressType;
use pgkeep_base::io::{Chain, FilterRead, FilterSpec};
use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_config::{Group, OptionId};
use pgkeep_pg::wal::{LONG_HEADER_SIZE, WalSegSize, header_parse};
use pgkeep_repo::backup_file::{StoredFormat, StoredLocation};
use pgkeep_repo::info::{InfoFile, decode_info};
use pgkeep_repo::layout;
use pgkeep_repo::manifest::{BLOCK_INCR_EXT, Manifest};
use pgkeep_repo::retention;
use pgkeep_repo::{ArchiveInfo, BackupInfo};
use pgkeep_storage::{InfoLevel, Storage, get, join};

use crate::ctx::{Ctx, Repo};
use file::{FileCheck, Outcome};
use render::{ArchiveResult, BackupResult, BackupStatus, InvalidFile, Report, WalRangeResult};

/// `verify`.
///
/// # Errors
/// Option and repository-access errors; `Command` (104) when anything was found invalid or missing.
pub fn run(ctx: &Ctx) -> Result<()> {
    let stanza = ctx.stanza()?;
    let key = match ctx.cfg.int(OptionId::Repo) {
        Some(key) => u32::try_from(key).unwrap_or(1),
        None => ctx.cfg.default_index(Group::Repo),
    };
    let repo = ctx.repo(key)?;
    let threads = ctx
        .cfg
        .int(OptionId::ProcessMax)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(1)
        .max(1);
    let set = ctx.cfg.str(OptionId::Set);
    let report = Verifier {
        ctx,
        repo: &repo,
        storage: repo.storage.as_ref(),
        stanza,
        threads,
    }
    .verify(set)?;

    let verbose = ctx.cfg.bool(OptionId::Verbose);
    let text = render::render_text(&report, verbose);
    if !text.is_empty() {
        ctx.log.info(&text);
    }
    match ctx.cfg.str(OptionId::Output) {
        Some("text") if !text.is_empty() => println!("{text}"),
        Some("json") => print!("{}", render::render_json(&report)),
        _ => {}
    }
    if report.errors > 0 {
        return Err(Error::new(
            ErrorKind::Command,
            format!(
                "verify command encountered {} error(s), check the log file for details",
                report.errors
            ),
        ));
    }
    Ok(())
}

/// An info file or manifest loaded the way verify loads it: main first, the copy's state reported.
struct Loaded<T> {
    value: Option<T>,
    /// Twins that failed to load, `(repository-relative name, error)`, when the other one loaded.
    errors: Vec<(String, String)>,
    /// Both twins loaded but differ.
    mismatch: bool,
    /// Code of the main file's failure (`FileMissing` tells an unfinished backup).
    main_error: Option<ErrorKind>,
    /// Both twins are missing.
    both_missing: bool,
}

struct Verifier<'a> {
    ctx: &'a Ctx,
    repo: &'a Repo,
    storage: &'a dyn Storage,
    stanza: &'a str,
    threads: usize,
}

/// A file job and who asked for it.
struct Job {
    check: FileCheck,
    /// The name logged and listed (`15-1/<dir>/<file>`, `<label>/<name><ext>`).
    name: String,
}

impl Verifier<'_> {
    fn load_twins<T: InfoFile>(
        &self,
        path: &str,
        display_base: &str,
        pass: Option<&str>,
    ) -> Loaded<T> {
        let read = |p: &str| -> Result<(T, Vec<u8>)> {
            let full = join(self.storage.root(), p);
            let data = get(self.storage, p)?.ok_or_else(|| {
                Error::new(
                    ErrorKind::FileMissing,
                    format!("unable to open missing file '{full}' for read"),
                )
            })?;
            let value = decode_info::<T>(&data, &full, pass)?;
            Ok((value, data))
        };
        let copy = layout::copy_path(path);
        let name = |p: &str| {
            p.strip_prefix(display_base)
                .unwrap_or(p)
                .trim_start_matches('/')
                .to_string()
        };
        let main = read(path);
        let second = read(&copy);
        let mut loaded = Loaded {
            value: None,
            errors: Vec::new(),
            mismatch: false,
            main_error: None,
            both_missing: false,
        };
        match (main, second) {
            (Ok((value, a)), Ok((_, b))) => {
                loaded.mismatch = a != b;
                loaded.value = Some(value);
            }
            (Ok((value, _)), Err(e)) => {
                self.ctx.log.detail(e.message());
                loaded.errors.push((name(&copy), e.message().to_string()));
                loaded.value = Some(value);
            }
            (Err(e), Ok((value, _))) => {
                self.ctx.log.detail(e.message());
                loaded.main_error = Some(e.kind());
                loaded.errors.push((name(path), e.message().to_string()));
                loaded.value = Some(value);
            }
            (Err(e), Err(c)) => {
                self.ctx.log.detail(e.message());
                self.ctx.log.detail(c.message());
                loaded.main_error = Some(e.kind());
                loaded.both_missing =
                    e.kind() == ErrorKind::FileMissing && c.kind() == ErrorKind::FileMissing;
                loaded.errors.push((name(path), e.message().to_string()));
                loaded.errors.push((name(&copy), c.message().to_string()));
            }
        }
        loaded
    }

    fn verify(&self, set: Option<&str>) -> Result<Report> {
        let mut report = Report {
            stanza: self.stanza.to_string(),
            repo: self.repo.key,
            ..Report::default()
        };
        let pass = self.repo.cipher_pass.as_deref();
        let backup_base = layout::backup_path(self.stanza);
        let archive_base = layout::archive_path(self.stanza);
        let backup_info: Loaded<BackupInfo> =
            self.load_twins(&layout::backup_info_path(self.stanza), &backup_base, pass);
        let archive_info: Loaded<ArchiveInfo> =
            self.load_twins(&layout::archive_info_path(self.stanza), &archive_base, pass);
        for (loaded, file) in [
            (backup_info.mismatch, layout::BACKUP_INFO_FILE),
            (archive_info.mismatch, layout::ARCHIVE_INFO_FILE),
        ] {
            if loaded {
                self.ctx
                    .log
                    .detail(&format!("{file}.copy does not match {file}"));
            }
        }
        let (Some(backup), Some(archive)) = (backup_info.value, archive_info.value) else {
            return Ok(self.unusable_info(report, &backup_info.errors, &archive_info.errors));
        };
        for (name, error) in backup_info.errors.into_iter().chain(archive_info.errors) {
            report.errors += 1;
            report.info_errors.push((name, error));
        }
        if let Err(e) = check_history(&archive, &backup) {
            report.errors += 1;
            report.problems.push(e.message().to_string());
            return Ok(report);
        }

        let mut labels = retention::backup_dirs(self.storage, self.stanza)?;
        let mut archive_ids: Vec<String> = self
            .list(&archive_base)?
            .into_iter()
            .filter(|n| retention::is_archive_id(n))
            .collect();
        retention::sort_archive_ids(&mut archive_ids);

        // --set: one backup, and only the WAL its consistency needs
        let mut wal_window: Option<(String, String, String)> = None;
        if let Some(label) = set {
            if !labels.iter().any(|l| l == label) && !backup.backups.contains_key(label) {
                return Err(Error::new(
                    ErrorKind::BackupSetInvalid,
                    format!("backup set {label} is not valid"),
                ));
            }
            labels.retain(|l| l == label);
            wal_window = backup.backups.get(label).and_then(|entry| {
                let id = archive.archive_id(entry.db_id)?;
                Some((
                    id,
                    entry.archive_start.clone()?,
                    entry.archive_stop.clone()?,
                ))
            });
            archive_ids.retain(|id| wal_window.as_ref().is_some_and(|(w, _, _)| w == id));
        }

        let listed_missing: Vec<String> = backup
            .backups
            .keys()
            .filter(|l| !labels.contains(l) && set.is_none_or(|s| s == l.as_str()))
            .cloned()
            .collect();
        if archive_ids.is_empty() && labels.is_empty() && listed_missing.is_empty() {
            return Ok(report);
        }
        report.checked = true;
        if archive_ids.is_empty() || labels.is_empty() {
            self.ctx.log.detail(&format!(
                "no {} exist in the repo",
                if archive_ids.is_empty() {
                    "archives"
                } else {
                    "backups"
                }
            ));
        }
        let current_backup = labels
            .last()
            .filter(|l| !backup.backups.contains_key(*l))
            .cloned();
        let history_ids: BTreeSet<String> =
            archive.history.iter().map(|h| h.archive_id()).collect();
        let unknown: Vec<&String> = archive_ids
            .iter()
            .filter(|id| !history_ids.contains(*id))
            .collect();
        if !unknown.is_empty() {
            let list: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
            self.ctx.log.warn(&format!(
                "archiveIds '{}' are not in the archive.info history list",
                list.join(", ")
            ));
            report.errors += 1;
            report.unknown_archive_ids = unknown.into_iter().cloned().collect();
        }

        let mut jobs: Vec<Job> = Vec::new();
        let mut job_index: HashMap<FileCheck, usize> = HashMap::new();
        let mut add_job = |check: FileCheck, name: String, jobs: &mut Vec<Job>| -> usize {
            if let Some(&i) = job_index.get(&check) {
                return i;
            }
            jobs.push(Job {
                check: check.clone(),
                name,
            });
            job_index.insert(check, jobs.len() - 1);
            jobs.len() - 1
        };

        // archive: list, size, ranges, jobs
        let archive_pass = archive.cipher_pass.clone();
        let mut wal_plans: Vec<WalPlan> = Vec::new();
        for archive_id in &archive_ids {
            let mut plan = self.plan_wal(
                archive_id,
                archive_pass.as_deref(),
                wal_window.as_ref(),
                &mut report,
            )?;
            for file in &plan.files {
                let check = FileCheck {
                    path: format!(
                        "{}/{}",
                        layout::archive_id_path(self.stanza, archive_id),
                        file.path
                    ),
                    offset: 0,
                    limit: None,
                    cipher_pass: archive_pass.clone(),
                    compress: CompressType::from_file_name(&file.path)
                        .unwrap_or(CompressType::None),
                    checksum: file.checksum.clone(),
                    size: u64::from(plan.size.get()),
                    repo_checksum: None,
                    repo_size: None,
                };
                let index = add_job(check, format!("{archive_id}/{}", file.path), &mut jobs);
                plan.job_of.push(index);
            }
            wal_plans.push(plan);
        }

        // backups: manifests and their files
        let mut backup_plans: Vec<BackupPlan> = Vec::new();
        for label in &labels {
            let mut result = BackupResult::new(label);
            let in_progress = current_backup.as_deref() == Some(label.as_str());
            let manifest = self.manifest(&backup, &archive, &mut result, in_progress, &mut report);
            let mut plan = BackupPlan {
                result,
                files: Vec::new(),
            };
            if let Some(manifest) = manifest {
                self.plan_backup(&manifest, &mut plan, &mut jobs, &mut add_job, &mut report);
            }
            backup_plans.push(plan);
        }
        for label in listed_missing {
            let mut result = BackupResult::new(&label);
            result.status = BackupStatus::ManifestMissing;
            self.ctx.log.warn(&format!(
                "backup '{label}' is listed in backup.info but its directory is missing"
            ));
            report.errors += 1;
            backup_plans.push(BackupPlan {
                result,
                files: Vec::new(),
            });
        }
        backup_plans.sort_by(|a, b| a.result.label.cmp(&b.result.label));

        let outcomes = self.execute(&jobs);
        let archived =
            self.collect_wal(&archive, &backup, wal_plans, &jobs, &outcomes, &mut report);
        self.collect_backups(backup_plans, &jobs, &outcomes, &mut report);
        if set.is_none() || wal_window.is_some() {
            self.check_backup_wal(&archive, &backup, &archived, &mut report);
        }
        Ok(report)
    }

    /// Neither twin of an info file loads: pgBackRest's "No usable ..." lines.
    fn unusable_info(
        &self,
        mut report: Report,
        backup_errors: &[(String, String)],
        archive_errors: &[(String, String)],
    ) -> Report {
        let backup_unusable = backup_errors.len() == 2;
        let archive_unusable = archive_errors.len() == 2;
        if backup_unusable {
            report
                .problems
                .push("  No usable backup.info file".to_string());
            report.errors += 1;
        }
        if archive_unusable {
            report
                .problems
                .push("  No usable archive.info file".to_string());
            report.errors += 1;
        }
        for (name, error) in backup_errors.iter().chain(archive_errors) {
            self.ctx
                .log
                .warn(&format!("invalid info file '{name}': {error}"));
        }
        report
    }

    fn list(&self, path: &str) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .storage
            .list(path, InfoLevel::Exists)?
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// List the WAL of one archive id and work out the segment size.
    fn plan_wal(
        &self,
        archive_id: &str,
        pass: Option<&str>,
        window: Option<&(String, String, String)>,
        report: &mut Report,
    ) -> Result<WalPlan> {
        let base = layout::archive_id_path(self.stanza, archive_id);
        let dirs: Vec<String> = self
            .list(&base)?
            .into_iter()
            .filter(|n| layout::is_wal_dir(n))
            .collect();
        if dirs.is_empty() {
            self.ctx
                .log
                .detail(&format!("archive path '{archive_id}' is empty"));
        }
        let mut files = Vec::new();
        for dir in &dirs {
            let names: Vec<String> = self
                .list(&format!("{base}/{dir}"))?
                .into_iter()
                .filter(|n| layout::is_wal_segment_file(n))
                .filter(|n| {
                    window.is_none_or(|(_, start, stop)| {
                        let seg = retention::prefix(n, 24);
                        seg >= start.as_str() && seg <= stop.as_str()
                    })
                })
                .collect();
            if names.is_empty() {
                self.ctx.log.detail(&format!(
                    "path '{archive_id}/{dir}' does not contain any valid WAL to be processed"
                ));
            }
            for name in names {
                files.push(WalFile {
                    segment: retention::prefix(&name, 24).to_string(),
                    checksum: name.get(25..65).unwrap_or_default().to_string(),
                    path: format!("{dir}/{name}"),
                });
            }
        }
        // duplicates are errors and are not verified
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for f in &files {
            *count.entry(f.segment.as_str()).or_default() += 1;
        }
        let duplicates: BTreeSet<String> = count
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(s, _)| (*s).to_string())
            .collect();
        for segment in &duplicates {
            self.ctx.log.warn(&format!(
                "duplicate WAL '{segment}' for '{archive_id}' exists, skipping"
            ));
            report.errors += 1;
        }
        let total = u32::try_from(files.len()).unwrap_or(u32::MAX);
        files.retain(|f| !duplicates.contains(&f.segment));
        let size = files
            .iter()
            .find_map(|f| self.wal_size(&format!("{base}/{}", f.path), pass))
            .unwrap_or(WalSegSize::DEFAULT);
        Ok(WalPlan {
            archive_id: archive_id.to_string(),
            total,
            size,
            files,
            duplicates: duplicates.into_iter().collect(),
            job_of: Vec::new(),
        })
    }

    /// The segment size in the header of one WAL file, if it can be read.
    fn wal_size(&self, path: &str, pass: Option<&str>) -> Option<WalSegSize> {
        let source = self
            .storage
            .open_read(path, pgkeep_storage::ReadOptions::default())
            .ok()??;
        let mut chain = Chain::new();
        if let Some(pass) = pass {
            chain
                .transform(FilterSpec::Decrypt {
                    pass: pass.to_string(),
                })
                .ok()?;
        }
        let compress = CompressType::from_file_name(path).ok()?;
        chain
            .transform(FilterSpec::Decompress { ty: compress })
            .ok()?;
        let mut reader = FilterRead::new(source, chain);
        let mut header = [0u8; LONG_HEADER_SIZE];
        reader.read_exact(&mut header).ok()?;
        let parsed = header_parse(&header).ok()?;
        WalSegSize::new(parsed.seg_size).ok()
    }

    /// Load a backup's manifest as pgBackRest's `verifyManifestFile()`; `None` when the backup cannot be checked.
    fn manifest(
        &self,
        backup: &BackupInfo,
        archive: &ArchiveInfo,
        result: &mut BackupResult,
        in_progress: bool,
        report: &mut Report,
    ) -> Option<Manifest> {
        let label = result.label.clone();
        let loaded: Loaded<Manifest> = self.load_twins(
            &layout::manifest_path(self.stanza, &label),
            &layout::backup_path(self.stanza),
            backup.cipher_pass.as_deref(),
        );
        if loaded.mismatch {
            self.ctx.log.detail(&format!(
                "backup '{label}' manifest.copy does not match manifest"
            ));
        }
        let listed = backup.backups.contains_key(&label);
        let Some(manifest) = loaded.value else {
            if in_progress && loaded.main_error == Some(ErrorKind::FileMissing) {
                result.status = BackupStatus::InProgress;
                self.ctx.log.info(&format!(
                    "backup '{label}' appears to be in progress, skipping"
                ));
                return None;
            }
            if loaded.both_missing {
                result.status = BackupStatus::ManifestMissing;
                self.ctx.log.detail(&format!(
                    "manifest missing for '{label}' - backup may have expired"
                ));
                if listed {
                    // expire removes the manifests before it saves backup.info: this is an interrupted expire,
                    // which the next expire or backup completes
                    self.ctx.log.warn(&format!(
                        "backup '{label}' is listed in backup.info but has no manifest: it is being expired"
                    ));
                }
            } else {
                result.status = BackupStatus::Invalid;
                report.errors += 1;
                for (name, error) in loaded.errors {
                    self.ctx
                        .log
                        .warn(&format!("invalid manifest '{name}': {error}"));
                    result.manifest_errors.push((name, error));
                }
            }
            return None;
        };
        if !loaded.errors.is_empty() {
            let main_missing = loaded.main_error == Some(ErrorKind::FileMissing);
            if main_missing && in_progress {
                result.status = BackupStatus::InProgress;
                self.ctx.log.info(&format!(
                    "backup '{label}' appears to be in progress, skipping"
                ));
                return None;
            }
            if loaded.main_error.is_some() {
                self.ctx.log.detail(&format!(
                    "{label}/backup.manifest is missing or unusable, using copy"
                ));
            }
            if main_missing {
                // expire removes backup.manifest first: a listed backup without it is being expired, an unlisted
                // one is a leftover the next expire or backup removes; neither is damage
                if listed {
                    self.ctx.log.warn(&format!(
                        "backup '{label}' is listed in backup.info but has no manifest: it is being expired"
                    ));
                }
            } else {
                // a twin that exists but does not load is damage
                report.errors += 1;
                result.status = BackupStatus::Invalid;
                for (name, error) in loaded.errors {
                    self.ctx
                        .log
                        .warn(&format!("invalid manifest '{name}': {error}"));
                    result.manifest_errors.push((name, error));
                }
            }
        }
        let known = archive.history.iter().any(|h| {
            h.id == manifest.db.id
                && h.system_id == manifest.db.system_id
                && h.version == manifest.db.version
        });
        if !known {
            self.ctx.log.info(&format!(
                "'{label}' may not be recoverable - PG data (id {}, version {}, system-id {}) is not in the backup.info history, skipping",
                manifest.db.id, manifest.db.version, manifest.db.system_id
            ));
            if result.status == BackupStatus::Valid {
                result.status = BackupStatus::Invalid;
                report.errors += 1;
            }
            return None;
        }
        Some(manifest)
    }

    fn plan_backup(
        &self,
        manifest: &Manifest,
        plan: &mut BackupPlan,
        jobs: &mut Vec<Job>,
        add_job: &mut impl FnMut(FileCheck, String, &mut Vec<Job>) -> usize,
        report: &mut Report,
    ) {
        let label = plan.result.label.clone();
        if manifest.files.is_empty() {
            self.ctx.log.info(&format!(
                "backup '{label}' manifest does not contain any target files to verify"
            ));
            report.errors += 1;
            plan.result.status = BackupStatus::Invalid;
            return;
        }
        let ext = manifest.options.compress_type.ext();
        let format = StoredFormat::of(manifest);
        for (name, file) in &manifest.files {
            plan.result.total_files += 1;
            if file.size == 0 && manifest.backup.bundle {
                plan.files.push(Slot::Valid);
                continue;
            }
            let owner = manifest.file_backup_label(file);
            let block_incr = file.block_incr.is_some();
            let shown = format!(
                "{owner}/{name}{}",
                if block_incr { BLOCK_INCR_EXT } else { ext }
            );
            let location = match StoredLocation::of(manifest, self.stanza, name, file) {
                Ok(location) => location,
                Err(e) => {
                    plan.files.push(Slot::Unreadable(
                        shown,
                        format!("[{}] {}", e.code(), e.message()),
                    ));
                    continue;
                }
            };
            let check = FileCheck {
                path: location.path,
                offset: location.offset,
                limit: location.size,
                cipher_pass: format.cipher_pass.clone(),
                compress: format.compress,
                checksum: file
                    .checksum
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                size: file.size,
                repo_checksum: file.checksum_repo.as_ref().map(ToString::to_string),
                repo_size: file.checksum_repo.as_ref().map(|_| file.size_repo),
            };
            plan.files.push(Slot::Job(add_job(check, shown, jobs)));
        }
    }

    /// Run every job on `threads` threads; outcomes in job order.
    fn execute(&self, jobs: &[Job]) -> Vec<Outcome> {
        let next = AtomicUsize::new(0);
        let storage = self.storage;
        let mut outcomes: Vec<Outcome> = vec![Outcome::Ok; jobs.len()];
        let workers = self.threads.min(jobs.len()).max(1);
        let results: Vec<Vec<(usize, Outcome)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(job) = jobs.get(i) else {
                                break;
                            };
                            done.push((i, file::verify(storage, &job.check)));
                        }
                        done
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| vec![]))
                .collect()
        });
        let mut seen = vec![false; jobs.len()];
        for (i, outcome) in results.into_iter().flatten() {
            if let (Some(slot), Some(flag)) = (outcomes.get_mut(i), seen.get_mut(i)) {
                *slot = outcome;
                *flag = true;
            }
        }
        // a worker that died (it cannot panic on input, but be safe) leaves its jobs unverified: never call them ok
        for (slot, flag) in outcomes.iter_mut().zip(seen) {
            if !flag {
                *slot = Outcome::Other("verification did not complete".to_string());
            }
        }
        outcomes
    }

    fn log_outcome(&self, name: &str, outcome: &Outcome) {
        match outcome {
            Outcome::Ok => {}
            Outcome::Other(message) => self
                .ctx
                .log
                .warn(&format!("invalid result {name}: {message}")),
            other => self.ctx.log.warn(&format!("{} '{name}'", other.reason())),
        }
    }

    fn collect_wal(
        &self,
        archive: &ArchiveInfo,
        backup: &BackupInfo,
        plans: Vec<WalPlan>,
        jobs: &[Job],
        outcomes: &[Outcome],
        report: &mut Report,
    ) -> HashMap<String, (BTreeSet<String>, WalSegSize)> {
        let mut archived = HashMap::new();
        for plan in plans {
            let present: BTreeSet<String> = plan.files.iter().map(|f| f.segment.clone()).collect();
            let ranges = wal::ranges(&present, plan.size);
            let mut result = ArchiveResult {
                archive_id: plan.archive_id.clone(),
                total_wal: plan.total,
                ranges: ranges
                    .iter()
                    .map(|r| WalRangeResult {
                        start: r.start.clone(),
                        stop: r.stop.clone(),
                        invalid: Vec::new(),
                    })
                    .collect(),
                duplicates: plan.duplicates.clone(),
                ..ArchiveResult::default()
            };
            for (file, &job) in plan.files.iter().zip(&plan.job_of) {
                let (Some(outcome), Some(job)) = (outcomes.get(job), jobs.get(job)) else {
                    continue;
                };
                if *outcome == Outcome::Ok {
                    result.valid_wal += 1;
                    continue;
                }
                // WAL that vanished while verifying may have been expired: pgBackRest warns without an error
                if *outcome != Outcome::Missing {
                    report.errors += 1;
                }
                self.log_outcome(&job.name, outcome);
                let invalid = InvalidFile {
                    name: job.name.clone(),
                    reason: outcome.reason(),
                    detail: match outcome {
                        Outcome::Other(m) => Some(m.clone()),
                        _ => None,
                    },
                };
                if let Some(range) = result
                    .ranges
                    .iter_mut()
                    .find(|r| r.stop.as_str() >= file.segment.as_str())
                {
                    range.invalid.push(invalid);
                }
            }
            for range in &result.ranges {
                self.ctx.log.detail(&format!(
                    "archiveId: {}, wal start: {}, wal stop: {}",
                    result.archive_id, range.start, range.stop
                ));
            }
            // pgkeep: PITR from the newest backup of this archive id, and the history files it needs
            let pg_id = retention::archive_id_pg_id(&plan.archive_id);
            let newest_start = backup
                .backups
                .values()
                .filter(|b| Some(b.db_id) == pg_id)
                .filter_map(|b| b.archive_start.clone())
                .max();
            let is_set_window = plan.total > 0 && self.ctx.cfg.str(OptionId::Set).is_some();
            if let Some(from) = newest_start.as_deref()
                && !is_set_window
            {
                result.missing_wal = wal::pitr_gaps(from, &present, plan.size);
                report.errors += u32::try_from(result.missing_wal.len()).unwrap_or(u32::MAX);
                for (first, last) in &result.missing_wal {
                    self.ctx.log.warn(&format!(
                        "missing WAL {} needed to recover from the newest backup",
                        render::run_text(
                            &format!("{}/{first}", plan.archive_id),
                            &format!("{}/{last}", plan.archive_id)
                        )
                    ));
                }
                result.history =
                    self.check_history_files(&plan.archive_id, from, &present, archive);
                report.errors += u32::try_from(result.history.len()).unwrap_or(u32::MAX);
            }
            report.archives.push(result);
            archived.insert(plan.archive_id, (present, plan.size));
        }
        archived
    }

    /// History files for every timeline from `from`'s onwards that has segments: present and readable.
    fn check_history_files(
        &self,
        archive_id: &str,
        from: &str,
        present: &BTreeSet<String>,
        archive: &ArchiveInfo,
    ) -> Vec<(String, Option<String>)> {
        let Ok(first_timeline) = pgkeep_pg::wal::timeline_of(from) else {
            return Vec::new();
        };
        let mut timelines: Vec<u32> = present
            .iter()
            .filter_map(|s| pgkeep_pg::wal::timeline_of(s).ok())
            .filter(|&t| t > 1 && t >= first_timeline)
            .collect();
        timelines.dedup();
        let mut problems = Vec::new();
        for timeline in timelines {
            let name = format!("{timeline:08X}.history");
            let path = format!(
                "{}/{name}",
                layout::archive_id_path(self.stanza, archive_id)
            );
            let shown = format!("{archive_id}/{name}");
            match read_history(
                self.storage,
                &path,
                archive.cipher_pass.as_deref(),
                timeline,
            ) {
                Ok(true) => {}
                Ok(false) => {
                    self.ctx
                        .log
                        .warn(&format!("missing history file '{shown}'"));
                    problems.push((shown, None));
                }
                Err(e) => {
                    self.ctx
                        .log
                        .warn(&format!("invalid history file '{shown}': {}", e.message()));
                    problems.push((shown, Some(e.message().to_string())));
                }
            }
        }
        problems
    }

    fn collect_backups(
        &self,
        plans: Vec<BackupPlan>,
        jobs: &[Job],
        outcomes: &[Outcome],
        report: &mut Report,
    ) {
        let mut logged: BTreeSet<usize> = BTreeSet::new();
        for plan in plans {
            let mut result = plan.result;
            for slot in plan.files {
                let index = match slot {
                    Slot::Valid => {
                        result.valid_files += 1;
                        continue;
                    }
                    Slot::Unreadable(name, error) => {
                        report.errors += 1;
                        let outcome = Outcome::Other(error.clone());
                        self.log_outcome(&name, &outcome);
                        result.status = BackupStatus::Invalid;
                        result.invalid.push(InvalidFile {
                            name,
                            reason: outcome.reason(),
                            detail: Some(error),
                        });
                        continue;
                    }
                    Slot::Job(index) => index,
                };
                let (Some(outcome), Some(job)) = (outcomes.get(index), jobs.get(index)) else {
                    continue;
                };
                if *outcome == Outcome::Ok {
                    result.valid_files += 1;
                    continue;
                }
                if logged.insert(index) {
                    report.errors += 1;
                    self.log_outcome(&job.name, outcome);
                }
                result.status = BackupStatus::Invalid;
                result.invalid.push(InvalidFile {
                    name: job.name.clone(),
                    reason: outcome.reason(),
                    detail: match outcome {
                        Outcome::Other(m) => Some(m.clone()),
                        _ => None,
                    },
                });
            }
            report.backups.push(result);
        }
    }

    /// pgkeep: every listed backup's `[archive-start, archive-stop]` must be in the archive.
    fn check_backup_wal(
        &self,
        archive: &ArchiveInfo,
        backup: &BackupInfo,
        archived: &HashMap<String, (BTreeSet<String>, WalSegSize)>,
        report: &mut Report,
    ) {
        let empty = BTreeSet::new();
        for result in &mut report.backups {
            if !matches!(result.status, BackupStatus::Valid | BackupStatus::Invalid) {
                continue;
            }
            let Some(entry) = backup.backups.get(&result.label) else {
                continue;
            };
            let (Some(start), Some(stop)) = (&entry.archive_start, &entry.archive_stop) else {
                continue;
            };
            let Some(archive_id) = archive.archive_id(entry.db_id) else {
                continue;
            };
            let (present, size) = archived
                .get(&archive_id)
                .map_or((&empty, WalSegSize::DEFAULT), |(p, s)| (p, *s));
            for (first, last) in wal::missing(start, stop, present, size) {
                let (first, last) = (
                    format!("{archive_id}/{first}"),
                    format!("{archive_id}/{last}"),
                );
                self.ctx.log.warn(&format!(
                    "missing WAL {} needed to make backup '{}' consistent",
                    render::run_text(&first, &last),
                    result.label
                ));
                result.missing_wal.push((first, last));
                result.status = BackupStatus::Invalid;
                report.errors += 1;
            }
        }
    }
}

/// One WAL file to verify.
struct WalFile {
    segment: String,
    checksum: String,
    /// `<dir>/<file>` below the archive id.
    path: String,
}

struct WalPlan {
    archive_id: String,
    total: u32,
    size: WalSegSize,
    files: Vec<WalFile>,
    duplicates: Vec<String>,
    job_of: Vec<usize>,
}

struct BackupPlan {
    result: BackupResult,
    /// Per manifest file, in manifest order.
    files: Vec<Slot>,
}

/// How one manifest file of a backup is checked.
enum Slot {
    /// Nothing to read (an empty file of a bundled backup).
    Valid,
    /// By the job with this index.
    Job(usize),
    /// Not at all: pgkeep cannot read its format (shown name, error).
    Unreadable(String, String),
}

/// pgBackRest `verifyPgHistory()`: current entries and whole histories must agree.
fn check_history(archive: &ArchiveInfo, backup: &BackupInfo) -> Result<()> {
    let a = archive.current();
    let b = backup.current();
    if a.id != b.id || a.system_id != b.system_id || a.version != b.version {
        return Err(Error::new(
            ErrorKind::FileInvalid,
            format!(
                "backup info file and archive info file do not match\narchive: id = {}, version = {}, system-id = {}\nbackup : id = {}, version = {}, system-id = {}\nHINT: this may be a symptom of repository corruption!",
                a.id, a.version, a.system_id, b.id, b.version, b.system_id
            ),
        ));
    }
    let same = archive.history.len() == backup.history.len()
        && archive
            .history
            .iter()
            .zip(&backup.history)
            .all(|(a, b)| a.id == b.id && a.system_id == b.system_id && a.version == b.version);
    if !same {
        return Err(Error::new(
            ErrorKind::Format,
            "archive and backup history lists do not match",
        ));
    }
    Ok(())
}

/// Read a timeline history file: `Ok(false)` when absent; an error when it cannot be decrypted or a line is not
/// `<parent timeline> <switch LSN> [reason]` with a parent below `timeline`.
fn read_history(
    storage: &dyn Storage,
    path: &str,
    pass: Option<&str>,
    timeline: u32,
) -> Result<bool> {
    let Some(data) = get(storage, path)? else {
        return Ok(false);
    };
    let plain = match pass {
        Some(pass) => pgkeep_base::crypto::decrypt(pass.as_bytes(), &data)?,
        None => data,
    };
    let text = String::from_utf8(plain)
        .map_err(|_| Error::new(ErrorKind::Format, "history file is not valid text"))?;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let parent = fields.next().and_then(|f| f.parse::<u32>().ok());
        let lsn_ok = fields
            .next()
            .and_then(|f| f.split_once('/'))
            .is_some_and(|(hi, lo)| {
                u32::from_str_radix(hi, 16).is_ok() && u32::from_str_radix(lo, 16).is_ok()
            });
        if !lsn_ok || parent.is_none_or(|p| p == 0 || p >= timeline) {
            return Err(Error::new(
                ErrorKind::Format,
                format!("invalid line {} in history file: {line}", n + 1),
            ));
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
