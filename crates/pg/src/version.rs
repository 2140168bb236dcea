//! PostgreSQL versions and the one table that says how each supported major differs.
//!
//! Contract:
//! - [`VERSIONS`] is the single source of truth for everything that depends on the major version:
//!   pg_control/catalog versions, WAL page magic, `wal`/`xlog` and `lsn`/`location` naming, backup
//!   start/stop function names, recovery configuration style and the pg_control field offsets.
//!   Code elsewhere looks facts up through [`PgVersion::info`]; it never compares version numbers.
//! - [`PgVersion`] is a number in `server_version_num` style with the minor part dropped
//!   (`150000` for 15, `90600` for 9.6). It can hold any version so that old history entries in
//!   info files (`db-version="9.6"`) still parse; only versions with a table row (10 to 18) are
//!   supported for real work, and every constructor that identifies a running or on-disk cluster
//!   ([`PgVersion::from_control`], [`PgVersion::from_wal_magic`],
//!   [`PgVersion::from_server_version_num`], [`PgVersion::from_major`]) returns
//!   `VersionNotSupported` for anything else.
//! - The text form is what pgBackRest stores in info files and uses in archive ids: `"15"` for 10
//!   and later, `"9.6"` before.
//! - A major is identified from pg_control by the pair (control version, catalog version), never
//!   by the control version alone: 13 to 16 all use control version 1300.

use std::fmt;
use std::str::FromStr;

use pgkeep_base::{Error, ErrorKind, Result};

/// Byte offsets of the pg_control fields pgkeep reads or writes (x86-64, little-endian).
///
/// Offsets are absolute from the start of the file. They come from PostgreSQL's
/// `ControlFileData` as laid out by each major and were checked against real files of every
/// major (see `tests/fixtures/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlLayout {
    /// `checkPoint`: LSN of the last checkpoint record (u64).
    pub checkpoint: usize,
    /// Start of `checkPointCopy` (struct CheckPoint): `redo` u64 at +0, `ThisTimeLineID` u32 at +8,
    /// `PrevTimeLineID` u32 at +12, `fullPageWrites` bool at +16.
    pub checkpoint_copy: usize,
    /// `checkPointCopy.wal_level` (i32), present from 17 on (in what was padding before).
    pub checkpoint_wal_level: Option<usize>,
    /// `maxAlign` (u32).
    pub max_align: usize,
    /// `floatFormat` (f64, always 1234567.0).
    pub float_format: usize,
    /// `blcksz` (u32): data page size.
    pub blcksz: usize,
    /// `relseg_size` (u32): pages per relation segment file.
    pub relseg_size: usize,
    /// `xlog_blcksz` (u32): WAL page size.
    pub xlog_blcksz: usize,
    /// `xlog_seg_size` (u32): WAL segment size.
    pub xlog_seg_size: usize,
    /// `nameDataLen`, then `indexMaxKeys`, `toast_max_chunk_size`, `loblksize` (u32 each).
    pub name_data_len: usize,
    /// Number of `float*ByVal` booleans that follow `loblksize` (2 up to 12, 1 from 13 on).
    pub float_byval_count: usize,
    /// `data_checksum_version` (u32).
    pub data_checksum_version: usize,
    /// `default_char_signedness` (bool), present from 18 on.
    pub char_signedness: Option<usize>,
    /// `crc` (u32): CRC-32C of every byte before it.
    pub crc: usize,
}

/// How a restore asks PostgreSQL to recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryStyle {
    /// Settings in `recovery.conf`, whose presence starts recovery (up to 11).
    RecoveryConf,
    /// Settings in `postgresql.auto.conf` plus an empty `recovery.signal` / `standby.signal` (12+).
    SignalFile,
}

/// Everything that differs between supported majors. One row per major in [`VERSIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionInfo {
    /// Major number (10 to 18).
    pub major: u32,
    /// Text form stored in info files and archive ids (`"15"`).
    pub name: &'static str,
    /// `PG_CONTROL_VERSION`.
    pub control_version: u32,
    /// `CATALOG_VERSION_NO` of the released major (frozen for all its minors).
    pub catalog_version: u32,
    /// `XLOG_PAGE_MAGIC`: first two bytes of every WAL page.
    pub wal_magic: u16,
    /// Word used in WAL function names: `wal` (`pg_switch_wal`) or `xlog` before 10.
    pub wal_name: &'static str,
    /// Word used in LSN function names: `lsn` (`pg_current_wal_lsn`) or `location` before 10.
    pub lsn_name: &'static str,
    /// WAL directory in the data directory.
    pub wal_path: &'static str,
    /// Transaction status directory in the data directory.
    pub xact_path: &'static str,
    /// Function that starts a non-exclusive backup.
    pub backup_start_fn: &'static str,
    /// Function that stops a non-exclusive backup.
    pub backup_stop_fn: &'static str,
    /// True when start/stop take the `exclusive` argument, which must be passed as `false`
    /// (10 to 14); 15 removed exclusive backups along with the argument.
    pub backup_exclusive_arg: bool,
    /// How recovery is configured on restore.
    pub recovery: RecoveryStyle,
    /// pg_control field offsets.
    pub control: ControlLayout,
}

