//! Errors shared by every pgkeep crate.
//!
//! Contract: every failure that reaches the user carries an [`ErrorKind`] whose numeric code is
//! pgBackRest 2.45's error code (`src/build/error/error.yaml`); the process exit code equals that
//! code. A message is one line, lowercase, no trailing period, naming what failed and where
//! (`unable to open '<path>': <cause>`); an optional hint is printed on its own `HINT:` line.
//! Library code never panics on input: it returns an [`Error`].

use std::fmt;

/// Result alias used across pgkeep.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// pgBackRest's error kinds; the discriminant is the stable error (and exit) code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorKind {
    /// `assert` (25)
    Assert = 25,
    /// `checksum` (26)
    Checksum = 26,
    /// `config` (27)
    Config = 27,
    /// `file-invalid` (28)
    FileInvalid = 28,
    /// `format` (29)
    Format = 29,
    /// `command-required` (30)
    CommandRequired = 30,
    /// `option-invalid` (31)
    OptionInvalid = 31,
    /// `option-invalid-value` (32)
    OptionInvalidValue = 32,
    /// `option-required` (37)
    OptionRequired = 37,
    /// `pg-running` (38)
    PgRunning = 38,
    /// `protocol` (39)
    Protocol = 39,
    /// `path-not-empty` (40)
    PathNotEmpty = 40,
    /// `file-open` (41)
    FileOpen = 41,
    /// `file-read` (42)
    FileRead = 42,
    /// `param-required` (43)
    ParamRequired = 43,
    /// `archive-mismatch` (44)
    ArchiveMismatch = 44,
    /// `archive-duplicate` (45)
    ArchiveDuplicate = 45,
    /// `version-not-supported` (46)
    VersionNotSupported = 46,
    /// `path-create` (47)
    PathCreate = 47,
    /// `command-invalid` (48)
    CommandInvalid = 48,
    /// `host-connect` (49)
    HostConnect = 49,
    /// `lock-acquire` (50)
    LockAcquire = 50,
    /// `backup-mismatch` (51)
    BackupMismatch = 51,
    /// `file-sync` (52)
    FileSync = 52,
    /// `path-open` (53)
    PathOpen = 53,
    /// `path-sync` (54)
    PathSync = 54,
    /// `file-missing` (55)
    FileMissing = 55,
    /// `db-connect` (56)
    DbConnect = 56,
    /// `db-query` (57)
    DbQuery = 57,
    /// `db-mismatch` (58)
    DbMismatch = 58,
    /// `file-remove` (60)
    FileRemove = 60,
    /// `path-remove` (61)
    PathRemove = 61,
    /// `stop` (62)
    Stop = 62,
    /// `term` (63)
    Term = 63,
    /// `file-write` (64)
    FileWrite = 64,
    /// `feature-not-supported` (67)
    FeatureNotSupported = 67,
    /// `archive-command-invalid` (68)
    ArchiveCommandInvalid = 68,
    /// `link-expected` (69)
    LinkExpected = 69,
    /// `link-destination` (70)
    LinkDestination = 70,
    /// `host-invalid` (72)
    HostInvalid = 72,
    /// `path-missing` (73)
    PathMissing = 73,
    /// `file-move` (74)
    FileMove = 74,
    /// `backup-set-invalid` (75)
    BackupSetInvalid = 75,
    /// `tablespace-map` (76)
    TablespaceMap = 76,
    /// `link-map` (78)
    LinkMap = 78,
    /// `file-close` (79)
    FileClose = 79,
    /// `db-missing` (80)
    DbMissing = 80,
    /// `db-invalid` (81)
    DbInvalid = 81,
    /// `archive-timeout` (82)
    ArchiveTimeout = 82,
    /// `file-mode` (83)
    FileMode = 83,
    /// `archive-disabled` (87)
    ArchiveDisabled = 87,
    /// `file-owner` (88)
    FileOwner = 88,
    /// `user-missing` (89)
    UserMissing = 89,
    /// `file-exists` (93)
    FileExists = 93,
    /// `memory` (94)
    Memory = 94,
    /// `crypto` (95)
    Crypto = 95,
    /// `param-invalid` (96)
    ParamInvalid = 96,
    /// `path-close` (97)
    PathClose = 97,
    /// `file-info` (98)
    FileInfo = 98,
    /// `json-format` (99)
    JsonFormat = 99,
    /// `kernel` (100)
    Kernel = 100,
    /// `service` (101)
    Service = 101,
    /// `execute` (102)
    Execute = 102,
    /// `repo-invalid` (103)
    RepoInvalid = 103,
    /// `command` (104)
    Command = 104,
    /// `access` (105)
    Access = 105,
    /// `clock` (106)
    Clock = 106,
    /// `runtime` (122)
    Runtime = 122,
    /// `unhandled` (124)
    Unhandled = 124,
    /// `unknown` (125)
    Unknown = 125,
}

