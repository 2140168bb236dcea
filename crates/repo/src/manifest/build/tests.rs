//! Manifest building over a fabricated data directory, and diff/incr derivation.

use std::os::unix::fs::symlink;
use std::path::Path;

use pgkeep_pg::PgVersion;
use pgkeep_storage::posix::PosixStorage;

use super::*;
use crate::info::InfoFile;
use crate::layout::CompressType;
use crate::manifest::{ManifestBackup, ManifestBackupDb, ManifestOptions};

/// [`build`] with the file list put in `manifest.files`.
fn build_into(
    storage: &dyn Storage,
    manifest: &mut Manifest,
    opts: &BuildOptions<'_>,
) -> Result<Vec<Note>> {
    let (notes, list) = build(storage, manifest, opts)?;
    manifest.files = list.to_map()?;
    Ok(notes)
}

/// [`validate_build`] of `m.files`.
fn validate(m: &mut Manifest, delta: bool, copy_start: i64) -> Option<String> {
    let list = FileList::from_map(&m.files).unwrap();
    validate_build(m, &list, delta, copy_start).unwrap()
}

/// [`build_incr`] of `m.files`, the new list put back in `m.files`.
fn incr(
    m: &mut Manifest,
    prior: &LazyManifest,
    backup_type: BackupType,
    archive_start: Option<&str>,
    bundle: bool,
) -> Result<IncrPlan> {
    let list = FileList::from_map(&m.files)?;
    let (plan, out) = build_incr(m, &list, prior, backup_type, archive_start, bundle)?;
    m.files = out.to_map()?;
    Ok(plan)
}

fn empty_manifest(online: bool) -> Manifest {
    let version = PgVersion::from_major(15).unwrap();
    Manifest::new(
        ManifestBackup {
            label: String::new(),
            prior: None,
            backup_type: BackupType::Full,
            reference: Vec::new(),
            archive_start: None,
            archive_stop: None,
            lsn_start: None,
            lsn_stop: None,
            timestamp_copy_start: 0,
            timestamp_start: 0,
            timestamp_stop: 0,
            bundle: false,
            bundle_raw: false,
            block_incr: false,
        },
        ManifestBackupDb {
            id: 1,
            system_id: 1,
            catalog_version: 202_209_061,
            control_version: 1300,
            version,
        },
        ManifestOptions {
            archive_check: true,
            archive_copy: false,
            backup_standby: None,
            buffer_size: None,
            checksum_page: Some(true),
            compress_type: CompressType::Gz,
            compress_level: None,
            compress_level_network: None,
            delta: None,
            hardlink: false,
            online,
            process_max: None,
        },
    )
}

fn datadir() -> DataDir {
    DataDir::new(PgVersion::from_major(15).unwrap(), 202_209_061).unwrap()
}

fn put(root: &Path, rel: &str, size: usize) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, vec![7u8; size]).unwrap();
}

