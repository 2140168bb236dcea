//! A one-line progress display for a terminal: percent, amount, throughput and time left.
//!
//! Contract: it draws only when stderr is a terminal (logs and scripts see nothing), at most a few
//! times a second, always on the same line (`\r`), and [`Progress::finish`] erases it so the log
//! lines that follow start clean.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Minimum time between two redraws.
const REDRAW: Duration = Duration::from_millis(250);

/// Progress of a restore.
pub struct Progress {
    total: u64,
    start: Instant,
    last: Option<Instant>,
    enabled: bool,
    width: usize,
}

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
    if !tenths.is_multiple_of(10) {
        format!("{:.1}{unit}", f / d)
    } else {
        format!("{}{unit}", size / div)
    }
}

fn duration_format(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

impl Progress {
    /// A display for `total` bytes; silent unless stderr is a terminal.
    #[must_use]
    pub fn new(total: u64) -> Progress {
        Progress {
            total,
            start: Instant::now(),
            last: None,
            enabled: std::io::stderr().is_terminal(),
            width: 0,
        }
    }

    /// The line for `done` bytes after `elapsed`.
    #[must_use]
    pub fn line(&self, done: u64, elapsed: Duration) -> String {
        let done = done.min(self.total);
        #[allow(clippy::cast_precision_loss, reason = "display only")]
        let pct = if self.total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / self.total as f64
        };
        let secs = elapsed.as_secs_f64();
        #[allow(clippy::cast_precision_loss, reason = "display only")]
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let mut text = format!(
            "restore {pct:.1}% ({} of {})",
            size_format(done),
            size_format(self.total)
        );
        if rate > 0.0 {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "display only"
            )]
            let left = ((self.total - done) as f64 / rate) as u64;
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "display only"
            )]
            let rate = rate as u64;
            text.push_str(&format!(
                ", {}/s, eta {}",
                size_format(rate),
                duration_format(left)
            ));
        }
        text
    }

    /// Redraw if due.
    pub fn update(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < REDRAW)
        {
            return;
        }
        self.last = Some(now);
        let line = self.line(done, now.duration_since(self.start));
        let pad = self.width.saturating_sub(line.len());
        self.width = line.len();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}{}", " ".repeat(pad));
        let _ = err.flush();
    }

    /// Erase the line.
    pub fn finish(&mut self) {
        if self.enabled && self.width > 0 {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{}\r", " ".repeat(self.width));
            let _ = err.flush();
            self.width = 0;
        }
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
        let p = Progress {
            total: 4 * 1024 * 1024,
            start: Instant::now(),
            last: None,
            enabled: false,
            width: 0,
        };
        assert_eq!(
            p.line(1024 * 1024, Duration::from_secs(1)),
            "restore 25.0% (1MB of 4MB), 1MB/s, eta 3s"
        );
        assert_eq!(p.line(0, Duration::ZERO), "restore 0.0% (0B of 4MB)");
        assert_eq!(duration_format(3725), "1h02m");
    }
}
