//! `check` (pgBackRest `src/command/check/`): is the stanza configured so that backups and WAL
//! archiving work?
//!
//! Contract (pgBackRest 2.45 order and messages):
//! - Every `pgN` is tried; failures are warnings (`unable to check pgN: [Type] message`). No
//!   cluster at all is `Config` `no database found`; more than one primary is `DbConnect`.
//! - A standby alone is `Config` `primary database not found` (repositories are always local to
//!   pgkeep, so a primary must be reachable). With a primary and a standby, the standby's path and
//!   version and each repository's info files are checked, and no WAL switch is made for it.
//! - Primary: version and data directory must equal `pg_control` and `pgN-path` (`DbMismatch`);
//!   with `archive-check`, `archive_mode` must not be `off` (`ArchiveDisabled` [087]) nor `always`
//!   (when `archive-mode-check`), and `archive_command` must name pgkeep or pgbackrest
//!   (`ArchiveCommandInvalid` [068]). Each repository's archive.info and backup.info must agree
//!   with each other and with the cluster. Then a restore point is created, the WAL is switched,
//!   and the closed segment must appear in every repository within `archive-timeout`
//!   (`ArchiveTimeout` [082] with pgBackRest's hints).

use std::time::Duration;

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_config::{Group, OptionId};
use pgkeep_pg::client::Client;
use pgkeep_pg::{ControlInfo, PgVersion};
use pgkeep_repo::info::load_info;
use pgkeep_repo::{ArchiveInfo, BackupInfo, layout};
use pgkeep_storage::posix::PosixStorage;
use pgkeep_storage::{InfoLevel, Storage, join};

use crate::commands::archive::wait_for_segment;
use crate::commands::db;
use crate::ctx::Ctx;

/// `check`.
///
/// # Errors
/// See the module contract.
pub fn run(ctx: &Ctx) -> Result<()> {
    let stanza = ctx.stanza()?;
    let found = db::get(ctx, false, false, false)?;
    let primary = found.primary.map(|p| (p.key, p.client));
    let standby = found.standby.map(|p| (p.key, p.client));
    if primary.is_none() && standby.is_none() {
        return Err(Error::new(ErrorKind::Config, "no database found")
            .with_hint("check indexed pg-path/pg-host configurations"));
    }
    // pgBackRest's checkManifest() placeholder: each data directory is listed (a missing one is
    // passed over, one that cannot be read is an error).
    for key in ctx.pg_keys() {
        PosixStorage::new(ctx.pg_path(key)?).list("", InfoLevel::Exists)?;
    }

    if let Some((key, mut client)) = standby {
        if primary.is_none() {
            return Err(Error::new(ErrorKind::Config, "primary database not found")
                .with_hint("check indexed pg-path/pg-host configurations"));
        }
        let control = db::read_control(ctx, key)?;
        check_db_config(ctx, control.version, key, &mut client, true)?;
        for repo_key in ctx.cfg.indexes(Group::Repo) {
            ctx.log.info(&format!("check repo{repo_key} (standby)"));
            let repo = ctx.repo(repo_key)?;
            check_stanza_info(
                repo.storage.as_ref(),
                stanza,
                &control,
                repo.cipher_pass.as_deref(),
            )?;
        }
        ctx.log
            .info("switch wal not performed because this is a standby");
    } else if ctx.cfg.bool(OptionId::BackupStandby) {
        ctx.log
            .warn("option 'backup-standby' is enabled but standby is not properly configured");
    }

    if let Some((key, mut client)) = primary {
        let control = db::read_control(ctx, key)?;
        check_db_config(ctx, control.version, key, &mut client, false)?;
        let mut repos = Vec::new();
        for repo_key in ctx.cfg.indexes(Group::Repo) {
            ctx.log
                .info(&format!("check repo{repo_key} configuration (primary)"));
            let repo = ctx.repo(repo_key)?;
            let archive_id = check_stanza_info(
                repo.storage.as_ref(),
                stanza,
                &control,
                repo.cipher_pass.as_deref(),
            )?;
            repos.push((repo, archive_id));
        }
        let segment = client.switch_wal()?;
        let timeout = ctx
            .cfg
            .time(OptionId::ArchiveTimeout)
            .unwrap_or(Duration::from_secs(60));
        for (repo, archive_id) in &repos {
            ctx.log
                .info(&format!("check {} archive for WAL (primary)", repo.name()));
            let file =
                wait_for_segment(repo.storage.as_ref(), stanza, archive_id, &segment, timeout)?;
            ctx.log.info(&format!(
                "WAL segment {segment} successfully archived to '{}' on {}",
                join(
                    repo.storage.root(),
                    &layout::archive_file_path(stanza, archive_id, &file)
                ),
                repo.name()
            ));
        }
    }
    Ok(())
}

