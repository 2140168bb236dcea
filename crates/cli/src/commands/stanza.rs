//! `stanza-create`, `stanza-upgrade` and `stanza-delete` (pgBackRest `src/command/stanza/`).
//!
//! Contract: create is idempotent and refuses a cluster whose system id or version differ from the
//! stanza's; upgrade adds a history entry after `pg_upgrade` and saves only the info file that
//! changed; delete needs a prior `stop` and a stopped cluster (or `--force`). Info files are always
//! written main first, then `.copy`, each atomically; a repository is never left half-changed by a
//! refused command because every check runs before the first write.

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_pg::control::ControlInfo;
use pgkeep_repo::info::{ArchiveInfo, BackupInfo, load_info, save_info};
use pgkeep_repo::layout;
use pgkeep_storage::{InfoLevel, Storage};

use crate::commands::db;
use crate::ctx::{Ctx, Repo};
use crate::lock;

fn exists(storage: &dyn Storage, path: &str) -> Result<bool> {
    Ok(storage.info(path, InfoLevel::Exists, true)?.is_some())
}

fn list_nonempty(storage: &dyn Storage, path: &str) -> Result<bool> {
    Ok(storage
        .list(path, InfoLevel::Exists)?
        .is_some_and(|l| !l.is_empty()))
}

/// A new sub-passphrase for an encrypted repository.
fn cipher_sub_pass(repo: &Repo) -> Option<String> {
    repo.cipher_pass
        .as_ref()
        .map(|_| pgkeep_base::crypto::generate_pass())
}

/// `stanza-create`.
///
/// # Errors
/// Stop file, lock, cluster validation, and repository state errors as pgBackRest.
pub fn create(ctx: &Ctx) -> Result<()> {
    let stanza = ctx.stanza()?;
    lock::stop_test(ctx.lock_path(), Some(stanza))?;
    let _lock = lock::acquire(ctx.lock_path(), stanza, lock::LockType::All, &ctx.exec_id)?;
    if ctx.force() {
        ctx.log.warn("option --force is no longer supported");
    }
    let control = db::validate(ctx)?;

    for key in ctx.repo_keys() {
        let repo = ctx.repo(key)?;
        ctx.log.info(&format!(
            "stanza-create for stanza '{stanza}' on {}",
            repo.name()
        ));
        create_on_repo(&repo, stanza, &control, ctx)?;
    }
    Ok(())
}

fn create_on_repo(repo: &Repo, stanza: &str, control: &ControlInfo, ctx: &Ctx) -> Result<()> {
    let storage = repo.storage.as_ref();
    let archive_info = layout::archive_info_path(stanza);
    let backup_info = layout::backup_info_path(stanza);
    let archive_copy = format!("{archive_info}.copy");
    let backup_copy = format!("{backup_info}.copy");
    let archive_exists = exists(storage, &archive_info)?;
    let archive_copy_exists = exists(storage, &archive_copy)?;
    let backup_exists = exists(storage, &backup_info)?;
    let backup_copy_exists = exists(storage, &backup_copy)?;
    let pass = repo.cipher_pass.as_deref();

    if !archive_exists && !archive_copy_exists && !backup_exists && !backup_copy_exists {
        let archive_not_empty = list_nonempty(storage, &layout::archive_path(stanza))?;
        let backup_not_empty = list_nonempty(storage, &layout::backup_path(stanza))?;
        if archive_not_empty || backup_not_empty {
            let mut what = String::new();
            if backup_not_empty {
                what.push_str("backup directory ");
            }
            if backup_not_empty && archive_not_empty {
                what.push_str("and/or ");
            }
            if archive_not_empty {
                what.push_str("archive directory ");
            }
            return Err(Error::new(
                ErrorKind::PathNotEmpty,
                format!("{what}not empty"),
            ));
        }
        let archive = ArchiveInfo::new(control.version, control.system_id, cipher_sub_pass(repo));
        save_info(storage, &archive_info, &archive, pass)?;
        let backup = BackupInfo::new(
            control.version,
            control.system_id,
            control.control_version,
            control.catalog_version,
            cipher_sub_pass(repo),
        );
        save_info(storage, &backup_info, &backup, pass)?;
        return Ok(());
    }

    if (archive_exists || archive_copy_exists) && (backup_exists || backup_copy_exists) {
        check_info_matches(storage, stanza, control, pass)?;
        let mut copied = false;
        for (main, copy, main_exists, copy_exists) in [
            (
                &archive_info,
                &archive_copy,
                archive_exists,
                archive_copy_exists,
            ),
            (
                &backup_info,
                &backup_copy,
                backup_exists,
                backup_copy_exists,
            ),
        ] {
            if !main_exists || !copy_exists {
                let (from, to) = if main_exists {
                    (main, copy)
                } else {
                    (copy, main)
                };
                let data = pgkeep_storage::get(storage, from)?.ok_or_else(|| {
                    Error::new(
                        ErrorKind::FileMissing,
                        format!("unable to open missing file '{from}' for read"),
                    )
                })?;
                pgkeep_storage::put(storage, to, &data, pgkeep_storage::WriteOptions::default())?;
                copied = true;
            }
        }
        if !copied {
            ctx.log.info(&format!(
                "stanza '{stanza}' already exists on {} and is valid",
                repo.name()
            ));
        }
        return Ok(());
    }

    Err(Error::new(
        ErrorKind::FileMissing,
        format!(
            "{} on {}",
            if archive_exists || archive_copy_exists {
                "archive.info exists but backup.info is missing"
            } else {
                "backup.info exists but archive.info is missing"
            },
            repo.name()
        ),
    )
    .with_hint("this may be a symptom of repository corruption!"))
}