/// A small PGDATA with every kind of entry the rules care about, plus a tablespace and links.
fn fabricate(base: &Path) -> (String, String) {
    let data = base.join("data");
    let ts = base.join("ts1");
    let ext = base.join("ext");
    for f in [
        ("PG_VERSION", 3),
        ("postgresql.conf", 10),
        ("postmaster.pid", 5),
        ("postmaster.opts", 5),
        ("backup_label.old", 5),
        ("recovery.signal", 0),
        ("global/pg_control", 8192),
        ("global/1260", 8192),
        ("global/pg_filenode.map", 512),
        ("base/1/PG_VERSION", 3),
        ("base/1/1234", 8192),
        ("base/1/1234_fsm", 8192),
        ("base/1/5555", 8192),
        ("base/1/5555.1", 8192),
        ("base/1/5555_vm", 8192),
        ("base/1/5555_init", 0),
        ("base/1/t3_99", 8192),
        ("base/1/pg_internal.init", 100),
        ("base/1/pgsql_tmp/x", 1),
        ("pg_wal/000000010000000000000001", 16),
        ("pg_wal/archive_status/000000010000000000000001.ready", 0),
        ("pg_stat_tmp/global.stat", 10),
        ("pg_stat/pgstat.stat", 10),
        ("pg_replslot/s/state", 10),
        ("excluded_dir/inner", 1),
        ("skip_me", 1),
    ] {
        put(&data, f.0, f.1);
    }
    std::fs::create_dir_all(data.join("pg_tblspc")).unwrap();
    put(&ts, "PG_15_202209061/5/777", 8192);
    put(&ts, "PG_14_202107181/5/888", 8192);
    symlink(&ts, data.join("pg_tblspc/16400")).unwrap();
    // special files, inside the tablespace and at the end of PGDATA: pgBackRest's walk meets
    // the first at pg_data/pg_tblspc/16400, before skip_me
    std::os::unix::net::UnixListener::bind(ts.join("PG_15_202209061/5/sock")).unwrap();
    std::os::unix::net::UnixListener::bind(data.join("zz_sock")).unwrap();
    put(&ext, "conf/pg_ident.conf", 4);
    put(&ext, "dirlink/inside", 2);
    symlink(ext.join("conf/pg_ident.conf"), data.join("pg_ident.conf")).unwrap();
    symlink(ext.join("dirlink"), data.join("linkdir")).unwrap();
    (
        data.to_str().unwrap().to_string(),
        ts.to_str().unwrap().to_string(),
    )
}

fn build_site(online: bool) -> (tempfile::TempDir, Manifest, Vec<Note>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (data, ts) = fabricate(dir.path());
    let storage = PosixStorage::new("/");
    let dd = datadir();
    let exclude = vec!["skip_me".to_string(), "excluded_dir/".to_string()];
    let tablespaces = vec![(16400u32, "ts1".to_string())];
    let opts = BuildOptions {
        pg_path: &data,
        datadir: &dd,
        online,
        checksum_page: true,
        exclude: &exclude,
        tablespaces: Some(&tablespaces),
    };
    let mut manifest = empty_manifest(online);
    let notes = build_into(&storage, &mut manifest, &opts).unwrap();
    (dir, manifest, notes, data, ts)
}

