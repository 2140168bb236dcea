//! `archive-push` and `archive-get` (pgBackRest `src/command/archive/`): what both share.
//!
//! Contract:
//! - [`wal_path`] resolves a path given by PostgreSQL (`%p`) exactly as pgBackRest: an absolute
//!   path is used as is; a relative one is taken from `pg1-path`, which must then be set and be the
//!   working directory PostgreSQL runs in.
//! - The spool ([`Spool`]) is `<spool-path>/archive/<stanza>/out` for push and `.../in` for get.
//!   Status files are pgBackRest's: `<wal>.ok` (empty, or `0\n<warning>`), `<wal>.error` and
//!   `global.error` (`<code>\n<message>`, the message carrying its `HINT:` lines). They are
//!   written atomically, so a reader never sees half of one.
//! - The asynchronous process is this binary run again with the same options (console and
//!   stderr logging off) as `<command>:async`, in its own process group with null stdio, never
//!   waited for ([`spawn_async`]); it first closes the other descriptors it inherited
//!   ([`close_inherited_fds`]); the archive lock decides which process does the work.
//! - [`Wait`] polls like pgBackRest's `Wait` but starts at 10 ms (pgBackRest: 100 ms), so a
//!   foreground call notices the background process's answer sooner; intervals still grow
//!   (Fibonacci) and never pass the deadline.

pub mod get;
pub mod job;
pub mod push;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_config::OptionId;
use pgkeep_storage::posix::PosixStorage;
use pgkeep_storage::{InfoLevel, Storage, WriteOptions};

use crate::ctx::Ctx;
use crate::log::{Level, LogSettings, Logger, error_text};

/// Extension of a status file acknowledging a WAL file.
pub const STATUS_EXT_OK: &str = ".ok";
/// Extension of a status file reporting an error.
pub const STATUS_EXT_ERROR: &str = ".error";
/// Status file name of an error that concerns every WAL file of a run.
pub const STATUS_FILE_GLOBAL: &str = "global";

/// The last component of a path (`pg_wal/000000010000000000000001` -> `000000010000000000000001`).
#[must_use]
pub fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The directory part of a path (pgBackRest `strPath`): `/a/b` -> `/a`, `/a` -> `/`, `a` -> ``.
#[must_use]
pub fn dir_name(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => path.get(..i).unwrap_or(""),
        None => "",
    }
}

/// pgBackRest `walPath()`: the absolute path of a WAL file named by PostgreSQL.
///
/// # Errors
/// `OptionRequired` for a relative path without `pg1-path`; `PathMissing` when `pg1-path` does not
/// exist; `OptionInvalidValue` when the working directory is not `pg1-path`.
pub fn wal_path(file: &str, pg_path: Option<&str>, command: &str) -> Result<String> {
    if file.starts_with('/') {
        return Ok(file.to_string());
    }
    let Some(pg_path) = pg_path else {
        return Err(Error::new(
            ErrorKind::OptionRequired,
            format!(
                "option 'pg1-path' must be specified when relative wal paths are used\nHINT: is %f passed to {command} instead of %p?\nHINT: PostgreSQL may pass relative paths even with %p depending on the environment."
            ),
        ));
    };
    let cwd = std::env::current_dir().map_err(|e| {
        Error::new(
            ErrorKind::Format,
            format!("unable to get cwd: {}", pgkeep_base::error::io_cause(&e)),
        )
    })?;
    if cwd != Path::new(pg_path) {
        // pgBackRest changes to pg1-path and compares the resolved directories
        let resolved = std::fs::canonicalize(pg_path)
            .map_err(|e| Error::io(ErrorKind::PathMissing, "unable to chdir() to", pg_path, &e))?;
        if resolved != cwd {
            return Err(Error::new(
                ErrorKind::OptionInvalidValue,
                format!(
                    "PostgreSQL working directory '{}' is not the same as option pg1-path '{pg_path}'\nHINT: is the PostgreSQL data_directory configured the same as the pg1-path option?",
                    cwd.display()
                ),
            ));
        }
    }
    Ok(format!("{}/{file}", pg_path.trim_end_matches('/')))
}

/// `repoN: [ErrorType] message`, the line pgBackRest collects per failed repository.
#[must_use]
pub fn repo_error_line(key: u32, e: &Error) -> String {
    format!("repo{key}: [{}] {}", e.kind().name(), error_text(e))
}

