//! pgkeep's configuration: every command and option of pgBackRest 2.45 in one table, and the
//! parser that resolves command line, environment and configuration files exactly as pgBackRest.
//!
//! Contract:
//! - `defs.rs` is the single source of truth (commands, options, types, defaults, allow lists and
//!   ranges, validity per command and role, sections, groups, deprecated names, `depend`, help
//!   text). [`CommandId`] and [`OptionId`] are generated from it; nothing else lists options.
//! - [`parse`] applies pgBackRest's precedence: command line, then `PGKEEP_*`, then
//!   `PGBACKREST_*`, then configuration sections `[stanza:command]`, `[stanza]`,
//!   `[global:command]`, `[global]`, then defaults; errors carry pgBackRest's codes and wording.
//! - [`Config`] is read-only for commands; accessors never panic.
//! - [`help::render`] produces the `help` text from the same table.

#[macro_use]
mod rules;
mod config;
mod defs;
pub mod help;
mod ini;
mod load;
mod parse;
mod value;

pub use config::{Config, Source};
pub use defs::{CommandId, OptionId};
pub use parse::{
    PGKEEP_CONFIG, PGKEEP_ENV_NOT_OPTIONS, PGKEEP_INCLUDE_PATH, PGKEEP_PROGRESS, ParseInput, parse,
};
pub use rules::{
    Allow, CmdRule, CommandDef, CommandRole, Depend, Deprecation, Group, HelpSection, LockType,
    LogLevelDefault, OptionDef, OptionType, RoleSet, Section, commands, deprecations, options,
};
