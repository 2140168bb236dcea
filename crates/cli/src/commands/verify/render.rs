//! What `verify` found, and its text and JSON renderings.
//!
//! Contract:
//! - [`render_text`] prints pgBackRest 2.45's result text byte for byte (`stanza:`/`status:` lines, one line per
//!   archive id and backup with problems — or every one with `--verbose` — followed by the error counts), and
//!   nothing at all for a clean repository without `--verbose`. pgkeep adds lines pgBackRest does not print, only
//!   where something is wrong, each indented four spaces under its archive id or backup (two under the status for
//!   repository-wide problems), naming the file: `<reason> '<file>'` for a file that failed (reasons as
//!   pgBackRest logs them: `file missing`, `invalid checksum`, `invalid size`, `invalid result`), `missing WAL
//!   '<first>'[ to '<last>']` for WAL a backup or point-in-time recovery needs, `duplicate WAL '<segment>'`,
//!   `missing history file '<name>'`, `invalid history file '<name>': <error>`, `invalid manifest '<name>':
//!   <error>`, `invalid info file '<name>': <error>`, `archiveIds '<ids>' are not in the archive.info history
//!   list`. An archive id or backup with such lines is shown even when
//!   pgBackRest would have hidden it.
//! - [`render_json`] carries the same facts as one JSON object (documented on the function).

use serde_json::{Value, json};

/// A file that failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidFile {
    /// Name relative to the archive or backup directory of the stanza, as pgBackRest logs it.
    pub name: String,
    /// `file missing`, `invalid checksum`, `invalid size` or `invalid result`.
    pub reason: &'static str,
    /// The error, for `invalid result`.
    pub detail: Option<String>,
}

/// One sequential WAL range and the files in it that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRangeResult {
    /// First segment.
    pub start: String,
    /// Last segment.
    pub stop: String,
    /// Files of the range that failed.
    pub invalid: Vec<InvalidFile>,
}

/// Results of one archive id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ArchiveResult {
    /// `15-1`.
    pub archive_id: String,
    /// WAL files listed (duplicates included).
    pub total_wal: u32,
    /// WAL files that verified.
    pub valid_wal: u32,
    /// Sequential ranges, ascending.
    pub ranges: Vec<WalRangeResult>,
    /// pgkeep: segments present more than once.
    pub duplicates: Vec<String>,
    /// pgkeep: runs of segments point-in-time recovery needs but the archive lacks.
    pub missing_wal: Vec<(String, String)>,
    /// pgkeep: history files absent (`missing`) or unreadable (`invalid`, with the error).
    pub history: Vec<(String, Option<String>)>,
}

impl ArchiveResult {
    fn has_extras(&self) -> bool {
        !self.duplicates.is_empty() || !self.missing_wal.is_empty() || !self.history.is_empty()
    }
}

/// pgBackRest's backup statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupStatus {
    /// Every file verified.
    Valid,
    /// Something failed.
    Invalid,
    /// Neither manifest exists.
    ManifestMissing,
    /// The newest unlisted backup without a main manifest: assumed running, skipped.
    InProgress,
}

impl BackupStatus {
    /// Text as pgBackRest prints it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::Valid => "valid",
            BackupStatus::Invalid => "invalid",
            BackupStatus::ManifestMissing => "manifest missing",
            BackupStatus::InProgress => "in-progress",
        }
    }
}

/// Results of one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupResult {
    /// Label.
    pub label: String,
    /// Status.
    pub status: BackupStatus,
    /// Files checked (manifest entries).
    pub total_files: u32,
    /// Files that verified.
    pub valid_files: u32,
    /// Files that failed.
    pub invalid: Vec<InvalidFile>,
    /// pgkeep: runs of WAL between its archive start and stop that the archive lacks (`<archive id>/<segment>`).
    pub missing_wal: Vec<(String, String)>,
    /// pgkeep: manifest files that could not be loaded, with the error.
    pub manifest_errors: Vec<(String, String)>,
}

impl BackupResult {
    /// A backup not yet looked at.
    #[must_use]
    pub fn new(label: &str) -> BackupResult {
        BackupResult {
            label: label.to_string(),
            status: BackupStatus::Valid,
            total_files: 0,
            valid_files: 0,
            invalid: Vec::new(),
            missing_wal: Vec::new(),
            manifest_errors: Vec::new(),
        }
    }