const LAYOUT_10: ControlLayout = ControlLayout {
    checkpoint: 32,
    checkpoint_copy: 48,
    checkpoint_wal_level: None,
    max_align: 200,
    float_format: 208,
    blcksz: 216,
    relseg_size: 220,
    xlog_blcksz: 224,
    xlog_seg_size: 228,
    name_data_len: 232,
    float_byval_count: 2,
    data_checksum_version: 252,
    char_signedness: None,
    crc: 288,
};

/// 11 removed `prevCheckPoint`: everything after it moves back 8 bytes.
const LAYOUT_11: ControlLayout = ControlLayout {
    checkpoint: 32,
    checkpoint_copy: 40,
    checkpoint_wal_level: None,
    max_align: 192,
    float_format: 200,
    blcksz: 208,
    relseg_size: 212,
    xlog_blcksz: 216,
    xlog_seg_size: 220,
    name_data_len: 224,
    float_byval_count: 2,
    data_checksum_version: 244,
    char_signedness: None,
    crc: 280,
};

/// 12 grew CheckPoint (64-bit xid) and added `max_wal_senders`: back on 10's offsets from 128.
const LAYOUT_12: ControlLayout = ControlLayout {
    checkpoint: 32,
    checkpoint_copy: 40,
    checkpoint_wal_level: None,
    max_align: 204,
    float_format: 208,
    blcksz: 216,
    relseg_size: 220,
    xlog_blcksz: 224,
    xlog_seg_size: 228,
    name_data_len: 232,
    float_byval_count: 2,
    data_checksum_version: 252,
    char_signedness: None,
    crc: 288,
};

/// 13 dropped `float4ByVal` (same offsets otherwise).
const LAYOUT_13: ControlLayout = ControlLayout {
    float_byval_count: 1,
    ..LAYOUT_12
};

/// 17 put `wal_level` into the checkpoint copy's padding.
const LAYOUT_17: ControlLayout = ControlLayout {
    checkpoint_wal_level: Some(60),
    ..LAYOUT_13
};

/// 18 added `default_char_signedness` after `data_checksum_version`; the crc moves to 292.
const LAYOUT_18: ControlLayout = ControlLayout {
    char_signedness: Some(256),
    crc: 292,
    ..LAYOUT_17
};

/// Builds a row; only the version-specific facts vary, the naming is the same for all of 10+.
const fn row(
    major: u32,
    name: &'static str,
    control_version: u32,
    catalog_version: u32,
    wal_magic: u16,
    control: ControlLayout,
) -> VersionInfo {
    let pre15 = major < 15;
    VersionInfo {
        major,
        name,
        control_version,
        catalog_version,
        wal_magic,
        wal_name: "wal",
        lsn_name: "lsn",
        wal_path: "pg_wal",
        xact_path: "pg_xact",
        backup_start_fn: if pre15 {
            "pg_start_backup"
        } else {
            "pg_backup_start"
        },
        backup_stop_fn: if pre15 {
            "pg_stop_backup"
        } else {
            "pg_backup_stop"
        },
        backup_exclusive_arg: pre15,
        recovery: if major < 12 {
            RecoveryStyle::RecoveryConf
        } else {
            RecoveryStyle::SignalFile
        },
        control,
    }
}

/// The supported majors, oldest first.
pub const VERSIONS: &[VersionInfo] = &[
    row(10, "10", 1002, 201_707_211, 0xD097, LAYOUT_10),
    row(11, "11", 1100, 201_809_051, 0xD098, LAYOUT_11),
    row(12, "12", 1201, 201_909_212, 0xD101, LAYOUT_12),
    row(13, "13", 1300, 202_007_201, 0xD106, LAYOUT_13),
    row(14, "14", 1300, 202_107_181, 0xD10D, LAYOUT_13),
    row(15, "15", 1300, 202_209_061, 0xD110, LAYOUT_13),
    row(16, "16", 1300, 202_307_071, 0xD113, LAYOUT_13),
    row(17, "17", 1700, 202_406_281, 0xD116, LAYOUT_17),
    row(18, "18", 1800, 202_506_291, 0xD118, LAYOUT_18),
];