impl ErrorKind {
    /// Every kind, in code order.
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::Assert,
        ErrorKind::Checksum,
        ErrorKind::Config,
        ErrorKind::FileInvalid,
        ErrorKind::Format,
        ErrorKind::CommandRequired,
        ErrorKind::OptionInvalid,
        ErrorKind::OptionInvalidValue,
        ErrorKind::OptionRequired,
        ErrorKind::PgRunning,
        ErrorKind::Protocol,
        ErrorKind::PathNotEmpty,
        ErrorKind::FileOpen,
        ErrorKind::FileRead,
        ErrorKind::ParamRequired,
        ErrorKind::ArchiveMismatch,
        ErrorKind::ArchiveDuplicate,
        ErrorKind::VersionNotSupported,
        ErrorKind::PathCreate,
        ErrorKind::CommandInvalid,
        ErrorKind::HostConnect,
        ErrorKind::LockAcquire,
        ErrorKind::BackupMismatch,
        ErrorKind::FileSync,
        ErrorKind::PathOpen,
        ErrorKind::PathSync,
        ErrorKind::FileMissing,
        ErrorKind::DbConnect,
        ErrorKind::DbQuery,
        ErrorKind::DbMismatch,
        ErrorKind::FileRemove,
        ErrorKind::PathRemove,
        ErrorKind::Stop,
        ErrorKind::Term,
        ErrorKind::FileWrite,
        ErrorKind::FeatureNotSupported,
        ErrorKind::ArchiveCommandInvalid,
        ErrorKind::LinkExpected,
        ErrorKind::LinkDestination,
        ErrorKind::HostInvalid,
        ErrorKind::PathMissing,
        ErrorKind::FileMove,
        ErrorKind::BackupSetInvalid,
        ErrorKind::TablespaceMap,
        ErrorKind::LinkMap,
        ErrorKind::FileClose,
        ErrorKind::DbMissing,
        ErrorKind::DbInvalid,
        ErrorKind::ArchiveTimeout,
        ErrorKind::FileMode,
        ErrorKind::ArchiveDisabled,
        ErrorKind::FileOwner,
        ErrorKind::UserMissing,
        ErrorKind::FileExists,
        ErrorKind::Memory,
        ErrorKind::Crypto,
        ErrorKind::ParamInvalid,
        ErrorKind::PathClose,
        ErrorKind::FileInfo,
        ErrorKind::JsonFormat,
        ErrorKind::Kernel,
        ErrorKind::Service,
        ErrorKind::Execute,
        ErrorKind::RepoInvalid,
        ErrorKind::Command,
        ErrorKind::Access,
        ErrorKind::Clock,
        ErrorKind::Runtime,
        ErrorKind::Unhandled,
        ErrorKind::Unknown,
    ];

    /// Numeric code, identical to pgBackRest's, used as the process exit code.
    #[must_use]
    pub fn code(self) -> u8 {
        self as u8
    }

    /// pgBackRest's type name, e.g. `ArchiveMismatchError`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Assert => "AssertError",
            ErrorKind::Checksum => "ChecksumError",
            ErrorKind::Config => "ConfigError",
            ErrorKind::FileInvalid => "FileInvalidError",
            ErrorKind::Format => "FormatError",
            ErrorKind::CommandRequired => "CommandRequiredError",
            ErrorKind::OptionInvalid => "OptionInvalidError",
            ErrorKind::OptionInvalidValue => "OptionInvalidValueError",
            ErrorKind::OptionRequired => "OptionRequiredError",
            ErrorKind::PgRunning => "PgRunningError",
            ErrorKind::Protocol => "ProtocolError",
            ErrorKind::PathNotEmpty => "PathNotEmptyError",
            ErrorKind::FileOpen => "FileOpenError",
            ErrorKind::FileRead => "FileReadError",
            ErrorKind::ParamRequired => "ParamRequiredError",
            ErrorKind::ArchiveMismatch => "ArchiveMismatchError",
            ErrorKind::ArchiveDuplicate => "ArchiveDuplicateError",
            ErrorKind::VersionNotSupported => "VersionNotSupportedError",
            ErrorKind::PathCreate => "PathCreateError",
            ErrorKind::CommandInvalid => "CommandInvalidError",
            ErrorKind::HostConnect => "HostConnectError",
            ErrorKind::LockAcquire => "LockAcquireError",
            ErrorKind::BackupMismatch => "BackupMismatchError",
            ErrorKind::FileSync => "FileSyncError",
            ErrorKind::PathOpen => "PathOpenError",
            ErrorKind::PathSync => "PathSyncError",
            ErrorKind::FileMissing => "FileMissingError",
            ErrorKind::DbConnect => "DbConnectError",
            ErrorKind::DbQuery => "DbQueryError",
            ErrorKind::DbMismatch => "DbMismatchError",
            ErrorKind::FileRemove => "FileRemoveError",
            ErrorKind::PathRemove => "PathRemoveError",
            ErrorKind::Stop => "StopError",
            ErrorKind::Term => "TermError",
            ErrorKind::FileWrite => "FileWriteError",
            ErrorKind::FeatureNotSupported => "FeatureNotSupportedError",
            ErrorKind::ArchiveCommandInvalid => "ArchiveCommandInvalidError",
            ErrorKind::LinkExpected => "LinkExpectedError",
            ErrorKind::LinkDestination => "LinkDestinationError",
            ErrorKind::HostInvalid => "HostInvalidError",
            ErrorKind::PathMissing => "PathMissingError",
            ErrorKind::FileMove => "FileMoveError",
            ErrorKind::BackupSetInvalid => "BackupSetInvalidError",
            ErrorKind::TablespaceMap => "TablespaceMapError",
            ErrorKind::LinkMap => "LinkMapError",
            ErrorKind::FileClose => "FileCloseError",
            ErrorKind::DbMissing => "DbMissingError",
            ErrorKind::DbInvalid => "DbInvalidError",
            ErrorKind::ArchiveTimeout => "ArchiveTimeoutError",
            ErrorKind::FileMode => "FileModeError",
            ErrorKind::ArchiveDisabled => "ArchiveDisabledError",
            ErrorKind::FileOwner => "FileOwnerError",
            ErrorKind::UserMissing => "UserMissingError",
            ErrorKind::FileExists => "FileExistsError",
            ErrorKind::Memory => "MemoryError",
            ErrorKind::Crypto => "CryptoError",
            ErrorKind::ParamInvalid => "ParamInvalidError",
            ErrorKind::PathClose => "PathCloseError",
            ErrorKind::FileInfo => "FileInfoError",
            ErrorKind::JsonFormat => "JsonFormatError",
            ErrorKind::Kernel => "KernelError",
            ErrorKind::Service => "ServiceError",
            ErrorKind::Execute => "ExecuteError",
            ErrorKind::RepoInvalid => "RepoInvalidError",
            ErrorKind::Command => "CommandError",
            ErrorKind::Access => "AccessError",
            ErrorKind::Clock => "ClockError",
            ErrorKind::Runtime => "RuntimeError",
            ErrorKind::Unhandled => "UnhandledError",
            ErrorKind::Unknown => "UnknownError",
        }
    }

    /// The kind with this code; unknown codes map to [`ErrorKind::Unknown`].
    #[must_use]
    pub fn from_code(code: u32) -> ErrorKind {
        match code {
            25 => ErrorKind::Assert,
            26 => ErrorKind::Checksum,
            27 => ErrorKind::Config,
            28 => ErrorKind::FileInvalid,
            29 => ErrorKind::Format,
            30 => ErrorKind::CommandRequired,
            31 => ErrorKind::OptionInvalid,
            32 => ErrorKind::OptionInvalidValue,
            37 => ErrorKind::OptionRequired,
            38 => ErrorKind::PgRunning,
            39 => ErrorKind::Protocol,
            40 => ErrorKind::PathNotEmpty,
            41 => ErrorKind::FileOpen,
            42 => ErrorKind::FileRead,
            43 => ErrorKind::ParamRequired,
            44 => ErrorKind::ArchiveMismatch,
            45 => ErrorKind::ArchiveDuplicate,
            46 => ErrorKind::VersionNotSupported,
            47 => ErrorKind::PathCreate,
            48 => ErrorKind::CommandInvalid,
            49 => ErrorKind::HostConnect,
            50 => ErrorKind::LockAcquire,
            51 => ErrorKind::BackupMismatch,
            52 => ErrorKind::FileSync,
            53 => ErrorKind::PathOpen,
            54 => ErrorKind::PathSync,
            55 => ErrorKind::FileMissing,
            56 => ErrorKind::DbConnect,
            57 => ErrorKind::DbQuery,
            58 => ErrorKind::DbMismatch,
            60 => ErrorKind::FileRemove,
            61 => ErrorKind::PathRemove,
            62 => ErrorKind::Stop,
            63 => ErrorKind::Term,
            64 => ErrorKind::FileWrite,
            67 => ErrorKind::FeatureNotSupported,
            68 => ErrorKind::ArchiveCommandInvalid,
            69 => ErrorKind::LinkExpected,
            70 => ErrorKind::LinkDestination,
            72 => ErrorKind::HostInvalid,
            73 => ErrorKind::PathMissing,
            74 => ErrorKind::FileMove,
            75 => ErrorKind::BackupSetInvalid,
            76 => ErrorKind::TablespaceMap,
            78 => ErrorKind::LinkMap,
            79 => ErrorKind::FileClose,
            80 => ErrorKind::DbMissing,
            81 => ErrorKind::DbInvalid,
            82 => ErrorKind::ArchiveTimeout,
            83 => ErrorKind::FileMode,
            87 => ErrorKind::ArchiveDisabled,
            88 => ErrorKind::FileOwner,
            89 => ErrorKind::UserMissing,
            93 => ErrorKind::FileExists,
            94 => ErrorKind::Memory,
            95 => ErrorKind::Crypto,
            96 => ErrorKind::ParamInvalid,
            97 => ErrorKind::PathClose,
            98 => ErrorKind::FileInfo,
            99 => ErrorKind::JsonFormat,
            100 => ErrorKind::Kernel,
            101 => ErrorKind::Service,
            102 => ErrorKind::Execute,
            103 => ErrorKind::RepoInvalid,
            104 => ErrorKind::Command,
            105 => ErrorKind::Access,
            106 => ErrorKind::Clock,
            122 => ErrorKind::Runtime,
            124 => ErrorKind::Unhandled,
            125 => ErrorKind::Unknown,
            _ => ErrorKind::Unknown,
        }
    }
}

