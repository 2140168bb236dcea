//! `backup` (pgBackRest `cmdBackup()` in `src/command/backup/backup.c`): full, differential and
//! incremental backups of a running (or, with `--no-online`, stopped) cluster into one
//! repository, in pgBackRest 2.45's repository format.
//!
//! Contract, in the order things happen:
//! - Refused early, before anything is written: a stop file, another backup (backup lock), a
//!   cluster other than the stanza's (`BackupMismatch`), a cluster that does not archive with
//!   pgkeep/pgbackrest when `archive-check` is on (`ArchiveDisabled` [087],
//!   `ArchiveCommandInvalid` [068]), another backup of the same cluster (advisory lock).
//! - diff/incr choose their prior from backup.info (diff: newest full; incr: newest backup of
//!   the current cluster); without one the backup becomes a full (warning). compress-type and
//!   checksum-page cannot change inside a backup set.
//! - Online: the backup is started on the primary (`start-fast` for an immediate checkpoint), the
//!   segment current before the start must reach the archive first, the manifest is built from
//!   PGDATA ([`pgkeep_repo::manifest::build`]), the copy start time is taken from the database
//!   clock after waiting out the current second.
//! - An unfinished newest backup is resumed when compatible ([`resume`]), else removed.
//! - `backup.manifest.copy` is written before the copy (with `resume`) and refreshed during it;
//!   the copy runs on `process-max` threads ([`process`]).
//! - After the stop, `backup_label` and `tablespace_map` are stored, every WAL segment from start
//!   to stop must be archived ([`complete::archive_check_copy`]), and only then is the backup
//!   made visible ([`complete::complete`]). A backup that fails never appears in backup.info.
//! - `backup-standby` (local standbys only): among `pg1..pgN` the primary and the first standby
//!   are found by `pg_is_in_recovery()` ([`pgdb::get`]; no standby is `DbConnect` [056]). The
//!   standby must be the configured cluster and have the primary's system id and version. The
//!   backup is started and stopped on the primary; before the copy the standby must replay and
//!   checkpoint past the start LSN ([`db::replay_wait`]); the copy reads relation and transaction
//!   status files from the standby and the rest, pg_control included, from the primary
//!   ([`process::standby_file`]); both clusters are pinged during the copy. The manifest records
//!   `option-backup-standby=true`. Offline, the option is ignored with a warning.
//! - During the copy the backup lock file records the percentage done (`info` shows it,
//!   [`lock::BackupPercent`]); a terminal gets a live progress line ([`crate::progress`]).
//! - Expire (`expire-auto`, on by default) is run by the caller after a successful backup, under
//!   the same lock (`backup_then_expire` in `main.rs`, as pgBackRest's `main()`).
//! - Not yet supported (refused with `FeatureNotSupported`): remote hosts, block incremental.

pub mod complete;
pub mod db;
pub mod job;
pub mod label;
pub mod process;
pub mod resume;

use std::time::{Duration, Instant};

use pgkeep_base::compress::CompressType;
use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_config::{Group, OptionId};
use pgkeep_pg::ControlInfo;
use pgkeep_pg::client::Client;
use pgkeep_pg::datadir::DataDir;
use pgkeep_repo::info::load_info;
use pgkeep_repo::layout::{self, BackupType};
use pgkeep_repo::manifest::build::{self as mbuild, BuildOptions, Note};
use pgkeep_repo::manifest::spool::{FileList, Results};
use pgkeep_repo::manifest::{
    LazyManifest, Manifest, ManifestBackup, ManifestBackupDb, ManifestDb, ManifestOptions,
};
use pgkeep_repo::{ArchiveInfo, BackupInfo};
use pgkeep_storage::posix::PosixStorage;
use pgkeep_storage::{InfoLevel, Storage};

use self::job::JobSettings;
use self::process::{Bundling, Plan, StandbySource, Workers};
use crate::commands::archive::{compress_settings, size_format};
use crate::commands::db as pgdb;
use crate::ctx::{Ctx, Repo};
use crate::lock;

/// How often the database is pinged during the copy.
const PING_INTERVAL: Duration = Duration::from_secs(30);

/// The options of one backup run, resolved.
#[derive(Debug, Clone)]
struct Options {
    backup_type: BackupType,
    compress: CompressType,
    level: i32,
    process_max: usize,
    bundle: Option<Bundling>,
    hardlink: bool,
    delta: bool,
    start_fast: bool,
    online: bool,
    force: bool,
    archive_check: bool,
    archive_copy: bool,
    archive_mode_check: bool,
    archive_timeout: Duration,
    backup_standby: bool,
    checksum_page: Option<bool>,
    exclude: Vec<String>,
    annotation: Vec<(String, String)>,
    resume: bool,
    buffer_size: u64,
    compress_level_network: u32,
    manifest_save_threshold: u64,
    db_timeout: Duration,
}

