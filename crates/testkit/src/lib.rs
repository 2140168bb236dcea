//! Test harness for pgkeep: real PostgreSQL clusters in temporary directories, and the small
//! helpers they need (free ports, directories the server's OS user can write, running commands as
//! that user). Dev-dependency only.
//!
//! Contract:
//! - Nothing here skips: when PostgreSQL is missing or a step fails, the call returns `Err` with a
//!   message that says why (for a server that failed to start, the tail of its log), and the test
//!   that asked fails with it.
//! - PostgreSQL refuses to run as root. When the tests run as root (euid 0), every server-side
//!   command (`initdb`, `pg_ctl`, the server itself, and therefore `archive_command`) runs as an
//!   unprivileged OS user — `pgtest`, or the name in `PGKEEP_TEST_PGUSER` — created with
//!   `useradd --create-home` when missing, through `runuser -u <user> --`. Directories made by
//!   [`TempDir`] are owned by that user, so both it and root (which can read and write anything)
//!   can use them. When the tests do not run as root, everything runs as the current user.
//! - Ownership rule for tests of the pgkeep binary: the data directory belongs to the cluster's
//!   OS user; pgkeep run by the test as root can read it, but `archive_command` runs pgkeep as the
//!   OS user, so any repository or spool directory it writes must be writable by that user. The
//!   simplest way to keep this true is to run every pgkeep command of a test as the cluster's
//!   owner ([`PgCluster::run_as_owner`] / [`as_owner`]) — as pgBackRest runs in production — or to
//!   hand a tree back to that user with [`give_to_pg_user`] after running pgkeep as root.
//! - Everything is unique per call (temporary directories, ports), so tests may run in parallel.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

mod pg_cluster;

pub use pg_cluster::{PgCluster, PgClusterOptions, find_bin_dir};

/// The OS user that runs PostgreSQL when the tests run as root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgUser {
    /// Login name.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Numeric primary group id.
    pub gid: u32,
}

/// Default name of the unprivileged OS user.
pub const DEFAULT_PG_USER: &str = "pgtest";

/// The unprivileged user servers run as, or `None` when the tests are not root (servers then
/// run as the current user). Creates the user on first use if it does not exist.
pub fn pg_user() -> Result<Option<PgUser>, String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    static USER: OnceLock<Result<PgUser, String>> = OnceLock::new();
    USER.get_or_init(|| {
        let name =
            std::env::var("PGKEEP_TEST_PGUSER").unwrap_or_else(|_| DEFAULT_PG_USER.to_string());
        ensure_user(&name)
    })
    .clone()
    .map(Some)
}

fn lookup_user(name: &str) -> Result<Option<PgUser>, String> {
    let user = nix::unistd::User::from_name(name)
        .map_err(|e| format!("unable to look up OS user '{name}': {e}"))?;
    Ok(user.map(|u| PgUser {
        name: name.to_string(),
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
    }))
}

