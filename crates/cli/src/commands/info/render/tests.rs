//! Rendering tests: real pgBackRest 2.45 output (tests/fixtures/info/, made with TZ=UTC) rebuilt
//! from the model byte for byte, plus the status, lock, cipher and escaping cases of `info.c`, with
//! expected text taken from pgBackRest's own unit tests where they cover the case.

use chrono::Utc;

use super::*;

const SYSTEM_ID: u64 = 7_711_938_428_110_036_608;

/// 2026-11-25 00:00:00 UTC, the day the samples were made.
const DAY: i64 = 1_795_564_800;

fn at(h: i64, m: i64, s: i64) -> i64 {
    DAY + h * 3600 + m * 60 + s
}

fn text(stanzas: &[StanzaData], req: &InfoRequest) -> String {
    render_text_in(stanzas, req, &Utc)
}

fn seg(n: u64) -> String {
    format!("{:08X}{:016X}", 1, n)
}

/// A backup as backup.info holds it; sizes are (size, delta, repo size, repo delta).
#[allow(clippy::too_many_arguments)]
fn backup(
    label: &str,
    backup_type: &str,
    reference: &[&str],
    start: i64,
    stop: i64,
    wal: (&str, &str),
    lsn: (&str, &str),
    sizes: (u64, u64, u64, u64),
    error: bool,
) -> BackupData {
    BackupData {
        label: label.to_string(),
        backup_type: backup_type.to_string(),
        prior: reference.last().map(|s| (*s).to_string()),
        reference: if reference.is_empty() {
            None
        } else {
            Some(reference.iter().map(|s| (*s).to_string()).collect())
        },
        archive_start: Some(wal.0.to_string()),
        archive_stop: Some(wal.1.to_string()),
        backrest_format: 5,
        backrest_version: "2.45".to_string(),
        db_id: 1,
        size: sizes.0,
        size_delta: sizes.1,
        repo_size: sizes.2,
        repo_size_delta: sizes.3,
        repo_size_map: None,
        timestamp_start: start,
        timestamp_stop: stop,
        error: Some(error),
        lsn_start: Some(lsn.0.to_string()),
        lsn_stop: Some(lsn.1.to_string()),
        annotation: None,
    }
}

fn history(
    id: u32,
    system_id: u64,
    version: &str,
    archive_id: &str,
    range: Option<(&str, &str)>,
) -> DbHistory {
    DbHistory {
        id,
        system_id,
        version: version.to_string(),
        archive: Ok(ArchiveRange {
            archive_id: archive_id.to_string(),
            min: range.map(|r| r.0.to_string()),
            max: range.map(|r| r.1.to_string()),
        }),
    }
}

fn loaded(
    key: u32,
    cipher: Cipher,
    db_history: Vec<DbHistory>,
    backups: Vec<BackupData>,
) -> RepoData {
    let db_current_id = db_history.last().map_or(1, |db| db.id);
    RepoData {
        key,
        cipher,
        state: RepoState::Loaded(Box::new(RepoStanza {
            db_current_id,
            db_history,
            backups,
            set_manifest: None,
        })),
    }
}

fn repo(key: u32, state: RepoState) -> RepoData {
    RepoData {
        key,
        cipher: Cipher::None,
        state,
    }
}

fn stanza(name: &str, repos: Vec<RepoData>) -> StanzaData {
    StanzaData {
        name: name.to_string(),
        backup_lock: BackupLock::default(),
        set_found: false,
        repos,
    }
}

fn pg15(range: Option<(&str, &str)>) -> Vec<DbHistory> {
    vec![history(1, SYSTEM_ID, "15", "15-1", range)]
}

fn full_range() -> Option<(&'static str, &'static str)> {
    Some(("000000010000000000000001", "000000020000000000000007"))
}

