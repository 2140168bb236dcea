//! One module per command (mirrors pgBackRest's `src/command/`). `run` dispatches and returns the
//! process exit code of a successful run (0, or 1 for "not found" answers such as archive-get's).

pub mod archive;
pub mod backup;
pub mod check;
pub mod control;
pub mod db;
pub mod expire;
pub mod info;
pub mod repo_cmd;
pub mod restore;
pub mod stanza;
pub mod verify;

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_config::CommandId;

use crate::ctx::Ctx;

/// Run the command in `ctx`.
///
/// # Errors
/// The command's error; its code becomes the exit code.
pub fn run(ctx: &Ctx) -> Result<u8> {
    match ctx.cfg.command() {
        CommandId::Version => {
            println!("pgkeep {}", crate::VERSION);
        }
        CommandId::Help => {
            print!(
                "{}",
                pgkeep_config::help::render(crate::VERSION, ctx.cfg.params())?
            );
        }
        CommandId::Start => control::start(ctx)?,
        CommandId::Stop => control::stop(ctx)?,
        CommandId::StanzaCreate => stanza::create(ctx)?,
        CommandId::StanzaUpgrade => stanza::upgrade(ctx)?,
        CommandId::StanzaDelete => stanza::delete(ctx)?,
        CommandId::Info => info::run(ctx)?,
        CommandId::Expire => expire::run(ctx)?,
        CommandId::Verify => verify::run(ctx)?,
        CommandId::RepoLs => repo_cmd::ls(ctx)?,
        CommandId::RepoGet => return repo_cmd::get(ctx),
        CommandId::ArchivePush => archive::push::run(ctx)?,
        CommandId::ArchiveGet => return archive::get::run(ctx),
        CommandId::Check => check::run(ctx)?,
        CommandId::Restore => restore::run(ctx)?,
        CommandId::Backup => backup::run(ctx)?,
        other => {
            return Err(Error::new(
                ErrorKind::FeatureNotSupported,
                format!("{} command is not implemented by pgkeep yet", other.name()),
            ));
        }
    }
    Ok(0)
}