/// An error with a stable kind, a one-line message and an optional hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
}

impl Error {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    /// Attach a hint shown on its own `HINT:` line.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Prefix the message with context: `"<context>: <message>"`.
    #[must_use]
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The error kind.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Numeric code (= exit code).
    #[must_use]
    pub fn code(&self) -> u8 {
        self.kind.code()
    }

    /// The one-line message (no code, no hint).
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The hint, if any.
    #[must_use]
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Build an error from an I/O error: `<what> '<path>': <cause>`, with the kind chosen by the
    /// caller (`FileOpen`, `FileRead`, ...) except that a missing file maps to `missing_kind`.
    pub fn io(kind: ErrorKind, what: &str, path: impl fmt::Display, err: &std::io::Error) -> Self {
        Error::new(kind, format!("{what} '{path}': {}", io_cause(err)))
    }

    /// Turn an I/O error back into a pgkeep error. An [`Error`] that travelled through a
    /// `std::io::Read`/`Write` boundary (see `From<Error> for std::io::Error`) comes back unchanged;
    /// any other I/O error becomes `<what>: <cause>` of `kind`.
    pub fn from_io_error(err: &std::io::Error, kind: ErrorKind, what: impl fmt::Display) -> Self {
        match err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<Error>())
        {
            Some(inner) => inner.clone(),
            None => Error::new(kind, format!("{what}: {}", io_cause(err))),
        }
    }
}