fn ensure_user(name: &str) -> Result<PgUser, String> {
    if let Some(user) = lookup_user(name)? {
        return Ok(user);
    }
    let output = Command::new("useradd")
        .args(["--create-home", "--shell", "/bin/sh", name])
        .output()
        .map_err(|e| format!("unable to run useradd to create OS user '{name}': {e}"))?;
    // another test process may have created it meanwhile: look again before failing
    match lookup_user(name)? {
        Some(user) => Ok(user),
        None => Err(format!(
            "unable to create OS user '{name}' with useradd ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

/// Rewrites `cmd` so it runs as the servers' OS user (`runuser -u <user> -- <program> <args>`,
/// keeping environment changes and the working directory); an unchanged copy when not root.
pub fn as_owner(cmd: &Command) -> Result<Command, String> {
    let mut out = match pg_user()? {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", &user.name, "--"]).arg(cmd.get_program());
            c
        }
        None => Command::new(cmd.get_program()),
    };
    out.args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => out.env(key, value),
            None => out.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        out.current_dir(dir);
    }
    Ok(out)
}

/// Runs `cmd` as the servers' OS user and returns its output (whatever its exit status).
pub fn run_as_owner(cmd: &Command) -> Result<Output, String> {
    let mut owned = as_owner(cmd)?;
    owned
        .output()
        .map_err(|e| format!("unable to run {:?}: {e}", cmd.get_program()))
}

/// Gives `path` and everything below it (symlinks not followed) to the servers' OS user;
/// nothing to do when not root.
pub fn give_to_pg_user(path: &Path) -> Result<(), String> {
    let Some(user) = pg_user()? else {
        return Ok(());
    };
    chown_tree(path, user.uid, user.gid)
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| format!("unable to chown '{}': {e}", path.display()))?;
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| format!("unable to stat '{}': {e}", path.display()))?;
    if meta.is_dir() {
        let entries = std::fs::read_dir(path)
            .map_err(|e| format!("unable to list '{}': {e}", path.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("unable to list '{}': {e}", path.display()))?;
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// A free TCP port on 127.0.0.1, never handed out twice by this process.
///
/// The port is free when returned but not reserved; [`PgCluster::start`] retries with a new
/// port if the server still loses a race for it.
pub fn free_port() -> Result<u16, String> {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("unable to bind a TCP port on 127.0.0.1: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("unable to read the bound TCP port: {e}"))?
            .port();
        let mut set = given
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if set.insert(port) {
            return Ok(port);
        }
    }
    Err("unable to find a free TCP port on 127.0.0.1 after 100 tries".to_string())
}

/// A temporary directory (removed on drop) owned by the servers' OS user, so both that user and
/// the test can write in it.
#[derive(Debug)]
pub struct TempDir {
    inner: tempfile::TempDir,
}

impl TempDir {
    /// Creates `<tmp>/pgkeep-test-XXXXXX`.
    pub fn new() -> Result<TempDir, String> {
        let inner = tempfile::Builder::new()
            .prefix("pgkeep-test-")
            .tempdir()
            .map_err(|e| format!("unable to create a temporary directory: {e}"))?;
        give_to_pg_user(inner.path())?;
        Ok(TempDir { inner })
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.inner.path()
    }

    /// Creates (with parents) `name` inside, owned by the servers' OS user.
    pub fn subdir(&self, name: &str) -> Result<PathBuf, String> {
        let path = self.inner.path().join(name);
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("unable to create '{}': {e}", path.display()))?;
        give_to_pg_user(self.inner.path())?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_unique() {
        let a = free_port().unwrap();
        let b = free_port().unwrap();
        assert_ne!(a, b);
        // a process spawned at this moment by a parallel test briefly holds a copy of the closed
        // listener (between fork and exec), so allow a short wait before the port is bindable
        let bindable = (0..50).any(|_| {
            TcpListener::bind(("127.0.0.1", a)).is_ok() || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                false
            }
        });
        assert!(bindable, "port {a} never became bindable");
    }

    #[test]
    fn temp_dirs_belong_to_the_pg_user() {
        use std::os::unix::fs::MetadataExt;
        let dir = TempDir::new().unwrap();
        let sub = dir.subdir("a/b").unwrap();
        let meta = std::fs::metadata(&sub).unwrap();
        match pg_user().unwrap() {
            Some(user) => assert_eq!(meta.uid(), user.uid),
            None => assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw()),
        }
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn as_owner_keeps_args_env_and_dir() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo \"$PGKEEP_X\"; id -u; pwd"])
            .env("PGKEEP_X", "hello")
            .current_dir("/");
        let out = run_as_owner(&cmd).unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "hello");
        let uid: u32 = lines[1].parse().unwrap();
        match pg_user().unwrap() {
            Some(user) => assert_eq!(uid, user.uid),
            None => assert_eq!(uid, nix::unistd::geteuid().as_raw()),
        }
        assert_eq!(lines[2], "/");
    }
}