    fn has_extras(&self) -> bool {
        !self.invalid.is_empty() || !self.missing_wal.is_empty() || !self.manifest_errors.is_empty()
    }
}

/// Everything verify found on one repository.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Stanza.
    pub stanza: String,
    /// `repoN` key.
    pub repo: u32,
    /// Errors counted (non-zero = status error and a failing exit).
    pub errors: u32,
    /// pgBackRest's repository-level lines (`No usable backup.info file`, a history mismatch message).
    pub problems: Vec<String>,
    /// pgkeep: info files that could not be loaded although a twin could, `(name, error)`.
    pub info_errors: Vec<(String, String)>,
    /// pgkeep: archive id directories that archive.info does not know.
    pub unknown_archive_ids: Vec<String>,
    /// False when there was nothing to verify (`no archives or backups exist in the repo`).
    pub checked: bool,
    /// Archive ids, ascending by history id.
    pub archives: Vec<ArchiveResult>,
    /// Backups, ascending.
    pub backups: Vec<BackupResult>,
}

fn counts_line(invalid: &[&InvalidFile], verbose: bool) -> Option<String> {
    let count = |reason: &str| invalid.iter().filter(|f| f.reason == reason).count();
    let missing = count("file missing");
    let checksum = count("invalid checksum");
    let size = count("invalid size");
    let other = invalid.len() - missing - checksum - size;
    if !verbose && invalid.is_empty() {
        return None;
    }
    let mut line = String::from("\n    ");
    if verbose || missing > 0 {
        line.push_str(&format!("missing: {missing}, "));
    }
    if verbose || checksum > 0 {
        line.push_str(&format!("checksum invalid: {checksum}, "));
    }
    if verbose || size > 0 {
        line.push_str(&format!("size invalid: {size}, "));
    }
    if verbose || other > 0 {
        line.push_str(&format!("other: {other}"));
    }
    if line.ends_with(", ") {
        line.truncate(line.len() - 2);
    }
    Some(line)
}

fn invalid_line(file: &InvalidFile) -> String {
    match &file.detail {
        Some(detail) => format!("\n    {} '{}': {detail}", file.reason, file.name),
        None => format!("\n    {} '{}'", file.reason, file.name),
    }
}

/// `'<first>'`, or `'<first>' to '<last>'` for a run of several.
#[must_use]
pub fn run_text(first: &str, last: &str) -> String {
    if first == last {
        format!("'{first}'")
    } else {
        format!("'{first}' to '{last}'")
    }
}

/// The text pgBackRest prints (see the module contract); empty when there is nothing to say.
#[must_use]
pub fn render_text(report: &Report, verbose: bool) -> String {
    let mut body = String::new();
    for problem in &report.problems {
        body.push('\n');
        body.push_str(problem);
    }
    for (name, error) in &report.info_errors {
        body.push_str(&format!("\n  invalid info file '{name}': {error}"));
    }
    if !report.unknown_archive_ids.is_empty() {
        body.push_str(&format!(
            "\n  archiveIds '{}' are not in the archive.info history list",
            report.unknown_archive_ids.join(", ")
        ));
    }
    if report.problems.is_empty() {
        if report.checked {
            render_archives(&mut body, report, verbose);
            render_backups(&mut body, report, verbose);
        } else {
            body.push_str("\n    no archives or backups exist in the repo");
        }
    }
    if !verbose && report.errors == 0 {
        return String::new();
    }
    format!(
        "stanza: {}\nstatus: {}{body}",
        report.stanza,
        if report.errors > 0 { "error" } else { "ok" }
    )
}

