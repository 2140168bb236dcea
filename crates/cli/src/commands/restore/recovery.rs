//! Recovery settings written by a restore (pgBackRest `restoreRecoveryOption()`,
//! `restoreRecoveryConf()`, `restoreRecoveryWriteAutoConf()`, `restoreRecoveryWriteConf()`).
//!
//! Contract:
//! - [`validate_target`] rejects a malformed `--target` / `--target-timeline` before the restore
//!   touches anything (PostgreSQL would otherwise refuse to start after a complete restore).
//! - [`settings`] gives the `key = 'value'` pairs in pgBackRest's order: `--recovery-option`
//!   keys (sorted, `-` turned into `_`), `archive_mode`, `restore_command` (unless given as a
//!   recovery option), the target, `recovery_target_action`, `recovery_target_timeline`. A key
//!   set twice keeps its first position and its last value.
//! - How the pairs reach PostgreSQL depends only on the version's [`RecoveryStyle`]:
//!   [`RecoveryStyle::SignalFile`] (12+) appends them to `postgresql.auto.conf` after commenting
//!   out older `recovery_target*` lines ([`auto_conf`]) and adds `standby.signal` or
//!   `recovery.signal`; [`RecoveryStyle::RecoveryConf`] (10, 11) writes `recovery.conf`
//!   ([`recovery_conf`]), with `standby_mode = 'on'` for a standby.
//! - Values are written in single quotes with embedded quotes doubled, as PostgreSQL's
//!   configuration syntax requires.

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_pg::version::RecoveryStyle;

/// Name used in the generated comments.
pub const GENERATOR: &str = "pgkeep";

/// `--type` of a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryType {
    /// Recover to the end of the WAL stream.
    Default,
    /// Stop as soon as the cluster is consistent.
    Immediate,
    /// Stop at a time.
    Time,
    /// Stop at a transaction id.
    Xid,
    /// Stop at an LSN.
    Lsn,
    /// Stop at a named restore point.
    Name,
    /// Start as a standby.
    Standby,
    /// Keep the recovery settings found in the data directory.
    Preserve,
    /// Write no recovery settings.
    None,
}

impl RecoveryType {
    /// The option value.
    #[must_use]
    pub fn parse(value: &str) -> Option<RecoveryType> {
        Some(match value {
            "default" => RecoveryType::Default,
            "immediate" => RecoveryType::Immediate,
            "time" => RecoveryType::Time,
            "xid" => RecoveryType::Xid,
            "lsn" => RecoveryType::Lsn,
            "name" => RecoveryType::Name,
            "standby" => RecoveryType::Standby,
            "preserve" => RecoveryType::Preserve,
            "none" => RecoveryType::None,
            _ => return None,
        })
    }

    /// The option value.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            RecoveryType::Default => "default",
            RecoveryType::Immediate => "immediate",
            RecoveryType::Time => "time",
            RecoveryType::Xid => "xid",
            RecoveryType::Lsn => "lsn",
            RecoveryType::Name => "name",
            RecoveryType::Standby => "standby",
            RecoveryType::Preserve => "preserve",
            RecoveryType::None => "none",
        }
    }

    /// Types that stop at `--target`.
    #[must_use]
    pub fn has_target(self) -> bool {
        matches!(
            self,
            RecoveryType::Time | RecoveryType::Xid | RecoveryType::Lsn | RecoveryType::Name
        )
    }
}

/// Everything that decides the recovery settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `--type`.
    pub ty: RecoveryType,
    /// `--target` (types with a target only).
    pub target: Option<String>,
    /// `--target-action` when valid for the type (`pause` writes nothing).
    pub target_action: Option<String>,
    /// `--target-exclusive`.
    pub target_exclusive: bool,
    /// `--target-timeline`.
    pub target_timeline: Option<String>,
    /// `--recovery-option` pairs as given.
    pub options: Vec<(String, String)>,
    /// `--archive-mode=off`.
    pub archive_mode_off: bool,
    /// The `restore_command` to write unless a recovery option sets one.
    pub restore_command: String,
}

/// PostgreSQL's limit on restore point names (`MAXFNAMELEN` - 1).
const NAME_MAX: usize = 63;

