//! Progress of a long copy (backup, restore): a live one-line display for a person watching a
//! terminal, and the percentage arithmetic pgBackRest uses in its logs and lock file.
//!
//! Contract:
//! - The display is drawn on stderr only when stderr is a terminal, or when the environment
//!   variable `PGKEEP_PROGRESS=1` forces it (`PGKEEP_PROGRESS=0` turns it off even on a terminal).
//!   Logs, files and scripts therefore see nothing by default, and no option exists for it: it is
//!   not part of pgBackRest's interface (`main` keeps the variable from the option parser, which
//!   would otherwise warn about an unknown `PGKEEP_*` option).
//! - The line is `<what> <pct>% (<done> of <total>), <rate>/s, eta <time>`, redrawn in place
//!   (`\r`) at most four times a second, and erased by [`Progress::finish`] (or on drop, so an
//!   error path leaves no half line behind). It is drawn through the [`Logger`], which erases it
//!   before printing a log line to the console, so log lines never start mid-line.
//! - Whatever the display, a copy that runs long logs its progress at info level every
//!   [`LOG_EVERY`] (`backup progress: 42.0% (1.2GB of 2.9GB), 95.1MB/s, eta 18s`), so a log file or
//!   a console at `log-level-console=info` shows a long backup or restore moving. pgBackRest has
//!   no such line; a copy shorter than [`LOG_EVERY`] logs none, so short runs read the same.
//! - [`percent_x100`] is pgBackRest's `percentComplete`: `done / total * 10000` in double
//!   precision, truncated (10000 when there is nothing to copy). The backup's detail lines and the
//!   `pctCplt` of the lock file use it, so they match pgBackRest's to the last digit.

use std::time::{Duration, Instant};

use crate::log::Logger;

/// The environment variable that forces the display on (`1`) or off (`0`); listed in
/// [`pgkeep_config::PGKEEP_ENV_NOT_OPTIONS`] so the option parser leaves it alone.
pub const ENV: &str = pgkeep_config::PGKEEP_PROGRESS;

/// Minimum time between two redraws.
pub const REDRAW: Duration = Duration::from_millis(250);

/// Time between two progress lines in the log.
pub const LOG_EVERY: Duration = Duration::from_secs(30);

/// `12.3MB` style sizes (pgBackRest's `strSizeFormat`).
#[must_use]
pub fn size_format(size: u64) -> String {
    const K: u64 = 1024;
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let f = size as f64;
    let (unit, div) = match size {
        s if s < K => return format!("{s}B"),
        s if s < K * K => ("KB", K),
        s if s < K * K * K => ("MB", K * K),
        _ => ("GB", K * K * K),
    };
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let d = div as f64;
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "non-negative, bounded"
    )]
    let tenths = (f / (d / 10.0)) as u64;
    if tenths.is_multiple_of(10) {
        format!("{}{unit}", size / div)
    } else {
        format!("{:.1}{unit}", f / d)
    }
}

/// Percent × 100 of `done` over `total`, exactly as pgBackRest computes it.
#[must_use]
pub fn percent_x100(done: u64, total: u64) -> u32 {
    if total == 0 {
        return 10_000;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "pgBackRest's double arithmetic, truncated; `as` saturates"
    )]
    let pct = ((done as f64 / total as f64) * 10_000.0) as u32;
    pct
}

/// `42s`, `3m07s`, `1h02m`.
fn duration_format(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Should the display be drawn, given `PGKEEP_PROGRESS` and whether stderr is a terminal?
#[must_use]
pub fn wanted(env: Option<&str>, terminal: bool) -> bool {
    match env.map(str::trim) {
        Some("1") => true,
        Some("0") => false,
        _ => terminal,
    }
}

/// The progress line for `done` of `total` bytes after `elapsed`.
#[must_use]
pub fn line(what: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let done = done.min(total);
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let pct = if total == 0 {
        100.0
    } else {
        done as f64 * 100.0 / total as f64
    };
    let secs = elapsed.as_secs_f64();
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let mut text = format!(
        "{what} {pct:.1}% ({} of {})",
        size_format(done),
        size_format(total)
    );
    if rate >= 1.0 {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "display only"
        )]
        let (left, rate) = (((total - done) as f64 / rate) as u64, rate as u64);
        text.push_str(&format!(
            ", {}/s, eta {}",
            size_format(rate),
            duration_format(left)
        ));
    }
    text
}

/// A live progress display of one copy.
pub struct Progress<'a> {
    log: &'a Logger,
    what: &'static str,
    total: u64,
    start: Instant,
    last: Option<Instant>,
    enabled: bool,
    /// The most shown so far: the display never goes backwards.
    shown: u64,
    /// When the last progress line was logged (the start before the first).
    logged: Instant,
}