/// repo1 exactly as `backup.info.repo1.txt`.
fn repo1_backups() -> Vec<BackupData> {
    let f = "20261125-030019F";
    let d = "20261125-030019F_20261125-030028D";
    let i = "20261125-030019F_20261125-030031I";
    let mut annotated = backup(
        "20261125-030019F_20261125-030510I",
        "incr",
        &[f, d, i],
        1_795_575_910,
        1_795_575_913,
        (&seg(0x20), &seg(0x20)),
        ("0/20000028", "0/20000100"),
        (37_755_174, 9_240_874, 6_921_997, 3_159_980),
        true,
    );
    annotated.annotation = Some(vec![
        ("note".to_string(), "hello world".to_string()),
        ("source".to_string(), "research".to_string()),
    ]);
    vec![
        backup(
            f,
            "full",
            &[],
            1_795_575_619,
            1_795_575_622,
            (&seg(3), &seg(3)),
            ("0/3000028", "0/3000408"),
            (37_353_757, 37_353_757, 6_814_674, 6_814_674),
            false,
        ),
        backup(
            d,
            "diff",
            &[f],
            1_795_575_628,
            1_795_575_629,
            (&seg(5), &seg(5)),
            ("0/5000028", "0/5000100"),
            (37_443_874, 7_528_748, 6_842_205, 2_818_199),
            false,
        ),
        backup(
            i,
            "incr",
            &[f, d],
            1_795_575_631,
            1_795_575_633,
            (&seg(7), &seg(7)),
            ("0/7000028", "0/7000100"),
            (37_509_409, 6_979_877, 6_869_548, 2_793_902),
            false,
        ),
        annotated,
    ]
}

/// repo3 exactly as `backup.info.repo3-bundle.txt`.
fn repo3_backups() -> Vec<BackupData> {
    let f = "20261125-030115F";
    vec![
        backup(
            f,
            "full",
            &[],
            1_795_575_675,
            1_795_575_678,
            (&seg(0xA), &seg(0xB)),
            ("0/A000028", "0/B000050"),
            (37_517_603, 37_517_603, 6_868_581, 6_868_581),
            false,
        ),
        backup(
            "20261125-030115F_20261125-030120I",
            "incr",
            &[f],
            1_795_575_680,
            1_795_575_681,
            (&seg(0xD), &seg(0xD)),
            ("0/D000028", "0/D000100"),
            (37_591_331, 8_405_287, 6_896_539, 2_984_789),
            false,
        ),
    ]
}

/// Manifest details of the sample cluster (databases, links, tablespace).
fn sample_manifest(page_error_files: &[&str]) -> SetManifest {
    let db = |name: &str, oid: u64| SetDatabase {
        name: name.to_string(),
        oid,
    };
    let target =
        |name: &str, path: &str, file: Option<&str>, link: bool, ts: Option<(&str, u32)>| {
            SetTarget {
                name: name.to_string(),
                path: path.to_string(),
                file: file.map(str::to_string),
                link,
                tablespace_name: ts.map(|t| t.0.to_string()),
                tablespace_id: ts.map_or(0, |t| t.1),
            }
        };
    SetManifest {
        databases: vec![
            db("app", 16385),
            db("postgres", 5),
            db("template0", 4),
            db("template1", 1),
        ],
        targets: vec![
            target("pg_data", "/srv/demo/data", None, false, None),
            target(
                "pg_data/mylinkdir",
                "/srv/demo/ext/dirlink",
                None,
                true,
                None,
            ),
            target(
                "pg_data/pg_ident.conf",
                "/srv/demo/ext/conf",
                Some("pg_ident.conf"),
                true,
                None,
            ),
            target(
                "pg_tblspc/16384",
                "/srv/demo/ts1",
                None,
                true,
                Some(("ts1", 16384)),
            ),
        ],
        page_error_files: page_error_files.iter().map(|s| (*s).to_string()).collect(),
    }
}

/// Sizes that humanise to the given text (the exact byte counts of repos 2 and 4–7 are not in the
/// samples).
fn mb(x: f64) -> u64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let bytes = (x * 1_048_576.0) as u64;
    bytes + 1000
}

fn kb(x: f64) -> u64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let bytes = (x * 1024.0) as u64;
    bytes + 20
}

/// Compact form of a python-pretty-printed sample (keys are already sorted there).
fn compact(pretty: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(pretty).unwrap();
    serde_json::to_string(&value).unwrap()
}