fn int_or(ctx: &Ctx, opt: OptionId, default: i64) -> i64 {
    ctx.cfg.int(opt).unwrap_or(default)
}

impl Options {
    fn from_ctx(ctx: &Ctx, repo_key: u32) -> Result<Options> {
        let cfg = &ctx.cfg;
        let type_name = cfg.str(OptionId::Type).unwrap_or("incr");
        let backup_type = BackupType::parse(type_name).ok_or_else(|| {
            Error::new(
                ErrorKind::OptionInvalidValue,
                format!("'{type_name}' is not allowed for 'type' option"),
            )
        })?;
        let (compress, level) = compress_settings(ctx)?;
        let bundle = cfg
            .bool_idx(OptionId::RepoBundle, repo_key)
            .then(|| Bundling {
                size: cfg
                    .int_idx(OptionId::RepoBundleSize, repo_key)
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(20 * 1024 * 1024),
                limit: cfg
                    .int_idx(OptionId::RepoBundleLimit, repo_key)
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(2 * 1024 * 1024),
            });
        Ok(Options {
            backup_type,
            compress,
            level,
            process_max: usize::try_from(int_or(ctx, OptionId::ProcessMax, 1)).unwrap_or(1),
            bundle,
            hardlink: cfg.bool_idx(OptionId::RepoHardlink, repo_key),
            delta: cfg.bool(OptionId::Delta),
            start_fast: cfg.bool(OptionId::StartFast),
            online: cfg.bool(OptionId::Online),
            force: cfg.bool(OptionId::Force),
            archive_check: cfg.bool(OptionId::ArchiveCheck),
            archive_copy: cfg.bool(OptionId::ArchiveCopy),
            archive_mode_check: cfg.bool(OptionId::ArchiveModeCheck),
            archive_timeout: cfg
                .time(OptionId::ArchiveTimeout)
                .unwrap_or(Duration::from_secs(60)),
            backup_standby: cfg.bool(OptionId::BackupStandby),
            checksum_page: cfg
                .is_set(OptionId::ChecksumPage)
                .then(|| cfg.bool(OptionId::ChecksumPage)),
            exclude: cfg.list(OptionId::Exclude).to_vec(),
            annotation: cfg.hash(OptionId::Annotation),
            resume: cfg.bool(OptionId::Resume),
            buffer_size: u64::try_from(int_or(ctx, OptionId::BufferSize, 1024 * 1024))
                .unwrap_or(1024 * 1024),
            compress_level_network: u32::try_from(int_or(ctx, OptionId::CompressLevelNetwork, 3))
                .unwrap_or(3),
            manifest_save_threshold: u64::try_from(int_or(
                ctx,
                OptionId::ManifestSaveThreshold,
                1024 * 1024 * 1024,
            ))
            .unwrap_or(1024 * 1024 * 1024),
            db_timeout: cfg
                .time(OptionId::DbTimeout)
                .unwrap_or(Duration::from_secs(1800)),
        })
    }
}

/// The primary being backed up.
struct Db {
    key: u32,
    client: Option<Client>,
    control: ControlInfo,
    pg_path: String,
    last_ping: Instant,
    /// With `backup-standby`: the standby most files are copied from.
    standby: Option<StandbyDb>,
}

/// The standby of a backup from a standby.
struct StandbyDb {
    key: u32,
    client: Client,
    /// Its pg_control when connected.
    control: ControlInfo,
    pg_path: String,
}

impl Db {
    /// Database clock when online, local clock otherwise.
    fn time(&mut self, wait_remainder: bool) -> Result<i64> {
        match self.client.as_mut() {
            Some(client) => db::time(client, wait_remainder),
            None => Ok(chrono::Utc::now().timestamp()),
        }
    }

    /// Make sure the primary is still a primary and the standby still a standby (pgBackRest
    /// `dbPing()`).
    fn ping(&mut self, force: bool) -> Result<()> {
        if !force && self.last_ping.elapsed() < PING_INTERVAL {
            return Ok(());
        }
        if let Some(client) = self.client.as_mut()
            && client.is_in_recovery()?
        {
            return Err(Error::new(
                ErrorKind::Assert,
                "primary has switched to recovery",
            ));
        }
        if let Some(standby) = self.standby.as_mut()
            && !standby.client.is_in_recovery()?
        {
            return Err(
                Error::new(ErrorKind::DbMismatch, "standby is no longer in recovery")
                    .with_hint("was the standby promoted during the backup?"),
            );
        }
        self.last_ping = Instant::now();
        Ok(())
    }
}