/// The info files must agree with each other and with the cluster.
fn check_info_matches(
    storage: &dyn Storage,
    stanza: &str,
    control: &ControlInfo,
    pass: Option<&str>,
) -> Result<()> {
    let archive: ArchiveInfo = load_info(storage, &layout::archive_info_path(stanza), pass)?;
    let backup: BackupInfo = load_info(storage, &layout::backup_info_path(stanza), pass)?;
    check_archive_backup_agree(&archive, &backup)?;
    let current = archive.current();
    if current.version != control.version || current.system_id != control.system_id {
        return Err(Error::new(
            ErrorKind::FileInvalid,
            "backup and archive info files exist but do not match the database",
        )
        .with_hint(
            "is this the correct stanza?\nHINT: did an error occur during stanza-upgrade?",
        ));
    }
    Ok(())
}

fn check_archive_backup_agree(archive: &ArchiveInfo, backup: &BackupInfo) -> Result<()> {
    let a = archive.current();
    let b = backup.current();
    if a.id != b.id || a.system_id != b.system_id || a.version != b.version {
        return Err(Error::new(
            ErrorKind::FileInvalid,
            format!(
                "backup info file and archive info file do not match\narchive: id = {}, version = {}, system-id = {}\nbackup : id = {}, version = {}, system-id = {}",
                a.id, a.version, a.system_id, b.id, b.version, b.system_id
            ),
        )
        .with_hint("this may be a symptom of repository corruption!"));
    }
    Ok(())
}

