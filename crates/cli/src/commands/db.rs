//! Finding and validating the PostgreSQL cluster a command works on (pgBackRest `src/db/helper.c`,
//! `src/command/check/common.c`, `pgValidate()` in `src/command/stanza/common.c`).

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_pg::client::Client;
use pgkeep_pg::control::{self, ControlInfo};

use crate::ctx::Ctx;

/// A connected primary and which `pgN` it is.
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

/// Connect to every configured `pgN` and return the primary; connection failures are warnings as
/// long as a primary is found.
///
/// # Errors
/// `DbConnect` (56) when no primary can be reached or more than one is found.
pub fn primary(ctx: &Ctx) -> Result<Primary> {
    let mut found: Option<Primary> = None;
    for key in ctx.pg_keys() {
        let opts = ctx.pg_client_options(key);
        let attempt = Client::connect(&opts).and_then(|mut client| {
            let standby = client.is_in_recovery()?;
            Ok((client, standby))
        });
        match attempt {
            Ok((client, false)) => {
                if found.is_some() {
                    return Err(Error::new(
                        ErrorKind::DbConnect,
                        "more than one primary cluster found",
                    ));
                }
                found = Some(Primary { key, client });
            }
            Ok((_, true)) => {}
            Err(e) => ctx.log.warn(&format!(
                "unable to check pg{key}: [{}] {}",
                e.kind().name(),
                e.message()
            )),
        }
    }
    found.ok_or_else(|| {
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
