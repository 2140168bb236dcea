//! The parser: command line, environment and configuration files resolved into a [`Config`],
//! exactly as pgBackRest 2.45's `configParse()` (`src/config/parse.c`) does.
//!
//! Contract, in pgBackRest's phases:
//! 1. command line: `--name[=value]`, `--name value`, `--no-`/`--reset-`, unique prefixes,
//!    deprecated names, `command[:role]`, parameters; errors for unknown or malformed options;
//! 2. environment: `PGKEEP_<NAME>` then `PGBACKREST_<NAME>` (first found wins, so PGKEEP_ takes
//!    precedence); unknown names are warnings;
//! 3. configuration files: sections `[stanza:command]`, `[stanza]`, `[global:command]`,
//!    `[global]`, first section setting an option wins; misplaced options are warnings;
//! 4. validity per command and role (an invalid option on the command line is an error) and the
//!    configured indexes of each group;
//! 5. typed values, allow lists and ranges, `depend`, defaults and required options, in
//!    pgBackRest's resolve order;
//! 6. indexes holding only defaults are dropped;
//!
//! then the group default indexes (`--repo`, `--pg`) and the load-time updates of `load.rs`.
//! Messages and error kinds are pgBackRest's. Nothing here panics on input.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::sync::OnceLock;

use pgkeep_base::error::io_cause;
use pgkeep_base::{Error, ErrorKind, Result, bail, err};

use crate::config::{Config, OptValue, Source};
use crate::defs::{CommandId, OptionId};
use crate::ini::Ini;
use crate::rules::{
    Allow, CommandRole, Group, OptionDef, OptionType, Section, deprecations, options,
};
use crate::value::{Value, check_path, parse_int, parse_size, parse_time};

/// Longest option name pgBackRest accepts.
const OPTION_NAME_SIZE_MAX: usize = 64;
/// Highest index of a group option.
const KEY_MAX: u64 = 256;

/// What the parser reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseInput {
    /// Arguments without the program name.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Candidate main configuration files, in order; the first existing one is read.
    pub default_config: Vec<String>,
    /// Default directory of additional `*.conf` files.
    pub default_include_path: String,
}

/// pgkeep's own main configuration file, read before pgBackRest's.
pub const PGKEEP_CONFIG: &str = "/etc/pgkeep/pgkeep.conf";
/// pgkeep's own environment variables that are not options (so the option parser neither reads
/// nor warns about them): `PGKEEP_PROGRESS` switches the terminal progress display.
pub const PGKEEP_ENV_NOT_OPTIONS: &[&str] = &[PGKEEP_PROGRESS];
/// Forces the terminal progress display on (`1`) or off (`0`).
pub const PGKEEP_PROGRESS: &str = "PGKEEP_PROGRESS";
/// pgkeep's own include directory, used when [`PGKEEP_CONFIG`] exists.
pub const PGKEEP_INCLUDE_PATH: &str = "/etc/pgkeep/conf.d";

impl ParseInput {
    /// The real process: `std::env::args()` (without the program), `std::env::vars()`, config
    /// candidates `/etc/pgkeep/pgkeep.conf`, `/etc/pgbackrest/pgbackrest.conf`,
    /// `/etc/pgbackrest.conf`, and include path `/etc/pgkeep/conf.d` when pgkeep's file exists,
    /// else `/etc/pgbackrest/conf.d`.
    #[must_use]
    pub fn from_process() -> Self {
        let include = if std::path::Path::new(PGKEEP_CONFIG).exists() {
            PGKEEP_INCLUDE_PATH
        } else {
            "/etc/pgbackrest/conf.d"
        };
        ParseInput {
            // args_os: a non-UTF-8 argument must not panic; it is kept lossily and then rejected
            // or used as written
            args: std::env::args_os()
                .skip(1)
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            default_config: vec![
                PGKEEP_CONFIG.to_string(),
                "/etc/pgbackrest/pgbackrest.conf".to_string(),
                "/etc/pgbackrest.conf".to_string(),
            ],
            default_include_path: include.to_string(),
        }
    }
}

/// A value as found, before typing (pgBackRest's `ParseOptionValue`).
#[derive(Debug, Clone, Default)]
struct RawValue {
    found: bool,
    negate: bool,
    reset: bool,
    source: Option<Source>,
    values: Vec<String>,
}

/// Found values of every option, by zero-based key.
type RawOptions = Vec<BTreeMap<u32, RawValue>>;

/// Result of looking a name up (pgBackRest's `CfgParseOptionResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lookup {
    pub(crate) id: OptionId,
    /// Zero-based key (`repo2-path` is 1); 0 for ungrouped options.
    pub(crate) key_idx: u32,
    pub(crate) negate: bool,
    pub(crate) reset: bool,
    pub(crate) deprecated: bool,
    pub(crate) beta: bool,
}

