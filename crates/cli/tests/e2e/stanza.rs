//! stanza-create/-upgrade/-delete, start/stop, info and bad input, side by side with pgbackrest.

use std::process::Command;

use crate::common::{PGKEEP, Site, read_tree};

#[test]
fn pgbackrest_backups_are_reported_identically_by_pgkeep_info() {
    let site = Site::new(Some("pgbackrest"));
    site.ok("pgbackrest", &["--stanza=demo", "stanza-create"]);
    site.ok("pgbackrest", &["--stanza=demo", "--type=full", "backup"]);
    site.cluster
        .psql("create table t as select generate_series(1, 10000) as i")
        .expect("load data");
    site.ok(
        "pgbackrest",
        &[
            "--stanza=demo",
            "--type=incr",
            "--annotation=owner=dba team",
            "backup",
        ],
    );

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
    let label = parsed[0]["backup"][1]["label"]
        .as_str()
        .expect("incr label")
        .to_string();
    assert!(label.ends_with('I'), "{label}");
    for args in [
        vec![
            "--stanza=demo",
            "info",
            "--output=json",
            "--set",
            label.as_str(),
        ],
        vec!["--stanza=demo", "info", "--set", label.as_str()],
    ] {
        assert_eq!(
            site.ok(PGKEEP, &args),
            site.ok("pgbackrest", &args),
            "pgkeep {args:?} differs"
        );
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
    assert!(
        stderr.contains("stop file exists for stanza demo"),
        "{stderr}"
    );
    let stderr = site.fails(PGKEEP, &["--stanza=demo", "stanza-create"], 62);
    assert_eq!(stderr, "ERROR: [062]: stop file exists for stanza demo\n");
    // a second stop warns and succeeds
    let out = site.run(PGKEEP, &["--stanza=demo", "stop"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "WARN: stop file already exists for stanza demo\n"
    );
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
    let text = text.replace(
        &second.repo().display().to_string(),
        &first.repo().display().to_string(),
    );
    std::fs::write(&second.conf, text).expect("conf");
    let stderr = second.fails(PGKEEP, &["--stanza=demo", "stanza-create"], 28);
    assert!(
        stderr.starts_with(
            "ERROR: [028]: backup and archive info files exist but do not match the database\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("HINT: is this the correct stanza?"),
        "{stderr}"
    );
    assert_eq!(
        read_tree(&first.repo()),
        before,
        "repository changed by a refused stanza-create"
    );
}

#[test]
fn stanza_upgrade_adds_history_after_a_new_cluster_and_delete_removes_the_stanza() {
    let first = Site::new(None);
    first.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    let out = first.ok(
        PGKEEP,
        &[
            "--stanza=demo",
            "stanza-upgrade",
            "--log-level-console=info",
        ],
    );
    assert!(
        out.contains("stanza 'demo' on repo1 is already up to date"),
        "{out}"
    );

    // the "upgraded" cluster: another system id at the same path is what pg_upgrade yields
    let second = Site::new(None);
    let text = std::fs::read_to_string(&second.conf).expect("conf");
    std::fs::write(
        &second.conf,
        text.replace(
            &second.repo().display().to_string(),
            &first.repo().display().to_string(),
        ),
    )
    .expect("conf");
    second.ok(PGKEEP, &["--stanza=demo", "stanza-upgrade"]);
    let info = std::fs::read_to_string(first.repo().join("archive/demo/archive.info"))
        .expect("archive.info");
    assert!(info.contains("db-id=2"), "{info}");
    assert!(info.contains("\n2={\"db-id\":"), "{info}");
    // pgBackRest reads the upgraded stanza the same way
    assert_eq!(
        second.ok(PGKEEP, &["--stanza=demo", "info", "--output=json"]),
        second.ok("pgbackrest", &["--stanza=demo", "info", "--output=json"])
    );

    // delete needs a stop first, and a stopped cluster (or --force)
    let stderr = second.fails(PGKEEP, &["--stanza=demo", "stanza-delete"], 55);
    assert!(
        stderr.contains("stop file does not exist for stanza 'demo'"),
        "{stderr}"
    );
    second.ok(PGKEEP, &["--stanza=demo", "stop"]);
    let stderr = second.fails(PGKEEP, &["--stanza=demo", "stanza-delete"], 38);
    assert!(
        stderr.contains("postmaster.pid exists - looks like PostgreSQL is running"),
        "{stderr}"
    );
    second.ok(PGKEEP, &["--stanza=demo", "stanza-delete", "--force"]);
    assert!(!first.repo().join("archive/demo").exists());
    assert!(!first.repo().join("backup/demo").exists());
}

#[test]
fn bad_input_gets_one_line_errors_with_pgbackrest_codes() {
    let site = Site::new(None);
    // a value outside the allowed set
    let stderr = site.fails(PGKEEP, &["--stanza=demo", "--type=weekly", "backup"], 32);
    assert_eq!(
        stderr,
        "ERROR: [032]: 'weekly' is not allowed for 'type' option\n"
    );
    // unknown option and command
    let stderr = site.fails(PGKEEP, &["--bogus", "info"], 31);
    assert_eq!(stderr, "ERROR: [031]: invalid option '--bogus'\n");
    let stderr = site.fails(PGKEEP, &["bogus"], 48);
    assert_eq!(stderr, "ERROR: [048]: invalid command 'bogus'\n");
    // a config file named but missing
    let out = Command::new(PGKEEP)
        .args(["--config=/nonexistent/pgkeep.conf", "info"])
        .output()
        .expect("run");
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/pgkeep.conf"));
    // a cluster that is not running
    let mut stopped = Site::new(None);
    stopped.cluster.stop().expect("stop cluster");
    let stderr = stopped.fails(PGKEEP, &["--stanza=demo", "stanza-create"], 56);
    assert!(
        stderr.contains("unable to find primary cluster - cannot proceed"),
        "{stderr}"
    );
    assert!(
        !stopped.repo().join("archive").exists(),
        "nothing may be written"
    );
    // a repository path that is not writable
    let text = std::fs::read_to_string(&site.conf).expect("conf");
    std::fs::write(
        &site.conf,
        text.replace(&site.repo().display().to_string(), "/proc/pgkeep-repo"),
    )
    .expect("conf");
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

#[test]
fn encrypted_and_multiple_repositories_match_pgbackrest_both_ways() {
    let site = Site::new(Some("pgbackrest"));
    let repo2 = site.dir.path().join("repo2");
    site.write_conf(&format!(
        "repo2-path={}\nrepo2-cipher-type=aes-256-cbc\nrepo2-cipher-pass=Secret Pass 123\n",
        repo2.display()
    ));
    // pgkeep creates the stanza on both repos; pgBackRest backs up into the encrypted one
    site.ok(PGKEEP, &["--stanza=demo", "stanza-create"]);
    let head = std::fs::read(repo2.join("backup/demo/backup.info")).expect("repo2 backup.info");
    assert!(
        head.starts_with(b"Salted__"),
        "repo2 info files must be encrypted"
    );
    assert_eq!(
        head,
        std::fs::read(repo2.join("backup/demo/backup.info.copy")).expect("copy")
    );
    site.ok(
        "pgbackrest",
        &["--stanza=demo", "--repo=2", "--type=full", "backup"],
    );
    site.ok(
        "pgbackrest",
        &["--stanza=demo", "--repo=1", "--type=full", "backup"],
    );
    for args in [
        vec!["--stanza=demo", "info", "--output=json"],
        vec!["--stanza=demo", "info"],
        vec!["--stanza=demo", "info", "--repo=2"],
    ] {
        assert_eq!(
            site.ok(PGKEEP, &args),
            site.ok("pgbackrest", &args),
            "pgkeep {args:?} differs"
        );
    }
    let json = site.ok(PGKEEP, &["--stanza=demo", "info", "--output=json"]);
    let label =
        serde_json::from_str::<serde_json::Value>(&json).expect("json")[0]["backup"][0]["label"]
            .as_str()
            .expect("label")
            .to_string();
    let args = [
        "--stanza=demo",
        "info",
        "--output=json",
        "--set",
        label.as_str(),
    ];
    assert_eq!(site.ok(PGKEEP, &args), site.ok("pgbackrest", &args));

    // a wrong passphrase is reported per repo, as pgBackRest does
    site.write_conf(&format!(
        "repo2-path={}\nrepo2-cipher-type=aes-256-cbc\nrepo2-cipher-pass=wrong\n",
        repo2.display()
    ));
    // (pgBackRest parses the garbage a wrong key yields and prints it; pgkeep reports the cipher
    // error itself, with the hint. Everything after the status block is identical.)
    let ours = site.ok(PGKEEP, &["--stanza=demo", "info"]);
    assert!(
        ours.contains(
            "repo2: error (other)\n               [CryptoError] unable to load info file"
        ),
        "{ours}"
    );
    assert!(
        ours.contains("HINT: is or was the repo encrypted?"),
        "{ours}"
    );
    let theirs = site.ok("pgbackrest", &["--stanza=demo", "info"]);
    let tail = |text: &str| text[text.find("    cipher: mixed").unwrap_or(0)..].to_string();
    assert_eq!(tail(&ours), tail(&theirs));
}
