//! The pgkeep binary: parse the configuration, set up logging, run one command, and map errors to
//! pgBackRest's messages and exit codes (`ERROR: [NNN]: message`, exit code NNN).
//!
//! As in pgBackRest's `main()`, a successful `backup` is followed by `expire` in the same process
//! (`expire-auto`, on by default): the backup ends (its end line), the expire begins (its begin line,
//! its own log file), and the exit code is the expire's. The backup lock is held across both.

mod commands;
mod ctx;
mod lock;
mod log;
mod progress;

use std::process::ExitCode;
use std::sync::Arc;

use pgkeep_base::Error;
use pgkeep_config::{CommandId, Config, LogLevelDefault, OptionId, ParseInput};

use crate::ctx::Ctx;
use crate::log::{Announce, Level, LogSettings, Logger};

/// Version printed by `version` and in logs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    let input = ParseInput::from_process();
    let cfg = match pgkeep_config::parse(&input) {
        Ok(cfg) => cfg,
        Err(e) => {
            // Logging is not configured yet: pgBackRest's defaults (errors to stderr).
            Logger::new(LogSettings {
                timestamp: false,
                ..LogSettings::default()
            })
            .error(e.code(), &log::error_text(&e));
            return ExitCode::from(e.code());
        }
    };
    ExitCode::from(run(cfg))
}

fn level(cfg: &Config, opt: OptionId, default: Level) -> Level {
    cfg.str(opt).and_then(Level::from_name).unwrap_or(default)
}

/// The logger of `command`: the parsed command, or the expire that follows a backup, which logs to
/// its own file (`<stanza>-expire.log`) as pgBackRest's `cfgLoadLogFile()` does after the switch.
fn logger_for(cfg: &Config, command: CommandId) -> Logger {
    let settings = LogSettings {
        console: level(cfg, OptionId::LogLevelConsole, Level::Warn),
        stderr: level(cfg, OptionId::LogLevelStderr, Level::Warn),
        file: level(cfg, OptionId::LogLevelFile, Level::Info),
        timestamp: cfg.bool(OptionId::LogTimestamp),
        process: 0,
    };
    let mut logger = Logger::new(settings);
    logger.set_dry_run(cfg.valid(OptionId::DryRun) && cfg.bool(OptionId::DryRun));
    if command.logs_to_file() {
        let log_path = cfg.str(OptionId::LogPath).unwrap_or("/var/log/pgbackrest");
        let stanza = cfg.str(OptionId::Stanza).unwrap_or("all");
        logger.open_file(&format!("{log_path}/{stanza}-{}.log", command.name()));
    }
    logger
}

/// The options shown when `command` begins, in pgBackRest's order. Only options valid for
/// `command` are shown (pgBackRest `cmdOption()`): the expire that follows a backup does not list
/// the backup's own options.
fn ctx_display_options(cfg: &Config, command: CommandId) -> Vec<String> {
    let mut options = cfg.display_options();
    if command != cfg.command() {
        let mut names = std::collections::BTreeSet::new();
        for def in pgkeep_config::options() {
            if !cfg.valid(def.id) || !def.valid(command, cfg.role()) {
                continue;
            }
            match def.group {
                Some(group) => {
                    names.extend(cfg.indexes(group).into_iter().map(|k| def.index_name(k)))
                }
                None => {
                    names.insert(def.name.to_string());
                }
            }
        }
        options.retain(|item| {
            let Some(name) = item.strip_prefix("--") else {
                return true; // command parameters
            };
            let name = name.split('=').next().unwrap_or(name);
            names.contains(name)
                || ["no-", "reset-"]
                    .iter()
                    .any(|p| name.strip_prefix(p).is_some_and(|n| names.contains(n)))
        });
    }
    options
}

/// Log the begin line of `command` at its default level (see [`Announce`]).
fn announce_begin(ctx: &Ctx, command: CommandId) -> Announce {
    let level = match command.log_level_default() {
        LogLevelDefault::Info => Level::Info,
        LogLevelDefault::Debug => Level::Debug,
    };
    Announce::begin(
        &ctx.log,
        command.name().to_string(),
        level,
        ctx_display_options(&ctx.cfg, command),
        ctx.cfg.bool(OptionId::LogTimestamp),
    )
}

