//! pgBackRest-shaped logging to stdout, stderr and a per-command file.
//!
//! Contract (pgBackRest 2.45 `src/common/log.c`):
//! - A line is `YYYY-MM-DD HH:MM:SS.mmm P00 <LEVEL padded to 6>: [<code>]: message` on stdout and
//!   in the file (timestamp only with `log-timestamp`), and `<LEVEL>: message` on stderr.
//! - A message at or below `log-level-stderr` goes to stderr only; otherwise it goes to stdout when
//!   at or below `log-level-console`. The file gets everything at or below `log-level-file`.
//! - Continuation lines of a multi-line message are indented under the first line's text.
//! - The file is `<log-path>/<stanza|all>-<command>.log`, opened in append mode with a
//!   `PROCESS START` banner; when it cannot be opened a warning is logged and the command goes on.
//!
//! - A transient status line (the progress display, `crate::progress`) may be drawn on stderr with
//!   [`Logger::status`]; it is erased before any console line is written, under the same lock, so
//!   log lines and the status line never interleave.
//!
//! The logger is passed explicitly (no global); it is cheap to share behind an `Arc`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use pgkeep_base::Error;

/// Log levels, most severe first (the order pgBackRest compares them in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing is logged.
    Off,
    /// Errors.
    Error,
    /// Warnings.
    Warn,
    /// Progress of a command.
    Info,
    /// More detail.
    Detail,
    /// Debugging.
    Debug,
    /// Tracing.
    Trace,
}

impl Level {
    /// Parse an option value (`off`, `error`, `warn`, `info`, `detail`, `debug`, `trace`).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Level> {
        Some(match name {
            "off" => Level::Off,
            "error" => Level::Error,
            "warn" => Level::Warn,
            "info" => Level::Info,
            "detail" => Level::Detail,
            "debug" => Level::Debug,
            "trace" => Level::Trace,
            _ => return None,
        })
    }

    fn label(self) -> &'static str {
        match self {
            Level::Off => "OFF",
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Detail => "DETAIL",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }
}

/// Where and how much to log.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// `log-level-console`.
    pub console: Level,
    /// `log-level-stderr`.
    pub stderr: Level,
    /// `log-level-file`.
    pub file: Level,
    /// `log-timestamp`.
    pub timestamp: bool,
    /// Process number shown as `Pnn` (0 for the main process).
    pub process: u32,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            console: Level::Warn,
            stderr: Level::Warn,
            file: Level::Off,
            timestamp: true,
            process: 0,
        }
    }
}

/// A logger; all methods take `&self` and are thread-safe.
pub struct Logger {
    settings: LogSettings,
    file: Mutex<Option<File>>,
    /// `--dry-run`: every message is prefixed `[DRY-RUN] ` (after the error code), as pgBackRest does.
    dry_run: AtomicBool,
    /// Width of the status line drawn on stderr (0: none); also serialises console output.
    status: Mutex<usize>,
}

#[allow(dead_code, reason = "detail/debug logging is used as commands grow")]
impl Logger {
    /// A logger without a file.
    #[must_use]
    pub fn new(settings: LogSettings) -> Logger {
        Logger {
            settings,
            file: Mutex::new(None),
            dry_run: AtomicBool::new(false),
            status: Mutex::new(0),
        }
    }

