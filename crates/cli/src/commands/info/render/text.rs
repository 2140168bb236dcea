//! Text formatting of assembled stanzas, line for line as pgBackRest 2.45 prints them: status block,
//! cipher block, then per database group (`db (prior)` groups first, `db (current)` last) the WAL
//! range and every backup with humanised sizes and local-time timestamps.

use std::fmt::Write as _;

use chrono::TimeZone;

use super::{BackupView, InfoRequest, StanzaView, status};

const LOCK_RUNNING: &str = "backup/expire running";

pub(super) fn render<Tz: TimeZone>(stanzas: &[StanzaView<'_>], req: &InfoRequest, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    if stanzas.is_empty() {
        return "No stanzas exist in the repository.\n".to_string();
    }
    let mut out = String::new();
    for (idx, stanza) in stanzas.iter().enumerate() {
        if idx > 0 {
            out.push('\n');
        }
        render_stanza(&mut out, stanza, req, tz);
    }
    out
}

fn render_stanza<Tz: TimeZone>(
    out: &mut String,
    stanza: &StanzaView<'_>,
    req: &InfoRequest,
    tz: &Tz,
) where
    Tz::Offset: std::fmt::Display,
{
    let _ = write!(out, "stanza: {}\n    status: ", stanza.name);

    let percent = match (stanza.lock.held, stanza.lock.percent_complete) {
        (true, Some(pct)) => format!(" - {}.{:02}% complete", pct / 100, pct % 100),
        _ => String::new(),
    };
    let held = stanza.lock.held;

    match stanza.status {
        status::OK => {
            if held {
                let _ = writeln!(out, "ok ({LOCK_RUNNING}{percent})");
            } else {
                out.push_str("ok\n");
            }
        }
        status::MIXED | status::PG_MISMATCH | status::OTHER => {
            if stanza.status == status::MIXED {
                out.push_str("mixed");
            } else {
                let _ = write!(out, "error ({})", status::message(stanza.status));
            }
            if held {
                let _ = write!(out, " ({LOCK_RUNNING}{percent})");
            }
            out.push('\n');

            let multi_repo = stanza.repos.len() > 1;
            let spacer = if multi_repo {
                "               "
            } else {
                "            "
            };
            for repo in &stanza.repos {
                if multi_repo {
                    let _ = write!(out, "        repo{}: ", repo.key);
                }
                match repo.status {
                    status::OK => out.push_str("ok\n"),
                    status::OTHER => {
                        if multi_repo {
                            out.push_str("error (other)\n");
                        }
                        let indented = repo.message.replace('\n', &format!("\n{spacer}"));
                        let _ = writeln!(out, "{spacer}{indented}");
                    }
                    _ => {
                        let _ = writeln!(out, "error ({})", repo.message);
                    }
                }
            }
        }
        code => {
            let _ = write!(out, "error ({}", status::message(code));
            if held {
                let _ = writeln!(out, ", {LOCK_RUNNING}{percent})");
            } else {
                out.push_str(")\n");
            }
        }
    }

    if stanza.status != status::MISSING_STANZA_PATH {
        match stanza.cipher {
            Some(cipher) => {
                let _ = writeln!(out, "    cipher: {}", cipher.as_str());
            }
            None => {
                out.push_str("    cipher: mixed\n");
                for repo in &stanza.repos {
                    let _ = writeln!(out, "        repo{}: {}", repo.key, repo.cipher.as_str());
                }
            }
        }
    }

    if !stanza.db.is_empty() {
        render_db(out, stanza, req, tz);
    }
}

/// Databases sharing system id and version, over all repos.
struct DbGroup<'a> {
    system_id: u64,
    version: &'a str,
    current: bool,
    archive_min: Option<&'a str>,
    archive_max: Option<&'a str>,
    backups: Vec<&'a BackupView<'a>>,
}