/// Run the configured command; returns the exit code.
fn run(mut cfg: Config) -> u8 {
    let command = cfg.command();
    let logger = Arc::new(logger_for(&cfg, command));
    let exec_id = cfg
        .str(OptionId::ExecId)
        .map_or_else(lock::new_exec_id, str::to_string);
    cfg.set_exec_id(&exec_id);
    let mut ctx = Ctx {
        cfg,
        log: logger,
        exec_id,
    };
    let mut announce = announce_begin(&ctx, command);
    // pgBackRest logs configuration warnings after the command begin line.
    for warning in ctx.cfg.warnings() {
        ctx.log.warn(warning);
    }
    let result = if command == CommandId::Backup {
        backup_then_expire(&mut ctx, &mut announce)
    } else {
        commands::run(&ctx)
    };
    announce.end(&ctx.log, result.as_ref().map(drop));
    match result {
        Ok(code) => code,
        Err(e) => e.code(),
    }
}

/// `backup`, then — when it succeeded and `expire-auto` is on — `expire` in the same process, as
/// pgBackRest's `main()` does: the backup's end line, the expire's begin line (and log file), the
/// percentage removed from the lock file, then retention. The backup lock is taken before the
/// backup and held until the expire has ended, so no other backup or expire runs in between.
fn backup_then_expire(ctx: &mut Ctx, announce: &mut Announce) -> Result<u8, Error> {
    let stanza = ctx.stanza()?.to_string();
    let _lock = lock::acquire(
        ctx.lock_path(),
        &stanza,
        lock::LockType::Backup,
        &ctx.exec_id,
    )?;
    commands::run(ctx)?;
    if !ctx.cfg.bool(OptionId::ExpireAuto) {
        return Ok(0);
    }
    announce.end(&ctx.log, Ok(()));
    ctx.log = Arc::new(logger_for(&ctx.cfg, CommandId::Expire));
    *announce = announce_begin(ctx, CommandId::Expire);
    lock::write_backup_data(ctx.lock_path(), &stanza, &ctx.exec_id, None)?;
    commands::expire::run_after_backup(ctx)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        pgkeep_config::parse(&ParseInput {
            args: args.iter().map(|a| (*a).to_string()).collect(),
            env: Vec::new(),
            default_config: Vec::new(),
            default_include_path: "/nonexistent/conf.d".to_string(),
        })
        .unwrap()
    }

    #[test]
    fn expire_after_backup_lists_only_options_valid_for_expire() {
        let mut cfg = parse(&[
            "--stanza=demo",
            "--pg1-path=/pg",
            "--pg2-path=/pg2",
            "--pg1-port=5433",
            "--pg2-port=5434",
            "--repo1-path=/r",
            "--repo1-retention-full=2",
            "--type=full",
            "--start-fast",
            "--no-archive-check",
            "--log-level-console=info",
            "backup",
        ]);
        cfg.set_exec_id("1-00000001");
        // pgBackRest's order: option table order (by name), an indexed option's indexes
        // together, negations in their option's place, the generated exec id among them
        let backup = ctx_display_options(&cfg, CommandId::Backup);
        assert_eq!(
            backup,
            [
                "--no-archive-check",
                "--exec-id=1-00000001",
                "--log-level-console=info",
                "--pg1-path=/pg",
                "--pg2-path=/pg2",
                "--pg1-port=5433",
                "--pg2-port=5434",
                "--repo1-path=/r",
                "--repo1-retention-full=2",
                "--stanza=demo",
                "--start-fast",
                "--type=full",
            ]
        );
        let expire = ctx_display_options(&cfg, CommandId::Expire);
        assert_eq!(
            expire,
            [
                "--exec-id=1-00000001",
                "--log-level-console=info",
                "--repo1-path=/r",
                "--repo1-retention-full=2",
                "--stanza=demo",
            ]
        );
    }
}