/// pgBackRest `strSizeFormat()`: `512B`, `1.5KB`, `16MB`, `2GB`.
#[must_use]
pub fn size_format(size: u64) -> String {
    const KB: u64 = 1024;
    const MB: u64 = KB * 1024;
    const GB: u64 = MB * 1024;
    let (unit, name) = match size {
        s if s < KB => return format!("{s}B"),
        s if s < MB => (KB, "KB"),
        s if s < GB => (MB, "MB"),
        _ => (GB, "GB"),
    };
    // a tenth of the unit decides whether a decimal is shown, as pgBackRest does
    let tenths = size.saturating_mul(10) / unit;
    if !tenths.is_multiple_of(10) {
        #[allow(clippy::cast_precision_loss)]
        let value = size as f64 / unit as f64;
        format!("{value:.1}{name}")
    } else {
        format!("{}{name}", size / unit)
    }
}

/// Polling with growing sleeps until a deadline (pgBackRest `Wait`, faster first steps).
pub struct Wait {
    begin: Instant,
    limit: Duration,
    sleep: Duration,
    sleep_prev: Duration,
}

impl Wait {
    /// A wait of at most `limit`.
    #[must_use]
    pub fn new(limit: Duration) -> Wait {
        let first = Duration::from_millis(10).min(limit / 10);
        Wait {
            begin: Instant::now(),
            limit,
            sleep: first,
            sleep_prev: Duration::ZERO,
        }
    }

    /// Sleep, then say whether another check may be made (false once the limit has passed).
    pub fn more(&mut self) -> bool {
        if self.sleep.is_zero() {
            return false;
        }
        std::thread::sleep(self.sleep);
        let elapsed = self.begin.elapsed();
        if elapsed < self.limit {
            let next = (self.sleep + self.sleep_prev)
                .min(Duration::from_millis(100))
                .min(self.limit - elapsed);
            self.sleep_prev = self.sleep;
            self.sleep = next;
        } else {
            self.sleep = Duration::ZERO;
        }
        true
    }
}

/// Which spool queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// `in`: archive-get prefetch.
    In,
    /// `out`: archive-push acknowledgements.
    Out,
}

/// The spool queue of a stanza (`<spool-path>/archive/<stanza>/<in|out>`).
pub struct Spool {
    storage: PosixStorage,
}

impl Spool {
    /// The queue under `spool_path` for `stanza`.
    #[must_use]
    pub fn new(spool_path: &str, stanza: &str, queue: Queue) -> Spool {
        let name = match queue {
            Queue::In => "in",
            Queue::Out => "out",
        };
        Spool {
            storage: PosixStorage::new(format!(
                "{}/archive/{stanza}/{name}",
                spool_path.trim_end_matches('/')
            )),
        }
    }

    /// The queue of the running command (`spool-path`, `--stanza`).
    ///
    /// # Errors
    /// When `--stanza` is missing.
    pub fn of(ctx: &Ctx, queue: Queue) -> Result<Spool> {
        let spool_path = ctx
            .cfg
            .str(OptionId::SpoolPath)
            .unwrap_or("/var/spool/pgbackrest");
        Ok(Spool::new(spool_path, ctx.stanza()?, queue))
    }

    /// The storage rooted at the queue directory.
    #[must_use]
    pub fn storage(&self) -> &PosixStorage {
        &self.storage
    }

    /// File-system path of a name in the queue.
    #[must_use]
    pub fn path(&self, name: &str) -> String {
        self.storage.path(name)
    }

    /// Create the queue directory and make sure this process can write into it.
    ///
    /// # Errors
    /// `PathCreate` when it cannot be created, `PathOpen` when it is not writable.
    pub fn ensure_writable(&self) -> Result<()> {
        self.storage.path_create("", None)?;
        let path = self.storage.path("");
        nix::unistd::access(
            Path::new(&path),
            nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
        )
        .map_err(|errno| {
            let e = std::io::Error::from_raw_os_error(errno as i32);
            Error::io(
                ErrorKind::PathOpen,
                "unable to write to spool path",
                &path,
                &e,
            )
        })
    }

    /// Does `name` exist in the queue?
    ///
    /// # Errors
    /// When the queue cannot be read.
    pub fn exists(&self, name: &str) -> Result<bool> {
        Ok(self.storage.info(name, InfoLevel::Exists, true)?.is_some())
    }

