//! End-to-end tests of the `pgkeep` binary against real PostgreSQL clusters and the real
//! `pgbackrest` 2.45 binary (installed by `scripts/install-deps.sh`).
//!
//! Every command runs as the cluster's OS user, as it would in production (PostgreSQL's
//! `archive_command` runs as that user, so the repository belongs to it). A test whose cluster or
//! tool cannot start fails with the reason; nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pgkeep_testkit::{PgCluster, PgClusterOptions, TempDir, run_as_owner};

const PGKEEP: &str = env!("CARGO_BIN_EXE_pgkeep");

/// A cluster plus a pgBackRest-style config file and repository in a temp dir.
struct Site {
    cluster: PgCluster,
    dir: TempDir,
    conf: PathBuf,
}

impl Site {
    /// Start a cluster whose `archive_command` is `archive_with` (`pgbackrest` or none) and write
    /// a config file with one repository.
    fn new(archive_with: Option<&str>) -> Site {
        let dir = TempDir::new().expect("temp dir");
        let conf = dir.path().join("pgbackrest.conf");
        let archive_command =
            archive_with.map(|tool| format!("{tool} --config={} --stanza=demo archive-push %p", conf.display()));
        let cluster = PgCluster::start(PgClusterOptions {
            archive_mode: archive_command.as_ref().map(|_| "on".to_string()),
            archive_command,
            ..PgClusterOptions::default()
        })
        .unwrap_or_else(|e| panic!("PostgreSQL could not start: {e}"));
        let site = Site { cluster, dir, conf };
        site.write_conf("");
        site
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn write_conf(&self, extra_global: &str) {
        let text = format!(
            "[global]\nrepo1-path={repo}\nlock-path={base}/lock\nlog-path={base}/log\nlog-level-file=off\nstart-fast=y\narchive-timeout=30\n{extra_global}\n[demo]\npg1-path={data}\npg1-socket-path={sock}\npg1-port={port}\npg1-user=postgres\n",
            repo = self.repo().display(),
            base = self.dir.path().display(),
            data = self.cluster.data_dir().display(),
            sock = self.cluster.socket_dir().display(),
            port = self.cluster.port(),
        );
        std::fs::write(&self.conf, text).expect("write config");
        pgkeep_testkit::give_to_pg_user(&self.conf).expect("chown config");
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(tool);
        cmd.arg(format!("--config={}", self.conf.display())).args(args);
        run_as_owner(&cmd).unwrap_or_else(|e| panic!("unable to run {tool} {args:?}: {e}"))
    }

    /// Run and require success; returns stdout.
    fn ok(&self, tool: &str, args: &[&str]) -> String {
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
    fn fails(&self, tool: &str, args: &[&str], code: i32) -> String {
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

fn read_tree(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn pgbackrest_backups_are_reported_identically_by_pgkeep_info() {
    let site = Site::new(Some("pgbackrest"));
    site.ok("pgbackrest", &["--stanza=demo", "stanza-create"]);
    site.ok("pgbackrest", &["--stanza=demo", "--type=full", "backup"]);
    site.cluster.psql("create table t as select generate_series(1, 10000) as i").expect("load data");
    site.ok("pgbackrest", &["--stanza=demo", "--type=incr", "backup"]);

    for args in [
        vec!["--stanza=demo", "info", "--output=json"],
        vec!["--stanza=demo", "info"],
        vec!["info", "--output=json"],
        vec!["info"],
    ] {
        let theirs = site.ok("pgbackrest", &args);
        let ours = site.ok(PGKEEP, &args);
        assert_eq!(ours, theirs, "pgkeep {args:?} differs from pgbackrest");
    }

    // --set on the incremental backup: database list, references, sizes
    let json = site.ok("pgbackrest", &["--stanza=demo", "info", "--output=json"]);
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("pgbackrest json");
    let label = parsed[0]["backup"][1]["label"].as_str().expect("incr label").to_string();
    assert!(label.ends_with('I'), "{label}");
    for args in [
        vec!["--stanza=demo", "info", "--output=json", "--set", label.as_str()],
        vec!["--stanza=demo", "info", "--set", label.as_str()],
    ] {
        assert_eq!(site.ok(PGKEEP, &args), site.ok("pgbackrest", &args), "pgkeep {args:?} differs");
    }
}

#[test]
fn stanza_created_by_pgkeep_is_used_by_pgbackrest() {
    let site = Site::new(Some("pgbackrest"));
    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    // idempotent
    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    assert_eq!(
        site.ok(PGKEEP, &["--stanza=demo", "info", "--output=json"]),
        site.ok("pgbackrest", &["--stanza=demo", "info", "--output=json"])
    );
    // pgBackRest accepts the info files pgkeep wrote: it checks the stanza and backs up into it
    site.ok("pgbackrest", &["--stanza=demo", "check"]);
    site.ok("pgbackrest", &["--stanza=demo", "--type=full", "backup"]);
    let text = site.ok(PGKEEP, &["--stanza=demo", "info"]);
    assert!(text.contains("full backup: "), "{text}");
    assert_eq!(text, site.ok("pgbackrest", &["--stanza=demo", "info"]));
}

#[test]
fn stop_and_start_are_shared_with_pgbackrest() {
    let site = Site::new(None);
    site.ok(PGKEEP, &["--stanza=demo", "stop"]);
    let stderr = site.fails("pgbackrest", &["--stanza=demo", "stanza-create"], 62);
    assert!(stderr.contains("stop file exists for stanza demo"), "{stderr}");
    let stderr = site.fails(PGKEEP, &["--stanza=demo", "stanza-create"], 62);
    assert_eq!(stderr, "ERROR: [062]: stop file exists for stanza demo\n");
    // a second stop warns and succeeds
    let out = site.run(PGKEEP, &["--stanza=demo", "stop"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "WARN: stop file already exists for stanza demo\n");
    site.ok(PGKEEP, &["--stanza=demo", "start"]);
    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    assert!(site.repo().join("archive/demo/archive.info").exists());
}

#[test]
fn stanza_create_refuses_another_cluster_and_leaves_the_repository_unchanged() {
    let first = Site::new(None);
    first.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    let before = read_tree(&first.repo());

    // a second cluster (another system id) pointed at the same repository
    let second = Site::new(None);
    let text = std::fs::read_to_string(&second.conf).expect("conf");
    let text = text.replace(&second.repo().display().to_string(), &first.repo().display().to_string());
    std::fs::write(&second.conf, text).expect("conf");
    let stderr = second.fails(PGKEEP, &["--stanza=demo", "stanza-create"], 28);
    assert!(stderr.starts_with("ERROR: [028]: backup and archive info files exist but do not match the database\n"), "{stderr}");
    assert!(stderr.contains("HINT: is this the correct stanza?"), "{stderr}");
    assert_eq!(read_tree(&first.repo()), before, "repository changed by a refused stanza-create");
}

#[test]
fn stanza_upgrade_adds_history_after_a_new_cluster_and_delete_removes_the_stanza() {
    let first = Site::new(None);
    first.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    let out = first.ok(PGKEEP, &["--stanza=demo", "stanza-upgrade", "--log-level-console=info"]);
    assert!(out.contains("stanza 'demo' on repo1 is already up to date"), "{out}");

    // the "upgraded" cluster: another system id at the same path is what pg_upgrade yields
    let second = Site::new(None);
    let text = std::fs::read_to_string(&second.conf).expect("conf");
    std::fs::write(&second.conf, text.replace(&second.repo().display().to_string(), &first.repo().display().to_string()))
        .expect("conf");
    second.ok(PGKEEP, &["--stanza=demo", "stanza-upgrade"]);
    let info = std::fs::read_to_string(first.repo().join("archive/demo/archive.info")).expect("archive.info");
    assert!(info.contains("db-id=2"), "{info}");
    assert!(info.contains("\n2={\"db-id\":"), "{info}");
    // pgBackRest reads the upgraded stanza the same way
    assert_eq!(
        second.ok(PGKEEP, &["--stanza=demo", "info", "--output=json"]),
        second.ok("pgbackrest", &["--stanza=demo", "info", "--output=json"])
    );

    // delete needs a stop first, and a stopped cluster (or --force)
    let stderr = second.fails(PGKEEP, &["--stanza=demo", "stanza-delete"], 55);
    assert!(stderr.contains("stop file does not exist for stanza 'demo'"), "{stderr}");
    second.ok(PGKEEP, &["--stanza=demo", "stop"]);
    let stderr = second.fails(PGKEEP, &["--stanza=demo", "stanza-delete"], 38);
    assert!(stderr.contains("postmaster.pid exists - looks like PostgreSQL is running"), "{stderr}");
    second.ok(PGKEEP, &["--stanza=demo", "stanza-delete", "--force"]);
    assert!(!first.repo().join("archive/demo").exists());
    assert!(!first.repo().join("backup/demo").exists());
}

#[test]
fn bad_input_gets_one_line_errors_with_pgbackrest_codes() {
    let site = Site::new(None);
    // a value outside the allowed set
    let stderr = site.fails(PGKEEP, &["--stanza=demo", "--type=weekly", "backup"], 32);
    assert_eq!(stderr, "ERROR: [032]: 'weekly' is not allowed for 'type' option\n");
    // unknown option and command
    let stderr = site.fails(PGKEEP, &["--bogus", "info"], 31);
    assert_eq!(stderr, "ERROR: [031]: invalid option '--bogus'\n");
    let stderr = site.fails(PGKEEP, &["bogus"], 48);
    assert_eq!(stderr, "ERROR: [048]: invalid command 'bogus'\n");
    // a config file named but missing
    let out = Command::new(PGKEEP).args(["--config=/nonexistent/pgkeep.conf", "info"]).output().expect("run");
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/pgkeep.conf"));
    // a cluster that is not running
    let mut stopped = Site::new(None);
    stopped.cluster.stop().expect("stop cluster");
    let stderr = stopped.fails(PGKEEP, &["--stanza=demo", "stanza-create"], 56);
    assert!(stderr.contains("unable to find primary cluster - cannot proceed"), "{stderr}");
    assert!(!stopped.repo().join("archive").exists(), "nothing may be written");
    // a repository path that is not writable
    site.write_conf("repo1-path=/proc/pgkeep-repo");
    let out = site.run(PGKEEP, &["--stanza=demo", "stanza-create"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("ERROR: ["), "{stderr}");
    assert!(stderr.contains("/proc/pgkeep-repo"), "{stderr}");
    // a tampered info file: checksum error naming the file, both copies checked
    let good = Site::new(None);
    good.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    for name in ["backup.info", "backup.info.copy"] {
        let path = good.repo().join("backup/demo").join(name);
        let text = std::fs::read_to_string(&path).expect("backup.info");
        std::fs::write(&path, text.replace("db-id=1", "db-id=7")).expect("tamper");
    }
    let stderr = good.fails(PGKEEP, &["--stanza=demo", "stanza-create"], 26);
    assert!(stderr.contains("backup.info"), "{stderr}");
    assert!(stderr.contains("invalid checksum"), "{stderr}");
}
