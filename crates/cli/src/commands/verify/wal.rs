//! WAL continuity rules of `verify`: the sequential ranges of an archive id (as pgBackRest reports them), the
//! segments a backup needs to be consistent, and the gaps that break point-in-time recovery.
//!
//! Contract:
//! - Segment names are compared as WAL positions of one segment size; a name that does not parse for that size
//!   starts a new range and is never reported as missing.
//! - [`ranges`] follows pgBackRest's `verifyCreateArchiveIdRange()`: segments in ascending order, a new range when
//!   the timeline changes or a segment is not the successor of the previous one.
//! - [`missing`] lists the absent segments of `[start, stop]` on `start`'s timeline as runs `(first, last)`; a range
//!   whose ends lie on different timelines is not checked (its path cannot be known from names alone).
//! - [`pitr_gaps`] lists the absent segments that break replay from `from` (the newest backup's first segment) to
//!   the newest segment archived: on `from`'s timeline between `from` and its last segment, and on every later
//!   timeline between its first and its last segment.

use std::collections::BTreeSet;

use pgkeep_pg::wal::{Segment, WalSegSize};

/// One sequential run of archived segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// First segment.
    pub start: String,
    /// Last segment.
    pub stop: String,
}

/// Sequential ranges of the (sorted, duplicate-free) `segments`.
#[must_use]
pub fn ranges<'a>(segments: impl IntoIterator<Item = &'a String>, size: WalSegSize) -> Vec<Range> {
    let mut out: Vec<Range> = Vec::new();
    for name in segments {
        let continues = out.last().is_some_and(|last| {
            match (Segment::parse(&last.stop, size), Segment::parse(name, size)) {
                (Ok(prev), Ok(this)) => prev.next(size) == this,
                _ => false,
            }
        });
        match out.last_mut() {
            Some(last) if continues => last.stop.clone_from(name),
            _ => out.push(Range {
                start: name.clone(),
                stop: name.clone(),
            }),
        }
    }
    out
}

/// Runs of segments absent from `present` between `start` and `stop` inclusive.
#[must_use]
pub fn missing(
    start: &str,
    stop: &str,
    present: &BTreeSet<String>,
    size: WalSegSize,
) -> Vec<(String, String)> {
    let (Ok(first), Ok(last)) = (Segment::parse(start, size), Segment::parse(stop, size)) else {
        return Vec::new();
    };
    if first.timeline != last.timeline || last < first {
        return Vec::new();
    }
    absent_runs(first, last, present, size)
}

/// Runs of absent segments from `first` to `last` (same timeline, `first <= last`).
fn absent_runs(
    first: Segment,
    last: Segment,
    present: &BTreeSet<String>,
    size: WalSegSize,
) -> Vec<(String, String)> {
    let mut runs: Vec<(String, String)> = Vec::new();
    let mut current = first;
    let mut open: Option<(String, String)> = None;
    // bounded by the distance between the two names: at most the number of segments in between
    let steps = last.segno(size).saturating_sub(first.segno(size));
    for _ in 0..=steps {
        let name = current.to_string();
        if present.contains(&name) {
            if let Some(run) = open.take() {
                runs.push(run);
            }
        } else {
            match open.as_mut() {
                Some(run) => run.1 = name,
                None => open = Some((name.clone(), name)),
            }
        }
        if current == last {
            break;
        }
        current = current.next(size);
    }
    if let Some(run) = open {
        runs.push(run);
    }
    runs
}

/// Gaps breaking replay from `from` onwards (see the module contract).
#[must_use]
pub fn pitr_gaps(
    from: &str,
    present: &BTreeSet<String>,
    size: WalSegSize,
) -> Vec<(String, String)> {
    let Ok(from) = Segment::parse(from, size) else {
        return Vec::new();
    };
    let parsed: Vec<Segment> = present
        .iter()
        .filter_map(|n| Segment::parse(n, size).ok())
        .collect();
    let mut timelines: Vec<u32> = parsed
        .iter()
        .map(|s| s.timeline)
        .filter(|&t| t >= from.timeline)
        .collect();
    timelines.sort_unstable();
    timelines.dedup();
    let mut gaps = Vec::new();
    for timeline in timelines {
        let on_timeline = parsed.iter().filter(|s| s.timeline == timeline);
        let (Some(low), Some(high)) = (on_timeline.clone().min(), on_timeline.max()) else {
            continue;
        };
        let low = if timeline == from.timeline {
            from
        } else {
            *low
        };
        if *high < low {
            continue;
        }
        gaps.extend(absent_runs(low, *high, present, size));
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_string()).collect()
    }

    const S: WalSegSize = WalSegSize::DEFAULT;

    #[test]
    fn ranges_split_on_gaps_and_timelines() {
        let present = set(&[
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000004",
            "0000000100000000000000FF",
            "000000010000000100000000",
            "000000020000000100000000",
        ]);
        let got = ranges(&present, S);
        let pairs: Vec<(&str, &str)> = got
            .iter()
            .map(|r| (r.start.as_str(), r.stop.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("000000010000000000000001", "000000010000000000000002"),
                ("000000010000000000000004", "000000010000000000000004"),
                ("0000000100000000000000FF", "000000010000000100000000"),
                ("000000020000000100000000", "000000020000000100000000"),
            ]
        );
    }

    #[test]
    fn missing_segments_come_in_runs() {
        let present = set(&[
            "000000010000000000000001",
            "000000010000000000000004",
            "000000010000000000000006",
        ]);
        assert_eq!(
            missing(
                "000000010000000000000001",
                "000000010000000000000006",
                &present,
                S
            ),
            vec![
                (
                    "000000010000000000000002".to_string(),
                    "000000010000000000000003".to_string()
                ),
                (
                    "000000010000000000000005".to_string(),
                    "000000010000000000000005".to_string()
                ),
            ]
        );
        assert!(
            missing(
                "000000010000000000000004",
                "000000010000000000000004",
                &present,
                S
            )
            .is_empty()
        );
        // different timelines or reversed ends are not judged
        assert!(
            missing(
                "000000010000000000000001",
                "000000020000000000000006",
                &present,
                S
            )
            .is_empty()
        );
        assert!(
            missing(
                "000000010000000000000006",
                "000000010000000000000001",
                &present,
                S
            )
            .is_empty()
        );
        assert!(missing("bogus", "000000010000000000000001", &present, S).is_empty());
    }

    #[test]
    fn pitr_gaps_start_at_the_newest_backup_and_follow_later_timelines() {
        let present = set(&[
            "000000010000000000000001",
            "000000010000000000000003",
            "000000010000000000000005",
            "000000010000000000000007",
            "000000020000000000000007",
            "000000020000000000000009",
        ]);
        // the gap at 2 is before the backup: not a PITR problem
        assert_eq!(
            pitr_gaps("000000010000000000000005", &present, S),
            vec![
                (
                    "000000010000000000000006".to_string(),
                    "000000010000000000000006".to_string()
                ),
                (
                    "000000020000000000000008".to_string(),
                    "000000020000000000000008".to_string()
                ),
            ]
        );
        // a backup newer than everything archived on its timeline has nothing to check there
        assert_eq!(pitr_gaps("000000010000000000000009", &present, S).len(), 1);
        assert!(pitr_gaps("000000030000000000000001", &present, S).is_empty());
    }
}
