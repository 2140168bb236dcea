//! `restore`: rebuild a data directory from a backup (pgBackRest `src/command/restore/`).
//!
//! Contract (the order is the safety argument):
//! 1. Everything that can be refused is refused before the file system is touched: options and
//!    recovery target ([`recovery::validate_target`]), a running cluster (`postmaster.pid`, 38), the
//!    backup set ([`select`]), the manifest (label, checksums, version, block incremental), the
//!    remapping ([`remap`]), the selective restore ([`selective`]), the recovery settings, and the
//!    target directories ([`clean::Clean::check`]: owner, permissions, empty unless delta).
//! 2. Then the stanza's archive spool directory is removed, `global/pg_control` is removed, the
//!    targets are cleaned and built ([`clean`]), and an unencrypted copy of the manifest is saved
//!    as `<pg1-path>/backup.manifest` (so an interrupted delta restore can be restarted).
//! 3. Files are restored by `process-max` worker threads, largest first ([`job`]), each verified
//!    against its manifest SHA-1 as it is written; small files are read ahead of the workers.
//!    Once the last job is done, the file system of every target directory is flushed
//!    (`syncfs` through a descriptor opened before the first file was written, so a write-back
//!    error anywhere since is reported): one call per file system instead of an fsync per file,
//!    and no list of written files is kept. A file written on any other file system (a volume
//!    mounted below a target, a file bind-mounted over a restored one) or on one whose `syncfs`
//!    does not report write-back errors (Linux before 5.8, FUSE) is fsynced by its worker as it
//!    is closed. `global/pg_control` goes to a temp name. The first failure stops the workers
//!    and is the command's error.
//! 4. Recovery settings are written ([`recovery`]), `backup.manifest` removed, every directory
//!    synced, and only then is `pg_control` renamed into place: an interrupted restore can never
//!    be started by PostgreSQL.
//! - As root the manifest's owners are applied; otherwise everything belongs to the running user
//!   ([`owner`]).

pub mod clean;
pub mod job;
pub mod owner;
pub mod recovery;
pub mod remap;
pub mod select;
pub mod selective;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_config::{CommandId, CommandRole, Config, Group, OptionId, Source};
use pgkeep_pg::version::RecoveryStyle;
use pgkeep_repo::backup_file::{Expected, StoredFormat, StoredLocation};
use pgkeep_repo::info::{BackupInfo, load_info};
use pgkeep_repo::layout;
use pgkeep_repo::manifest::{LazyManifest, Manifest, TARGET_PGDATA};
use pgkeep_storage::posix::PosixStorage;
use pgkeep_storage::{Storage, WriteOptions};

use crate::ctx::{Ctx, Repo};
use crate::log::Level;
use job::{Job, JobFile, JobSettings, Outcome};
use recovery::RecoveryType;
use select::{Answer, Request};

/// Manifest copy kept in the data directory while restoring.
const MANIFEST_FILE: &str = "backup.manifest";
/// Where `pg_control` is written until everything else is done.
const PG_CONTROL: &str = "global/pg_control";
const PG_CONTROL_TEMP: &str = "global/pg_control.pgbackrest.tmp";
/// How many jobs ahead of the workers small files are asked to be read.
const PREFETCH_AHEAD: usize = 64;
/// Files up to this size are read ahead.
const PREFETCH_SIZE_MAX: u64 = 1024 * 1024;

/// The restore's options, read once.
struct Options {
    pg_path: String,
    delta: bool,
    force: bool,
    ty: RecoveryType,
    type_given: bool,
    set: Option<String>,
    target: Option<String>,
    process_max: usize,
    maps: remap::Maps,
    db_include: Vec<String>,
    db_exclude: Vec<String>,
    recovery: recovery::Request,
}