    /// Names in the queue, sorted; an error when the queue directory is missing.
    ///
    /// # Errors
    /// `PathMissing` when absent, storage errors.
    pub fn list(&self) -> Result<Vec<String>> {
        let Some(entries) = self.storage.list("", InfoLevel::Exists)? else {
            return Err(Error::new(
                ErrorKind::PathMissing,
                format!(
                    "unable to list file info for missing path '{}'",
                    self.storage.path("")
                ),
            ));
        };
        let mut names: Vec<String> = entries.into_iter().map(|e| e.name).collect();
        names.sort();
        Ok(names)
    }

    /// Remove `name` (missing is fine).
    ///
    /// # Errors
    /// When the file exists but cannot be removed.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.storage.remove(name, true)
    }

    fn put(&self, name: &str, content: &[u8]) -> Result<()> {
        // status files need no fsync: what they acknowledge was made durable before they exist
        let opts = WriteOptions {
            sync_file: false,
            sync_path: false,
            ..WriteOptions::default()
        };
        pgkeep_storage::put(&self.storage, name, content, opts)
    }

    /// Write `<wal>.ok`, empty or carrying a warning (`0\n<warning>`).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write_ok(&self, wal: &str, warning: Option<&str>) -> Result<()> {
        let content = warning.map(|w| format!("0\n{w}")).unwrap_or_default();
        self.put(&format!("{wal}{STATUS_EXT_OK}"), content.as_bytes())
    }

    /// Write `<wal>.error`, or `global.error` without a WAL file: `<code>\n<message>`.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write_error(&self, wal: Option<&str>, code: u8, message: &str) -> Result<()> {
        let name = format!("{}{STATUS_EXT_ERROR}", wal.unwrap_or(STATUS_FILE_GLOBAL));
        self.put(&name, format!("{code}\n{message}").as_bytes())
    }

    /// Remove `<wal>.error` and `global.error` before a new background run, so an old error is not
    /// reported instead of the new run's answer.
    ///
    /// # Errors
    /// When a file exists but cannot be removed.
    pub fn error_clear(&self, wal: &str) -> Result<()> {
        self.remove(&format!("{wal}{STATUS_EXT_ERROR}"))?;
        self.remove(&format!("{STATUS_FILE_GLOBAL}{STATUS_EXT_ERROR}"))
    }

    /// pgBackRest `archiveAsyncStatus()`: `true` when `<wal>.ok` exists (its warning is logged
    /// when `warn_on_ok`); an error from `<wal>.error` or `global.error` when `throw_on_error`;
    /// otherwise `false`.
    ///
    /// # Errors
    /// The stored error, `Format` for a malformed status file.
    pub fn status(
        &self,
        wal: &str,
        throw_on_error: bool,
        warn_on_ok: bool,
        log: &Logger,
    ) -> Result<bool> {
        let ok_name = format!("{wal}{STATUS_EXT_OK}");
        let ok = pgkeep_storage::get(&self.storage, &ok_name)?;
        let (name, content) = match ok {
            Some(content) => (ok_name, content),
            None => {
                let mut found = None;
                for name in [
                    format!("{wal}{STATUS_EXT_ERROR}"),
                    format!("{STATUS_FILE_GLOBAL}{STATUS_EXT_ERROR}"),
                ] {
                    if let Some(content) = pgkeep_storage::get(&self.storage, &name)? {
                        found = Some((name, content));
                        break;
                    }
                }
                match found {
                    Some(found) => found,
                    None => return Ok(false),
                }
            }
        };
        let is_ok = name.ends_with(STATUS_EXT_OK);
        let text = String::from_utf8_lossy(&content);
        let parsed = if text.is_empty() {
            None
        } else {
            Some(parse_status(&name, &text)?)
        };
        if is_ok {
            if let Some((code, message)) = parsed
                && warn_on_ok
            {
                if code == 0 {
                    log.warn(&message);
                } else {
                    log.warn(&format!(
                        "WAL segment '{wal}' was not pushed due to error [{code}] and was manually skipped: {message}"
                    ));
                }
            }
            return Ok(true);
        }
        if !throw_on_error {
            return Ok(false);
        }
        match parsed {
            None => Err(Error::new(
                ErrorKind::Assert,
                format!("status file '{name}' has no content"),
            )),
            Some((code, message)) => Err(Error::new(ErrorKind::from_code(code), message)),
        }
    }
}

