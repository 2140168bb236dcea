//! pg_control (`global/pg_control`): parse it for any supported major, and build one for tests.
//!
//! Contract:
//! - [`parse`] identifies the major from the (control version, catalog version) pair, then reads
//!   the fields through that major's [`ControlLayout`](crate::version::ControlLayout). It never
//!   panics: input too short for the layout is `FileInvalid`, an unknown pair is
//!   `VersionNotSupported`, a CRC-32C mismatch is `Checksum` (pgBackRest's wording: "calculated
//!   pg_control checksum does not match expected value"), and a page size other than 8192, an
//!   invalid WAL segment size or an unknown data checksum version is `Format`.
//! - [`parse_lenient`] is the same but reports a bad CRC through `crc_ok = false` instead of an
//!   error, for tools that want to show what a damaged file says.
//! - [`build`] writes a full 8192-byte image with a valid CRC for any supported major, filling
//!   the fields pgkeep reads plus the fixed build facts (alignment, float format, name length…)
//!   the way PostgreSQL does, so `parse(build(x)) == x` and tests can fabricate every version.
//!   Fields pgkeep does not model (xid counters, minimum recovery point, nonce…) are left zero.

use pgkeep_base::{Error, ErrorKind, Result};

use crate::bytes::{i32_at, i64_at, put, u32_at, u64_at};
use crate::version::PgVersion;
use crate::wal::WalSegSize;

/// Size of the pg_control file.
pub const CONTROL_FILE_SIZE: usize = 8192;
/// The only data page size pgkeep supports (and pgBackRest).
pub const PAGE_SIZE: u32 = 8192;
/// Pages per relation segment file for 8 KiB pages.
pub const RELSEG_SIZE_DEFAULT: u32 = 131_072;
/// Highest `data_checksum_version` defined by PostgreSQL 10 to 18.
pub const DATA_CHECKSUM_VERSION_MAX: u32 = 1;

/// `DBState` values (same for 10 to 18).
pub mod state {
    /// Starting up.
    pub const STARTUP: i32 = 0;
    /// Cleanly shut down.
    pub const SHUTDOWNED: i32 = 1;
    /// Shut down while in recovery.
    pub const SHUTDOWNED_IN_RECOVERY: i32 = 2;
    /// Shutting down.
    pub const SHUTDOWNING: i32 = 3;
    /// In crash recovery.
    pub const IN_CRASH_RECOVERY: i32 = 4;
    /// In archive recovery.
    pub const IN_ARCHIVE_RECOVERY: i32 = 5;
    /// Running.
    pub const IN_PRODUCTION: i32 = 6;
}

/// The pg_control facts pgkeep uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlInfo {
    /// Major version identified from the control/catalog pair.
    pub version: PgVersion,
    /// `system_identifier`.
    pub system_id: u64,
    /// `pg_control_version`.
    pub control_version: u32,
    /// `catalog_version_no`.
    pub catalog_version: u32,
    /// `state` (see [`state`]).
    pub state: i32,
    /// `time`: last update of the file, Unix seconds.
    pub time: i64,
    /// `checkPoint`: LSN of the latest checkpoint record.
    pub checkpoint: u64,
    /// `checkPointCopy.redo`.
    pub redo: u64,
    /// `checkPointCopy.ThisTimeLineID`.
    pub timeline: u32,
    /// `blcksz`.
    pub page_size: u32,
    /// `relseg_size`.
    pub relseg_size: u32,
    /// `xlog_seg_size`.
    pub wal_segment_size: u32,
    /// `xlog_blcksz`.
    pub wal_page_size: u32,
    /// `data_checksum_version` (0 = off, 1 = on).
    pub data_checksum_version: u32,
    /// Whether the stored CRC matched (always true from [`parse`]).
    pub crc_ok: bool,
}

impl ControlInfo {
    /// A freshly initialised cluster of `version` with defaults: 16 MiB segments, 8 KiB pages,
    /// checksums on, timeline 1, state "in production", checkpoint/redo at 0/1000028.
    pub fn new(version: PgVersion, system_id: u64) -> Result<ControlInfo> {
        let info = version.require_info()?;
        Ok(ControlInfo {
            version,
            system_id,
            control_version: info.control_version,
            catalog_version: info.catalog_version,
            state: state::IN_PRODUCTION,
            time: 0,
            checkpoint: 0x100_0028,
            redo: 0x100_0028,
            timeline: 1,
            page_size: PAGE_SIZE,
            relseg_size: RELSEG_SIZE_DEFAULT,
            wal_segment_size: WalSegSize::DEFAULT.get(),
            wal_page_size: crate::wal::WAL_PAGE_SIZE_DEFAULT,
            data_checksum_version: 1,
            crc_ok: true,
        })
    }

