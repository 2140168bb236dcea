//! Every repository path, backup label and archive file name rule, in one place (house rule 9).
//!
//! Contract:
//! - Paths are relative to the repository root, `/`-separated, as `pgkeep_storage::Storage` expects
//!   (`archive/<stanza>/...`, `backup/<stanza>/...`). Nothing else in the project builds repository paths.
//! - Names are copied byte for byte; no function here escapes or validates a stanza or manifest name (pgBackRest
//!   does not either). Functions that take a WAL segment or label use its first characters as pgBackRest does and
//!   tolerate shorter input without panicking.
//! - The name checks are exact equivalents of pgBackRest's regular expressions, including their quirks: the class
//!   `[0-F]` is the byte range `0x30..=0x46` (digits, `:;<=>?@` and `A-F`), `[0-f]` is `0x30..=0x66`, and the `.` in
//!   `^[0-F]{8}.history$` matches any character.

/// Archive subtree.
pub const ARCHIVE_DIR: &str = "archive";
/// Backup subtree.
pub const BACKUP_DIR: &str = "backup";
/// Archive info file name.
pub const ARCHIVE_INFO_FILE: &str = "archive.info";
/// Backup info file name.
pub const BACKUP_INFO_FILE: &str = "backup.info";
/// Manifest file name inside a backup directory.
pub const MANIFEST_FILE: &str = "backup.manifest";
/// Extension of the twin copy of an info file or manifest.
pub const COPY_EXT: &str = ".copy";
/// Directory of the gzipped manifest history.
pub const HISTORY_DIR: &str = "backup.history";
/// Extension of a history manifest.
pub const HISTORY_MANIFEST_EXT: &str = ".manifest.gz";
/// Informational symlink to the newest backup.
pub const LATEST_LINK: &str = "latest";
/// Directory of bundles inside a backup.
pub const BUNDLE_DIR: &str = "bundle";
/// Extension of a partial WAL segment.
pub const PARTIAL_EXT: &str = ".partial";

/// `archive/<stanza>`
#[must_use]
pub fn archive_path(stanza: &str) -> String {
    format!("{ARCHIVE_DIR}/{stanza}")
}

/// `archive/<stanza>/archive.info`
#[must_use]
pub fn archive_info_path(stanza: &str) -> String {
    format!("{ARCHIVE_DIR}/{stanza}/{ARCHIVE_INFO_FILE}")
}

/// `archive/<stanza>/<archive-id>` (e.g. `15-1`)
#[must_use]
pub fn archive_id_path(stanza: &str, archive_id: &str) -> String {
    format!("{ARCHIVE_DIR}/{stanza}/{archive_id}")
}

/// `archive/<stanza>/<archive-id>/<first 16 chars of seg>`: the directory holding a segment, partial segment or
/// `.backup` file.
#[must_use]
pub fn wal_segment_dir(stanza: &str, archive_id: &str, seg: &str) -> String {
    format!(
        "{ARCHIVE_DIR}/{stanza}/{archive_id}/{}",
        seg.get(..16).unwrap_or(seg)
    )
}

/// Where an archived file named `file_name` lives: names starting with 24 characters of `[0-F]` (segments, partial
/// segments, backup-history files) go to their 16-character directory, anything else (timeline history) directly
/// into the archive-id directory.
#[must_use]
pub fn archive_file_path(stanza: &str, archive_id: &str, file_name: &str) -> String {
    if file_name.len() >= 24 && file_name.bytes().take(24).all(is_upper_hex_range) {
        format!(
            "{}/{file_name}",
            wal_segment_dir(stanza, archive_id, file_name)
        )
    } else {
        format!("{}/{file_name}", archive_id_path(stanza, archive_id))
    }
}

/// `backup/<stanza>`
#[must_use]
pub fn backup_path(stanza: &str) -> String {
    format!("{BACKUP_DIR}/{stanza}")
}

/// `backup/<stanza>/backup.info`
#[must_use]
pub fn backup_info_path(stanza: &str) -> String {
    format!("{BACKUP_DIR}/{stanza}/{BACKUP_INFO_FILE}")
}

/// `backup/<stanza>/<label>`
#[must_use]
pub fn backup_label_path(stanza: &str, label: &str) -> String {
    format!("{BACKUP_DIR}/{stanza}/{label}")
}

