//! The harness against a real PostgreSQL: start, query, archive, restart, stop on drop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers may fail loudly

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pgkeep_testkit::{PgCluster, PgClusterOptions, TempDir, pg_user};

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True when `pid` exists, zombie or not (the harness reaps the postmasters it stops).
fn process_alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[test]
fn select_one_and_stop_on_drop() {
    let cluster = PgCluster::start(PgClusterOptions::default()).unwrap();
    assert_eq!(cluster.psql("select 1").unwrap(), "1");
    assert_eq!(
        cluster
            .psql("select 1 as a, null::text as b, 'x' as c union all select 2, 'y', 'z'")
            .unwrap(),
        "1||x\n2|y|z"
    );
    assert!(cluster.version_major() >= 10);
    assert_eq!(
        cluster.psql("show server_version_num").unwrap()[..2]
            .parse::<u32>()
            .unwrap(),
        cluster.version_major()
    );
    assert_eq!(cluster.psql("show data_checksums").unwrap(), "on");
    assert_eq!(cluster.psql("show wal_level").unwrap(), "replica");
    assert_eq!(
        cluster.psql("show port").unwrap(),
        cluster.port().to_string()
    );
    // the data directory belongs to the server's OS user
    let meta = std::fs::metadata(cluster.data_dir()).unwrap();
    if let Some(user) = pg_user().unwrap() {
        assert_eq!(meta.uid(), user.uid);
    }
    // TCP works too
    let mut tcp = postgres::Config::new()
        .host("127.0.0.1")
        .port(cluster.port())
        .user("postgres")
        .dbname("postgres")
        .connect(postgres::NoTls)
        .unwrap();
    assert_eq!(tcp.simple_query("select 1").unwrap().len(), 3);
    drop(tcp);
    assert!(cluster.psql("select * from no_such_table").is_err());

    let pid_file = cluster.data_dir().join("postmaster.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let base = cluster.base_dir().to_path_buf();
    drop(cluster);
    // the postmaster is gone and so is the directory
    assert!(!process_alive(pid), "postmaster {pid} still runs");
    assert!(!base.exists());
}

#[test]
fn stop_restart_and_settings() {
    let mut cluster = PgCluster::start(PgClusterOptions {
        settings: vec![("application_name".into(), "it's a test".into())],
        ..PgClusterOptions::default()
    })
    .unwrap();
    assert_eq!(
        cluster.psql("show application_name").unwrap(),
        "it's a test"
    );
    cluster.stop().unwrap();
    assert!(!cluster.is_running());
    assert!(cluster.psql("select 1").is_err());
    cluster.set_config(&[("work_mem", "8MB")]).unwrap();
    cluster.restart().unwrap();
    assert!(cluster.is_running());
    assert_eq!(cluster.psql("show work_mem").unwrap(), "8MB");
}

#[test]
fn archive_command_runs_as_the_owner() {
    let archive = TempDir::new().unwrap();
    let dest = archive.subdir("wal").unwrap();
    let cluster = PgCluster::start(PgClusterOptions {
        archive_mode: Some("on".into()),
        archive_command: Some(format!(
            "cp %p {d}/%f.tmp && mv {d}/%f.tmp {d}/%f",
            d = dest.display()
        )),
        ..PgClusterOptions::default()
    })
    .unwrap();
    let segment = cluster
        .psql(
            "select pg_walfile_name(pg_current_wal_lsn()); \
             create table t(i int); insert into t values (1); select 1 from pg_switch_wal()",
        )
        .unwrap();
    let segment = segment.lines().next().unwrap().to_string();
    let archived = dest.join(&segment);
    wait_for(&format!("{} to be archived", archived.display()), || {
        archived.exists()
    });
    assert_eq!(
        std::fs::metadata(&archived).unwrap().len(),
        16 * 1024 * 1024
    );
    if let Some(user) = pg_user().unwrap() {
        assert_eq!(std::fs::metadata(&archived).unwrap().uid(), user.uid);
    }
}

#[test]
fn run_as_owner_can_read_the_data_directory() {
    let cluster = PgCluster::start(PgClusterOptions::default()).unwrap();
    let mut cmd = Command::new("cat");
    cmd.arg(cluster.data_dir().join("PG_VERSION"));
    let out = cluster.run_as_owner(&cmd).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        cluster.version_major().to_string()
    );
}