/// `backup`.
///
/// # Errors
/// See the module contract.
pub fn run(ctx: &Ctx) -> Result<()> {
    let stanza = ctx.stanza()?;
    lock::stop_test(ctx.lock_path(), Some(stanza))?;
    let repo_key = match ctx.cfg.int(OptionId::Repo) {
        Some(key) => u32::try_from(key).unwrap_or(1),
        None => {
            let key = ctx.cfg.default_index(Group::Repo);
            if ctx.cfg.indexes(Group::Repo).len() > 1 {
                ctx.log.info(&format!(
                    "repo option not specified, defaulting to repo{key}"
                ));
            }
            key
        }
    };
    let mut opts = Options::from_ctx(ctx, repo_key)?;
    refuse_unsupported(ctx)?;
    let _lock = lock::acquire(
        ctx.lock_path(),
        stanza,
        lock::LockType::Backup,
        &ctx.exec_id,
    )?;
    let repo = ctx.repo(repo_key)?;
    let storage = repo.storage.as_ref();
    let repo_pass = repo.cipher_pass.as_deref();
    let mut backup_info: BackupInfo =
        load_info(storage, &layout::backup_info_path(stanza), repo_pass)?;
    complete::reconstruct(storage, stanza, &mut backup_info, &ctx.log)?;
    let backup_pass = backup_info.cipher_pass.clone();

    if !opts.online && opts.backup_standby {
        ctx.log.warn("option backup-standby is enabled but backup is offline - backups will be performed from the primary");
        opts.backup_standby = false;
    }
    let mut db = init_db(ctx, &opts, &backup_info)?;
    settle_checksum_page(ctx, &mut opts, &db.control);
    let archive = if opts.archive_check {
        let info: ArchiveInfo = load_info(storage, &layout::archive_info_path(stanza), repo_pass)?;
        Some(info)
    } else {
        None
    };
    let archive_id = archive.as_ref().map(ArchiveInfo::current_archive_id);

    let timestamp_start = db.time(false)?;
    let prior = prior_manifest(ctx, &repo, stanza, &backup_info, &mut opts)?;
    let started = start(ctx, &mut db, &opts, storage, stanza, archive_id.as_deref())?;

    // the manifest
    let current = *backup_info.current();
    let datadir = DataDir::new(current.version, current.catalog_version)?;
    let mut manifest = new_manifest(&opts, &current, timestamp_start);
    let tablespaces = match db.client.as_mut() {
        Some(client) => Some(client.tablespaces()?),
        None => None,
    };
    let databases = match db.client.as_mut() {
        Some(client) => Some(client.databases()?),
        None => None,
    };
    let pg_storage = PosixStorage::new("/");
    let checksum_page = manifest.options.checksum_page.unwrap_or(false);
    let (notes, files) = mbuild::build(
        &pg_storage,
        &mut manifest,
        &BuildOptions {
            pg_path: &db.pg_path,
            datadir: &datadir,
            online: opts.online,
            checksum_page,
            exclude: &opts.exclude,
            tablespaces: tablespaces.as_deref(),
        },
    )?;
    for note in notes {
        match note {
            Note::Info(text) => ctx.log.info(&text),
            Note::Warn(text) => ctx.log.warn(&text),
        }
    }
    ctx.log.debug(&format!(
        "manifest built: {} files, {} paths, {} links",
        files.len(),
        manifest.paths.len(),
        manifest.links.len()
    ));
    let copy_start = db.time(true)?;
    if let Some(warning) = mbuild::validate_build(&mut manifest, &files, opts.delta, copy_start)? {
        ctx.log.warn(&warning);
    }
    // the prior manifest is needed only here, and dropped after
    let mut files = match prior {
        Some(prior) => {
            let (plan, incr) = mbuild::build_incr(
                &mut manifest,
                &files,
                &prior,
                opts.backup_type,
                started.as_ref().map(|s| s.segment.as_str()),
                opts.bundle.is_some(),
            )?;
            // the walk's list and the prior are not needed any more: free their temp files
            drop(files);
            drop(prior);
            for warning in &plan.warnings {
                ctx.log.warn(warning);
            }
            incr
        }
        None => {
            manifest.cipher_pass = repo
                .cipher_pass
                .as_ref()
                .map(|_| pgkeep_base::crypto::generate_pass());
            files
        }
    };
    let delta = manifest.options.delta.unwrap_or(false);

    // label, or the resumed backup's
    match resume::find(
        storage,
        stanza,
        &manifest,
        opts.resume,
        backup_pass.as_deref(),
        &ctx.log,
    )? {
        Some(found) => {
            mbuild::set_label(&mut manifest, &found.manifest.backup.label);
            ctx.log.warn(&format!(
                "resumable backup {} of same type exists -- invalid files will be removed then the backup will resume",
                manifest.backup.label
            ));
            if manifest.backup.backup_type == BackupType::Full {
                manifest.cipher_pass.clone_from(&found.manifest.cipher_pass);
            }
            files = resume::clean(storage, stanza, &manifest, &files, &found, delta, &ctx.log)?;
        }
        None => {
            let (label, bumped) = label::create(
                storage,
                stanza,
                manifest.backup.backup_type,
                manifest.backup.prior.as_deref(),
                timestamp_start,
            )?;
            if bumped {
                let now = chrono::Utc::now().timestamp_subsec_millis();
                std::thread::sleep(Duration::from_millis(u64::from(1000 - now.min(999))));
            }
            mbuild::set_label(&mut manifest, &label);
        }
    }
    if opts.resume {
        let files = complete::Files {
            list: &files,
            results: None,
        };
        complete::save_copy(storage, stanza, &manifest, files, backup_pass.as_deref())?;
    }

    let settings = JobSettings {
        compress: opts.compress,
        level: opts.level,
        cipher_pass: manifest.cipher_pass.clone(),
        // files stored on a file system the final syncfs does not cover are fsynced one by one
        sync_each: !storage.sync_all_covers(&layout::backup_path(stanza)),
    };
    let results = copy_files(
        ctx,
        &repo,
        stanza,
        &manifest,
        &files,
        &mut db,
        &datadir,
        &settings,
        &opts,
        delta,
        backup_pass.as_deref(),
    )?;
    let files = complete::Files {
        list: &files,
        results: Some(&results),
    };
    db.ping(true)?;
    // the standby is not needed any more
    if let Some(standby) = db.standby.take() {
        let _ = standby.client.close();
    }

    // stop and complete the manifest
    let timestamp_stop;
    if let Some(client) = db.client.as_mut() {
        ctx.log
            .info("execute non-exclusive backup stop and wait for all WAL segments to archive");
        let stopped = db::stop(client)?;
        timestamp_stop = db.time(false)?;
        ctx.log.info(&format!(
            "backup stop archive = {}, lsn = {}",
            stopped.segment, stopped.lsn
        ));
        if let Some(text) = &stopped.backup_label {
            complete::put_file(
                storage,
                stanza,
                &mut manifest,
                &settings,
                pgkeep_pg::datadir::BACKUP_LABEL,
                timestamp_stop,
                text,
            )?;
            ctx.log
                .detail("wrote 'backup_label' file returned from backup stop function");
        }
        if let Some(text) = &stopped.tablespace_map {
            complete::put_file(
                storage,
                stanza,
                &mut manifest,
                &settings,
                pgkeep_pg::datadir::TABLESPACE_MAP,
                timestamp_stop,
                text,
            )?;
            ctx.log
                .detail("wrote 'tablespace_map' file returned from backup stop function");
        }
        let b = &mut manifest.backup;
        if let Some(s) = &started {
            b.lsn_start = Some(s.lsn.clone());
            b.archive_start = Some(s.segment.clone());
        }
        b.lsn_stop = Some(stopped.lsn);
        b.archive_stop = Some(stopped.segment);
    } else {
        timestamp_stop = db.time(false)?;
    }
    manifest.backup.timestamp_stop = timestamp_stop;
    finish_manifest(&mut manifest, &opts, &current, databases)?;
    if let Some(client) = db.client.take() {
        let _ = client.close();
    }

    if let (Some(archive), Some(archive_id)) = (&archive, &archive_id)
        && opts.online
    {
        if opts.resume {
            complete::save_copy(storage, stanza, &manifest, files, backup_pass.as_deref())?;
        }
        complete::archive_check_copy(
            storage,
            stanza,
            &mut manifest,
            &complete::ArchiveCheck {
                archive_id,
                archive_pass: archive.cipher_pass.as_deref(),
                timeline: db.control.timeline,
                wal_seg_size: db.control.wal_seg_size()?,
                timeout: opts.archive_timeout,
                copy: opts.archive_copy,
                settings: &settings,
            },
            &ctx.log,
        )?;
    }

    ctx.log
        .info(&format!("new backup label = {}", manifest.backup.label));
    // One flush of the whole backup instead of an fsync per file: the per-file fsync latency,
    // not reading or compressing, dominates the copy of a cluster with many small files. It runs
    // before the manifest commits the backup, so a visible backup is as durable as with per-file
    // syncs; a crash before it leaves a resumable backup whose files are re-verified by checksum.
    if !settings.sync_each {
        storage.sync_all(&layout::backup_label_path(stanza, &manifest.backup.label))?;
    }
    let file_total = complete::complete(
        storage,
        stanza,
        &manifest,
        files,
        &mut backup_info,
        backup_pass.as_deref(),
        repo_pass,
        &ctx.log,
    )?;
    let size_delta = backup_info
        .backups
        .get(&manifest.backup.label)
        .map_or(0, |e| e.size_delta);
    ctx.log.info(&format!(
        "{} backup size = {}, file total = {}",
        manifest.backup.backup_type.as_str(),
        size_format(size_delta),
        file_total
    ));
    Ok(())
}

