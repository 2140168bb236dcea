//! `expire`: remove backups and WAL beyond the retention settings, or one backup set given with `--set`
//! (pgBackRest 2.45 `src/command/expire/expire.c`), with pgBackRest's log lines and `[DRY-RUN]` mode.
//!
//! Contract:
//! - Runs under the stanza's backup lock (shared with a backup that calls [`run_after_backup`] with the same exec
//!   id) and refuses to run when a stop file exists. Every selected repo is processed; an error on one repo is
//!   logged as `repoN: <message>` with its code and the next repo is still processed; at the end any error makes
//!   the command fail with `[104] expire command encountered N error(s), check the log file for details`.
//! - Per repo, in this order (the order is what makes a crash at any point harmless):
//!   1. load `backup.info` and reconcile it with the backup directories (`pgkeep_repo::retention::reconstruct`);
//!   2. decide what expires: the `--set` backup and its dependents, or by `repo-retention-full` (count or days)
//!      then `repo-retention-diff`. For each expired backup, newest dependent first, `backup.manifest` and
//!      `backup.manifest.copy` are removed — a backup without a manifest is no longer restorable nor listed by the
//!      next reconstruction, so a crash here only leaves what the next run removes anyway;
//!   3. save `backup.info` (main, then copy, each atomic) — only now do the backups disappear from it;
//!   4. remove every label directory of `backup/<stanza>` not in `backup.info` (expired, aborted or unfinished
//!      backups; an ad hoc expire spares a newest resumable backup unrelated to the expired set);
//!   5. remove WAL no retained backup needs (see [`archive`]);
//!   6. remove `backup.history` manifests older than `repo-retention-history` days (unless still current).
//!
//!   When `--set` removes the newest backup, the `latest` link is repointed before `backup.info` is saved.
//! - `--dry-run` logs the same lines (prefixed `[DRY-RUN]` by the logger) and changes nothing.
//! - Fault points ([`fault::point`]): `expire-manifest-removed` (after the first manifest removal),
//!   `expire-info-saved` (after backup.info is saved), `expire-backup-removed` (after the first expired backup
//!   directory is removed), `expire-archive-removed` (after the first WAL removal).

pub mod archive;
pub mod fault;

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_config::OptionId;
use pgkeep_repo::info::{BackupInfo, load_info, save_info};
use pgkeep_repo::layout::{self, BackupType};
use pgkeep_repo::manifest::Manifest;
use pgkeep_repo::retention::{self, prefix};
use pgkeep_storage::{InfoLevel, LinkType, Storage};

use crate::ctx::{Ctx, Repo};
use crate::lock;

/// Seconds per day, for the day-based retention options.
const SEC_PER_DAY: i64 = 86_400;

/// `expire` as a command of its own: `--set`, `--dry-run` and every selected repo.
///
/// # Errors
/// `OptionInvalidValue` for a malformed `--set`, lock and stop errors, and `Command` (104) when any repo failed.
pub fn run(ctx: &Ctx) -> Result<()> {
    let dry_run = ctx.cfg.valid(OptionId::DryRun) && ctx.cfg.bool(OptionId::DryRun);
    expire(ctx, ctx.cfg.str(OptionId::Set), dry_run)
}

/// The expire a backup runs when it has finished (`expire-auto`): retention only, every configured repo (or
/// `--repo`), under the backup's own lock. `ctx` is the backup's context; its exec id makes the backup lock it
/// already holds count as ours. The caller logs the command end/begin lines around it as pgBackRest does.
///
/// # Errors
/// As [`run`].
pub fn run_after_backup(ctx: &Ctx) -> Result<()> {
    expire(ctx, None, false)
}

fn expire(ctx: &Ctx, adhoc: Option<&str>, dry_run: bool) -> Result<()> {
    let stanza = ctx.stanza()?;
    let _lock = lock::acquire(
        ctx.lock_path(),
        stanza,
        lock::LockType::Backup,
        &ctx.exec_id,
    )?;
    lock::stop_test(ctx.lock_path(), Some(stanza))?;
    if let Some(label) = adhoc
        && !layout::is_backup_label(label)
    {
        return Err(Error::new(
            ErrorKind::OptionInvalidValue,
            format!("'{label}' is not a valid backup label format"),
        ));
    }

    let keys = ctx.repo_keys();
    let mut adhoc_found = false;
    let mut errors = 0u32;
    for (i, &key) in keys.iter().enumerate() {
        let last = i + 1 == keys.len();
        let result = ctx.repo(key).and_then(|repo| {
            let expirer = Expirer::new(ctx, &repo, stanza, dry_run);
            expirer.repo(adhoc, &mut adhoc_found, last)
        });
        if let Err(e) = result {
            ctx.log
                .error(e.code(), &format!("repo{key}: {}", e.message()));
            errors += 1;
        }
    }
    if errors > 0 {
        return Err(Error::new(
            ErrorKind::Command,
            format!("expire command encountered {errors} error(s), check the log file for details"),
        ));
    }
    Ok(())
}