/// Look an option name up: strip `no-`/`reset-`, take the index out, search exact names, then a
/// unique prefix (`prefix_match`), then deprecated names. `Ok(None)` when nothing matches.
pub(crate) fn lookup(
    candidate: &str,
    prefix_match: bool,
    ignore_missing_index: bool,
) -> Result<Option<Lookup>> {
    if candidate.len() > OPTION_NAME_SIZE_MAX {
        bail!(
            OptionInvalid,
            "option '{candidate}' exceeds maximum size of {OPTION_NAME_SIZE_MAX}"
        );
    }
    let (negate, reset, name) = if let Some(rest) = candidate.strip_prefix("no-") {
        (true, false, rest)
    } else if let Some(rest) = candidate.strip_prefix("reset-") {
        (false, true, rest)
    } else {
        (false, false, candidate)
    };

    // take the key out of e.g. repo12-path
    let mut indexed = false;
    let mut key_idx = 0u32;
    let mut base = name.to_string();
    let mut dash_pos = None;
    if let Some(dash) = name.find('-') {
        dash_pos = Some(dash);
        if dash == 0 {
            bail!(
                OptionInvalid,
                "option '{candidate}' cannot begin with a dash"
            );
        }
        let head = name.get(..dash).unwrap_or("");
        let digits = head.len() - head.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        if digits == head.len() {
            bail!(
                OptionInvalid,
                "option '{candidate}' cannot begin with a number"
            );
        }
        if digits > 0 {
            indexed = true;
            let number = head.get(head.len() - digits..).unwrap_or("");
            let key = number.bytes().fold(0u64, |acc, b| {
                acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
            });
            if key > KEY_MAX {
                bail!(
                    OptionInvalid,
                    "option '{candidate}' key exceeds maximum of {KEY_MAX}"
                );
            }
            if key == 0 {
                bail!(
                    OptionInvalid,
                    "option '{candidate}' key must be between 1 and {KEY_MAX}"
                );
            }
            key_idx = u32::try_from(key - 1).unwrap_or(0);
            base = format!(
                "{}{}",
                head.get(..head.len() - digits).unwrap_or(""),
                name.get(dash..).unwrap_or("")
            );
        }
    }

    let defs = options();
    let mut found: Option<&OptionDef> = OptionId::from_name(&base).map(OptionId::def);
    if found.is_none() && prefix_match {
        found = unique(defs.iter().filter(|o| o.name.starts_with(base.as_str())));
    }

    let mut deprecated = false;
    if found.is_none() {
        let deps = deprecations();
        let mut hit = deps.iter().find(|(n, _, _)| *n == base);
        if hit.is_none() && prefix_match {
            hit = unique(deps.iter().filter(|(n, _, _)| n.starts_with(base.as_str())));
        }
        if let Some((_, id, rule)) = hit {
            if indexed && !rule.indexed {
                bail!(
                    OptionInvalid,
                    "deprecated option '{candidate}' cannot have an index"
                );
            }
            if !indexed && !rule.unindexed && !ignore_missing_index {
                let def = id.def();
                let group = def.group.map_or("", |g| g.name());
                let dash = dash_pos.unwrap_or(name.len());
                return Err(err!(OptionInvalid, "deprecated option '{candidate}' requires an index")
                    .with_hint(format!(
                        "add the required index, e.g. {}1{}.\nHINT: consider using the non-deprecated name, e.g. {group}1{}.",
                        name.get(..dash).unwrap_or(""),
                        name.get(dash..).unwrap_or(""),
                        def.name.get(group.len()..).unwrap_or("")
                    )));
            }
            deprecated = true;
            found = Some(id.def());
        }
    }

    let Some(def) = found else {
        return Ok(None);
    };
    if negate && !def.negate {
        bail!(OptionInvalid, "option '{candidate}' cannot be negated");
    }
    if reset && !def.reset() {
        bail!(OptionInvalid, "option '{candidate}' cannot be reset");
    }
    if !indexed && def.deprecated.iter().any(|d| d.name == def.name) {
        deprecated = true;
    }
    if !deprecated {
        if indexed && def.group.is_none() {
            bail!(OptionInvalid, "option '{candidate}' cannot have an index");
        }
        if !indexed
            && !ignore_missing_index
            && let Some(group) = def.group
        {
            return Err(
                err!(OptionInvalid, "option '{candidate}' requires an index").with_hint(format!(
                    "add the required index, e.g. {}1{}.",
                    group.name(),
                    def.name.get(group.name().len()..).unwrap_or("")
                )),
            );
        }
    }
    Ok(Some(Lookup {
        id: def.id,
        key_idx,
        negate,
        reset,
        deprecated,
        beta: def.beta,
    }))
}

fn unique<T>(mut iter: impl Iterator<Item = T>) -> Option<T> {
    let first = iter.next()?;
    if iter.next().is_some() {
        None
    } else {
        Some(first)
    }
}

fn raw_first(raw: &RawOptions, opt: OptionId) -> Option<&RawValue> {
    raw.get(opt as usize).and_then(|m| m.get(&0))
}

fn raw_slot(raw: &mut RawOptions, opt: OptionId, key_idx: u32) -> Option<&mut RawValue> {
    raw.get_mut(opt as usize)
        .map(|m| m.entry(key_idx).or_default())
}