/// Features pgkeep does not have yet are refused up front, before anything is written.
fn refuse_unsupported(ctx: &Ctx) -> Result<()> {
    let unsupported = |what: &str| {
        Err(Error::new(
            ErrorKind::FeatureNotSupported,
            format!("{what} is not supported by pgkeep backup yet"),
        ))
    };
    if ctx
        .pg_keys()
        .iter()
        .any(|k| ctx.cfg.str_idx(OptionId::PgHost, *k).is_some())
    {
        return unsupported("a remote pg host (pgN-host)");
    }
    Ok(())
}

/// pgBackRest `backupInit()`: connect (online: the primary, and the standby with
/// `backup-standby`), read pg_control, check it is the stanza's cluster.
fn init_db(ctx: &Ctx, opts: &Options, backup_info: &BackupInfo) -> Result<Db> {
    let (key, client, standby) = if opts.online {
        let found = pgdb::get(ctx, !opts.backup_standby, true, opts.backup_standby)?;
        let primary = found.primary.ok_or_else(|| {
            Error::new(
                ErrorKind::DbConnect,
                "unable to find primary cluster - cannot proceed",
            )
        })?;
        (primary.key, Some(primary.client), found.standby)
    } else {
        (ctx.pg_keys().first().copied().unwrap_or(1), None, None)
    };
    let control = pgdb::read_control(ctx, key)?;
    let current = backup_info.current();
    if control.version != current.version || control.system_id != current.system_id {
        return Err(Error::new(
            ErrorKind::BackupMismatch,
            format!(
                "PostgreSQL version {}, system-id {} do not match stanza version {}, system-id {}",
                control.version, control.system_id, current.version, current.system_id
            ),
        )
        .with_hint("is this the correct stanza?"));
    }
    let standby = match standby {
        Some(found) => Some(init_standby(ctx, found, &control)?),
        None => None,
    };
    Ok(Db {
        key,
        client,
        control,
        pg_path: ctx.pg_path(key)?.trim_end_matches('/').to_string(),
        last_ping: Instant::now(),
        standby,
    })
}