    /// Open the log file (append, banner). A failure is logged as a warning and file logging is
    /// turned off, as pgBackRest does.
    pub fn open_file(&mut self, path: &str) {
        if self.settings.file == Level::Off {
            return;
        }
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(mut file) => {
                let nonempty = file.metadata().map(|m| m.len() > 0).unwrap_or(false);
                let banner = if nonempty {
                    "\n-------------------PROCESS START-------------------\n"
                } else {
                    "-------------------PROCESS START-------------------\n"
                };
                let _ = file.write_all(banner.as_bytes());
                if let Ok(mut slot) = self.file.lock() {
                    *slot = Some(file);
                }
            }
            Err(e) => {
                self.settings.file = Level::Off;
                self.warn(&format!(
                    "unable to open log file '{path}': {}\nNOTE: process will continue without log file.",
                    pgkeep_base::error::io_cause(&e)
                ));
            }
        }
    }

    /// Prefix every following message with `[DRY-RUN] ` (pgBackRest `logInit(..., dryRun)`).
    pub fn set_dry_run(&self, on: bool) {
        self.dry_run.store(on, Ordering::Relaxed);
    }

    /// The settings in force.
    #[must_use]
    pub fn settings(&self) -> &LogSettings {
        &self.settings
    }

    /// Would a message at `level` be written anywhere?
    #[must_use]
    pub fn enabled(&self, level: Level) -> bool {
        level <= self.settings.console
            || level <= self.settings.stderr
            || level <= self.settings.file
    }

    /// Log an error with its code.
    pub fn error(&self, code: u8, message: &str) {
        self.log(Level::Error, Some(code), message);
    }

    /// Log a warning.
    pub fn warn(&self, message: &str) {
        self.log(Level::Warn, None, message);
    }

    /// Log at info level.
    pub fn info(&self, message: &str) {
        self.log(Level::Info, None, message);
    }

    /// Log at detail level.
    pub fn detail(&self, message: &str) {
        self.log(Level::Detail, None, message);
    }

    /// Log at debug level.
    pub fn debug(&self, message: &str) {
        self.log(Level::Debug, None, message);
    }

    /// Draw `line` as the status line on stderr, in place of the previous one.
    pub fn status(&self, line: &str) {
        let Ok(mut width) = self.status.lock() else {
            return;
        };
        let len = line.chars().count();
        let pad = width.saturating_sub(len);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}{}", " ".repeat(pad));
        let _ = err.flush();
        *width = len;
    }

    /// Erase the status line, if one is drawn.
    pub fn status_clear(&self) {
        if let Ok(mut width) = self.status.lock() {
            erase_status(&mut width);
        }
    }

    /// Log `message` at `level`, with an error code when given.
    pub fn log(&self, level: Level, code: Option<u8>, message: &str) {
        self.log_as(self.settings.process, level, code, message);
    }

    /// Log `message` at `level` on behalf of worker `process` (1 to process-max): pgBackRest
    /// logs what a job did with the id of the local process that ran it (`P01`, `P02`, ...).
    pub fn log_pid(&self, process: u32, level: Level, message: &str) {
        self.log_as(process, level, None, message);
    }

    fn log_as(&self, process: u32, level: Level, code: Option<u8>, message: &str) {
        if level == Level::Off || !self.enabled(level) {
            return;
        }
        let mut prefix = String::new();
        if self.settings.timestamp {
            let now = chrono::Local::now();
            prefix.push_str(&now.format("%Y-%m-%d %H:%M:%S%.3f ").to_string());
        }
        prefix.push_str(&format!("P{process:02} {:>6}: ", level.label()));
        let mut code_text = code.map(|c| format!("[{c:03}]: ")).unwrap_or_default();
        if self.dry_run.load(Ordering::Relaxed) {
            code_text.push_str("[DRY-RUN] ");
        }
        let full = format!("{prefix}{code_text}{message}");
        let short_prefix = format!("{}: ", level.label());
        let short = format!("{short_prefix}{code_text}{message}");

        if level <= self.settings.stderr || level <= self.settings.console {
            let mut status = self.status.lock().ok();
            if let Some(width) = status.as_deref_mut() {
                erase_status(width);
            }
            if level <= self.settings.stderr {
                write_indented(&mut std::io::stderr().lock(), &short, short_prefix.len());
            } else {
                write_indented(&mut std::io::stdout().lock(), &full, prefix.len());
            }
        }
        if level <= self.settings.file
            && let Ok(mut slot) = self.file.lock()
            && let Some(file) = slot.as_mut()
        {
            write_indented(file, &full, prefix.len());
        }
    }
}

/// Erase a status line of `width` characters from stderr.
fn erase_status(width: &mut usize) {
    if *width > 0 {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{}\r", " ".repeat(*width));
        let _ = err.flush();
        *width = 0;
    }
}

/// Write `text` with every line after the first indented by `indent` spaces.
fn write_indented(out: &mut dyn Write, text: &str, indent: usize) {
    let mut buf = String::with_capacity(text.len() + 16);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            buf.push_str(&" ".repeat(indent));
        }
        buf.push_str(line);
        buf.push('\n');
    }
    let _ = out.write_all(buf.as_bytes());
    let _ = out.flush();
}