/// Parse and validate the configuration of one run.
///
/// # Errors
/// pgBackRest's errors: `OptionInvalid`, `OptionInvalidValue`, `OptionRequired`,
/// `CommandInvalid`, `CommandRequired`, `ParamInvalid`, `Format` (configuration file syntax),
/// `FileMissing`/`FileOpen`/`FileRead`/`PathMissing`/`PathOpen` (configuration files), `Config`.
pub fn parse(input: &ParseInput) -> Result<Config> {
    let mut raw: RawOptions = vec![BTreeMap::new(); OptionId::ALL.len()];
    let line = parse_command_line(&input.args, &mut raw)?;
    let (command, role, help) = (line.command, line.role, line.help);

    let help_target = (help && command != CommandId::Help).then_some(command);
    let mut config = Config::empty(if help { CommandId::Help } else { command }, role);
    config.params = match help_target {
        Some(_) => std::iter::once(line.command_arg)
            .chain(line.params)
            .collect(),
        None => line.params,
    };
    config.help_command = help_target;
    if command == CommandId::Help || command == CommandId::Version {
        return Ok(config);
    }

    let mut warnings = Vec::new();
    load_env(&input.env, command, role, &mut raw, &mut warnings)?;
    let (ini, files) = load_files(input, &raw)?;
    config.config_files = files;
    if let Some(ini) = ini {
        load_sections(&ini, command, role, &mut raw, &mut warnings)?;
    }
    index_groups(&mut config, &raw, command, role)?;
    let keep = resolve_values(&mut config, &raw, command, help)?;
    drop_default_indexes(&mut config, keep);
    select_default_indexes(&mut config)?;

    config.warnings = warnings;
    if !help {
        crate::load::update(&mut config)?;
    }
    Ok(config)
}

/// What the command line named.
struct CommandLine {
    command: CommandId,
    role: CommandRole,
    /// The command word as written (`archive-push:async`).
    command_arg: String,
    help: bool,
    params: Vec<String>,
}

/// Phase 1: options into `raw`, the command, its role and parameters.
fn parse_command_line(args: &[String], raw: &mut RawOptions) -> Result<CommandLine> {
    let mut command: Option<(CommandId, CommandRole, String)> = None;
    let mut command_set = false;
    let mut help = false;
    let mut params: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args.get(i).map_or("", String::as_str);
        if arg.starts_with('-') {
            let Some(body) = arg.strip_prefix("--") else {
                bail!(OptionInvalid, "option '{arg}' must begin with --");
            };
            let (name, mut value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let Some(lk) = lookup(name, true, false)? else {
                bail!(OptionInvalid, "invalid option '--{body}'");
            };
            let def = lk.id.def();
            let mut negate = lk.negate;
            if !lk.negate && !lk.reset {
                if def.ty == OptionType::Boolean {
                    if let Some(v) = value.as_deref() {
                        if v == "n" {
                            negate = true;
                        } else if v != "y" {
                            bail!(
                                OptionInvalidValue,
                                "boolean option '--{name}' argument must be 'y' or 'n'"
                            );
                        }
                    }
                } else if value.is_none() {
                    if i + 1 >= args.len() {
                        bail!(OptionInvalid, "option '--{name}' requires an argument");
                    }
                    i += 1;
                    value = args.get(i).cloned();
                }
            } else if value.is_some() {
                bail!(OptionInvalid, "option '{name}' does not allow an argument");
            }
            if def.secure {
                return Err(err!(
                    OptionInvalid,
                    "option '{}' is not allowed on the command-line",
                    def.index_name(lk.key_idx + 1)
                )
                .with_hint(
                    "this option could expose secrets in the process list.\n\
                     HINT: specify the option in a configuration file or an environment variable instead.",
                ));
            }
            let index_name = def.index_name(lk.key_idx + 1);
            let Some(slot) = raw_slot(raw, lk.id, lk.key_idx) else {
                continue;
            };
            if !slot.found {
                *slot = RawValue {
                    found: true,
                    negate,
                    reset: lk.reset,
                    source: Some(Source::CommandLine),
                    values: value.into_iter().collect(),
                };
            } else {
                if slot.negate && negate {
                    bail!(
                        OptionInvalid,
                        "option '{index_name}' is negated multiple times"
                    );
                }
                if slot.reset && lk.reset {
                    bail!(
                        OptionInvalid,
                        "option '{index_name}' is reset multiple times"
                    );
                }
                if (slot.reset && negate) || (slot.negate && lk.reset) {
                    bail!(
                        OptionInvalid,
                        "option '{index_name}' cannot be negated and reset"
                    );
                }
                if slot.negate != negate {
                    bail!(
                        OptionInvalid,
                        "option '{index_name}' cannot be set and negated"
                    );
                }
                if slot.reset != lk.reset {
                    bail!(
                        OptionInvalid,
                        "option '{index_name}' cannot be set and reset"
                    );
                }
                match value {
                    Some(v) if def.ty.multi() => slot.values.push(v),
                    _ => bail!(
                        OptionInvalid,
                        "option '{index_name}' cannot be set multiple times"
                    ),
                }
            }
        } else if !command_set {
            let (id, role) = match CommandId::from_name(arg) {
                Some(id) => (id, CommandRole::Main),
                None => {
                    let parts: Vec<&str> = arg.split(':').collect();
                    let found = match parts.as_slice() {
                        [cmd, role] => match CommandId::from_name(cmd) {
                            Some(id) => match CommandRole::from_name(role) {
                                Some(role) => Some((id, role)),
                                None => bail!(CommandInvalid, "invalid command role '{role}'"),
                            },
                            None => None,
                        },
                        _ => None,
                    };
                    match found {
                        Some(found) => found,
                        None => bail!(CommandInvalid, "invalid command '{arg}'"),
                    }
                }
            };
            if !id.def().roles.contains(role) {
                bail!(CommandInvalid, "invalid command/role combination '{arg}'");
            }
            if id == CommandId::Help {
                help = true;
            } else {
                command_set = true;
            }
            command = Some((id, role, arg.to_string()));
        } else {
            params.push(arg.to_string());
        }
        i += 1;
    }

    if !command_set && !help {
        if !args.is_empty() {
            bail!(CommandRequired, "no command found");
        }
        help = true;
    }
    let (command, role, command_arg) =
        command.unwrap_or((CommandId::Help, CommandRole::Main, String::new()));
    if !params.is_empty() && !help && !command.def().parameter_allowed {
        bail!(ParamInvalid, "command does not allow parameters");
    }
    Ok(CommandLine {
        command,
        role,
        command_arg,
        help,
        params,
    })
}