/// The standby of a backup from a standby: its `pgN-path` must be the cluster behind its
/// connection, and that cluster must be a copy of the primary (same system id and version).
/// pgBackRest 2.45 checks neither before copying; reading the files of an unrelated cluster
/// would silently corrupt the backup.
fn init_standby(ctx: &Ctx, found: pgdb::Primary, primary: &ControlInfo) -> Result<StandbyDb> {
    let pgdb::Primary { key, mut client } = found;
    let control = pgdb::read_control(ctx, key)?;
    let pg_path = ctx.pg_path(key)?.trim_end_matches('/').to_string();
    pgdb::check_db_config(&mut client, control.version, key, &pg_path, false, false)?;
    if control.version != primary.version || control.system_id != primary.system_id {
        return Err(Error::new(
            ErrorKind::DbMismatch,
            format!(
                "standby version {}, system-id {} do not match primary version {}, system-id {}",
                control.version, control.system_id, primary.version, primary.system_id
            ),
        )
        .with_hint(format!(
            "is pg{key} a standby of this primary? check the pg{key}-path and pg{key}-port settings."
        )));
    }
    Ok(StandbyDb {
        key,
        client,
        control,
        pg_path,
    })
}

/// `checksum-page` defaults to what pg_control says when online (off when offline); asking for it
/// on a cluster without data checksums is a warning and turns it off.
fn settle_checksum_page(ctx: &Ctx, opts: &mut Options, control: &ControlInfo) {
    match opts.checksum_page {
        None => opts.checksum_page = Some(opts.online && control.page_checksums()),
        Some(true) if opts.online && !control.page_checksums() => {
            ctx.log.warn("checksum-page option set to true but checksums are not enabled on the cluster, resetting to false");
            opts.checksum_page = Some(false);
        }
        Some(_) => {}
    }
}

