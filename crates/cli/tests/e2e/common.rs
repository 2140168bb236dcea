//! Shared fixtures of the end-to-end tests: a real cluster with a pgBackRest-style config file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pgkeep_testkit::{PgCluster, PgClusterOptions, TempDir, run_as_owner};

pub const PGKEEP: &str = env!("CARGO_BIN_EXE_pgkeep");

/// A cluster plus a pgBackRest-style config file and repository in a temp dir.
pub struct Site {
    pub cluster: PgCluster,
    pub dir: TempDir,
    pub conf: PathBuf,
}

impl Site {
    /// Start a cluster whose `archive_command` is `archive_with` (`pgbackrest` or none) and write
    /// a config file with one repository.
    pub fn new(archive_with: Option<&str>) -> Site {
        Site::with_options(PgClusterOptions::default(), archive_with)
    }

    /// [`Site::new`] on PostgreSQL `major` (binaries found by `pgkeep_testkit::find_bin_dir`,
    /// e.g. `/opt/pgbin/<major>/bin`); fails the test, saying where it looked, when they are
    /// missing.
    pub fn with_major(major: u32, archive_with: Option<&str>) -> Site {
        Site::with_options(
            PgClusterOptions {
                major: Some(major),
                ..PgClusterOptions::default()
            },
            archive_with,
        )
    }

    /// [`Site::new`] with a cluster built from `options` (major, `initdb` arguments, settings);
    /// the archive settings are this site's.
    pub fn with_options(options: PgClusterOptions, archive_with: Option<&str>) -> Site {
        let major = options.major;
        let dir = TempDir::new().expect("temp dir");
        let conf = dir.path().join("pgbackrest.conf");
        let archive_command = archive_with.map(|tool| {
            format!(
                "{tool} --config={} --stanza=demo archive-push %p",
                conf.display()
            )
        });
        let cluster = PgCluster::start(PgClusterOptions {
            archive_mode: archive_command.as_ref().map(|_| "on".to_string()),
            archive_command,
            ..options
        })
        .unwrap_or_else(|e| match major {
            Some(m) => panic!(
                "PostgreSQL {m} could not start: {e}\n(scripts/install-deps.sh installs majors 10 to 18 into /opt/pgbin)"
            ),
            None => panic!("PostgreSQL could not start: {e}"),
        });
        let site = Site { cluster, dir, conf };
        site.write_conf("");
        site
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn write_conf(&self, extra_global: &str) {
        self.write_conf_stanza(extra_global, "");
    }

    /// Like [`Site::write_conf`], with `extra_stanza` lines appended to the `[demo]` section
    /// (stanza-only options such as `pg2-path`).
    pub fn write_conf_stanza(&self, extra_global: &str, extra_stanza: &str) {
        let text = format!(
            "[global]\nrepo1-path={repo}\nlock-path={base}/lock\nlog-path={base}/log\nlog-level-file=off\nstart-fast=y\narchive-timeout=30\n{extra_global}\n[demo]\npg1-path={data}\npg1-socket-path={sock}\npg1-port={port}\npg1-user=postgres\n{extra_stanza}",
            repo = self.repo().display(),
            base = self.dir.path().display(),
            data = self.cluster.data_dir().display(),
            sock = self.cluster.socket_dir().display(),
            port = self.cluster.port(),
        );
        std::fs::write(&self.conf, text).expect("write config");
        pgkeep_testkit::give_to_pg_user(&self.conf).expect("chown config");
    }

    pub fn run(&self, tool: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(tool);
        cmd.arg(format!("--config={}", self.conf.display()))
            .args(args);
        run_as_owner(&cmd).unwrap_or_else(|e| panic!("unable to run {tool} {args:?}: {e}"))
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, tool: &str, args: &[&str]) -> String {
        let out = self.run(tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run and require failure with `code`; returns stderr.
    pub fn fails(&self, tool: &str, args: &[&str], code: i32) -> String {
        let out = self.run(tool, args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{tool} {args:?}: expected exit {code}\nstdout: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }
}

/// Every file (not directory) below `root`, sorted; unreadable directories are passed over.
pub fn files_below(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

pub fn read_tree(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = files_below(path)
        .into_iter()
        .map(|p| {
            let content = std::fs::read(&p).unwrap_or_default();
            (p.display().to_string(), content)
        })
        .collect();
    out.sort();
    out
}

/// A query's one-value result; the test fails with the server log tail when it fails.
pub fn sql(cluster: &PgCluster, query: &str) -> String {
    cluster
        .psql(query)
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_tail(30)))
}

/// Keys of table `t`, in order, comma separated.
pub fn keys(cluster: &PgCluster) -> String {
    sql(
        cluster,
        "select coalesce(string_agg(i::text, ',' order by i), '') from t",
    )
}

/// Switch WAL and wait until the closed segment is archived.
pub fn archive_now(cluster: &PgCluster) {
    let segment = sql(cluster, "select pg_walfile_name(pg_switch_wal())");
    let begin = Instant::now();
    loop {
        let last = sql(
            cluster,
            "select coalesce(last_archived_wal, '') from pg_stat_archiver",
        );
        if last >= segment {
            return;
        }
        assert!(
            begin.elapsed() < Duration::from_secs(60),
            "{segment} not archived\n{}",
            cluster.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