/// Phase 2: `PGKEEP_*` then `PGBACKREST_*` variables into `raw`; the first found wins.
fn load_env(
    env: &[(String, String)],
    command: CommandId,
    role: CommandRole,
    raw: &mut RawOptions,
    warnings: &mut Vec<String>,
) -> Result<()> {
    for prefix in ["PGKEEP_", "PGBACKREST_"] {
        for (var, value) in env {
            if PGKEEP_ENV_NOT_OPTIONS.contains(&var.as_str()) {
                continue;
            }
            let Some(rest) = var.strip_prefix(prefix) else {
                continue;
            };
            let key = rest.to_ascii_lowercase().replace('_', "-");
            let Some(lk) = lookup(&key, false, false)? else {
                warnings.push(format!("environment contains invalid option '{key}'"));
                continue;
            };
            if lk.negate {
                warnings.push(format!(
                    "environment contains invalid negate option '{key}'"
                ));
                continue;
            }
            if lk.reset {
                warnings.push(format!("environment contains invalid reset option '{key}'"));
                continue;
            }
            let def = lk.id.def();
            if !def.valid(command, role) {
                continue;
            }
            if value.is_empty() {
                bail!(
                    OptionInvalidValue,
                    "environment variable '{key}' must have a value"
                );
            }
            let Some(slot) = raw_slot(raw, lk.id, lk.key_idx) else {
                continue;
            };
            if slot.found {
                continue;
            }
            slot.found = true;
            slot.source = Some(Source::Env);
            if def.ty == OptionType::Boolean {
                if value == "n" {
                    slot.negate = true;
                } else if value != "y" {
                    bail!(
                        OptionInvalidValue,
                        "environment boolean option '{key}' must be 'y' or 'n'"
                    );
                }
            } else if def.ty.multi() {
                slot.values = value.split(':').map(str::to_string).collect();
            } else {
                slot.values = vec![value.clone()];
            }
        }
    }

    Ok(())
}

/// Phase 3: the sections of the configuration files that apply to this run into `raw`.
fn load_sections(
    ini: &Ini,
    command: CommandId,
    role: CommandRole,
    raw: &mut RawOptions,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let stanza = raw_first(raw, OptionId::Stanza).and_then(|r| r.values.first().cloned());
    let mut sections = Vec::new();
    if let Some(stanza) = &stanza {
        sections.push(format!("{stanza}:{}", command.name()));
        sections.push(stanza.clone());
    }
    sections.push(format!("global:{}", command.name()));
    sections.push("global".to_string());

    for (section_idx, section) in sections.iter().enumerate() {
        let Some(content) = ini.section(section) else {
            continue;
        };
        let mut seen: HashMap<(OptionId, u32), &str> = HashMap::new();
        for (key, values) in &content.keys {
            let Some(lk) = lookup(key, false, false)? else {
                warnings.push(format!(
                    "configuration file contains invalid option '{key}'"
                ));
                continue;
            };
            if lk.negate {
                warnings.push(format!("configuration file contains negate option '{key}'"));
                continue;
            }
            if lk.reset {
                warnings.push(format!("configuration file contains reset option '{key}'"));
                continue;
            }
            let def = lk.id.def();
            if def.section == Section::CommandLine {
                warnings.push(format!(
                    "configuration file contains command-line only option '{key}'"
                ));
                continue;
            }
            if let Some(other) = seen.get(&(lk.id, lk.key_idx)) {
                bail!(
                    OptionInvalid,
                    "configuration file contains duplicate options ('{key}', '{other}') in section '[{section}]'"
                );
            }
            seen.insert((lk.id, lk.key_idx), key);
            if !def.valid(command, role) {
                if section_idx % 2 == 0 {
                    warnings.push(format!(
                        "configuration file contains option '{key}' invalid for section '{section}'"
                    ));
                }
                continue;
            }
            if def.section == Section::Stanza
                && (section == "global" || section.starts_with("global:"))
            {
                warnings.push(format!(
                    "configuration file contains stanza-only option '{key}' in global section '{section}'"
                ));
                continue;
            }
            let index_name = def.index_name(lk.key_idx + 1);
            let Some(slot) = raw_slot(raw, lk.id, lk.key_idx) else {
                continue;
            };
            if slot.found {
                continue;
            }
            slot.found = true;
            slot.source = Some(Source::ConfigFile);
            if values.len() > 1 {
                if !def.ty.multi() {
                    bail!(
                        OptionInvalid,
                        "option '{index_name}' cannot be set multiple times"
                    );
                }
                slot.values.clone_from(values);
            } else {
                let value = values.first().map_or("", String::as_str);
                if value.is_empty() {
                    bail!(
                        OptionInvalidValue,
                        "section '{section}', key '{key}' must have a value"
                    );
                }
                if def.ty == OptionType::Boolean {
                    if value == "n" {
                        slot.negate = true;
                    } else if value != "y" {
                        bail!(
                            OptionInvalidValue,
                            "boolean option '{key}' must be 'y' or 'n'"
                        );
                    }
                } else {
                    slot.values = vec![value.to_string()];
                }
            }
        }
    }
    Ok(())
}