impl Options {
    fn read(ctx: &Ctx) -> Result<Options> {
        let cfg = &ctx.cfg;
        let pg_key = cfg.default_index(Group::Pg);
        let pg_path = ctx.pg_path(pg_key)?.trim_end_matches('/').to_string();
        let type_text = cfg.str(OptionId::Type).unwrap_or("default");
        let ty = RecoveryType::parse(type_text).ok_or_else(|| {
            Error::new(
                ErrorKind::OptionInvalidValue,
                format!("'{type_text}' is not allowed for 'type' option"),
            )
        })?;
        // `latest` (the default) means: choose by type and target
        let set = cfg
            .str(OptionId::Set)
            .filter(|s| *s != "latest")
            .map(str::to_string);
        let target = cfg.str(OptionId::Target).map(str::to_string);
        let recovery = recovery::Request {
            ty,
            target: target.clone(),
            target_action: cfg.str(OptionId::TargetAction).map(str::to_string),
            target_exclusive: cfg.bool(OptionId::TargetExclusive),
            target_timeline: cfg.str(OptionId::TargetTimeline).map(str::to_string),
            options: cfg.hash(OptionId::RecoveryOption),
            archive_mode_off: cfg.str(OptionId::ArchiveMode) == Some("off"),
            restore_command: restore_command(cfg),
        };
        if ty.has_target() && target.is_none() {
            return Err(Error::new(
                ErrorKind::OptionRequired,
                format!(
                    "restore command requires option: target\nHINT: this option is required when option 'type' is '{}'.",
                    ty.name()
                ),
            ));
        }
        Ok(Options {
            pg_path,
            delta: cfg.bool(OptionId::Delta),
            force: cfg.bool(OptionId::Force),
            ty,
            type_given: cfg.source(OptionId::Type, None) != Source::Default,
            set,
            target,
            process_max: usize::try_from(cfg.int(OptionId::ProcessMax).unwrap_or(1))
                .unwrap_or(1)
                .max(1),
            maps: remap::Maps {
                tablespace: cfg.hash(OptionId::TablespaceMap),
                tablespace_all: cfg.str(OptionId::TablespaceMapAll).map(str::to_string),
                link: cfg.hash(OptionId::LinkMap),
                link_all: cfg.bool(OptionId::LinkAll),
            },
            db_include: cfg.list(OptionId::DbInclude).to_vec(),
            db_exclude: cfg.list(OptionId::DbExclude).to_vec(),
            recovery,
        })
    }
}

/// Options pgBackRest never passes from restore to archive-get.
const NOT_PASSED: &[OptionId] = &[
    OptionId::ExecId,
    OptionId::JobRetry,
    OptionId::JobRetryInterval,
    OptionId::LogLevelConsole,
    OptionId::LogLevelFile,
    OptionId::LogLevelStderr,
    OptionId::LogSubprocess,
    OptionId::LogTimestamp,
    OptionId::ProcessMax,
    OptionId::Cmd,
    OptionId::RepoCipherType,
];

/// The options of this restore that archive-get needs (pgBackRest `cfgExecParam(.., local)`):
/// those valid for archive-get, given on the command line, not secret, in option-name order.
#[must_use]
pub fn archive_get_options(cfg: &Config) -> Vec<String> {
    let mut defs: Vec<&pgkeep_config::OptionDef> = pgkeep_config::options()
        .iter()
        .filter(|d| {
            d.valid(CommandId::ArchiveGet, CommandRole::Main)
                && cfg.valid(d.id)
                && !d.secure
                && !NOT_PASSED.contains(&d.id)
        })
        .collect();
    defs.sort_by_key(|d| d.name);
    let quote = |v: &str| {
        if v.contains(' ') {
            format!("\"{v}\"")
        } else {
            v.to_string()
        }
    };
    let mut out = Vec::new();
    for def in defs {
        let keys: Vec<Option<u32>> = match def.group {
            Some(group) => cfg.indexes(group).into_iter().map(Some).collect(),
            None => vec![None],
        };
        for key in keys {
            let name = Config::option_name(def.id, key);
            if cfg.negated(def.id, key) {
                out.push(format!("--no-{name}"));
            } else if cfg.was_reset(def.id, key) {
                out.push(format!("--reset-{name}"));
            } else if cfg.source(def.id, key) == Source::CommandLine {
                let values: Vec<String> = match def.ty {
                    pgkeep_config::OptionType::Boolean => {
                        let on = match key {
                            Some(k) => cfg.bool_idx(def.id, k),
                            None => cfg.bool(def.id),
                        };
                        out.push(format!("--{}{name}", if on { "" } else { "no-" }));
                        continue;
                    }
                    pgkeep_config::OptionType::List => match key {
                        Some(k) => cfg.list_idx(def.id, k).to_vec(),
                        None => cfg.list(def.id).to_vec(),
                    },
                    pgkeep_config::OptionType::Hash => match key {
                        Some(k) => cfg.hash_idx(def.id, k),
                        None => cfg.hash(def.id),
                    }
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
                    _ => cfg.display(def.id, key).into_iter().collect(),
                };
                for value in values {
                    out.push(format!("--{name}={}", quote(&value)));
                }
            }
        }
    }
    out
}

/// `<pgkeep> <options> archive-get %f "%p"`.
fn restore_command(cfg: &Config) -> String {
    let cmd = cfg
        .str(OptionId::Cmd)
        .map(str::to_string)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "pgkeep".to_string())
        });
    let mut parts = vec![cmd];
    parts.extend(archive_get_options(cfg));
    parts.push("archive-get %f \"%p\"".to_string());
    parts.join(" ")
}

/// The backup chosen, where it lives, and the info that lists it.
struct Chosen {
    repo: Repo,
    label: String,
    info: BackupInfo,
}