/// pgBackRest `checkDbConfig()` with this command's settings (archive checks on primaries only).
fn check_db_config(
    ctx: &Ctx,
    pg_version: PgVersion,
    key: u32,
    client: &mut Client,
    is_standby: bool,
) -> Result<()> {
    let archive_check = !is_standby
        && ctx.cfg.valid(OptionId::ArchiveCheck)
        && ctx.cfg.bool(OptionId::ArchiveCheck);
    db::check_db_config(
        client,
        pg_version,
        key,
        ctx.pg_path(key)?,
        archive_check,
        ctx.cfg.bool(OptionId::ArchiveModeCheck),
    )
}

/// pgBackRest `checkStanzaInfoPg()`; returns the current archive id.
fn check_stanza_info(
    storage: &dyn Storage,
    stanza: &str,
    control: &ControlInfo,
    pass: Option<&str>,
) -> Result<String> {
    let archive: ArchiveInfo = load_info(storage, &layout::archive_info_path(stanza), pass)?;
    let backup: BackupInfo = load_info(storage, &layout::backup_info_path(stanza), pass)?;
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
    if control.version != a.version || control.system_id != a.system_id {
        return Err(Error::new(
            ErrorKind::FileInvalid,
            "backup and archive info files exist but do not match the database",
        )
        .with_hint(
            "is this the correct stanza?\nHINT: did an error occur during stanza-upgrade?",
        ));
    }
    Ok(a.archive_id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::db::archive_command_valid;

    #[test]
    fn archive_command_must_run_pgkeep_or_pgbackrest() {
        archive_command_valid(Some("pgkeep --stanza=demo archive-push %p")).unwrap();
        archive_command_valid(Some("/usr/bin/pgbackrest --stanza=demo archive-push %p")).unwrap();
        let err = archive_command_valid(Some("cp %p /archive/%f")).unwrap_err();
        assert_eq!(err.code(), 68);
        assert_eq!(
            err.message(),
            "archive_command 'cp %p /archive/%f' must contain pgkeep or pgbackrest"
        );
        assert_eq!(
            archive_command_valid(None).unwrap_err().message(),
            "archive_command '[NULL]' must contain pgkeep or pgbackrest"
        );
    }

    #[test]
    fn waiting_for_a_segment_times_out_with_hints() {
        let dir = tempfile::tempdir().unwrap();
        let storage = pgkeep_storage::posix::PosixStorage::new(dir.path().to_str().unwrap());
        let err = wait_for_segment(
            &storage,
            "demo",
            "15-1",
            "000000010000000000000001",
            Duration::from_millis(100),
        )
        .unwrap_err();
        assert_eq!(err.code(), 82);
        assert_eq!(
            err.message(),
            "WAL segment 000000010000000000000001 was not archived before the 100ms timeout"
        );
        assert!(err.hint().unwrap().starts_with("check the archive_command"));
        let name = "000000010000000000000001-0123456789abcdef0123456789abcdef01234567.gz";
        let seg_dir = dir.path().join("archive/demo/15-1/0000000100000000");
        std::fs::create_dir_all(&seg_dir).unwrap();
        std::fs::write(seg_dir.join(name), b"x").unwrap();
        assert_eq!(
            wait_for_segment(
                &storage,
                "demo",
                "15-1",
                "000000010000000000000001",
                Duration::from_millis(100)
            )
            .unwrap(),
            name
        );
    }
}