#[test]
fn missing_major_fails_with_a_reason() {
    let err = PgCluster::start(PgClusterOptions {
        major: Some(99),
        ..PgClusterOptions::default()
    })
    .unwrap_err();
    assert!(err.contains("PostgreSQL 99 server binaries"), "{err}");
    assert!(err.contains("/usr/lib/postgresql/99/bin"), "{err}");
}

#[test]
fn bad_setting_fails_with_the_server_log() {
    let err = PgCluster::start(PgClusterOptions {
        settings: vec![("no_such_setting_xyz".into(), "1".into())],
        ..PgClusterOptions::default()
    })
    .unwrap_err();
    assert!(err.contains("pg_ctl start failed"), "{err}");
    assert!(err.contains("no_such_setting_xyz"), "{err}");
}

#[test]
fn adopt_starts_a_copied_data_directory_and_leaves_it() {
    let mut source = PgCluster::start(PgClusterOptions::default()).unwrap();
    source
        .psql("create table kept (i int); insert into kept values (42)")
        .unwrap();
    source.stop().unwrap();
    let dir = TempDir::new().unwrap();
    let copy = dir.path().join("copy");
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(source.data_dir()).arg(&copy);
    assert!(pgkeep_testkit::run_as_owner(&cp).unwrap().status.success());

    let adopted = PgCluster::adopt(&copy, &[("archive_mode", "off"), ("work_mem", "7MB")]).unwrap();
    assert_ne!(adopted.port(), source.port());
    assert_eq!(adopted.data_dir(), copy.as_path());
    assert_eq!(adopted.psql("select i from kept").unwrap(), "42");
    assert_eq!(adopted.psql("show work_mem").unwrap(), "7MB");
    assert_eq!(
        adopted.psql("show port").unwrap(),
        adopted.port().to_string()
    );
    // the copy's own postgresql.conf is untouched
    let conf = std::fs::read_to_string(copy.join("postgresql.conf")).unwrap();
    assert!(conf.contains(&format!("port = '{}'", source.port())));
    let pid_file = copy.join("postmaster.pid");
    assert!(pid_file.exists());
    drop(adopted);
    assert!(!pid_file.exists(), "adopted server still running");
    assert!(copy.join("PG_VERSION").exists(), "data directory removed");
}

#[test]
fn streaming_standby_follows_and_stops_on_drop() {
    let primary = PgCluster::start(PgClusterOptions::default()).unwrap();
    let ts = TempDir::new().unwrap();
    let location = ts.subdir("ts").unwrap();
    primary
        .psql(&format!(
            "create tablespace ts1 location '{}'",
            location.display()
        ))
        .unwrap();
    primary
        .psql("create table t (i int) tablespace ts1")
        .unwrap();
    primary
        .psql("insert into t select generate_series(1, 10)")
        .unwrap();
    let standby = primary.start_standby(&[]).unwrap();
    assert_ne!(standby.port(), primary.port());
    assert_ne!(standby.data_dir(), primary.data_dir());
    assert_eq!(standby.psql("select pg_is_in_recovery()").unwrap(), "t");
    assert_eq!(
        standby.psql("show data_directory").unwrap(),
        standby.data_dir().display().to_string()
    );
    // the tablespace lives in the standby's own directory, not the primary's
    let standby_location = standby
        .psql("select pg_tablespace_location(oid) from pg_tablespace where spcname = 'ts1'")
        .unwrap();
    assert!(
        Path::new(&standby_location).starts_with(standby.base_dir()),
        "{standby_location}"
    );
    primary
        .psql("insert into t select generate_series(11, 20)")
        .unwrap();
    standby
        .wait_replay(&primary, Duration::from_secs(60))
        .unwrap();
    assert_eq!(standby.psql("select sum(i) from t").unwrap(), "210");
    let pid: i32 = std::fs::read_to_string(standby.data_dir().join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let base = standby.base_dir().to_path_buf();
    drop(standby);
    wait_for("standby postmaster exit", || !process_alive(pid));
    assert!(!base.exists());
    // the primary is untouched
    assert_eq!(primary.psql("select count(*) from t").unwrap(), "20");
}