fn invalid(option: &str, value: &str, what: &str) -> Error {
    Error::new(
        ErrorKind::OptionInvalidValue,
        format!("'{value}' is not valid for option '{option}': {what}"),
    )
}

/// An unsigned integer as PostgreSQL's `strtoul(.., 0)` reads it (decimal, `0x` hex, `0` octal).
fn parse_c_uint(text: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            (hex, 16)
        } else if text.len() > 1
            && let Some(oct) = text.strip_prefix('0')
        {
            (oct, 8)
        } else {
            (text, 10)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// A time target as PostgreSQL takes it in `recovery_target_time`: pgBackRest's syntax (see
/// [`super::select::parse_time`]), or that syntax without an offset followed by a space and a zone
/// name (`2026-11-25 10:00:00 Europe/Paris`, `... UTC`). pgBackRest passes such a name through
/// to PostgreSQL when `--set` is given; without `--set` the backup selection already rejected it
/// with pgBackRest's error, so a name only reaches this point with `--set`.
fn validate_time(target: &str) -> Result<()> {
    let strict = super::select::parse_time(target);
    let Err(error) = strict else {
        return Ok(());
    };
    if let Some((time, zone)) = target.rsplit_once(' ')
        && !zone.is_empty()
        && zone.starts_with(|c: char| c.is_ascii_alphabetic())
        && zone
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c))
        && super::select::parse_time(time).is_ok()
        && !time.get(19..).is_some_and(|rest| rest.contains(['+', '-']))
    {
        return Ok(());
    }
    Err(error)
}

/// Check `--target` for the type and `--target-timeline`, as PostgreSQL will when it starts.
///
/// # Errors
/// `OptionInvalidValue` (32) naming the option and what is wrong; `Format` (29) for a time that
/// pgBackRest's time syntax rejects (see [`super::select::parse_time`]).
pub fn validate_target(request: &Request) -> Result<()> {
    if request.ty.has_target() {
        let target = request.target.as_deref().unwrap_or_default();
        match request.ty {
            RecoveryType::Time => validate_time(target)?,
            RecoveryType::Xid if parse_c_uint(target).is_none() => {
                return Err(invalid("target", target, "expected a transaction id"));
            }
            RecoveryType::Lsn if target.parse::<pgkeep_pg::Lsn>().is_err() => {
                return Err(invalid(
                    "target",
                    target,
                    "expected an lsn such as '0/16B3748'",
                ));
            }
            RecoveryType::Name if target.is_empty() || target.len() > NAME_MAX => {
                return Err(invalid(
                    "target",
                    target,
                    "expected a restore point name of 1 to 63 bytes",
                ));
            }
            _ => {}
        }
    }
    if let Some(timeline) = request.target_timeline.as_deref()
        && timeline != "current"
        && timeline != "latest"
        && !parse_c_uint(timeline).is_some_and(|t| t > 0 && t <= u64::from(u32::MAX))
    {
        return Err(invalid(
            "target-timeline",
            timeline,
            "expected current, latest or a timeline number",
        ));
    }
    Ok(())
}

/// Ordered settings where a repeated key keeps its first position (pgBackRest's `KeyValue`).
#[derive(Debug, Default)]
struct Ordered(Vec<(String, String)>);

impl Ordered {
    fn put(&mut self, key: &str, value: &str) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.0.push((key.to_string(), value.to_string())),
        }
    }
}