#[allow(clippy::too_many_lines)]
fn all_repos_stanza() -> StanzaData {
    let lsn = ("0/0", "0/0");
    let simple_full =
        |label: &str, start: i64, stop: i64, wal: (u64, u64), size: f64, repo: f64| {
            backup(
                label,
                "full",
                &[],
                start,
                stop,
                (&seg(wal.0), &seg(wal.1)),
                lsn,
                (mb(size), mb(size), mb(repo), mb(repo)),
                false,
            )
        };

    let repo2 = vec![simple_full(
        "20261125-030109F",
        at(3, 1, 9),
        at(3, 1, 14),
        (9, 9),
        35.8,
        6.6,
    )];
    let f4 = "20261125-030122F";
    let i4a = "20261125-030122F_20261125-030127I";
    let i4b = "20261125-030122F_20261125-030131I";
    let repo4 = vec![
        simple_full(f4, at(3, 1, 22), at(3, 1, 25), (0xE, 0xF), 35.8, 10.0),
        backup(
            i4a,
            "incr",
            &[f4],
            at(3, 1, 27),
            at(3, 1, 29),
            (&seg(0x10), &seg(0x11)),
            lsn,
            (mb(35.9), kb(472.3), mb(10.0), kb(124.5)),
            false,
        ),
        backup(
            i4b,
            "incr",
            &[f4, i4a],
            at(3, 1, 31),
            at(3, 1, 33),
            (&seg(0x12), &seg(0x13)),
            lsn,
            (mb(35.9), kb(8.3), mb(10.0), 543),
            false,
        ),
        backup(
            "20261125-030122F_20261125-030135I",
            "incr",
            &[f4, i4a, i4b],
            at(3, 1, 35),
            at(3, 1, 37),
            (&seg(0x14), &seg(0x15)),
            lsn,
            (mb(35.9), kb(8.3), mb(10.0), 543),
            false,
        ),
    ];
    let repo5 = vec![simple_full(
        "20261125-030144F",
        at(3, 1, 44),
        at(3, 1, 49),
        (0x17, 0x17),
        35.9,
        6.0,
    )];
    let repo6 = vec![simple_full(
        "20261125-030150F",
        at(3, 1, 50),
        at(3, 1, 57),
        (0x18, 0x19),
        35.9,
        5.2,
    )];
    let f7 = "20261125-030552F";
    let mut f7_backup = simple_full(f7, at(3, 5, 52), at(3, 5, 57), (0x22, 0x22), 36.0, 36.0);
    f7_backup.error = Some(true);
    let repo7 = vec![
        simple_full(
            "20261125-030157F",
            at(3, 1, 57),
            at(3, 2, 2),
            (0x1A, 0x1B),
            35.9,
            35.9,
        ),
        f7_backup,
        backup(
            "20261125-030552F_20261125-030720I",
            "incr",
            &[f7],
            at(3, 7, 20),
            at(3, 7, 21),
            (&seg(0x24), &seg(0x24)),
            lsn,
            (mb(36.0), kb(872.3), mb(36.0), kb(872.3)),
            false,
        ),
    ];

    // Different WAL ranges per repo: the text shows the min and max over all of them
    let narrow = Some(("000000010000000000000002", "000000010000000000000030"));
    stanza(
        "demo",
        vec![
            loaded(1, Cipher::None, pg15(full_range()), repo1_backups()),
            loaded(2, Cipher::Aes256Cbc, pg15(narrow), repo2),
            loaded(3, Cipher::None, pg15(full_range()), repo3_backups()),
            loaded(4, Cipher::None, pg15(narrow), repo4),
            loaded(5, Cipher::None, pg15(narrow), repo5),
            loaded(6, Cipher::None, pg15(narrow), repo6),
            loaded(7, Cipher::None, pg15(narrow), repo7),
        ],
    )
}

#[test]
fn text_all_repos_matches_sample() {
    let expected = include_str!("../../../../tests/fixtures/info/info-text-all-repos.txt");
    let out = text(&[all_repos_stanza()], &InfoRequest::default());
    assert_eq!(out, expected);
}

#[test]
fn json_repo1_matches_sample() {
    let stanzas = [stanza(
        "demo",
        vec![loaded(1, Cipher::None, pg15(full_range()), repo1_backups())],
    )];
    let out = render_json(&stanzas, &InfoRequest::default());

    let pretty = include_str!("../../../../tests/fixtures/info/info-repo1.json");
    assert_eq!(out, compact(pretty));

    // The raw capture: one compact line (its first 400 bytes were kept), no trailing newline
    let raw = include_str!("../../../../tests/fixtures/info/info-repo1-raw-compact.json.txt");
    let raw_prefix = raw.lines().next().unwrap();
    assert_eq!(raw_prefix.len(), 400);
    assert!(out.starts_with(raw_prefix));
    assert!(!out.ends_with('\n'));
    assert_eq!(out.matches(' ').count(), 1); // only inside "hello world"
}

