//! Manifest tests: real pgBackRest 2.45 manifests, the evidence excerpts, and manifests built in code.

use std::io::Read;

use super::*;
use crate::info::BackupInfo;
use crate::info::backup_info::BackupInfoEntry;

const GEN_FULL: &[u8] = include_bytes!("../../tests/fixtures/gen/repo1-full.manifest.gz");
const GEN_INCR: &[u8] = include_bytes!("../../tests/fixtures/gen/repo1-incr.manifest.gz");
const GEN_BUNDLE: &[u8] = include_bytes!("../../tests/fixtures/gen/repo2-bundle-incr.manifest.gz");
const GEN_INFO1: &[u8] = include_bytes!("../../tests/fixtures/gen/repo1-backup.info");
const GEN_INFO2: &[u8] = include_bytes!("../../tests/fixtures/gen/repo2-bundle-backup.info");

const EXCERPTS: [&[u8]; 4] = [
    include_bytes!("../../tests/fixtures/samples/manifest-full-repo1.excerpt"),
    include_bytes!("../../tests/fixtures/samples/manifest-incr-repo1.excerpt"),
    include_bytes!("../../tests/fixtures/samples/manifest-incr-bundle-repo3.excerpt"),
    include_bytes!("../../tests/fixtures/samples/manifest-incr-nocompress-repo7.excerpt"),
];

/// Every whole manifest of the fixtures (pgBackRest-made, excerpts re-checksummed), with a name.
pub(super) fn fixture_manifests() -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        ("repo1-full".to_string(), gunzip(GEN_FULL)),
        ("repo1-incr".to_string(), gunzip(GEN_INCR)),
        ("repo2-bundle-incr".to_string(), gunzip(GEN_BUNDLE)),
    ];
    for (idx, excerpt) in EXCERPTS.into_iter().enumerate() {
        out.push((format!("excerpt {idx}"), rechecksum_excerpt(excerpt)));
    }
    out
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// An excerpt without its comment lines and with a checksum recomputed over what remains; every remaining line is
/// verbatim pgBackRest output.
pub(super) fn rechecksum_excerpt(data: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(data).unwrap();
    let mut ini = Ini::new();
    let mut section = String::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            section = line[1..line.len() - 1].to_string();
            continue;
        }
        if section == "backrest" {
            continue;
        }
        // split at the first '=' whose remainder is JSON
        let mut pos = 0;
        let (key, value) = loop {
            let eq = pos + line[pos..].find('=').unwrap();
            if Json::parse(&line[eq + 1..]).is_ok() {
                break (&line[..eq], &line[eq + 1..]);
            }
            pos = eq + 1;
        };
        ini.section_mut(&section).push(key, value);
    }
    ini.render().unwrap()
}

#[test]
fn real_manifests_round_trip_byte_identically() {
    for gz in [GEN_FULL, GEN_INCR, GEN_BUNDLE] {
        let data = gunzip(gz);
        let manifest = Manifest::from_bytes(&data, "backup.manifest").unwrap();
        assert!(manifest.extra.sections.is_empty(), "{:?}", manifest.extra);
        assert!(manifest.files.values().all(|f| f.extra.is_none()));
        let saved = manifest.to_bytes().unwrap();
        assert!(saved == data, "re-saved manifest differs");
    }
}

