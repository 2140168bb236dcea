//! The `help` command's text, rendered from the definition table.
//!
//! Contract: `help` lists the commands that are not internal; `help COMMAND` shows the command's
//! summary and description and its options (valid for the main role, not internal) grouped by
//! section (command, general, log, repository, stanza) with their defaults; `help COMMAND OPTION`
//! shows one option. The layout follows pgBackRest's (80 columns, aligned columns), the words are
//! pgkeep's own. Errors are pgBackRest's: unknown command `CommandInvalid`, unknown option
//! `OptionInvalid`, more than one option `ParamInvalid`.

use std::fmt::Write as _;

use pgkeep_base::{Result, bail};

use crate::config::{Config, Source};
use crate::defs::{CommandId, OptionId};
use crate::parse::lookup;
use crate::rules::{CommandRole, HelpSection, OptionType, commands, options};

/// Width of the console text.
const CONSOLE_WIDTH: usize = 80;
/// Name of the executable in usage lines.
const PROJECT_BIN: &str = "pgkeep";

/// Render help for `params` (the words after `help`): none for general help, `[COMMAND]`, or
/// `[COMMAND, OPTION]`.
///
/// # Errors
/// `CommandInvalid` for an unknown command, `OptionInvalid` for an option not valid for the
/// command, `ParamInvalid` for more than one option.
pub fn render(version: &str, params: &[String]) -> Result<String> {
    render_inner(version, params, None)
}

/// Render help for a parsed `help ...` run, showing current values taken from the configuration.
///
/// # Errors
/// As [`render`].
pub fn render_config(version: &str, config: &Config) -> Result<String> {
    render_inner(version, config.params(), Some(config))
}