/// `<code>\n<message>` of a status file.
fn parse_status(name: &str, text: &str) -> Result<(u32, String)> {
    let Some((code, message)) = text.split_once('\n') else {
        return Err(Error::new(
            ErrorKind::Format,
            format!("{name} content must have at least two lines"),
        ));
    };
    if message.is_empty() {
        return Err(Error::new(
            ErrorKind::Format,
            format!("{name} message must be > 0"),
        ));
    }
    let code = code.trim().parse::<i64>().map_err(|_| {
        Error::new(
            ErrorKind::Format,
            format!("unable to convert base 10 string '{code}' to int"),
        )
    })?;
    Ok((
        u32::try_from(code).unwrap_or(u32::from(ErrorKind::Unknown.code())),
        message.trim().to_string(),
    ))
}

/// The command line of the background process: the current arguments without the command, its
/// parameters and console/stderr log levels, then those levels off, the exec id, `command_role`
/// and `params`.
#[must_use]
pub fn async_args(
    args: &[String],
    command: &str,
    params: &[String],
    exec_id: &str,
    command_role: &str,
    new_params: &[String],
) -> Vec<String> {
    // drop the parameters, matching from the end (they follow the command)
    let mut keep: Vec<Option<&String>> = args.iter().map(Some).collect();
    let mut wanted = params.iter().rev().peekable();
    for slot in keep.iter_mut().rev() {
        let Some(next) = wanted.peek() else { break };
        if slot.is_some_and(|a| a == *next) {
            *slot = None;
            wanted.next();
        }
    }
    let mut out = Vec::with_capacity(args.len() + new_params.len() + 4);
    let mut command_seen = false;
    let mut skip_value = false;
    for arg in keep.into_iter().flatten() {
        if skip_value {
            skip_value = false;
            continue;
        }
        if !command_seen && arg == command {
            command_seen = true;
            continue;
        }
        let name = arg.split('=').next().unwrap_or(arg);
        if matches!(name, "--log-level-console" | "--log-level-stderr") {
            skip_value = !arg.contains('=');
            continue;
        }
        out.push(arg.clone());
    }
    out.push("--log-level-console=off".to_string());
    out.push("--log-level-stderr=off".to_string());
    if !out
        .iter()
        .any(|a| a == "--exec-id" || a.starts_with("--exec-id="))
    {
        out.push(format!("--exec-id={exec_id}"));
    }
    out.push(command_role.to_string());
    out.extend(new_params.iter().cloned());
    out
}

/// Start the background process `<exe> <async_args...>`: own process group (signals sent to
/// PostgreSQL's archiver do not reach it), null stdio, not waited for.
///
/// # Errors
/// `Execute` when it cannot be started.
pub fn spawn_async(ctx: &Ctx, command_role: &str, new_params: &[String]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| {
        Error::new(
            ErrorKind::Execute,
            format!("unable to find the pgkeep executable: {e}"),
        )
    })?;
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let args = async_args(
        &args,
        ctx.cfg.command().name(),
        ctx.cfg.params(),
        &ctx.exec_id,
        command_role,
        new_params,
    );
    std::process::Command::new(&exe)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| {
            Error::new(
                ErrorKind::Execute,
                format!(
                    "unable to execute asynchronous '{}': {e}",
                    ctx.cfg.command().name()
                ),
            )
        })?;
    Ok(())
}

/// Close the descriptors above stderr that this process inherited through `exec` (first thing in
/// the background process): `archive_command` runs with whatever PostgreSQL's archiver left open
/// without close-on-exec, and a background process that outlives the call should not hold those.
/// Inherited descriptors are told from this process's own by the close-on-exec flag (read from
/// `/proc/self/fdinfo`): everything Rust's standard library opens has it, and nothing that crossed
/// an `exec` can. Without `/proc` nothing is closed.
pub fn close_inherited_fds() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    let cloexec = u32::try_from(nix::fcntl::OFlag::O_CLOEXEC.bits()).unwrap_or(0);
    for fd in fds {
        // gone by now (the listing's own descriptor) or not readable: leave it
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|line| line.strip_prefix("flags:"))
            .and_then(|value| u32::from_str_radix(value.trim(), 8).ok());
        if flags.is_some_and(|flags| flags & cloexec == 0) {
            let _ = nix::unistd::close(fd);
        }
    }
}

