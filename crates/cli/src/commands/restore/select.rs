//! Which backup set a restore uses (pgBackRest `restoreBackupSet()`, `getEpoch()`).
//!
//! Contract:
//! - `--set` (anything but its default `latest`): the first repository, in index order (or only
//!   `--repo`), whose backup.info lists the label; none → `BackupSetInvalid` (75)
//!   `backup set <label> is not valid`.
//! - No `--set` and `--type=time`: the newest backup whose stop time is before the target time;
//!   `--type=lsn`: the newest whose stop LSN is at or before the target; none on any repository →
//!   `unable to find backup set with stop time less than '<target>'` (or `lsn less than or equal
//!   to`). Otherwise the newest backup, which must belong to the stanza's current database.
//! - A repository whose backup.info cannot be loaded, or that has no backups, is a warning
//!   (`repoN: [<ErrorName>] <message>`) and the next repository is searched.
//! - Times are `YYYY-MM-DD HH:MM:SS` with optional fraction (`.` or `,`, up to 6 digits) and
//!   optional offset (`±HH`, `±HHMM`, `±HH:MM`); without an offset the local time zone applies.

use chrono::{LocalResult, NaiveDate, TimeZone};
use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_pg::Lsn;
use pgkeep_repo::info::BackupInfo;

/// What the restore asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `--set=<label>`.
    Label(String),
    /// The newest backup.
    Latest,
    /// The newest backup stopped before this Unix time (`--type=time`).
    Before(i64),
    /// The newest backup stopped at or before this LSN (`--type=lsn`).
    AtOrBefore(Lsn),
}

/// The answer of one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Use this label.
    Found(String),
    /// Not on this repository; look at the next one (with a warning when there is one).
    Next(Option<String>),
}

fn digits(text: &str, from: usize, len: usize) -> Option<u32> {
    let part = text.get(from..from + len)?;
    if part.bytes().all(|b| b.is_ascii_digit()) {
        part.parse().ok()
    } else {
        None
    }
}

fn format_error(text: &str) -> Error {
    Error::new(
        ErrorKind::Format,
        format!("automatic backup set selection cannot be performed with provided time '{text}'"),
    )
    .with_hint("time format must be YYYY-MM-DD HH:MM:SS with optional msec and optional timezone (+/- HH or HHMM or HH:MM) - if timezone is omitted, local time is assumed (for UTC use +00)")
}

/// The Unix time of a target time (see the module contract).
///
/// # Errors
/// `Format` (29) with pgBackRest's messages for a malformed time, an invalid date, time or zone.
pub fn parse_time(text: &str) -> Result<i64> {
    let b = text.as_bytes();
    let shape = b.len() >= 19
        && b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && b.get(10) == Some(&b' ')
        && b.get(13) == Some(&b':')
        && b.get(16) == Some(&b':');
    let parts =
        [(0, 4), (5, 2), (8, 2), (11, 2), (14, 2), (17, 2)].map(|(f, l)| digits(text, f, l));
    let [
        Some(year),
        Some(month),
        Some(day),
        Some(hour),
        Some(minute),
        Some(second),
    ] = parts
    else {
        return Err(format_error(text));
    };
    if !shape {
        return Err(format_error(text));
    }
    // optional fraction, then optional zone; nothing else
    let mut rest = text.get(19..).unwrap_or_default();
    if let Some(fraction) = rest.strip_prefix(['.', ',']) {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 6 {
            return Err(format_error(text));
        }
        rest = fraction.get(n..).unwrap_or_default();
    }
    let offset = if rest.is_empty() {
        None
    } else {
        let sign: i32 = match rest.as_bytes().first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err(format_error(text)),
        };
        let zone = rest.get(1..).unwrap_or_default();
        let (hh, mm) = match zone.len() {
            2 => (digits(zone, 0, 2), Some(0)),
            4 => (digits(zone, 0, 2), digits(zone, 2, 2)),
            5 if zone.as_bytes().get(2) == Some(&b':') => (digits(zone, 0, 2), digits(zone, 3, 2)),
            _ => (None, None),
        };
        let (Some(hh), Some(mm)) = (hh, mm) else {
            return Err(format_error(text));
        };
        let hh = i32::try_from(hh).unwrap_or(i32::MAX);
        let mm = i32::try_from(mm).unwrap_or(i32::MAX);
        if (sign < 0 && hh > 12) || (sign > 0 && hh > 14) || mm > 59 {
            return Err(Error::new(
                ErrorKind::Format,
                format!(
                    "invalid timezone {}{hh:02}{mm:02}",
                    if sign < 0 { '-' } else { '+' }
                ),
            ));
        }
        Some(sign * (hh * 3600 + mm * 60))
    };
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).unwrap_or(0), month, day)
        .filter(|_| year >= 1970)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Format,
                format!("invalid date {year:04}-{month:02}-{day:02}"),
            )
        })?;
    let datetime = date.and_hms_opt(hour, minute, second).ok_or_else(|| {
        Error::new(
            ErrorKind::Format,
            format!("invalid time {hour:02}:{minute:02}:{second:02}"),
        )
    })?;
    match offset {
        Some(seconds) => Ok(datetime.and_utc().timestamp() - i64::from(seconds)),
        None => match chrono::Local.from_local_datetime(&datetime) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Ok(t.timestamp()),
            // a local time skipped by a DST change: read it as the hour before the change did
            LocalResult::None => Ok(datetime.and_utc().timestamp()
                - i64::from(chrono::Local::now().offset().local_minus_utc())),
        },
    }
}

