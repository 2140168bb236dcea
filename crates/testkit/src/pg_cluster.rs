//! A real PostgreSQL cluster in a temporary directory, for tests.
//!
//! Contract:
//! - [`PgCluster::start`] picks the binaries ([`find_bin_dir`]), runs
//!   `initdb -k -U postgres -A trust -E UTF8 --locale=C -N`, configures a Unix socket in its own
//!   temporary directory plus a free TCP port on 127.0.0.1, `wal_level = replica`, the options'
//!   archive settings and extra settings (later lines win, so extras override the defaults), and
//!   starts the server with `pg_ctl -w`. A failed start is retried on a new port when the port was
//!   taken by someone else meanwhile.
//! - Layout: `<tmp>/pgkeep-test-XXXXXX/{data,socket,server.log}`, owned by the servers' OS user.
//! - Dropping the cluster always stops the server (`pg_ctl stop -m immediate`, then SIGKILL of
//!   the postmaster named in *this* data directory's `postmaster.pid` if that failed) and removes
//!   the directory.
//! - `pg_ctl` daemonizes the postmaster. So that a stopped server does not linger as a zombie
//!   (some sandboxes' PID 1 never reaps orphans), the test process marks itself a child subreaper
//!   on the first start, adopts the postmasters and reaps each one by pid after stopping it.
//! - Every error message says what failed; start failures end with the tail of the server log.
//! - [`PgCluster::adopt`] starts an existing data directory (a restored one) on a free port with
//!   its own socket directory, passed as server options so the directory's configuration is not
//!   edited; drop stops it and leaves the data directory in place.
//! - [`PgCluster::start_standby`] makes a streaming standby of a running cluster
//!   (`pg_basebackup -R -X stream -c fast` as the servers' OS user, each tablespace mapped into the
//!   standby's own directory) and starts it like an adopted cluster, on its own free port and
//!   socket directory. Drop stops it and removes its directory, as for [`PgCluster::start`].

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::{PgUser, TempDir, as_owner, free_port, pg_user};

/// How to build the cluster. `Default` gives the machine's default PostgreSQL with archiving off.
#[derive(Debug, Clone, Default)]
pub struct PgClusterOptions {
    /// Major to run; `None` takes the default binaries (see [`find_bin_dir`]).
    pub major: Option<u32>,
    /// Explicit binary directory (wins over `major` and the environment).
    pub bin_dir: Option<PathBuf>,
    /// `archive_mode` (`on`, `always`, `off`); unset leaves the server default (`off`).
    pub archive_mode: Option<String>,
    /// `archive_command`; `%p`/`%f` are expanded by PostgreSQL as usual.
    pub archive_command: Option<String>,
    /// Extra `postgresql.conf` settings, written last (values are quoted for you).
    pub settings: Vec<(String, String)>,
    /// Extra `initdb` arguments, e.g. `--wal-segsize=64`.
    pub initdb_args: Vec<String>,
}

/// A running (until dropped) test cluster.
#[derive(Debug)]
pub struct PgCluster {
    dir: TempDir,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    bin_dir: PathBuf,
    major: u32,
    user: Option<PgUser>,
    running: bool,
    /// Server options passed with `pg_ctl -o` (adopted clusters: port, socket, overrides).
    server_args: Vec<String>,
}

const SERVER_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
const START_TRIES: usize = 5;
const LOG_TAIL_LINES: usize = 30;

fn has_binaries(dir: &Path) -> bool {
    SERVER_BINARIES.iter().all(|b| dir.join(b).is_file())
}