#[test]
fn build_applies_every_exclusion_and_follows_links() {
    let (_dir, m, notes, data, ts) = build_site(true);
    let files: Vec<&str> = m.files.keys().map(String::as_str).collect();
    assert_eq!(
        files,
        [
            "pg_data/PG_VERSION",
            "pg_data/base/1/1234",
            "pg_data/base/1/1234_fsm",
            "pg_data/base/1/5555_init",
            "pg_data/base/1/PG_VERSION",
            "pg_data/global/1260",
            "pg_data/global/pg_control",
            "pg_data/global/pg_filenode.map",
            "pg_data/linkdir/inside",
            "pg_data/pg_ident.conf",
            "pg_data/pg_stat/pgstat.stat",
            "pg_data/postgresql.conf",
            "pg_tblspc/16400/PG_15_202209061/5/777",
        ]
    );
    let paths: Vec<&str> = m.paths.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "pg_data",
            "pg_data/base",
            "pg_data/base/1",
            "pg_data/excluded_dir",
            "pg_data/global",
            "pg_data/linkdir",
            "pg_data/pg_replslot",
            "pg_data/pg_stat",
            "pg_data/pg_stat_tmp",
            "pg_data/pg_tblspc",
            "pg_data/pg_wal",
            "pg_data/pg_wal/archive_status",
            "pg_tblspc",
            "pg_tblspc/16400",
            "pg_tblspc/16400/PG_15_202209061",
            "pg_tblspc/16400/PG_15_202209061/5",
        ]
    );
    // page checksums for relations only
    let page = |n: &str| m.files[n].checksum_page;
    assert_eq!(page("pg_data/base/1/1234"), Some(true));
    assert_eq!(page("pg_data/base/1/5555_init"), Some(true));
    assert_eq!(page("pg_tblspc/16400/PG_15_202209061/5/777"), Some(true));
    assert_eq!(page("pg_data/global/1260"), Some(true));
    assert_eq!(page("pg_data/global/pg_control"), None);
    assert_eq!(page("pg_data/global/pg_filenode.map"), None);
    assert_eq!(page("pg_data/base/1/PG_VERSION"), None);
    assert_eq!(page("pg_data/postgresql.conf"), None);
    // zero-length files know their checksum, others do not yet
    assert_eq!(
        m.files["pg_data/base/1/5555_init"]
            .checksum
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some(EMPTY_SHA1)
    );
    assert_eq!(m.files["pg_data/base/1/1234"].checksum, None);
    assert_eq!(m.files["pg_data/pg_ident.conf"].size, 4);

    let t = &m.targets["pg_tblspc/16400"];
    assert_eq!(
        (
            t.path.as_str(),
            t.tablespace_id,
            t.tablespace_name.as_deref()
        ),
        (ts.as_str(), Some(16400), Some("ts1"))
    );
    assert_eq!(m.targets["pg_data"].path, data);
    let f = &m.targets["pg_data/pg_ident.conf"];
    assert_eq!(f.file.as_deref(), Some("pg_ident.conf"));
    assert!(f.path.ends_with("/ext/conf"), "{}", f.path);
    assert_eq!(m.targets["pg_data/linkdir"].file, None);
    let links: Vec<&str> = m.links.keys().map(String::as_str).collect();
    assert_eq!(
        links,
        [
            "pg_data/linkdir",
            "pg_data/pg_ident.conf",
            "pg_data/pg_tblspc/16400"
        ]
    );
    assert_eq!(m.links["pg_data/pg_tblspc/16400"].destination, ts);
    assert_eq!(
        notes,
        vec![
            Note::Info(format!(
                "exclude contents of '{data}/excluded_dir' from backup using 'excluded_dir/' exclusion"
            )),
            Note::Warn(format!(
                "exclude special file '{data}/pg_tblspc/16400/PG_15_202209061/5/sock' from backup"
            )),
            Note::Info(format!(
                "exclude '{data}/skip_me' from backup using 'skip_me' exclusion"
            )),
            Note::Warn(format!("exclude special file '{data}/zz_sock' from backup")),
        ]
    );
    // the result saves and loads (defaults derived from pg_data)
    let mut m = m;
    set_label(&mut m, "20260101-000000F");
    let bytes = m.to_bytes().unwrap();
    let back = Manifest::from_bytes(&bytes, "").unwrap();
    assert_eq!(back.files, m.files);
    assert_eq!(back.backup.reference, ["20260101-000000F"]);
}

#[test]
fn offline_keeps_wal_and_names_tablespaces_by_oid() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = fabricate(dir.path());
    let dd = datadir();
    let opts = BuildOptions {
        pg_path: &data,
        datadir: &dd,
        online: false,
        checksum_page: false,
        exclude: &[],
        tablespaces: None,
    };
    let mut m = empty_manifest(false);
    build_into(&PosixStorage::new("/"), &mut m, &opts).unwrap();
    assert!(
        m.files
            .contains_key("pg_data/pg_wal/000000010000000000000001")
    );
    assert!(
        m.files
            .contains_key("pg_data/pg_wal/archive_status/000000010000000000000001.ready")
    );
    assert_eq!(
        m.targets["pg_tblspc/16400"].tablespace_name.as_deref(),
        Some("ts16400")
    );
    assert!(m.files.values().all(|f| f.checksum_page.is_none()));
}

