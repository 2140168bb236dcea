//! The resolved configuration handed to commands.
//!
//! Contract: a [`Config`] holds, for every option valid for the command and role, one value per
//! configured index of its group (one value for ungrouped options), with where it came from.
//! Accessors never panic: an option that is not valid for the command, not set, or of another type
//! reads as unset (`None`, `false`, empty). Indexed accessors take the key as written by the user
//! (`2` for `repo2-path`); the plain accessors read a grouped option at the group's default index
//! (`--repo`/`--pg` when given, else the first configured index), as pgBackRest's `cfgOption*()`.

use std::time::Duration;

use crate::defs::{CommandId, OptionId};
use crate::rules::{CommandRole, Group, OptionType};
use crate::value::Value;

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Built-in default, or not set at all.
    Default,
    /// A configuration file.
    ConfigFile,
    /// A `PGKEEP_*` or `PGBACKREST_*` environment variable.
    Env,
    /// The command line.
    CommandLine,
}

/// One value slot of an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OptValue {
    pub(crate) value: Option<Value>,
    pub(crate) source: Source,
    pub(crate) negate: bool,
    pub(crate) reset: bool,
    /// The value as given (before path normalisation), or the raw default.
    pub(crate) display: Option<String>,
}

/// All value slots of an option.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct OptData {
    pub(crate) valid: bool,
    pub(crate) values: Vec<OptValue>,
}

/// Configured indexes of a group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct GroupData {
    pub(crate) valid: bool,
    /// Zero-based keys (`repo3` is 2), sorted.
    pub(crate) keys: Vec<u32>,
    /// Position in `keys` of the default index.
    pub(crate) default_pos: usize,
    /// Whether a default index exists (always for pg; for repo when `--repo` is valid).
    pub(crate) default_exists: bool,
}

/// The parsed and validated configuration of one command run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub(crate) command: CommandId,
    pub(crate) role: CommandRole,
    pub(crate) params: Vec<String>,
    pub(crate) help_command: Option<CommandId>,
    pub(crate) warnings: Vec<String>,
    pub(crate) config_files: Vec<String>,
    pub(crate) options: Vec<OptData>,
    pub(crate) groups: [GroupData; 2],
}

impl Config {
    pub(crate) fn empty(command: CommandId, role: CommandRole) -> Config {
        Config {
            command,
            role,
            params: Vec::new(),
            help_command: None,
            warnings: Vec::new(),
            config_files: Vec::new(),
            options: vec![OptData::default(); OptionId::ALL.len()],
            groups: [GroupData::default(), GroupData::default()],
        }
    }

    /// The command; [`CommandId::Help`] for `help ...` and for no arguments at all.
    #[must_use]
    pub fn command(&self) -> CommandId {
        self.command
    }

    /// The role (`main` unless `command:role` was given).
    #[must_use]
    pub fn role(&self) -> CommandRole {
        self.role
    }

    /// Command parameters. For `help` these are the words after `help` (`["backup", "type"]`).
    #[must_use]
    pub fn params(&self) -> &[String] {
        &self.params
    }

    /// For `help COMMAND ...`: the command help was asked for (its options were resolved).
    #[must_use]
    pub fn help_command(&self) -> Option<CommandId> {
        self.help_command
    }

    /// Warnings pgBackRest would log while loading: unknown or misplaced options in
    /// configuration files and the environment, retention not set, and the like.
    #[must_use]
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Configuration files that were read, in order.
    #[must_use]
    pub fn config_files(&self) -> &[String] {
        &self.config_files
    }

    /// Is the option valid for this command and role?
    #[must_use]
    pub fn valid(&self, opt: OptionId) -> bool {
        self.options.get(opt as usize).is_some_and(|d| d.valid)
    }