/// Where the PostgreSQL server binaries are.
///
/// With a `major`: `$PGKEEP_TEST_PGBIN_<major>`, `$PGKEEP_TEST_PGPREFIX/<major>/bin`,
/// `/opt/pgbin/<major>/bin` (the layout of `install-pg-versions.sh`), `/usr/lib/postgresql/<major>/bin`.
/// Without: `$PGKEEP_TEST_PGBIN`, `/usr/lib/postgresql/15/bin`, `pg_config --bindir`.
/// The first directory holding `initdb`, `pg_ctl` and `postgres` wins.
pub fn find_bin_dir(major: Option<u32>) -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    match major {
        Some(m) => {
            if let Ok(dir) = std::env::var(format!("PGKEEP_TEST_PGBIN_{m}")) {
                candidates.push(dir.into());
            }
            if let Ok(prefix) = std::env::var("PGKEEP_TEST_PGPREFIX") {
                candidates.push(Path::new(&prefix).join(m.to_string()).join("bin"));
            }
            candidates.push(format!("/opt/pgbin/{m}/bin").into());
            candidates.push(format!("/usr/lib/postgresql/{m}/bin").into());
        }
        None => {
            if let Ok(dir) = std::env::var("PGKEEP_TEST_PGBIN") {
                candidates.push(dir.into());
            }
            candidates.push("/usr/lib/postgresql/15/bin".into());
            if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
                && out.status.success()
            {
                candidates.push(String::from_utf8_lossy(&out.stdout).trim().into());
            }
        }
    }
    candidates
        .iter()
        .find(|dir| has_binaries(dir))
        .cloned()
        .ok_or_else(|| {
            let tried: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
            format!(
                "PostgreSQL{} server binaries (initdb, pg_ctl, postgres) not found; tried: {}",
                major.map(|m| format!(" {m}")).unwrap_or_default(),
                tried.join(", ")
            )
        })
}

