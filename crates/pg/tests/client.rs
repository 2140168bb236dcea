//! `pgkeep_pg::Client` against a real PostgreSQL started by the test harness.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers may fail loudly

use std::time::Duration;

use pgkeep_base::ErrorKind;
use pgkeep_pg::control;
use pgkeep_pg::wal::{self, Lsn, WalSegSize};
use pgkeep_pg::{Client, ClientOptions, PgVersion};
use pgkeep_testkit::{PgCluster, PgClusterOptions, TempDir};

fn options(cluster: &PgCluster) -> ClientOptions {
    ClientOptions {
        socket_path: Some(cluster.socket_dir().display().to_string()),
        port: cluster.port(),
        user: Some("postgres".to_string()),
        application_name: "pgBackRest [backup]".to_string(),
        timeout: Duration::from_secs(30),
        ..ClientOptions::default()
    }
}

#[test]
fn session_facts() {
    let cluster = PgCluster::start(PgClusterOptions {
        archive_mode: Some("on".into()),
        archive_command: Some("/bin/true %p".into()),
        settings: vec![("checkpoint_timeout".into(), "7min".into())],
        ..PgClusterOptions::default()
    })
    .unwrap();
    let mut client = Client::connect(&options(&cluster)).unwrap();

    let major = cluster.version_major();
    assert_eq!(client.version(), PgVersion::from_major(major).unwrap());
    assert_eq!(
        u32::try_from(client.server_version_num()).unwrap() / 10_000,
        major
    );
    // session settings as pgBackRest makes them
    assert_eq!(
        client.query_value("show search_path").unwrap().as_deref(),
        Some("pg_catalog")
    );
    assert_eq!(
        client
            .query_value("show client_encoding")
            .unwrap()
            .as_deref(),
        Some("UTF8")
    );
    assert_eq!(
        client
            .query_value("show application_name")
            .unwrap()
            .as_deref(),
        Some("pgBackRest [backup]")
    );
    assert_eq!(
        client
            .query_value("show max_parallel_workers_per_gather")
            .unwrap()
            .as_deref(),
        Some("0")
    );

    let data_dir = std::fs::canonicalize(cluster.data_dir()).unwrap();
    assert_eq!(
        std::fs::canonicalize(client.data_directory().unwrap()).unwrap(),
        data_dir
    );
    assert!(!client.is_in_recovery().unwrap());
    assert_eq!(
        client.setting("archive_mode").unwrap().as_deref(),
        Some("on")
    );
    assert_eq!(
        client.setting("archive_command").unwrap().as_deref(),
        Some("/bin/true %p")
    );
    assert_eq!(
        client.setting("checkpoint_timeout").unwrap().as_deref(),
        Some("420")
    );
    assert_eq!(client.setting("no_such_setting").unwrap(), None);

    // generic text queries keep NULLs apart from empty strings
    assert_eq!(
        client
            .query_rows("select 1, null::text, ''::text union all select 2, 'a', 'b' order by 1")
            .unwrap(),
        vec![
            vec![Some("1".to_string()), None, Some(String::new())],
            vec![
                Some("2".to_string()),
                Some("a".to_string()),
                Some("b".to_string())
            ],
        ]
    );
    assert!(
        client
            .query_rows("select 1 where false")
            .unwrap()
            .is_empty()
    );

    let dbs = client.databases().unwrap();
    let names: Vec<&str> = dbs.iter().map(|d| d.0.as_str()).collect();
    for name in ["postgres", "template0", "template1"] {
        assert!(names.contains(&name), "{names:?}");
    }
    let template0 = dbs.iter().find(|d| d.0 == "template0").unwrap().1;
    assert!(dbs.iter().all(|d| d.2 == template0));
    let spaces = client.tablespaces().unwrap();
    assert!(
        spaces.contains(&(1663, "pg_default".to_string())),
        "{spaces:?}"
    );
    assert!(
        spaces.contains(&(1664, "pg_global".to_string())),
        "{spaces:?}"
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let server_now = client.time_now().unwrap();
    assert!((server_now - now).abs() < 60, "{server_now} vs {now}");
    let ms = client.time_now_ms().unwrap();
    assert!(ms / 1000 >= server_now);

    client.close().unwrap();
}

#[test]
fn wal_switch_and_restore_point() {
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
    let mut client = Client::connect(&options(&cluster)).unwrap();

    let current = client.current_wal_file().unwrap();
    assert!(wal::is_segment(&current), "{current}");
    let lsn = client.create_restore_point("pgkeep test").unwrap();
    assert!(lsn > Lsn(0));
    let switched = client.switch_wal().unwrap();
    assert_eq!(switched, current);
    let after = client.current_wal_file().unwrap();
    assert_eq!(
        after,
        wal::next_segment(&current, WalSegSize::DEFAULT).unwrap()
    );

    // the switched segment reaches the archive, and its header matches pg_control
    let archived = dest.join(&switched);
    let start = std::time::Instant::now();
    while !archived.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "not archived");
        std::thread::sleep(Duration::from_millis(100));
    }
    let segment = std::fs::read(&archived).unwrap();
    let header = wal::header_parse(&segment).unwrap();
    assert_eq!(header.require_version().unwrap(), client.version());
    let pg_control = std::fs::read(cluster.data_dir().join("global/pg_control")).unwrap();
    let info = control::parse_lenient(&pg_control).unwrap();
    assert_eq!(header.system_id, info.system_id);
    assert_eq!(info.version, client.version());
    assert_eq!(
        wal::segment_name(header.timeline, Lsn(header.page_addr), WalSegSize::DEFAULT),
        switched
    );
}

#[test]
fn query_errors_and_timeouts() {
    let cluster = PgCluster::start(PgClusterOptions::default()).unwrap();
    let mut client = Client::connect(&ClientOptions {
        timeout: Duration::from_millis(500),
        ..options(&cluster)
    })
    .unwrap();
    let err = client
        .query_rows("select * from no_such_table")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DbQuery);
    assert_eq!(
        err.message(),
        "unable to execute query 'select * from no_such_table': ERROR:  relation \"no_such_table\" does not exist"
    );
    let err = client
        .query_rows("select pg_catalog.pg_sleep(5)")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DbQuery);
    assert_eq!(
        err.message(),
        "query 'select pg_catalog.pg_sleep(5)' timed out after 500ms"
    );
    // the session survives the cancel
    assert_eq!(
        client.query_value("select 42").unwrap().as_deref(),
        Some("42")
    );
    assert_eq!(
        client.query_value("select 1, 2").unwrap_err().kind(),
        ErrorKind::DbQuery
    );

    let err = Client::connect(&ClientOptions {
        database: "no_such_db".to_string(),
        ..options(&cluster)
    })
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DbConnect);
    assert!(
        err.message().starts_with(&format!(
            "unable to connect to 'dbname='no_such_db' port={} user='postgres' host='{}'': ",
            cluster.port(),
            cluster.socket_dir().display()
        )),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("does not exist"),
        "{}",
        err.message()
    );
}

#[test]
fn tcp_connection() {
    let cluster = PgCluster::start(PgClusterOptions::default()).unwrap();
    let mut client = Client::connect(&ClientOptions {
        host: Some("127.0.0.1".to_string()),
        port: cluster.port(),
        user: Some("postgres".to_string()),
        ..ClientOptions::default()
    })
    .unwrap();
    assert_eq!(
        client.query_value("select 1").unwrap().as_deref(),
        Some("1")
    );
}