fn choose_backup(ctx: &Ctx, stanza: &str, opts: &Options) -> Result<Chosen> {
    let request = match (&opts.set, opts.ty) {
        (Some(label), _) => Request::Label(label.clone()),
        (None, RecoveryType::Time) => Request::Before(select::parse_time(
            opts.target.as_deref().unwrap_or_default(),
        )?),
        (None, RecoveryType::Lsn) => {
            let text = opts.target.as_deref().unwrap_or_default();
            Request::AtOrBefore(text.parse().map_err(|_| {
                Error::new(
                    ErrorKind::OptionInvalidValue,
                    format!("'{text}' is not valid for option 'target': expected an lsn"),
                )
            })?)
        }
        (None, _) => Request::Latest,
    };
    for key in ctx.repo_keys() {
        let repo = ctx.repo(key)?;
        let name = repo.name();
        let info: BackupInfo = match load_info(
            repo.storage.as_ref(),
            &layout::backup_info_path(stanza),
            repo.cipher_pass.as_deref(),
        ) {
            Ok(info) => info,
            Err(e) => {
                ctx.log
                    .warn(&format!("{name}: [{}] {}", e.kind().name(), e.message()));
                continue;
            }
        };
        match select::choose(&info, &request, &name)? {
            Answer::Found(label) => return Ok(Chosen { repo, label, info }),
            Answer::Next(Some(warning)) => ctx.log.warn(&warning),
            Answer::Next(None) => {}
        }
    }
    Err(select::not_found(
        &request,
        opts.target.as_deref().unwrap_or_default(),
    ))
}

/// The checks pgBackRest makes on a loaded manifest, plus the ones pgkeep needs.
fn validate_manifest(manifest: &Manifest, label: &str, info: &BackupInfo) -> Result<()> {
    if manifest.files.is_empty() {
        return Err(Error::new(ErrorKind::Format, "manifest missing files"));
    }
    let missing: Vec<String> = manifest
        .files
        .iter()
        .filter(|(_, f)| f.size != 0 && f.checksum.is_none())
        .map(|(name, _)| format!("\nmissing checksum for file '{name}'"))
        .collect();
    if !missing.is_empty() {
        return Err(Error::new(
            ErrorKind::Format,
            format!("manifest validation failed:{}", missing.concat()),
        ));
    }
    if manifest.backup.label != label {
        return Err(Error::new(
            ErrorKind::Format,
            format!(
                "requested backup '{label}' and manifest label '{}' do not match",
                manifest.backup.label
            ),
        )
        .with_hint(
            "this indicates some sort of corruption (at the very least paths have been renamed).",
        ));
    }
    if manifest.backup.block_incr || manifest.files.values().any(|f| f.block_incr.is_some()) {
        return Err(Error::new(
            ErrorKind::FeatureNotSupported,
            format!(
                "backup '{label}' is block incremental (a pgBackRest 2.45 beta format), which pgkeep cannot restore"
            ),
        ));
    }
    manifest.db.version.require_info()?;
    if let Some(entry) = info.history_entry(manifest.db.id)
        && (entry.version != manifest.db.version || entry.system_id != manifest.db.system_id)
    {
        return Err(Error::new(
            ErrorKind::BackupMismatch,
            format!(
                "backup '{label}' is of PostgreSQL {} system-id {} but backup.info history id {} is PostgreSQL {} system-id {}",
                manifest.db.version, manifest.db.system_id, entry.id, entry.version, entry.system_id
            ),
        )
        .with_hint("this may be a symptom of repository corruption!"));
    }
    Ok(())
}

fn local_time(secs: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_opt(secs, 0) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.format("%Y-%m-%d %H:%M:%S").to_string()
        }
        chrono::LocalResult::None => secs.to_string(),
    }
}