#[test]
fn json_set_repo3_matches_sample() {
    let set = "20261125-030115F_20261125-030120I";
    let mut repo3 = loaded(3, Cipher::None, pg15(full_range()), repo3_backups());
    if let RepoState::Loaded(state) = &mut repo3.state {
        state.set_manifest = Some(sample_manifest(&[]));
    }
    let mut data = stanza("demo", vec![repo3]);
    data.set_found = true;
    let req = InfoRequest {
        set: Some(set.to_string()),
        backup_type: None,
    };
    let out = render_json(&[data], &req);
    let pretty = include_str!("../../../../tests/fixtures/info/info-set-repo3.json");
    assert_eq!(out, compact(pretty));
}

fn set_page_errors_stanza() -> (StanzaData, InfoRequest) {
    let mut repo1 = loaded(1, Cipher::None, pg15(full_range()), repo1_backups());
    if let RepoState::Loaded(state) = &mut repo1.state {
        state.set_manifest = Some(sample_manifest(&["pg_data/base/5/16402"]));
    }
    let mut data = stanza("demo", vec![repo1]);
    data.set_found = true;
    let req = InfoRequest {
        set: Some("20261125-030019F_20261125-030510I".to_string()),
        backup_type: None,
    };
    (data, req)
}

#[test]
fn json_set_with_page_errors_matches_sample() {
    let (data, req) = set_page_errors_stanza();
    let out = render_json(&[data], &req);
    let pretty =
        include_str!("../../../../tests/fixtures/info/info-set-with-page-errors-repo1.json");
    assert_eq!(out, compact(pretty));
}

#[test]
fn text_set_shows_manifest_details() {
    let (data, req) = set_page_errors_stanza();
    let out = text(&[data], &req);
    assert_eq!(
        out,
        "stanza: demo\n\
         \x20   status: ok\n\
         \x20   cipher: none\n\
         \n\
         \x20   db (current)\n\
         \x20       wal archive min/max (15): 000000010000000000000001/000000020000000000000007\n\
         \n\
         \x20       incr backup: 20261125-030019F_20261125-030510I\n\
         \x20           timestamp start/stop: 2026-11-25 03:05:10 / 2026-11-25 03:05:13\n\
         \x20           wal start/stop: 000000010000000000000020 / 000000010000000000000020\n\
         \x20           lsn start/stop: 0/20000028 / 0/20000100\n\
         \x20           database size: 36MB, database backup size: 8.8MB\n\
         \x20           repo1: backup set size: 6.6MB, backup size: 3MB\n\
         \x20           backup reference list: 20261125-030019F, 20261125-030019F_20261125-030028D, 20261125-030019F_20261125-030031I\n\
         \x20           database list: app (16385), postgres (5)\n\
         \x20           symlinks:\n\
         \x20               mylinkdir => /srv/demo/ext/dirlink\n\
         \x20               pg_ident.conf => /srv/demo/ext/conf/pg_ident.conf\n\
         \x20           tablespaces:\n\
         \x20               ts1 (16384) => /srv/demo/ts1\n\
         \x20           error list: base/5/16402\n\
         \x20           annotation(s)\n\
         \x20               note: hello world\n\
         \x20               source: research\n"
    );
}

#[test]
fn no_stanzas() {
    assert_eq!(
        text(&[], &InfoRequest::default()),
        "No stanzas exist in the repository.\n"
    );
    assert_eq!(render_json(&[], &InfoRequest::default()), "[]");
}

#[test]
fn missing_stanza_path_has_no_cipher_line() {
    let stanzas = [stanza(
        "stanza1",
        vec![repo(2, RepoState::MissingStanzaPath)],
    )];
    assert_eq!(
        text(&stanzas, &InfoRequest::default()),
        "stanza: stanza1\n    status: error (missing stanza path)\n"
    );
    assert_eq!(
        render_json(&stanzas, &InfoRequest::default()),
        "[{\"archive\":[],\"backup\":[],\"cipher\":\"none\",\"db\":[],\"name\":\"stanza1\",\
         \"repo\":[{\"cipher\":\"none\",\"key\":2,\"status\":{\"code\":1,\"message\":\"missing stanza path\"}}],\
         \"status\":{\"code\":1,\"lock\":{\"backup\":{\"held\":false}},\"message\":\"missing stanza path\"}}]"
    );
}

#[test]
fn missing_stanza_data() {
    let stanzas = [stanza("s", vec![repo(1, RepoState::MissingStanzaData)])];
    assert_eq!(
        text(&stanzas, &InfoRequest::default()),
        "stanza: s\n    status: error (missing stanza data)\n    cipher: none\n"
    );
}

