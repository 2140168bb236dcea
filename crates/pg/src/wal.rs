//! WAL facts: LSNs, segment names, WAL file name classes and the long page header.
//!
//! Contract:
//! - [`Lsn`] text is PostgreSQL's `pg_lsn` form, two hex halves `HI/LO` (`0/3000028`); it is
//!   printed upper-case without leading zeros, as the server prints it and as pgBackRest stores it
//!   in backup.info, and parsed case-insensitively.
//! - A segment name is 24 upper-case hex digits, timeline + log + seg (`000000010000000000000002`).
//!   The segment size is a power of two from 1 MiB to 1 GiB ([`WalSegSize`]); all segment math
//!   takes it explicitly because since 11 it is chosen per cluster (read it from pg_control or a
//!   long page header, never assume 16 MiB).
//! - [`segment_name`] names the segment that *contains* an LSN, as pgBackRest does for backup
//!   start/stop LSNs (PostgreSQL's `pg_walfile_name` differs on an exact segment boundary: it
//!   names the previous segment).
//! - Name validators are exact and regex-free; they accept only upper-case hex, like pgBackRest's
//!   patterns and PostgreSQL's own `IsXLogFileName`.
//! - [`header_parse`] reads the 40-byte long header found on the first page of every segment and
//!   [`header_build`] writes one, so tests can fabricate segments for every major.

use std::fmt;
use std::str::FromStr;

use pgkeep_base::{Error, ErrorKind, Result};

use crate::bytes::{put, u16_at, u32_at, u64_at};
use crate::version::PgVersion;

/// Size of the long WAL page header (first page of a segment).
pub const LONG_HEADER_SIZE: usize = 40;
/// Size of the short WAL page header (every other page).
pub const SHORT_HEADER_SIZE: usize = 24;
/// `xlp_info` bit: this page carries the long header.
pub const XLP_LONG_HEADER: u16 = 0x0002;
/// Default WAL page size.
pub const WAL_PAGE_SIZE_DEFAULT: u32 = 8192;

/// A WAL location (byte position in the WAL stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = Error;

    fn from_str(s: &str) -> Result<Lsn> {
        let invalid = || Error::new(ErrorKind::Format, format!("invalid lsn '{s}'"));
        let half = |t: &str| -> Result<u64> {
            if t.is_empty() || t.len() > 8 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid());
            }
            u64::from_str_radix(t, 16).map_err(|_| invalid())
        };
        let (hi, lo) = s.split_once('/').ok_or_else(invalid)?;
        Ok(Lsn((half(hi)? << 32) | half(lo)?))
    }
}

/// A valid WAL segment size: a power of two from 1 MiB to 1 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WalSegSize(u32);

impl WalSegSize {
    /// Smallest segment size PostgreSQL allows.
    pub const MIN: u32 = 1024 * 1024;
    /// Largest segment size PostgreSQL allows.
    pub const MAX: u32 = 1024 * 1024 * 1024;
    /// The build default (16 MiB).
    pub const DEFAULT: WalSegSize = WalSegSize(16 * 1024 * 1024);

    /// Validates a size read from pg_control, a WAL header or a setting.
    pub fn new(size: u32) -> Result<WalSegSize> {
        if size.is_power_of_two() && (Self::MIN..=Self::MAX).contains(&size) {
            Ok(WalSegSize(size))
        } else {
            Err(Error::new(
                ErrorKind::Format,
                format!(
                    "wal segment size is {size} but must be a power of two between {} and {} inclusive",
                    Self::MIN,
                    Self::MAX
                ),
            ))
        }
    }

    /// Size in bytes.
    #[must_use]
    pub fn get(self) -> u32 {
        self.0
    }

    /// Segments per 4 GiB "log" (the middle 8 hex digits of a name): 256 for 16 MiB.
    #[must_use]
    pub fn segs_per_log(self) -> u32 {
        // 2^32 / size, computed without overflow; size >= 2^20 so this is >= 4
        u32::try_from((1u64 << 32) / u64::from(self.0)).unwrap_or(u32::MAX)
    }
}

/// A segment identified by timeline and the two halves of its number, printed as its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    /// Timeline (first 8 hex digits).
    pub timeline: u32,
    /// `segno / segs_per_log` (middle 8 hex digits).
    pub log: u32,
    /// `segno % segs_per_log` (last 8 hex digits).
    pub seg: u32,
}

