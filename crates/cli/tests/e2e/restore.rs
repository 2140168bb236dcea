//! restore against real clusters: backups made by pgbackrest 2.45 (every chain type, gz, zst with
//! bundles, lz4 encrypted, uncompressed) and by pgkeep are restored by pgkeep, started, and their
//! content compared; point-in-time recovery by time, xid, lsn and name; immediate; standby;
//! delta onto a changed cluster; tablespace and link remapping; selective restore; bad input.
//!
//! Restored clusters recover through pgkeep's own `restore_command` (archive-get), written by
//! the restore, and are started with `archive_mode=off` so they never push into the test's
//! repository.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgkeep_testkit::{PgCluster, give_to_pg_user};

use crate::common::{PGKEEP, Site, archive_now, keys, sql};

const PGBACKREST: &str = "pgbackrest";

/// A site archiving through pgbackrest, its spool path inside its temp dir (the default one is
/// not the test user's). `@SITE@` in `extra` stands for that temp dir.
fn site(extra: &str) -> Site {
    site_with(PGBACKREST, extra)
}

/// [`site`] with another tool archiving and creating the stanza.
fn site_with(tool: &str, extra: &str) -> Site {
    let site = Site::new(Some(tool));
    let base = site.dir.path().display().to_string();
    site.write_conf(&format!(
        "spool-path={base}/spool\n{}",
        extra.replace("@SITE@", &base)
    ));
    site.ok(tool, &["--stanza=demo", "stanza-create"]);
    site
}

/// Table `t` as one line, in key order.
fn content(cluster: &PgCluster) -> String {
    sql(
        cluster,
        "select coalesce(string_agg(i || ':' || s, ',' order by i), '') from t",
    )
}

fn new_dir(site: &Site, name: &str) -> PathBuf {
    site.dir.path().join(name)
}

/// `pgkeep restore` into `dir` with extra options; returns stdout (info and warnings).
fn restore(site: &Site, dir: &Path, args: &[&str]) -> String {
    let pg1 = format!("--pg1-path={}", dir.display());
    let mut all = vec!["--stanza=demo", pg1.as_str(), "--log-level-stderr=off"];
    if !args.iter().any(|a| a.starts_with("--log-level-console")) {
        all.push("--log-level-console=info");
    }
    all.extend_from_slice(args);
    all.push("restore");
    site.ok(PGKEEP, &all)
}

/// `pgkeep restore` that must fail with `code`; returns stderr.
fn restore_fails(site: &Site, dir: &Path, args: &[&str], code: i32) -> String {
    let pg1 = format!("--pg1-path={}", dir.display());
    let mut all = vec!["--stanza=demo", pg1.as_str()];
    all.extend_from_slice(args);
    all.push("restore");
    site.fails(PGKEEP, &all, code)
}

/// Start a restored data directory and wait until recovery has ended (or, for a standby, until
/// it accepts connections).
fn start(dir: &Path, settings: &[(&str, &str)], standby: bool) -> PgCluster {
    let mut all = vec![("archive_mode", "off")];
    all.extend_from_slice(settings);
    let cluster = PgCluster::adopt(dir, &all).unwrap_or_else(|e| panic!("restored cluster: {e}"));
    if !standby {
        let begin = Instant::now();
        while sql(&cluster, "select pg_is_in_recovery()") != "f" {
            assert!(
                begin.elapsed() < Duration::from_secs(90),
                "recovery did not end\n{}",
                cluster.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    cluster
}

/// Every entry below `dir` (links not followed): kind, mode, size, mtime and content digest of
/// files, link destinations. `skip` names are left out.
fn tree(dir: &Path, skip: &[&str]) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, skip: &[&str], out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path.strip_prefix(base).unwrap().display().to_string();
            if skip.contains(&rel.as_str()) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.mode() & 0o7777;
            let what = if meta.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                walk(base, &path, skip, out);
                format!("dir {mode:o}")
            } else {
                let data = std::fs::read(&path).unwrap();
                format!(
                    "file {mode:o} {} {} {}",
                    meta.len(),
                    meta.mtime(),
                    pgkeep_base::io::sha1(&data).to_hex()
                )
            };
            out.insert(rel, what);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, skip, &mut out);
    out
}