#[test]
fn link_rules_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = fabricate(dir.path());
    let dd = datadir();
    let storage = PosixStorage::new("/");
    let run = |data: &str| {
        let opts = BuildOptions {
            pg_path: data,
            datadir: &dd,
            online: true,
            checksum_page: true,
            exclude: &[],
            tablespaces: Some(&[(16400, "ts1".to_string())]),
        };
        build_into(&storage, &mut empty_manifest(true), &opts)
    };
    // a name a manifest line cannot hold is refused by the walk, naming it
    let odd = Path::new(&data).join("base/1/odd\nname");
    std::fs::write(&odd, b"x").unwrap();
    let err = run(&data).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Format);
    assert!(
        err.message()
            .contains(&format!("'{data}/base/1/odd\\nname'")),
        "{}",
        err.message()
    );
    std::fs::remove_file(&odd).unwrap();
    run(&data).unwrap();
    // skipped entries are never refused: a socket and a WAL file with such names
    std::os::unix::net::UnixListener::bind(Path::new(&data).join("odd\nsock")).unwrap();
    std::fs::write(Path::new(&data).join("pg_wal/odd\nwal"), b"x").unwrap();
    run(&data).unwrap();
    std::fs::remove_file(Path::new(&data).join("odd\nsock")).unwrap();
    std::fs::remove_file(Path::new(&data).join("pg_wal/odd\nwal")).unwrap();
    // a second link to the same directory
    let ext = dir.path().join("ext/dirlink");
    symlink(&ext, Path::new(&data).join("another")).unwrap();
    let err = run(&data).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LinkDestination);
    assert!(
        err.message()
            .contains("destination is the same directory as link"),
        "{}",
        err.message()
    );
    std::fs::remove_file(Path::new(&data).join("another")).unwrap();
    // a link into PGDATA
    symlink(
        Path::new(&data).join("pg_stat"),
        Path::new(&data).join("inside"),
    )
    .unwrap();
    let err = run(&data).unwrap_err();
    assert!(err.message().ends_with("is in PGDATA"), "{}", err.message());
    std::fs::remove_file(Path::new(&data).join("inside")).unwrap();
    // a subdirectory of another link's destination
    std::fs::create_dir_all(ext.join("sub")).unwrap();
    symlink(ext.join("sub"), Path::new(&data).join("nested")).unwrap();
    let err = run(&data).unwrap_err();
    assert!(
        err.message().contains("is a subdirectory of link"),
        "{}",
        err.message()
    );
    std::fs::remove_file(Path::new(&data).join("nested")).unwrap();
    // a link to a link
    symlink(Path::new(&data).join("linkdir"), dir.path().join("hop")).unwrap();
    symlink(dir.path().join("hop"), Path::new(&data).join("chain")).unwrap();
    let err = run(&data).unwrap_err();
    assert!(
        err.message().contains("cannot reference another link"),
        "{}",
        err.message()
    );
    std::fs::remove_file(Path::new(&data).join("chain")).unwrap();
    // a directory in pg_tblspc
    std::fs::create_dir(Path::new(&data).join("pg_tblspc/99")).unwrap();
    let err = run(&data).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LinkExpected);
    std::fs::remove_dir(Path::new(&data).join("pg_tblspc/99")).unwrap();
    // an unknown tablespace
    let opts = BuildOptions {
        pg_path: &data,
        datadir: &dd,
        online: true,
        checksum_page: true,
        exclude: &[],
        tablespaces: Some(&[]),
    };
    let err = build_into(&storage, &mut empty_manifest(true), &opts).unwrap_err();
    assert_eq!(
        err.message(),
        "tablespace with oid 16400 not found in tablespace map"
    );
    run(&data).unwrap();
}

fn file(size: u64, timestamp: i64) -> ManifestFile {
    ManifestFile::new(size, timestamp, 0o600, None, None)
}

fn stored(mut f: ManifestFile, sum: &str) -> ManifestFile {
    f.checksum = Some(sum.into());
    f.checksum_repo = Some(format!("r{sum}").into());
    f.size_repo = f.size / 2;
    f
}

fn prior_and_current() -> (Manifest, Manifest) {
    let mut prior = empty_manifest(true);
    set_label(&mut prior, "20260101-000000F");
    prior.backup.archive_stop = Some("000000010000000000000005".to_string());
    prior.cipher_pass = Some("sub".to_string());
    prior
        .files
        .insert("pg_data/same".into(), stored(file(10, 100), "a"));
    prior
        .files
        .insert("pg_data/touched".into(), stored(file(10, 100), "b"));
    prior
        .files
        .insert("pg_data/grown".into(), stored(file(10, 100), "c"));
    prior.files.insert("pg_data/empty".into(), file(0, 100));
    let mut old = stored(file(10, 90), "d");
    old.reference = Some("20251231-000000F".into());
    prior.files.insert("pg_data/old".into(), old);
    let mut current = empty_manifest(true);
    current.files.insert("pg_data/same".into(), file(10, 100));
    current
        .files
        .insert("pg_data/touched".into(), file(10, 150));
    current.files.insert("pg_data/grown".into(), file(20, 150));
    current.files.insert("pg_data/empty".into(), file(0, 150));
    current.files.insert("pg_data/old".into(), file(10, 90));
    current.files.insert("pg_data/new".into(), file(5, 150));
    (prior, current)
}