/// `backup/<stanza>/<label>/backup.manifest`
#[must_use]
pub fn manifest_path(stanza: &str, label: &str) -> String {
    format!("{BACKUP_DIR}/{stanza}/{label}/{MANIFEST_FILE}")
}

/// `backup/<stanza>/backup.history`
#[must_use]
pub fn history_path(stanza: &str) -> String {
    format!("{BACKUP_DIR}/{stanza}/{HISTORY_DIR}")
}

/// `backup/<stanza>/backup.history/<YYYY>/<label>.manifest.gz` (year = first 4 characters of the label).
#[must_use]
pub fn history_manifest_path(stanza: &str, label: &str) -> String {
    format!(
        "{BACKUP_DIR}/{stanza}/{HISTORY_DIR}/{}/{label}{HISTORY_MANIFEST_EXT}",
        label.get(..4).unwrap_or(label)
    )
}

/// `backup/<stanza>/latest`
#[must_use]
pub fn latest_link(stanza: &str) -> String {
    format!("{BACKUP_DIR}/{stanza}/{LATEST_LINK}")
}

/// `backup/<stanza>/<label>/bundle/<bni>`
#[must_use]
pub fn bundle_path(stanza: &str, label: &str, bundle_id: u64) -> String {
    format!("{BACKUP_DIR}/{stanza}/{label}/{BUNDLE_DIR}/{bundle_id}")
}

/// `backup/<stanza>/<label>/<manifest name><compress ext>`, e.g. `.../pg_data/PG_VERSION.gz`.
#[must_use]
pub fn backup_file_path(stanza: &str, label: &str, name: &str, compress_ext: &str) -> String {
    format!("{BACKUP_DIR}/{stanza}/{label}/{name}{compress_ext}")
}

/// `<path>.copy`
#[must_use]
pub fn copy_path(path: &str) -> String {
    format!("{path}{COPY_EXT}")
}

/// Compression of repository files: the one table lives in `pgkeep_base::compress`.
pub use pgkeep_base::compress::CompressType;

/// Backup type, as written in manifests and backup.info (`full`, `diff`, `incr`) and as label suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackupType {
    /// Full backup (`F`).
    Full,
    /// Differential backup (`D`), based on the newest full.
    Diff,
    /// Incremental backup (`I`), based on the newest backup.
    Incr,
}

impl BackupType {
    /// `full`, `diff` or `incr`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Diff => "diff",
            BackupType::Incr => "incr",
        }
    }

    /// Parse `full`, `diff` or `incr`.
    #[must_use]
    pub fn parse(s: &str) -> Option<BackupType> {
        match s {
            "full" => Some(BackupType::Full),
            "diff" => Some(BackupType::Diff),
            "incr" => Some(BackupType::Incr),
            _ => None,
        }
    }

    /// The label suffix character.
    #[must_use]
    pub fn label_suffix(self) -> char {
        match self {
            BackupType::Full => 'F',
            BackupType::Diff => 'D',
            BackupType::Incr => 'I',
        }
    }
}

/// `[0-9]{8}-[0-9]{6}` at the start of `b`.
fn is_date_time(b: &[u8]) -> bool {
    b.len() >= 15
        && b.iter().take(8).all(u8::is_ascii_digit)
        && b.get(8) == Some(&b'-')
        && b.iter().skip(9).take(6).all(u8::is_ascii_digit)
}

/// Equivalent of `^[0-9]{8}\-[0-9]{6}F(\_[0-9]{8}\-[0-9]{6}(D|I)){0,1}$`.
#[must_use]
pub fn is_backup_label(label: &str) -> bool {
    let b = label.as_bytes();
    if !(is_date_time(b) && b.get(15) == Some(&b'F')) {
        return false;
    }
    match b.len() {
        16 => true,
        33 => {
            b.get(16) == Some(&b'_')
                && b.get(17..).is_some_and(is_date_time)
                && matches!(b.get(32), Some(b'D' | b'I'))
        }
        _ => false,
    }
}

/// The type encoded in a valid label (`None` when `label` is not a backup label).
#[must_use]
pub fn backup_type_from_label(label: &str) -> Option<BackupType> {
    if !is_backup_label(label) {
        return None;
    }
    match label.as_bytes().last() {
        Some(b'F') => Some(BackupType::Full),
        Some(b'D') => Some(BackupType::Diff),
        Some(b'I') => Some(BackupType::Incr),
        _ => None,
    }
}