fn render_archives(out: &mut String, report: &Report, verbose: bool) {
    if verbose && report.archives.is_empty() {
        out.push_str("\n  archiveId: none found");
        return;
    }
    for archive in &report.archives {
        let extras = archive.has_extras();
        if verbose || archive.total_wal != archive.valid_wal || extras {
            out.push_str(&format!(
                "\n  archiveId: {}, total WAL checked: {}, total valid WAL: {}",
                archive.archive_id, archive.total_wal, archive.valid_wal
            ));
        }
        let invalid: Vec<&InvalidFile> = archive
            .ranges
            .iter()
            .flat_map(|r| r.invalid.iter())
            .collect();
        if archive.total_wal > 0
            && let Some(line) = counts_line(&invalid, verbose)
        {
            out.push_str(&line);
        }
        for file in &invalid {
            out.push_str(&invalid_line(file));
        }
        for segment in &archive.duplicates {
            out.push_str(&format!("\n    duplicate WAL '{segment}'"));
        }
        for (first, last) in &archive.missing_wal {
            out.push_str(&format!("\n    missing WAL {}", run_text(first, last)));
        }
        for (name, error) in &archive.history {
            match error {
                Some(error) => {
                    out.push_str(&format!("\n    invalid history file '{name}': {error}"))
                }
                None => out.push_str(&format!("\n    missing history file '{name}'")),
            }
        }
    }
}

fn render_backups(out: &mut String, report: &Report, verbose: bool) {
    if verbose && report.backups.is_empty() {
        out.push_str("\n  backup: none found");
        return;
    }
    for backup in &report.backups {
        let shown = !matches!(
            backup.status,
            BackupStatus::Valid | BackupStatus::InProgress
        );
        if verbose || shown || backup.has_extras() {
            out.push_str(&format!(
                "\n  backup: {}, status: {}, total files checked: {}, total valid files: {}",
                backup.label,
                backup.status.as_str(),
                backup.total_files,
                backup.valid_files
            ));
        }
        let invalid: Vec<&InvalidFile> = backup.invalid.iter().collect();
        if backup.total_files > 0
            && let Some(line) = counts_line(&invalid, verbose)
        {
            out.push_str(&line);
        }
        for (name, error) in &backup.manifest_errors {
            out.push_str(&format!("\n    invalid manifest '{name}': {error}"));
        }
        for file in &invalid {
            out.push_str(&invalid_line(file));
        }
        for (first, last) in &backup.missing_wal {
            out.push_str(&format!("\n    missing WAL {}", run_text(first, last)));
        }
    }
}

fn invalid_json(files: &[&InvalidFile]) -> Value {
    Value::Array(
        files
            .iter()
            .map(|f| {
                let mut o = json!({"name": f.name, "reason": f.reason});
                if let (Some(detail), Some(map)) = (&f.detail, o.as_object_mut()) {
                    map.insert("error".to_string(), json!(detail));
                }
                o
            })
            .collect(),
    )
}

fn runs_json(runs: &[(String, String)]) -> Value {
    Value::Array(
        runs.iter()
            .map(|(a, b)| json!({"start": a, "stop": b}))
            .collect(),
    )
}