fn render_inner(version: &str, params: &[String], config: Option<&Config>) -> Result<String> {
    let mut out = format!("{PROJECT_BIN} {version}");
    let command = match params.first() {
        None => None,
        Some(name) => {
            let base = name.split(':').next().unwrap_or(name);
            match CommandId::from_name(base) {
                Some(CommandId::Help) => None,
                Some(id) => Some(id),
                None => bail!(CommandInvalid, "invalid command '{name}'"),
            }
        }
    };
    let more: Option<String>;

    match command {
        None => {
            out.push_str(&format!(
                " - General help\n\nUsage:\n    {PROJECT_BIN} [options] [command]\n\nCommands:\n"
            ));
            let listed: Vec<_> = commands().iter().filter(|c| !c.internal).collect();
            let width = listed.iter().map(|c| c.name.len()).max().unwrap_or(0);
            for def in listed {
                let _ = writeln!(
                    out,
                    "    {}{}{}",
                    def.name,
                    " ".repeat(width - def.name.len() + 2),
                    render_text(def.summary, width + 6, false)
                );
            }
            more = Some("[command]".to_string());
        }
        Some(command) => {
            let def = command.def();
            out.push_str(&format!(" - '{}' command", def.name));
            let option_params = params.get(1..).unwrap_or(&[]);
            if option_params.is_empty() {
                let mut description = def.description.to_string();
                if def.internal {
                    description.push_str("\n\nFOR INTERNAL USE ONLY. DO NOT USE IN PRODUCTION.");
                }
                out.push_str(&format!(
                    " help\n\n{}\n\n{}\n",
                    render_text(def.summary, 0, true),
                    render_text(&description, 0, true)
                ));

                let listed: Vec<_> = options()
                    .iter()
                    .filter(|o| o.valid(command, CommandRole::Main) && !o.internal_for(command))
                    .collect();
                let width = listed.iter().map(|o| o.name.len()).max().unwrap_or(0);
                let mut sections: Vec<HelpSection> =
                    listed.iter().map(|o| o.help_section_for(command)).collect();
                sections.sort();
                sections.dedup();
                for section in sections {
                    out.push_str(&format!("\n{} Options:\n\n", section.title()));
                    for opt in listed
                        .iter()
                        .filter(|o| o.help_section_for(command) == section)
                    {
                        let mut summary = list_summary(opt.summary_for(Some(command)));
                        let current = config.and_then(|c| current_value(c, opt.id));
                        let default = opt.default_for(command);
                        if current.is_some() || default.is_some() {
                            let mut parts = Vec::new();
                            if let Some(current) = current {
                                parts.push(format!("current={current}"));
                            }
                            if let Some(default) = default {
                                parts.push(format!("default={default}"));
                            }
                            summary.push_str(&format!(" [{}]", parts.join(", ")));
                        }
                        let _ = writeln!(
                            out,
                            "  --{}{}{}",
                            opt.name,
                            " ".repeat(width - opt.name.len() + 2),
                            render_text(&summary, width + 6, false)
                        );
                    }
                }
                more = (width > 0).then(|| format!("{} [option]", def.name));
            } else {
                if option_params.len() > 1 {
                    bail!(ParamInvalid, "only one option allowed for option help");
                }
                let name = option_params.first().map_or("", String::as_str);
                let found = lookup(name, false, true).ok().flatten();
                let Some(lk) = found.filter(|lk| lk.id.def().valid(command, CommandRole::Main))
                else {
                    bail!(
                        OptionInvalid,
                        "option '{name}' is not valid for command '{}'",
                        def.name
                    );
                };
                let opt = lk.id.def();
                let mut description = opt.description_for(Some(command)).to_string();
                let note = if lk.beta {
                    "FOR BETA TESTING ONLY. DO NOT USE IN PRODUCTION."
                } else if opt.internal_for(command) {
                    "FOR INTERNAL USE ONLY. DO NOT USE IN PRODUCTION."
                } else {
                    ""
                };
                if !note.is_empty() {
                    if !description.is_empty() {
                        description.push_str("\n\n");
                    }
                    description.push_str(note);
                }
                out.push_str(&format!(
                    " - '{}' option help\n\n{}\n",
                    opt.name,
                    render_text(opt.summary_for(Some(command)), 0, true)
                ));
                if !description.is_empty() {
                    out.push_str(&format!("\n{}\n", render_text(&description, 0, true)));
                }
                let current = config.and_then(|c| current_value(c, opt.id));
                let default = opt.default_for(command);
                if current.is_some() || default.is_some() {
                    out.push('\n');
                    if let Some(current) = current {
                        let _ = writeln!(out, "current: {current}");
                    }
                    if let Some(default) = default {
                        let _ = writeln!(out, "default: {default}");
                    }
                }
                let mut names: Vec<&str> = opt.deprecated.iter().map(|d| d.name).collect();
                names.dedup();
                if !names.is_empty() {
                    let _ = writeln!(
                        out,
                        "\ndeprecated name{}: {}",
                        if names.len() > 1 { "s" } else { "" },
                        names.join(", ")
                    );
                }
                more = None;
            }
        }
    }
    if let Some(more) = more {
        let _ = writeln!(
            out,
            "\nUse '{PROJECT_BIN} help {more}' for more information."
        );
    }
    Ok(out)
}

/// The current value of an option for help output, when it was not defaulted.
fn current_value(config: &Config, opt: OptionId) -> Option<String> {
    if config.source(opt, None) == Source::Default {
        return None;
    }
    if opt.def().secure {
        return Some("<redacted>".to_string());
    }
    if opt.def().ty == OptionType::Boolean && config.negated(opt, None) {
        return Some("n".to_string());
    }
    config.display(opt, None)
}

/// A summary as listed next to an option: final period dropped, first letter lowered unless the
/// word looks like an acronym.
fn list_summary(summary: &str) -> String {
    let trimmed = summary.strip_suffix('.').unwrap_or(summary);
    let mut chars = trimmed.chars();
    let (Some(first), Some(second)) = (chars.next(), chars.clone().next()) else {
        return trimmed.to_string();
    };
    if !second.is_uppercase() && second.is_alphabetic() {
        format!("{}{}", first.to_lowercase(), chars.as_str())
    } else {
        trimmed.to_string()
    }
}

