//! Reading the WAL archive of a stanza: locating one segment and the oldest/newest segment archived.
//!
//! Contract:
//! - [`find_segment`] mirrors pgBackRest `walSegmentFind()` (without its wait loop): it lists the segment's
//!   16-character directory and matches `^<segment>-[0-f]{40}(<compress ext>)?$`, where a `.partial` segment name
//!   matches only partial files. More than one match is `ArchiveDuplicate` (45).
//! - [`wal_range`] mirrors the `info` command (`archiveDbList()` in `src/command/info/info.c`): directories matching
//!   `^[0-F]{16}$` in ascending order; the minimum is the first segment of the first directory holding any file
//!   matching `^[0-F]{24}-[0-f]{40}(<ext>)?$` (so partial segments, `.backup` and `.history` files are ignored), the
//!   maximum the last of the last such directory; both are the 24-character segment names.
//! - A missing archive-id directory or segment directory is not an error (`None`).

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_storage::{InfoLevel, Storage};

use crate::layout;

/// Oldest and newest archived segment of one archive id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRange {
    /// First segment (24 characters).
    pub min: String,
    /// Last segment (24 characters).
    pub max: String,
}

/// Names in `path` that satisfy `keep`, sorted ascending (byte order); `None` when the path does not exist.
fn list_names(
    storage: &dyn Storage,
    path: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Option<Vec<String>>> {
    let Some(entries) = storage.list(path, InfoLevel::Exists)? else {
        return Ok(None);
    };
    let mut names: Vec<String> = entries
        .into_iter()
        .map(|e| e.name)
        .filter(|n| keep(n))
        .collect();
    names.sort();
    Ok(Some(names))
}

/// The stored file name of `segment` (24 hex characters, optionally ending in `.partial`) under `archive_id`.
///
/// # Errors
/// `ParamInvalid` for a name that is not a segment; `ArchiveDuplicate` when more than one stored file matches;
/// storage errors.
pub fn find_segment(
    storage: &dyn Storage,
    stanza: &str,
    archive_id: &str,
    segment: &str,
) -> Result<Option<String>> {
    if !layout::is_wal_segment_or_partial(segment) {
        return Err(Error::new(
            ErrorKind::ParamInvalid,
            format!("'{segment}' is not a WAL segment name"),
        ));
    }
    let dir = layout::wal_segment_dir(stanza, archive_id, segment);
    let Some(mut found) = list_names(storage, &dir, |n| layout::is_archive_file_of(n, segment))?
    else {
        return Ok(None);
    };
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(Error::new(
            ErrorKind::ArchiveDuplicate,
            format!(
                "duplicates found in archive for WAL segment {segment}: {}",
                found.join(", ")
            ),
        )
        .with_hint("are multiple primaries archiving to this stanza?")),
    }
}

/// Oldest and newest complete segment archived under `archive_id`; `None` when there is none.
///
/// # Errors
/// Storage errors.
pub fn wal_range(
    storage: &dyn Storage,
    stanza: &str,
    archive_id: &str,
) -> Result<Option<WalRange>> {
    let base = layout::archive_id_path(stanza, archive_id);
    let Some(dirs) = list_names(storage, &base, layout::is_wal_dir)? else {
        return Ok(None);
    };
    let segments = |dir: &str| -> Result<Vec<String>> {
        let path = format!("{base}/{dir}");
        Ok(list_names(storage, &path, layout::is_wal_segment_file)?.unwrap_or_default())
    };
    let first24 = |name: &str| name.get(..24).unwrap_or(name).to_string();

    let mut min = None;
    for dir in &dirs {
        if let Some(first) = segments(dir)?.first() {
            min = Some(first24(first));
            break;
        }
    }
    let Some(min) = min else {
        return Ok(None);
    };
    let mut max = None;
    for dir in dirs.iter().rev() {
        if let Some(last) = segments(dir)?.last() {
            max = Some(first24(last));
            break;
        }
    }
    Ok(Some(WalRange {
        max: max.unwrap_or_else(|| min.clone()),
        min,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_storage::MemStorage;

    const SHA_A: &str = "c9254aeea57ba96b912403620bdf0e6cac7f623e";
    const SHA_B: &str = "24dc5f15f01e3435499f9aff3b739b50e0cf4167";

    fn archive() -> MemStorage {
        let s = MemStorage::new();
        let base = "archive/demo/15-1";
        for name in [
            format!("0000000100000000/000000010000000000000001-{SHA_A}.gz"),
            format!("0000000100000000/000000010000000000000002-{SHA_B}.gz"),
            "0000000100000000/000000010000000000000002.00000028.backup".to_string(),
            format!("0000000100000000/00000001000000000000000F.partial-{SHA_A}.gz"),
            format!("0000000100000001/000000010000000100000000-{SHA_A}"),
            format!("0000000200000001/000000020000000100000005-{SHA_B}.zst"),
            format!("0000000200000001/000000020000000100000009.partial-{SHA_A}.zst"),
            "0000000300000001/000000030000000100000000.00000028.backup".to_string(),
            "00000002.history".to_string(),
        ] {
            s.insert(&format!("{base}/{name}"), b"x");
        }
        s
    }

    #[test]
    fn range_ignores_partial_backup_and_history_files() {
        let s = archive();
        let range = wal_range(&s, "demo", "15-1").unwrap().unwrap();
        assert_eq!(range.min, "000000010000000000000001");
        assert_eq!(range.max, "000000020000000100000005");
        assert_eq!(wal_range(&s, "demo", "14-2").unwrap(), None);
        let empty = MemStorage::new();
        empty.insert("archive/demo/15-1/0000000100000000/x.backup", b"");
        assert_eq!(wal_range(&empty, "demo", "15-1").unwrap(), None);
    }

    #[test]
    fn find_segment_matches_exactly() {
        let s = archive();
        assert_eq!(
            find_segment(&s, "demo", "15-1", "000000010000000000000002").unwrap(),
            Some(format!("000000010000000000000002-{SHA_B}.gz"))
        );
        assert_eq!(
            find_segment(&s, "demo", "15-1", "00000001000000000000000F").unwrap(),
            None
        );
        assert_eq!(
            find_segment(&s, "demo", "15-1", "00000001000000000000000F.partial").unwrap(),
            Some(format!("00000001000000000000000F.partial-{SHA_A}.gz"))
        );
        assert_eq!(
            find_segment(&s, "demo", "15-1", "000000090000000000000001").unwrap(),
            None
        );
        let err = find_segment(&s, "demo", "15-1", "00000002.history").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ParamInvalid);
    }

    #[test]
    fn duplicates_are_an_error() {
        let s = archive();
        s.insert(
            &format!("archive/demo/15-1/0000000100000000/000000010000000000000002-{SHA_A}.gz"),
            b"y",
        );
        let err = find_segment(&s, "demo", "15-1", "000000010000000000000002").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArchiveDuplicate);
        assert_eq!(
            err.message(),
            format!(
                "duplicates found in archive for WAL segment 000000010000000000000002: 000000010000000000000002-{SHA_B}.gz, 000000010000000000000002-{SHA_A}.gz"
            )
        );
        assert_eq!(
            err.hint(),
            Some("are multiple primaries archiving to this stanza?")
        );
    }
}