/// `stanza-upgrade`.
///
/// # Errors
/// Stop file, lock, cluster validation, missing or mismatched info files.
pub fn upgrade(ctx: &Ctx) -> Result<()> {
    let stanza = ctx.stanza()?;
    lock::stop_test(ctx.lock_path(), Some(stanza))?;
    let _lock = lock::acquire(ctx.lock_path(), stanza, lock::LockType::All, &ctx.exec_id)?;
    let control = db::validate(ctx)?;

    for key in ctx.repo_keys() {
        let repo = ctx.repo(key)?;
        ctx.log.info(&format!(
            "stanza-upgrade for stanza '{stanza}' on {}",
            repo.name()
        ));
        let storage = repo.storage.as_ref();
        let pass = repo.cipher_pass.as_deref();
        let archive_path = layout::archive_info_path(stanza);
        let backup_path = layout::backup_info_path(stanza);
        let mut archive: ArchiveInfo = load_info(storage, &archive_path, pass)?;
        let mut backup: BackupInfo = load_info(storage, &backup_path, pass)?;

        let archive_upgrade = {
            let c = archive.current();
            c.version != control.version || c.system_id != control.system_id
        };
        if archive_upgrade {
            archive.add_history(control.version, control.system_id);
        }
        let backup_upgrade = {
            let c = backup.current();
            c.version != control.version || c.system_id != control.system_id
        };
        if backup_upgrade {
            backup.add_history(
                control.version,
                control.system_id,
                control.control_version,
                control.catalog_version,
            );
        }
        check_archive_backup_agree(&archive, &backup)?;
        if archive_upgrade {
            save_info(storage, &archive_path, &archive, pass)?;
        }
        if backup_upgrade {
            save_info(storage, &backup_path, &backup, pass)?;
        }
        if !archive_upgrade && !backup_upgrade {
            ctx.log.info(&format!(
                "stanza '{stanza}' on {} is already up to date",
                repo.name()
            ));
        }
    }
    Ok(())
}

/// `stanza-delete`.
///
/// # Errors
/// No stop file, a running cluster without `--force`, several repos without `--repo`, removal
/// failures.
pub fn delete(ctx: &Ctx) -> Result<()> {
    let stanza = ctx.stanza()?;
    let keys = ctx.repo_keys();
    let key = match keys.as_slice() {
        [key] => *key,
        _ => {
            return Err(Error::new(
                ErrorKind::OptionRequired,
                "stanza-delete command requires option: repo",
            )
            .with_hint("this command requires a specific repository to operate on"));
        }
    };
    let _lock = lock::acquire(ctx.lock_path(), stanza, lock::LockType::All, &ctx.exec_id)?;
    let repo = ctx.repo(key)?;
    let storage = repo.storage.as_ref();
    let archive_dir = layout::archive_path(stanza);
    let backup_dir = layout::backup_path(stanza);
    let archive_list = storage.list(&archive_dir, InfoLevel::Exists)?;
    let backup_list = storage.list(&backup_dir, InfoLevel::Exists)?;
    if archive_list.is_none() && backup_list.is_none() {
        return Ok(());
    }
    let archive_not_empty = archive_list.as_ref().is_some_and(|l| !l.is_empty());
    let backup_not_empty = backup_list.as_ref().is_some_and(|l| !l.is_empty());
    let stop_file = lock::stop_file(ctx.lock_path(), Some(stanza));
    if archive_not_empty || backup_not_empty {
        if !stop_file.exists() {
            return Err(Error::new(
                ErrorKind::FileMissing,
                format!("stop file does not exist for stanza '{stanza}'"),
            )
            .with_hint(
                "has the pgbackrest stop command been run on this server for this stanza?",
            ));
        }
        if !ctx.force() {
            let pg_path = ctx.pg_path(ctx.pg_keys().first().copied().unwrap_or(1))?;
            if std::path::Path::new(pg_path)
                .join("postmaster.pid")
                .exists()
            {
                return Err(Error::new(
                    ErrorKind::PgRunning,
                    format!(
                        "postmaster.pid exists - looks like PostgreSQL is running. To delete stanza '{stanza}' on {}, shut down PostgreSQL for stanza '{stanza}' and try again, or use --force.",
                        repo.name()
                    ),
                ));
            }
        }
        if archive_not_empty {
            let path = layout::archive_info_path(stanza);
            storage.remove(&path, true)?;
            storage.remove(&format!("{path}.copy"), true)?;
        }
        if backup_not_empty {
            let path = layout::backup_info_path(stanza);
            storage.remove(&path, true)?;
            storage.remove(&format!("{path}.copy"), true)?;
        }
    }
    if archive_list.is_some() {
        storage.remove_path(&archive_dir, true)?;
    }
    if backup_list.is_some() {
        storage.remove_path(&backup_dir, true)?;
    }
    match std::fs::remove_file(&stop_file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(
            ErrorKind::FileRemove,
            "unable to remove",
            stop_file.display(),
            &e,
        )),
    }
}
