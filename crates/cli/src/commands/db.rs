//! Finding and validating the PostgreSQL cluster a command works on (pgBackRest `src/db/helper.c`,
//! `src/command/check/common.c`, `pgValidate()` in `src/command/stanza/common.c`).

use pgkeep_base::{Error, ErrorKind, Result};
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
    let server_version = primary.client.version();
    let data_directory = primary.client.data_directory()?;
    let pg_path = ctx.pg_path(primary.key)?;
    if server_version != control.version
        || data_directory.trim_end_matches('/') != pg_path.trim_end_matches('/')
    {
        return Err(Error::new(
            ErrorKind::DbMismatch,
            format!(
                "version '{server_version}' and path '{data_directory}' queried from cluster do not match version '{}' and '{pg_path}' read from '{pg_path}/global/pg_control'",
                control.version
            ),
        )
        .with_hint(format!(
            "the pg{k}-path and pg{k}-port settings likely reference different clusters.",
            k = primary.key
        )));
    }
    Ok(control)
}