/// Look for the requested backup in one repository's backup.info; `repo` names it in warnings.
///
/// # Errors
/// `BackupSetInvalid` when the newest backup belongs to an older database than the stanza's
/// current one (the cluster was upgraded and no backup was taken since).
pub fn choose(info: &BackupInfo, request: &Request, repo: &str) -> Result<Answer> {
    if info.backups.is_empty() {
        return Ok(Answer::Next(Some(format!(
            "{repo}: [{}] no backup sets to restore",
            ErrorKind::BackupSetInvalid.name()
        ))));
    }
    match request {
        Request::Label(label) => Ok(if info.backups.contains_key(label) {
            Answer::Found(label.clone())
        } else {
            Answer::Next(None)
        }),
        Request::Latest => {
            let Some((label, latest)) = info.backups.iter().next_back() else {
                return Ok(Answer::Next(None));
            };
            if latest.db_id < info.current.id {
                return Err(Error::new(
                    ErrorKind::BackupSetInvalid,
                    format!("the latest backup set found '{label}' is from a prior version of PostgreSQL"),
                )
                .with_hint("was a backup created after the stanza-upgrade?\nHINT: specify --set or --type=time/lsn to restore from a prior version of PostgreSQL."));
            }
            Ok(Answer::Found(label.clone()))
        }
        Request::Before(time) => Ok(info
            .backups
            .iter()
            .rev()
            .find(|(_, b)| b.timestamp_stop < *time)
            .map_or(Answer::Next(None), |(label, _)| {
                Answer::Found(label.clone())
            })),
        Request::AtOrBefore(lsn) => {
            for (label, backup) in info.backups.iter().rev() {
                let Some(stop) = backup.lsn_stop.as_deref() else {
                    return Ok(Answer::Next(Some(format!(
                        "{repo} reached backup from prior version missing required LSN info before finding a match -- backup auto-select has been disabled for this repo\nHINT: you may specify a backup to restore using the --set option."
                    ))));
                };
                if stop.parse::<Lsn>().is_ok_and(|stop| stop <= *lsn) {
                    return Ok(Answer::Found(label.clone()));
                }
            }
            Ok(Answer::Next(None))
        }
    }
}