#[test]
fn no_valid_backups_with_lock_held() {
    let mut data = stanza(
        "stanza1",
        vec![loaded(
            1,
            Cipher::None,
            vec![history(1, 1, "9.4", "9.4-1", None)],
            vec![],
        )],
    );
    data.backup_lock.held = true;
    assert_eq!(
        text(std::slice::from_ref(&data), &InfoRequest::default()),
        "stanza: stanza1\n\
         \x20   status: error (no valid backups, backup/expire running)\n\
         \x20   cipher: none\n\
         \n\
         \x20   db (current)\n\
         \x20       wal archive min/max (9.4): none present\n"
    );
    let json = render_json(&[data], &InfoRequest::default());
    assert!(json.contains(
        "\"status\":{\"code\":2,\"lock\":{\"backup\":{\"held\":true}},\"message\":\"no valid backups\"}"
    ));
    assert!(json.contains("\"archive\":[{\"database\":{\"id\":1,\"repo-key\":1},\"id\":\"9.4-1\",\"max\":null,\"min\":null}]"));
}

#[test]
fn ok_with_lock_and_percent() {
    let mut data = stanza(
        "demo",
        vec![loaded(1, Cipher::None, pg15(full_range()), repo3_backups())],
    );
    data.backup_lock = BackupLock {
        held: true,
        percent_complete: Some(5505),
    };
    let out = text(std::slice::from_ref(&data), &InfoRequest::default());
    assert!(
        out.starts_with("stanza: demo\n    status: ok (backup/expire running - 55.05% complete)\n")
    );
    // 2.45 JSON has no progress field
    let json = render_json(&[data], &InfoRequest::default());
    assert!(json.contains("\"lock\":{\"backup\":{\"held\":true}}"));
    assert!(!json.contains("pct"));
}

#[test]
fn mixed_status_with_lock_and_per_repo_lines() {
    // As pgBackRest's own test "multiple stanzas, multi-repo ... backup lock held on one stanza"
    let mut data = stanza(
        "stanza2",
        vec![
            loaded(
                1,
                Cipher::None,
                vec![history(1, 1, "9.4", "9.4-1", None)],
                vec![],
            ),
            RepoData {
                key: 2,
                cipher: Cipher::Aes256Cbc,
                state: RepoState::MissingStanzaPath,
            },
        ],
    );
    data.backup_lock = BackupLock {
        held: true,
        percent_complete: Some(5555),
    };
    assert_eq!(
        text(&[data], &InfoRequest::default()),
        "stanza: stanza2\n\
         \x20   status: mixed (backup/expire running - 55.55% complete)\n\
         \x20       repo1: error (no valid backups)\n\
         \x20       repo2: error (missing stanza path)\n\
         \x20   cipher: mixed\n\
         \x20       repo1: none\n\
         \x20       repo2: aes-256-cbc\n\
         \n\
         \x20   db (current)\n\
         \x20       wal archive min/max (9.4): none present\n"
    );
}

#[test]
fn other_error_message_is_indented_per_line() {
    let err = RepoError {
        type_name: "CryptoError".to_string(),
        message: "unable to load info file 'x'\nHINT: is or was the repo encrypted?".to_string(),
    };
    // Several repos: "error (other)" then the message indented by 15
    let multi = stanza(
        "s",
        vec![
            repo(1, RepoState::Error(err.clone())),
            loaded(2, Cipher::None, pg15(None), vec![]),
        ],
    );
    assert_eq!(
        text(&[multi], &InfoRequest::default()),
        "stanza: s\n\
         \x20   status: mixed\n\
         \x20       repo1: error (other)\n\
         \x20              [CryptoError] unable to load info file 'x'\n\
         \x20              HINT: is or was the repo encrypted?\n\
         \x20       repo2: error (no valid backups)\n\
         \x20   cipher: none\n\
         \n\
         \x20   db (current)\n\
         \x20       wal archive min/max (15): none present\n"
    );
    // One repo: the message indented by 12 under "error (other)"
    let single = stanza("s", vec![repo(1, RepoState::Error(err))]);
    assert_eq!(
        text(std::slice::from_ref(&single), &InfoRequest::default()),
        "stanza: s\n\
         \x20   status: error (other)\n\
         \x20           [CryptoError] unable to load info file 'x'\n\
         \x20           HINT: is or was the repo encrypted?\n\
         \x20   cipher: none\n"
    );
    let json = render_json(&[single], &InfoRequest::default());
    assert!(json.contains(
        "\"status\":{\"code\":99,\"message\":\"[CryptoError] unable to load info file 'x'\\nHINT: is or was the repo encrypted?\"}"
    ));
    assert!(json.contains(
        "\"status\":{\"code\":99,\"lock\":{\"backup\":{\"held\":false}},\"message\":\"other\"}"
    ));
}