/// Retention settings of one repo.
struct Retention {
    /// `repo-retention-full`.
    full: Option<i64>,
    /// `repo-retention-full-type=time`.
    full_time: bool,
    /// `repo-retention-diff`.
    diff: Option<i64>,
    /// `repo-retention-archive` (defaulted by the configuration as pgBackRest does).
    archive: Option<i64>,
    /// `repo-retention-archive-type`.
    archive_type: BackupType,
    /// `repo-retention-history`.
    history: Option<i64>,
}

impl Retention {
    fn of(ctx: &Ctx, key: u32) -> Retention {
        let cfg = &ctx.cfg;
        Retention {
            full: cfg.int_idx(OptionId::RepoRetentionFull, key),
            full_time: cfg.str_idx(OptionId::RepoRetentionFullType, key) == Some("time"),
            diff: cfg.int_idx(OptionId::RepoRetentionDiff, key),
            archive: cfg.int_idx(OptionId::RepoRetentionArchive, key),
            archive_type: cfg
                .str_idx(OptionId::RepoRetentionArchiveType, key)
                .and_then(BackupType::parse)
                .unwrap_or(BackupType::Full),
            history: cfg.int_idx(OptionId::RepoRetentionHistory, key),
        }
    }
}

/// Expire state of one repo.
struct Expirer<'a> {
    ctx: &'a Ctx,
    repo: &'a Repo,
    storage: &'a dyn Storage,
    stanza: &'a str,
    dry_run: bool,
    /// `repoN`, the prefix of every log line.
    name: String,
    retention: Retention,
    /// The first removal of each kind passes a fault point.
    fault_passed: std::cell::Cell<[bool; 4]>,
}

/// Indexes into `Expirer::fault_passed`.
const FAULT_MANIFEST: usize = 0;
const FAULT_BACKUP: usize = 1;
const FAULT_ARCHIVE: usize = 2;