/// The recovery settings, in the order they are written.
///
/// # Errors
/// `OptionInvalid` (31) for `--archive-mode=off` before 12 and for `standby_mode` given as a
/// recovery option from 12 on.
pub fn settings(request: &Request, style: RecoveryStyle) -> Result<Vec<(String, String)>> {
    let mut out = Ordered::default();
    let mut given: Vec<&(String, String)> = request.options.iter().collect();
    given.sort_by(|a, b| a.0.cmp(&b.0));
    let mut restore_command_given = false;
    for (key, value) in given {
        let key = key.replace('-', "_");
        if key == "standby_mode" && style == RecoveryStyle::SignalFile {
            return Err(Error::new(
                ErrorKind::OptionInvalid,
                "'standby_mode' setting is not valid for PostgreSQL >= 12",
            )
            .with_hint("use --type=standby instead of --recovery-option=standby_mode=on."));
        }
        restore_command_given |= key == "restore_command";
        out.put(&key, value);
    }
    if request.archive_mode_off {
        if style == RecoveryStyle::RecoveryConf {
            return Err(Error::new(
                ErrorKind::OptionInvalid,
                "option 'archive-mode' is not supported on PostgreSQL < 12",
            )
            .with_hint("'archive_mode' should be manually set to 'off' in postgresql.conf."));
        }
        out.put("archive_mode", "off");
    }
    if !restore_command_given {
        out.put("restore_command", &request.restore_command);
    }
    match request.ty {
        RecoveryType::Immediate => out.put("recovery_target", "immediate"),
        RecoveryType::Standby if style == RecoveryStyle::RecoveryConf => {
            out.put("standby_mode", "on");
        }
        ty if ty.has_target() => {
            out.put(
                &format!("recovery_target_{}", ty.name()),
                request.target.as_deref().unwrap_or_default(),
            );
            if request.target_exclusive {
                out.put("recovery_target_inclusive", "false");
            }
        }
        _ => {}
    }
    if let Some(action) = request.target_action.as_deref()
        && action != "pause"
    {
        out.put("recovery_target_action", action);
    }
    if let Some(timeline) = &request.target_timeline {
        out.put("recovery_target_timeline", timeline);
    } else if request.ty == RecoveryType::Immediate && style == RecoveryStyle::SignalFile {
        // "latest" (the default from 12 on) may not be reachable from the backup's timeline
        out.put("recovery_target_timeline", "current");
    }
    Ok(out.0)
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The block of settings with its header line; `now` is the local time of the restore.
#[must_use]
pub fn recovery_conf(settings: &[(String, String)], now: &str) -> String {
    let mut text = format!("# Recovery settings generated by {GENERATOR} restore on {now}\n");
    for (key, value) in settings {
        text.push_str(&format!("{key} = {}\n", quote(value)));
    }
    text
}

/// Keys whose old values are commented out of `postgresql.auto.conf`.
const TARGET_KEYS: &[&str] = &[
    "recovery_target",
    "recovery_target_action",
    "recovery_target_inclusive",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_timeline",
    "recovery_target_xid",
];

/// Does the line set one of [`TARGET_KEYS`]?
fn sets_target(line: &str) -> bool {
    let rest = line.trim_start_matches([' ', '\t']);
    TARGET_KEYS.iter().any(|key| {
        rest.strip_prefix(key)
            .is_some_and(|after| after.trim_start_matches([' ', '\t']).starts_with('='))
    })
}

/// New content of `postgresql.auto.conf`: the existing text (if any) with older recovery targets
/// commented out, then — unless `settings` is `None` (type none) — a blank line and the settings.
#[must_use]
pub fn auto_conf(
    existing: Option<&str>,
    settings: Option<&[(String, String)]>,
    now: &str,
) -> String {
    let mut content = String::new();
    if let Some(existing) = existing {
        for (i, line) in existing.split('\n').enumerate() {
            if i != 0 {
                content.push('\n');
            }
            if sets_target(line) {
                content.push_str(&format!("# Removed by {GENERATOR} restore on {now} # "));
            }
            content.push_str(line);
        }
        if settings.is_some() {
            content = content.trim().to_string();
            content.push_str("\n\n");
        }
    }
    if let Some(settings) = settings {
        content.push_str(&recovery_conf(settings, now));
    }
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(ty: RecoveryType) -> Request {
        Request {
            ty,
            target: None,
            target_action: None,
            target_exclusive: false,
            target_timeline: None,
            options: Vec::new(),
            archive_mode_off: false,
            restore_command: "/usr/bin/pgkeep --stanza=demo archive-get %f \"%p\"".to_string(),
        }
    }

    fn keys(settings: &[(String, String)]) -> Vec<&str> {
        settings.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn time_target_matches_pgbackrest_sample() {
        // pgbackrest-samples/restore-recovery-settings.txt (a)
        let mut r = request(RecoveryType::Time);
        r.target = Some("2026-11-25 03:00:40+00".to_string());
        r.target_exclusive = true;
        r.target_action = Some("promote".to_string());
        r.options = vec![("primary_conninfo".to_string(), "host=x".to_string())];
        r.restore_command = "pgbackrest --config=/srv/demo/conf/pgbackrest.conf --pg1-path=/srv/demo/restore2 --repo=1 --stanza=demo archive-get %f \"%p\"".to_string();
        let s = settings(&r, RecoveryStyle::SignalFile).unwrap();
        let text = recovery_conf(&s, "2026-11-25 03:08:49");
        assert_eq!(
            text,
            "# Recovery settings generated by pgkeep restore on 2026-11-25 03:08:49\n\
             primary_conninfo = 'host=x'\n\
             restore_command = 'pgbackrest --config=/srv/demo/conf/pgbackrest.conf --pg1-path=/srv/demo/restore2 --repo=1 --stanza=demo archive-get %f \"%p\"'\n\
             recovery_target_time = '2026-11-25 03:00:40+00'\n\
             recovery_target_inclusive = 'false'\n\
             recovery_target_action = 'promote'\n"
        );
    }

    #[test]
    fn every_type_on_both_styles() {
        let cases: &[(RecoveryType, &[&str], &[&str])] = &[
            (
                RecoveryType::Default,
                &["restore_command"],
                &["restore_command"],
            ),
            (
                RecoveryType::Immediate,
                &[
                    "restore_command",
                    "recovery_target",
                    "recovery_target_timeline",
                ],
                &["restore_command", "recovery_target"],
            ),
            (
                RecoveryType::Standby,
                &["restore_command"],
                &["restore_command", "standby_mode"],
            ),
            (
                RecoveryType::Xid,
                &["restore_command", "recovery_target_xid"],
                &["restore_command", "recovery_target_xid"],
            ),
            (
                RecoveryType::Lsn,
                &["restore_command", "recovery_target_lsn"],
                &["restore_command", "recovery_target_lsn"],
            ),
            (
                RecoveryType::Name,
                &["restore_command", "recovery_target_name"],
                &["restore_command", "recovery_target_name"],
            ),
        ];
        for (ty, signal, conf) in cases {
            let mut r = request(*ty);
            r.target = Some("x".to_string());
            assert_eq!(
                keys(&settings(&r, RecoveryStyle::SignalFile).unwrap()),
                *signal,
                "{ty:?} 12+"
            );
            assert_eq!(
                keys(&settings(&r, RecoveryStyle::RecoveryConf).unwrap()),
                *conf,
                "{ty:?} <12"
            );
        }
        let mut r = request(RecoveryType::Immediate);
        let s = settings(&r, RecoveryStyle::SignalFile).unwrap();
        assert_eq!(s[2], ("recovery_target_timeline".into(), "current".into()));
        r.target_timeline = Some("3".to_string());
        let s = settings(&r, RecoveryStyle::SignalFile).unwrap();
        assert_eq!(s[2], ("recovery_target_timeline".into(), "3".into()));
        let s = settings(&request(RecoveryType::Standby), RecoveryStyle::RecoveryConf).unwrap();
        assert_eq!(s[1], ("standby_mode".into(), "on".into()));
    }

    #[test]
    fn recovery_options_sort_replace_and_override() {
        let mut r = request(RecoveryType::Name);
        r.target = Some("before-drop".to_string());
        r.target_action = Some("pause".to_string());
        r.archive_mode_off = true;
        r.options = vec![
            ("restore-command".to_string(), "cp /a/%f %p".to_string()),
            ("primary_conninfo".to_string(), "host=it's".to_string()),
            ("recovery_target_name".to_string(), "overridden".to_string()),
        ];
        let s = settings(&r, RecoveryStyle::SignalFile).unwrap();
        assert_eq!(
            s,
            vec![
                ("primary_conninfo".to_string(), "host=it's".to_string()),
                (
                    "recovery_target_name".to_string(),
                    "before-drop".to_string()
                ),
                ("restore_command".to_string(), "cp /a/%f %p".to_string()),
                ("archive_mode".to_string(), "off".to_string()),
            ]
        );
        let text = recovery_conf(&s, "t");
        assert!(text.contains("primary_conninfo = 'host=it''s'\n"), "{text}");

        let err = settings(&r, RecoveryStyle::RecoveryConf).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OptionInvalid);
        assert_eq!(
            err.message(),
            "option 'archive-mode' is not supported on PostgreSQL < 12"
        );
        r.archive_mode_off = false;
        r.options = vec![("standby-mode".to_string(), "on".to_string())];
        let err = settings(&r, RecoveryStyle::SignalFile).unwrap_err();
        assert_eq!(err.code(), 31);
        assert!(settings(&r, RecoveryStyle::RecoveryConf).is_ok());
    }

    #[test]
    fn auto_conf_comments_old_targets_and_appends() {
        let existing = "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\nwork_mem = '8MB'\n  recovery_target_time='2020-01-01'\nrecovery_target_timeline\t= latest\nrecovery_targetx = 1\nrestore_command = 'old'\n\n";
        let s = vec![("restore_command".to_string(), "new".to_string())];
        let text = auto_conf(Some(existing), Some(&s), "2026-01-02 03:04:05");
        assert_eq!(
            text,
            "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\nwork_mem = '8MB'\n\
             # Removed by pgkeep restore on 2026-01-02 03:04:05 #   recovery_target_time='2020-01-01'\n\
             # Removed by pgkeep restore on 2026-01-02 03:04:05 # recovery_target_timeline\t= latest\n\
             recovery_targetx = 1\nrestore_command = 'old'\n\n\
             # Recovery settings generated by pgkeep restore on 2026-01-02 03:04:05\nrestore_command = 'new'\n"
        );
        // type none: old targets commented, nothing appended, text otherwise untouched
        let text = auto_conf(Some("a = 1\nrecovery_target = 'immediate'\n"), None, "t");
        assert_eq!(
            text,
            "a = 1\n# Removed by pgkeep restore on t # recovery_target = 'immediate'\n"
        );
        assert_eq!(
            auto_conf(None, Some(&s), "t"),
            "# Recovery settings generated by pgkeep restore on t\nrestore_command = 'new'\n"
        );
    }

    #[test]
    fn targets_are_validated_per_type() {
        let check = |ty, target: &str| {
            let mut r = request(ty);
            r.target = Some(target.to_string());
            validate_target(&r)
        };
        assert!(check(RecoveryType::Xid, "1234").is_ok());
        assert!(check(RecoveryType::Xid, "0x4d2").is_ok());
        assert_eq!(check(RecoveryType::Xid, "12a").unwrap_err().code(), 32);
        assert!(check(RecoveryType::Lsn, "0/16B3748").is_ok());
        assert_eq!(check(RecoveryType::Lsn, "16B3748").unwrap_err().code(), 32);
        assert!(check(RecoveryType::Name, "before").is_ok());
        assert!(check(RecoveryType::Name, &"n".repeat(64)).is_err());
        assert!(check(RecoveryType::Time, "2024-02-29 10:00:00.123+02:30").is_ok());
        let err = check(RecoveryType::Time, "yesterday").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Format);
        assert_eq!(
            check(RecoveryType::Time, "2023-02-29 10:00:00")
                .unwrap_err()
                .message(),
            "invalid date 2023-02-29"
        );
        // a zone name after the time is PostgreSQL syntax pgBackRest passes through with --set
        for ok in [
            "2026-11-25 10:00:00 UTC",
            "2026-11-25 10:00:00.5 Europe/Paris",
            "2026-11-25 10:00:00 America/Port-au-Prince",
        ] {
            assert!(check(RecoveryType::Time, ok).is_ok(), "{ok}");
        }
        for bad in [
            "2026-11-25 10:00:00+01 UTC",
            "2026-11-25 10:00:00  UTC",
            "2026-11-25 10:00:00 9UTC",
            "2026-11-25 10:00:00 U;TC",
            "2026-02-30 10:00:00 UTC",
            "tomorrow UTC",
        ] {
            assert!(check(RecoveryType::Time, bad).is_err(), "{bad}");
        }
        // the target is ignored by types without one
        assert!(check(RecoveryType::Default, "whatever").is_ok());

        let mut r = request(RecoveryType::Default);
        for ok in ["current", "latest", "2", "0x10"] {
            r.target_timeline = Some(ok.to_string());
            assert!(validate_target(&r).is_ok(), "{ok}");
        }
        for bad in ["0", "two", ""] {
            r.target_timeline = Some(bad.to_string());
            assert_eq!(validate_target(&r).unwrap_err().code(), 32, "{bad}");
        }
    }
}