impl<'a> Progress<'a> {
    /// A display of `what` (`backup`, `restore`) for `total` bytes; silent unless wanted (see the
    /// module contract).
    #[must_use]
    pub fn new(log: &'a Logger, what: &'static str, total: u64) -> Progress<'a> {
        use std::io::IsTerminal;
        let env = std::env::var(ENV).ok();
        Progress {
            log,
            what,
            total,
            start: Instant::now(),
            last: None,
            enabled: wanted(env.as_deref(), std::io::stderr().is_terminal()),
            shown: 0,
            logged: Instant::now(),
        }
    }

    /// Is anything drawn?
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `done` bytes are copied: redraw if the last draw is old enough, log a progress line if the
    /// last one is [`LOG_EVERY`] old.
    pub fn update(&mut self, done: u64) {
        let now = Instant::now();
        self.shown = self.shown.max(done);
        if now.duration_since(self.logged) >= LOG_EVERY {
            self.logged = now;
            self.log.info(&format!(
                "{} progress: {}",
                self.what,
                line("", self.shown, self.total, now.duration_since(self.start)).trim_start()
            ));
        }
        if !self.enabled
            || self
                .last
                .is_some_and(|last| now.duration_since(last) < REDRAW)
        {
            return;
        }
        self.last = Some(now);
        self.log.status(&line(
            self.what,
            self.shown,
            self.total,
            now.duration_since(self.start),
        ));
    }

    /// Erase the line.
    pub fn finish(&mut self) {
        if self.enabled {
            self.log.status_clear();
        }
    }
}

impl Drop for Progress<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_pgbackrest() {
        assert_eq!(size_format(1023), "1023B");
        assert_eq!(size_format(1024), "1KB");
        assert_eq!(size_format(1536), "1.5KB");
        assert_eq!(size_format(24 * 1024 * 1024), "24MB");
        assert_eq!(size_format(3_900_000_000), "3.6GB");
    }

    #[test]
    fn line_has_percent_rate_and_eta() {
        let mb = 1024 * 1024;
        assert_eq!(
            line("restore", mb, 4 * mb, Duration::from_secs(1)),
            "restore 25.0% (1MB of 4MB), 1MB/s, eta 3s"
        );
        assert_eq!(
            line("backup", 0, 4 * mb, Duration::ZERO),
            "backup 0.0% (0B of 4MB)"
        );
        assert_eq!(
            line("backup", 3 * mb, 2 * mb, Duration::from_secs(2)),
            "backup 100.0% (2MB of 2MB), 1MB/s, eta 0s"
        );
        assert_eq!(
            line("backup", 0, 0, Duration::ZERO),
            "backup 100.0% (0B of 0B)"
        );
        assert_eq!(
            line("backup", 100 * mb, 10_000 * mb, Duration::from_secs(100)),
            "backup 1.0% (100MB of 9.8GB), 1MB/s, eta 2h45m"
        );
        assert_eq!(duration_format(3725), "1h02m");
        assert_eq!(duration_format(187), "3m07s");
    }

    #[test]
    fn percent_matches_pgbackrest_double_arithmetic() {
        assert_eq!(percent_x100(0, 0), 10_000);
        assert_eq!(percent_x100(0, 7), 0);
        assert_eq!(percent_x100(1, 3), 3333);
        assert_eq!(percent_x100(2, 3), 6666);
        assert_eq!(percent_x100(7, 7), 10_000);
        // 57 / 100 * 10000 is 5699.999... in double precision: pgBackRest logs 56.99%, not 57.00%
        assert_eq!(percent_x100(57, 100), 5699);
    }

    #[test]
    fn a_long_copy_logs_its_progress_at_info_level() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo-backup.log");
        let mut logger = Logger::new(crate::log::LogSettings {
            file: crate::log::Level::Info,
            timestamp: false,
            ..crate::log::LogSettings::default()
        });
        logger.open_file(path.to_str().unwrap());
        let mb = 1024 * 1024;
        let mut progress = Progress::new(&logger, "backup", 4 * mb);
        progress.update(mb);
        let logged = || std::fs::read_to_string(&path).unwrap_or_default();
        assert!(!logged().contains("progress"), "nothing before LOG_EVERY");
        progress.logged -= LOG_EVERY;
        progress.start -= Duration::from_secs(2);
        progress.update(2 * mb);
        let text = logged();
        assert!(
            text.contains("P00   INFO: backup progress: 50.0% (2MB of 4MB), ")
                && text.contains("/s, eta 2s\n"),
            "{text}"
        );
        // the next line waits for the next period
        progress.update(3 * mb);
        assert_eq!(logged().matches("backup progress").count(), 1);
    }

    #[test]
    fn environment_forces_or_silences_the_display() {
        assert!(wanted(None, true));
        assert!(!wanted(None, false));
        assert!(wanted(Some("1"), false));
        assert!(!wanted(Some("0"), true));
        assert!(wanted(Some("yes"), true));
        assert!(!wanted(Some(""), false));
    }

    #[test]
    fn disabled_display_draws_nothing_and_never_panics() {
        let log = Logger::new(crate::log::LogSettings::default());
        let mut p = Progress::new(&log, "backup", 10);
        p.enabled = false;
        p.update(5);
        p.finish();
        assert_eq!(p.last, None, "nothing drawn");
    }
}
