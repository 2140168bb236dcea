//! Finding and validating the PostgreSQL cluster a command works on (pgBackRest `src/db/helper.c`,
//! `src/command/check/common.c`, `pgValidate()` in `src/command/stanza/common.c`).

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_pg::PgVersion;
use pgkeep_pg::client::Client;
use pgkeep_pg::control::{self, ControlInfo};

use crate::ctx::Ctx;

/// A connected cluster (primary or standby) and which `pgN` it is.
pub struct Primary {
    /// The `N` of `pgN`.
    pub key: u32,
    /// The open session.
    pub client: Client,
}

/// Read and parse `global/pg_control` under `pgN-path`.
///
/// # Errors
/// Missing or unreadable file, or a file pgkeep cannot parse.
pub fn read_control(ctx: &Ctx, key: u32) -> Result<ControlInfo> {
    let pg_path = ctx.pg_path(key)?;
    let path = format!("{}/global/pg_control", pg_path.trim_end_matches('/'));
    let bytes = std::fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::new(
                ErrorKind::FileMissing,
                format!("unable to open missing file '{path}' for read"),
            )
        } else {
            Error::io(
                ErrorKind::FileOpen,
                "unable to open file",
                format!("{path}' for read"),
                &e,
            )
        }
    })?;
    control::parse(&bytes).map_err(|e| e.context(format!("unable to read '{path}'")))
}

/// The clusters found among `pg1..pgN` (pgBackRest `DbGetResult`).
pub struct Found {
    /// The primary, when one was reached.
    pub primary: Option<Primary>,
    /// The first standby reached (never looked for with `primary_only`).
    pub standby: Option<Primary>,
}

/// Connect to every configured `pgN` in index order and sort them by `pg_is_in_recovery()`
/// (pgBackRest `dbGet()`): the primary, and unless `primary_only` the first standby; further
/// standbys are disconnected. Connection failures are warnings (`unable to check pgN: ...`).
///
/// # Errors
/// `DbConnect` (56) when more than one primary is found, when `primary_required` and no primary
/// was reached, or when `standby_required` and no standby was reached.
pub fn get(
    ctx: &Ctx,
    primary_only: bool,
    primary_required: bool,
    standby_required: bool,
) -> Result<Found> {
    let mut found = Found {
        primary: None,
        standby: None,
    };
    for key in ctx.pg_keys() {
        let opts = ctx.pg_client_options(key);
        let attempt = Client::connect(&opts).and_then(|mut client| {
            let standby = client.is_in_recovery()?;
            Ok((client, standby))
        });
        match attempt {
            Ok((client, false)) => {
                if found.primary.is_some() {
                    return Err(Error::new(
                        ErrorKind::DbConnect,
                        "more than one primary cluster found",
                    ));
                }
                found.primary = Some(Primary { key, client });
            }
            Ok((client, true)) => {
                if found.standby.is_none() && !primary_only {
                    found.standby = Some(Primary { key, client });
                }
            }
            Err(e) => ctx.log.warn(&format!(
                "unable to check pg{key}: [{}] {}",
                e.kind().name(),
                e.message()
            )),
        }
    }
    if found.primary.is_none() && primary_required {
        return Err(Error::new(
            ErrorKind::DbConnect,
            "unable to find primary cluster - cannot proceed",
        )
        .with_hint("are all available clusters in recovery?"));
    }
    if found.standby.is_none() && standby_required {
        return Err(Error::new(
            ErrorKind::DbConnect,
            "unable to find standby cluster - cannot proceed",
        ));
    }
    Ok(found)
}

/// Connect to every configured `pgN` and return the primary; connection failures are warnings as
/// long as a primary is found.
///
/// # Errors
/// `DbConnect` (56) when no primary can be reached or more than one is found.
pub fn primary(ctx: &Ctx) -> Result<Primary> {
    get(ctx, true, true, false)?.primary.ok_or_else(|| {
        Error::new(
            ErrorKind::DbConnect,
            "unable to find primary cluster - cannot proceed",
        )
        .with_hint("are all available clusters in recovery?")
    })
}

/// pgBackRest `checkDbConfig()`: the server behind `client` must be the cluster of `pgN-path`
/// (same version as its `pg_control`, same data directory) and, with `archive_check` (primaries
/// only), archive through pgkeep or pgbackrest; `archive_mode=always` is refused when
/// `archive_mode_check`.
///
/// # Errors
/// `DbMismatch` (58) with pgBackRest's hint, `ArchiveDisabled` (87), `FeatureNotSupported` (25),
/// `ArchiveCommandInvalid` (68).
pub fn check_db_config(
    client: &mut Client,
    pg_version: PgVersion,
    key: u32,
    pg_path: &str,
    archive_check: bool,
    archive_mode_check: bool,
) -> Result<()> {
    let db_version = client.version();
    let db_path = client.data_directory()?;
    if pg_version != db_version || pg_path.trim_end_matches('/') != db_path.trim_end_matches('/') {
        return Err(Error::new(
            ErrorKind::DbMismatch,
            format!(
                "version '{db_version}' and path '{db_path}' queried from cluster do not match version '{pg_version}' and '{pg_path}' read from '{pg_path}/global/pg_control'"
            ),
        )
        .with_hint(format!(
            "the pg{key}-path and pg{key}-port settings likely reference different clusters."
        )));
    }
    if !archive_check {
        return Ok(());
    }
    let mode = client.setting("archive_mode")?.unwrap_or_default();
    if mode == "off" {
        return Err(Error::new(
            ErrorKind::ArchiveDisabled,
            "archive_mode must be enabled",
        ));
    }
    if archive_mode_check && mode == "always" {
        return Err(Error::new(
            ErrorKind::FeatureNotSupported,
            "archive_mode=always not supported",
        ));
    }
    archive_command_valid(client.setting("archive_command")?.as_deref())
}

/// `archive_command` must run pgkeep (or pgbackrest, which writes the same archive).
///
/// # Errors
/// `ArchiveCommandInvalid` (68) naming the command (`[NULL]` when unset).
pub fn archive_command_valid(command: Option<&str>) -> Result<()> {
    match command {
        Some(c) if c.contains("pgkeep") || c.contains("pgbackrest") => Ok(()),
        other => Err(Error::new(
            ErrorKind::ArchiveCommandInvalid,
            format!(
                "archive_command '{}' must contain pgkeep or pgbackrest",
                other.unwrap_or("[NULL]")
            ),
        )),
    }
}

/// The cluster's control data, validated against the running server when `--online`: the
/// version and data directory the server reports must match `pg_control` and `pgN-path`.
///
/// # Errors
/// Connection failures, `DbMismatch` (58) when the server is another cluster.
pub fn validate(ctx: &Ctx) -> Result<ControlInfo> {
    if !ctx.online() {
        return read_control(ctx, ctx.pg_keys().first().copied().unwrap_or(1));
    }
    let mut primary = primary(ctx)?;
    let control = read_control(ctx, primary.key)?;
    let pg_path = ctx.pg_path(primary.key)?;
    check_db_config(
        &mut primary.client,
        control.version,
        primary.key,
        pg_path,
        false,
        false,
    )?;
    Ok(control)
}