/// pgBackRest `backupBuildIncrPrior()`: the prior manifest of a diff/incr, adjusting options that
/// cannot change inside a backup set; a diff/incr without a prior becomes a full.
fn prior_manifest<'r>(
    ctx: &Ctx,
    repo: &'r Repo,
    stanza: &str,
    backup_info: &BackupInfo,
    opts: &mut Options,
) -> Result<Option<LazyManifest<'r>>> {
    if opts.backup_type == BackupType::Full {
        return Ok(None);
    }
    let current_id = backup_info.current().id;
    let prior_label = backup_info
        .backups
        .iter()
        .rev()
        .find(|(_, e)| {
            e.db_id == current_id
                && (opts.backup_type != BackupType::Diff || e.backup_type == BackupType::Full)
        })
        .map(|(label, _)| label.clone());
    let Some(prior_label) = prior_label else {
        ctx.log.warn(&format!(
            "no prior backup exists, {} backup has been changed to full",
            opts.backup_type.as_str()
        ));
        opts.backup_type = BackupType::Full;
        return Ok(None);
    };
    // its file list stays in the repository until build_incr reads it
    let lazy = LazyManifest::load(
        repo.storage.as_ref(),
        &layout::manifest_path(stanza, &prior_label),
        backup_info.cipher_pass.as_deref(),
    )?;
    let prior = &lazy.manifest;
    ctx.log.info(&format!(
        "last backup label = {}, version = {}",
        prior.backup.label, prior.backrest_version
    ));
    if prior.options.compress_type != opts.compress {
        ctx.log.warn(&format!(
            "{} backup cannot alter compress-type option to '{}', reset to value in {prior_label}",
            opts.backup_type.as_str(),
            opts.compress.name()
        ));
        opts.compress = prior.options.compress_type;
        opts.level = prior
            .options
            .compress_level
            .and_then(|l| i32::try_from(l).ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Format,
                    "compress-level missing in prior manifest",
                )
            })?;
    }
    match prior.options.checksum_page {
        None => opts.checksum_page = Some(false),
        Some(before) => {
            if let Some(asked) = opts.checksum_page
                && asked != before
            {
                ctx.log.warn(&format!(
                    "{} backup cannot alter 'checksum-page' option to '{asked}', reset to '{before}' from {}",
                    opts.backup_type.as_str(),
                    prior.backup.label
                ));
            }
            opts.checksum_page = Some(before);
        }
    }
    Ok(Some(lazy))
}

/// pgBackRest `backupStart()`.
fn start(
    ctx: &Ctx,
    db: &mut Db,
    opts: &Options,
    storage: &dyn Storage,
    stanza: &str,
    archive_id: Option<&str>,
) -> Result<Option<db::Started>> {
    let Some(client) = db.client.as_mut() else {
        let pid = format!("{}/{}", db.pg_path, pgkeep_pg::datadir::POSTMASTER_PID);
        if std::path::Path::new(&pid).exists() {
            if opts.force {
                ctx.log.warn("--no-online passed and postmaster.pid exists but --force was passed so backup will continue though it looks like PostgreSQL is running and the backup will probably not be consistent");
            } else {
                return Err(Error::new(
                    ErrorKind::PgRunning,
                    "--no-online passed but postmaster.pid exists - looks like PostgreSQL is running. Shut down PostgreSQL and try again, or use --force.",
                ));
            }
        }
        return Ok(None);
    };
    pgdb::check_db_config(
        client,
        db.control.version,
        db.key,
        &db.pg_path,
        opts.archive_check,
        opts.archive_mode_check,
    )?;
    ctx.log.info(&format!(
        "execute non-exclusive backup start: backup begins after the {} checkpoint completes",
        if opts.start_fast {
            "requested immediate"
        } else {
            "next regular"
        }
    ));
    db::advisory_lock(client)?;
    if !opts.start_fast
        && let Some(checkpoint) = db::checkpoint_timeout(client)?
        && opts.db_timeout <= checkpoint
    {
        ctx.log.warn(&format!(
            "start-fast is disabled and db-timeout ({}s) is smaller than the PostgreSQL checkpoint_timeout ({}s) - timeout may occur before the backup starts",
            opts.db_timeout.as_secs(),
            checkpoint.as_secs()
        ));
    }
    let key = db.key;
    let read_control = || pgdb::read_control(ctx, key);
    let started = db::start(client, opts.start_fast, opts.archive_check, &read_control)?;
    db.control = read_control()?;
    ctx.log.info(&format!(
        "backup start archive = {}, lsn = {}",
        started.segment, started.lsn
    ));
    if let Some(standby) = db.standby.as_mut() {
        ctx.log.info(&format!(
            "wait for replay on the standby to reach {}",
            started.lsn
        ));
        let standby_key = standby.key;
        db::replay_wait(
            &mut standby.client,
            standby.control.checkpoint,
            &started.lsn,
            db.control.timeline,
            opts.archive_timeout,
            &|| pgdb::read_control(ctx, standby_key),
        )?;
        ctx.log
            .info(&format!("replay on the standby reached {}", started.lsn));
    }
    if let (Some(check), Some(archive_id)) = (&started.segment_check, archive_id) {
        ctx.log.info(&format!(
            "check archive for {}segment {check}",
            if *check == started.segment {
                ""
            } else {
                "prior "
            }
        ));
        crate::commands::archive::wait_for_segment(
            storage,
            stanza,
            archive_id,
            check,
            opts.archive_timeout,
        )?;
    }
    Ok(Some(started))
}