fn exists(path: &str) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// `restore`.
///
/// # Errors
/// See the module contract. Errors found before the data directory is changed leave it as it
/// was; any later error leaves it without `global/pg_control`, so it cannot be started.
pub fn run(ctx: &Ctx) -> Result<()> {
    let stanza = ctx.stanza()?;
    let mut opts = Options::read(ctx)?;
    recovery::validate_target(&opts.recovery)?;
    let pg_path = opts.pg_path.clone();

    // PostgreSQL must not be running; delta/force only on something that looks like PGDATA
    if exists(&format!("{pg_path}/postmaster.pid")) {
        return Err(Error::new(
            ErrorKind::PgRunning,
            "unable to restore while PostgreSQL is running",
        )
        .with_hint(format!("presence of 'postmaster.pid' in '{pg_path}' indicates PostgreSQL is running.\nHINT: remove 'postmaster.pid' only if PostgreSQL is not running.")));
    }
    if (opts.delta || opts.force)
        && !exists(&format!("{pg_path}/PG_VERSION"))
        && !exists(&format!("{pg_path}/{MANIFEST_FILE}"))
    {
        ctx.log.warn(&format!("--delta or --force specified but unable to find 'PG_VERSION' or '{MANIFEST_FILE}' in '{pg_path}' to confirm that this is a valid $PGDATA directory.  --delta and --force have been disabled and if any files exist in the destination directories the restore will be aborted."));
        opts.delta = false;
        opts.force = false;
    }

    // the backup set and its manifest
    let chosen = choose_backup(ctx, stanza, &opts)?;
    let repo_storage = chosen.repo.storage.as_ref();
    // loaded entry by entry: memory holds the manifest, never its text beside it
    let mut manifest = LazyManifest::load_full(
        repo_storage,
        &layout::manifest_path(stanza, &chosen.label),
        chosen.info.cipher_pass.as_deref(),
    )?;
    if !manifest.options.online && !opts.type_given {
        opts.ty = RecoveryType::None;
        opts.recovery.ty = RecoveryType::None;
    }
    validate_manifest(&manifest, &chosen.label, &chosen.info)?;
    // the set's passphrase stays out of the manifest, so the copy saved in the data directory
    // never holds it
    let format = StoredFormat {
        compress: manifest.options.compress_type,
        cipher_pass: manifest.cipher_pass.take(),
    };
    let version = manifest.db.version.require_info()?;
    let mut message = format!(
        "{}: restore backup set {}",
        chosen.repo.name(),
        chosen.label
    );
    if manifest.options.online {
        message.push_str(&format!(
            ", recovery will start at {}",
            local_time(manifest.backup.timestamp_start)
        ));
    }
    ctx.log.info(&message);

    // remap, owners, selective restore, recovery settings: all decided before any change
    let notes = remap::apply(&mut manifest, &pg_path, &opts.maps)?;
    for line in &notes.info {
        ctx.log.info(line);
    }
    for line in &notes.warn {
        ctx.log.warn(line);
    }
    remap::link_check(&manifest)?;
    let base_owner = std::fs::metadata(&pg_path).ok().map(|m| (m.uid(), m.gid()));
    let (owners, warnings) = owner::Owners::new(&manifest, base_owner);
    for line in &warnings {
        ctx.log.warn(line);
    }
    let zeroed = selective::plan(&manifest, &opts.db_include, &opts.db_exclude)?;
    for (detail, line) in &zeroed.notes {
        if *detail {
            ctx.log.detail(line);
        } else {
            ctx.log.info(line);
        }
    }
    let settings = match opts.ty {
        RecoveryType::None | RecoveryType::Preserve => None,
        _ => Some(recovery::settings(&opts.recovery, version.recovery)?),
    };
    let mut ignore = vec![MANIFEST_FILE];
    if opts.ty == RecoveryType::Preserve {
        match version.recovery {
            RecoveryStyle::SignalFile => {
                ignore.extend(["postgresql.auto.conf", "recovery.signal", "standby.signal"]);
            }
            RecoveryStyle::RecoveryConf => ignore.push("recovery.conf"),
        }
    }
    if manifest.files.remove("pg_data/tablespace_map").is_some() {
        ctx.log
            .detail("skip 'tablespace_map' -- tablespace links will be created based on mappings");
    }
    if opts.ty == RecoveryType::Preserve
        && version.recovery == RecoveryStyle::SignalFile
        && manifest
            .files
            .remove("pg_data/postgresql.auto.conf")
            .is_some()
    {
        ctx.log
            .detail("skip 'postgresql.auto.conf' -- recovery type is preserve");
    }
    let clean = clean::Clean {
        manifest: &manifest,
        delta: opts.delta || opts.force,
        ignore,
        owners: &owners,
        log: &ctx.log,
    };
    let mut targets = clean::targets(&manifest)?;
    clean.check(&mut targets)?;
    let planner = Planner {
        manifest: &manifest,
        stanza,
        pg_path: &pg_path,
        owners: &owners,
        zeroed: &zeroed,
    };
    let (jobs, total) = planner.plan()?;

    // from here on the file system changes
    let spool = ctx
        .cfg
        .str(OptionId::SpoolPath)
        .unwrap_or("/var/spool/pgbackrest");
    PosixStorage::new(spool).remove_path(&format!("archive/{stanza}"), true)?;
    clean.build(&targets, &pg_path)?;
    // opened before the first file is written (see the module contract)
    let file_systems = FileSystems::open(&targets)?;
    save_manifest_copy(&manifest, &pg_path)?;

    let settings_job = JobSettings {
        format,
        delta: opts.delta || opts.force,
        force: opts.delta && opts.force,
        copy_start: manifest.backup.timestamp_copy_start,
        synced_devices: file_systems.devices(),
    };
    let (size_restored, written) = run_jobs(
        ctx,
        &planner,
        &jobs,
        total,
        &settings_job,
        repo_storage,
        opts.process_max,
    )?;
    // not a pgBackRest line (it syncs each file as it closes it): debug level
    ctx.log.debug(&format!(
        "sync {written} restored files ({} file system(s))",
        file_systems.count()
    ));
    file_systems.sync()?;

    write_recovery(
        ctx,
        &manifest,
        &opts,
        version.recovery,
        settings.as_deref(),
        &pg_path,
    )?;
    let local = PosixStorage::new("/");
    local.remove(&format!("{pg_path}/{MANIFEST_FILE}"), true)?;
    // sync: file link directories, then every directory but global, then pg_control, then global
    let mut synced: Vec<String> = Vec::new();
    for (name, target) in &manifest.targets {
        if target.file.is_some() {
            let dir = remap::target_path(&manifest, name)?;
            if !synced.contains(&dir) {
                ctx.log.detail(&format!("sync path '{dir}'"));
                local.path_sync(&dir)?;
                synced.push(dir);
            }
        }
    }
    for name in manifest.paths.keys() {
        if name == "pg_tblspc" || name == "pg_data/global" {
            continue;
        }
        let dir = clean::pg_file(&pg_path, name);
        ctx.log.detail(&format!("sync path '{dir}'"));
        local.path_sync(&dir)?;
    }
    let control_temp = format!("{pg_path}/{PG_CONTROL_TEMP}");
    if exists(&control_temp) {
        ctx.log.info("restore global/pg_control (performed last to ensure aborted restores cannot be started)");
        local.move_file(&control_temp, &format!("{pg_path}/{PG_CONTROL}"))?;
    } else {
        ctx.log
            .warn("backup does not contain 'global/pg_control' -- cluster will not start");
    }
    ctx.log.detail(&format!("sync path '{pg_path}/global'"));
    local.path_sync(&format!("{pg_path}/global"))?;
    ctx.log.info(&format!(
        "restore size = {}, file total = {}",
        crate::progress::size_format(size_restored),
        manifest.files.len()
    ));
    Ok(())
}