impl Segment {
    /// The segment containing `lsn`.
    #[must_use]
    pub fn from_lsn(timeline: u32, lsn: Lsn, size: WalSegSize) -> Segment {
        let log = u32::try_from(lsn.0 >> 32).unwrap_or(u32::MAX);
        let seg = u32::try_from(lsn.0 & 0xFFFF_FFFF).unwrap_or(0) / size.get();
        Segment { timeline, log, seg }
    }

    /// Parses a 24-digit name; `seg` must be below the segments per log of `size`.
    pub fn parse(name: &str, size: WalSegSize) -> Result<Segment> {
        if !is_segment(name) {
            return Err(Error::new(
                ErrorKind::Format,
                format!("'{name}' is not a WAL segment name"),
            ));
        }
        let part = |i: usize| {
            name.get(i..i + 8)
                .and_then(|t| u32::from_str_radix(t, 16).ok())
                .unwrap_or(0)
        };
        let segment = Segment {
            timeline: part(0),
            log: part(8),
            seg: part(16),
        };
        if segment.seg >= size.segs_per_log() {
            return Err(Error::new(
                ErrorKind::Format,
                format!(
                    "WAL segment '{name}' is invalid for wal segment size {}",
                    size.get()
                ),
            ));
        }
        Ok(segment)
    }

    /// Segment number counted from the start of WAL.
    #[must_use]
    pub fn segno(self, size: WalSegSize) -> u64 {
        u64::from(self.log) * u64::from(size.segs_per_log()) + u64::from(self.seg)
    }

    /// First LSN of this segment.
    #[must_use]
    pub fn start_lsn(self, size: WalSegSize) -> Lsn {
        Lsn(self.segno(size).saturating_mul(u64::from(size.get())))
    }

    /// The following segment on the same timeline.
    #[must_use]
    pub fn next(self, size: WalSegSize) -> Segment {
        if self.seg.saturating_add(1) >= size.segs_per_log() {
            Segment {
                timeline: self.timeline,
                log: self.log.wrapping_add(1),
                seg: 0,
            }
        } else {
            Segment {
                seg: self.seg + 1,
                ..self
            }
        }
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}{:08X}{:08X}", self.timeline, self.log, self.seg)
    }
}

/// Name of the segment that contains `lsn` on `timeline`.
#[must_use]
pub fn segment_name(timeline: u32, lsn: Lsn, size: WalSegSize) -> String {
    Segment::from_lsn(timeline, lsn, size).to_string()
}

/// Timeline and first LSN of a named segment.
pub fn segment_start(name: &str, size: WalSegSize) -> Result<(u32, Lsn)> {
    let segment = Segment::parse(name, size)?;
    Ok((segment.timeline, segment.start_lsn(size)))
}

/// Timeline of a segment, history, partial or backup history file name (first 8 hex digits).
pub fn timeline_of(name: &str) -> Result<u32> {
    name.get(0..8)
        .filter(|t| t.bytes().all(is_upper_hex))
        .and_then(|t| u32::from_str_radix(t, 16).ok())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Format,
                format!("unable to get timeline from WAL file name '{name}'"),
            )
        })
}

/// Name of the segment after `name` on the same timeline.
pub fn next_segment(name: &str, size: WalSegSize) -> Result<String> {
    Ok(Segment::parse(name, size)?.next(size).to_string())
}

/// Names of every segment from the one containing `start` to the one containing `stop`,
/// inclusive, on `timeline`; empty when `stop < start`.
#[must_use]
pub fn segment_range(timeline: u32, start: Lsn, stop: Lsn, size: WalSegSize) -> Vec<String> {
    let mut result = Vec::new();
    if stop < start {
        return result;
    }
    let last = Segment::from_lsn(timeline, stop, size);
    let mut current = Segment::from_lsn(timeline, start, size);
    loop {
        result.push(current.to_string());
        if current == last {
            break;
        }
        current = current.next(size);
    }
    result
}

fn is_upper_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'A'..=b'F').contains(&b)
}

fn all_upper_hex(s: &str) -> bool {
    s.bytes().all(is_upper_hex)
}

/// `TTTTTTTTLLLLLLLLSSSSSSSS`: a WAL segment.
#[must_use]
pub fn is_segment(name: &str) -> bool {
    name.len() == 24 && all_upper_hex(name)
}

/// `<segment>.partial`: the end of an old timeline left after a promotion.
#[must_use]
pub fn is_partial(name: &str) -> bool {
    name.strip_suffix(".partial").is_some_and(is_segment)
}