/// The error when no repository had the requested backup.
#[must_use]
pub fn not_found(request: &Request, target: &str) -> Error {
    let message = match request {
        Request::Label(label) => format!("backup set {label} is not valid"),
        Request::Latest => "no backup set found to restore".to_string(),
        Request::Before(_) => {
            format!("unable to find backup set with stop time less than '{target}'")
        }
        Request::AtOrBefore(_) => {
            format!("unable to find backup set with lsn less than or equal to '{target}'")
        }
    };
    Error::new(ErrorKind::BackupSetInvalid, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgkeep_pg::PgVersion;
    use pgkeep_repo::info::BackupInfoEntry;
    use pgkeep_repo::layout::BackupType;

    fn entry(db_id: u32, stop: i64, lsn: Option<&str>) -> BackupInfoEntry {
        BackupInfoEntry {
            backrest_format: 5,
            backrest_version: "2.45".to_string(),
            annotation: None,
            archive_start: None,
            archive_stop: None,
            error: None,
            repo_size: 0,
            repo_size_delta: 0,
            repo_size_map: None,
            repo_size_map_delta: None,
            size: 0,
            size_delta: 0,
            lsn_start: None,
            lsn_stop: lsn.map(str::to_string),
            prior: None,
            reference: None,
            timestamp_start: stop - 10,
            timestamp_stop: stop,
            backup_type: BackupType::Full,
            db_id,
            option_archive_check: true,
            option_archive_copy: false,
            option_backup_standby: false,
            option_checksum_page: true,
            option_compress: true,
            option_hardlink: false,
            option_online: true,
            extra: Default::default(),
        }
    }

    fn info() -> BackupInfo {
        let v15 = PgVersion::from_major(15).unwrap();
        let mut info = BackupInfo::new(v15, 1, 1300, 202_209_061, None);
        info.add_backup("20240101-000000F", entry(1, 1000, Some("0/5000100")));
        info.add_backup(
            "20240101-000000F_20240102-000000I",
            entry(1, 2000, Some("0/9000100")),
        );
        info.add_backup("20240103-000000F", entry(1, 3000, Some("1/0")));
        info
    }

    #[test]
    fn times_parse_like_pgbackrest() {
        assert_eq!(parse_time("2026-11-25 03:00:40+00").unwrap(), 1_795_575_640);
        assert_eq!(parse_time("2026-11-25 05:00:40+02").unwrap(), 1_795_575_640);
        assert_eq!(
            parse_time("2026-11-25 05:30:40.123456+0230").unwrap(),
            1_795_575_640
        );
        assert_eq!(
            parse_time("2026-11-25 00:30:40,5-02:30").unwrap(),
            1_795_575_640
        );
        for bad in [
            "2026-11-25",
            "2026-11-25T03:00:40",
            "2026-11-25 03:00:40 UTC",
            "2026-11-25 03:00:40.1234567",
            "2026-11-25 03:00:40+1",
            "yesterday",
            "",
        ] {
            let err = parse_time(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Format, "{bad}");
            assert_eq!(
                err.message(),
                format!(
                    "automatic backup set selection cannot be performed with provided time '{bad}'"
                )
            );
        }
        assert_eq!(
            parse_time("2026-13-01 00:00:00").unwrap_err().message(),
            "invalid date 2026-13-01"
        );
        assert_eq!(
            parse_time("2026-01-01 24:00:00").unwrap_err().message(),
            "invalid time 24:00:00"
        );
        assert_eq!(
            parse_time("2026-01-01 10:00:00+15").unwrap_err().message(),
            "invalid timezone +1500"
        );
        // local time: whatever the zone, the same wall time in UTC differs by the local offset
        let local = parse_time("2026-06-01 12:00:00").unwrap();
        let utc = parse_time("2026-06-01 12:00:00+00").unwrap();
        assert!((local - utc).abs() <= 14 * 3600);
    }

    #[test]
    fn choose_by_label_latest_time_and_lsn() {
        let info = info();
        let found = |r: &Request| choose(&info, r, "repo1").unwrap();
        assert_eq!(
            found(&Request::Label("20240101-000000F".into())),
            Answer::Found("20240101-000000F".into())
        );
        assert_eq!(
            found(&Request::Label("20990101-000000F".into())),
            Answer::Next(None)
        );
        assert_eq!(
            found(&Request::Latest),
            Answer::Found("20240103-000000F".into())
        );
        assert_eq!(
            found(&Request::Before(2500)),
            Answer::Found("20240101-000000F_20240102-000000I".into())
        );
        assert_eq!(
            found(&Request::Before(2000)),
            Answer::Found("20240101-000000F".into())
        );
        assert_eq!(found(&Request::Before(1000)), Answer::Next(None));
        assert_eq!(
            found(&Request::AtOrBefore("0/9000100".parse().unwrap())),
            Answer::Found("20240101-000000F_20240102-000000I".into())
        );
        assert_eq!(
            found(&Request::AtOrBefore("0/1".parse().unwrap())),
            Answer::Next(None)
        );
        assert_eq!(
            not_found(&Request::Before(1), "2024-01-01 00:00:00").message(),
            "unable to find backup set with stop time less than '2024-01-01 00:00:00'"
        );
        assert_eq!(
            not_found(&Request::Label("X".into()), "").message(),
            "backup set X is not valid"
        );
        assert_eq!(not_found(&Request::Latest, "").code(), 75);
    }

    #[test]
    fn empty_repos_old_databases_and_missing_lsns() {
        let v15 = PgVersion::from_major(15).unwrap();
        let empty = BackupInfo::new(v15, 1, 1300, 202_209_061, None);
        assert_eq!(
            choose(&empty, &Request::Latest, "repo2").unwrap(),
            Answer::Next(Some(
                "repo2: [BackupSetInvalidError] no backup sets to restore".to_string()
            ))
        );
        let mut upgraded = info();
        upgraded.add_history(PgVersion::from_major(16).unwrap(), 2, 1300, 202_307_071);
        let err = choose(&upgraded, &Request::Latest, "repo1").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BackupSetInvalid);
        assert!(
            err.message()
                .contains("'20240103-000000F' is from a prior version")
        );
        // --set and time still reach the old backups
        assert!(choose(&upgraded, &Request::Before(5000), "repo1").is_ok());

        let mut old = info();
        old.add_backup("20240104-000000F", entry(1, 4000, None));
        match choose(&old, &Request::AtOrBefore("0/1".parse().unwrap()), "repo1").unwrap() {
            Answer::Next(Some(w)) => assert!(
                w.starts_with("repo1 reached backup from prior version"),
                "{w}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