/// Files the copy skips, by [`unchanged`].
fn unchanged_names<'a>(m: &'a Manifest, plan: &IncrPlan) -> Vec<&'a str> {
    m.files
        .iter()
        .filter(|(_, f)| unchanged(f, plan.delta))
        .map(|(n, _)| n.as_str())
        .collect()
}

#[test]
fn incr_references_flattened_and_unchanged_skipped() {
    let (prior, mut current) = prior_and_current();
    assert_eq!(validate(&mut current, false, 200), None);
    assert_eq!(current.backup.timestamp_copy_start, 201);
    let mut from_text = current.clone();
    let plan = incr(
        &mut current,
        &LazyManifest::from(prior.clone()),
        BackupType::Incr,
        Some("000000010000000000000007"),
        false,
    )
    .unwrap();
    // the same prior read back from its stored text gives the same result
    let mut saved = prior.clone();
    saved.paths.insert(
        TARGET_PGDATA.to_string(),
        ManifestPath {
            mode: 0o700,
            user: None,
            group: None,
            extra: BTreeMap::new(),
        },
    );
    saved.targets.insert(
        TARGET_PGDATA.to_string(),
        ManifestTarget {
            target_type: TargetType::Path,
            path: "/pg".to_string(),
            file: None,
            tablespace_id: None,
            tablespace_name: None,
            extra: BTreeMap::new(),
        },
    );
    let stored = LazyManifest::from_plain(saved.to_bytes().unwrap(), "").unwrap();
    let plan_text = incr(
        &mut from_text,
        &stored,
        BackupType::Incr,
        Some("000000010000000000000007"),
        false,
    )
    .unwrap();
    assert_eq!(plan_text, plan);
    assert_eq!(from_text, current);
    assert!(!plan.delta);
    assert!(plan.warnings.is_empty());
    let unchanged = unchanged_names(&current, &plan);
    assert_eq!(unchanged, ["pg_data/empty", "pg_data/old", "pg_data/same"]);
    let f = &current.files;
    assert_eq!(
        f["pg_data/same"].reference.as_deref(),
        Some("20260101-000000F")
    );
    assert_eq!(
        f["pg_data/same"]
            .checksum
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("a")
    );
    assert_eq!(f["pg_data/same"].size_repo, 5);
    // a reference of the prior is kept as is (flattened)
    assert_eq!(
        f["pg_data/old"].reference.as_deref(),
        Some("20251231-000000F")
    );
    // same size, new mtime: copied again (without delta nothing is taken from the prior)
    assert_eq!(f["pg_data/touched"].reference, None);
    assert_eq!(f["pg_data/grown"].reference, None);
    assert_eq!(f["pg_data/new"].reference, None);
    assert_eq!(current.backup.prior.as_deref(), Some("20260101-000000F"));
    assert_eq!(current.cipher_pass.as_deref(), Some("sub"));
    assert_eq!(current.options.delta, Some(false));
    set_label(&mut current, "20260101-000000F_20260102-000000I");
    assert_eq!(
        current.backup.reference,
        ["20260101-000000F", "20260101-000000F_20260102-000000I"]
    );
}