    /// The validated WAL segment size.
    pub fn wal_seg_size(&self) -> Result<WalSegSize> {
        WalSegSize::new(self.wal_segment_size)
    }

    /// True when data page checksums are enabled.
    #[must_use]
    pub fn page_checksums(&self) -> bool {
        self.data_checksum_version != 0
    }
}

/// Parses pg_control, rejecting a bad CRC.
pub fn parse(bytes: &[u8]) -> Result<ControlInfo> {
    let info = parse_lenient(bytes)?;
    if !info.crc_ok {
        // recompute only for the message; parse_lenient already proved the layout fits
        let layout = info.version.require_info()?.control;
        let calculated = bytes.get(..layout.crc).map_or(0, crc32c::crc32c);
        let expected = u32_at(bytes, layout.crc).unwrap_or(0);
        return Err(Error::new(
            ErrorKind::Checksum,
            "calculated pg_control checksum does not match expected value",
        )
        .with_hint(format!(
            "calculated 0x{calculated:x} but expected value is 0x{expected:x}; is pg_control corrupt?"
        )));
    }
    Ok(info)
}

/// Parses pg_control, reporting a bad CRC in `crc_ok` instead of failing.
pub fn parse_lenient(bytes: &[u8]) -> Result<ControlInfo> {
    let too_short = |need: usize| {
        Error::new(
            ErrorKind::FileInvalid,
            format!(
                "pg_control is {} bytes but must be at least {need}",
                bytes.len()
            ),
        )
    };
    let system_id = u64_at(bytes, 0).ok_or_else(|| too_short(16))?;
    let control_version = u32_at(bytes, 8).ok_or_else(|| too_short(16))?;
    let catalog_version = u32_at(bytes, 12).ok_or_else(|| too_short(16))?;
    let version = PgVersion::from_control(control_version, catalog_version)?;
    let layout = version.require_info()?.control;
    let need = layout.crc + 4;
    let u32f = |off: usize| u32_at(bytes, off).ok_or_else(|| too_short(need));
    let u64f = |off: usize| u64_at(bytes, off).ok_or_else(|| too_short(need));

    let stored_crc = u32f(layout.crc)?;
    let crc_ok = bytes
        .get(..layout.crc)
        .is_some_and(|data| crc32c::crc32c(data) == stored_crc);

    let info = ControlInfo {
        version,
        system_id,
        control_version,
        catalog_version,
        state: i32_at(bytes, 16).ok_or_else(|| too_short(need))?,
        time: i64_at(bytes, 24).ok_or_else(|| too_short(need))?,
        checkpoint: u64f(layout.checkpoint)?,
        redo: u64f(layout.checkpoint_copy)?,
        timeline: u32f(layout.checkpoint_copy + 8)?,
        page_size: u32f(layout.blcksz)?,
        relseg_size: u32f(layout.relseg_size)?,
        wal_segment_size: u32f(layout.xlog_seg_size)?,
        wal_page_size: u32f(layout.xlog_blcksz)?,
        data_checksum_version: u32f(layout.data_checksum_version)?,
        crc_ok,
    };

    // a torn or foreign file usually fails the CRC first; these checks guard the rest
    if crc_ok {
        WalSegSize::new(info.wal_segment_size)?;
        if info.page_size != PAGE_SIZE {
            return Err(Error::new(
                ErrorKind::Format,
                format!("page size is {} but must be {PAGE_SIZE}", info.page_size),
            ));
        }
        if info.data_checksum_version > DATA_CHECKSUM_VERSION_MAX {
            return Err(Error::new(
                ErrorKind::Format,
                format!(
                    "page checksum version is {} but must be <= {DATA_CHECKSUM_VERSION_MAX}",
                    info.data_checksum_version
                ),
            ));
        }
    }
    Ok(info)
}

