//! The vocabulary of the definition table (`defs.rs`) and the rules that read it.
//!
//! Contract: a row of the table says what config.yaml says, nothing more. Everything derived
//! (is the option valid for this command and role, which default/allow list/depend applies to
//! this command, the `repoN-` spelling of a name) is computed here, by the same rules pgBackRest's
//! build step uses (`src/build/config/parse.c`): per-command values override option-wide ones;
//! command roles come from the per-command entry, else from the option's roles filtered by the
//! roles the command has, else from the command itself.

use crate::defs::{COMMANDS, CommandId, OPTIONS, OptionId};

/// Value type of an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptionType {
    /// `y`/`n`; on the command line `--name`, `--no-name`, `--name=y|n`.
    Boolean,
    /// 64-bit signed integer.
    Integer,
    /// Bytes, with an optional `b|k|kb|kib|m|..|p|pb|pib` suffix (powers of 1024).
    Size,
    /// Seconds with optional fraction, stored as milliseconds.
    Time,
    /// Any non-empty string.
    String,
    /// Absolute path without `//`; a trailing `/` is stripped.
    Path,
    /// Repeatable string values.
    List,
    /// Repeatable `key=value` values.
    Hash,
    /// A string from the option's allow list.
    StringId,
}

impl OptionType {
    /// Name as pgBackRest writes it in config.yaml (`string-id`, `boolean`, ...).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            OptionType::Boolean => "boolean",
            OptionType::Integer => "integer",
            OptionType::Size => "size",
            OptionType::Time => "time",
            OptionType::String => "string",
            OptionType::Path => "path",
            OptionType::List => "list",
            OptionType::Hash => "hash",
            OptionType::StringId => "string-id",
        }
    }

    /// May the option be given more than once (list and hash)?
    #[must_use]
    pub fn multi(self) -> bool {
        matches!(self, OptionType::List | OptionType::Hash)
    }
}

/// Where an option may be set besides the command line and the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    /// Command line (and environment) only.
    CommandLine,
    /// Any configuration section.
    Global,
    /// Stanza sections only (`[demo]`, `[demo:backup]`).
    Stanza,
}

/// Indexed option groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// `pg1-`..`pg256-`.
    Pg,
    /// `repo1-`..`repo256-`.
    Repo,
}

impl Group {
    /// Both groups.
    pub const ALL: [Group; 2] = [Group::Pg, Group::Repo];

    /// The prefix every option of the group starts with.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Group::Pg => "pg",
            Group::Repo => "repo",
        }
    }

    pub(crate) fn slot(self) -> usize {
        match self {
            Group::Pg => 0,
            Group::Repo => 1,
        }
    }

    /// The option selecting the default index of the group (`--pg`, `--repo`).
    #[must_use]
    pub fn selector(self) -> OptionId {
        match self {
            Group::Pg => OptionId::Pg,
            Group::Repo => OptionId::Repo,
        }
    }
}

/// The role a command runs in: `backup` is main, `backup:local` a worker, `backup:remote` the far end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandRole {
    /// Started by the user.
    Main,
    /// Background process of archive-push/archive-get.
    Async,
    /// Worker process on the same host.
    Local,
    /// Process on another host serving storage or the database.
    Remote,
}

impl CommandRole {
    /// Every role.
    pub const ALL: [CommandRole; 4] = [
        CommandRole::Main,
        CommandRole::Async,
        CommandRole::Local,
        CommandRole::Remote,
    ];

    /// Name as written after the colon (`main` is never written).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            CommandRole::Main => "main",
            CommandRole::Async => "async",
            CommandRole::Local => "local",
            CommandRole::Remote => "remote",
        }
    }

    /// The role named after a colon; `main` cannot be written.
    #[must_use]
    pub fn from_name(name: &str) -> Option<CommandRole> {
        match name {
            "async" => Some(CommandRole::Async),
            "local" => Some(CommandRole::Local),
            "remote" => Some(CommandRole::Remote),
            _ => None,
        }
    }

    const fn bit(self) -> u8 {
        match self {
            CommandRole::Main => 1,
            CommandRole::Async => 2,
            CommandRole::Local => 4,
            CommandRole::Remote => 8,
        }
    }
}

/// A set of command roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoleSet(u8);

impl RoleSet {
    /// The set of `roles` (usable in constants).
    #[must_use]
    pub const fn of(roles: &[CommandRole]) -> RoleSet {
        let mut bits = 0;
        let mut i = 0;
        while i < roles.len() {
            bits |= roles[i].bit();
            i += 1;
        }
        RoleSet(bits)
    }