/// Phase 4: validity of each option for the command and role; the configured group indexes.
fn index_groups(
    config: &mut Config,
    raw: &RawOptions,
    command: CommandId,
    role: CommandRole,
) -> Result<()> {
    let mut group_keys: [BTreeSet<u32>; 2] = [BTreeSet::new(), BTreeSet::new()];
    for def in options() {
        let data_valid = def.valid(command, role);
        if !data_valid {
            if raw.get(def.id as usize).is_some_and(|m| !m.is_empty()) {
                bail!(
                    OptionInvalid,
                    "option '{}' not valid for command '{}'",
                    def.name,
                    command.name()
                );
            }
            continue;
        }
        if let Some(data) = config.options.get_mut(def.id as usize) {
            data.valid = true;
        }
        if let Some(group) = def.group {
            config.groups[group.slot()].valid = true;
            if let Some(map) = raw.get(def.id as usize) {
                for (key, value) in map {
                    if value.found && !value.reset {
                        group_keys[group.slot()].insert(*key);
                    }
                }
            }
        }
    }
    for group in Group::ALL {
        let data = &mut config.groups[group.slot()];
        if !data.valid {
            continue;
        }
        let found = &group_keys[group.slot()];
        let mut keys: Vec<u32> = found.iter().copied().collect();
        // pg1 is always kept so that pg1 means the primary, as pgBackRest requires
        if keys.is_empty() || (group == Group::Pg && !found.contains(&0)) {
            keys.insert(0, 0);
        }
        data.keys = keys;
    }

    Ok(())
}

/// Phase 5: typed values in resolve order; returns, per group, which indexes hold a value that
/// is not a default.
fn resolve_values(
    config: &mut Config,
    raw: &RawOptions,
    command: CommandId,
    help: bool,
) -> Result<[Vec<bool>; 2]> {
    let mut keep: [Vec<bool>; 2] = [
        vec![false; config.groups[0].keys.len()],
        vec![false; config.groups[1].keys.len()],
    ];
    for &opt in resolve_order() {
        let def = opt.def();
        if !config.valid(opt) {
            continue;
        }
        let keys: Vec<u32> = match def.group {
            Some(group) => config.groups[group.slot()].keys.clone(),
            None => vec![0],
        };
        let mut values = Vec::with_capacity(keys.len());
        for (list_idx, &key_idx) in keys.iter().enumerate() {
            let rv = raw
                .get(opt as usize)
                .and_then(|m| m.get(&key_idx))
                .cloned()
                .unwrap_or_default();
            let value = resolve_value(config, raw, def, command, key_idx, list_idx, &rv, help)?;
            if let Some(group) = def.group
                && value.source != Source::Default
                && let Some(k) = keep[group.slot()].get_mut(list_idx)
            {
                *k = true;
            }
            values.push(value);
        }
        if let Some(data) = config.options.get_mut(opt as usize) {
            data.values = values;
        }
    }

    Ok(keep)
}

/// Phase 6: drop group indexes holding only defaults, keeping at least one (then key 1).
fn drop_default_indexes(config: &mut Config, mut keep: [Vec<bool>; 2]) {
    for group in Group::ALL {
        let slot = group.slot();
        let mut pos = config.groups[slot].keys.len();
        while pos > 0 {
            pos -= 1;
            if config.groups[slot].keys.len() == 1 {
                break;
            }
            if keep[slot].get(pos).copied().unwrap_or(false) {
                continue;
            }
            config.groups[slot].keys.remove(pos);
            keep[slot].remove(pos);
            for def in options() {
                if def.group == Some(group)
                    && let Some(data) = config.options.get_mut(def.id as usize)
                    && pos < data.values.len()
                {
                    data.values.remove(pos);
                }
            }
        }
        let data = &mut config.groups[slot];
        if data.keys.len() == 1 && !keep[slot].first().copied().unwrap_or(false) {
            data.keys = vec![0];
        }
    }
}

/// The default index of each group: `--repo`/`--pg` when given (it must be configured), else the
/// first configured index.
fn select_default_indexes(config: &mut Config) -> Result<()> {
    for group in Group::ALL {
        let selector = group.selector();
        let selected = match config.slot(selector, None).and_then(|s| s.value.clone()) {
            Some(Value::Int(key)) => Some(key),
            _ => None,
        };
        let display = config.display(selector, None).unwrap_or_default();
        let repo_valid = config.valid(OptionId::Repo);
        let data = &mut config.groups[group.slot()];
        data.default_exists = group == Group::Pg || repo_valid;
        if let Some(key) = selected {
            let Some(pos) = data.keys.iter().position(|k| i64::from(*k) + 1 == key) else {
                bail!(
                    OptionInvalidValue,
                    "key '{display}' is not valid for '{}' option",
                    selector.name()
                );
            };
            data.default_pos = pos;
            data.default_exists = true;
        }
    }

    Ok(())
}