/// A job before it is built: the manifest names of its files (jobs are built by the worker that
/// runs them, so the whole queue stays small).
enum Planned<'a> {
    /// A file stored on its own, or an empty file.
    Single(&'a str),
    /// Files of one bundle, by offset.
    Bundle(Vec<&'a str>),
}

/// Turns planned jobs into [`Job`]s.
struct Planner<'a> {
    manifest: &'a Manifest,
    stanza: &'a str,
    pg_path: &'a str,
    owners: &'a owner::Owners,
    zeroed: &'a selective::Zeroed,
}

impl<'a> Planner<'a> {
    /// The queue in pgBackRest's order (`restoreProcessQueueComparator`): files stored on their
    /// own largest first (equal sizes by name, descending), then bundles by id (equal ids: older
    /// backups first, this one's last), each by offset, then empty files; and the total size.
    /// Every entry is checked here, before anything is written.
    fn plan(&self) -> Result<(Vec<Planned<'a>>, u64)> {
        let manifest = self.manifest;
        let mut singles: Vec<(u64, &str)> = Vec::new();
        // by id, then label: a backup's own label is newer than any it references
        let mut bundles: BTreeMap<(u64, &str), Vec<(u64, &str)>> = BTreeMap::new();
        let mut empties: Vec<&str> = Vec::new();
        let mut total = 0;
        for (name, file) in &manifest.files {
            Expected::of(name, file)?;
            StoredLocation::of(manifest, self.stanza, name, file)?;
            total += file.size;
            if file.size == 0 {
                empties.push(name);
            } else if file.bundle_id != 0 {
                bundles
                    .entry((file.bundle_id, manifest.file_backup_label(file)))
                    .or_default()
                    .push((file.bundle_offset, name));
            } else {
                singles.push((file.size, name));
            }
        }
        singles.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(a.1)));
        let mut queue: Vec<Planned<'a>> = singles
            .into_iter()
            .map(|(_, name)| Planned::Single(name))
            .collect();
        for (_, mut files) in bundles {
            files.sort_by_key(|f| f.0);
            queue.push(Planned::Bundle(files.into_iter().map(|f| f.1).collect()));
        }
        // by name, descending
        queue.extend(empties.into_iter().rev().map(Planned::Single));
        Ok((queue, total))
    }

    fn job_file(&self, name: &str) -> Result<(JobFile, String, u64)> {
        let file = self.manifest.files.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::Assert,
                format!("unable to find '{name}' in manifest file list"),
            )
        })?;
        let location = StoredLocation::of(self.manifest, self.stanza, name, file)?;
        let pg_file = if name == "pg_data/global/pg_control" {
            format!("{}/{PG_CONTROL_TEMP}", self.pg_path)
        } else {
            clean::pg_file(self.pg_path, name)
        };
        Ok((
            JobFile {
                name: name.to_string(),
                pg_file,
                expected: Expected::of(name, file)?,
                timestamp: file.timestamp,
                mode: file.mode,
                owner: self
                    .owners
                    .for_new(file.user.as_deref(), file.group.as_deref()),
                zero: self.zeroed.is_zeroed(name),
                offset: location.offset,
                size_repo: location.size,
            },
            location.path,
            location.bundle_id,
        ))
    }

    /// Ask the kernel to start reading the small files of a job the workers will reach soon: the
    /// data directory files a checksum delta compares, or else the repository files to restore
    /// (on a posix repository, rooted at `repo_root`). Small reads are latency bound; issued
    /// ahead, they overlap instead of waiting one by one. Large files are read sequentially with
    /// the kernel's own read-ahead, bundles likewise. Advice only: any failure is ignored.
    fn prefetch(&self, planned: &Planned<'_>, delta: bool, repo_root: Option<&str>) {
        let Planned::Single(name) = planned else {
            return;
        };
        let Some(file) = self.manifest.files.get(*name) else {
            return;
        };
        if file.size == 0 || self.zeroed.is_zeroed(name) {
            return;
        }
        let path = if delta {
            if file.size > PREFETCH_SIZE_MAX {
                return;
            }
            clean::pg_file(self.pg_path, name)
        } else {
            let Some(root) = repo_root.filter(|_| file.size_repo <= PREFETCH_SIZE_MAX) else {
                return;
            };
            match StoredLocation::of(self.manifest, self.stanza, name, file) {
                Ok(location) => pgkeep_storage::join(root, &location.path),
                Err(_) => return,
            }
        };
        if let Ok(handle) = std::fs::File::open(path) {
            let _ = nix::fcntl::posix_fadvise(
                &handle,
                0,
                0,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
            );
        }
    }

    /// The backup holding `name` when it is not the one restored (its manifest `reference`).
    fn reference(&self, name: &str) -> Option<&'a str> {
        self.manifest.files.get(name)?.reference.as_deref()
    }

    fn build(&self, planned: &Planned<'_>) -> Result<Job> {
        let names: &[&str] = match planned {
            Planned::Single(name) => std::slice::from_ref(name),
            Planned::Bundle(names) => names,
        };
        let mut job = Job {
            repo_path: String::new(),
            bundle_id: 0,
            files: Vec::with_capacity(names.len()),
        };
        for name in names {
            let (file, path, bundle_id) = self.job_file(name)?;
            job.repo_path = path;
            job.bundle_id = bundle_id;
            job.files.push(file);
        }
        Ok(job)
    }
}