/// The report as JSON (pgkeep's own schema; pgBackRest 2.45 has no JSON output for verify):
/// `{"stanza", "repo", "status": "ok"|"error", "errors": N, "problems": [text], "infoErrors": [{"name",
/// "error"}], "unknownArchiveIds": [id], "archives": [{"archiveId", "totalWal", "validWal", "ranges": [{"start", "stop"}], "invalid":
/// [{"name", "reason"[, "error"]}], "duplicates": [segment], "missingWal": [{"start", "stop"}], "history":
/// [{"name", "reason": "missing"|"invalid"[, "error"]}]}], "backups": [{"label", "status", "totalFiles",
/// "validFiles", "invalid": [...], "missingWal": [...], "manifestErrors": [{"name", "error"}]}]}`.
#[must_use]
pub fn render_json(report: &Report) -> String {
    let archives: Vec<Value> = report
        .archives
        .iter()
        .map(|a| {
            let invalid: Vec<&InvalidFile> = a.ranges.iter().flat_map(|r| r.invalid.iter()).collect();
            json!({
                "archiveId": a.archive_id,
                "totalWal": a.total_wal,
                "validWal": a.valid_wal,
                "ranges": a.ranges.iter().map(|r| json!({"start": r.start, "stop": r.stop})).collect::<Vec<_>>(),
                "invalid": invalid_json(&invalid),
                "duplicates": a.duplicates,
                "missingWal": runs_json(&a.missing_wal),
                "history": a.history.iter().map(|(name, error)| match error {
                    Some(e) => json!({"name": name, "reason": "invalid", "error": e}),
                    None => json!({"name": name, "reason": "missing"}),
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    let backups: Vec<Value> = report
        .backups
        .iter()
        .map(|b| {
            let invalid: Vec<&InvalidFile> = b.invalid.iter().collect();
            json!({
                "label": b.label,
                "status": b.status.as_str(),
                "totalFiles": b.total_files,
                "validFiles": b.valid_files,
                "invalid": invalid_json(&invalid),
                "missingWal": runs_json(&b.missing_wal),
                "manifestErrors": b.manifest_errors.iter().map(|(n, e)| json!({"name": n, "error": e})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let value = json!({
        "stanza": report.stanza,
        "repo": report.repo,
        "status": if report.errors > 0 { "error" } else { "ok" },
        "errors": report.errors,
        "problems": report.problems,
        "infoErrors": report.info_errors.iter().map(|(n, e)| json!({"name": n, "error": e})).collect::<Vec<_>>(),
        "unknownArchiveIds": report.unknown_archive_ids,
        "archives": archives,
        "backups": backups,
    });
    format!("{value}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean() -> Report {
        let mut backup = BackupResult::new("20261125-053450F");
        backup.total_files = 964;
        backup.valid_files = 964;
        Report {
            stanza: "demo".to_string(),
            repo: 1,
            errors: 0,
            checked: true,
            archives: vec![ArchiveResult {
                archive_id: "15-1".to_string(),
                total_wal: 10,
                valid_wal: 10,
                ranges: vec![WalRangeResult {
                    start: "000000010000000000000001".to_string(),
                    stop: "00000001000000000000000A".to_string(),
                    invalid: Vec::new(),
                }],
                ..ArchiveResult::default()
            }],
            backups: vec![backup],
            ..Report::default()
        }
    }

    #[test]
    fn clean_text_is_pgbackrest_s() {
        let report = clean();
        assert_eq!(render_text(&report, false), "");
        assert_eq!(
            render_text(&report, true),
            "stanza: demo\nstatus: ok\n  archiveId: 15-1, total WAL checked: 10, total valid WAL: 10\n    missing: 0, checksum invalid: 0, size invalid: 0, other: 0\n  backup: 20261125-053450F, status: valid, total files checked: 964, total valid files: 964\n    missing: 0, checksum invalid: 0, size invalid: 0, other: 0"
        );
        let mut empty = Report {
            stanza: "demo".to_string(),
            ..Report::default()
        };
        assert_eq!(
            render_text(&empty, true),
            "stanza: demo\nstatus: ok\n    no archives or backups exist in the repo"
        );
        empty.errors = 1;
        empty
            .problems
            .push("  No usable backup.info file".to_string());
        assert_eq!(
            render_text(&empty, false),
            "stanza: demo\nstatus: error\n  No usable backup.info file"
        );
    }

    #[test]
    fn problems_are_counted_and_named() {
        let mut report = clean();
        report.errors = 3;
        let backup = &mut report.backups[0];
        backup.status = BackupStatus::Invalid;
        backup.valid_files = 963;
        backup.invalid.push(InvalidFile {
            name: "20261125-053450F/pg_data/base/5/1259.gz".to_string(),
            reason: "invalid checksum",
            detail: None,
        });
        backup.missing_wal.push((
            "15-1/000000010000000000000002".to_string(),
            "15-1/000000010000000000000002".to_string(),
        ));
        report.archives[0].missing_wal.push((
            "000000010000000000000004".to_string(),
            "000000010000000000000005".to_string(),
        ));
        let text = render_text(&report, false);
        assert_eq!(
            text,
            "stanza: demo\nstatus: error\n  archiveId: 15-1, total WAL checked: 10, total valid WAL: 10\n    missing WAL '000000010000000000000004' to '000000010000000000000005'\n  backup: 20261125-053450F, status: invalid, total files checked: 964, total valid files: 963\n    checksum invalid: 1\n    invalid checksum '20261125-053450F/pg_data/base/5/1259.gz'\n    missing WAL '15-1/000000010000000000000002'"
        );
        let json: Value = serde_json::from_str(&render_json(&report)).unwrap();
        assert_eq!(json["status"], "error");
        assert_eq!(
            json["backups"][0]["invalid"][0]["reason"],
            "invalid checksum"
        );
        assert_eq!(
            json["archives"][0]["missingWal"][0]["stop"],
            "000000010000000000000005"
        );
        assert_eq!(
            json["archives"][0]["ranges"][0]["start"],
            "000000010000000000000001"
        );
    }
}