/// Resolve one value slot (pgBackRest phase 5 for one option index).
#[allow(clippy::too_many_arguments)]
fn resolve_value(
    config: &Config,
    raw: &RawOptions,
    def: &OptionDef,
    command: CommandId,
    key_idx: u32,
    list_idx: usize,
    rv: &RawValue,
    help: bool,
) -> Result<OptValue> {
    let option_set = rv.found && (def.ty == OptionType::Boolean || !rv.negate) && !rv.reset;
    let source = rv.source.unwrap_or(Source::Default);
    let mut out = OptValue {
        value: None,
        source: Source::Default,
        negate: rv.negate,
        reset: rv.reset,
        display: None,
    };
    let index_name = def.index_name(key_idx + 1);

    let mut depend_valid = true;
    let depend = def.depend_for(command);
    if let Some(dep) = depend {
        let dep_def = dep.option.def();
        let dep_list_idx = if dep_def.group.is_some() { list_idx } else { 0 };
        let dep_value = config
            .options
            .get(dep.option as usize)
            .filter(|d| d.valid)
            .and_then(|d| d.values.get(dep_list_idx))
            .and_then(|v| v.value.as_ref());
        depend_valid = match dep_value {
            None => false,
            Some(v) => {
                dep.values.is_empty() || dep.values.iter().any(|want| value_matches(v, want))
            }
        };
        if !depend_valid && option_set && source == Source::CommandLine {
            let mut dep_name = dep_def.index_name(key_idx + 1);
            if dep_value.is_none() {
                bail!(
                    OptionInvalid,
                    "option '{index_name}' not valid without option '{dep_name}'"
                );
            }
            let mut detail = String::new();
            if dep_def.ty == OptionType::Boolean {
                if dep.values.first() == Some(&"n") {
                    dep_name = format!("no-{dep_name}");
                }
            } else {
                let quoted: Vec<String> = dep.values.iter().map(|v| format!("'{v}'")).collect();
                detail = if quoted.len() == 1 {
                    format!(" = {}", quoted.join(""))
                } else {
                    format!(" in ({})", quoted.join(", "))
                };
            }
            bail!(
                OptionInvalid,
                "option '{index_name}' not valid without option '{dep_name}'{detail}"
            );
        }
    }

    if depend_valid {
        if option_set {
            out.source = source;
            if def.beta && def.id != OptionId::Beta {
                let beta_on = raw_first(raw, OptionId::Beta).is_some_and(|b| b.found && !b.negate);
                if !beta_on {
                    return Err(err!(
                        OptionInvalid,
                        "option '{index_name}' is not valid without option 'beta'"
                    )
                    .with_hint(
                        "beta features require the --beta option to prevent accidental usage.",
                    ));
                }
            }
            let (value, display) = typed_value(def, command, &index_name, rv)?;
            out.value = Some(value);
            out.display = display;
        } else if rv.negate {
            out.source = source;
        } else if let Some(default) = def.default_for(command) {
            out.value = Some(default_value(def, default)?);
            out.display = Some(default.to_string());
        } else if def.required_for(command) && !help {
            let mut error = err!(
                OptionRequired,
                "{} command requires option: {index_name}",
                command.name()
            );
            if def.section == Section::Stanza {
                error = error.with_hint("does this stanza exist?");
            }
            return Err(error);
        }
    } else if let Some(default) = depend.and_then(|d| d.default) {
        out.value = Some(Value::Bool(default));
    }
    Ok(out)
}

/// Does a resolved value equal a depend/allow value written in the table?
fn value_matches(value: &Value, want: &str) -> bool {
    match value {
        Value::Bool(b) => (*b && want == "y") || (!*b && want == "n"),
        Value::Str(s) => s == want,
        Value::Int(i) => parse_int(want) == Some(*i),
        Value::List(_) | Value::Hash(_) => false,
    }
}

/// Type a found value, check it against the allow list or range for the command.
fn typed_value(
    def: &OptionDef,
    command: CommandId,
    index_name: &str,
    rv: &RawValue,
) -> Result<(Value, Option<String>)> {
    match def.ty {
        OptionType::Boolean => return Ok((Value::Bool(!rv.negate), None)),
        OptionType::Hash => {
            let mut pairs: Vec<(String, String)> = Vec::new();
            for item in &rv.values {
                let Some((k, v)) = item.split_once('=') else {
                    bail!(
                        OptionInvalid,
                        "key/value '{item}' not valid for '{index_name}' option"
                    );
                };
                match pairs.iter_mut().find(|(key, _)| key == k) {
                    Some(pair) => pair.1 = v.to_string(),
                    None => pairs.push((k.to_string(), v.to_string())),
                }
            }
            return Ok((Value::Hash(pairs), None));
        }
        OptionType::List => return Ok((Value::List(rv.values.clone()), None)),
        _ => {}
    }
    let text = rv.values.first().cloned().unwrap_or_default();
    let value = match def.ty {
        OptionType::Integer | OptionType::Size | OptionType::Time => {
            let Some(number) = parse_number(def.ty, &text) else {
                bail!(
                    OptionInvalidValue,
                    "'{text}' is not valid for '{index_name}' option"
                );
            };
            if let Allow::Range(min, max) = def.allow_for(command) {
                let (Some(min), Some(max)) = (parse_number(def.ty, min), parse_number(def.ty, max))
                else {
                    bail!(Assert, "invalid range for option '{}'", def.name);
                };
                if number < min || number > max {
                    bail!(
                        OptionInvalidValue,
                        "'{text}' is out of range for '{index_name}' option"
                    );
                }
            }
            Value::Int(number)
        }
        OptionType::StringId => Value::Str(text.clone()),
        _ => {
            if text.is_empty() {
                bail!(
                    OptionInvalidValue,
                    "'{text}' must be >= 1 character for '{index_name}' option"
                );
            }
            if def.ty == OptionType::Path {
                match check_path(&text) {
                    Ok(path) => Value::Str(path),
                    Err(why) => bail!(
                        OptionInvalidValue,
                        "'{text}' {why} for '{index_name}' option"
                    ),
                }
            } else {
                Value::Str(text.clone())
            }
        }
    };
    if let Allow::List(list) = def.allow_for(command) {
        let allowed = match &value {
            Value::Int(number) => list
                .iter()
                .any(|item| parse_number(def.ty, item) == Some(*number)),
            Value::Str(s) => list.contains(&s.as_str()),
            _ => true,
        };
        if !allowed {
            bail!(
                OptionInvalidValue,
                "'{text}' is not allowed for '{index_name}' option"
            );
        }
    }
    Ok((value, Some(text)))
}