/// A manifest with the facts known before the build (pgBackRest `manifestNewBuild()` header).
fn new_manifest(
    opts: &Options,
    current: &pgkeep_repo::info::BackupDbInfo,
    timestamp_start: i64,
) -> Manifest {
    Manifest::new(
        ManifestBackup {
            label: String::new(),
            prior: None,
            backup_type: BackupType::Full,
            reference: Vec::new(),
            archive_start: None,
            archive_stop: None,
            lsn_start: None,
            lsn_stop: None,
            timestamp_copy_start: 0,
            timestamp_start,
            timestamp_stop: 0,
            bundle: opts.bundle.is_some(),
            bundle_raw: false,
            block_incr: false,
        },
        ManifestBackupDb {
            id: current.id,
            system_id: current.system_id,
            catalog_version: current.catalog_version,
            control_version: current.control_version,
            version: current.version,
        },
        ManifestOptions {
            archive_check: opts.archive_check,
            archive_copy: opts.archive_copy,
            backup_standby: Some(opts.backup_standby),
            buffer_size: Some(opts.buffer_size),
            checksum_page: Some(opts.checksum_page.unwrap_or(false)),
            compress_type: opts.compress,
            compress_level: u32::try_from(opts.level).ok(),
            compress_level_network: Some(opts.compress_level_network),
            delta: Some(opts.delta),
            hardlink: opts.hardlink,
            online: opts.online,
            process_max: u32::try_from(opts.process_max).ok(),
        },
    )
}

/// pgBackRest `manifestBuildComplete()`: cluster id, databases, options and annotations.
fn finish_manifest(
    manifest: &mut Manifest,
    opts: &Options,
    current: &pgkeep_repo::info::BackupDbInfo,
    databases: Option<Vec<pgkeep_pg::client::DatabaseRow>>,
) -> Result<()> {
    manifest.db.id = current.id;
    manifest.db.system_id = current.system_id;
    for (name, id, last_system_id) in databases.unwrap_or_default() {
        manifest.databases.insert(
            name,
            ManifestDb {
                id,
                last_system_id,
                extra: std::collections::BTreeMap::new(),
            },
        );
    }
    manifest.annotation = complete::annotation(&opts.annotation);
    let o = &mut manifest.options;
    o.archive_check = opts.archive_check;
    o.archive_copy = opts.archive_copy;
    o.buffer_size = Some(opts.buffer_size);
    o.compress_level = Some(u32::try_from(opts.level).map_err(|_| {
        Error::new(
            ErrorKind::OptionInvalidValue,
            format!("compress-level {} cannot be recorded", opts.level),
        )
    })?);
    o.compress_level_network = Some(opts.compress_level_network);
    o.hardlink = opts.hardlink;
    o.process_max = u32::try_from(opts.process_max).ok();
    o.backup_standby = Some(opts.backup_standby);
    Ok(())
}