/// The label of the full backup a label belongs to: its first 16 characters (`20261125-030019F`).
#[must_use]
pub fn label_full_prefix(label: &str) -> &str {
    label.get(..16).unwrap_or(label)
}

/// Build a label from the backup start time already formatted as `YYYYMMDD-HHMMSS` in local time
/// (`backupLabelFormat()`): full = `<stamp>F`; diff/incr = `<first 16 chars of prior>_<stamp>D|I`. `None` when the
/// stamp is malformed, or a diff/incr has no valid prior label, or a full has one.
#[must_use]
pub fn format_backup_label(
    backup_type: BackupType,
    prior_label: Option<&str>,
    stamp: &str,
) -> Option<String> {
    if stamp.len() != 15 || !is_date_time(stamp.as_bytes()) {
        return None;
    }
    match (backup_type, prior_label) {
        (BackupType::Full, None) => Some(format!("{stamp}F")),
        (BackupType::Diff | BackupType::Incr, Some(prior)) if is_backup_label(prior) => {
            Some(format!(
                "{}_{stamp}{}",
                label_full_prefix(prior),
                backup_type.label_suffix()
            ))
        }
        _ => None,
    }
}

/// `[0-F]`: the byte range `'0'..='F'`.
fn is_upper_hex_range(b: u8) -> bool {
    (b'0'..=b'F').contains(&b)
}

/// `[0-f]`: the byte range `'0'..='f'`.
fn is_lower_hex_range(b: u8) -> bool {
    (b'0'..=b'f').contains(&b)
}

/// `(\.gz|\.lz4|\.zst|\.xz|\.bz2){0,1}$` on the rest of a name.
fn is_compress_ext_or_empty(rest: &[u8]) -> bool {
    matches!(rest, b"" | b".gz" | b".lz4" | b".zst" | b".xz" | b".bz2")
}

/// `^[0-F]{24}$`: a WAL segment name.
#[must_use]
pub fn is_wal_segment(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(is_upper_hex_range)
}

/// `^[0-F]{24}(\.partial){0,1}$`: a segment or partial segment name (pgBackRest `walIsSegment`).
#[must_use]
pub fn is_wal_segment_or_partial(name: &str) -> bool {
    is_wal_segment(name) || name.strip_suffix(PARTIAL_EXT).is_some_and(is_wal_segment)
}

/// True for a partial segment name (`...partial`).
#[must_use]
pub fn is_wal_partial(name: &str) -> bool {
    name.ends_with(PARTIAL_EXT)
}

/// `^[0-F]{16}$`: a WAL directory of the archive.
#[must_use]
pub fn is_wal_dir(name: &str) -> bool {
    name.len() == 16 && name.bytes().all(is_upper_hex_range)
}

/// `^[0-F]{8}.history$` (the `.` matches any character but a line feed): a timeline history file.
#[must_use]
pub fn is_timeline_history(name: &str) -> bool {
    let b = name.as_bytes();
    let Some(head) = b.get(..8) else {
        return false;
    };
    let Some(rest) = name.get(8..) else {
        return false;
    };
    let mut chars = rest.chars();
    head.iter().copied().all(is_upper_hex_range)
        && chars.next().is_some_and(|c| c != '\n')
        && chars.as_str() == "history"
}

/// `-[0-f]{40}(\.gz|...){0,1}$` after a segment name.
fn is_checksum_suffix(rest: &[u8]) -> bool {
    rest.first() == Some(&b'-')
        && rest.len() >= 41
        && rest
            .iter()
            .skip(1)
            .take(40)
            .copied()
            .all(is_lower_hex_range)
        && rest.get(41..).is_some_and(is_compress_ext_or_empty)
}

/// `^[0-F]{24}-[0-f]{40}(\.gz|\.lz4|\.zst|\.xz|\.bz2){0,1}$`: an archived, complete segment (what `info` counts for
/// the WAL min/max; partial segments are excluded).
#[must_use]
pub fn is_wal_segment_file(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 24
        && b.iter().take(24).copied().all(is_upper_hex_range)
        && b.get(24..).is_some_and(is_checksum_suffix)
}