fn parse_number(ty: OptionType, text: &str) -> Option<i64> {
    match ty {
        OptionType::Size => parse_size(text),
        OptionType::Time => parse_time(text),
        _ => parse_int(text),
    }
}

/// Type a default written in the table.
pub(crate) fn default_value(def: &OptionDef, text: &str) -> Result<Value> {
    Ok(match def.ty {
        OptionType::Boolean => Value::Bool(text == "y"),
        OptionType::Integer | OptionType::Size | OptionType::Time => {
            match parse_number(def.ty, text) {
                Some(n) => Value::Int(n),
                None => bail!(Assert, "invalid default '{text}' for option '{}'", def.name),
            }
        }
        OptionType::List => Value::List(vec![text.to_string()]),
        OptionType::Hash => Value::Hash(Vec::new()),
        _ => Value::Str(text.to_string()),
    })
}

/// pgBackRest's option resolve order: `stanza` first, then repeated passes in name order adding
/// every option whose dependencies (option-wide and per command) are already resolved.
pub(crate) fn resolve_order() -> &'static [OptionId] {
    static ORDER: OnceLock<Vec<OptionId>> = OnceLock::new();
    ORDER.get_or_init(|| {
        let mut order = vec![OptionId::Stanza];
        let mut done = vec![false; OptionId::ALL.len()];
        if let Some(d) = done.get_mut(OptionId::Stanza as usize) {
            *d = true;
        }
        loop {
            let mut progress = false;
            for def in options() {
                if done.get(def.id as usize).copied().unwrap_or(true) {
                    continue;
                }
                let ready = |dep: Option<crate::rules::Depend>| {
                    dep.is_none_or(|d| done.get(d.option as usize).copied().unwrap_or(false))
                };
                if !ready(def.depend) || !def.cmds.iter().all(|c| ready(c.depend)) {
                    continue;
                }
                order.push(def.id);
                if let Some(d) = done.get_mut(def.id as usize) {
                    *d = true;
                }
                progress = true;
            }
            if !progress {
                break;
            }
        }
        // a dependency cycle would leave options out; append them so they are still resolved
        for def in options() {
            if !done.get(def.id as usize).copied().unwrap_or(true) {
                order.push(def.id);
            }
        }
        order
    })
}

/// Read the configuration files as `cfgFileLoad()` decides (see §7.2 of the format notes):
/// `--config` alone reads only that file (required); `--config-path` moves both defaults;
/// `--config-include-path` requires the directory; `--no-config` skips the main file.
fn load_files(input: &ParseInput, raw: &RawOptions) -> Result<(Option<Ini>, Vec<String>)> {
    let config_raw = raw_first(raw, OptionId::Config).filter(|r| r.found);
    let config_found = config_raw.is_some();
    let mut config_required = config_found;
    let config_path = raw_first(raw, OptionId::ConfigPath)
        .filter(|r| r.found)
        .and_then(|r| r.values.first().cloned());
    let include_raw = raw_first(raw, OptionId::ConfigIncludePath)
        .filter(|r| r.found)
        .and_then(|r| r.values.first().cloned());
    let mut include_required = include_raw.is_some();

    let mut candidates = input.default_config.clone();
    let mut include_default = input.default_include_path.clone();
    if let Some(base) = &config_path {
        let mut moved: Vec<String> = Vec::new();
        for candidate in &input.default_config {
            let name = candidate.rsplit('/').next().unwrap_or(candidate);
            let path = format!("{base}/{name}");
            if !moved.contains(&path) {
                moved.push(path);
            }
        }
        candidates = moved;
        include_default = format!("{base}/conf.d");
    }

    let mut load_config = true;
    let mut load_include = true;
    if config_raw.is_some_and(|r| r.negate) {
        load_config = false;
        config_required = false;
    }
    if config_found && !(config_path.is_some() || include_required) {
        load_include = false;
        include_required = false;
    }

    let mut ini = Ini::default();
    let mut any = false;
    let mut files = Vec::new();
    if load_config {
        if config_required {
            let file = config_raw
                .and_then(|r| r.values.first().cloned())
                .unwrap_or_default();
            if let Some(text) = read_file(&file, true)? {
                ini.add_text(&text)?;
                any |= !text.is_empty();
                files.push(file);
            }
        } else {
            for candidate in &candidates {
                if let Some(text) = read_file(candidate, false)? {
                    ini.add_text(&text)?;
                    any |= !text.is_empty();
                    files.push(candidate.clone());
                    break;
                }
            }
        }
    }
    if load_include {
        let dir = include_raw.unwrap_or(include_default);
        if let Some(names) = list_conf(&dir, include_required)? {
            for name in names {
                let path = format!("{dir}/{name}");
                if let Some(text) = read_file(&path, false)?
                    && !text.is_empty()
                {
                    ini.add_text(&text)?;
                    any = true;
                    files.push(path);
                }
            }
        }
    }
    Ok((any.then_some(ini), files))
}