    /// Is `role` in the set?
    #[must_use]
    pub const fn contains(self, role: CommandRole) -> bool {
        self.0 & role.bit() != 0
    }

    const fn intersect(self, other: RoleSet) -> RoleSet {
        RoleSet(self.0 & other.0)
    }
}

/// `roles![Main, Remote]`: a [`RoleSet`] constant.
macro_rules! roles {
    ($($role:ident),* $(,)?) => {
        $crate::rules::RoleSet::of(&[$($crate::rules::CommandRole::$role),*])
    };
}

/// Which lock a command takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockType {
    /// No lock.
    None,
    /// The archive lock (archive-push/archive-get).
    Archive,
    /// The backup lock.
    Backup,
    /// Both locks.
    All,
}

/// Level of the messages every command logs (start/stop lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogLevelDefault {
    /// Most commands.
    Info,
    /// Read-only commands whose output should stay clean.
    Debug,
}

/// Where `help COMMAND` lists an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HelpSection {
    /// Options specific to the command.
    Command,
    /// General options.
    General,
    /// Logging options.
    Log,
    /// Repository options.
    Repository,
    /// Stanza (PostgreSQL) options.
    Stanza,
}

impl HelpSection {
    /// Title word used in help output.
    #[must_use]
    pub fn title(self) -> &'static str {
        match self {
            HelpSection::Command => "Command",
            HelpSection::General => "General",
            HelpSection::Log => "Log",
            HelpSection::Repository => "Repository",
            HelpSection::Stanza => "Stanza",
        }
    }
}

/// Allowed values of an option, written as pgBackRest writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// No restriction beyond the type.
    Any,
    /// One of these (string-id values, or sizes compared after parsing).
    List(&'static [&'static str]),
    /// Inclusive range, bounds parsed with the option's type (`"0.1"` seconds, `"4PiB"`).
    Range(&'static str, &'static str),
}

/// The option is only valid when another option is set (to one of `values`, when not empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depend {
    /// The option depended on.
    pub option: OptionId,
    /// Accepted values (`y`/`n` for booleans); empty means "any value".
    pub values: &'static [&'static str],
    /// Boolean value the option takes when the dependency is not met.
    pub default: Option<bool>,
}

/// Depend on `option` being set.
#[must_use]
pub const fn dep(option: OptionId) -> Depend {
    Depend {
        option,
        values: &[],
        default: None,
    }
}

/// Depend on `option` having one of `values`.
#[must_use]
pub const fn dep_in(option: OptionId, values: &'static [&'static str]) -> Depend {
    Depend {
        option,
        values,
        default: None,
    }
}

impl Depend {
    /// Value to take when the dependency is not met (booleans only).
    #[must_use]
    pub const fn or_default(mut self, value: bool) -> Depend {
        self.default = Some(value);
        self
    }
}

/// An old name still accepted for an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deprecation {
    /// The old name without index (`db-path`, `repo-s3-verify-tls`).
    pub name: &'static str,
    /// May be written with an index (`db2-path`).
    pub indexed: bool,
    /// May be written without an index, meaning index 1 (`db-path`).
    pub unindexed: bool,
}

/// Where an option is valid, and what it overrides for that command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmdRule {
    /// The command.
    pub command: CommandId,
    /// Roles for this command, overriding the option's roles.
    pub roles: Option<RoleSet>,
    /// Default for this command.
    pub default: Option<&'static str>,
    /// Required for this command.
    pub required: Option<bool>,
    /// Hidden from help for this command.
    pub internal: Option<bool>,
    /// Allow list for this command.
    pub allow: Option<&'static [&'static str]>,
    /// Dependency for this command.
    pub depend: Option<Depend>,
}

/// The option is valid for `command`, with no overrides.
#[must_use]
pub const fn c(command: CommandId) -> CmdRule {
    CmdRule {
        command,
        roles: None,
        default: None,
        required: None,
        internal: None,
        allow: None,
        depend: None,
    }
}

impl CmdRule {
    /// Override the roles.
    #[must_use]
    pub const fn roles(mut self, roles: RoleSet) -> CmdRule {
        self.roles = Some(roles);
        self
    }

    /// Override the default.
    #[must_use]
    pub const fn default(mut self, value: &'static str) -> CmdRule {
        self.default = Some(value);
        self
    }

    /// Override `required`.
    #[must_use]
    pub const fn required(mut self, required: bool) -> CmdRule {
        self.required = Some(required);
        self
    }