/// pgBackRest `backupProcess()`: paths and tablespace links of a full backup, the parallel copy,
/// references or hard links, and the path syncs. Returns what the copy did to each file.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site; the pieces come from different stages of run()"
)]
fn copy_files(
    ctx: &Ctx,
    repo: &Repo,
    stanza: &str,
    manifest: &Manifest,
    files: &FileList,
    db: &mut Db,
    datadir: &DataDir,
    settings: &JobSettings,
    opts: &Options,
    delta: bool,
    backup_pass: Option<&str>,
) -> Result<Results> {
    let storage = repo.storage.as_ref();
    let features = storage.features();
    let label = manifest.backup.label.clone();
    let backup_path = layout::backup_label_path(stanza, &label);
    let hardlink = opts.hardlink && features.hardlink;
    let full_tree =
        (manifest.backup.backup_type == BackupType::Full && opts.bundle.is_none()) || hardlink;
    if full_tree {
        if features.path {
            for path in manifest.paths.keys() {
                storage.path_create(&format!("{backup_path}/{path}"), None)?;
            }
        }
        if features.symlink {
            for target in manifest.targets.values() {
                if let Some(oid) = target.tablespace_id {
                    let link = format!("{backup_path}/pg_data/pg_tblspc/{oid}");
                    if storage.info(&link, InfoLevel::Exists, false)?.is_none() {
                        storage.link_create(
                            &format!("../../pg_tblspc/{oid}"),
                            &link,
                            pgkeep_storage::LinkType::Soft,
                        )?;
                    }
                }
            }
        }
    }

    let xact_path = manifest.db.version.require_info()?.xact_path;
    let plan = Plan {
        label: &label,
        ext: manifest.options.compress_type.ext(),
        stanza,
        pg_path: &db.pg_path,
        datadir,
        bundle: opts.bundle,
        delta,
        standby: db.standby.as_ref().map(|s| StandbySource {
            pg_path: &s.pg_path,
            xact_path,
        }),
    };
    if opts.bundle.is_some() && ctx.log.enabled(crate::log::Level::Detail) {
        files.for_each(|_, entry| {
            if entry.file.size == 0 {
                ctx.log.detail(&format!(
                    "store zero-length file {}",
                    process::pg_file(&db.pg_path, &entry.name)
                ));
            }
            Ok(())
        })?;
    }
    let jobs = process::jobs(files, &plan)?;
    if !jobs.has_pg_control() && opts.online {
        return Err(Error::new(
            ErrorKind::FileMissing,
            "pg_control must be present in all online backups",
        )
        .with_hint("is something wrong with the clock or filesystem timestamps?"));
    }
    if jobs.is_empty() {
        return Err(Error::new(
            ErrorKind::FileMissing,
            "no files have changed since the last backup - this seems unlikely",
        ));
    }
    let total = jobs.total_size();
    let save_every = (total / 100).max(opts.manifest_save_threshold);
    let mut saved_at = 0u64;
    let pg_storage = PosixStorage::new("/");
    let workers = Workers {
        process_max: opts.process_max,
        settings,
        pg: &pg_storage,
        repo: storage,
        log: &ctx.log,
        prefetch: true,
    };
    let resume = opts.resume;
    // `info` shows the percentage recorded in the backup lock file while the copy runs
    let mut percent = lock::BackupPercent::start(ctx.lock_path(), stanza, &ctx.exec_id)?;
    let mut tick = |results: &Results, done: u64| -> Result<()> {
        percent.update(done, total)?;
        db.ping(false)?;
        if resume && done.saturating_sub(saved_at) >= save_every {
            let files = complete::Files {
                list: files,
                results: Some(results),
            };
            complete::save_copy(storage, stanza, manifest, files, backup_pass)?;
            saved_at = done;
        }
        Ok(())
    };
    let mut results = Results::new()?;
    process::run(&jobs, &workers, &mut results, &mut tick)?;
    drop(jobs);

    let ext = manifest.options.compress_type.ext();
    if hardlink || ctx.log.enabled(crate::log::Level::Detail) {
        let copied = complete::Files {
            list: files,
            results: Some(&results),
        };
        copied.each(manifest, &mut |name, file| {
            let Some(reference) = &file.reference else {
                return Ok(());
            };
            if hardlink {
                ctx.log.detail(&format!("hardlink {name} to {reference}"));
                storage.link_create(
                    &layout::backup_file_path(stanza, reference, name, ext),
                    &layout::backup_file_path(stanza, &label, name, ext),
                    pgkeep_storage::LinkType::Hard,
                )?;
            } else {
                ctx.log.detail(&format!("reference {name} to {reference}"));
            }
            Ok(())
        })?;
    }
    // with one flush of the file system at the end (see `flush`) directories need no sync here
    if features.path_sync && settings.sync_each {
        for path in manifest.paths.keys() {
            let full = format!("{backup_path}/{path}");
            if full_tree || storage.info(&full, InfoLevel::Exists, true)?.is_some() {
                storage.path_sync(&full)?;
            }
        }
    }
    Ok(results)
}
