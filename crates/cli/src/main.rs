//! The pgkeep binary: parse the configuration, take locks, run one command, map errors to
//! pgBackRest's exit codes.

mod commands;
mod lock;
mod log;

fn main() {
    println!("pgKeep {}", env!("CARGO_PKG_VERSION"));
}