    /// Override the internal flag.
    #[must_use]
    pub const fn internal(mut self, internal: bool) -> CmdRule {
        self.internal = Some(internal);
        self
    }

    /// Override the allow list.
    #[must_use]
    pub const fn allow(mut self, values: &'static [&'static str]) -> CmdRule {
        self.allow = Some(values);
        self
    }

    /// Override the dependency.
    #[must_use]
    pub const fn depend(mut self, depend: Depend) -> CmdRule {
        self.depend = Some(depend);
        self
    }
}

/// One command of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandDef {
    /// Id.
    pub id: CommandId,
    /// Name on the command line.
    pub name: &'static str,
    /// Roles the command can run in (always includes main).
    pub roles: RoleSet,
    /// Hidden from `help`.
    pub internal: bool,
    /// Accepts parameters after the command.
    pub parameter_allowed: bool,
    /// Takes its lock when it starts.
    pub lock_required: bool,
    /// Takes a lock on the remote too.
    pub lock_remote_required: bool,
    /// Which lock.
    pub lock_type: LockType,
    /// Logs to a file.
    pub log_file: bool,
    /// Level of the start/stop messages.
    pub log_level_default: LogLevelDefault,
    /// One-line help.
    pub summary: &'static str,
    /// Longer help.
    pub description: &'static str,
}

impl CommandDef {
    pub(crate) const BASE: CommandDef = CommandDef {
        id: CommandId::Version,
        name: "",
        roles: roles![Main],
        internal: false,
        parameter_allowed: false,
        lock_required: false,
        lock_remote_required: false,
        lock_type: LockType::None,
        log_file: true,
        log_level_default: LogLevelDefault::Info,
        summary: "",
        description: "",
    };
}

/// One option of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionDef {
    /// Id.
    pub id: OptionId,
    /// Name without index (`repo-path`).
    pub name: &'static str,
    /// Value type.
    pub ty: OptionType,
    /// Where it may be set.
    pub section: Section,
    /// Indexed group, if any.
    pub group: Option<Group>,
    /// Must have a value (set or default) for the commands it is valid for, unless overridden.
    pub required: bool,
    /// Never accepted on the command line, redacted in output.
    pub secure: bool,
    /// Hidden from help.
    pub internal: bool,
    /// Needs `--beta`.
    pub beta: bool,
    /// `--no-` prefix accepted.
    pub negate: bool,
    /// Default (as pgBackRest writes it).
    pub default: Option<&'static str>,
    /// Allowed values.
    pub allow: Allow,
    /// Dependency on another option.
    pub depend: Option<Depend>,
    /// Roles for all commands, unless a command entry overrides them.
    pub roles: Option<RoleSet>,
    /// Commands the option is valid for.
    pub cmds: &'static [CmdRule],
    /// Old names still accepted.
    pub deprecated: &'static [Deprecation],
    /// Help section.
    pub help: HelpSection,
    /// One-line help.
    pub summary: &'static str,
    /// Longer help (may be empty).
    pub description: &'static str,
    /// Per-command help (summary, description).
    pub cmd_help: &'static [(CommandId, &'static str, &'static str)],
}

impl OptionDef {
    pub(crate) const BASE: OptionDef = OptionDef {
        id: OptionId::Type,
        name: "",
        ty: OptionType::String,
        section: Section::CommandLine,
        group: None,
        required: true,
        secure: false,
        internal: false,
        beta: false,
        negate: false,
        default: None,
        allow: Allow::Any,
        depend: None,
        roles: None,
        cmds: &[],
        deprecated: &[],
        help: HelpSection::General,
        summary: "",
        description: "",
        cmd_help: &[],
    };

    /// `--reset-` prefix accepted: anything that may appear in a configuration file.
    #[must_use]
    pub fn reset(&self) -> bool {
        self.section != Section::CommandLine
    }