/// An error as pgBackRest logs it: the message, then its hint on a `HINT:` line.
#[must_use]
pub fn error_text(e: &Error) -> String {
    match e.hint() {
        Some(hint) => format!("{}\nHINT: {hint}", e.message()),
        None => e.message().to_string(),
    }
}

/// The `command begin`/`command end` lines of one command or role (pgBackRest `cmdBegin()`/
/// `cmdEnd()`): `<name> command begin <version>: [<params>] --<option>...` and
/// `<name> command end: completed successfully` (with the elapsed milliseconds when timestamps
/// are logged) or `aborted with exception [NNN]` after the error itself.
pub struct Announce {
    name: String,
    level: Level,
    timestamp: bool,
    begin: Instant,
}

impl Announce {
    /// Log the begin line of `name` at `level`; `options` are shown as given: the command's
    /// parameters (one `[...]` item) first, then the options in pgBackRest's order, as
    /// [`pgkeep_config::Config::display_options`] lists them.
    pub fn begin(
        log: &Logger,
        name: String,
        level: Level,
        options: Vec<String>,
        timestamp: bool,
    ) -> Announce {
        log.log(
            level,
            None,
            &format!(
                "{name} command begin {}: {}",
                crate::VERSION,
                options.join(" ")
            ),
        );
        Announce {
            name,
            level,
            timestamp,
            begin: Instant::now(),
        }
    }

    /// Log the end line: success, or the error (at error level) and its code.
    pub fn end(&self, log: &Logger, result: Result<(), &Error>) {
        let text = match result {
            Ok(()) if self.timestamp => format!(
                "completed successfully ({}ms)",
                self.begin.elapsed().as_millis()
            ),
            Ok(()) => "completed successfully".to_string(),
            Err(e) => {
                log.error(e.code(), &error_text(e));
                format!("aborted with exception [{:03}]", e.code())
            }
        };
        log.log(
            self.level,
            None,
            &format!("{} command end: {text}", self.name),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_order_like_pgbackrest() {
        assert!(Level::Error < Level::Warn);
        assert!(Level::Info <= Level::Info);
        assert_eq!(Level::from_name("detail"), Some(Level::Detail));
        assert_eq!(Level::from_name("loud"), None);
    }

    #[test]
    fn continuation_lines_are_indented() {
        let mut out = Vec::new();
        write_indented(&mut out, "ERROR: [028]: bad\nHINT: fix it", 7);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ERROR: [028]: bad\n       HINT: fix it\n"
        );
    }

    /// A logger writing info and above to `path` only.
    fn file_logger(path: &std::path::Path) -> Logger {
        let mut log = Logger::new(LogSettings {
            console: Level::Off,
            stderr: Level::Off,
            file: Level::Info,
            timestamp: false,
            process: 0,
        });
        log.open_file(path.to_str().unwrap());
        log
    }

    #[test]
    fn file_gets_banner_and_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo-info.log");
        let log = file_logger(&path);
        log.info("hello\nworld");
        log.detail("hidden");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "-------------------PROCESS START-------------------\nP00   INFO: hello\n            world\n"
        );
    }

    #[test]
    fn begin_and_end_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo-archive-push-async.log");
        let log = file_logger(&path);
        let options = vec![
            "[pg_wal/000000010000000000000001]".to_string(),
            "--exec-id=1-a".to_string(),
            "--stanza=demo".to_string(),
        ];
        let ok = Announce::begin(
            &log,
            "archive-push:async".into(),
            Level::Info,
            options,
            false,
        );
        ok.end(&log, Ok(()));
        let failed = Announce::begin(&log, "check".into(), Level::Info, Vec::new(), true);
        let e = Error::new(pgkeep_base::ErrorKind::FileMissing, "gone").with_hint("look");
        failed.end(&log, Err(&e));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().skip(1).collect();
        let v = crate::VERSION;
        assert_eq!(
            lines,
            [
                format!("P00   INFO: archive-push:async command begin {v}: [pg_wal/000000010000000000000001] --exec-id=1-a --stanza=demo").as_str(),
                "P00   INFO: archive-push:async command end: completed successfully",
                format!("P00   INFO: check command begin {v}: ").as_str(),
                "P00  ERROR: [055]: gone",
                "            HINT: look",
                "P00   INFO: check command end: aborted with exception [055]",
            ]
        );
    }
}
