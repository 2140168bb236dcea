//! The pgkeep binary: parse the configuration, set up logging, run one command, and map errors to
//! pgBackRest's messages and exit codes (`ERROR: [NNN]: message`, exit code NNN).

mod commands;
mod ctx;
mod lock;
mod log;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use pgkeep_base::Error;
use pgkeep_config::{Config, LogLevelDefault, OptionId, ParseInput};

use crate::ctx::Ctx;
use crate::log::{Level, LogSettings, Logger};

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
            .error(e.code(), &full_message(&e));
            return ExitCode::from(e.code());
        }
    };
    ExitCode::from(run(cfg))
}

/// Message plus hint lines, as pgBackRest prints them.
fn full_message(e: &Error) -> String {
    match e.hint() {
        Some(hint) => format!("{}\nHINT: {hint}", e.message()),
        None => e.message().to_string(),
    }
}

fn level(cfg: &Config, opt: OptionId, default: Level) -> Level {
    cfg.str(opt).and_then(Level::from_name).unwrap_or(default)
}

fn logger_for(cfg: &Config) -> Logger {
    let settings = LogSettings {
        console: level(cfg, OptionId::LogLevelConsole, Level::Warn),
        stderr: level(cfg, OptionId::LogLevelStderr, Level::Warn),
        file: level(cfg, OptionId::LogLevelFile, Level::Info),
        timestamp: cfg.bool(OptionId::LogTimestamp),
        process: 0,
    };
    let mut logger = Logger::new(settings);
    logger.set_dry_run(cfg.valid(OptionId::DryRun) && cfg.bool(OptionId::DryRun));
    let command = cfg.command();
    if command.logs_to_file() {
        let log_path = cfg.str(OptionId::LogPath).unwrap_or("/var/log/pgbackrest");
        let stanza = cfg.str(OptionId::Stanza).unwrap_or("all");
        logger.open_file(&format!("{log_path}/{stanza}-{}.log", command.name()));
    }
    logger
}

/// The options shown at `command begin`, with the generated exec id as pgBackRest shows it.
fn ctx_display_options(cfg: &Config, exec_id: &str) -> Vec<String> {
    let mut options = cfg.display_options();
    if !options.iter().any(|o| o.starts_with("--exec-id=")) {
        options.push(format!("--exec-id={exec_id}"));
    }
    options
}

/// Run the configured command; returns the exit code.
fn run(cfg: Config) -> u8 {
    let command = cfg.command();
    let logger = Arc::new(logger_for(&cfg));
    let exec_id = cfg
        .str(OptionId::ExecId)
        .map_or_else(lock::new_exec_id, str::to_string);
    let begin = Instant::now();
    // pgBackRest logs the begin/end lines of every command at the command's default level.
    let announce_level = match command.log_level_default() {
        LogLevelDefault::Info => Level::Info,
        LogLevelDefault::Debug => Level::Debug,
    };
    let announce = |message: &str| logger.log(announce_level, None, message);
    {
        let mut options = ctx_display_options(&cfg, &exec_id);
        options.sort();
        announce(&format!(
            "{} command begin {VERSION}: {}",
            command.name(),
            options.join(" ")
        ));
    }
    // pgBackRest logs configuration warnings after the command begin line.
    for warning in cfg.warnings() {
        logger.warn(warning);
    }
    let ctx = Ctx {
        cfg,
        log: Arc::clone(&logger),
        exec_id,
    };
    let result = commands::run(&ctx);
    match result {
        Ok(code) => {
            announce(&format!(
                "{} command end: completed successfully ({}ms)",
                command.name(),
                begin.elapsed().as_millis()
            ));
            code
        }
        Err(e) => {
            logger.error(e.code(), &full_message(&e));
            announce(&format!(
                "{} command end: aborted with exception [{:03}]",
                command.name(),
                e.code()
            ));
            e.code()
        }
    }
}