    /// The entry for `command`, when the option is valid for it at all.
    #[must_use]
    pub fn rule(&self, command: CommandId) -> Option<&'static CmdRule> {
        self.cmds.iter().find(|r| r.command == command)
    }

    /// Roles of `command` the option is valid for.
    #[must_use]
    pub fn roles_for(&self, command: CommandId) -> Option<RoleSet> {
        let rule = self.rule(command)?;
        let command_roles = command.def().roles;
        Some(match (rule.roles, self.roles) {
            (Some(roles), _) => roles,
            (None, Some(roles)) => roles.intersect(command_roles),
            (None, None) => command_roles,
        })
    }

    /// Is the option valid for `command` running as `role`?
    #[must_use]
    pub fn valid(&self, command: CommandId, role: CommandRole) -> bool {
        self.roles_for(command).is_some_and(|r| r.contains(role))
    }

    /// Default for `command`.
    #[must_use]
    pub fn default_for(&self, command: CommandId) -> Option<&'static str> {
        self.rule(command).and_then(|r| r.default).or(self.default)
    }

    /// Required for `command`?
    #[must_use]
    pub fn required_for(&self, command: CommandId) -> bool {
        self.rule(command)
            .and_then(|r| r.required)
            .unwrap_or(self.required)
    }

    /// Hidden from help for `command`?
    #[must_use]
    pub fn internal_for(&self, command: CommandId) -> bool {
        self.rule(command)
            .and_then(|r| r.internal)
            .unwrap_or(self.internal)
    }

    /// Allowed values for `command`.
    #[must_use]
    pub fn allow_for(&self, command: CommandId) -> Allow {
        match self.rule(command).and_then(|r| r.allow) {
            Some(list) => Allow::List(list),
            None => self.allow,
        }
    }

    /// Dependency for `command`.
    #[must_use]
    pub fn depend_for(&self, command: CommandId) -> Option<Depend> {
        self.rule(command).and_then(|r| r.depend).or(self.depend)
    }

    /// Help summary for `command`.
    #[must_use]
    pub fn summary_for(&self, command: Option<CommandId>) -> &'static str {
        self.cmd_help
            .iter()
            .find(|(c, _, _)| Some(*c) == command)
            .map_or(self.summary, |(_, s, _)| s)
    }

    /// Help description for `command`.
    #[must_use]
    pub fn description_for(&self, command: Option<CommandId>) -> &'static str {
        self.cmd_help
            .iter()
            .find(|(c, _, _)| Some(*c) == command)
            .map_or(self.description, |(_, _, d)| d)
    }

    /// Help section for `command` (per-command help moves an option to the command section).
    #[must_use]
    pub fn help_section_for(&self, command: CommandId) -> HelpSection {
        if self.cmd_help.iter().any(|(c, _, _)| *c == command) {
            HelpSection::Command
        } else {
            self.help
        }
    }

    /// Name with the index written in: `repo-path` + 2 -> `repo2-path`; ungrouped names as is.
    #[must_use]
    pub fn index_name(&self, key: u32) -> String {
        match self.group {
            Some(group) => {
                let rest = self.name.get(group.name().len()..).unwrap_or("");
                format!("{}{key}{rest}", group.name())
            }
            None => self.name.to_string(),
        }
    }
}

impl CommandId {
    /// The table row.
    #[must_use]
    pub fn def(self) -> &'static CommandDef {
        &COMMANDS[self as usize]
    }

    /// Name on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        self.def().name
    }

    /// Does the command write a log file (pgBackRest's `log-file`)?
    #[must_use]
    pub fn logs_to_file(self) -> bool {
        self.def().log_file
    }

    /// Level of the command's begin/end lines: debug for read-only commands whose output must
    /// stay clean (`info`, `repo-ls`, ...), info for the others.
    #[must_use]
    pub fn log_level_default(self) -> LogLevelDefault {
        self.def().log_level_default
    }

    /// The command with this exact name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<CommandId> {
        COMMANDS
            .binary_search_by(|c| c.name.cmp(name))
            .ok()
            .map(|i| CommandId::ALL[i])
    }
}

impl OptionId {
    /// The table row.
    #[must_use]
    pub fn def(self) -> &'static OptionDef {
        &OPTIONS[self as usize]
    }

    /// Name without index.
    #[must_use]
    pub fn name(self) -> &'static str {
        self.def().name
    }

    /// The option with this exact (unindexed) name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<OptionId> {
        OPTIONS
            .binary_search_by(|o| o.name.cmp(name))
            .ok()
            .map(|i| OptionId::ALL[i])
    }
}

/// Every command, in name order.
#[must_use]
pub fn commands() -> &'static [CommandDef] {
    COMMANDS
}

/// Every option, in name order.
#[must_use]
pub fn options() -> &'static [OptionDef] {
    OPTIONS
}