/// `^[0-F]{24}(\.partial)?-[0-f]{40}(\.gz|\.bz2|\.lz4|\.zst|\.xz)?$`: an archived segment or partial segment.
#[must_use]
pub fn is_wal_archive_file(name: &str) -> bool {
    let b = name.as_bytes();
    if b.len() < 24 || !b.iter().take(24).copied().all(is_upper_hex_range) {
        return false;
    }
    let rest = b.get(24..).unwrap_or_default();
    is_checksum_suffix(rest)
        || rest
            .strip_prefix(b".partial")
            .is_some_and(is_checksum_suffix)
}

/// `^<segment>-[0-f]{40}(\.gz|...){0,1}$`: is `name` the archived file of `segment` (which may end in `.partial`)?
#[must_use]
pub fn is_archive_file_of(name: &str, segment: &str) -> bool {
    name.strip_prefix(segment)
        .is_some_and(|rest| is_checksum_suffix(rest.as_bytes()))
}

/// `<segment>-<sha1><ext>`: the archived file name of a segment.
#[must_use]
pub fn wal_archive_file_name(segment: &str, sha1_hex: &str, compress_ext: &str) -> String {
    format!("{segment}-{sha1_hex}{compress_ext}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(archive_path("demo"), "archive/demo");
        assert_eq!(archive_info_path("demo"), "archive/demo/archive.info");
        assert_eq!(archive_id_path("demo", "15-1"), "archive/demo/15-1");
        assert_eq!(
            wal_segment_dir("demo", "15-1", "000000010000000000000003"),
            "archive/demo/15-1/0000000100000000"
        );
        assert_eq!(
            archive_file_path("demo", "15-1", "000000010000000000000002.00000028.backup"),
            "archive/demo/15-1/0000000100000000/000000010000000000000002.00000028.backup"
        );
        assert_eq!(
            archive_file_path("demo", "15-1", "00000002.history"),
            "archive/demo/15-1/00000002.history"
        );
        assert_eq!(backup_path("demo"), "backup/demo");
        assert_eq!(backup_info_path("demo"), "backup/demo/backup.info");
        assert_eq!(
            backup_label_path("demo", "20261125-030019F"),
            "backup/demo/20261125-030019F"
        );
        assert_eq!(
            manifest_path("demo", "20261125-030019F"),
            "backup/demo/20261125-030019F/backup.manifest"
        );
        assert_eq!(
            history_manifest_path("demo", "20261125-030019F_20261125-030028D"),
            "backup/demo/backup.history/2026/20261125-030019F_20261125-030028D.manifest.gz"
        );
        assert_eq!(latest_link("demo"), "backup/demo/latest");
        assert_eq!(
            bundle_path("demo", "20261125-030115F", 2),
            "backup/demo/20261125-030115F/bundle/2"
        );
        assert_eq!(
            backup_file_path(
                "demo",
                "20261125-030019F",
                "pg_tblspc/16384/PG_15_202209061/5/16391",
                CompressType::Gz.ext()
            ),
            "backup/demo/20261125-030019F/pg_tblspc/16384/PG_15_202209061/5/16391.gz"
        );
        assert_eq!(copy_path("a/archive.info"), "a/archive.info.copy");
        // short input does not panic
        assert_eq!(wal_segment_dir("s", "15-1", "abc"), "archive/s/15-1/abc");
        assert_eq!(
            history_manifest_path("s", "ab"),
            "backup/s/backup.history/ab/ab.manifest.gz"
        );
    }

    #[test]
    fn labels() {
        assert!(is_backup_label("20261125-030019F"));
        assert!(is_backup_label("20261125-030019F_20261125-030028D"));
        assert!(is_backup_label("20261125-030019F_20261125-030031I"));
        for bad in [
            "",
            "20261125-030019",
            "20261125-030019D",
            "20261125_030019F",
            "2026112-5030019F",
            "20261125-030019F_",
            "20261125-030019F_20261125-030028F",
            "20261125-030019F_20261125-030028DX",
            "20261125-030019FX",
            "20261125-030019F-20261125-030028D",
            "2026112a-030019F",
            "٢٠٢٦١١٢٥-030019F",
        ] {
            assert!(!is_backup_label(bad), "{bad}");
        }
        assert_eq!(
            backup_type_from_label("20261125-030019F"),
            Some(BackupType::Full)
        );
        assert_eq!(
            backup_type_from_label("20261125-030019F_20261125-030028D"),
            Some(BackupType::Diff)
        );
        assert_eq!(
            backup_type_from_label("20261125-030019F_20261125-030031I"),
            Some(BackupType::Incr)
        );
        assert_eq!(backup_type_from_label("x"), None);
        assert_eq!(
            label_full_prefix("20261125-030019F_20261125-030031I"),
            "20261125-030019F"
        );
        assert_eq!(
            format_backup_label(BackupType::Full, None, "20261125-030019").as_deref(),
            Some("20261125-030019F")
        );
        assert_eq!(
            format_backup_label(
                BackupType::Incr,
                Some("20261125-030019F_20261125-030028D"),
                "20261125-030031"
            )
            .as_deref(),
            Some("20261125-030019F_20261125-030031I")
        );
        assert_eq!(
            format_backup_label(BackupType::Diff, None, "20261125-030031"),
            None
        );
        assert_eq!(
            format_backup_label(
                BackupType::Full,
                Some("20261125-030019F"),
                "20261125-030031"
            ),
            None
        );
        assert_eq!(
            format_backup_label(BackupType::Full, None, "2026-11-25"),
            None
        );
        assert_eq!(BackupType::parse("diff"), Some(BackupType::Diff));
        assert_eq!(BackupType::parse("weekly"), None);
        assert_eq!(BackupType::Incr.as_str(), "incr");
    }

    #[test]
    fn wal_names() {
        let seg = "00000001000000000000000A";
        assert!(is_wal_segment(seg));
        assert!(!is_wal_segment("00000001000000000000000a"));
        assert!(!is_wal_segment("00000001000000000000000"));
        // [0-F] is a byte range: ':' .. '@' are inside it
        assert!(is_wal_segment("0000000100000000000000:@"));
        assert!(is_wal_segment_or_partial(
            "000000010000000000000003.partial"
        ));
        assert!(!is_wal_segment_or_partial(
            "000000010000000000000003.backup"
        ));
        assert!(is_wal_dir("0000000100000000"));
        assert!(!is_wal_dir("00000001000000000"));
        assert!(is_timeline_history("00000002.history"));
        assert!(is_timeline_history("00000002xhistory"));
        assert!(!is_timeline_history("00000002.history.gz"));
        assert!(!is_timeline_history("0000002.history"));

        let sha = "4cff59a0c0b1c2d3e4f5a6b7c8d9e0f1a2b3cc88";
        assert_eq!(sha.len(), 40);
        for ok in [
            format!("{seg}-{sha}"),
            format!("{seg}-{sha}.gz"),
            format!("{seg}-{sha}.bz2"),
            format!("{seg}-{sha}.lz4"),
            format!("{seg}-{sha}.zst"),
            format!("{seg}-{sha}.xz"),
        ] {
            assert!(is_wal_segment_file(&ok), "{ok}");
            assert!(is_wal_archive_file(&ok), "{ok}");
            assert!(is_archive_file_of(&ok, seg), "{ok}");
        }
        let partial = format!("{seg}.partial-{sha}.gz");
        assert!(is_wal_archive_file(&partial));
        assert!(!is_wal_segment_file(&partial));
        assert!(is_archive_file_of(&partial, &format!("{seg}.partial")));
        assert!(!is_archive_file_of(&partial, seg));
        for bad in [
            format!("{seg}-{sha}.gzip"),
            format!("{seg}-{}", &sha[..39]),
            format!("{seg}-{sha}0"),
            format!("{seg}{sha}"),
            format!("{seg}.backup"),
            format!("{seg}-{}", "g".repeat(40)),
            "00000002.history".to_string(),
        ] {
            assert!(!is_wal_segment_file(&bad), "{bad}");
            assert!(!is_wal_archive_file(&bad), "{bad}");
        }
        // [0-f] is a byte range too: upper case passes
        assert!(is_wal_segment_file(&format!("{seg}-{}", "A".repeat(40))));
        assert_eq!(
            wal_archive_file_name(seg, sha, ".gz"),
            format!("{seg}-{sha}.gz")
        );
    }
}