const HINT_SUPPORTED: &str = "is this version of PostgreSQL supported?";

/// A PostgreSQL major version, `server_version_num` style without the minor (`150000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgVersion(u32);

impl PgVersion {
    /// Every supported version, oldest first.
    pub fn supported() -> impl Iterator<Item = PgVersion> {
        VERSIONS.iter().map(|v| PgVersion(v.major * 10_000))
    }

    /// The number, e.g. `150000` for 15 or `90600` for 9.6.
    #[must_use]
    pub fn num(self) -> u32 {
        self.0
    }

    /// Major number as PostgreSQL counts it from 10 on (`15`); `9` for any 9.x.
    #[must_use]
    pub fn major(self) -> u32 {
        self.0 / 10_000
    }

    /// The table row, if this version is supported.
    #[must_use]
    pub fn info(self) -> Option<&'static VersionInfo> {
        VERSIONS.iter().find(|v| v.major * 10_000 == self.0)
    }

    /// The table row, or `VersionNotSupported` naming the version.
    pub fn require_info(self) -> Result<&'static VersionInfo> {
        self.info().ok_or_else(|| {
            Error::new(
                ErrorKind::VersionNotSupported,
                format!("invalid PostgreSQL version {}", self.0),
            )
            .with_hint(HINT_SUPPORTED)
        })
    }

    /// A supported major by number (`15`).
    pub fn from_major(major: u32) -> Result<PgVersion> {
        let version = PgVersion(major.saturating_mul(10_000));
        version.require_info()?;
        Ok(version)
    }

    /// The major whose pg_control carries this (control version, catalog version) pair.
    pub fn from_control(control_version: u32, catalog_version: u32) -> Result<PgVersion> {
        VERSIONS
            .iter()
            .find(|v| v.control_version == control_version && v.catalog_version == catalog_version)
            .map(|v| PgVersion(v.major * 10_000))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::VersionNotSupported,
                    format!(
                        "unexpected control version = {control_version} and catalog version = {catalog_version}"
                    ),
                )
                .with_hint(HINT_SUPPORTED)
            })
    }

    /// The major whose WAL pages start with this magic.
    pub fn from_wal_magic(magic: u16) -> Result<PgVersion> {
        Self::find_wal_magic(magic).ok_or_else(|| {
            Error::new(
                ErrorKind::VersionNotSupported,
                format!("unexpected WAL magic {magic}"),
            )
            .with_hint(HINT_SUPPORTED)
        })
    }

    /// Like [`PgVersion::from_wal_magic`] but `None` for an unknown magic.
    #[must_use]
    pub fn find_wal_magic(magic: u16) -> Option<PgVersion> {
        VERSIONS
            .iter()
            .find(|v| v.wal_magic == magic)
            .map(|v| PgVersion(v.major * 10_000))
    }

    /// The major of a running server from its `server_version_num` (`150018` → 15).
    pub fn from_server_version_num(num: i32) -> Result<PgVersion> {
        let num = u32::try_from(num).map_err(|_| {
            Error::new(
                ErrorKind::VersionNotSupported,
                format!("invalid PostgreSQL version {num}"),
            )
            .with_hint(HINT_SUPPORTED)
        })?;
        // 10+ numbers are major * 10000 + minor; 9.x are major * 10000 + minor * 100 + patch
        let version = if num >= 100_000 {
            PgVersion(num / 10_000 * 10_000)
        } else {
            PgVersion(num / 100 * 100)
        };
        version.require_info()?;
        Ok(version)
    }

    /// Tablespace sub-directory name, `PG_<version>_<catalog version>`.
    #[must_use]
    pub fn tablespace_id(self, catalog_version: u32) -> String {
        format!("PG_{self}_{catalog_version}")
    }
}

impl fmt::Display for PgVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 100_000 {
            write!(f, "{}", self.0 / 10_000)
        } else {
            write!(f, "{}.{}", self.0 / 10_000, self.0 % 10_000 / 100)
        }
    }
}

impl FromStr for PgVersion {
    type Err = Error;