/// Major version reported by `postgres --version` (`postgres (PostgreSQL) 15.18 ...` → 15).
fn binary_major(bin_dir: &Path) -> Result<u32, String> {
    let postgres = bin_dir.join("postgres");
    let out = Command::new(&postgres)
        .arg("--version")
        .output()
        .map_err(|e| format!("unable to run '{} --version': {e}", postgres.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split("(PostgreSQL)")
        .nth(1)
        .and_then(|rest| rest.trim().split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| {
            format!(
                "unable to read the version from '{} --version': {}",
                postgres.display(),
                text.trim()
            )
        })
}

fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn describe(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !stdout.trim().is_empty() {
        if !text.is_empty() {
            text.push_str(" | ");
        }
        text.push_str(stdout.trim());
    }
    format!("{} ({})", text, output.status)
}

impl PgCluster {
    /// Creates and starts a cluster (see the module contract).
    pub fn start(opts: PgClusterOptions) -> Result<PgCluster, String> {
        let bin_dir = match &opts.bin_dir {
            Some(dir) if has_binaries(dir) => dir.clone(),
            Some(dir) => {
                return Err(format!(
                    "'{}' does not hold initdb, pg_ctl and postgres",
                    dir.display()
                ));
            }
            None => find_bin_dir(opts.major)?,
        };
        let major = binary_major(&bin_dir)?;
        if let Some(wanted) = opts.major
            && wanted != major
        {
            return Err(format!(
                "'{}' holds PostgreSQL {major}, not {wanted}",
                bin_dir.display()
            ));
        }
        let user = pg_user()?;
        adopt_orphans();
        let dir = TempDir::new()?;
        let socket_dir = dir.subdir("socket")?;
        let data_dir = dir.path().join("data");
        let log_file = dir.path().join("server.log");
        let mut cluster = PgCluster {
            port: free_port()?,
            dir,
            data_dir,
            socket_dir,
            log_file,
            bin_dir,
            major,
            user,
            running: false,
            server_args: Vec::new(),
        };

        let mut initdb = Command::new(cluster.bin_dir.join("initdb"));
        initdb
            .args(["-k", "-U", "postgres", "-A", "trust", "-E", "UTF8"])
            .args(["--locale=C", "-N", "-D"])
            .arg(&cluster.data_dir)
            .args(&opts.initdb_args);
        cluster.run_checked(&initdb, "initdb")?;

        cluster.write_config(&opts)?;
        let mut last_error = String::new();
        for _ in 0..START_TRIES {
            match cluster.pg_ctl_start() {
                Ok(()) => return Ok(cluster),
                Err(e) => {
                    let log = cluster.log_tail(LOG_TAIL_LINES);
                    last_error = e;
                    if !log.contains("could not bind")
                        && !log.contains("could not create any TCP/IP sockets")
                    {
                        break;
                    }
                    cluster.port = free_port()?;
                    cluster.append_config(&format!("port = {}\n", cluster.port))?;
                }
            }
        }
        Err(last_error)
    }

    /// Starts an existing data directory (a restored one, say) with the default binaries on a
    /// free port and its own socket directory, given on the server command line so the
    /// directory's own `postgresql.conf` is not touched. `settings` are further `-c` overrides
    /// (e.g. `archive_mode=off`); values must not contain spaces or quotes. Dropping the
    /// cluster stops the server but leaves the data directory to its owner; only the socket
    /// directory and log are removed.
    pub fn adopt(data_dir: &Path, settings: &[(&str, &str)]) -> Result<PgCluster, String> {
        let bin_dir = find_bin_dir(None)?;
        let major = binary_major(&bin_dir)?;
        let user = pg_user()?;
        adopt_orphans();
        let dir = TempDir::new()?;
        let socket_dir = dir.subdir("socket")?;
        let log_file = dir.path().join("server.log");
        let mut cluster = PgCluster {
            port: free_port()?,
            dir,
            data_dir: data_dir.to_path_buf(),
            socket_dir,
            log_file,
            bin_dir,
            major,
            user,
            running: false,
            server_args: Vec::new(),
        };
        cluster.start_with_args(settings)?;
        Ok(cluster)
    }

    /// Makes a streaming standby of this running cluster and starts it (see the module
    /// contract). `settings` are server `-c` overrides as for [`PgCluster::adopt`]. The standby
    /// replicates over this cluster's Unix socket as `postgres`, so this cluster must keep
    /// running while the standby is used.
    pub fn start_standby(&self, settings: &[(&str, &str)]) -> Result<PgCluster, String> {
        if !self.running {
            return Err("a standby needs a running primary".to_string());
        }
        adopt_orphans();
        let dir = TempDir::new()?;
        let socket_dir = dir.subdir("socket")?;
        let log_file = dir.path().join("server.log");
        let data_dir = dir.path().join("data");
        let mut mappings = Vec::new();
        let tablespaces = self.psql(
            "select oid, pg_tablespace_location(oid) from pg_tablespace where spcname not in ('pg_default', 'pg_global') order by oid",
        )?;
        for line in tablespaces.lines().filter(|l| !l.is_empty()) {
            let (oid, location) = line
                .split_once('|')
                .ok_or_else(|| format!("unexpected tablespace row '{line}'"))?;
            let target = dir.subdir(&format!("tblspc/{oid}"))?;
            mappings.push(format!(
                "--tablespace-mapping={location}={}",
                target.display()
            ));
        }
        let mut cluster = PgCluster {
            port: free_port()?,
            dir,
            data_dir,
            socket_dir,
            log_file,
            bin_dir: self.bin_dir.clone(),
            major: self.major,
            user: self.user.clone(),
            running: false,
            server_args: Vec::new(),
        };
        let mut basebackup = Command::new(self.bin_dir.join("pg_basebackup"));
        basebackup
            .arg("-D")
            .arg(&cluster.data_dir)
            .args(["-R", "-X", "stream", "-c", "fast", "-U", "postgres", "-h"])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string()])
            .args(&mappings);
        cluster.run_checked(&basebackup, "pg_basebackup")?;
        cluster.start_with_args(settings)?;
        Ok(cluster)
    }

    /// Waits until this standby has replayed everything `primary` has written so far.
    pub fn wait_replay(&self, primary: &PgCluster, timeout: Duration) -> Result<(), String> {
        let target = primary.psql("select pg_current_wal_lsn()")?;
        let begin = std::time::Instant::now();
        loop {
            let reached = self.psql(&format!(
                "select coalesce(pg_last_wal_replay_lsn() >= '{target}', false)"
            ))?;
            if reached == "t" {
                return Ok(());
            }
            if begin.elapsed() > timeout {
                return Err(format!(
                    "standby did not replay to {target} within {timeout:?}\n--- tail of {} ---\n{}",
                    self.log_file.display(),
                    self.log_tail(LOG_TAIL_LINES)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the data directory with port, socket directory and `settings` on the server
    /// command line, retrying on a new port when the port was taken meanwhile.
    fn start_with_args(&mut self, settings: &[(&str, &str)]) -> Result<(), String> {
        let mut last_error = String::new();
        for _ in 0..START_TRIES {
            let mut args = vec![
                format!("-p {}", self.port),
                format!("-k {}", self.socket_dir.display()),
                "-c listen_addresses=127.0.0.1".to_string(),
            ];
            for (key, value) in settings {
                args.push(format!("-c {key}={value}"));
            }
            self.server_args = args;
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let log = self.log_tail(LOG_TAIL_LINES);
                    last_error = e;
                    if !log.contains("could not bind")
                        && !log.contains("could not create any TCP/IP sockets")
                    {
                        break;
                    }
                    self.port = free_port()?;
                }
            }
        }
        Err(last_error)
    }

    /// Runs a command as the owner in the cluster's directory; error unless it succeeds.
    fn run_checked(&self, cmd: &Command, what: &str) -> Result<Output, String> {
        let mut cmd = as_owner(cmd)?;
        if cmd.get_current_dir().is_none() {
            cmd.current_dir(self.dir.path());
        }
        let out = cmd
            .output()
            .map_err(|e| format!("unable to run {what}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{what} failed: {}", describe(&out)));
        }
        Ok(out)
    }

    fn append_config(&self, text: &str) -> Result<(), String> {
        use std::io::Write;
        let path = self.data_dir.join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| format!("unable to open '{}': {e}", path.display()))?;
        file.write_all(text.as_bytes())
            .map_err(|e| format!("unable to write '{}': {e}", path.display()))
    }

    fn write_config(&self, opts: &PgClusterOptions) -> Result<(), String> {
        let mut conf = String::from("\n# pgkeep-testkit\n");
        let mut set = |key: &str, value: &str| {
            conf.push_str(&format!("{key} = {}\n", conf_quote(value)));
        };
        set("listen_addresses", "127.0.0.1");
        set("port", &self.port.to_string());
        set(
            "unix_socket_directories",
            &self.socket_dir.display().to_string(),
        );
        set("wal_level", "replica");
        set("max_connections", "20");
        set("shared_buffers", "16MB");
        set("fsync", "off");
        set("logging_collector", "off");
        if let Some(mode) = &opts.archive_mode {
            set("archive_mode", mode);
        }
        if let Some(command) = &opts.archive_command {
            set("archive_command", command);
        }
        for (key, value) in &opts.settings {
            set(key, value);
        }
        self.append_config(&conf)
    }

    fn pg_ctl_start(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(self.bin_dir.join("pg_ctl"));
        cmd.args(["start", "-w", "-t", "60", "-D"])
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file);
        if !self.server_args.is_empty() {
            cmd.arg("-o").arg(self.server_args.join(" "));
        }
        match self.run_checked(&cmd, "pg_ctl start") {
            Ok(_) => {
                self.running = true;
                Ok(())
            }
            Err(e) => Err(format!(
                "{e}\n--- tail of {} ---\n{}",
                self.log_file.display(),
                self.log_tail(LOG_TAIL_LINES)
            )),
        }
    }

    fn pg_ctl_stop(&mut self, mode: &str) -> Result<(), String> {
        let pid = self.postmaster_pid();
        let mut cmd = Command::new(self.bin_dir.join("pg_ctl"));
        cmd.args(["stop", "-w", "-t", "60", "-m", mode, "-D"])
            .arg(&self.data_dir);
        self.run_checked(&cmd, "pg_ctl stop")?;
        self.running = false;
        if let Some(pid) = pid {
            reap(pid);
        }
        Ok(())
    }

    /// Stops the server (fast shutdown); it can be started again with [`PgCluster::restart`].
    pub fn stop(&mut self) -> Result<(), String> {
        if !self.running {
            return Ok(());
        }
        self.pg_ctl_stop("fast")
    }

    /// Stops the server if it runs, then starts it again (same port and settings).
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop()?;
        self.pg_ctl_start()
    }

    /// Appends settings to `postgresql.conf` (takes effect at the next restart or reload).
    pub fn set_config(&self, settings: &[(&str, &str)]) -> Result<(), String> {
        let mut conf = String::new();
        for (key, value) in settings {
            conf.push_str(&format!("{key} = {}\n", conf_quote(value)));
        }
        self.append_config(&conf)
    }

    /// True between a successful start and a stop.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The data directory (`PGDATA`).
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The Unix socket directory (`pg1-socket-path`).
    #[must_use]
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The TCP port on 127.0.0.1, which also names the socket file.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the server binaries used.
    #[must_use]
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The major version of those binaries.
    #[must_use]
    pub fn version_major(&self) -> u32 {
        self.major
    }

    /// The temporary directory holding everything (data, socket, log).
    #[must_use]
    pub fn base_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log file.
    #[must_use]
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The OS user the server runs as (`None`: the current user).
    #[must_use]
    pub fn os_user(&self) -> Option<&PgUser> {
        self.user.as_ref()
    }

    /// The last `lines` lines of the server log (empty if there is none yet).
    #[must_use]
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Connects as the `postgres` superuser over the Unix socket.
    pub fn connect(&self) -> Result<postgres::Client, String> {
        self.connect_db("postgres")
    }

    /// Connects as `postgres` to database `db` over the Unix socket.
    pub fn connect_db(&self, db: &str) -> Result<postgres::Client, String> {
        postgres::Config::new()
            .host_path(&self.socket_dir)
            .port(self.port)
            .user("postgres")
            .dbname(db)
            .connect_timeout(Duration::from_secs(30))
            .connect(postgres::NoTls)
            .map_err(|e| {
                format!(
                    "unable to connect to the test cluster on '{}' port {}: {e}",
                    self.socket_dir.display(),
                    self.port
                )
            })
    }

    /// Runs SQL (one or more statements) as `postgres` and returns the rows like `psql -At`:
    /// columns separated by `|`, rows by newlines, NULL as an empty string.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let mut client = self.connect()?;
        let messages = client
            .simple_query(sql)
            .map_err(|e| format!("query '{sql}' failed: {e}"))?;
        let mut rows = Vec::new();
        for message in messages {
            if let postgres::SimpleQueryMessage::Row(row) = message {
                let mut cols = Vec::with_capacity(row.len());
                for idx in 0..row.len() {
                    let value = row
                        .try_get(idx)
                        .map_err(|e| format!("query '{sql}' returned an unreadable value: {e}"))?;
                    cols.push(value.unwrap_or("").to_string());
                }
                rows.push(cols.join("|"));
            }
        }
        Ok(rows.join("\n"))
    }

    /// Runs `cmd` as the cluster's OS user (see the crate docs for why) and returns its output,
    /// whatever its exit status.
    pub fn run_as_owner(&self, cmd: &Command) -> Result<Output, String> {
        crate::run_as_owner(cmd)
    }

    /// The postmaster pid recorded in this cluster's `postmaster.pid`, if any.
    fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

/// Makes this process the parent of orphaned descendants (the daemonized postmasters), once.
fn adopt_orphans() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // best effort: without it a stopped postmaster may stay a zombie, which is harmless
        let _ = nix::sys::prctl::set_child_subreaper(true);
    });
}

/// Waits (up to 10 s) for an adopted postmaster that is exiting; no-op if it is not our child.
fn reap(pid: i32) {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let pid = nix::unistd::Pid::from_raw(pid);
    for _ in 0..1000 {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(10)),
            _ => return,
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if !self.running && self.postmaster_pid().is_none() {
            return;
        }
        if self.pg_ctl_stop("immediate").is_err()
            && let Some(pid) = self.postmaster_pid()
            && pid > 0
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            reap(pid);
        }
    }
}