#[test]
fn delta_is_forced_by_anomalies() {
    // timeline switch
    let (prior, mut current) = prior_and_current();
    validate(&mut current, false, 200);
    let plan = incr(
        &mut current,
        &LazyManifest::from(prior.clone()),
        BackupType::Diff,
        Some("000000020000000000000007"),
        false,
    )
    .unwrap();
    assert!(plan.delta);
    assert!(plan.warnings[0].starts_with("a timeline switch has occurred"));
    // with delta every referenced non-empty file is checked, none skipped but the empty one
    assert_eq!(unchanged_names(&current, &plan), ["pg_data/empty"]);
    assert_eq!(current.options.delta, Some(true));

    // online changed
    let (mut prior, mut current) = prior_and_current();
    prior.options.online = false;
    validate(&mut current, false, 200);
    let plan = incr(
        &mut current,
        &LazyManifest::from(prior.clone()),
        BackupType::Incr,
        None,
        false,
    )
    .unwrap();
    assert!(plan.warnings[0].starts_with("the online option has changed"));

    // a file older than in the prior backup
    let (prior, mut current) = prior_and_current();
    current.files.get_mut("pg_data/same").unwrap().timestamp = 50;
    validate(&mut current, false, 200);
    let plan = incr(
        &mut current,
        &LazyManifest::from(prior.clone()),
        BackupType::Incr,
        None,
        false,
    )
    .unwrap();
    assert_eq!(
        plan.warnings,
        [
            "file 'same' has timestamp earlier than prior backup (prior 100, current 50), enabling delta checksum"
        ]
    );

    // same mtime, other size
    let (prior, mut current) = prior_and_current();
    current.files.get_mut("pg_data/same").unwrap().size = 11;
    validate(&mut current, false, 200);
    let plan = incr(
        &mut current,
        &LazyManifest::from(prior.clone()),
        BackupType::Incr,
        None,
        false,
    )
    .unwrap();
    assert!(plan.delta);
    assert!(plan.warnings[0].contains("as prior but different size (prior 10, current 11)"));

    // a timestamp in the future of the copy start
    let (_, mut current) = prior_and_current();
    let warning = validate(&mut current, false, 120).unwrap();
    assert!(
        warning.contains("in the future (relative to copy start 120)"),
        "{warning}"
    );
    assert_eq!(current.options.delta, Some(true));
}

#[test]
fn bundled_empty_files_are_never_referenced() {
    let (prior, mut current) = prior_and_current();
    validate(&mut current, false, 200);
    let plan = incr(
        &mut current,
        &LazyManifest::from(prior.clone()),
        BackupType::Incr,
        None,
        true,
    )
    .unwrap();
    assert!(!unchanged_names(&current, &plan).contains(&"pg_data/empty"));
    assert_eq!(current.files["pg_data/empty"].reference, None);
}

#[test]
fn final_validation_lists_every_problem() {
    let mut m = empty_manifest(true);
    m.files.insert("pg_data/a".into(), file(10, 1));
    let mut z = file(0, 1);
    z.checksum = Some("abc".into());
    m.files.insert("pg_data/z".into(), z);
    let mut r = stored(file(10, 1), "x");
    r.size_repo = 0;
    m.files.insert("pg_data/r".into(), r);
    let err = validate_final(&m).unwrap_err();
    assert_eq!(
        err.message(),
        "manifest validation failed:\nmissing checksum for file 'pg_data/a'\nrepo size must be > 0 for file 'pg_data/r'\ninvalid checksum 'abc' for zero size file 'pg_data/z'"
    );
    m.files.clear();
    m.files
        .insert("pg_data/ok".into(), stored(file(10, 1), "x"));
    validate_final(&m).unwrap();
}

#[test]
fn names_map_both_ways() {
    assert_eq!(pg_relative("pg_data/base/1/2"), "base/1/2");
    assert_eq!(
        pg_relative("pg_tblspc/1/PG_15_1/5/6"),
        "pg_tblspc/1/PG_15_1/5/6"
    );
    assert_eq!(manifest_name("base/1/2"), "pg_data/base/1/2");
    assert_eq!(manifest_name("pg_tblspc/1/x"), "pg_tblspc/1/x");
    assert_eq!(path_absolute("../x/./y", "/a/b"), "/a/x/y");
    assert_eq!(path_absolute("/q/../r", "/a"), "/r");
}