/// `TTTTTTTT.history`: a timeline history file.
#[must_use]
pub fn is_history(name: &str) -> bool {
    name.strip_suffix(".history")
        .is_some_and(|t| t.len() == 8 && all_upper_hex(t))
}

/// `<segment>.XXXXXXXX.backup`: a backup history file written by backup stop.
#[must_use]
pub fn is_backup_history(name: &str) -> bool {
    name.strip_suffix(".backup")
        .and_then(|t| t.split_once('.'))
        .is_some_and(|(segment, offset)| {
            is_segment(segment) && offset.len() == 8 && all_upper_hex(offset)
        })
}

/// The kinds of file found in `pg_wal` and in a repository's archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalFileKind {
    /// A full segment.
    Segment,
    /// A `.partial` segment.
    Partial,
    /// A timeline `.history` file.
    History,
    /// A `.backup` history file.
    BackupHistory,
}

/// Which kind of WAL file `name` is, if any.
#[must_use]
pub fn classify(name: &str) -> Option<WalFileKind> {
    if is_segment(name) {
        Some(WalFileKind::Segment)
    } else if is_partial(name) {
        Some(WalFileKind::Partial)
    } else if is_history(name) {
        Some(WalFileKind::History)
    } else if is_backup_history(name) {
        Some(WalFileKind::BackupHistory)
    } else {
        None
    }
}

/// The long page header at the start of every WAL segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    /// `xlp_magic`.
    pub magic: u16,
    /// The major that writes this magic, `None` if unknown (see [`WalHeader::require_version`]).
    pub version: Option<PgVersion>,
    /// `xlp_info` flag bits.
    pub info: u16,
    /// `xlp_tli`: timeline of the page's first record.
    pub timeline: u32,
    /// `xlp_pageaddr`: LSN of the start of the page.
    pub page_addr: u64,
    /// `xlp_rem_len`: bytes of a record continued from the previous page.
    pub rem_len: u32,
    /// `xlp_sysid`: the cluster's system identifier.
    pub system_id: u64,
    /// `xlp_seg_size`.
    pub seg_size: u32,
    /// `xlp_xlog_blcksz`.
    pub page_size: u32,
}

impl WalHeader {
    /// A header as PostgreSQL writes it on the first page of the segment starting at `page_addr`.
    pub fn new(
        version: PgVersion,
        timeline: u32,
        page_addr: u64,
        system_id: u64,
        seg_size: u32,
    ) -> Result<WalHeader> {
        Ok(WalHeader {
            magic: version.require_info()?.wal_magic,
            version: Some(version),
            info: XLP_LONG_HEADER,
            timeline,
            page_addr,
            rem_len: 0,
            system_id,
            seg_size,
            page_size: WAL_PAGE_SIZE_DEFAULT,
        })
    }

    /// The version, or `VersionNotSupported` naming the unknown magic.
    pub fn require_version(&self) -> Result<PgVersion> {
        match self.version {
            Some(version) => Ok(version),
            None => PgVersion::from_wal_magic(self.magic),
        }
    }
}

/// Parses the long header from the first bytes of a segment.
///
/// Errors: fewer than 40 bytes (`FileInvalid`), no long-header flag or an invalid segment size
/// (`Format`). An unknown magic is not an error here: `version` is `None`.
pub fn header_parse(bytes: &[u8]) -> Result<WalHeader> {
    if bytes.len() < LONG_HEADER_SIZE {
        return Err(Error::new(
            ErrorKind::FileInvalid,
            format!(
                "WAL header is {} bytes but must be at least {LONG_HEADER_SIZE}",
                bytes.len()
            ),
        ));
    }
    let short = || Error::new(ErrorKind::FileInvalid, "WAL header is truncated");
    let info = u16_at(bytes, 2).ok_or_else(short)?;
    if info & XLP_LONG_HEADER == 0 {
        return Err(Error::new(
            ErrorKind::Format,
            "first page header in WAL file is expected to be in long format",
        ));
    }
    let magic = u16_at(bytes, 0).ok_or_else(short)?;
    let header = WalHeader {
        magic,
        version: PgVersion::find_wal_magic(magic),
        info,
        timeline: u32_at(bytes, 4).ok_or_else(short)?,
        page_addr: u64_at(bytes, 8).ok_or_else(short)?,
        rem_len: u32_at(bytes, 16).ok_or_else(short)?,
        system_id: u64_at(bytes, 24).ok_or_else(short)?,
        seg_size: u32_at(bytes, 32).ok_or_else(short)?,
        page_size: u32_at(bytes, 36).ok_or_else(short)?,
    };
    WalSegSize::new(header.seg_size)?;
    Ok(header)
}

