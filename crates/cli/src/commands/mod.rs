//! One module per command (mirrors pgBackRest's `src/command/`).

pub mod info;