#[test]
fn repo_error_from_base_error_folds_hint() {
    let err = pgkeep_base::Error::new(pgkeep_base::ErrorKind::Crypto, "bad header")
        .with_hint("try --stanza");
    let repo_err = RepoError::from(&err);
    assert_eq!(
        repo_err.formatted(),
        "[CryptoError] bad header\nHINT: try --stanza"
    );
}

#[test]
fn database_mismatch_groups_prior_and_current() {
    // pgBackRest's test "multi-repo, database mismatch, repo2 stanza-upgrade needed"
    let old = 6_626_363_367_545_678_089;
    let new = 6_626_363_367_545_678_888;
    let sizes = (26_948_403, 26_948_403, 3_159_000, 3_159);
    let mut b1 = backup(
        "20201212-192538F",
        "full",
        &[],
        1_607_801_138,
        1_607_801_140,
        (&seg(2), &seg(3)),
        ("0/0", "0/0"),
        sizes,
        false,
    );
    b1.error = None;
    let mut b2 = backup(
        "20210112-192538F",
        "full",
        &[],
        1_610_479_538,
        1_610_479_540,
        (&seg(6), &seg(6)),
        ("0/0", "0/0"),
        sizes,
        false,
    );
    b2.db_id = 2;
    b2.error = None;
    let mut b3 = backup(
        "20201110-100000F",
        "full",
        &[],
        1_605_002_400,
        1_605_002_402,
        (&seg(1), &seg(2)),
        ("0/0", "0/0"),
        sizes,
        false,
    );
    b3.error = None;
    let data = stanza(
        "stanza3",
        vec![
            loaded(
                1,
                Cipher::None,
                vec![
                    history(1, old, "9.4", "9.4-1", Some((&seg(2), &seg(3)))),
                    history(2, new, "9.5", "9.5-2", Some((&seg(6), &seg(6)))),
                ],
                vec![b1, b2],
            ),
            loaded(
                2,
                Cipher::Aes256Cbc,
                vec![history(1, old, "9.4", "9.4-1", Some((&seg(1), &seg(2))))],
                vec![b3],
            ),
        ],
    );
    assert_eq!(
        text(std::slice::from_ref(&data), &InfoRequest::default()),
        "stanza: stanza3\n\
         \x20   status: error (database mismatch across repos)\n\
         \x20       repo1: ok\n\
         \x20       repo2: ok\n\
         \x20   cipher: mixed\n\
         \x20       repo1: none\n\
         \x20       repo2: aes-256-cbc\n\
         \n\
         \x20   db (prior)\n\
         \x20       wal archive min/max (9.4): 000000010000000000000001/000000010000000000000003\n\
         \n\
         \x20       full backup: 20201110-100000F\n\
         \x20           timestamp start/stop: 2020-11-10 10:00:00 / 2020-11-10 10:00:02\n\
         \x20           wal start/stop: 000000010000000000000001 / 000000010000000000000002\n\
         \x20           database size: 25.7MB, database backup size: 25.7MB\n\
         \x20           repo2: backup set size: 3MB, backup size: 3KB\n\
         \n\
         \x20       full backup: 20201212-192538F\n\
         \x20           timestamp start/stop: 2020-12-12 19:25:38 / 2020-12-12 19:25:40\n\
         \x20           wal start/stop: 000000010000000000000002 / 000000010000000000000003\n\
         \x20           database size: 25.7MB, database backup size: 25.7MB\n\
         \x20           repo1: backup set size: 3MB, backup size: 3KB\n\
         \n\
         \x20   db (current)\n\
         \x20       wal archive min/max (9.5): 000000010000000000000006/000000010000000000000006\n\
         \n\
         \x20       full backup: 20210112-192538F\n\
         \x20           timestamp start/stop: 2021-01-12 19:25:38 / 2021-01-12 19:25:40\n\
         \x20           wal start/stop: 000000010000000000000006 / 000000010000000000000006\n\
         \x20           database size: 25.7MB, database backup size: 25.7MB\n\
         \x20           repo1: backup set size: 3MB, backup size: 3KB\n"
    );
    let json = render_json(&[data], &InfoRequest::default());
    assert!(json.contains("\"message\":\"database mismatch across repos\"}"));
    assert!(json.contains("\"cipher\":\"mixed\""));
    // db history of both repos, oldest first per repo
    assert!(json.contains(
        "\"db\":[{\"id\":1,\"repo-key\":1,\"system-id\":6626363367545678089,\"version\":\"9.4\"},\
         {\"id\":2,\"repo-key\":1,\"system-id\":6626363367545678888,\"version\":\"9.5\"},\
         {\"id\":1,\"repo-key\":2,\"system-id\":6626363367545678089,\"version\":\"9.4\"}]"
    ));
    // no "error" key when backup.info has no backup-error
    assert!(!json.contains("\"error\""));
}

