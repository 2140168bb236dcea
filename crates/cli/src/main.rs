//! The pgkeep binary.

fn main() {
    println!("pgKeep {}", env!("CARGO_PKG_VERSION"));
}