#[test]
fn real_incr_manifest_values() {
    let m = Manifest::from_bytes(&gunzip(GEN_INCR), "").unwrap();
    assert_eq!(m.backrest_version, "2.45");
    assert_eq!(m.backup.backup_type, BackupType::Incr);
    assert_eq!(m.backup.prior.as_deref(), Some("20261125-043833F"));
    assert_eq!(
        m.backup.reference,
        vec!["20261125-043833F", "20261125-043833F_20261125-043844I"]
    );
    assert_eq!(m.options.compress_type, CompressType::Gz);
    assert_eq!(m.db.version.to_string(), "15");
    assert_eq!(
        m.annotation
            .as_ref()
            .unwrap()
            .get("note")
            .map(String::as_str),
        Some("fixture")
    );

    let odd = &m.files["pg_data/odd dir/we=ird \"name\".txt"];
    assert_eq!(odd.mode, 0o644);
    assert_eq!(odd.reference.as_deref(), Some("20261125-043833F"));
    assert_eq!(odd.user.as_deref(), Some("postgres"));
    assert!(m.files.contains_key("pg_data/ünï.txt"));

    let pg_data = &m.paths["pg_data"];
    assert_eq!(pg_data.mode, 0o700);
    assert_eq!(m.paths["pg_data/odd dir"].mode, 0o755);
    assert_eq!(m.targets["pg_data"].target_type, TargetType::Path);
    let ts = m
        .targets
        .values()
        .find(|t| t.tablespace_id.is_some())
        .unwrap();
    assert_eq!(ts.tablespace_name.as_deref(), Some("ts1"));
    assert!(m.links.contains_key("pg_data/mylinkdir"));
    assert!(m.databases.contains_key("app"));

    // zero-size files get the empty SHA-1 on load and keep no checksum key on save
    let (name, empty) = m.files.iter().find(|(_, f)| f.size == 0).unwrap();
    assert_eq!(
        empty.checksum.as_ref().map(ToString::to_string).as_deref(),
        Some(EMPTY_SHA1)
    );
    let text = String::from_utf8(m.to_bytes().unwrap()).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name}=")))
        .unwrap();
    assert!(!line.contains("\"checksum\""), "{line}");

    // files iterate in byte order
    let names: Vec<&String> = m.files.keys().collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn backup_info_entries_are_derived_exactly_from_real_manifests() {
    for (info, manifests) in [
        (GEN_INFO1, vec![GEN_FULL, GEN_INCR]),
        (GEN_INFO2, vec![GEN_BUNDLE]),
    ] {
        let info = BackupInfo::from_bytes(info, "").unwrap();
        for gz in manifests {
            let m = Manifest::from_bytes(&gunzip(gz), "").unwrap();
            let expected = &info.backups[&m.backup.label];
            assert_eq!(
                &BackupInfoEntry::from_manifest(&m),
                expected,
                "{}",
                m.backup.label
            );
        }
    }
}

#[test]
fn bundle_manifest_paths() {
    let m = Manifest::from_bytes(&gunzip(GEN_BUNDLE), "").unwrap();
    assert!(m.backup.bundle);
    let (name, bundled) = m
        .files
        .iter()
        .find(|(_, f)| f.bundle_id != 0 && f.reference.is_some())
        .unwrap();
    assert_eq!(
        m.file_repo_path("demo", name, bundled),
        format!(
            "backup/demo/{}/bundle/{}",
            bundled.reference.as_deref().unwrap(),
            bundled.bundle_id
        )
    );
    let (name, own) = m
        .files
        .iter()
        .find(|(_, f)| f.bundle_id == 0 && f.reference.is_none() && f.size > 0)
        .unwrap();
    assert_eq!(
        m.file_repo_path("demo", name, own),
        format!("backup/demo/{}/{name}.gz", m.backup.label)
    );
}

#[test]
fn excerpts_load_and_re_save_identically() {
    for (idx, excerpt) in EXCERPTS.into_iter().enumerate() {
        let data = rechecksum_excerpt(excerpt);
        let m = Manifest::from_bytes(&data, "").unwrap();
        assert!(m.extra.sections.is_empty(), "{idx}: {:?}", m.extra);
        assert_eq!(m.to_bytes().unwrap(), data, "excerpt {idx}");
    }
    let incr = Manifest::from_bytes(&rechecksum_excerpt(EXCERPTS[1]), "").unwrap();
    let broken = &incr.files["pg_data/base/5/16402"];
    assert_eq!(broken.checksum_page, Some(false));
    assert_eq!(
        broken.checksum_page_error.as_ref().unwrap().render(),
        "[[2,3],6]"
    );
    assert_eq!(
        incr.files["pg_data/odd dir/we=ird \"name\".txt"]
            .group
            .as_deref(),
        Some("root")
    );
    let none = Manifest::from_bytes(&rechecksum_excerpt(EXCERPTS[3]), "").unwrap();
    assert_eq!(none.options.compress_type, CompressType::None);
    let unowned = &none.files["pg_data/unowned.txt"];
    assert_eq!(unowned.user, None);
    assert_eq!(unowned.group, None);
    assert_eq!(unowned.size_repo, 1);
    let empty = &none.files["pg_data/empty_file"];
    assert_eq!(
        empty.checksum.as_ref().map(ToString::to_string).as_deref(),
        Some(EMPTY_SHA1)
    );
    assert_eq!(empty.user.as_deref(), Some("pgtest"));
    let bundle = Manifest::from_bytes(&rechecksum_excerpt(EXCERPTS[2]), "").unwrap();
    let vm = &bundle.files["pg_data/base/1/1247_vm"];
    assert_eq!((vm.bundle_id, vm.bundle_offset), (1, 2_795_249));
    let fsm = &bundle.files["pg_data/base/1/1247_fsm"];
    assert_eq!((fsm.bundle_id, fsm.bundle_offset), (2, 0));
}