impl<'a> Expirer<'a> {
    fn new(ctx: &'a Ctx, repo: &'a Repo, stanza: &'a str, dry_run: bool) -> Expirer<'a> {
        Expirer {
            ctx,
            repo,
            storage: repo.storage.as_ref(),
            stanza,
            dry_run,
            name: repo.name(),
            retention: Retention::of(ctx, repo.key),
            fault_passed: std::cell::Cell::new([false; 4]),
        }
    }

    fn info(&self, message: &str) {
        self.ctx.log.info(&format!("{}: {message}", self.name));
    }

    /// Pass fault point `name` the first time a removal of kind `which` happens.
    fn fault_once(&self, which: usize, name: &str) {
        let mut passed = self.fault_passed.get();
        if let Some(slot) = passed.get_mut(which)
            && !*slot
        {
            *slot = true;
            self.fault_passed.set(passed);
            fault::point(name);
        }
    }

    fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.storage.info(path, InfoLevel::Exists, true)?.is_some())
    }

    /// One repo, steps 1–6 of the module contract.
    fn repo(&self, adhoc: Option<&str>, adhoc_found: &mut bool, last: bool) -> Result<()> {
        let pass = self.repo.cipher_pass.as_deref();
        let info_path = layout::backup_info_path(self.stanza);
        let mut info: BackupInfo = load_info(self.storage, &info_path, pass)?;
        for warning in retention::reconstruct(self.storage, self.stanza, &mut info)? {
            self.ctx.log.warn(&warning);
        }

        let mut archive_retention = self.retention.archive;
        if let Some(label) = adhoc {
            if info.backups.contains_key(label) {
                *adhoc_found = true;
                self.expire_adhoc(&mut info, label)?;
            }
            if !*adhoc_found && last {
                self.ctx.log.warn(&format!(
                    "backup {label} does not exist\nHINT: run the info command and confirm the backup is listed"
                ));
            }
        } else {
            if self.retention.full_time {
                if let Some(days) = self.retention.full {
                    let min = chrono::Utc::now().timestamp() - days.saturating_mul(SEC_PER_DAY);
                    self.expire_time_based(&mut info, min, &mut archive_retention)?;
                }
            } else {
                self.expire_full(&mut info)?;
            }
            self.expire_diff(&mut info)?;
        }

        if !self.dry_run {
            save_info(self.storage, &info_path, &info, pass)?;
            fault::point("expire-info-saved");
        }

        self.remove_expired_backups(&info, adhoc)?;
        archive::remove_expired(self, &info, archive_retention)?;
        self.remove_expired_history(&info)
    }

    /// Expire `label` and its dependents, newest first; returns the expired labels ascending.
    fn expire_backup(&self, info: &mut BackupInfo, label: &str) -> Result<Vec<String>> {
        let mut list = retention::dependents(info, label);
        list.sort();
        for gone in list.iter().rev() {
            if !self.dry_run {
                let manifest = layout::manifest_path(self.stanza, gone);
                self.storage.remove(&manifest, true)?;
                self.fault_once(FAULT_MANIFEST, "expire-manifest-removed");
                self.storage.remove(&layout::copy_path(&manifest), true)?;
            }
            info.remove_backup(gone);
        }
        Ok(list)
    }

    fn log_expired(&self, what: &str, expired: &[String]) {
        self.info(&format!(
            "expire {what} backup {}{}",
            if expired.len() > 1 { "set " } else { "" },
            expired.join(", ")
        ));
    }

    /// `--set`: the backup and its dependents, whatever the retention settings.
    fn expire_adhoc(&self, info: &mut BackupInfo, label: &str) -> Result<()> {
        let mut fulls = retention::labels_of_type(info, &[BackupType::Full]);
        fulls.reverse();
        if fulls.first().map(String::as_str) == Some(label) {
            let other_db = match (
                info.backups.get(label),
                fulls.get(1).and_then(|l| info.backups.get(l)),
            ) {
                (Some(this), Some(prior)) => this.db_id != prior.db_id,
                _ => true,
            };
            if other_db {
                return Err(Error::new(
                    ErrorKind::BackupSetInvalid,
                    format!(
                        "full backup {label} cannot be expired until another full backup has been created on this repo"
                    ),
                ));
            }
        }
        let latest = info.backups.keys().next_back().cloned();
        let expired = self.expire_backup(info, label)?;
        if let Some(latest) = latest
            && !info.backups.contains_key(&latest)
        {
            let key = self.repo.key;
            self.ctx.log.warn(&format!(
                "{}: expiring latest backup {latest} - the ability to perform point-in-time-recovery (PITR) may be affected\n\
                 HINT: non-default settings for 'repo{key}-retention-archive'/'repo{key}-retention-archive-type' (even in prior expires) can cause gaps in the WAL.",
                self.name
            ));
            if !self.dry_run
                && let Some(newest) = info.backups.keys().next_back()
            {
                self.link_latest(newest)?;
            }
        }
        self.log_expired("adhoc", &expired);
        Ok(())
    }

    /// pgBackRest `backupLinkLatest()`: `backup/<stanza>/latest` -> `<label>` where links exist.
    fn link_latest(&self, label: &str) -> Result<()> {
        let latest = layout::latest_link(self.stanza);
        self.storage.remove(&latest, true)?;
        let features = self.storage.features();
        if features.symlink {
            self.storage.link_create(label, &latest, LinkType::Soft)?;
        }
        if features.path_sync {
            self.storage.path_sync(&layout::backup_path(self.stanza))?;
        }
        Ok(())
    }

    /// Count-based full retention: the oldest fulls beyond `repo-retention-full`, with their dependents.
    fn expire_full(&self, info: &mut BackupInfo) -> Result<()> {
        let Some(keep) = self
            .retention
            .full
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
        else {
            return Ok(());
        };
        let fulls = retention::labels_of_type(info, &[BackupType::Full]);
        for label in fulls.iter().take(fulls.len().saturating_sub(keep)) {
            let expired = self.expire_backup(info, label)?;
            self.log_expired("full", &expired);
        }
        Ok(())
    }

    /// Diff retention: fulls and diffs count, only diffs (with their incrs) expire.
    fn expire_diff(&self, info: &mut BackupInfo) -> Result<()> {
        let Some(keep) = self
            .retention
            .diff
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
        else {
            return Ok(());
        };
        let list = retention::labels_of_type(info, &[BackupType::Full, BackupType::Diff]);
        for label in list.iter().take(list.len().saturating_sub(keep)) {
            if layout::backup_type_from_label(label) == Some(BackupType::Full) {
                continue;
            }
            let expired = self.expire_backup(info, label)?;
            self.log_expired("diff", &expired);
        }
        Ok(())
    }

    /// Time-based full retention: keep every full that stopped at or after `min` plus the newest older one (and
    /// everything newer); expire the rest. Without an explicit `repo-retention-archive` (type full), archive
    /// retention becomes the number of fulls kept.
    fn expire_time_based(
        &self,
        info: &mut BackupInfo,
        min: i64,
        archive_retention: &mut Option<i64>,
    ) -> Result<()> {
        let fulls = retention::labels_of_type(info, &[BackupType::Full]);
        let mut keep_label = None;
        for label in fulls.iter().rev() {
            keep_label = Some(label.clone());
            if info
                .backups
                .get(label)
                .is_some_and(|b| b.timestamp_stop < min)
            {
                break;
            }
        }
        let Some(keep_label) = keep_label else {
            return Ok(());
        };
        let mut expired_fulls = 0i64;
        while let Some(oldest) = info.backups.keys().next().cloned() {
            if oldest == keep_label {
                break;
            }
            let expired = self.expire_backup(info, &oldest)?;
            expired_fulls += 1;
            self.log_expired("time-based", &expired);
        }
        if self.retention.archive_type == BackupType::Full
            && self.retention.archive.is_none()
            && expired_fulls > 0
        {
            *archive_retention =
                Some(i64::try_from(fulls.len()).unwrap_or(i64::MAX) - expired_fulls);
        }
        Ok(())
    }

    /// Step 4: label directories not in backup.info.
    fn remove_expired_backups(&self, info: &BackupInfo, adhoc: Option<&str>) -> Result<()> {
        let mut on_disk = retention::backup_dirs(self.storage, self.stanza)?;
        on_disk.reverse();
        let mut skip = 0;
        if let (Some(adhoc), Some(newest)) = (adhoc, on_disk.first()) {
            let manifest = layout::manifest_path(self.stanza, newest);
            if !self.exists(&manifest)? && self.exists(&layout::copy_path(&manifest))? {
                if !newest.starts_with(prefix(adhoc, 16)) {
                    skip = 1;
                } else {
                    let resume: Manifest =
                        load_info(self.storage, &manifest, info.cipher_pass.as_deref())?;
                    if resume
                        .backup
                        .prior
                        .as_ref()
                        .is_some_and(|p| info.backups.contains_key(p))
                    {
                        skip = 1;
                    }
                }
            }
        }
        for label in on_disk.iter().skip(skip) {
            if info.backups.contains_key(label) {
                continue;
            }
            self.info(&format!("remove expired backup {label}"));
            if !self.dry_run {
                self.storage
                    .remove_path(&layout::backup_label_path(self.stanza, label), true)?;
                self.fault_once(FAULT_BACKUP, "expire-backup-removed");
            }
        }
        Ok(())
    }

    /// Step 6: `backup.history` manifests older than `repo-retention-history` days.
    fn remove_expired_history(&self, info: &BackupInfo) -> Result<()> {
        let Some(days) = self.retention.history else {
            return Ok(());
        };
        let min = chrono::Utc::now().timestamp() - days.saturating_mul(SEC_PER_DAY);
        let min_label = label_at(min);
        let min_year = prefix(&min_label, 4);
        let history = layout::history_path(self.stanza);
        let mut years: Vec<String> = list_names(self.storage, &history)?
            .into_iter()
            .filter(|y| y.len() == 4 && y.starts_with('2') && y.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        years.sort();
        for year in years {
            if year.as_str() < min_year {
                self.info(&format!("remove expired backup history path {year}"));
                if !self.dry_run {
                    self.storage
                        .remove_path(&format!("{history}/{year}"), true)?;
                }
            } else if year == min_year {
                let mut files: Vec<String> =
                    list_names(self.storage, &format!("{history}/{year}"))?
                        .into_iter()
                        .filter(|f| {
                            f.strip_suffix(layout::HISTORY_MANIFEST_EXT)
                                .is_some_and(layout::is_backup_label)
                        })
                        .collect();
                files.sort();
                for file in files.iter().rev() {
                    let label = file.split('.').next().unwrap_or(file);
                    if !info.backups.contains_key(label) && label < min_label.as_str() {
                        self.info(&format!("remove expired backup history manifest {file}"));
                        if !self.dry_run {
                            self.storage
                                .remove(&format!("{history}/{year}/{file}"), true)?;
                        }
                    }
                }
            } else {
                break;
            }
        }
        Ok(())
    }
}

/// The full-backup label a backup started at Unix time `secs` would get (local time, as pgBackRest's
/// `backupLabelFormat()`).
fn label_at(secs: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_opt(secs, 0).single() {
        Some(time) => time.format("%Y%m%d-%H%M%SF").to_string(),
        None => "00000000-000000F".to_string(),
    }
}

/// Names in `path` (empty when it does not exist).
fn list_names(storage: &dyn Storage, path: &str) -> Result<Vec<String>> {
    Ok(storage
        .list(path, InfoLevel::Exists)?
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.name)
        .collect())
}

#[cfg(test)]
mod tests;