/// `<log-path>/<stanza>-<command>-async.log`, where the background process logs.
#[must_use]
pub fn async_log_file(ctx: &Ctx) -> String {
    let log_path = ctx
        .cfg
        .str(OptionId::LogPath)
        .unwrap_or("/var/log/pgbackrest");
    let stanza = ctx.stanza_opt().unwrap_or("all");
    format!("{log_path}/{stanza}-{}-async.log", ctx.cfg.command().name())
}

/// The logger of the background process: the file only (console and stderr are off), opened
/// here because the command table does not mark archive commands as logging to a file.
#[must_use]
pub fn async_logger(ctx: &Ctx) -> Arc<Logger> {
    let file = ctx
        .cfg
        .str(OptionId::LogLevelFile)
        .and_then(Level::from_name)
        .unwrap_or(Level::Info);
    let mut logger = Logger::new(LogSettings {
        console: Level::Off,
        stderr: Level::Off,
        file,
        timestamp: ctx.cfg.bool(OptionId::LogTimestamp),
        process: 0,
    });
    logger.open_file(&async_log_file(ctx));
    Arc::new(logger)
}

/// pgBackRest's error when the background process did not answer for `file` within
/// `archive-timeout`: `unable to <action> WAL file '<file>' <direction> the archive
/// asynchronously after N second(s)`, with the hint naming the async log file.
pub fn async_timeout(ctx: &Ctx, action: &str, file: &str, direction: &str) -> Error {
    Error::new(
        ErrorKind::ArchiveTimeout,
        format!(
            "unable to {action} WAL file '{file}' {direction} the archive asynchronously after {} second(s)",
            ctx.cfg
                .display(OptionId::ArchiveTimeout, None)
                .unwrap_or_else(|| "60".to_string())
        ),
    )
    .with_hint(format!("check '{}' for errors.", async_log_file(ctx)))
}

/// Run a background role with its own log file and pgBackRest's begin/end lines.
///
/// # Errors
/// Whatever `body` returns (also logged to the file).
pub fn run_logged(ctx: &Ctx, body: impl FnOnce(&Arc<Logger>) -> Result<()>) -> Result<()> {
    let log = async_logger(ctx);
    let announce = crate::log::Announce::begin(
        &log,
        format!("{}:async", ctx.cfg.command().name()),
        Level::Info,
        ctx.cfg.display_options(),
        ctx.cfg.bool(OptionId::LogTimestamp),
    );
    let result = body(&log);
    announce.end(&log, result.as_ref().copied());
    result
}

/// One worker of an async role: its warnings and detail lines carry its id (`P01`, ...), as
/// pgBackRest logs what each of its local processes did.
pub struct Worker<'a> {
    /// 1 to process-max.
    pub pid: u32,
    /// The role's logger.
    pub log: &'a Logger,
}

impl Worker<'_> {
    /// A warning of this worker.
    pub fn warn(&self, message: &str) {
        self.log.log_pid(self.pid, Level::Warn, message);
    }

    /// A detail line of this worker.
    pub fn detail(&self, message: &str) {
        self.log.log_pid(self.pid, Level::Detail, message);
    }
}

/// The `compress-type` and `compress-level` in force.
///
/// # Errors
/// An unknown type or a level out of its range.
pub fn compress_settings(ctx: &Ctx) -> Result<(pgkeep_base::compress::CompressType, i32)> {
    let ty = pgkeep_base::compress::CompressType::from_name(
        ctx.cfg.str(OptionId::CompressType).unwrap_or("gz"),
    )?;
    let level = match ctx.cfg.int(OptionId::CompressLevel) {
        Some(level) => i32::try_from(level).map_err(|_| {
            Error::new(
                ErrorKind::OptionInvalidValue,
                format!("'{level}' is out of range for 'compress-level' option"),
            )
        })?,
        None => ty.default_level(),
    };
    let range = ty.level_range();
    if ty != pgkeep_base::compress::CompressType::None && !range.contains(&level) {
        return Err(Error::new(
            ErrorKind::OptionInvalidValue,
            format!("'{level}' is out of range for 'compress-level' option"),
        ));
    }
    Ok((ty, level))
}