/// Every deprecated name as (name, option, rule), sorted by name.
#[must_use]
pub fn deprecations() -> &'static [(&'static str, OptionId, Deprecation)] {
    static ALL: std::sync::OnceLock<Vec<(&'static str, OptionId, Deprecation)>> =
        std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let mut all: Vec<_> = OPTIONS
            .iter()
            .flat_map(|o| o.deprecated.iter().map(move |d| (d.name, o.id, *d)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all
    })
}

/// `define_commands! { Id { name: "..", field: value, .. }, .. }`: the `CommandId` enum and the
/// `COMMANDS` table, rows in the same order as the ids.
macro_rules! define_commands {
    ($($id:ident { name: $name:literal $(, $field:ident : $value:expr)* $(,)? }),* $(,)?) => {
        /// A command of pgBackRest 2.45.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum CommandId {
            $(#[doc = concat!("`", $name, "`")] $id,)*
        }

        impl CommandId {
            /// Every command, in name order.
            pub const ALL: &'static [CommandId] = &[$(CommandId::$id),*];
        }

        pub(crate) static COMMANDS: &[$crate::rules::CommandDef] = &[
            $($crate::rules::CommandDef {
                id: CommandId::$id,
                name: $name,
                $($field: $value,)*
                ..$crate::rules::CommandDef::BASE
            },)*
        ];
    };
}

/// `define_options! { Id { name: "..", field: value, .. }, .. }`: the `OptionId` enum and the
/// `OPTIONS` table, rows in the same order as the ids.
macro_rules! define_options {
    ($($id:ident { name: $name:literal $(, $field:ident : $value:expr)* $(,)? }),* $(,)?) => {
        /// An option of pgBackRest 2.45 (indexed options without their index).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum OptionId {
            $(#[doc = concat!("`", $name, "`")] $id,)*
        }

        impl OptionId {
            /// Every option, in name order.
            pub const ALL: &'static [OptionId] = &[$(OptionId::$id),*];
        }

        pub(crate) static OPTIONS: &[$crate::rules::OptionDef] = &[
            $($crate::rules::OptionDef {
                id: OptionId::$id,
                name: $name,
                $($field: $value,)*
                ..$crate::rules::OptionDef::BASE
            },)*
        ];
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_put_the_key_after_the_group() {
        assert_eq!(OptionId::RepoPath.def().index_name(2), "repo2-path");
        assert_eq!(
            OptionId::PgHostConfigIncludePath.def().index_name(256),
            "pg256-host-config-include-path"
        );
        assert_eq!(OptionId::Stanza.def().index_name(3), "stanza");
        assert_eq!(OptionId::Repo.def().index_name(1), "repo");
    }

    #[test]
    fn roles_come_from_command_entry_then_option_then_command() {
        // per-command override
        assert_eq!(
            OptionId::Repo.def().roles_for(CommandId::ArchivePush),
            Some(roles![Remote])
        );
        // option roles filtered by the command's roles
        assert_eq!(
            OptionId::CompressType.def().roles_for(CommandId::Backup),
            Some(roles![Main])
        );
        assert_eq!(
            OptionId::CompressType
                .def()
                .roles_for(CommandId::ArchivePush),
            Some(roles![Main, Async])
        );
        // the command's own roles
        assert_eq!(
            OptionId::RepoPath.def().roles_for(CommandId::Restore),
            Some(roles![Main, Local, Remote])
        );
        assert_eq!(OptionId::RepoPath.def().roles_for(CommandId::Server), None);
    }

    #[test]
    fn per_command_values_override_option_values() {
        let job_retry = OptionId::JobRetry.def();
        assert_eq!(job_retry.default_for(CommandId::ArchiveGet), Some("1"));
        assert_eq!(job_retry.default_for(CommandId::Backup), Some("2"));
        let output = OptionId::Output.def();
        assert_eq!(
            output.allow_for(CommandId::Verify),
            Allow::List(&["none", "text", "json"])
        );
        assert_eq!(
            output.allow_for(CommandId::Info),
            Allow::List(&["text", "json"])
        );
        assert!(OptionId::Set.def().required_for(CommandId::Annotate));
        assert!(!OptionId::Set.def().required_for(CommandId::Expire));
        assert!(OptionId::Force.def().internal_for(CommandId::StanzaCreate));
        assert!(!OptionId::Force.def().internal_for(CommandId::Restore));
        assert_eq!(
            OptionId::Force.def().depend_for(CommandId::Backup),
            Some(dep_in(OptionId::Online, &["n"]))
        );
        assert_eq!(OptionId::Force.def().depend_for(CommandId::Restore), None);
    }

    #[test]
    fn names_resolve_both_ways() {
        for def in OPTIONS {
            assert_eq!(OptionId::from_name(def.name), Some(def.id));
        }
        for def in COMMANDS {
            assert_eq!(CommandId::from_name(def.name), Some(def.id));
        }
        assert_eq!(OptionId::from_name("repo1-path"), None);
        assert_eq!(CommandId::from_name("archive-push:async"), None);
        assert_eq!(deprecations().len(), 39);
    }
}