#[test]
fn requested_backup_not_found() {
    // pgBackRest's test "text, multi-repo, backup not found"
    let mut data = stanza(
        "stanza1",
        vec![
            loaded(1, Cipher::None, pg15(full_range()), repo1_backups()),
            loaded(2, Cipher::Aes256Cbc, pg15(full_range()), repo3_backups()),
        ],
    );
    data.set_found = false;
    let req = InfoRequest {
        set: Some("bogus".to_string()),
        backup_type: None,
    };
    assert_eq!(
        text(std::slice::from_ref(&data), &req),
        "stanza: stanza1\n\
         \x20   status: error (requested backup not found)\n\
         \x20   cipher: mixed\n\
         \x20       repo1: none\n\
         \x20       repo2: aes-256-cbc\n"
    );
    assert_eq!(
        render_json(&[data], &req),
        "[{\"archive\":[],\"backup\":[],\"cipher\":\"mixed\",\"db\":[],\"name\":\"stanza1\",\"repo\":[\
         {\"cipher\":\"none\",\"key\":1,\"status\":{\"code\":6,\"message\":\"requested backup not found\"}},\
         {\"cipher\":\"aes-256-cbc\",\"key\":2,\"status\":{\"code\":6,\"message\":\"requested backup not found\"}}],\
         \"status\":{\"code\":6,\"lock\":{\"backup\":{\"held\":false}},\"message\":\"requested backup not found\"}}]"
    );
}

#[test]
fn type_filter_keeps_only_that_type() {
    let data = stanza(
        "demo",
        vec![loaded(1, Cipher::None, pg15(full_range()), repo1_backups())],
    );
    let req = InfoRequest {
        set: None,
        backup_type: Some("incr".to_string()),
    };
    let out = text(&[data], &req);
    assert_eq!(out.matches(" backup: ").count(), 2);
    assert!(out.contains("incr backup: 20261125-030019F_20261125-030031I\n"));
    assert!(!out.contains("full backup"));
    assert!(!out.contains("diff backup"));
}