/// Writes a complete pg_control image (8192 bytes, valid CRC) for `info.version`.
///
/// `control_version` and `catalog_version` are written as given, so tests can fabricate
/// unsupported pairs; `crc_ok` is ignored (corrupt a byte afterwards to test a bad CRC).
pub fn build(info: &ControlInfo) -> Result<Vec<u8>> {
    let layout = info.version.require_info()?.control;
    let mut buf = vec![0u8; CONTROL_FILE_SIZE];
    let b = &mut buf;
    put(b, 0, &info.system_id.to_le_bytes());
    put(b, 8, &info.control_version.to_le_bytes());
    put(b, 12, &info.catalog_version.to_le_bytes());
    put(b, 16, &info.state.to_le_bytes());
    put(b, 24, &info.time.to_le_bytes());
    put(b, layout.checkpoint, &info.checkpoint.to_le_bytes());
    let cc = layout.checkpoint_copy;
    put(b, cc, &info.redo.to_le_bytes());
    put(b, cc + 8, &info.timeline.to_le_bytes());
    put(b, cc + 12, &info.timeline.to_le_bytes()); // PrevTimeLineID
    put(b, cc + 16, &[1]); // fullPageWrites
    if let Some(off) = layout.checkpoint_wal_level {
        put(b, off, &1i32.to_le_bytes()); // replica
    }
    put(b, layout.max_align, &8u32.to_le_bytes());
    put(b, layout.float_format, &1_234_567.0f64.to_le_bytes());
    put(b, layout.blcksz, &info.page_size.to_le_bytes());
    put(b, layout.relseg_size, &info.relseg_size.to_le_bytes());
    put(b, layout.xlog_blcksz, &info.wal_page_size.to_le_bytes());
    put(
        b,
        layout.xlog_seg_size,
        &info.wal_segment_size.to_le_bytes(),
    );
    // nameDataLen, indexMaxKeys, toast_max_chunk_size, loblksize
    for (i, value) in [64u32, 32, 1996, 2048].iter().enumerate() {
        put(b, layout.name_data_len + 4 * i, &value.to_le_bytes());
    }
    for i in 0..layout.float_byval_count {
        put(b, layout.name_data_len + 16 + i, &[1]);
    }
    put(
        b,
        layout.data_checksum_version,
        &info.data_checksum_version.to_le_bytes(),
    );
    if let Some(off) = layout.char_signedness {
        put(b, off, &[1]);
    }
    let crc = buf.get(..layout.crc).map_or(0, crc32c::crc32c);
    put(&mut buf, layout.crc, &crc.to_le_bytes());
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn build_parse_round_trip_every_version() {
        for version in PgVersion::supported() {
            let mut info = ControlInfo::new(version, 7_711_960_287_373_809_161).unwrap();
            info.state = state::SHUTDOWNED;
            info.time = 1_795_580_680;
            info.checkpoint = 0x5_0200_0028;
            info.redo = 0x5_0100_0060;
            info.timeline = 7;
            info.wal_segment_size = 64 << 20;
            info.data_checksum_version = 0;
            let bytes = build(&info).unwrap();
            assert_eq!(bytes.len(), CONTROL_FILE_SIZE);
            assert_eq!(parse(&bytes).unwrap(), info, "{version}");
            assert!(!parse(&bytes).unwrap().page_checksums());
        }
    }

    #[test]
    fn bad_crc() {
        let info = ControlInfo::new(PgVersion::from_major(16).unwrap(), 42).unwrap();
        let mut bytes = build(&info).unwrap();
        bytes[40] ^= 0xFF;
        let err = parse(&bytes).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Checksum);
        assert_eq!(
            err.message(),
            "calculated pg_control checksum does not match expected value"
        );
        assert!(err.hint().unwrap().contains("but expected value is 0x"));
        let lenient = parse_lenient(&bytes).unwrap();
        assert!(!lenient.crc_ok);
        assert_eq!(lenient.system_id, 42);
    }

    #[test]
    fn truncated_and_garbage() {
        let info = ControlInfo::new(PgVersion::from_major(18).unwrap(), 42).unwrap();
        let bytes = build(&info).unwrap();
        // only the struct (up to and including the crc) is required
        assert!(parse(&bytes[..296]).is_ok());
        for len in [0, 8, 15, 16, 100, 295] {
            let err = parse(&bytes[..len]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::FileInvalid, "{len}");
        }
        assert_eq!(
            parse(&bytes[..20]).unwrap_err().message(),
            "pg_control is 20 bytes but must be at least 296"
        );
        let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(
            parse(&garbage).unwrap_err().kind(),
            ErrorKind::VersionNotSupported
        );
        assert_eq!(
            parse(&[0u8; 8192]).unwrap_err().message(),
            "unexpected control version = 0 and catalog version = 0"
        );
    }

    #[test]
    fn format_checks() {
        let base = ControlInfo::new(PgVersion::from_major(12).unwrap(), 1).unwrap();
        let mut info = base;
        info.page_size = 16384;
        let err = parse(&build(&info).unwrap()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Format);
        assert_eq!(err.message(), "page size is 16384 but must be 8192");
        let mut info = base;
        info.wal_segment_size = 1000;
        assert_eq!(
            parse(&build(&info).unwrap()).unwrap_err().kind(),
            ErrorKind::Format
        );
        let mut info = base;
        info.data_checksum_version = 2;
        assert_eq!(
            parse(&build(&info).unwrap()).unwrap_err().message(),
            "page checksum version is 2 but must be <= 1"
        );
        let mut info = base;
        info.catalog_version = 1;
        assert_eq!(
            parse(&build(&info).unwrap()).unwrap_err().kind(),
            ErrorKind::VersionNotSupported
        );
        let old = ControlInfo {
            version: "9.6".parse().unwrap(),
            ..base
        };
        assert_eq!(
            build(&old).unwrap_err().kind(),
            ErrorKind::VersionNotSupported
        );
    }
}