/// Save the (remapped) manifest as `<pg1-path>/backup.manifest`, rendered streaming into the
/// file; the caller has taken the passphrase out.
fn save_manifest_copy(manifest: &Manifest, pg_path: &str) -> Result<()> {
    let mut out = PosixStorage::new(pg_path).open_write(
        MANIFEST_FILE,
        WriteOptions {
            create_path: false,
            ..WriteOptions::default()
        },
    )?;
    pgkeep_repo::InfoFile::write_to(manifest, &mut out)?;
    out.finish()
}

/// The file systems of the restore's target directories, one descriptor each (see the module
/// contract).
struct FileSystems {
    /// `(path, descriptor, device)`, one per file system.
    dirs: Vec<(String, std::fs::File, u64)>,
}

impl FileSystems {
    /// Open every target directory, keeping one per file system whose `syncfs` reports
    /// write-back errors.
    fn open(targets: &[clean::TargetDir]) -> Result<FileSystems> {
        let mut dirs: Vec<(String, std::fs::File, u64)> = Vec::new();
        for target in targets {
            let dir = std::fs::File::open(&target.path).map_err(|e| {
                Error::io(ErrorKind::PathOpen, "unable to open path", &target.path, &e)
            })?;
            let device = dir
                .metadata()
                .map_err(|e| {
                    Error::io(
                        ErrorKind::FileInfo,
                        "unable to get info for path",
                        &target.path,
                        &e,
                    )
                })?
                .dev();
            // a file system whose syncfs cannot be trusted is left out: the workers fsync the
            // files written there one by one
            if !dirs.iter().any(|d| d.2 == device)
                && pgkeep_storage::posix::syncfs_reports_errors(&dir)
            {
                dirs.push((target.path.clone(), dir, device));
            }
        }
        Ok(FileSystems { dirs })
    }

    fn count(&self) -> usize {
        self.dirs.len()
    }

    /// The devices flushed by [`FileSystems::sync`].
    fn devices(&self) -> Vec<u64> {
        self.dirs.iter().map(|d| d.2).collect()
    }

    /// Flush each file system to disk and wait.
    fn sync(&self) -> Result<()> {
        for (path, dir, _) in &self.dirs {
            nix::unistd::syncfs(dir).map_err(|e| {
                Error::new(
                    ErrorKind::PathSync,
                    format!(
                        "unable to sync file system of '{path}': [{}] {}",
                        e as i32,
                        e.desc()
                    ),
                )
                // the kernel now holds pages it failed to write as clean: a delta would checksum
                // them from memory and keep them
                .with_hint("once the storage is repaired, restore again without --delta.")
            })?;
        }
        Ok(())
    }
}