/// Fail with the differing entries only.
fn assert_same_tree(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>, what: &str) {
    let mut diff = Vec::new();
    for (name, x) in a {
        match b.get(name) {
            Some(y) if y == x => {}
            Some(y) => diff.push(format!("{name}: {x} | {y}")),
            None => diff.push(format!("{name}: {x} | (missing)")),
        }
    }
    for (name, y) in b {
        if !a.contains_key(name) {
            diff.push(format!("{name}: (missing) | {y}"));
        }
    }
    assert!(diff.is_empty(), "{what}:\n{}", diff.join("\n"));
}

/// Restore `args` with pgbackrest into `theirs` and compare with pgkeep's restore in `ours`.
fn same_as_pgbackrest(site: &Site, ours: &Path, theirs: &Path, args: &[&str]) {
    let pg1 = format!("--pg1-path={}", theirs.display());
    let mut all = vec!["--stanza=demo", pg1.as_str()];
    all.extend_from_slice(args);
    all.push("restore");
    site.ok(PGBACKREST, &all);
    // written at restore time by each tool: compared by content elsewhere
    let skip = ["postgresql.auto.conf", "recovery.signal", "standby.signal"];
    for signal in ["recovery.signal", "standby.signal"] {
        assert_eq!(
            ours.join(signal).exists(),
            theirs.join(signal).exists(),
            "{signal}"
        );
    }
    let a = tree(ours, &skip);
    let b = tree(theirs, &skip);
    assert!(a.len() > 900, "only {} entries restored", a.len());
    for (name, ours_entry) in &a {
        let theirs_entry = b.get(name).map(String::as_str).unwrap_or("(missing)");
        // the tablespace link points to each restore's own mapped directory
        if name.starts_with("pg_tblspc/") && ours_entry.starts_with("link") {
            continue;
        }
        assert_eq!(
            ours_entry, theirs_entry,
            "{name} differs from pgbackrest's restore"
        );
    }
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "entries differ from pgbackrest's restore"
    );
}

/// Backups by pgbackrest in four repositories — gz full/diff/incr chain, zst bundled full/incr,
/// lz4 encrypted full/incr, uncompressed full — restored by pgkeep exactly as pgbackrest restores
/// them, and started with the content each backup had.
#[test]
fn pgbackrest_backups_restore_identically_and_start() {
    let site = site(&format!(
        "repo2-path={b}/repo2\nrepo2-bundle=y\nrepo2-bundle-limit=256KiB\nrepo3-path={b}/repo3\nrepo3-cipher-type=aes-256-cbc\nrepo3-cipher-pass=restore-test-pass\nrepo4-path={b}/repo4\n",
        b = "@SITE@"
    ));
    let c = &site.cluster;
    sql(c, "create table t (i int primary key, s text)");
    sql(
        c,
        "insert into t select i, md5(i::text) from generate_series(1, 30000) i",
    );
    let s1 = content(c);
    for (repo, compress) in [("1", "gz"), ("2", "zst"), ("3", "lz4"), ("4", "none")] {
        site.ok(
            PGBACKREST,
            &[
                "--stanza=demo",
                &format!("--repo={repo}"),
                &format!("--compress-type={compress}"),
                "--type=full",
                "backup",
            ],
        );
    }
    sql(
        c,
        "update t set s = 'two' where i % 3 = 0; insert into t select i, 'new' from generate_series(30001, 31000) i",
    );
    let s2 = content(c);
    site.ok(
        PGBACKREST,
        &["--stanza=demo", "--repo=1", "--type=diff", "backup"],
    );
    site.ok(
        PGBACKREST,
        &[
            "--stanza=demo",
            "--repo=2",
            "--compress-type=zst",
            "--type=incr",
            "backup",
        ],
    );
    sql(c, "delete from t where i % 7 = 0");
    let s3 = content(c);
    site.ok(
        PGBACKREST,
        &["--stanza=demo", "--repo=1", "--type=incr", "backup"],
    );
    site.ok(
        PGBACKREST,
        &[
            "--stanza=demo",
            "--repo=3",
            "--compress-type=lz4",
            "--type=incr",
            "backup",
        ],
    );

    for (repo, expected) in [("1", &s3), ("2", &s2), ("3", &s3), ("4", &s1)] {
        let ours = new_dir(&site, &format!("ours{repo}"));
        let theirs = new_dir(&site, &format!("theirs{repo}"));
        let repo_opt = format!("--repo={repo}");
        let out = restore(
            &site,
            &ours,
            &[
                &repo_opt,
                "--type=immediate",
                "--target-action=promote",
                "--process-max=2",
            ],
        );
        assert!(
            out.contains(&format!("repo{repo}: restore backup set ")),
            "{out}"
        );
        assert!(
            out.contains("restore global/pg_control (performed last"),
            "{out}"
        );
        assert!(!ours.join("backup.manifest").exists());
        // restore_command is pgkeep's own archive-get with the restore's options
        let auto = std::fs::read_to_string(ours.join("postgresql.auto.conf")).unwrap();
        assert!(
            auto.contains(&format!(
                "restore_command = '{PGKEEP} --config={} --pg1-path={} {repo_opt} --stanza=demo archive-get %f \"%p\"'",
                site.conf.display(),
                ours.display()
            )),
            "{auto}"
        );
        assert!(auto.contains("recovery_target = 'immediate'\nrecovery_target_action = 'promote'\nrecovery_target_timeline = 'current'\n"), "{auto}");
        same_as_pgbackrest(
            &site,
            &ours,
            &theirs,
            &[&repo_opt, "--type=immediate", "--target-action=promote"],
        );
        let restored = start(&ours, &[], false);
        assert_eq!(&content(&restored), expected, "repo{repo}: content differs");
    }
}