/// Wrap paragraphs (separated by `\n`) to the console width; continuation lines are indented by
/// `indent`, the first line too when `indent_first`.
fn render_text(text: &str, indent: usize, indent_first: bool) -> String {
    let width = CONSOLE_WIDTH.saturating_sub(indent).max(1);
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for (p, paragraph) in text.split('\n').enumerate() {
        if p > 0 {
            out.push('\n');
        }
        let lines = wrap(paragraph, width);
        for (l, line) in lines.iter().enumerate() {
            if l > 0 {
                out.push('\n');
            }
            if (l > 0 || indent_first) && !line.is_empty() {
                out.push_str(&pad);
            }
            out.push_str(line);
        }
    }
    out
}

/// Greedy word wrap; a word longer than the width stays on its own line.
fn wrap(paragraph: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in paragraph.split(' ') {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        } else if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

/// The option reference as a Markdown page (`docs/options.md`), generated from the same table as
/// parsing and `help`, so the page can never disagree with the binary (a test checks the committed
/// file is current).
#[must_use]
pub fn reference_markdown() -> String {
    use std::fmt::Write as _;

    let mut out = String::from(
        "# pgkeep commands and options\n\n\
         Generated from the option table in `crates/config/src/defs.rs` by \
         `cargo test -p pgkeep-config --test docs` (set `PGKEEP_WRITE_DOCS=1` to rewrite it). \
         Names, types, defaults and allowed values are pgBackRest 2.45's.\n\n\
         ## Commands\n\n| command | summary |\n| --- | --- |\n",
    );
    for command in crate::commands().iter().filter(|c| !c.internal) {
        let _ = writeln!(out, "| `{}` | {} |", command.name, command.summary);
    }
    out.push_str(
        "\n## Options\n\n`repo`/`pg` options are indexed (`repo1-path` … `repo256-path`). \
         Section: where the option may be set besides the command line and environment.\n\n\
         | option | type | default | allowed | section | commands | summary |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for option in crate::options().iter().filter(|o| !o.internal) {
        let name = match option.group {
            Some(group) => format!(
                "{}N-{}",
                group.name(),
                &option.name[group.name().len() + 1..]
            ),
            None => option.name.to_string(),
        };
        let allowed = match option.allow {
            crate::Allow::Any => String::new(),
            crate::Allow::List(values) => values.join(", "),
            crate::Allow::Range(low, high) => format!("{low} … {high}"),
        };
        let section = match option.section {
            crate::Section::CommandLine => "command line",
            crate::Section::Global => "global",
            crate::Section::Stanza => "stanza",
        };
        let mut commands: Vec<&str> = option.cmds.iter().map(|rule| rule.command.name()).collect();
        commands.dedup();
        let flags = match (option.secure, option.beta) {
            (true, _) => " (secure: not on the command line)",
            (_, true) => " (beta)",
            _ => "",
        };
        let _ = writeln!(
            out,
            "| `{name}` | {} | {} | {allowed} | {section} | {} | {}{flags} |",
            option.ty.name(),
            option.default.unwrap_or(""),
            commands.join(", "),
            option.summary.replace('|', "\\|"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_lose_period_and_capital_unless_acronym() {
        assert_eq!(list_summary("Backup type."), "backup type");
        assert_eq!(list_summary("S3 bucket."), "S3 bucket");
        assert_eq!(list_summary("GCS bucket."), "GCS bucket");
    }

    #[test]
    fn text_wraps_at_eighty_columns_with_hanging_indent() {
        let words = "word ".repeat(40);
        let text = render_text(words.trim_end(), 10, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() > 2);
        assert!(!lines[0].starts_with(' '));
        for line in &lines[1..] {
            assert!(line.starts_with(&" ".repeat(10)));
            assert!(line.len() <= CONSOLE_WIDTH);
        }
    }
}