    /// Name with index: `option_name(RepoPath, Some(2))` is `repo2-path`; without an index (or for
    /// ungrouped options) the plain name.
    #[must_use]
    pub fn option_name(opt: OptionId, idx: Option<u32>) -> String {
        match idx {
            Some(key) => opt.def().index_name(key),
            None => opt.name().to_string(),
        }
    }

    /// Configured keys of the group, sorted; `[1]` when none is configured.
    #[must_use]
    pub fn indexes(&self, group: Group) -> Vec<u32> {
        let data = &self.groups[group.slot()];
        if !data.valid || data.keys.is_empty() {
            return vec![1];
        }
        data.keys.iter().map(|k| k + 1).collect()
    }

    /// The default key of the group: `--repo`/`--pg` when given, else the first configured key.
    #[must_use]
    pub fn default_index(&self, group: Group) -> u32 {
        let data = &self.groups[group.slot()];
        data.keys.get(data.default_pos).map_or(1, |k| k + 1)
    }

    pub(crate) fn slot(&self, opt: OptionId, idx: Option<u32>) -> Option<&OptValue> {
        let data = self.options.get(opt as usize)?;
        if !data.valid {
            return None;
        }
        match opt.def().group {
            Some(group) => {
                let g = &self.groups[group.slot()];
                let pos = match idx {
                    Some(key) => g.keys.iter().position(|k| k + 1 == key)?,
                    None => g.default_pos,
                };
                data.values.get(pos)
            }
            None => data.values.first(),
        }
    }

    /// The slot at a position of the group's index list (0 for ungrouped options).
    pub(crate) fn slot_pos(&self, opt: OptionId, pos: usize) -> Option<&OptValue> {
        self.options
            .get(opt as usize)
            .filter(|d| d.valid)
            .and_then(|d| d.values.get(pos))
    }

    /// Replace the value at a position (load-time updates).
    pub(crate) fn set_pos(
        &mut self,
        opt: OptionId,
        pos: usize,
        value: Value,
        source: Source,
        display: String,
    ) {
        if let Some(slot) = self
            .options
            .get_mut(opt as usize)
            .filter(|d| d.valid)
            .and_then(|d| d.values.get_mut(pos))
        {
            slot.value = Some(value);
            slot.source = source;
            slot.display = Some(display);
        }
    }

    /// Make an option invalid for the rest of the run (the deprecated `compress`).
    pub(crate) fn invalidate(&mut self, opt: OptionId) {
        if let Some(data) = self.options.get_mut(opt as usize) {
            data.valid = false;
            data.values.clear();
        }
    }

    fn value(&self, opt: OptionId, idx: Option<u32>) -> Option<&Value> {
        self.slot(opt, idx).and_then(|s| s.value.as_ref())
    }