/// Writes `header` as the 40-byte long header (padding bytes 20..24 zero).
#[must_use]
pub fn header_build(header: &WalHeader) -> [u8; LONG_HEADER_SIZE] {
    let mut buf = [0u8; LONG_HEADER_SIZE];
    put(&mut buf, 0, &header.magic.to_le_bytes());
    put(&mut buf, 2, &header.info.to_le_bytes());
    put(&mut buf, 4, &header.timeline.to_le_bytes());
    put(&mut buf, 8, &header.page_addr.to_le_bytes());
    put(&mut buf, 16, &header.rem_len.to_le_bytes());
    put(&mut buf, 24, &header.system_id.to_le_bytes());
    put(&mut buf, 32, &header.seg_size.to_le_bytes());
    put(&mut buf, 36, &header.page_size.to_le_bytes());
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB16: WalSegSize = WalSegSize::DEFAULT;

    fn mib64() -> WalSegSize {
        WalSegSize::new(64 * 1024 * 1024).unwrap()
    }

    #[test]
    fn lsn_text() {
        let lsn: Lsn = "0/3000028".parse().unwrap();
        assert_eq!(lsn, Lsn(0x300_0028));
        assert_eq!(lsn.to_string(), "0/3000028");
        let lsn: Lsn = "5db5de0/280000".parse().unwrap();
        assert_eq!(lsn.to_string(), "5DB5DE0/280000");
        assert_eq!("FFFFFFFF/FFFFFFFF".parse::<Lsn>().unwrap(), Lsn(u64::MAX));
        assert_eq!(Lsn(0).to_string(), "0/0");
        for bad in [
            "",
            "0",
            "/1",
            "1/",
            "0/123456789",
            "g/1",
            "0/1/2",
            " 0/1",
            "+0/1",
        ] {
            let err = bad.parse::<Lsn>().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Format, "{bad}");
        }
    }

    #[test]
    fn seg_size_validation() {
        for ok in [1 << 20, 16 << 20, 64 << 20, 1 << 30] {
            assert_eq!(WalSegSize::new(ok).unwrap().get(), ok);
        }
        for bad in [0, 1, 512 * 1024, (16 << 20) + 1, 1 << 31, 3 << 20] {
            let err = WalSegSize::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Format);
            assert!(err.message().contains("power of two"), "{}", err.message());
        }
        assert_eq!(MIB16.segs_per_log(), 256);
        assert_eq!(mib64().segs_per_log(), 64);
        assert_eq!(WalSegSize::new(1 << 30).unwrap().segs_per_log(), 4);
    }

    #[test]
    fn segment_names_16mib() {
        assert_eq!(
            segment_name(1, Lsn(0x200_0028), MIB16),
            "000000010000000000000002"
        );
        // a segment boundary belongs to the segment it starts
        assert_eq!(
            segment_name(1, Lsn(0x300_0000), MIB16),
            "000000010000000000000003"
        );
        assert_eq!(
            segment_name(0x1A, "5DB5DE0/280000".parse().unwrap(), MIB16),
            "0000001A05DB5DE000000000"
        );
        assert_eq!(
            segment_name(1, "1/FF000000".parse().unwrap(), MIB16),
            "0000000100000001000000FF"
        );
        let (tli, start) = segment_start("0000000200000001000000FF", MIB16).unwrap();
        assert_eq!((tli, start.to_string()), (2, "1/FF000000".to_string()));
        assert_eq!(
            next_segment("0000000100000001000000FF", MIB16).unwrap(),
            "000000010000000200000000"
        );
        assert_eq!(
            next_segment("000000010000000000000001", MIB16).unwrap(),
            "000000010000000000000002"
        );
        assert!(segment_start("000000010000000000000100", MIB16).is_err());
        assert!(segment_start("00000001000000000000000g", MIB16).is_err());
        assert_eq!(timeline_of("0000000A.history").unwrap(), 10);
        assert!(timeline_of("xyz").is_err());
    }

    #[test]
    fn segment_names_64mib() {
        let size = mib64();
        // verified against a server: redo 0/8000028 with 64 MiB segments is segno 2
        assert_eq!(
            segment_name(1, Lsn(0x800_0028), size),
            "000000010000000000000002"
        );
        assert_eq!(
            segment_name(1, "0/FC000000".parse().unwrap(), size),
            "00000001000000000000003F"
        );
        assert_eq!(
            next_segment("00000001000000000000003F", size).unwrap(),
            "000000010000000100000000"
        );
        assert!(Segment::parse("000000010000000000000040", size).is_err());
        let (_, start) = segment_start("000000010000000100000001", size).unwrap();
        assert_eq!(start.to_string(), "1/4000000");
        let segment = Segment::parse("000000010000000100000001", size).unwrap();
        assert_eq!(segment.segno(size), 65);
    }

    #[test]
    fn ranges() {
        let range = segment_range(1, Lsn(0x1_FE00_0028), Lsn(0x2_0100_0000), MIB16);
        assert_eq!(
            range,
            [
                "0000000100000001000000FE",
                "0000000100000001000000FF",
                "000000010000000200000000",
                "000000010000000200000001",
            ]
        );
        assert_eq!(
            segment_range(3, Lsn(0x300_0028), Lsn(0x300_0100), MIB16),
            ["000000030000000000000003"]
        );
        assert!(segment_range(1, Lsn(10), Lsn(9), MIB16).is_empty());
        let range = segment_range(
            1,
            "0/F8000000".parse().unwrap(),
            Lsn(0x1_0000_0001),
            mib64(),
        );
        assert_eq!(
            range,
            [
                "00000001000000000000003E",
                "00000001000000000000003F",
                "000000010000000100000000",
            ]
        );
    }

    #[test]
    fn name_classes() {
        assert!(is_segment("000000010000000000000001"));
        assert!(!is_segment("00000001000000000000000a"));
        assert!(!is_segment("00000001000000000000001"));
        assert!(!is_segment("0000000100000000000000011"));
        assert!(is_partial("000000010000000000000001.partial"));
        assert!(!is_partial("000000010000000000000001.partia"));
        assert!(!is_partial("00000001.partial"));
        assert!(is_history("00000002.history"));
        assert!(!is_history("0000002.history"));
        assert!(!is_history("000000010000000000000001.history"));
        assert!(is_backup_history(
            "000000010000000000000002.00000028.backup"
        ));
        assert!(!is_backup_history("000000010000000000000002.backup"));
        assert!(!is_backup_history(
            "000000010000000000000002.0000028.backup"
        ));
        assert_eq!(
            classify("000000010000000000000001"),
            Some(WalFileKind::Segment)
        );
        assert_eq!(
            classify("000000010000000000000001.partial"),
            Some(WalFileKind::Partial)
        );
        assert_eq!(classify("00000002.history"), Some(WalFileKind::History));
        assert_eq!(
            classify("000000010000000000000002.00000028.backup"),
            Some(WalFileKind::BackupHistory)
        );
        assert_eq!(classify("archive_status"), None);
        assert_eq!(classify(""), None);
        assert_eq!(classify("é"), None);
    }

    #[test]
    fn header_round_trip_every_version() {
        for version in PgVersion::supported() {
            for size in [MIB16, mib64()] {
                let header =
                    WalHeader::new(version, 3, u64::from(size.get()), 7_711_960_287, size.get())
                        .unwrap();
                let bytes = header_build(&header);
                let parsed = header_parse(&bytes).unwrap();
                assert_eq!(parsed, header);
                assert_eq!(parsed.require_version().unwrap(), version);
            }
        }
    }

    #[test]
    fn header_errors() {
        let version = PgVersion::from_major(15).unwrap();
        let header = WalHeader::new(version, 1, 0, 1, MIB16.get()).unwrap();
        let bytes = header_build(&header);
        assert_eq!(
            header_parse(&bytes[..39]).unwrap_err().kind(),
            ErrorKind::FileInvalid
        );
        assert_eq!(
            header_parse(&[]).unwrap_err().kind(),
            ErrorKind::FileInvalid
        );
        let mut short = bytes;
        short[2] = 0;
        assert_eq!(
            header_parse(&short).unwrap_err().message(),
            "first page header in WAL file is expected to be in long format"
        );
        let mut unknown = bytes;
        unknown[0] = 0x34;
        unknown[1] = 0x12;
        let parsed = header_parse(&unknown).unwrap();
        assert_eq!(parsed.version, None);
        assert_eq!(
            parsed.require_version().unwrap_err().kind(),
            ErrorKind::VersionNotSupported
        );
        let mut bad_size = bytes;
        bad_size[32..36].copy_from_slice(&12345u32.to_le_bytes());
        assert_eq!(
            header_parse(&bad_size).unwrap_err().kind(),
            ErrorKind::Format
        );
    }
}