    /// Parses the info-file form: `"15"` (10 and later) or `"9.6"` (before 10). Support is not
    /// checked here, so old history entries still load; call [`PgVersion::require_info`] for that.
    fn from_str(s: &str) -> Result<PgVersion> {
        let invalid = || {
            Error::new(
                ErrorKind::Format,
                format!("version '{s}' format is invalid"),
            )
        };
        let digits =
            |t: &str| !t.is_empty() && t.len() <= 3 && t.bytes().all(|b| b.is_ascii_digit());
        match s.split_once('.') {
            None if digits(s) => {
                let major: u32 = s.parse().map_err(|_| invalid())?;
                if major < 10 {
                    return Err(invalid());
                }
                Ok(PgVersion(major * 10_000))
            }
            Some((major, minor)) if digits(major) && digits(minor) => {
                let major: u32 = major.parse().map_err(|_| invalid())?;
                let minor: u32 = minor.parse().map_err(|_| invalid())?;
                if major >= 10 || minor >= 100 {
                    return Err(invalid());
                }
                Ok(PgVersion(major * 10_000 + minor * 100))
            }
            _ => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_ordered_and_unique() {
        for pair in VERSIONS.windows(2) {
            assert!(pair[0].major < pair[1].major);
        }
        for (i, a) in VERSIONS.iter().enumerate() {
            assert_eq!(a.name, a.major.to_string());
            for b in &VERSIONS[i + 1..] {
                assert_ne!(a.wal_magic, b.wal_magic);
                assert_ne!(
                    (a.control_version, a.catalog_version),
                    (b.control_version, b.catalog_version)
                );
            }
        }
        assert_eq!(PgVersion::supported().count(), 9);
    }

    #[test]
    fn text_round_trip() {
        for v in PgVersion::supported() {
            let text = v.to_string();
            assert_eq!(text.parse::<PgVersion>().unwrap(), v);
            assert_eq!(v.info().unwrap().name, text);
        }
        let old: PgVersion = "9.6".parse().unwrap();
        assert_eq!(old.num(), 90600);
        assert_eq!(old.to_string(), "9.6");
        assert!(old.info().is_none());
        assert_eq!(
            old.require_info().unwrap_err().kind(),
            ErrorKind::VersionNotSupported
        );
        for bad in [
            "", "x", "15.", ".5", "9", "10.1", "1.2.3", "-1", "15 ", "9.100", "1234",
        ] {
            let err = bad.parse::<PgVersion>().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Format, "{bad}");
        }
    }

    #[test]
    fn from_control_needs_both_numbers() {
        assert_eq!(
            PgVersion::from_control(1300, 202_209_061)
                .unwrap()
                .to_string(),
            "15"
        );
        assert_eq!(
            PgVersion::from_control(1300, 202_007_201)
                .unwrap()
                .to_string(),
            "13"
        );
        let err = PgVersion::from_control(1300, 1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::VersionNotSupported);
        assert_eq!(
            err.message(),
            "unexpected control version = 1300 and catalog version = 1"
        );
        assert_eq!(err.hint(), Some(HINT_SUPPORTED));
    }

    #[test]
    fn from_wal_magic_and_server_num() {
        assert_eq!(PgVersion::from_wal_magic(0xD110).unwrap().major(), 15);
        assert_eq!(PgVersion::from_wal_magic(0xD118).unwrap().major(), 18);
        let err = PgVersion::from_wal_magic(0x1234).unwrap_err();
        assert_eq!(err.message(), "unexpected WAL magic 4660");
        assert_eq!(
            PgVersion::from_server_version_num(150_018).unwrap().major(),
            15
        );
        assert_eq!(
            PgVersion::from_server_version_num(100_023).unwrap().major(),
            10
        );
        assert_eq!(
            PgVersion::from_server_version_num(90_624)
                .unwrap_err()
                .message(),
            "invalid PostgreSQL version 90600"
        );
        assert!(PgVersion::from_server_version_num(-1).is_err());
        assert!(PgVersion::from_server_version_num(190_000).is_err());
        assert!(PgVersion::from_major(9).is_err());
        assert_eq!(PgVersion::from_major(17).unwrap().num(), 170_000);
    }

    #[test]
    fn naming_per_version() {
        let v14 = PgVersion::from_major(14).unwrap().info().unwrap();
        let v15 = PgVersion::from_major(15).unwrap().info().unwrap();
        assert_eq!(v14.backup_start_fn, "pg_start_backup");
        assert!(v14.backup_exclusive_arg);
        assert_eq!(v15.backup_stop_fn, "pg_backup_stop");
        assert!(!v15.backup_exclusive_arg);
        let v11 = PgVersion::from_major(11).unwrap().info().unwrap();
        assert_eq!(v11.recovery, RecoveryStyle::RecoveryConf);
        assert_eq!(v15.recovery, RecoveryStyle::SignalFile);
        assert_eq!(
            PgVersion::from_major(15)
                .unwrap()
                .tablespace_id(202_209_061),
            "PG_15_202209061"
        );
    }
}