/// Run the jobs on `process_max` threads; returns the bytes restored and the number of files
/// written.
fn run_jobs(
    ctx: &Ctx,
    planner: &Planner<'_>,
    jobs: &[Planned<'_>],
    total: u64,
    settings: &JobSettings,
    repo: &dyn Storage,
    process_max: usize,
) -> Result<(u64, u64)> {
    let counter = job::Counter::new(0);
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let detail = ctx.log.enabled(Level::Detail);
    // a checksum delta reads every file of the data directory; otherwise the repository is read
    let delta = settings.delta && !settings.force;
    let repo_root = (repo.driver() == "posix").then(|| repo.root());
    let mut progress = crate::progress::Progress::new(&ctx.log, "restore", total);
    let mut restored: u64 = 0;
    let mut written: u64 = 0;
    let mut first_error: Option<Error> = None;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<Result<(u32, Job, Vec<Outcome>)>>();
        let threads = u32::try_from(process_max.min(jobs.len().max(1))).unwrap_or(1);
        for pid in 1..=threads {
            let tx = tx.clone();
            let (next, stop, counter) = (&next, &stop, &counter);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(planned) = jobs.get(index) else {
                        break;
                    };
                    if let Some(ahead) = jobs.get(index + PREFETCH_AHEAD) {
                        planner.prefetch(ahead, delta, repo_root);
                    }
                    let result = planner.build(planned).and_then(|job| {
                        let outcomes = job::execute(&job, settings, repo, counter)?;
                        Ok((pid, job, outcomes))
                    });
                    let failed = result.is_err();
                    if tx.send(result).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(tx);
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok((pid, job, outcomes))) => {
                    for (file, outcome) in job.files.iter().zip(outcomes) {
                        restored += file.expected.size;
                        if outcome != Outcome::Preserve {
                            written += 1;
                        }
                        if detail {
                            ctx.log.log_pid(
                                pid,
                                Level::Detail,
                                &job_log(
                                    &job,
                                    file,
                                    planner.reference(&file.name),
                                    (outcome, settings),
                                    (restored, total),
                                ),
                            );
                        }
                    }
                    progress.update(counter.load(Ordering::Relaxed));
                }
                Ok(Err(e)) => {
                    stop.store(true, Ordering::Relaxed);
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    progress.update(counter.load(Ordering::Relaxed));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
    });
    progress.finish();
    match first_error {
        Some(e) => Err(e),
        None => Ok((restored, written)),
    }
}

/// pgBackRest's per-file detail line.
fn job_log(
    job: &Job,
    file: &JobFile,
    reference: Option<&str>,
    (outcome, settings): (Outcome, &JobSettings),
    (restored, total): (u64, u64),
) -> String {
    let mut line = String::from("restore");
    if file.zero {
        line.push_str(" zeroed");
    }
    line.push_str(&format!(" file {}", file.pg_file));
    if outcome == Outcome::Preserve {
        line.push_str(" - ");
        if settings.force {
            line.push_str(&format!(
                "exists and matches size {} and modification time {}",
                file.expected.size, file.timestamp
            ));
        } else if file.expected.size == 0 {
            line.push_str("exists and is zero size");
        } else {
            line.push_str("exists and matches backup");
        }
    }
    line.push_str(" (");
    if job.bundle_id != 0 {
        line.push_str("bundle ");
        if let Some(reference) = reference {
            line.push_str(reference);
            line.push('/');
        }
        line.push_str(&format!("{}/{}, ", job.bundle_id, file.offset));
    }
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let pct = if total == 0 {
        100.0
    } else {
        restored as f64 * 100.0 / total as f64
    };
    line.push_str(&format!(
        "{}, {pct:.2}%)",
        crate::progress::size_format(file.expected.size)
    ));
    if file.expected.size != 0 && !file.zero {
        line.push_str(&format!(" checksum {}", file.expected.sha1.to_hex()));
    }
    line
}

/// Write a small file of the data directory in place, with mode and owner, synced.
fn write_small(path: &str, content: &[u8], mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
    let io = |kind, what: &str, e: &std::io::Error| Error::io(kind, what, path, e);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io(ErrorKind::FileOpen, "unable to open file", &e))?;
    f.write_all(content)
        .map_err(|e| io(ErrorKind::FileWrite, "unable to write", &e))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| io(ErrorKind::FileMode, "unable to set mode for", &e))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
            .map_err(|e| io(ErrorKind::FileOwner, "unable to set ownership for", &e))?;
    }
    f.sync_all()
        .map_err(|e| io(ErrorKind::FileSync, "unable to sync file", &e))
}