#[test]
fn sample_checksums_of_complete_files_verify() {
    // the excerpts keep the checksum of the untrimmed original, which must therefore *not* verify
    for excerpt in EXCERPTS {
        let stripped: Vec<u8> = std::str::from_utf8(excerpt)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect();
        let err = Manifest::from_bytes(&stripped, "").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Checksum);
    }
}

fn sample_manifest() -> Manifest {
    let backup = ManifestBackup {
        label: "20261125-030019F_20261125-030031I".to_string(),
        prior: Some("20261125-030019F".to_string()),
        backup_type: BackupType::Incr,
        reference: vec![
            "20261125-030019F".to_string(),
            "20261125-030019F_20261125-030031I".to_string(),
        ],
        archive_start: Some("000000010000000000000007".to_string()),
        archive_stop: Some("000000010000000000000007".to_string()),
        lsn_start: Some("0/7000028".to_string()),
        lsn_stop: Some("0/7000100".to_string()),
        timestamp_copy_start: 1_795_575_632,
        timestamp_start: 1_795_575_631,
        timestamp_stop: 1_795_575_633,
        bundle: true,
        bundle_raw: false,
        block_incr: false,
    };
    let db = ManifestBackupDb {
        id: 1,
        system_id: 7_711_938_428_110_036_608,
        catalog_version: 202_209_061,
        control_version: 1300,
        version: "15".parse().unwrap(),
    };
    let options = ManifestOptions {
        archive_check: true,
        archive_copy: false,
        backup_standby: Some(false),
        buffer_size: Some(1_048_576),
        checksum_page: Some(true),
        compress_type: CompressType::Zst,
        compress_level: Some(3),
        compress_level_network: Some(3),
        delta: Some(false),
        hardlink: false,
        online: true,
        process_max: Some(2),
    };
    let mut m = Manifest::new(backup, db, options);
    let pg: Option<std::sync::Arc<str>> = Some("pg".into());
    m.targets.insert(
        "pg_data".to_string(),
        ManifestTarget {
            target_type: TargetType::Path,
            path: "/data".to_string(),
            file: None,
            tablespace_id: None,
            tablespace_name: None,
            extra: BTreeMap::new(),
        },
    );
    m.targets.insert(
        "pg_data/pg_ident.conf".to_string(),
        ManifestTarget {
            target_type: TargetType::Link,
            path: "/etc/pg".to_string(),
            file: Some("pg_ident.conf".to_string()),
            tablespace_id: None,
            tablespace_name: None,
            extra: BTreeMap::new(),
        },
    );
    m.targets.insert(
        "pg_tblspc/16384".to_string(),
        ManifestTarget {
            target_type: TargetType::Link,
            path: "/ts1".to_string(),
            file: None,
            tablespace_id: Some(16384),
            tablespace_name: Some("ts1".to_string()),
            extra: BTreeMap::new(),
        },
    );
    m.databases.insert(
        "postgres".to_string(),
        ManifestDb {
            id: 5,
            last_system_id: 4,
            extra: BTreeMap::new(),
        },
    );
    m.paths.insert(
        "pg_data".to_string(),
        ManifestPath {
            mode: 0o750,
            user: pg.clone(),
            group: pg.clone(),
            extra: BTreeMap::new(),
        },
    );
    m.paths.insert(
        "pg_data/odd dir".to_string(),
        ManifestPath {
            mode: 0o755,
            user: None,
            group: Some("root".into()),
            extra: BTreeMap::new(),
        },
    );
    m.links.insert(
        "pg_data/pg_ident.conf".to_string(),
        ManifestLink {
            destination: "/etc/pg/pg_ident.conf".to_string(),
            user: Some("root".into()),
            group: pg.clone(),
            extra: BTreeMap::new(),
        },
    );
    let mut plain = ManifestFile::new(3, 1_795_575_587, 0o640, pg.clone(), pg.clone());
    plain.checksum = Some("587b596f04f7db9c2cad3d6b87dd2b3a05de4f35".into());
    plain.checksum_repo = Some("b8b3ecfaf3ed3d6865df5807d66c5fd8cde3289e".into());
    plain.size_repo = 23;
    plain.reference = Some("20261125-030019F".into());
    plain.bundle_id = 1;
    m.files.insert("pg_data/PG_VERSION".to_string(), plain);
    let mut broken = ManifestFile::new(73_728, 1_795_575_909, 0o600, None, None);
    broken.checksum = Some("7e747f7abe29190e68abf044c18a211fa46ede28".into());
    broken.checksum_page = Some(false);
    broken.checksum_page_error = Some(Box::new(Json::parse("[[2,3],6]").unwrap()));
    broken.checksum_repo = Some("a1e28b30c5ac6d63e8846bc992d097518e721c88".into());
    broken.size_repo = 9053;
    broken.bundle_id = 2;
    broken.bundle_offset = 4096;
    m.files.insert("pg_data/base/5/16402".to_string(), broken);
    let mut blocks = ManifestFile::new(16_384, 1_795_575_909, 0o640, pg.clone(), pg.clone());
    blocks.checksum = Some("9890dd22d170e0de4f4d9404aba2557a33b9909b".into());
    blocks.block_incr = Some(Box::new(BlockIncr {
        size: 16_384,
        checksum_size: 7,
        map_size: 60,
    }));
    m.files.insert("pg_data/base/5/16500".to_string(), blocks);
    m.files.insert(
        "pg_data/odd dir/we=ird \"name\".txt".to_string(),
        ManifestFile::new(0, 1_795_575_909, 0o644, pg.clone(), Some("root".into())),
    );
    m.annotation = Some([("key".to_string(), "va\"lue/ü".to_string())].into());
    m.cipher_pass = Some("subpass".to_string());
    m
}