#[test]
fn merge_orders_by_stop_time_and_ties_go_to_earlier_repo() {
    let mk = |label: &str, stop: i64| {
        backup(
            label,
            "full",
            &[],
            stop - 1,
            stop,
            ("A", "B"),
            ("0/0", "0/0"),
            (1, 1, 1, 1),
            false,
        )
    };
    let data = stanza(
        "s",
        vec![
            loaded(
                1,
                Cipher::None,
                pg15(None),
                vec![mk("r1-a", 10), mk("r1-b", 30)],
            ),
            loaded(
                2,
                Cipher::None,
                pg15(None),
                vec![mk("r2-a", 10), mk("r2-b", 20)],
            ),
        ],
    );
    let json = render_json(&[data], &InfoRequest::default());
    let order: Vec<usize> = ["r1-a", "r2-a", "r2-b", "r1-b"]
        .iter()
        .map(|label| json.find(&format!("\"label\":\"{label}\"")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{json}");
}

#[test]
fn archive_lookup_error_keeps_earlier_history_entries() {
    let mut broken = history(2, SYSTEM_ID, "15", "15-2", None);
    broken.archive = Err(RepoError {
        type_name: "PathOpenError".to_string(),
        message: "unable to list file info for path '/r/archive/s/15-2': [13] Permission denied"
            .to_string(),
    });
    let data = stanza(
        "s",
        vec![loaded(
            1,
            Cipher::None,
            vec![history(1, SYSTEM_ID, "15", "15-1", full_range()), broken],
            repo1_backups(),
        )],
    );
    let json = render_json(std::slice::from_ref(&data), &InfoRequest::default());
    // pgBackRest lists the history entry, then fails looking up its archive id
    assert!(json.contains(
        "\"db\":[{\"id\":1,\"repo-key\":1,\"system-id\":7711938428110036608,\"version\":\"15\"},\
         {\"id\":2,\"repo-key\":1,\"system-id\":7711938428110036608,\"version\":\"15\"}]"
    ));
    assert!(json.contains("\"archive\":[{\"database\":{\"id\":1,\"repo-key\":1},\"id\":\"15-1\""));
    assert!(json.contains("\"backup\":[]"));
    assert!(json.contains("\"code\":99,\"message\":\"[PathOpenError] unable to list"));
    // The db section is still rendered from the entry listed before the failure
    let out = text(&[data], &InfoRequest::default());
    assert!(out.ends_with(
        "    cipher: none\n\n    db (current)\n        wal archive min/max (15): 000000010000000000000001/000000020000000000000007\n"
    ));
}

#[test]
fn json_escaping_follows_pgbackrest_writer() {
    let mut b = repo3_backups().remove(0);
    b.annotation = Some(vec![
        ("zeta".to_string(), "tab\there".to_string()),
        (
            "alpha".to_string(),
            "q\"b\\s/n\nr\rb\u{8}f\u{c}ctl\u{1}é".to_string(),
        ),
    ]);
    let data = stanza(
        "odd \"stanza\"",
        vec![loaded(1, Cipher::None, pg15(None), vec![b])],
    );
    let json = render_json(std::slice::from_ref(&data), &InfoRequest::default());
    assert!(json.contains("\"name\":\"odd \\\"stanza\\\"\""));
    // keys sorted, only the seven escapes, other control bytes and non-ASCII raw
    assert!(json.contains(
        "\"annotation\":{\"alpha\":\"q\\\"b\\\\s/n\\nr\\rb\\bf\\fctl\u{1}é\",\"zeta\":\"tab\\there\"}"
    ));
    // text (without --set) shows no annotation
    assert!(!text(&[data], &InfoRequest::default()).contains("annotation"));
}

#[test]
fn stanzas_sorted_by_name_and_separated_by_blank_line() {
    let stanzas = [
        stanza("b", vec![repo(1, RepoState::MissingStanzaPath)]),
        stanza("a", vec![repo(1, RepoState::MissingStanzaPath)]),
    ];
    assert_eq!(
        text(&stanzas, &InfoRequest::default()),
        "stanza: a\n    status: error (missing stanza path)\n\nstanza: b\n    status: error (missing stanza path)\n"
    );
    let json = render_json(&stanzas, &InfoRequest::default());
    assert!(json.find("\"name\":\"a\"").unwrap() < json.find("\"name\":\"b\"").unwrap());
}

#[test]
fn block_incremental_sizes() {
    let mut b = repo3_backups().remove(0);
    b.repo_size_map = Some(RepoSizeMap {
        size: 100,
        delta: 7,
    });
    b.repo_size_delta = 346;
    let data = stanza("s", vec![loaded(1, Cipher::None, pg15(None), vec![b])]);
    assert!(
        text(std::slice::from_ref(&data), &InfoRequest::default())
            .contains("            repo1: backup size: 346B\n")
    );
    assert!(
        render_json(&[data], &InfoRequest::default())
            .contains("\"repository\":{\"delta\":346,\"delta-map\":7,\"size-map\":100}")
    );
}

#[test]
fn size_format_matches_str_size_format() {
    use super::text::size_format;
    let cases = [
        (0, "0B"),
        (543, "543B"),
        (1023, "1023B"),
        (1024, "1KB"),
        (1280, "1.2KB"), // 1.25 rounds half to even, like printf
        (8499, "8.3KB"),
        (1_048_575, "1024.0KB"), // tenths digit 9 → one decimal, which rounds up
        (8_388_608, "8MB"),
        (8_441_037, "8MB"), // 8.05MB: tenths digit truncated to 0 → whole number
        (37_353_757, "35.6MB"),
        (6_814_674, "6.5MB"),
        (1_073_741_824, "1GB"),
        (1_610_612_736, "1.5GB"),
        (5_497_558_138_880, "5120GB"),
    ];
    for (size, expected) in cases {
        assert_eq!(size_format(size), expected, "size {size}");
    }
}

#[test]
fn local_time_zone_is_applied() {
    let data = stanza(
        "demo",
        vec![loaded(1, Cipher::None, pg15(None), repo3_backups())],
    );
    let plus_two = chrono::FixedOffset::east_opt(2 * 3600).unwrap();
    let out = render_text_in(&[data], &InfoRequest::default(), &plus_two);
    assert!(out.contains("timestamp start/stop: 2026-11-25 05:01:15 / 2026-11-25 05:01:18\n"));
}