/// Recovery settings for the restored cluster (see [`recovery`]).
fn write_recovery(
    ctx: &Ctx,
    manifest: &Manifest,
    opts: &Options,
    style: RecoveryStyle,
    settings: Option<&[(String, String)]>,
    pg_path: &str,
) -> Result<()> {
    let recovery_file = match style {
        RecoveryStyle::SignalFile => format!("{pg_path}/postgresql.auto.conf"),
        RecoveryStyle::RecoveryConf => format!("{pg_path}/recovery.conf"),
    };
    if opts.ty == RecoveryType::Preserve {
        if !exists(&recovery_file) {
            ctx.log.warn(&format!(
                "recovery type is preserve but recovery file does not exist at '{recovery_file}'"
            ));
        }
        return Ok(());
    }
    let now = local_time(chrono::Local::now().timestamp());
    let root = nix::unistd::geteuid().is_root();
    match style {
        RecoveryStyle::SignalFile => {
            let existing = match std::fs::read(&recovery_file) {
                Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    ctx.log.warn("postgresql.auto.conf does not exist -- creating to contain recovery settings");
                    None
                }
                Err(e) => {
                    return Err(Error::io(
                        ErrorKind::FileRead,
                        "unable to read",
                        &recovery_file,
                        &e,
                    ));
                }
            };
            let content = recovery::auto_conf(existing.as_deref(), settings, &now);
            ctx.log.info(&format!(
                "write {}{recovery_file}",
                if existing.is_some() { "updated " } else { "" }
            ));
            let meta = std::fs::metadata(pg_path).map_err(|e| {
                Error::io(
                    ErrorKind::FileOpen,
                    "unable to get info for path/file",
                    pg_path,
                    &e,
                )
            })?;
            let mode = meta.mode() & 0o644;
            let owner = root.then(|| (meta.uid(), meta.gid()));
            write_small(&recovery_file, content.as_bytes(), mode, owner)?;
            if opts.ty == RecoveryType::Standby {
                write_small(&format!("{pg_path}/standby.signal"), b"", mode, owner)?;
            } else if opts.ty != RecoveryType::None || manifest.options.online {
                write_small(&format!("{pg_path}/recovery.signal"), b"", mode, owner)?;
            }
        }
        RecoveryStyle::RecoveryConf => {
            if let Some(settings) = settings {
                ctx.log.info(&format!("write {recovery_file}"));
                let base = manifest.paths.get(TARGET_PGDATA);
                let mode = base.map_or(0o600, |p| p.mode & 0o644);
                let owner = root.then(|| {
                    let owners = owner::Owners::new(manifest, None).0;
                    owners.expected(
                        base.and_then(|p| p.user.as_deref()),
                        base.and_then(|p| p.group.as_deref()),
                    )
                });
                write_small(
                    &recovery_file,
                    recovery::recovery_conf(settings, &now).as_bytes(),
                    mode,
                    owner,
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgkeep_config::ParseInput;

    fn config(args: &[&str], env: &[(&str, &str)], file: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("pgbackrest.conf");
        std::fs::write(&conf, file).unwrap();
        let mut all = vec![format!("--config={}", conf.display())];
        all.extend(args.iter().map(|a| a.to_string()));
        all.push("restore".to_string());
        pgkeep_config::parse(&ParseInput {
            args: all,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            default_config: Vec::new(),
            default_include_path: dir.path().join("conf.d").display().to_string(),
        })
        .unwrap()
    }

    #[test]
    fn archive_get_gets_the_command_line_options_it_knows() {
        let cfg = config(
            &[
                "--stanza=demo",
                "--pg1-path=/restore/here",
                "--repo=2",
                "--process-max=4",
                "--log-level-console=detail",
                "--type=time",
                "--target=2024-01-01 00:00:00+00",
                "--spool-path=/spool with space",
            ],
            &[
                ("PGBACKREST_LOG_PATH", "/from/env"),
                ("PGBACKREST_REPO2_CIPHER_PASS", "secret"),
            ],
            "[global]\nrepo1-path=/r1\nrepo2-path=/r2\nrepo2-cipher-type=aes-256-cbc\nlock-path=/from/file\n",
        );
        let options = archive_get_options(&cfg);
        let config_opt = options[0].clone();
        assert!(config_opt.starts_with("--config="), "{options:?}");
        assert_eq!(
            &options[1..],
            &[
                "--pg1-path=/restore/here",
                "--repo=2",
                "--spool-path=\"/spool with space\"",
                "--stanza=demo",
            ],
            "{options:?}"
        );
        let command = restore_command(&cfg);
        assert!(
            command.ends_with(" --stanza=demo archive-get %f \"%p\""),
            "{command}"
        );
        let cfg = config(
            &["--stanza=demo", "--pg1-path=/x", "--cmd=/opt/pgkeep"],
            &[],
            "[global]\n",
        );
        assert!(restore_command(&cfg).starts_with("/opt/pgkeep --config="));
    }
}