#[test]
fn built_manifest_saves_with_factored_defaults_and_loads_back() {
    let m = sample_manifest();
    let bytes = m.to_bytes().unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let expected = "[backrest]
backrest-format=5
backrest-version=\"2.45\"

[backup]
backup-archive-start=\"000000010000000000000007\"
backup-archive-stop=\"000000010000000000000007\"
backup-bundle=true
backup-label=\"20261125-030019F_20261125-030031I\"
backup-lsn-start=\"0/7000028\"
backup-lsn-stop=\"0/7000100\"
backup-prior=\"20261125-030019F\"
backup-reference=\"20261125-030019F,20261125-030019F_20261125-030031I\"
backup-timestamp-copy-start=1795575632
backup-timestamp-start=1795575631
backup-timestamp-stop=1795575633
backup-type=\"incr\"

[backup:db]
db-catalog-version=202209061
db-control-version=1300
db-id=1
db-system-id=7711938428110036608
db-version=\"15\"

[backup:option]
option-archive-check=true
option-archive-copy=false
option-backup-standby=false
option-buffer-size=1048576
option-checksum-page=true
option-compress=true
option-compress-level=3
option-compress-level-network=3
option-compress-type=\"zst\"
option-delta=false
option-hardlink=false
option-online=true
option-process-max=2

[backup:target]
pg_data={\"path\":\"/data\",\"type\":\"path\"}
pg_data/pg_ident.conf={\"file\":\"pg_ident.conf\",\"path\":\"/etc/pg\",\"type\":\"link\"}
pg_tblspc/16384={\"path\":\"/ts1\",\"tablespace-id\":\"16384\",\"tablespace-name\":\"ts1\",\"type\":\"link\"}

[cipher]
cipher-pass=\"subpass\"

[db]
postgres={\"db-id\":5,\"db-last-system-id\":4}

[metadata]
annotation={\"key\":\"va\\\"lue/ü\"}

[target:file]
pg_data/PG_VERSION={\"bni\":1,\"checksum\":\"587b596f04f7db9c2cad3d6b87dd2b3a05de4f35\",\"rck\":\"b8b3ecfaf3ed3d6865df5807d66c5fd8cde3289e\",\"reference\":\"20261125-030019F\",\"repo-size\":23,\"size\":3,\"timestamp\":1795575587}
pg_data/base/5/16402={\"bni\":2,\"bno\":4096,\"checksum\":\"7e747f7abe29190e68abf044c18a211fa46ede28\",\"checksum-page\":false,\"checksum-page-error\":[[2,3],6],\"group\":false,\"mode\":\"0600\",\"rck\":\"a1e28b30c5ac6d63e8846bc992d097518e721c88\",\"repo-size\":9053,\"size\":73728,\"timestamp\":1795575909,\"user\":false}
pg_data/base/5/16500={\"bi\":2,\"bic\":7,\"bim\":60,\"checksum\":\"9890dd22d170e0de4f4d9404aba2557a33b9909b\",\"size\":16384,\"timestamp\":1795575909}
pg_data/odd dir/we=ird \"name\".txt={\"group\":\"root\",\"mode\":\"0644\",\"size\":0,\"timestamp\":1795575909}

[target:file:default]
group=\"pg\"
mode=\"0640\"
user=\"pg\"

[target:link]
pg_data/pg_ident.conf={\"destination\":\"/etc/pg/pg_ident.conf\",\"user\":\"root\"}

[target:link:default]
group=\"pg\"
user=\"pg\"

[target:path]
pg_data={}
pg_data/odd dir={\"group\":\"root\",\"mode\":\"0755\",\"user\":false}

[target:path:default]
group=\"pg\"
mode=\"0750\"
user=\"pg\"

[backrest]
backrest-checksum=\"";
    assert!(text.starts_with(expected), "{text}");
    let back = Manifest::from_bytes(&bytes, "").unwrap();
    assert_eq!(back, m);
    assert_eq!(back.to_bytes().unwrap(), bytes);
    assert_eq!(
        m.file_repo_path(
            "demo",
            "pg_data/base/5/16500",
            &m.files["pg_data/base/5/16500"]
        ),
        "backup/demo/20261125-030019F_20261125-030031I/pg_data/base/5/16500.pgbi"
    );
}

#[test]
fn owner_defaults_can_be_false() {
    let mut m = sample_manifest();
    if let Some(p) = m.paths.get_mut("pg_data") {
        p.user = None;
        p.mode = 0o700;
    }
    let text = String::from_utf8(m.to_bytes().unwrap()).unwrap();
    assert!(text.contains("[target:file:default]\ngroup=\"pg\"\nmode=\"0600\"\nuser=false\n"));
    assert!(text.contains("[target:path:default]\ngroup=\"pg\"\nmode=\"0700\"\nuser=false\n"));
    // a file with mode 0640 now differs from the default 0600
    assert!(text.contains("pg_data/PG_VERSION={\"bni\":1,\"checksum\":\"587b596f04f7db9c2cad3d6b87dd2b3a05de4f35\",\"mode\":\"0640\","));
    let back = Manifest::from_bytes(text.as_bytes(), "").unwrap();
    assert_eq!(back, m);
}

#[test]
fn manifest_without_pg_data_path_cannot_be_saved() {
    let mut m = sample_manifest();
    m.paths.remove("pg_data");
    let err = m.to_bytes().unwrap_err();
    assert_eq!(
        err.message(),
        "unable to find 'pg_data' in manifest path list"
    );
}

fn edit(m: &Manifest, section: &str, key: &str, raw: Option<&str>) -> Vec<u8> {
    let mut ini = m.to_ini().unwrap();
    match raw {
        Some(raw) => ini.set(section, key, raw),
        None => {
            ini.take(section, key);
        }
    }
    ini.render().unwrap()
}

#[test]
fn load_errors() {
    let m = sample_manifest();
    let cases = [
        (
            edit(&m, "target:file", "pg_data/x", Some("{\"timestamp\":1}")),
            "missing size for file 'pg_data/x'",
        ),
        (
            edit(&m, "target:file", "pg_data/x", Some("{\"size\":1}")),
            "missing timestamp for file 'pg_data/x'",
        ),
        (
            edit(&m, "backup:target", "pg_data", None),
            "unable to find 'pg_data' in manifest target list",
        ),
        (
            edit(&m, "backup", "backup-label", None),
            "section 'backup', key 'backup-label' does not exist",
        ),
        (
            edit(
                &m,
                "backup:option",
                "option-compress-type",
                Some("\"lzma\""),
            ),
            "section 'backup:option', key 'option-compress-type': invalid compression type 'lzma'",
        ),
        (
            edit(&m, "target:file:default", "mode", None),
            "section 'target:file:default', key 'mode' does not exist (needed by 'pg_data/PG_VERSION')",
        ),
        (
            edit(&m, "target:path", "pg_data", Some("{\"mode\":\"07x0\"}")),
            "section 'target:path', key 'pg_data': invalid mode '07x0'",
        ),
        (
            edit(&m, "target:link", "pg_data/l", Some("{}")),
            "section 'target:link', key 'pg_data/l': required key 'destination' not found",
        ),
        (
            edit(
                &m,
                "target:file",
                "pg_data/x",
                Some("{\"size\":1,\"timestamp\":1,\"user\":true}"),
            ),
            "section 'target:file', key 'pg_data/x': field 'user' must be a name or false but found bool",
        ),
    ];
    for (data, message) in cases {
        let err = Manifest::from_bytes(&data, "").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Format, "{message}");
        assert_eq!(err.message(), message);
    }
}

#[test]
fn legacy_manifest_without_reference_list_derives_it() {
    let m = sample_manifest();
    let mut ini = m.to_ini().unwrap();
    ini.take("backup", "backup-reference");
    ini.take("backup:option", "option-compress-type");
    let back = Manifest::from_bytes(&ini.render().unwrap(), "").unwrap();
    assert_eq!(back.backup.reference, m.backup.reference);
    // option-compress=true without a type means gz
    assert_eq!(back.options.compress_type, CompressType::Gz);
}

#[test]
fn unknown_keys_and_sections_survive() {
    let m = sample_manifest();
    let mut ini = m.to_ini().unwrap();
    let raw = ini
        .get("target:file", "pg_data/PG_VERSION")
        .unwrap()
        .to_string();
    ini.set(
        "target:file",
        "pg_data/PG_VERSION",
        raw.replace("\"size\":3,", "\"size\":3,\"szo\":4,"),
    );
    ini.set("backup", "backup-zzz", "1");
    ini.set("future", "k", "\"v\"");
    let bytes = ini.render().unwrap();
    let back = Manifest::from_bytes(&bytes, "").unwrap();
    assert_eq!(
        back.files["pg_data/PG_VERSION"].extra.as_ref().unwrap()["szo"],
        Json::UInt(4)
    );
    assert_eq!(back.to_bytes().unwrap(), bytes);
}

/// A writer that takes at most `limit` bytes, then fails: streamed saves must report it.
struct ShortWriter {
    written: usize,
    limit: usize,
}

impl std::io::Write for ShortWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() > self.limit {
            return Err(std::io::Error::other("disk full"));
        }
        self.written += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn streamed_rendering_equals_the_held_one() {
    // real manifests (bundles, references, page errors, rck) and the built sample, with files the
    // direct JSON writer must render like Json::Object: block incremental, odd owners, kept keys
    let mut models: Vec<Manifest> = [GEN_FULL, GEN_INCR, GEN_BUNDLE]
        .iter()
        .map(|gz| Manifest::from_bytes(&gunzip(gz), "").unwrap())
        .collect();
    let mut m = sample_manifest();
    let mut odd = ManifestFile::new(16384, -5, 0o755, None, Some("g\"x".into()));
    odd.block_incr = Some(Box::new(BlockIncr {
        size: 16384,
        checksum_size: 7,
        map_size: 99,
    }));
    odd.bundle_id = 3;
    odd.checksum = Some("ab\\c".into());
    odd.checksum_page = Some(false);
    odd.checksum_page_error = Some(Box::new(Json::Array(vec![Json::UInt(1)])));
    odd.reference = Some("20260101-000000F".into());
    odd.size_repo = 1;
    m.files.insert("pg_data/odd".to_string(), odd);
    let mut kept = ManifestFile::new(0, 0, 0o600, None, None);
    kept.extra = Some(Box::new(BTreeMap::from([(
        "szo".to_string(),
        Json::UInt(4),
    )])));
    m.files.insert("pg_data/kept".to_string(), kept);
    models.push(m);
    for model in &models {
        let held = model.to_ini().unwrap().render().unwrap();
        assert!(model.to_bytes().unwrap() == held);
        let mut out = Vec::new();
        model.write_to(&mut out).unwrap();
        assert!(out == held);
        for (name, file) in &model.files {
            let (user, group, mode) = (Some("postgres"), None, 0o640);
            let mut direct = String::new();
            file.write_json(&mut direct, user, group, mode);
            assert_eq!(direct, file.to_json(user, group, mode).render(), "{name}");
        }
    }
    // a write error ends the render with the writer's error
    let big = &models[0];
    let err = big
        .write_to(&mut ShortWriter {
            written: 0,
            limit: 1000,
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FileWrite);
    assert!(err.message().contains("disk full"), "{}", err.message());
}

#[test]
fn file_entry_stays_small() {
    // a large manifest is mostly these: guard against a field that makes every entry bigger
    let size = std::mem::size_of::<ManifestFile>();
    assert!(size <= 168, "ManifestFile is {size} bytes");
}