fn render_db<Tz: TimeZone>(out: &mut String, stanza: &StanzaView<'_>, req: &InfoRequest, tz: &Tz)
where
    Tz::Offset: std::fmt::Display,
{
    let mut groups: Vec<DbGroup<'_>> = Vec::new();

    for db in &stanza.db {
        let group_idx = match groups
            .iter()
            .position(|g| g.system_id == db.system_id && g.version == db.version)
        {
            Some(idx) => idx,
            None => {
                groups.push(DbGroup {
                    system_id: db.system_id,
                    version: db.version,
                    current: stanza.current_pg == Some((db.system_id, db.version)),
                    archive_min: None,
                    archive_max: None,
                    backups: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let Some(group) = groups.get_mut(group_idx) else {
            continue;
        };
        for archive in &stanza.archive {
            if archive.db_id != db.id || archive.repo_key != db.repo_key {
                continue;
            }
            let Some(min) = archive.min else { continue };
            if group
                .archive_min
                .is_none_or(|cur| cur.as_bytes() > min.as_bytes())
            {
                group.archive_min = Some(min);
            }
            if let Some(max) = archive.max
                && group
                    .archive_max
                    .is_none_or(|cur| cur.as_bytes() < max.as_bytes())
            {
                group.archive_max = Some(max);
            }
        }
    }

    let mut shown = 0..groups.len();
    for backup in &stanza.backups {
        let Some(db) = stanza
            .db
            .iter()
            .find(|db| db.id == backup.data.db_id && db.repo_key == backup.repo_key)
        else {
            continue;
        };
        if let Some(group_idx) = groups
            .iter()
            .position(|g| g.system_id == db.system_id && g.version == db.version)
        {
            if let Some(group) = groups.get_mut(group_idx) {
                group.backups.push(backup);
            }
            // With --set only the group holding the backup is shown
            if req.set.is_some() {
                shown = group_idx..group_idx + 1;
            }
        }
    }

    let mut current = String::from("\n    db (current)");
    let mut display_current = false;
    for group in groups.get(shown).unwrap_or_default() {
        if group.current {
            render_group(&mut current, group, tz);
            display_current = true;
        } else if group.archive_min.is_some() || !group.backups.is_empty() {
            out.push_str("\n    db (prior)");
            render_group(out, group, tz);
        }
    }
    if display_current {
        out.push_str(&current);
    }
}

fn format_time<Tz: TimeZone>(tz: &Tz, secs: i64) -> String
where
    Tz::Offset: std::fmt::Display,
{
    match tz.timestamp_opt(secs, 0).earliest() {
        Some(time) => time.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => secs.to_string(),
    }
}

fn render_group<Tz: TimeZone>(out: &mut String, group: &DbGroup<'_>, tz: &Tz)
where
    Tz::Offset: std::fmt::Display,
{
    let _ = write!(out, "\n        wal archive min/max ({}): ", group.version);
    match (group.archive_min, group.archive_max) {
        (Some(min), Some(max)) => {
            let _ = writeln!(out, "{min}/{max}");
        }
        (Some(min), None) => {
            let _ = writeln!(out, "{min}/");
        }
        _ => out.push_str("none present\n"),
    }

    for backup in &group.backups {
        render_backup(out, backup, tz);
    }
}

fn render_backup<Tz: TimeZone>(out: &mut String, backup: &BackupView<'_>, tz: &Tz)
where
    Tz::Offset: std::fmt::Display,
{
    let data = backup.data;
    let _ = write!(
        out,
        "\n        {} backup: {}\n",
        data.backup_type, data.label
    );
    let _ = writeln!(
        out,
        "            timestamp start/stop: {} / {}",
        format_time(tz, data.timestamp_start),
        format_time(tz, data.timestamp_stop)
    );
    out.push_str("            wal start/stop: ");
    match (&data.archive_start, &data.archive_stop) {
        (Some(start), Some(stop)) => {
            let _ = writeln!(out, "{start} / {stop}");
        }
        _ => out.push_str("n/a\n"),
    }

    // Details only shown with --set
    let set = backup.set.as_ref();
    if set.is_some()
        && let (Some(start), Some(stop)) = (&data.lsn_start, &data.lsn_stop)
    {
        let _ = writeln!(out, "            lsn start/stop: {start} / {stop}");
    }

    let _ = writeln!(
        out,
        "            database size: {}, database backup size: {}",
        size_format(data.size),
        size_format(data.size_delta)
    );
    let _ = write!(out, "            repo{}: ", backup.repo_key);
    if data.repo_size_map.is_none() {
        let _ = write!(out, "backup set size: {}, ", size_format(data.repo_size));
    }
    let _ = writeln!(out, "backup size: {}", size_format(data.repo_size_delta));

    if let Some(reference) = &data.reference {
        let _ = writeln!(
            out,
            "            backup reference list: {}",
            reference.join(", ")
        );
    }

    if let Some(set) = set {
        out.push_str("            database list:");
        if set.databases.is_empty() {
            out.push_str(" none\n");
        } else {
            let list: Vec<String> = set
                .databases
                .iter()
                .map(|db| format!(" {} ({})", db.name, db.oid))
                .collect();
            let _ = writeln!(out, "{}", list.join(","));
        }

        if !set.links.is_empty() {
            out.push_str("            symlinks:\n");
            let list: Vec<String> = set
                .links
                .iter()
                .map(|(name, dest)| format!("                {name} => {dest}"))
                .collect();
            let _ = writeln!(out, "{}", list.join("\n"));
        }

        if !set.tablespaces.is_empty() {
            out.push_str("            tablespaces:\n");
            let list: Vec<String> = set
                .tablespaces
                .iter()
                .map(|(name, oid, dest)| format!("                {name} ({oid}) => {dest}"))
                .collect();
            let _ = writeln!(out, "{}", list.join("\n"));
        }
    }

    if backup.error == Some(true) {
        match set {
            Some(set) if !set.errors.is_empty() => {
                let _ = writeln!(out, "            error list: {}", set.errors.join(", "));
            }
            _ => out.push_str("            error(s) detected during backup\n"),
        }
    }

    if set.is_some()
        && let Some(annotation) = &data.annotation
    {
        out.push_str("            annotation(s)\n");
        for (key, value) in annotation {
            let _ = writeln!(out, "                {key}: {value}");
        }
    }
}

/// Human-readable size: bytes below 1KiB, else one decimal in KB/MB/GB unless the tenths digit
/// (truncated) is zero, in which case the whole (truncated) number.
pub(super) fn size_format(size: u64) -> String {
    const KB: u64 = 1024;
    const MB: u64 = 1024 * 1024;
    const GB: u64 = 1024 * 1024 * 1024;

    if size < KB {
        return format!("{size}B");
    }
    let (unit, name) = if size < MB {
        (KB, "KB")
    } else if size < GB {
        (MB, "MB")
    } else {
        (GB, "GB")
    };
    // Same arithmetic as pgBackRest (divide by 102.4 scaled to the unit) so truncation agrees
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let tenths = (size as f64 / ((unit / 1024) as f64 * 102.4)) as u64;
    if !tenths.is_multiple_of(10) {
        #[allow(clippy::cast_precision_loss)]
        let value = size as f64 / unit as f64;
        format!("{value:.1}{name}")
    } else {
        format!("{}{name}", size / unit)
    }
}