/// pgBackRest `walSegmentFind()` with its wait: the stored name of `segment`.
///
/// # Errors
/// `ArchiveTimeout` with pgBackRest's hints; storage errors.
pub fn wait_for_segment(
    storage: &dyn Storage,
    stanza: &str,
    archive_id: &str,
    segment: &str,
    timeout: Duration,
) -> Result<String> {
    let mut wait = Wait::new(timeout);
    loop {
        if let Some(found) =
            pgkeep_repo::archive::find_segment(storage, stanza, archive_id, segment)?
        {
            return Ok(found);
        }
        if !wait.more() {
            break;
        }
    }
    Err(Error::new(
        ErrorKind::ArchiveTimeout,
        format!(
            "WAL segment {segment} was not archived before the {}ms timeout",
            timeout.as_millis()
        ),
    )
    .with_hint(
        "check the archive_command to ensure that all options are correct (especially --stanza).\nHINT: check the PostgreSQL server log for errors.\nHINT: run the 'start' command if the stanza was previously stopped.",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherited_descriptors_are_closed_and_own_ones_kept() {
        use std::os::fd::{AsRawFd, IntoRawFd};
        let dir = tempfile::tempdir().unwrap();
        let inherited_path = dir.path().join("inherited");
        let own_path = dir.path().join("own");
        std::fs::write(&inherited_path, b"x").unwrap();
        std::fs::write(&own_path, b"y").unwrap();
        // what an exec passes on: a descriptor without close-on-exec
        let inherited = nix::fcntl::open(
            &inherited_path,
            nix::fcntl::OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap()
        .into_raw_fd();
        let own = std::fs::File::open(&own_path).unwrap();
        let target = |fd: i32| std::fs::read_link(format!("/proc/self/fd/{fd}")).ok();
        assert_eq!(target(inherited), Some(inherited_path.clone()));
        close_inherited_fds();
        // closed (its number may be reused since, but not for this file)
        assert_ne!(target(inherited), Some(inherited_path));
        assert_eq!(target(own.as_raw_fd()), Some(own_path));
        let mut text = String::new();
        std::io::Read::read_to_string(&mut &own, &mut text).unwrap();
        assert_eq!(text, "y");
    }

    #[test]
    fn names_split_like_pgbackrest() {
        assert_eq!(
            base_name("/pg/pg_wal/000000010000000000000001"),
            "000000010000000000000001"
        );
        assert_eq!(
            base_name("000000010000000000000001"),
            "000000010000000000000001"
        );
        assert_eq!(
            dir_name("/pg/pg_wal/000000010000000000000001"),
            "/pg/pg_wal"
        );
        assert_eq!(dir_name("/x"), "/");
        assert_eq!(dir_name("x"), "");
    }

    #[test]
    fn relative_wal_paths_need_pg_path_and_its_working_directory() {
        assert_eq!(wal_path("/a/b", None, "archive-push").unwrap(), "/a/b");
        let err = wal_path("pg_wal/x", None, "archive-push").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OptionRequired);
        assert!(err.message().starts_with("option 'pg1-path' must be specified when relative wal paths are used\nHINT: is %f passed to archive-push instead of %p?"));
        let cwd = std::env::current_dir().unwrap();
        let cwd = cwd.to_str().unwrap();
        assert_eq!(
            wal_path("pg_wal/x", Some(cwd), "archive-push").unwrap(),
            format!("{cwd}/pg_wal/x")
        );
        let dir = tempfile::tempdir().unwrap();
        let err = wal_path(
            "pg_wal/x",
            Some(dir.path().to_str().unwrap()),
            "archive-get",
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OptionInvalidValue);
        assert!(
            err.message().contains("is not the same as option pg1-path"),
            "{}",
            err.message()
        );
        let err = wal_path("pg_wal/x", Some("/nonexistent/pgkeep"), "archive-get").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PathMissing);
        assert_eq!(
            err.message(),
            "unable to chdir() to '/nonexistent/pgkeep': [2] No such file or directory"
        );
    }

    #[test]
    fn sizes_format_like_pgbackrest() {
        assert_eq!(size_format(0), "0B");
        assert_eq!(size_format(1023), "1023B");
        assert_eq!(size_format(1024), "1KB");
        assert_eq!(size_format(1536), "1.5KB");
        assert_eq!(size_format(16 * 1024 * 1024), "16MB");
        assert_eq!(size_format(48 * 1024 * 1024 + 512 * 1024), "48.5MB");
        assert_eq!(size_format(4 * 1024 * 1024 * 1024), "4GB");
    }

    #[test]
    fn status_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().to_str().unwrap(), "demo", Queue::Out);
        let log = Logger::new(LogSettings {
            console: Level::Off,
            stderr: Level::Off,
            file: Level::Off,
            timestamp: false,
            process: 0,
        });
        assert!(spool.list().is_err());
        spool.ensure_writable().unwrap();
        let wal = "000000010000000000000001";
        assert!(!spool.status(wal, true, true, &log).unwrap());
        spool.write_ok(wal, None).unwrap();
        assert!(spool.status(wal, true, true, &log).unwrap());
        assert_eq!(
            std::fs::read(spool.path(&format!("{wal}.ok"))).unwrap(),
            b""
        );
        spool.write_ok(wal, Some("careful")).unwrap();
        assert_eq!(
            std::fs::read_to_string(spool.path(&format!("{wal}.ok"))).unwrap(),
            "0\ncareful"
        );
        assert!(spool.status(wal, true, true, &log).unwrap());

        let other = "000000010000000000000002";
        spool
            .write_error(Some(other), 45, "duplicate\nHINT: look")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(spool.path(&format!("{other}.error"))).unwrap(),
            "45\nduplicate\nHINT: look"
        );
        // not thrown on the first check
        assert!(!spool.status(other, false, true, &log).unwrap());
        let err = spool.status(other, true, true, &log).unwrap_err();
        assert_eq!((err.code(), err.message()), (45, "duplicate\nHINT: look"));
        spool.error_clear(other).unwrap();
        assert!(!spool.status(other, true, true, &log).unwrap());

        // a global error answers for every file
        spool
            .write_error(None, 25, "no WAL files to process")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(spool.path("global.error")).unwrap(),
            "25\nno WAL files to process"
        );
        let err = spool.status(other, true, true, &log).unwrap_err();
        assert_eq!(err.code(), 25);
        assert_eq!(
            spool.list().unwrap(),
            vec![
                "000000010000000000000001.ok".to_string(),
                "global.error".to_string()
            ]
        );

        // malformed files
        std::fs::write(spool.path("global.error"), "25").unwrap();
        assert_eq!(
            spool.status(other, true, true, &log).unwrap_err().message(),
            "global.error content must have at least two lines"
        );
        std::fs::write(spool.path("global.error"), "25\n").unwrap();
        assert_eq!(
            spool.status(other, true, true, &log).unwrap_err().message(),
            "global.error message must be > 0"
        );
        std::fs::write(spool.path("global.error"), "").unwrap();
        assert_eq!(
            spool.status(other, true, true, &log).unwrap_err().kind(),
            ErrorKind::Assert
        );
    }

    #[test]
    fn unwritable_spool_is_refused() {
        let err = Spool::new("/proc/pgkeep-spool", "demo", Queue::Out)
            .ensure_writable()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PathCreate);
        assert!(
            err.message().contains("/proc/pgkeep-spool"),
            "{}",
            err.message()
        );
        // an existing directory this process may not write into
        if !nix::unistd::geteuid().is_root() {
            let err = Spool::new("/", "demo", Queue::Out)
                .ensure_writable()
                .unwrap_err();
            assert!(
                matches!(err.kind(), ErrorKind::PathCreate | ErrorKind::PathOpen),
                "{err:?}"
            );
        }
    }

    #[test]
    fn async_arguments_replace_command_params_and_console_levels() {
        let args: Vec<String> = [
            "--config=/x.conf",
            "--stanza",
            "demo",
            "--log-level-console",
            "info",
            "--log-level-stderr=warn",
            "archive-push",
            "--compress-type=lz4",
            "/pg/pg_wal/000000010000000000000001",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        let out = async_args(
            &args,
            "archive-push",
            &["/pg/pg_wal/000000010000000000000001".to_string()],
            "1-abcdef01",
            "archive-push:async",
            &["/pg/pg_wal".to_string()],
        );
        assert_eq!(
            out,
            [
                "--config=/x.conf",
                "--stanza",
                "demo",
                "--compress-type=lz4",
                "--log-level-console=off",
                "--log-level-stderr=off",
                "--exec-id=1-abcdef01",
                "archive-push:async",
                "/pg/pg_wal"
            ]
        );
    }

    #[test]
    fn waits_end_at_the_limit() {
        let begin = Instant::now();
        let mut wait = Wait::new(Duration::from_millis(150));
        let mut rounds = 0;
        while wait.more() {
            rounds += 1;
        }
        assert!(rounds >= 3, "{rounds}");
        let elapsed = begin.elapsed();
        assert!(
            elapsed >= Duration::from_millis(150) && elapsed < Duration::from_millis(400),
            "{elapsed:?}"
        );
    }
}