/// Lets an [`Error`] cross `std::io` traits (a filter inside a `Read` impl, a storage writer) and
/// be recovered intact by [`Error::from_io_error`].
impl From<Error> for std::io::Error {
    fn from(err: Error) -> Self {
        std::io::Error::other(err)
    }
}

/// Render an I/O error cause the way pgBackRest does: `[errno] text`.
#[must_use]
pub fn io_cause(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(errno) => {
            let text = err.to_string();
            // std renders "No such file or directory (os error 2)"; keep only the text
            let text = text.split(" (os error").next().unwrap_or(&text).to_string();
            format!("[{errno}] {text}")
        }
        None => err.to_string(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Shorthand: `Err(Error::new(kind, format!(...)))`.
#[macro_export]
macro_rules! bail {
    ($kind:ident, $($arg:tt)*) => {
        return Err($crate::error::Error::new($crate::error::ErrorKind::$kind, format!($($arg)*)))
    };
}

/// Shorthand: `Error::new(kind, format!(...))`.
#[macro_export]
macro_rules! err {
    ($kind:ident, $($arg:tt)*) => {
        $crate::error::Error::new($crate::error::ErrorKind::$kind, format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_names_match_pgbackrest() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(u32::from(kind.code())), *kind);
            assert!(kind.name().ends_with("Error"));
        }
        assert_eq!(ErrorKind::OptionInvalidValue.code(), 32);
        assert_eq!(ErrorKind::ArchiveMismatch.name(), "ArchiveMismatchError");
        assert_eq!(ErrorKind::from_code(7), ErrorKind::Unknown);
    }

    #[test]
    fn io_errors_name_the_path_and_errno() {
        let e = std::io::Error::from_raw_os_error(2);
        let err = Error::io(ErrorKind::FileOpen, "unable to open file", "/x/y", &e);
        assert_eq!(
            err.message(),
            "unable to open file '/x/y': [2] No such file or directory"
        );
        assert_eq!(err.code(), 41);
    }

    #[test]
    fn errors_survive_a_trip_through_io_error() {
        let original = Error::new(ErrorKind::Crypto, "cipher header invalid").with_hint("h");
        let io: std::io::Error = original.clone().into();
        assert_eq!(
            Error::from_io_error(&io, ErrorKind::FileRead, "unable to read"),
            original
        );
        let plain = std::io::Error::from_raw_os_error(5);
        let err = Error::from_io_error(&plain, ErrorKind::FileRead, "unable to read 'x'");
        assert_eq!(err.kind(), ErrorKind::FileRead);
        assert_eq!(err.message(), "unable to read 'x': [5] Input/output error");
    }
}