/// Read a whole file; `None` when missing and not required.
fn read_file(path: &str, required: bool) -> Result<Option<String>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if required {
                bail!(FileMissing, "unable to open missing file '{path}' for read");
            }
            return Ok(None);
        }
        Err(e) => {
            return Err(Error::new(
                ErrorKind::FileOpen,
                format!("unable to open file '{path}' for read: {}", io_cause(&e)),
            ));
        }
    };
    let mut bytes = Vec::new();
    if let Err(e) = file.read_to_end(&mut bytes) {
        return Err(Error::io(
            ErrorKind::FileRead,
            "unable to read file",
            path,
            &e,
        ));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// `*.conf` names in `dir`, sorted; `None` when the directory is missing and not required.
fn list_conf(dir: &str, required: bool) -> Result<Option<Vec<String>>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if required {
                bail!(
                    PathMissing,
                    "unable to list file info for missing path '{dir}'"
                );
            }
            return Ok(None);
        }
        Err(e) => {
            return Err(Error::io(
                ErrorKind::PathOpen,
                "unable to list file info for path",
                dir,
                &e,
            ));
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            Error::io(
                ErrorKind::PathOpen,
                "unable to list file info for path",
                dir,
                &e,
            )
        })?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.len() > ".conf".len() && name.ends_with(".conf") && !entry.path().is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(Some(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (option, key index, negate, reset, deprecated)
    type Found = Option<(OptionId, u32, bool, bool, bool)>;

    fn found(name: &str, prefix: bool) -> Found {
        lookup(name, prefix, false)
            .unwrap()
            .map(|l| (l.id, l.key_idx, l.negate, l.reset, l.deprecated))
    }

    #[test]
    fn lookup_strips_prefixes_and_indexes() {
        let cases: &[(&str, bool, Found)] = &[
            (
                "stanza",
                false,
                Some((OptionId::Stanza, 0, false, false, false)),
            ),
            ("stan", false, None),
            (
                "stan",
                true,
                Some((OptionId::Stanza, 0, false, false, false)),
            ),
            (
                "repo12-path",
                false,
                Some((OptionId::RepoPath, 11, false, false, false)),
            ),
            (
                "repo-path",
                false,
                Some((OptionId::RepoPath, 0, false, false, true)),
            ),
            (
                "no-online",
                false,
                Some((OptionId::Online, 0, true, false, false)),
            ),
            (
                "reset-repo2-type",
                false,
                Some((OptionId::RepoType, 1, false, true, false)),
            ),
            (
                "db3-host",
                false,
                Some((OptionId::PgHost, 2, false, false, true)),
            ),
            (
                "db-user",
                false,
                Some((OptionId::PgHostUser, 0, false, false, true)),
            ),
            (
                "repo4-s3-verify-tls",
                false,
                Some((OptionId::RepoStorageVerifyTls, 3, false, false, true)),
            ),
            (
                "archive-queue-max",
                false,
                Some((OptionId::ArchivePushQueueMax, 0, false, false, true)),
            ),
            ("bogus", true, None),
            ("pro", true, None),
        ];
        for (name, prefix, want) in cases {
            assert_eq!(found(name, *prefix), *want, "{name}");
        }
    }

    #[test]
    fn lookup_errors() {
        let cases = [
            ("-x", "option '-x' cannot begin with a dash"),
            ("12-x", "option '12-x' cannot begin with a number"),
            (
                "repo999-path",
                "option 'repo999-path' key exceeds maximum of 256",
            ),
            ("log2-path", "option 'log2-path' cannot have an index"),
            ("pg-path", "option 'pg-path' requires an index"),
            ("no-stanza", "option 'no-stanza' cannot be negated"),
            ("reset-type", "option 'reset-type' cannot be reset"),
            (
                "retention2-diff",
                "deprecated option 'retention2-diff' cannot have an index",
            ),
        ];
        for (name, message) in cases {
            let e = lookup(name, false, false).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::OptionInvalid, "{name}");
            assert_eq!(e.message(), message);
        }
        let long = "x".repeat(65);
        assert!(lookup(&long, false, false).is_err());
        // help accepts a group option without its index
        assert_eq!(
            lookup("pg-path", false, true).unwrap().map(|l| l.id),
            Some(OptionId::PgPath)
        );
    }

    #[test]
    fn resolve_order_puts_stanza_first_and_dependencies_before_dependents() {
        let order = resolve_order();
        assert_eq!(order.first(), Some(&OptionId::Stanza));
        assert_eq!(order.len(), OptionId::ALL.len());
        let pos = |id: OptionId| order.iter().position(|o| *o == id).unwrap();
        for def in options() {
            for dep in def.cmds.iter().filter_map(|c| c.depend).chain(def.depend) {
                assert!(
                    pos(dep.option) < pos(def.id),
                    "{} after {}",
                    def.name,
                    dep.option.name()
                );
            }
        }
    }
}