    fn str_at(&self, opt: OptionId, idx: Option<u32>) -> Option<&str> {
        match self.value(opt, idx)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    fn bool_at(&self, opt: OptionId, idx: Option<u32>) -> bool {
        matches!(self.value(opt, idx), Some(Value::Bool(true)))
    }

    fn int_at(&self, opt: OptionId, idx: Option<u32>) -> Option<i64> {
        match (opt.def().ty, self.value(opt, idx)?) {
            (OptionType::Integer | OptionType::Size, Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    fn time_at(&self, opt: OptionId, idx: Option<u32>) -> Option<Duration> {
        match (opt.def().ty, self.value(opt, idx)?) {
            (OptionType::Time, Value::Int(ms)) => {
                Some(Duration::from_millis(u64::try_from(*ms).ok()?))
            }
            _ => None,
        }
    }

    fn list_at(&self, opt: OptionId, idx: Option<u32>) -> &[String] {
        match self.value(opt, idx) {
            Some(Value::List(l)) => l,
            _ => &[],
        }
    }

    fn hash_at(&self, opt: OptionId, idx: Option<u32>) -> Vec<(String, String)> {
        match self.value(opt, idx) {
            Some(Value::Hash(h)) => h.clone(),
            _ => Vec::new(),
        }
    }

    /// Does the option have a value (given or default)?
    #[must_use]
    pub fn is_set(&self, opt: OptionId) -> bool {
        self.value(opt, None).is_some()
    }

    /// String, path or string-id value.
    #[must_use]
    pub fn str(&self, opt: OptionId) -> Option<&str> {
        self.str_at(opt, None)
    }

    /// Boolean value (`false` when unset).
    #[must_use]
    pub fn bool(&self, opt: OptionId) -> bool {
        self.bool_at(opt, None)
    }

    /// Integer value; sizes in bytes.
    #[must_use]
    pub fn int(&self, opt: OptionId) -> Option<i64> {
        self.int_at(opt, None)
    }

    /// Time value.
    #[must_use]
    pub fn time(&self, opt: OptionId) -> Option<Duration> {
        self.time_at(opt, None)
    }

    /// List value, in the order given.
    #[must_use]
    pub fn list(&self, opt: OptionId) -> &[String] {
        self.list_at(opt, None)
    }

    /// Hash value, in the order given (a repeated key keeps its first position, last value).
    #[must_use]
    pub fn hash(&self, opt: OptionId) -> Vec<(String, String)> {
        self.hash_at(opt, None)
    }

    /// Does `opt` at key `idx` have a value?
    #[must_use]
    pub fn is_set_idx(&self, opt: OptionId, idx: u32) -> bool {
        self.value(opt, Some(idx)).is_some()
    }

    /// [`Config::str`] at key `idx`.
    #[must_use]
    pub fn str_idx(&self, opt: OptionId, idx: u32) -> Option<&str> {
        self.str_at(opt, Some(idx))
    }

    /// [`Config::bool`] at key `idx`.
    #[must_use]
    pub fn bool_idx(&self, opt: OptionId, idx: u32) -> bool {
        self.bool_at(opt, Some(idx))
    }

    /// [`Config::int`] at key `idx`.
    #[must_use]
    pub fn int_idx(&self, opt: OptionId, idx: u32) -> Option<i64> {
        self.int_at(opt, Some(idx))
    }

    /// [`Config::time`] at key `idx`.
    #[must_use]
    pub fn time_idx(&self, opt: OptionId, idx: u32) -> Option<Duration> {
        self.time_at(opt, Some(idx))
    }

    /// [`Config::list`] at key `idx`.
    #[must_use]
    pub fn list_idx(&self, opt: OptionId, idx: u32) -> &[String] {
        self.list_at(opt, Some(idx))
    }

    /// [`Config::hash`] at key `idx`.
    #[must_use]
    pub fn hash_idx(&self, opt: OptionId, idx: u32) -> Vec<(String, String)> {
        self.hash_at(opt, Some(idx))
    }

    /// Where the value came from (`Default` when unset or invalid for the command).
    #[must_use]
    pub fn source(&self, opt: OptionId, idx: Option<u32>) -> Source {
        self.slot(opt, idx).map_or(Source::Default, |s| s.source)
    }

    /// The value as the user wrote it (paths before trailing-slash removal), or the default as
    /// written in the table; for booleans `y`/`n`; lists and hashes joined with `, `.
    #[must_use]
    pub fn display(&self, opt: OptionId, idx: Option<u32>) -> Option<String> {
        let slot = self.slot(opt, idx)?;
        match slot.value.as_ref()? {
            Value::Bool(b) => Some(if *b { "y" } else { "n" }.to_string()),
            Value::List(l) => Some(l.join(", ")),
            Value::Hash(h) => Some(
                h.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            Value::Int(_) | Value::Str(_) => slot.display.clone(),
        }
    }

    /// Was the option given as `--no-NAME`?
    #[must_use]
    pub fn negated(&self, opt: OptionId, idx: Option<u32>) -> bool {
        self.slot(opt, idx).is_some_and(|s| s.negate)
    }

    /// Was the option given as `--reset-NAME`?
    #[must_use]
    pub fn was_reset(&self, opt: OptionId, idx: Option<u32>) -> bool {
        self.slot(opt, idx).is_some_and(|s| s.reset)
    }

    /// Record the execution id this run uses when none was given, as pgBackRest sets `exec-id`
    /// on itself: it is then shown among the options, in its place ([`Config::display_options`]).
    pub fn set_exec_id(&mut self, exec_id: &str) {
        self.fill_unset(OptionId::ExecId, exec_id, Source::CommandLine);
    }

    /// Set the defaults that pgBackRest takes from its own executable path: `cmd`, `repoN-host-cmd`
    /// and `pgN-host-cmd`, where valid and not set.
    pub fn apply_exe_default(&mut self, exe: &str) {
        for opt in [OptionId::Cmd, OptionId::RepoHostCmd, OptionId::PgHostCmd] {
            self.fill_unset(opt, exe, Source::Default);
        }
    }

    /// Give every unset slot of `opt` (when valid) the string `value`, recorded as from `source`.
    fn fill_unset(&mut self, opt: OptionId, value: &str, source: Source) {
        let Some(data) = self.options.get_mut(opt as usize) else {
            return;
        };
        if !data.valid {
            return;
        }
        for slot in &mut data.values {
            if slot.value.is_none() && slot.source == Source::Default {
                slot.value = Some(Value::Str(value.to_string()));
                slot.display = Some(value.to_string());
                slot.source = source;
            }
        }
    }

    /// The options of this run that did not come from defaults, as pgBackRest logs them when a
    /// command begins: first `[param, ...]` when there are parameters, then `--name=value`,
    /// `--no-name`, `--reset-name`, one item per value (lists and hashes repeat the option), in
    /// option order and index order; secure values are `<redacted>`, values with spaces quoted.
    #[must_use]
    pub fn display_options(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.params.is_empty() {
            let quoted: Vec<String> = self.params.iter().map(|p| quote(p)).collect();
            out.push(format!("[{}]", quoted.join(", ")));
        }
        let command = self.help_command.unwrap_or(self.command);
        for def in crate::rules::options() {
            if !self.valid(def.id) || !def.valid(command, self.role) {
                continue;
            }
            let keys: Vec<Option<u32>> = match def.group {
                Some(group) => self.groups[group.slot()]
                    .keys
                    .iter()
                    .map(|k| Some(k + 1))
                    .collect(),
                None => vec![None],
            };
            for key in keys {
                let Some(slot) = self.slot(def.id, key) else {
                    continue;
                };
                let name = match key {
                    Some(k) => def.index_name(k),
                    None => def.name.to_string(),
                };
                if slot.negate {
                    out.push(format!("--no-{name}"));
                } else if slot.reset {
                    out.push(format!("--reset-{name}"));
                } else if slot.source != Source::Default {
                    if def.secure {
                        out.push(format!("--{name}=<redacted>"));
                        continue;
                    }
                    let values: Vec<String> = match slot.value.as_ref() {
                        Some(Value::Bool(_)) => {
                            out.push(format!("--{name}"));
                            continue;
                        }
                        Some(Value::List(l)) => l.clone(),
                        Some(Value::Hash(h)) => h.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                        Some(_) => slot.display.iter().cloned().collect(),
                        None => Vec::new(),
                    };
                    for value in values {
                        out.push(format!("--{name}={}", quote(&value)));
                    }
                }
            }
        }
        out
    }

    /// [`Config::display_options`] as one string, each item preceded by a space (the text after
    /// `command begin <version>:` in pgBackRest's log).
    #[must_use]
    pub fn option_summary(&self) -> String {
        self.display_options()
            .iter()
            .map(|item| format!(" {item}"))
            .collect()
    }
}

fn quote(value: &str) -> String {
    if value.contains(' ') {
        format!("\"{value}\"")
    } else {
        value.to_string()
    }
}