/// Point-in-time recovery by time (with automatic backup selection), xid (inclusive and
/// exclusive), lsn and name reaches exactly the rows committed up to the target; immediate stops
/// at the end of the backup, default replays everything, and a standby keeps replaying what the
/// primary archives after it started.
#[test]
fn point_in_time_targets_reach_exactly_the_right_rows() {
    let site = site("");
    let c = &site.cluster;
    sql(c, "create table t (i int primary key, s text)");
    site.ok(PGBACKREST, &["--stanza=demo", "--type=full", "backup"]);
    // automatic selection wants a backup that stopped before the target, in whole seconds
    std::thread::sleep(Duration::from_millis(1100));

    let utc_now =
        "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'";
    sql(c, "insert into t values (1, 'one')");
    let time1 = sql(c, utc_now);
    std::thread::sleep(Duration::from_millis(20));
    let xid2 = sql(
        c,
        "begin; insert into t values (2, 'two'); select txid_current(); commit;",
    );
    sql(c, "insert into t values (3, 'three')");
    let lsn3 = sql(c, "select pg_current_wal_lsn()");
    sql(c, "insert into t values (4, 'four')");
    sql(c, "select pg_create_restore_point('after-four')");
    sql(c, "insert into t values (5, 'five')");
    archive_now(c);

    let cases: &[(&str, Vec<String>, &str)] = &[
        (
            "time",
            vec!["--type=time".into(), format!("--target={time1}")],
            "1",
        ),
        (
            "xid",
            vec!["--type=xid".into(), format!("--target={xid2}")],
            "1,2",
        ),
        (
            "xid-exclusive",
            vec![
                "--type=xid".into(),
                format!("--target={xid2}"),
                "--target-exclusive".into(),
            ],
            "1",
        ),
        (
            "lsn",
            vec!["--type=lsn".into(), format!("--target={lsn3}")],
            "1,2,3",
        ),
        (
            "name",
            vec!["--type=name".into(), "--target=after-four".into()],
            "1,2,3,4",
        ),
        ("immediate", vec!["--type=immediate".into()], ""),
        ("default", vec![], "1,2,3,4,5"),
    ];
    for (name, args, expected) in cases {
        let dir = new_dir(&site, name);
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        if *name != "default" {
            all.push("--target-action=promote");
        }
        restore(&site, &dir, &all);
        let restored = start(&dir, &[], false);
        assert_eq!(
            keys(&restored),
            *expected,
            "--type={name} reached other rows"
        );
    }

    // a standby replays what is archived after it started
    let dir = new_dir(&site, "standby");
    restore(&site, &dir, &["--type=standby"]);
    assert!(dir.join("standby.signal").exists());
    assert!(!dir.join("recovery.signal").exists());
    let standby = start(&dir, &[("wal_retrieve_retry_interval", "100ms")], true);
    let wait_for = |expected: &str| {
        let begin = Instant::now();
        while keys(&standby) != expected {
            assert!(
                begin.elapsed() < Duration::from_secs(60),
                "standby did not reach {expected}: {}\n{}",
                keys(&standby),
                standby.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("1,2,3,4,5");
    assert_eq!(sql(&standby, "select pg_is_in_recovery()"), "t");
    sql(c, "insert into t values (6, 'six')");
    archive_now(c);
    wait_for("1,2,3,4,5,6");
}

/// A delta restore onto a cluster that was changed afterwards (table dropped, table created, rows
/// added, files, directories and links planted) returns exactly the backup's files — the same
/// tree as a fresh restore — and the backup's content; links are removed, never followed.
/// `--delta --force` does the same by size and time.
#[test]
fn delta_restore_returns_a_changed_cluster_to_the_backup() {
    let site = site("");
    let c = &site.cluster;
    sql(
        c,
        "create table t (i int primary key, s text); create table gone (x int)",
    );
    sql(
        c,
        "insert into t select i, md5(i::text) from generate_series(1, 20000) i; insert into gone values (7)",
    );
    let before = content(c);
    site.ok(PGBACKREST, &["--stanza=demo", "--type=full", "backup"]);
    let args = ["--type=immediate", "--target-action=promote"];

    let dir = new_dir(&site, "delta");
    restore(&site, &dir, &args);
    let mut restored = start(&dir, &[], false);
    sql(
        &restored,
        "drop table gone; create table extra (y int); insert into extra values (1)",
    );
    sql(
        &restored,
        "insert into t select i, 'later' from generate_series(20001, 40000) i; checkpoint",
    );
    restored.stop().unwrap();
    drop(restored);
    let outside = site.dir.subdir("outside").unwrap();
    std::fs::write(outside.join("keep.txt"), b"not part of the restore").unwrap();
    std::fs::write(dir.join("junk.txt"), b"junk").unwrap();
    std::fs::create_dir_all(dir.join("base/junkdir/deeper")).unwrap();
    std::fs::write(dir.join("base/junkdir/deeper/f"), b"junk").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("junklink")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("base/junklink")).unwrap();
    give_to_pg_user(&dir).unwrap();

    let out = restore(
        &site,
        &dir,
        &[
            "--delta",
            "--type=immediate",
            "--target-action=promote",
            "--log-level-console=detail",
        ],
    );
    assert!(
        out.contains(&format!(
            "remove invalid files/links/paths from '{}'",
            dir.display()
        )),
        "{out}"
    );
    assert!(out.contains("exists and matches backup"), "{out}");
    assert!(
        out.contains(&format!("remove invalid link '{}/junklink'", dir.display())),
        "{out}"
    );
    assert_eq!(
        std::fs::read(outside.join("keep.txt")).unwrap(),
        b"not part of the restore",
        "a link was followed"
    );
    let fresh = new_dir(&site, "fresh");
    restore(&site, &fresh, &args);
    let skip = ["postgresql.auto.conf", "recovery.signal"];
    assert_same_tree(
        &tree(&dir, &skip),
        &tree(&fresh, &skip),
        "delta restore differs from a fresh one",
    );

    let mut restored = start(&dir, &[], false);
    assert_eq!(content(&restored), before);
    assert_eq!(sql(&restored, "select x from gone"), "7");
    assert_eq!(
        sql(
            &restored,
            "select count(*) from pg_class where relname = 'extra'"
        ),
        "0"
    );
    restored.stop().unwrap();
    drop(restored);

    // --force: files changed by the server since have other times and are copied again
    std::fs::write(dir.join("junk.txt"), b"junk").unwrap();
    give_to_pg_user(&dir).unwrap();
    restore(
        &site,
        &dir,
        &[
            "--delta",
            "--force",
            "--type=immediate",
            "--target-action=promote",
        ],
    );
    assert_same_tree(
        &tree(&dir, &skip),
        &tree(&fresh, &skip),
        "delta --force restore differs from a fresh one",
    );

    // --type=preserve keeps the recovery settings found in the directory
    let mine = "# mine\nrestore_command = 'kept'\n";
    std::fs::write(dir.join("postgresql.auto.conf"), mine).unwrap();
    give_to_pg_user(&dir).unwrap();
    restore(&site, &dir, &["--delta", "--type=preserve"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("postgresql.auto.conf")).unwrap(),
        mine
    );
    assert!(dir.join("recovery.signal").exists());
}

/// A cluster with a tablespace, a file link and a directory link: remapped tablespace and links
/// are recreated where asked and the cluster starts; without `--link-all` links become plain
/// files and directories; a selective restore serves the included database, leaves the excluded
/// one as sparse zero-filled files, and lets it be dropped.
#[test]
fn remapped_tablespaces_links_and_selective_restore() {
    let site = site("");
    let c = &site.cluster;
    let base = site.dir.path().to_path_buf();
    let ts = site.dir.subdir("ts1").unwrap();
    let conf_dir = site.dir.subdir("conf").unwrap();
    let ext = site.dir.subdir("extdir").unwrap();
    std::fs::write(ext.join("note.txt"), b"a note").unwrap();
    let data = c.data_dir().to_path_buf();
    std::fs::rename(data.join("pg_ident.conf"), conf_dir.join("pg_ident.conf")).unwrap();
    std::os::unix::fs::symlink(conf_dir.join("pg_ident.conf"), data.join("pg_ident.conf")).unwrap();
    std::os::unix::fs::symlink(&ext, data.join("extdir")).unwrap();
    give_to_pg_user(&base).unwrap();
    let ident = std::fs::read(conf_dir.join("pg_ident.conf")).unwrap();

    sql(
        c,
        &format!("create tablespace ts1 location '{}'", ts.display()),
    );
    sql(c, "create database app1");
    sql(c, "create database app2");
    let app1 = c.connect_db("app1").unwrap();
    drop(app1);
    let run = |db: &str, q: &str| {
        let mut client = c.connect_db(db).unwrap();
        client.batch_execute(q).unwrap();
    };
    run(
        "app1",
        "create table t (i int, s text) tablespace ts1; insert into t select i, md5(i::text) from generate_series(1, 5000) i",
    );
    run(
        "app2",
        "create table u (i int); insert into u select generate_series(1, 5000)",
    );
    let app2_oid = sql(c, "select oid from pg_database where datname = 'app2'");
    site.ok(PGBACKREST, &["--stanza=demo", "--type=full", "backup"]);

    // everything remapped
    let dir = new_dir(&site, "mapped");
    let ts_new = base.join("ts-new");
    let ident_new = base.join("conf-new/pg_ident.conf");
    let ext_new = base.join("ext-new");
    let out = restore(
        &site,
        &dir,
        &[
            "--type=immediate",
            "--target-action=promote",
            &format!("--tablespace-map=ts1={}", ts_new.display()),
            &format!("--link-map=pg_ident.conf={}", ident_new.display()),
            &format!("--link-map=extdir={}", ext_new.display()),
            "--link-all",
        ],
    );
    assert!(out.contains("map tablespace 'pg_tblspc/"), "{out}");
    assert!(
        out.contains(&format!(
            "map link 'pg_ident.conf' to '{}'",
            ident_new.display()
        )),
        "{out}"
    );
    let ts_link = std::fs::read_dir(dir.join("pg_tblspc"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(std::fs::read_link(&ts_link).unwrap(), ts_new);
    assert_eq!(
        std::fs::read_link(dir.join("pg_ident.conf")).unwrap(),
        ident_new
    );
    assert_eq!(std::fs::read(&ident_new).unwrap(), ident);
    assert_eq!(std::fs::read_link(dir.join("extdir")).unwrap(), ext_new);
    assert_eq!(std::fs::read(ext_new.join("note.txt")).unwrap(), b"a note");
    assert!(!dir.join("tablespace_map").exists());
    let restored = start(&dir, &[], false);
    assert_eq!(
        sql(
            &restored,
            "select pg_tablespace_location(oid) from pg_tablespace where spcname = 'ts1'"
        ),
        ts_new.display().to_string()
    );
    let mut app1 = restored.connect_db("app1").unwrap();
    let row = app1
        .query_one("select count(*), sum(i) from t", &[])
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (5000, 12_502_500)
    );
    drop(app1);
    drop(restored);

    // selective: app1 only; links restored in place as a file and a directory
    let dir = new_dir(&site, "selective");
    let out = restore(
        &site,
        &dir,
        &[
            "--type=immediate",
            "--target-action=promote",
            "--db-include=app1",
            &format!("--tablespace-map-all={}", base.join("ts-all").display()),
        ],
    );
    assert!(
        out.contains("file link 'pg_ident.conf' will be restored as a file at the same location"),
        "{out}"
    );
    assert!(out.contains("contents of directory link 'extdir' will be restored in a directory at the same location"), "{out}");
    assert!(
        std::fs::symlink_metadata(dir.join("pg_ident.conf"))
            .unwrap()
            .is_file()
    );
    assert!(
        std::fs::symlink_metadata(dir.join("extdir"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(
        std::fs::read(dir.join("extdir/note.txt")).unwrap(),
        b"a note"
    );
    let ts_link = std::fs::read_dir(dir.join("pg_tblspc"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read_link(&ts_link).unwrap(),
        base.join("ts-all/ts1")
    );
    // app2's relation files are sparse and zero-filled, its PG_VERSION is real
    let app2_dir = dir.join("base").join(&app2_oid);
    assert_eq!(std::fs::read(app2_dir.join("PG_VERSION")).unwrap(), b"15\n");
    let mut zeroed = 0;
    for entry in std::fs::read_dir(&app2_dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::metadata(&path).unwrap();
        if path.file_name().unwrap() != "PG_VERSION" && meta.len() > 0 {
            assert_eq!(meta.blocks(), 0, "{} is not sparse", path.display());
            assert!(std::fs::read(&path).unwrap().iter().all(|b| *b == 0));
            zeroed += 1;
        }
    }
    assert!(zeroed > 10, "only {zeroed} zeroed files");
    let restored = start(&dir, &[], false);
    let mut app1 = restored.connect_db("app1").unwrap();
    let row = app1.query_one("select count(*) from t", &[]).unwrap();
    assert_eq!(row.get::<_, i64>(0), 5000);
    drop(app1);
    sql(&restored, "drop database app2");
    assert_eq!(
        sql(
            &restored,
            "select count(*) from pg_database where datname = 'app2'"
        ),
        "0"
    );
}

/// Bad input is refused with one-line errors and pgBackRest's codes, before anything is written
/// where possible; a corrupt repository file stops the restore naming the file and both
/// checksums, and the target is left without `global/pg_control` so it cannot be started.
#[test]
fn bad_input_is_refused_and_never_leaves_a_startable_directory() {
    let site = site("");
    let c = &site.cluster;
    sql(c, "create table t (i int primary key, s text)");
    sql(
        c,
        "insert into t select i, md5(i::text) from generate_series(1, 20000) i",
    );
    site.ok(
        PGBACKREST,
        &[
            "--stanza=demo",
            "--type=full",
            "--compress-type=none",
            "backup",
        ],
    );
    let dir = new_dir(&site, "target");

    // a running cluster
    let err = site.fails(PGKEEP, &["--stanza=demo", "restore"], 38);
    assert!(
        err.contains("ERROR: [038]: unable to restore while PostgreSQL is running"),
        "{err}"
    );
    // unknown set, malformed targets: nothing is created
    let err = restore_fails(&site, &dir, &["--set=20200101-000000F"], 75);
    assert!(
        err.contains("ERROR: [075]: backup set 20200101-000000F is not valid"),
        "{err}"
    );
    let err = restore_fails(&site, &dir, &["--type=time", "--target=yesterday"], 29);
    assert!(
        err.contains(
            "automatic backup set selection cannot be performed with provided time 'yesterday'"
        ),
        "{err}"
    );
    let err = restore_fails(&site, &dir, &["--type=lsn", "--target=0/zz"], 32);
    assert!(
        err.contains("'0/zz' is not valid for option 'target'"),
        "{err}"
    );
    let err = restore_fails(&site, &dir, &["--type=xid", "--target=12x"], 32);
    assert!(
        err.contains("'12x' is not valid for option 'target'"),
        "{err}"
    );
    let err = restore_fails(&site, &dir, &["--target-timeline=sideways"], 32);
    assert!(
        err.contains("'sideways' is not valid for option 'target-timeline'"),
        "{err}"
    );
    assert!(!dir.exists(), "a refused restore created {}", dir.display());

    // a directory without rwx for its owner, a non-empty one, one owned by someone else
    std::fs::create_dir(&dir).unwrap();
    give_to_pg_user(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o000)).unwrap();
    let err = restore_fails(&site, &dir, &[], 53);
    assert!(
        err.contains(&format!(
            "ERROR: [053]: unable to restore to path '{}' without rwx permissions",
            dir.display()
        )),
        "{err}"
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(dir.join("stray"), b"x").unwrap();
    give_to_pg_user(&dir).unwrap();
    let err = restore_fails(&site, &dir, &[], 40);
    assert!(
        err.contains(&format!(
            "ERROR: [040]: unable to restore to path '{}' because it contains files",
            dir.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("HINT: try using --delta if this is what you intended."),
        "{err}"
    );
    assert!(dir.join("stray").exists());
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(&dir, Some(0), Some(0)).unwrap();
        let err = restore_fails(&site, &dir, &["--delta"], 53);
        assert!(
            err.contains("not owned by current user")
                || err.contains("--delta and --force have been disabled"),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();

    // a corrupt repository file
    let backup = std::fs::read_dir(site.repo().join("backup/demo"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().ends_with('F'))
        .unwrap();
    let table = sql(c, "select pg_relation_filepath('t')");
    let stored = backup.join("pg_data").join(&table);
    let mut bytes = std::fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();
    let err = restore_fails(&site, &dir, &[], 26);
    let line = err.lines().find(|l| l.starts_with("ERROR:")).unwrap();
    assert!(
        line.starts_with(&format!(
            "ERROR: [026]: error restoring '{}/{table}': actual checksum '",
            dir.display()
        )),
        "{err}"
    );
    assert!(
        line.contains("' does not match expected checksum '"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "HINT: the repository file '{}' may be corrupt",
            stored.display()
        )),
        "{err}"
    );
    assert!(
        !dir.join("global/pg_control").exists(),
        "an aborted restore can be started"
    );
    assert!(
        dir.join("backup.manifest").exists(),
        "the delta restart marker is missing"
    );
}

/// The whole cycle with pgkeep alone — archiving, full and incremental bundled backups, restore —
/// and pgbackrest restoring what pgkeep wrote to the same files.
#[test]
fn pgkeep_backups_restore_and_replay() {
    let site = site_with(PGKEEP, "compress-type=zst\nrepo1-bundle=y\n");
    let c = &site.cluster;
    sql(c, "create table t (i int primary key, s text)");
    sql(
        c,
        "insert into t select i, md5(i::text) from generate_series(1, 20000) i",
    );
    site.ok(PGKEEP, &["--stanza=demo", "--type=full", "backup"]);
    sql(c, "update t set s = 'changed' where i % 5 = 0");
    let at_incr = content(c);
    site.ok(PGKEEP, &["--stanza=demo", "--type=incr", "backup"]);
    sql(c, "delete from t where i > 15000");
    let last = content(c);
    archive_now(c);

    let dir = new_dir(&site, "incr");
    restore(
        &site,
        &dir,
        &[
            "--type=immediate",
            "--target-action=promote",
            "--process-max=2",
        ],
    );
    same_as_pgbackrest(
        &site,
        &dir,
        &new_dir(&site, "incr-pgbackrest"),
        &["--type=immediate", "--target-action=promote"],
    );
    let restored = start(&dir, &[], false);
    assert_eq!(content(&restored), at_incr);
    drop(restored);

    let info = site.ok(PGKEEP, &["--stanza=demo", "--output=json", "info"]);
    let full = info
        .split('"')
        .find(|w| w.len() == 16 && w.ends_with('F'))
        .expect("full backup label in info");
    // as root, the restore gives every entry the manifest's owner (the cluster's OS user)
    let dir = new_dir(&site, "replay");
    let set = format!("--set={full}");
    match pgkeep_testkit::pg_user().unwrap() {
        Some(user) => {
            let out = std::process::Command::new(PGKEEP)
                .arg(format!("--config={}", site.conf.display()))
                .args([
                    "--stanza=demo",
                    &format!("--pg1-path={}", dir.display()),
                    &set,
                ])
                .arg("restore")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mut checked = 0;
            let mut stack = vec![dir.clone()];
            while let Some(path) = stack.pop() {
                let meta = std::fs::symlink_metadata(&path).unwrap();
                assert_eq!(
                    (meta.uid(), meta.gid()),
                    (user.uid, user.gid),
                    "{}",
                    path.display()
                );
                checked += 1;
                if meta.is_dir() {
                    stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                }
            }
            assert!(checked > 900, "{checked}");
        }
        None => {
            restore(&site, &dir, &[&set]);
        }
    }
    let restored = start(&dir, &[], false);
    assert_eq!(content(&restored), last);
}
