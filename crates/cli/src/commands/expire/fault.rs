//! Test-only fault points: a command names the moments at which a crash matters (between two repository writes),
//! and a test makes the process kill itself with SIGKILL at exactly one of them.
//!
//! Contract: [`point`] does nothing unless the environment variable [`KILL_AT_ENV`] equals the point's name; then
//! it writes `pgkeep: fault point <name>` to stderr and sends SIGKILL to its own process, which dies at once
//! without unwinding, closing files cleanly or releasing anything a destructor would release (the kernel still
//! drops flock locks). That is the harshest crash the repository must survive, placed deterministically instead
//! of by timing. Any command may add points; their names are documented where they are placed.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Environment variable naming the fault point at which the process kills itself (not `PGKEEP_*`: those are
/// options).
pub const KILL_AT_ENV: &str = "PGKEEPTEST_KILL_AT";

/// A fault point named `name` (see the module contract).
pub fn point(name: &str) {
    if std::env::var(KILL_AT_ENV).is_ok_and(|v| v == name) {
        eprintln!("pgkeep: fault point {name}");
        let _ = kill(Pid::this(), Signal::SIGKILL);
        // SIGKILL cannot be caught; should delivery be delayed, do not run past the point
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unnamed_point_does_nothing() {
        // the variable is not set for unit tests, or names another point
        point("no-such-point-in-unit-tests");
    }
}
