//! Behaviour of the parser against pgBackRest 2.45's rules, table-driven where possible.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity
)]

use std::path::Path;
use std::time::Duration;

use pgkeep_base::ErrorKind;
use pgkeep_config::{
    CommandId, CommandRole, Config, Group, OptionId, OptionType, ParseInput, Source, help, options,
    parse,
};

/// A sandbox with an optional main config file and include directory.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        if let Some(parent) = Path::new(&path).parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Input whose default main file is `main.conf` and include dir `conf.d` in the sandbox.
    fn input(&self, args: &[&str]) -> ParseInput {
        ParseInput {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            default_config: vec![self.path("pgkeep.conf"), self.path("pgbackrest.conf")],
            default_include_path: self.path("conf.d"),
        }
    }
}

fn ok_with(sandbox: &Sandbox, conf: &str, args: &[&str], env: &[(&str, &str)]) -> Config {
    sandbox.write("pgbackrest.conf", conf);
    let mut input = sandbox.input(args);
    input.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse(&input).unwrap_or_else(|e| panic!("{args:?}: {e} ({:?})", e.hint()))
}

fn ok(conf: &str, args: &[&str]) -> Config {
    ok_with(&Sandbox::new(), conf, args, &[])
}

fn fails_with(
    conf: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (ErrorKind, String, Option<String>) {
    let sandbox = Sandbox::new();
    sandbox.write("pgbackrest.conf", conf);
    let mut input = sandbox.input(args);
    input.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match parse(&input) {
        Ok(_) => panic!("{args:?} should fail"),
        Err(e) => (
            e.kind(),
            e.message().to_string(),
            e.hint().map(str::to_string),
        ),
    }
}

fn fails(conf: &str, args: &[&str]) -> (ErrorKind, String) {
    let (kind, message, _) = fails_with(conf, args, &[]);
    (kind, message)
}

const DEMO: &str = "[demo]\npg1-path=/var/lib/pg\n";

// ---------------------------------------------------------------------------------------------
// precedence

#[test]
fn precedence_command_line_then_pgkeep_env_then_pgbackrest_env_then_file_then_default() {
    let conf = "[global]\nlog-level-console=error\n";
    let cases: &[(&[&str], &[(&str, &str)], &str, Source)] = &[
        (&["info"], &[], "error", Source::ConfigFile),
        (
            &["info"],
            &[("PGBACKREST_LOG_LEVEL_CONSOLE", "info")],
            "info",
            Source::Env,
        ),
        (
            &["info"],
            &[
                ("PGBACKREST_LOG_LEVEL_CONSOLE", "info"),
                ("PGKEEP_LOG_LEVEL_CONSOLE", "debug"),
            ],
            "debug",
            Source::Env,
        ),
        (
            &["info", "--log-level-console=trace"],
            &[
                ("PGBACKREST_LOG_LEVEL_CONSOLE", "info"),
                ("PGKEEP_LOG_LEVEL_CONSOLE", "debug"),
            ],
            "trace",
            Source::CommandLine,
        ),
        (
            &["--reset-log-level-console", "info"],
            &[("PGKEEP_LOG_LEVEL_CONSOLE", "debug")],
            "warn",
            Source::Default,
        ),
    ];
    for (args, env, want, source) in cases {
        let cfg = ok_with(&Sandbox::new(), conf, args, env);
        assert_eq!(
            cfg.str(OptionId::LogLevelConsole),
            Some(*want),
            "{args:?} {env:?}"
        );
        assert_eq!(
            cfg.source(OptionId::LogLevelConsole, None),
            *source,
            "{args:?} {env:?}"
        );
    }
    let cfg = ok("", &["info"]);
    assert_eq!(cfg.str(OptionId::LogLevelConsole), Some("warn"));
    assert_eq!(cfg.source(OptionId::LogLevelConsole, None), Source::Default);
}

#[test]
fn sections_are_searched_stanza_command_then_stanza_then_global_command_then_global() {
    let full = "[global]\nprocess-max=1\n[global:backup]\nprocess-max=2\n[demo]\npg1-path=/pg\nprocess-max=3\n[demo:backup]\nprocess-max=4\n";
    let cases: &[(&str, i64)] = &[
        (full, 4),
        (
            "[global]\nprocess-max=1\n[global:backup]\nprocess-max=2\n[demo]\npg1-path=/pg\nprocess-max=3\n",
            3,
        ),
        (
            "[global]\nprocess-max=1\n[global:backup]\nprocess-max=2\n[demo]\npg1-path=/pg\n",
            2,
        ),
        ("[global]\nprocess-max=1\n[demo]\npg1-path=/pg\n", 1),
        ("[demo]\npg1-path=/pg\n[demo:restore]\nprocess-max=9\n", 1),
    ];
    for (conf, want) in cases {
        let cfg = ok(conf, &["--stanza=demo", "backup"]);
        assert_eq!(cfg.int(OptionId::ProcessMax), Some(*want), "{conf}");
    }
    // without a stanza only the global sections count
    let cfg = ok(
        full,
        &["expire"]
            .iter()
            .copied()
            .chain(["--stanza=other"])
            .collect::<Vec<_>>(),
    );
    assert!(cfg.valid(OptionId::Stanza));
}

// ---------------------------------------------------------------------------------------------
// command line syntax

#[test]
fn option_syntax_forms() {
    let cfg = ok(
        DEMO,
        &[
            "--stanza",
            "demo",
            "backup",
            "--type=full",
            "--process-max",
            "3",
            "--start-fast",
        ],
    );
    assert_eq!(cfg.command(), CommandId::Backup);
    assert_eq!(cfg.role(), CommandRole::Main);
    assert_eq!(cfg.str(OptionId::Stanza), Some("demo"));
    assert_eq!(cfg.str(OptionId::Type), Some("full"));
    assert_eq!(cfg.int(OptionId::ProcessMax), Some(3));
    assert!(cfg.bool(OptionId::StartFast));

    // booleans never consume the next argument
    let cfg = ok(DEMO, &["--stanza=demo", "--start-fast", "backup"]);
    assert_eq!(cfg.command(), CommandId::Backup);
    assert!(cfg.bool(OptionId::StartFast));
    let cfg = ok(DEMO, &["--stanza=demo", "--start-fast=n", "backup"]);
    assert!(!cfg.bool(OptionId::StartFast));
    assert_eq!(cfg.source(OptionId::StartFast, None), Source::CommandLine);
    let cfg = ok(
        "[global]\nstart-fast=y\n[demo]\npg1-path=/pg\n",
        &["--stanza=demo", "--no-start-fast", "backup"],
    );
    assert!(!cfg.bool(OptionId::StartFast));
    assert!(cfg.negated(OptionId::StartFast, None));
}

#[test]
fn unique_prefixes_are_accepted_and_ambiguous_ones_rejected() {
    let cfg = ok(
        DEMO,
        &["--stan=demo", "backup", "--process-m=2", "--repo1-pa=/r"],
    );
    assert_eq!(cfg.str(OptionId::Stanza), Some("demo"));
    assert_eq!(cfg.int(OptionId::ProcessMax), Some(2));
    assert_eq!(cfg.str_idx(OptionId::RepoPath, 1), Some("/r"));
    for arg in ["--re=x", "--proc=2"] {
        assert_eq!(
            fails(DEMO, &["--stanza=demo", "backup", arg]),
            (ErrorKind::OptionInvalid, format!("invalid option '{arg}'"))
        );
    }
}

#[test]
fn negate_and_reset_prefixes() {
    let conf = "[global]\narchive-async=y\nspool-path=/spool\n[demo]\npg1-path=/pg\n";
    let cfg = ok(
        conf,
        &[
            "--stanza=demo",
            "archive-push",
            "--no-archive-async",
            "/pg/pg_wal/x",
        ],
    );
    assert!(!cfg.bool(OptionId::ArchiveAsync));
    assert_eq!(cfg.params(), ["/pg/pg_wal/x"]);
    // spool-path depends on archive-async=y: now unresolved, so unset
    assert!(!cfg.is_set(OptionId::SpoolPath));

    let cfg = ok(
        conf,
        &[
            "--stanza=demo",
            "archive-push",
            "--reset-archive-async",
            "/x",
        ],
    );
    assert!(!cfg.bool(OptionId::ArchiveAsync));
    assert_eq!(cfg.source(OptionId::ArchiveAsync, None), Source::Default);
    assert!(cfg.was_reset(OptionId::ArchiveAsync, None));

    let cfg = ok(DEMO, &["--stanza=demo", "backup", "--no-online", "--force"]);
    assert!(!cfg.bool(OptionId::Online));
    assert!(cfg.bool(OptionId::Force));

    let cases: &[(&[&str], &str)] = &[
        (
            &["--no-stanza", "info"],
            "option 'no-stanza' cannot be negated",
        ),
        (
            &["--no-process-max", "info"],
            "option 'no-process-max' cannot be negated",
        ),
        (
            &["--reset-stanza", "info"],
            "option 'reset-stanza' cannot be reset",
        ),
        (
            &["--no-log-timestamp=n", "info"],
            "option 'no-log-timestamp' does not allow an argument",
        ),
        (
            &["--no-log-timestamp", "--no-log-timestamp", "info"],
            "option 'log-timestamp' is negated multiple times",
        ),
        (
            &["--reset-log-timestamp", "--reset-log-timestamp", "info"],
            "option 'log-timestamp' is reset multiple times",
        ),
        (
            &["--no-log-timestamp", "--reset-log-timestamp", "info"],
            "option 'log-timestamp' cannot be negated and reset",
        ),
        (
            &["--log-timestamp", "--no-log-timestamp", "info"],
            "option 'log-timestamp' cannot be set and negated",
        ),
        (
            &["--log-path=/a", "--reset-log-path", "info"],
            "option 'log-path' cannot be set and reset",
        ),
        (
            &["--log-path=/a", "--log-path=/b", "info"],
            "option 'log-path' cannot be set multiple times",
        ),
    ];
    for (args, message) in cases {
        assert_eq!(
            fails("", args),
            (ErrorKind::OptionInvalid, (*message).to_string()),
            "{args:?}"
        );
    }
}

#[test]
fn lists_and_hashes_repeat_in_order() {
    let cfg = ok(
        DEMO,
        &[
            "--stanza=demo",
            "restore",
            "--db-include=db1",
            "--db-include=db2",
            "--recovery-option=a=1",
            "--recovery-option=b=x=y",
            "--recovery-option=a=2",
            "--type=time",
            "--target=2024-01-01",
        ],
    );
    assert_eq!(cfg.list(OptionId::DbInclude), ["db1", "db2"]);
    assert_eq!(
        cfg.hash(OptionId::RecoveryOption),
        vec![
            ("a".to_string(), "2".to_string()),
            ("b".to_string(), "x=y".to_string())
        ]
    );

    let sandbox = Sandbox::new();
    let cfg = ok_with(
        &sandbox,
        "[global]\nexclude=a/\nexclude=b\n[demo]\npg1-path=/pg\n",
        &["--stanza=demo", "backup"],
        &[],
    );
    assert_eq!(cfg.list(OptionId::Exclude), ["a/", "b"]);

    let cfg = ok_with(
        &Sandbox::new(),
        DEMO,
        &["--stanza=demo", "restore"],
        &[("PGBACKREST_DB_INCLUDE", "x:y")],
    );
    assert_eq!(cfg.list(OptionId::DbInclude), ["x", "y"]);
    assert_eq!(cfg.source(OptionId::DbInclude, None), Source::Env);

    assert_eq!(
        fails(DEMO, &["--stanza=demo", "restore", "--link-map=nokey"]),
        (
            ErrorKind::OptionInvalid,
            "key/value 'nokey' not valid for 'link-map' option".to_string()
        )
    );
    assert_eq!(
        fails(
            "[global]\nprocess-max=1\nprocess-max=2\n[demo]\npg1-path=/pg\n",
            &["--stanza=demo", "backup"]
        ),
        (
            ErrorKind::OptionInvalid,
            "option 'process-max' cannot be set multiple times".to_string()
        )
    );
}

#[test]
fn command_roles_and_parameters() {
    let conf = "[global]\nspool-path=/spool\n[demo]\npg1-path=/pg\n";
    let cfg = ok(conf, &["--stanza=demo", "archive-push:async", "/pg/wal"]);
    assert_eq!(cfg.command(), CommandId::ArchivePush);
    assert_eq!(cfg.role(), CommandRole::Async);
    assert_eq!(cfg.params(), ["/pg/wal"]);

    let cfg = ok(
        conf,
        &[
            "--stanza=demo",
            "--process=1",
            "--remote-type=repo",
            "backup:local",
        ],
    );
    assert_eq!(cfg.role(), CommandRole::Local);
    assert_eq!(cfg.int(OptionId::Process), Some(1));

    let cases: &[(&[&str], ErrorKind, &str)] = &[
        (
            &["bogus"],
            ErrorKind::CommandInvalid,
            "invalid command 'bogus'",
        ),
        (
            &["backup:bogus"],
            ErrorKind::CommandInvalid,
            "invalid command role 'bogus'",
        ),
        (
            &["expire:async"],
            ErrorKind::CommandInvalid,
            "invalid command/role combination 'expire:async'",
        ),
        (
            &["backup:main"],
            ErrorKind::CommandInvalid,
            "invalid command role 'main'",
        ),
        (
            &["--stanza=demo"],
            ErrorKind::CommandRequired,
            "no command found",
        ),
        (
            &["--stanza=demo", "backup", "extra"],
            ErrorKind::ParamInvalid,
            "command does not allow parameters",
        ),
        (
            &["--bogus", "info"],
            ErrorKind::OptionInvalid,
            "invalid option '--bogus'",
        ),
        (
            &["-s", "info"],
            ErrorKind::OptionInvalid,
            "option '-s' must begin with --",
        ),
        (
            &["info", "--output"],
            ErrorKind::OptionInvalid,
            "option '--output' requires an argument",
        ),
        (
            &["--stanza=demo", "backup", "--output=json"],
            ErrorKind::OptionInvalid,
            "option 'output' not valid for command 'backup'",
        ),
        (
            &["--stanza=demo", "archive-push", "--repo=1", "/x"],
            ErrorKind::OptionInvalid,
            "option 'repo' not valid for command 'archive-push'",
        ),
        (
            &["--stanza=demo", "backup:local"],
            ErrorKind::OptionRequired,
            "backup command requires option: pg1-path",
        ),
        (
            &["--1repo-path=/x", "info"],
            ErrorKind::OptionInvalid,
            "invalid option '--1repo-path=/x'",
        ),
        (
            &["--1-path=/x", "info"],
            ErrorKind::OptionInvalid,
            "option '1-path' cannot begin with a number",
        ),
        (
            &["---x", "info"],
            ErrorKind::OptionInvalid,
            "option '-x' cannot begin with a dash",
        ),
        (
            &["--repo257-path=/x", "info"],
            ErrorKind::OptionInvalid,
            "option 'repo257-path' key exceeds maximum of 256",
        ),
        (
            &["--repo0-path=/x", "info"],
            ErrorKind::OptionInvalid,
            "option 'repo0-path' key must be between 1 and 256",
        ),
        (
            &["--stanza1-x=/x", "info"],
            ErrorKind::OptionInvalid,
            "invalid option '--stanza1-x=/x'",
        ),
        (
            &["--log1-path=/x", "info"],
            ErrorKind::OptionInvalid,
            "option 'log1-path' cannot have an index",
        ),
    ];
    for (args, kind, message) in cases {
        let (k, m) = fails("", args);
        assert_eq!((k, m.as_str()), (*kind, *message), "{args:?}");
    }
}

#[test]
fn no_arguments_and_help_forms() {
    let cfg = ok("", &[]);
    assert_eq!(cfg.command(), CommandId::Help);
    assert!(cfg.params().is_empty());

    let cfg = ok("", &["help"]);
    assert_eq!(cfg.command(), CommandId::Help);
    assert_eq!(cfg.help_command(), None);

    // help for a command resolves that command's options but does not require any
    let cfg = ok("[global]\nrepo1-path=/r\n", &["help", "backup", "type"]);
    assert_eq!(cfg.command(), CommandId::Help);
    assert_eq!(cfg.help_command(), Some(CommandId::Backup));
    assert_eq!(cfg.params(), ["backup", "type"]);
    assert_eq!(cfg.str_idx(OptionId::RepoPath, 1), Some("/r"));

    let cfg = ok("", &["version", "--stanza=x"]);
    assert_eq!(cfg.command(), CommandId::Version);
}

// ---------------------------------------------------------------------------------------------
// indexes

#[test]
fn indexed_options_and_group_indexes() {
    let conf = "[global]\nrepo3-path=/r3\nrepo1-path=/r1\nrepo3-retention-full=2\nrepo1-retention-full=1\n[demo]\npg1-path=/pg\npg2-path=/pg2\npg2-host=h2\n";
    let cfg = ok(conf, &["--stanza=demo", "backup"]);
    assert_eq!(cfg.indexes(Group::Repo), vec![1, 3]);
    assert_eq!(cfg.indexes(Group::Pg), vec![1, 2]);
    assert_eq!(cfg.str_idx(OptionId::RepoPath, 3), Some("/r3"));
    assert_eq!(cfg.str_idx(OptionId::RepoPath, 2), None);
    assert_eq!(cfg.int_idx(OptionId::RepoRetentionFull, 3), Some(2));
    assert_eq!(cfg.str_idx(OptionId::PgHost, 2), Some("h2"));
    assert!(!cfg.is_set_idx(OptionId::PgHost, 1));
    // defaults fill every configured index
    assert_eq!(cfg.str_idx(OptionId::RepoType, 3), Some("posix"));
    assert_eq!(cfg.int_idx(OptionId::PgPort, 2), Some(5432));
    assert_eq!(cfg.source(OptionId::PgPort, Some(2)), Source::Default);
    assert_eq!(cfg.source(OptionId::PgPath, Some(2)), Source::ConfigFile);
    // default index: first configured, or --repo
    assert_eq!(cfg.default_index(Group::Repo), 1);
    assert_eq!(cfg.str(OptionId::RepoPath), Some("/r1"));
    let cfg = ok(conf, &["--stanza=demo", "backup", "--repo=3"]);
    assert_eq!(cfg.default_index(Group::Repo), 3);
    assert_eq!(cfg.str(OptionId::RepoPath), Some("/r3"));
    assert_eq!(cfg.int(OptionId::Repo), Some(3));
    assert_eq!(
        fails(conf, &["--stanza=demo", "backup", "--repo=2"]),
        (
            ErrorKind::OptionInvalidValue,
            "key '2' is not valid for 'repo' option".to_string()
        )
    );
    assert_eq!(
        Config::option_name(OptionId::RepoPath, Some(2)),
        "repo2-path"
    );
    assert_eq!(
        Config::option_name(OptionId::PgHostPort, Some(12)),
        "pg12-host-port"
    );
    assert_eq!(Config::option_name(OptionId::RepoPath, None), "repo-path");
    assert_eq!(Config::option_name(OptionId::Stanza, Some(3)), "stanza");

    // nothing configured: index 1 with defaults
    let cfg = ok(DEMO, &["--stanza=demo", "backup"]);
    assert_eq!(cfg.indexes(Group::Repo), vec![1]);
    assert_eq!(
        cfg.str_idx(OptionId::RepoPath, 1),
        Some("/var/lib/pgbackrest")
    );

    // a lone repo2 stays repo2
    let cfg = ok(
        "[global]\nrepo2-path=/r2\n[demo]\npg1-path=/pg\n",
        &["--stanza=demo", "backup"],
    );
    assert_eq!(cfg.indexes(Group::Repo), vec![2]);
    assert_eq!(cfg.str(OptionId::RepoPath), Some("/r2"));

    // an index whose only value failed its dependency disappears
    let cfg = ok(
        "[global]\nrepo1-path=/r1\nrepo2-s3-bucket=b\n[demo]\npg1-path=/pg\n",
        &["--stanza=demo", "info"],
    );
    assert_eq!(cfg.indexes(Group::Repo), vec![1]);

    // pg1 is always part of the pg group
    let (kind, message, hint) =
        fails_with("[demo]\npg2-path=/pg2\n", &["--stanza=demo", "backup"], &[]);
    assert_eq!(kind, ErrorKind::OptionRequired);
    assert_eq!(message, "backup command requires option: pg1-path");
    assert_eq!(hint.as_deref(), Some("does this stanza exist?"));

    // repo-path without index is the deprecated spelling of repo1-path
    let cfg = ok("", &["info", "--repo-path=/x"]);
    assert_eq!(cfg.str_idx(OptionId::RepoPath, 1), Some("/x"));
    let (kind, message, _) = fails_with("", &["--stanza=demo", "check", "--pg-host=h"], &[]);
    assert_eq!(kind, ErrorKind::OptionInvalid);
    assert_eq!(message, "option 'pg-host' requires an index");
    let (_, message, hint) = fails_with("", &["info", "--repo-host=h"], &[]);
    assert_eq!(message, "option 'repo-host' requires an index");
    assert_eq!(
        hint.as_deref(),
        Some("add the required index, e.g. repo1-host.")
    );
}

// ---------------------------------------------------------------------------------------------
// deprecated names

#[test]
fn deprecated_names_map_to_current_options() {
    let conf = "[global]\nrepo-path=/old\nretention-full=3\nhardlink=y\narchive-queue-max=1GiB\n[demo]\ndb-path=/pg\ndb2-path=/pg2\ndb2-host=h\n";
    let cfg = ok(conf, &["--stanza=demo", "backup"]);
    assert_eq!(cfg.str_idx(OptionId::RepoPath, 1), Some("/old"));
    assert_eq!(cfg.int_idx(OptionId::RepoRetentionFull, 1), Some(3));
    assert!(cfg.bool_idx(OptionId::RepoHardlink, 1));
    assert_eq!(cfg.str_idx(OptionId::PgPath, 1), Some("/pg"));
    assert_eq!(cfg.str_idx(OptionId::PgPath, 2), Some("/pg2"));
    assert_eq!(cfg.str_idx(OptionId::PgHost, 2), Some("h"));

    let cfg = ok(conf, &["--stanza=demo", "archive-push", "/x"]);
    assert_eq!(cfg.int(OptionId::ArchivePushQueueMax), Some(1 << 30));

    let cfg = ok(
        "[global]\nrepo1-type=s3\nrepo1-s3-bucket=b\nrepo1-s3-endpoint=e\nrepo1-s3-region=r\nrepo1-s3-key=k\nrepo1-s3-key-secret=s\nrepo-s3-verify-ssl=n\nrepo1-s3-host=h\n",
        &["info"],
    );
    assert!(!cfg.bool_idx(OptionId::RepoStorageVerifyTls, 1));
    assert_eq!(cfg.str_idx(OptionId::RepoStorageHost, 1), Some("h"));

    let cases: &[(&str, &[&str], &str)] = &[
        (
            "",
            &["info", "--retention2-full=1"],
            "deprecated option 'retention2-full' cannot have an index",
        ),
        (
            "",
            &["info", "--repo-azure-host=h"],
            "deprecated option 'repo-azure-host' requires an index",
        ),
        (
            "[global]\nrepo-path=/a\nrepo1-path=/b\n",
            &["info"],
            "configuration file contains duplicate options ('repo1-path', 'repo-path') in section '[global]'",
        ),
    ];
    for (conf, args, message) in cases {
        assert_eq!(
            fails(conf, args),
            (ErrorKind::OptionInvalid, (*message).to_string()),
            "{args:?}"
        );
    }
    let (_, _, hint) = fails_with("", &["info", "--repo-azure-host=h"], &[]);
    assert_eq!(
        hint.as_deref(),
        Some(
            "add the required index, e.g. repo1-azure-host.\nHINT: consider using the non-deprecated name, e.g. repo1-storage-host."
        )
    );
}

// ---------------------------------------------------------------------------------------------
// secure options

#[test]
fn secure_options_are_rejected_on_the_command_line_only() {
    let (kind, message, hint) = fails_with("", &["info", "--repo1-cipher-pass=x"], &[]);
    assert_eq!(kind, ErrorKind::OptionInvalid);
    assert_eq!(
        message,
        "option 'repo1-cipher-pass' is not allowed on the command-line"
    );
    assert!(
        hint.unwrap()
            .starts_with("this option could expose secrets in the process list.")
    );
    for opt in [
        "--repo2-s3-key=x",
        "--repo1-s3-key-secret=x",
        "--repo1-s3-token=x",
        "--repo1-azure-key=x",
        "--repo1-gcs-key=x",
    ] {
        assert_eq!(
            fails("", &["info", opt]).0,
            ErrorKind::OptionInvalid,
            "{opt}"
        );
    }
    let cfg = ok_with(
        &Sandbox::new(),
        "[global]\nrepo1-cipher-type=aes-256-cbc\n",
        &["info"],
        &[("PGBACKREST_REPO1_CIPHER_PASS", "secret")],
    );
    assert_eq!(cfg.str_idx(OptionId::RepoCipherPass, 1), Some("secret"));
    assert!(
        cfg.option_summary()
            .contains("--repo1-cipher-pass=<redacted>")
    );
}

// ---------------------------------------------------------------------------------------------
// values

#[test]
fn typed_values() {
    let cfg = ok(
        "[global]\nbuffer-size=2MiB\narchive-timeout=0.5\nmanifest-save-threshold=5g\nrepo1-path=/repo/\n[demo]\npg1-path=/pg\n",
        &["--stanza=demo", "backup"],
    );
    assert_eq!(cfg.int(OptionId::BufferSize), Some(2 << 20));
    assert_eq!(
        cfg.time(OptionId::ArchiveTimeout),
        Some(Duration::from_millis(500))
    );
    assert_eq!(cfg.int(OptionId::ManifestSaveThreshold), Some(5 << 30));
    assert_eq!(cfg.str(OptionId::RepoPath), Some("/repo"));
    assert_eq!(
        cfg.display(OptionId::RepoPath, Some(1)).as_deref(),
        Some("/repo/")
    );
    assert_eq!(
        cfg.time(OptionId::DbTimeout),
        Some(Duration::from_secs(1800))
    );
    assert_eq!(
        cfg.time(OptionId::ProtocolTimeout),
        Some(Duration::from_secs(1830))
    );
    assert_eq!(cfg.int(OptionId::ArchiveTimeout), None);
    assert_eq!(cfg.str(OptionId::ProcessMax), None);
    assert!(!cfg.bool(OptionId::RepoPath));
    assert_eq!(cfg.str(OptionId::Output), None);
}

#[test]
fn bad_values_for_each_type() {
    let cases: &[(&str, &[&str], &[(&str, &str)], ErrorKind, &str)] = &[
        (
            DEMO,
            &["--stanza=demo", "backup", "--type=weekly"],
            &[],
            ErrorKind::OptionInvalidValue,
            "'weekly' is not allowed for 'type' option",
        ),
        (
            DEMO,
            &["--stanza=demo", "restore", "--type=full"],
            &[],
            ErrorKind::OptionInvalidValue,
            "'full' is not allowed for 'type' option",
        ),
        (
            "",
            &["info", "--buffer-size=3MiB"],
            &[],
            ErrorKind::OptionInvalidValue,
            "'3MiB' is not allowed for 'buffer-size' option",
        ),
        (
            "",
            &["info", "--buffer-size=lots"],
            &[],
            ErrorKind::OptionInvalidValue,
            "'lots' is not valid for 'buffer-size' option",
        ),
        (
            DEMO,
            &["--stanza=demo", "backup", "--process-max=abc"],
            &[],
            ErrorKind::OptionInvalidValue,
            "'abc' is not valid for 'process-max' option",
        ),
        (
            DEMO,
            &["--stanza=demo", "backup", "--process-max=1000"],
            &[],
            ErrorKind::OptionInvalidValue,
            "'1000' is out of range for 'process-max' option",
        ),
        (
            DEMO,
            &["--stanza=demo", "backup", "--process-max=0"],
            &[],
            ErrorKind::OptionInvalidValue,
            "'0' is out of range for 'process-max' option",
        ),
        (
            DEMO,
            &["--stanza=demo", "check", "--archive-timeout=0.01"],
            &[],
            ErrorKind::OptionInvalidValue,
            "'0.01' is out of range for 'archive-timeout' option",
        ),
        (
            DEMO,
            &["--stanza=demo", "check", "--archive-timeout=soon"],
            &[],
            ErrorKind::OptionInvalidValue,
            "'soon' is not valid for 'archive-timeout' option",
        ),
        (
            "",
            &["info", "--repo1-path=relative"],
            &[],
            ErrorKind::OptionInvalidValue,
            "'relative' must begin with / for 'repo1-path' option",
        ),
        (
            "",
            &["info", "--repo2-path=/a//b"],
            &[],
            ErrorKind::OptionInvalidValue,
            "'/a//b' cannot contain // for 'repo2-path' option",
        ),
        (
            "",
            &["info", "--stanza="],
            &[],
            ErrorKind::OptionInvalidValue,
            "'' must be >= 1 character for 'stanza' option",
        ),
        (
            "",
            &["info", "--log-timestamp=yes"],
            &[],
            ErrorKind::OptionInvalidValue,
            "boolean option '--log-timestamp' argument must be 'y' or 'n'",
        ),
        (
            "[global]\nlog-timestamp=true\n",
            &["info"],
            &[],
            ErrorKind::OptionInvalidValue,
            "boolean option 'log-timestamp' must be 'y' or 'n'",
        ),
        (
            "[global]\nlog-path=\n",
            &["info"],
            &[],
            ErrorKind::OptionInvalidValue,
            "section 'global', key 'log-path' must have a value",
        ),
        (
            "",
            &["info"],
            &[("PGBACKREST_LOG_TIMESTAMP", "1")],
            ErrorKind::OptionInvalidValue,
            "environment boolean option 'log-timestamp' must be 'y' or 'n'",
        ),
        (
            "",
            &["info"],
            &[("PGBACKREST_LOG_PATH", "")],
            ErrorKind::OptionInvalidValue,
            "environment variable 'log-path' must have a value",
        ),
        (
            "",
            &["info", "--repo1-type=sftp"],
            &[],
            ErrorKind::OptionInvalidValue,
            "'sftp' is not allowed for 'repo1-type' option",
        ),
        (
            "",
            &["info", "--output=yaml"],
            &[],
            ErrorKind::OptionInvalidValue,
            "'yaml' is not allowed for 'output' option",
        ),
        (
            DEMO,
            &["--stanza=demo", "verify", "--output=yaml"],
            &[],
            ErrorKind::OptionInvalidValue,
            "'yaml' is not allowed for 'output' option",
        ),
        (
            "[global]\nrepo1-bundle=y\nrepo1-bundle-size=1k\n[demo]\npg1-path=/pg\n",
            &["--stanza=demo", "backup"],
            &[],
            ErrorKind::OptionInvalidValue,
            "'1k' is out of range for 'repo1-bundle-size' option",
        ),
        (
            "[global]\nlog-level-console=loud\n",
            &["info"],
            &[],
            ErrorKind::OptionInvalidValue,
            "'loud' is not allowed for 'log-level-console' option",
        ),
        (
            "[global\n",
            &["info"],
            &[],
            ErrorKind::Format,
            "ini section should end with ] at line 1: [global",
        ),
    ];
    for (conf, args, env, kind, message) in cases {
        let (k, m, _) = fails_with(conf, args, env);
        assert_eq!((k, m.as_str()), (*kind, *message), "{args:?} {conf:?}");
    }
}

#[test]
fn depend_rules() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--stanza=demo", "restore", "--target=x"],
            "option 'target' not valid without option 'type' in ('lsn', 'name', 'time', 'xid')",
        ),
        (
            &[
                "--stanza=demo",
                "restore",
                "--type=default",
                "--target-action=promote",
            ],
            "option 'target-action' not valid without option 'type' in ('immediate', 'lsn', 'name', 'time', 'xid')",
        ),
        (
            &["--stanza=demo", "backup", "--force"],
            "option 'force' not valid without option 'no-online'",
        ),
        (
            &["--stanza=demo", "archive-push", "--spool-path=/s", "/x"],
            "option 'spool-path' not valid without option 'archive-async'",
        ),
        (
            &["info", "--set=20240101-000000F"],
            "option 'set' not valid without option 'stanza'",
        ),
        (
            &["info", "--repo1-host-user=u"],
            "option 'repo1-host-user' not valid without option 'repo1-host'",
        ),
        (
            &["info", "--repo1-s3-bucket=b"],
            "option 'repo1-s3-bucket' not valid without option 'repo1-type' = 's3'",
        ),
        (
            &["--stanza=demo", "backup", "--repo1-bundle-size=5MiB"],
            "option 'repo1-bundle-size' not valid without option 'repo1-bundle'",
        ),
        (
            &[
                "--stanza=demo",
                "backup",
                "--repo1-bundle",
                "--repo1-hardlink",
            ],
            "option 'repo1-hardlink' not valid without option 'no-repo1-bundle'",
        ),
    ];
    for (args, message) in cases {
        let (k, m) = fails(DEMO, args);
        assert_eq!(
            (k, m.as_str()),
            (ErrorKind::OptionInvalid, *message),
            "{args:?}"
        );
    }
    // from a config file an unmet dependency just leaves the option unset
    let cfg = ok(
        "[global]\nrepo1-hardlink=y\nrepo1-bundle=y\n[demo]\npg1-path=/pg\n",
        &["--stanza=demo", "backup"],
    );
    assert!(!cfg.bool_idx(OptionId::RepoHardlink, 1));
    // a dependency default applies when unmet: archive-check is off for offline backups
    let cfg = ok(DEMO, &["--stanza=demo", "backup", "--no-online"]);
    assert!(cfg.is_set(OptionId::ArchiveCheck));
    assert!(!cfg.bool(OptionId::ArchiveCheck));
    let cfg = ok(DEMO, &["--stanza=demo", "backup"]);
    assert!(cfg.bool(OptionId::ArchiveCheck));
    // met dependencies
    let cfg = ok(
        DEMO,
        &[
            "--stanza=demo",
            "restore",
            "--type=time",
            "--target=2024-01-01 00:00:00",
            "--target-action=promote",
        ],
    );
    assert_eq!(cfg.str(OptionId::Target), Some("2024-01-01 00:00:00"));
    assert_eq!(cfg.str(OptionId::TargetAction), Some("promote"));
    let cfg = ok(DEMO, &["--stanza=demo", "restore"]);
    assert_eq!(cfg.str(OptionId::Type), Some("default"));
    assert_eq!(cfg.str(OptionId::Set), Some("latest"));
    assert!(!cfg.is_set(OptionId::TargetAction));
}

#[test]
fn beta_options_need_beta() {
    let (kind, message, hint) = fails_with(
        DEMO,
        &["--stanza=demo", "backup", "--repo1-bundle", "--repo1-block"],
        &[],
    );
    assert_eq!(kind, ErrorKind::OptionInvalid);
    assert_eq!(
        message,
        "option 'repo1-block' is not valid without option 'beta'"
    );
    assert_eq!(
        hint.as_deref(),
        Some("beta features require the --beta option to prevent accidental usage.")
    );
    let cfg = ok(
        DEMO,
        &[
            "--stanza=demo",
            "backup",
            "--repo1-bundle",
            "--repo1-block",
            "--beta",
        ],
    );
    assert!(cfg.bool_idx(OptionId::RepoBlock, 1));
    assert_eq!(
        cfg.int_idx(OptionId::RepoBlockSizeSuper, 1),
        Some(256 << 10)
    );
}

#[test]
fn required_options() {
    let cases: &[(&str, &[&str], &str, Option<&str>)] = &[
        (
            "",
            &["stanza-create"],
            "stanza-create command requires option: stanza",
            None,
        ),
        (
            "",
            &["backup"],
            "backup command requires option: stanza",
            None,
        ),
        (
            "",
            &["--stanza=demo", "backup"],
            "backup command requires option: pg1-path",
            Some("does this stanza exist?"),
        ),
        (
            "",
            &["--stanza=demo", "annotate", "--set=x"],
            "annotate command requires option: annotation",
            None,
        ),
        (
            "[global]\nrepo1-type=s3\n",
            &["info"],
            "info command requires option: repo1-s3-bucket",
            None,
        ),
        (
            "",
            &["server"],
            "server command requires option: tls-server-auth",
            None,
        ),
        (
            "[global]\nrepo1-path=/a\nrepo2-path=/b\n[demo]\npg1-path=/pg\n",
            &["--stanza=demo", "stanza-delete"],
            "stanza-delete command requires option: repo",
            Some("this command requires a specific repository to operate on"),
        ),
    ];
    for (conf, args, message, hint) in cases {
        let (k, m, h) = fails_with(conf, args, &[]);
        assert_eq!(k, ErrorKind::OptionRequired, "{args:?}");
        assert_eq!(m, *message);
        assert_eq!(h.as_deref(), *hint);
    }
    // optional for these commands
    for args in [&["info"][..], &["repo-ls"], &["start"], &["stop"]] {
        ok("", args);
    }
}

// ---------------------------------------------------------------------------------------------
// configuration files

#[test]
fn config_file_warnings() {
    let conf = "[global]\nbogus=1\nstanza=x\nno-log-timestamp=y\npg1-path=/pg\n[global:backup]\nrecovery-option=a=b\n[demo]\npg1-path=/pg\n[demo:backup]\narchive-mode=off\n";
    let cfg = ok(conf, &["--stanza=demo", "backup"]);
    let want = [
        "configuration file contains option 'archive-mode' invalid for section 'demo:backup'",
        "configuration file contains option 'recovery-option' invalid for section 'global:backup'",
        "configuration file contains invalid option 'bogus'",
        "configuration file contains command-line only option 'stanza'",
        "configuration file contains negate option 'no-log-timestamp'",
        "configuration file contains stanza-only option 'pg1-path' in global section 'global'",
    ];
    for w in want {
        assert!(
            cfg.warnings().iter().any(|x| x == w),
            "missing {w:?} in {:?}",
            cfg.warnings()
        );
    }
    let cfg = ok_with(
        &Sandbox::new(),
        "",
        &["info"],
        &[("PGBACKREST_BOGUS", "1"), ("PGKEEP_NO_LOG_TIMESTAMP", "y")],
    );
    assert!(
        cfg.warnings()
            .contains(&"environment contains invalid option 'bogus'".to_string())
    );
    assert!(
        cfg.warnings()
            .contains(&"environment contains invalid negate option 'no-log-timestamp'".to_string())
    );
    // pgkeep's own variables that are not options are neither read nor warned about
    let cfg = ok_with(
        &Sandbox::new(),
        "",
        &["info"],
        &[(pgkeep_config::PGKEEP_PROGRESS, "1")],
    );
    assert!(cfg.warnings().is_empty(), "{:?}", cfg.warnings());
}

#[test]
fn include_directory_is_read_in_name_order() {
    let sandbox = Sandbox::new();
    sandbox.write("pgbackrest.conf", "[global]\nlog-level-file=warn\n");
    sandbox.write("conf.d/b.conf", "[global]\nlog-subprocess=y\n");
    sandbox.write(
        "conf.d/a.conf",
        "[global]\nlog-path=/from-a\nlock-path=/lock-a\n",
    );
    sandbox.write("conf.d/ignored.txt", "[global]\nlog-level-console=error\n");
    let cfg = parse(&sandbox.input(&["info"])).unwrap();
    assert_eq!(cfg.str(OptionId::LogPath), Some("/from-a"));
    assert!(cfg.bool(OptionId::LogSubprocess));
    assert_eq!(cfg.str(OptionId::LogLevelFile), Some("warn"));
    assert_eq!(cfg.str(OptionId::LogLevelConsole), Some("warn"));
    assert_eq!(cfg.str(OptionId::LockPath), Some("/lock-a"));
    assert_eq!(cfg.config_files().len(), 3);
    assert!(cfg.config_files()[1].ends_with("conf.d/a.conf"));
    assert!(cfg.config_files()[2].ends_with("conf.d/b.conf"));
}

#[test]
fn repeated_key_across_include_files_is_an_error_for_single_values() {
    let sandbox = Sandbox::new();
    sandbox.write("conf.d/a.conf", "[global]\nlog-path=/a\n");
    sandbox.write("conf.d/b.conf", "[global]\nlog-path=/b\n");
    let e = parse(&sandbox.input(&["info"])).unwrap_err();
    assert_eq!(
        e.message(),
        "option 'log-path' cannot be set multiple times"
    );
}

#[test]
fn config_options_choose_files() {
    let sandbox = Sandbox::new();
    sandbox.write("pgbackrest.conf", "[global]\nlog-path=/main\n");
    sandbox.write("conf.d/x.conf", "[global]\nlog-level-file=debug\n");
    sandbox.write("other.conf", "[global]\nlog-path=/other\n");
    sandbox.write("alt/pgbackrest.conf", "[global]\nlog-path=/alt\n");
    sandbox.write("alt/conf.d/y.conf", "[global]\nlog-level-file=trace\n");
    sandbox.write("inc/z.conf", "[global]\nlog-level-file=error\n");

    let get = |args: &[&str]| {
        let cfg = parse(&sandbox.input(args)).unwrap();
        (
            cfg.str(OptionId::LogPath).map(str::to_string),
            cfg.str(OptionId::LogLevelFile).map(str::to_string),
        )
    };
    let other = sandbox.path("other.conf");
    let alt = sandbox.path("alt");
    let inc = sandbox.path("inc");
    let s = |v: &str| Some(v.to_string());

    // defaults: main file and include dir
    assert_eq!(get(&["info"]), (s("/main"), s("debug")));
    // --config alone: only that file
    assert_eq!(
        get(&["info", &format!("--config={other}")]),
        (s("/other"), s("info"))
    );
    // --config-path moves both defaults
    assert_eq!(
        get(&["info", &format!("--config-path={alt}")]),
        (s("/alt"), s("trace"))
    );
    // --config + --config-path: the file and <path>/conf.d
    assert_eq!(
        get(&[
            "info",
            &format!("--config={other}"),
            &format!("--config-path={alt}")
        ]),
        (s("/other"), s("trace"))
    );
    // --config-include-path: default main file plus that dir
    assert_eq!(
        get(&["info", &format!("--config-include-path={inc}")]),
        (s("/main"), s("error"))
    );
    // --no-config alone: nothing
    assert_eq!(
        get(&["info", "--no-config"]),
        (s("/var/log/pgbackrest"), s("info"))
    );
    // --no-config with an include path: only the include dir
    assert_eq!(
        get(&[
            "info",
            "--no-config",
            &format!("--config-include-path={inc}")
        ]),
        (s("/var/log/pgbackrest"), s("error"))
    );

    // the first existing default candidate wins
    sandbox.write("pgkeep.conf", "[global]\nlog-path=/pgkeep\n");
    assert_eq!(get(&["info"]), (s("/pgkeep"), s("debug")));

    // environment can name the config file too
    let mut input = sandbox.input(&["info"]);
    input.env = vec![("PGBACKREST_CONFIG".to_string(), other.clone())];
    assert_eq!(
        parse(&input).unwrap().str(OptionId::LogPath),
        Some("/other")
    );

    let missing = sandbox.path("missing.conf");
    let e = parse(&sandbox.input(&["info", &format!("--config={missing}")])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FileMissing);
    assert_eq!(
        e.message(),
        format!("unable to open missing file '{missing}' for read")
    );
    let missing_dir = sandbox.path("nodir");
    let e = parse(&sandbox.input(&["info", &format!("--config-include-path={missing_dir}")]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PathMissing);
    assert_eq!(
        e.message(),
        format!("unable to list file info for missing path '{missing_dir}'")
    );
}

#[test]
fn real_pgbackrest_conf_for_info_and_backup() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pgbackrest.conf"
    ))
    .unwrap();
    let sandbox = Sandbox::new();

    let cfg = ok_with(&sandbox, &text, &["--stanza=demo", "info"], &[]);
    assert_eq!(cfg.indexes(Group::Repo), vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        cfg.str_idx(OptionId::RepoPath, 2),
        Some("/srv/demo/repo/r2")
    );
    assert_eq!(
        cfg.str_idx(OptionId::RepoCipherType, 2),
        Some("aes-256-cbc")
    );
    assert_eq!(
        cfg.str_idx(OptionId::RepoCipherPass, 2),
        Some("TestPassPhrase123")
    );
    assert_eq!(cfg.str_idx(OptionId::RepoCipherType, 1), Some("none"));
    assert!(!cfg.is_set_idx(OptionId::RepoCipherPass, 1));
    assert_eq!(cfg.str(OptionId::LogLevelConsole), Some("info"));
    assert_eq!(cfg.str(OptionId::LogPath), Some("/srv/demo/log"));
    assert_eq!(cfg.str(OptionId::Output), Some("text"));
    // backup-only options are silently ignored for info
    assert!(!cfg.valid(OptionId::StartFast));
    assert!(!cfg.valid(OptionId::RepoRetentionFull));
    assert!(cfg.warnings().is_empty(), "{:?}", cfg.warnings());

    let cfg = ok_with(
        &sandbox,
        &text,
        &["--stanza=demo", "backup", "--type=full"],
        &[],
    );
    assert_eq!(cfg.str(OptionId::Type), Some("full"));
    assert!(cfg.bool(OptionId::StartFast));
    assert_eq!(cfg.str(OptionId::PgPath), Some("/srv/demo/data"));
    assert_eq!(cfg.int(OptionId::PgPort), Some(5499));
    assert_eq!(cfg.str(OptionId::PgSocketPath), Some("/srv/demo/sock"));
    assert_eq!(cfg.str(OptionId::PgUser), Some("postgres"));
    assert_eq!(cfg.int_idx(OptionId::RepoRetentionFull, 7), Some(2));
    // derived: repo-retention-archive follows repo-retention-full
    assert_eq!(cfg.int_idx(OptionId::RepoRetentionArchive, 4), Some(2));
    assert!(cfg.bool_idx(OptionId::RepoBundle, 3));
    assert!(!cfg.bool_idx(OptionId::RepoBundle, 1));
    assert_eq!(cfg.default_index(Group::Repo), 1);
    assert_eq!(cfg.str(OptionId::CompressType), Some("gz"));
    assert_eq!(cfg.int(OptionId::CompressLevel), Some(6));
    assert_eq!(cfg.str(OptionId::LockPath), Some("/srv/demo/lock"));
    assert!(cfg.warnings().is_empty(), "{:?}", cfg.warnings());

    let cfg = ok_with(
        &sandbox,
        &text,
        &["--stanza=demo", "archive-push", "/srv/demo/data/pg_wal/x"],
        &[],
    );
    assert!(cfg.bool(OptionId::ArchiveAsync));
    assert_eq!(cfg.str(OptionId::SpoolPath), Some("/srv/demo/spool"));
    assert_eq!(cfg.int(OptionId::ArchivePushQueueMax), Some(1 << 30));
}

// ---------------------------------------------------------------------------------------------
// load-time rules

#[test]
fn load_time_updates() {
    // protocol-timeout is raised above db-timeout when defaulted
    let cfg = ok(DEMO, &["--stanza=demo", "backup", "--db-timeout=1900"]);
    assert_eq!(
        cfg.time(OptionId::ProtocolTimeout),
        Some(Duration::from_secs(1930))
    );
    // db-timeout is lowered when only protocol-timeout is given
    let cfg = ok(DEMO, &["--stanza=demo", "backup", "--protocol-timeout=100"]);
    assert_eq!(cfg.time(OptionId::DbTimeout), Some(Duration::from_secs(70)));
    let (kind, message, hint) = fails_with(
        DEMO,
        &[
            "--stanza=demo",
            "backup",
            "--protocol-timeout=100",
            "--db-timeout=200",
        ],
        &[],
    );
    assert_eq!(kind, ErrorKind::OptionInvalidValue);
    assert_eq!(message, "'100' is not valid for 'protocol-timeout' option");
    assert_eq!(
        hint.as_deref(),
        Some("'protocol-timeout' option (100) should be greater than 'db-timeout' option (200).")
    );

    // compress=n becomes compress-type=none; compress itself is no longer readable
    let cfg = ok(DEMO, &["--stanza=demo", "backup", "--no-compress"]);
    assert_eq!(cfg.str(OptionId::CompressType), Some("none"));
    assert!(!cfg.valid(OptionId::Compress));
    let cfg = ok(
        DEMO,
        &[
            "--stanza=demo",
            "backup",
            "--no-compress",
            "--compress-type=lz4",
        ],
    );
    assert_eq!(cfg.str(OptionId::CompressType), Some("lz4"));
    assert!(cfg.warnings().iter().any(|w| w.starts_with("'compress' and 'compress-type' options should not both be set")));

    // compress-level default and range follow compress-type
    for (ty, level) in [("gz", 6), ("bz2", 9), ("lz4", 1), ("zst", 3), ("none", 0)] {
        let arg = format!("--compress-type={ty}");
        let cfg = ok(DEMO, &["--stanza=demo", "backup", &arg]);
        assert_eq!(cfg.int(OptionId::CompressLevel), Some(level), "{ty}");
    }
    assert_eq!(
        fails(
            DEMO,
            &[
                "--stanza=demo",
                "backup",
                "--compress-type=bz2",
                "--compress-level=0"
            ]
        ),
        (
            ErrorKind::OptionInvalidValue,
            "'0' is out of range for 'compress-level' option when 'compress-type' option = 'bz2'"
                .to_string()
        )
    );
    ok(
        DEMO,
        &[
            "--stanza=demo",
            "backup",
            "--compress-type=zst",
            "--compress-level=19",
        ],
    );

    // two local repositories cannot share a path
    assert_eq!(
        fails("[global]\nrepo1-path=/r\nrepo2-path=/r/\n", &["info"]),
        (
            ErrorKind::OptionInvalidValue,
            "local repo1 and repo2 paths are both '/r/' but must be different".to_string()
        )
    );

    // pg and repo hosts cannot both be remote
    assert_eq!(
        fails(
            "[global]\nrepo1-host=r\n[demo]\npg1-path=/pg\npg1-host=p\n",
            &["--stanza=demo", "check"]
        ),
        (
            ErrorKind::Config,
            "pg and repo hosts cannot both be configured as remote".to_string()
        )
    );

    // retention warnings
    let cfg = ok(DEMO, &["--stanza=demo", "backup"]);
    assert_eq!(
        cfg.warnings(),
        [
            "option 'repo1-retention-full' is not set for 'repo1-retention-full-type=count', the repository may run out of space\n\
          HINT: to retain full backups indefinitely (without warning), set option 'repo1-retention-full' to the maximum."
        ]
    );
    let cfg = ok(
        "[global]\nrepo1-retention-full=1\nrepo1-retention-archive-type=incr\n[demo]\npg1-path=/pg\n",
        &["--stanza=demo", "expire"],
    );
    assert_eq!(
        cfg.warnings(),
        [
            "WAL segments will not be expired: option 'repo1-retention-archive-type=incr' but option 'repo1-retention-archive' is not set"
        ]
    );

    // S3 buckets with dots cannot be verified
    let e = fails(
        "[global]\nrepo1-type=s3\nrepo1-s3-bucket=a.b\nrepo1-s3-endpoint=e\nrepo1-s3-region=r\nrepo1-s3-key=k\nrepo1-s3-key-secret=s\n",
        &["info"],
    );
    assert_eq!(
        e,
        (
            ErrorKind::OptionInvalidValue,
            "'a.b' is not valid for option 'repo1-s3-bucket'".to_string()
        )
    );

    // upload chunk size and TLS port defaults
    let cfg = ok(
        "[global]\nrepo1-type=s3\nrepo1-s3-bucket=b\nrepo1-s3-endpoint=e\nrepo1-s3-region=r\nrepo1-s3-key=k\nrepo1-s3-key-secret=s\nrepo2-path=/r2\nrepo2-host=h\nrepo2-host-type=tls\nrepo2-host-cert-file=/c\nrepo2-host-key-file=/k\n",
        &["info"],
    );
    assert_eq!(
        cfg.int_idx(OptionId::RepoStorageUploadChunkSize, 1),
        Some(5 << 20)
    );
    assert_eq!(
        cfg.int_idx(OptionId::RepoStorageUploadChunkSize, 2),
        Some(4 << 20)
    );
    assert_eq!(cfg.int_idx(OptionId::RepoHostPort, 2), Some(8432));
    // repo-storage-port applies to s3 and azure repositories only
    assert_eq!(cfg.int_idx(OptionId::RepoStoragePort, 1), Some(443));
    assert_eq!(cfg.int_idx(OptionId::RepoStoragePort, 2), None);
}

#[test]
fn exe_default_and_option_summary() {
    let mut cfg = ok(
        DEMO,
        &[
            "--stanza=demo",
            "backup",
            "--type=full",
            "--exclude=a b",
            "--no-resume",
        ],
    );
    assert_eq!(cfg.str(OptionId::Cmd), None);
    cfg.apply_exe_default("/usr/bin/pgkeep");
    assert_eq!(cfg.str(OptionId::Cmd), Some("/usr/bin/pgkeep"));
    assert_eq!(cfg.source(OptionId::Cmd, None), Source::Default);
    let summary = cfg.option_summary();
    assert!(summary.contains(" --exclude=\"a b\""), "{summary}");
    assert!(summary.contains(" --no-resume"), "{summary}");
    assert!(summary.contains(" --pg1-path=/var/lib/pg"), "{summary}");
    assert!(summary.contains(" --stanza=demo"), "{summary}");
    assert!(summary.contains(" --type=full"), "{summary}");
    assert!(!summary.contains("--log-level-console"), "{summary}");
    // options in name order, indexes in order; booleans without value
    assert_eq!(
        cfg.display_options(),
        [
            "--exclude=\"a b\"",
            "--pg1-path=/var/lib/pg",
            "--no-resume",
            "--stanza=demo",
            "--type=full",
        ]
    );
    let cfg = ok(
        "[global]\nspool-path=/s\n[demo]\npg1-path=/pg\n",
        &[
            "--stanza=demo",
            "archive-get",
            "000000010000000000000001",
            "pg_wal/RECOVERYXLOG",
        ],
    );
    assert_eq!(
        cfg.display_options(),
        [
            "[000000010000000000000001, pg_wal/RECOVERYXLOG]",
            "--pg1-path=/pg",
            "--stanza=demo",
        ]
    );
    assert!(CommandId::Backup.logs_to_file());
    assert!(!CommandId::ArchivePush.logs_to_file());
}

// ---------------------------------------------------------------------------------------------
// help

#[test]
fn help_general_lists_public_commands() {
    let text = help::render("0.1.0", &[]).unwrap();
    assert!(text.starts_with(
        "pgkeep 0.1.0 - General help\n\nUsage:\n    pgkeep [options] [command]\n\nCommands:\n"
    ));
    assert!(
        text.contains("\n    backup          Back up a PostgreSQL cluster.\n"),
        "{text}"
    );
    assert!(text.contains("\n    stanza-upgrade  "));
    assert!(!text.contains("repo-create"));
    assert!(!text.contains("manifest"));
    assert!(text.ends_with("\nUse 'pgkeep help [command]' for more information.\n"));
    assert_eq!(help::render("0.1.0", &["help".to_string()]).unwrap(), text);
}

#[test]
fn help_for_a_command_groups_options_by_section() {
    let text = help::render("0.1.0", &["backup".to_string()]).unwrap();
    assert!(
        text.starts_with(
            "pgkeep 0.1.0 - 'backup' command help\n\nBack up a PostgreSQL cluster.\n\n"
        )
    );
    let sections: Vec<&str> = text.lines().filter(|l| l.ends_with(" Options:")).collect();
    assert_eq!(
        sections,
        [
            "Command Options:",
            "General Options:",
            "Log Options:",
            "Repository Options:",
            "Stanza Options:"
        ]
    );
    assert!(text.contains("  --type "), "{text}");
    assert!(text.contains("backup type [default=incr]"), "{text}");
    assert!(text.contains("  --repo-path "));
    assert!(text.contains("[default=/var/lib/pgbackrest]"));
    assert!(!text.contains("--pg-local"), "internal options are hidden");
    assert!(
        !text.contains("--output"),
        "options of other commands are not listed"
    );
    assert!(text.ends_with("\nUse 'pgkeep help backup [option]' for more information.\n"));
    for line in text.lines() {
        assert!(line.len() <= 80, "{line}");
    }
    // the type option sits in the command section, repo-path in the repository section
    let command_start = text.find("Command Options:").unwrap();
    let general_start = text.find("General Options:").unwrap();
    let type_pos = text.find("  --type ").unwrap();
    assert!(command_start < type_pos && type_pos < general_start);
}

#[test]
fn help_for_an_option() {
    let text = help::render("0.1.0", &["backup".to_string(), "type".to_string()]).unwrap();
    assert!(
        text.starts_with(
            "pgkeep 0.1.0 - 'backup' command - 'type' option help\n\nBackup type.\n\n"
        ),
        "{text}"
    );
    assert!(text.contains("\ndefault: incr\n"));

    let text = help::render("0.1.0", &["backup".to_string(), "repo1-path".to_string()]).unwrap();
    assert!(text.contains("'repo-path' option help"));
    assert!(text.contains("deprecated name: repo-path"));

    let text = help::render("0.1.0", &["backup".to_string(), "repo-block".to_string()]).unwrap();
    assert!(text.contains("FOR BETA TESTING ONLY. DO NOT USE IN PRODUCTION."));

    let e = help::render("0.1.0", &["backup".to_string(), "output".to_string()]).unwrap_err();
    assert_eq!(
        (e.kind(), e.message()),
        (
            ErrorKind::OptionInvalid,
            "option 'output' is not valid for command 'backup'"
        )
    );
    let e = help::render(
        "0.1.0",
        &["backup".to_string(), "a".to_string(), "b".to_string()],
    )
    .unwrap_err();
    assert_eq!(
        (e.kind(), e.message()),
        (
            ErrorKind::ParamInvalid,
            "only one option allowed for option help"
        )
    );
    let e = help::render("0.1.0", &["nope".to_string()]).unwrap_err();
    assert_eq!(
        (e.kind(), e.message()),
        (ErrorKind::CommandInvalid, "invalid command 'nope'")
    );
}

#[test]
fn help_with_config_shows_current_values() {
    let cfg = ok(
        "[global]\nrepo1-path=/srv/r1\nrepo1-cipher-pass=x\n",
        &["help", "backup"],
    );
    let text = help::render_config("0.1.0", &cfg).unwrap();
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("[current=/srv/r1, default=/var/lib/pgbackrest]"),
        "{text}"
    );
    let cfg = ok(
        "[global]\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=x\n",
        &["help", "backup", "repo-cipher-pass"],
    );
    let text = help::render_config("0.1.0", &cfg).unwrap();
    assert!(text.contains("current: <redacted>"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// the table against pgBackRest's option list

#[test]
fn every_option_of_pgbackrest_2_45_is_in_the_table_with_its_type_and_default() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/options-2.45.txt"
    ))
    .unwrap();
    let mut seen = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        // columns are separated by " | "; allow lists and flags use a bare '|' inside a column
        let cols: Vec<&str> = line.split(" | ").map(str::trim).collect();
        assert_eq!(cols.len(), 8, "{line}");
        let (name, ty, default) = (cols[0], cols[1], cols[2]);
        let (group_col, flags) = (cols[5], cols[6]);
        let id = OptionId::from_name(name).unwrap_or_else(|| panic!("option {name} missing"));
        let def = id.def();
        assert_eq!(def.ty.name(), ty, "type of {name}");
        if name == "type" {
            assert_eq!(def.default_for(CommandId::Backup), Some("incr"));
            assert_eq!(def.default_for(CommandId::Restore), Some("default"));
        } else if default.is_empty() {
            assert_eq!(def.default, None, "default of {name}");
        } else {
            assert_eq!(def.default, Some(default), "default of {name}");
        }
        assert_eq!(
            def.secure,
            flags.contains("secure"),
            "secure flag of {name}"
        );
        assert_eq!(
            def.internal,
            flags.split(' ').any(|f| f == "internal"),
            "internal flag of {name}"
        );
        assert_eq!(
            def.beta,
            flags.split(' ').any(|f| f == "beta"),
            "beta flag of {name}"
        );
        let group = match group_col {
            "" => None,
            "repo" => Some(Group::Repo),
            "pg" => Some(Group::Pg),
            other => panic!("group {other}"),
        };
        assert_eq!(def.group, group, "group of {name}");
        seen += 1;
    }
    assert_eq!(
        seen,
        options().len(),
        "table and list have the same options"
    );
    assert_eq!(options().len(), 165);
}

#[test]
fn the_table_is_sorted_and_consistent() {
    for pair in options().windows(2) {
        assert!(
            pair[0].name < pair[1].name,
            "{} before {}",
            pair[0].name,
            pair[1].name
        );
    }
    for (i, def) in options().iter().enumerate() {
        assert_eq!(def.id as usize, i);
        assert_eq!(OptionId::from_name(def.name), Some(def.id));
        assert!(def.summary.ends_with('.'), "{}", def.name);
        if let Some(group) = def.group {
            assert!(def.name.starts_with(group.name()));
        }
        if def.ty == OptionType::Boolean {
            assert!(
                def.default.is_some() || def.name == "checksum-page",
                "{}",
                def.name
            );
        }
        for rule in def.cmds {
            if let Some(dep) = rule.depend.or(def.depend) {
                assert!(
                    dep.option.def().rule(rule.command).is_some(),
                    "{} depends on {} for {}",
                    def.name,
                    dep.option.name(),
                    rule.command.name()
                );
            }
        }
    }
    for (i, c) in pgkeep_config::commands().iter().enumerate() {
        assert_eq!(c.id as usize, i);
        assert_eq!(CommandId::from_name(c.name), Some(c.id));
        assert!(c.roles.contains(CommandRole::Main));
    }
    assert_eq!(CommandId::ALL.len(), 24);
}

#[test]
fn validity_per_command_and_role() {
    let cases: &[(OptionId, CommandId, CommandRole, bool)] = &[
        (
            OptionId::Repo,
            CommandId::ArchivePush,
            CommandRole::Main,
            false,
        ),
        (
            OptionId::Repo,
            CommandId::ArchivePush,
            CommandRole::Remote,
            true,
        ),
        (OptionId::Repo, CommandId::Start, CommandRole::Main, false),
        (OptionId::Repo, CommandId::Backup, CommandRole::Local, true),
        (
            OptionId::CompressType,
            CommandId::ArchivePush,
            CommandRole::Async,
            true,
        ),
        (
            OptionId::CompressType,
            CommandId::ArchivePush,
            CommandRole::Local,
            false,
        ),
        (
            OptionId::Process,
            CommandId::Backup,
            CommandRole::Main,
            false,
        ),
        (
            OptionId::Process,
            CommandId::Backup,
            CommandRole::Local,
            true,
        ),
        (
            OptionId::LogLevelConsole,
            CommandId::Version,
            CommandRole::Main,
            false,
        ),
        (
            OptionId::LogLevelConsole,
            CommandId::Server,
            CommandRole::Main,
            true,
        ),
        (
            OptionId::Stanza,
            CommandId::Server,
            CommandRole::Main,
            false,
        ),
        (OptionId::Pg, CommandId::Backup, CommandRole::Main, false),
        (OptionId::Pg, CommandId::Backup, CommandRole::Local, true),
        (
            OptionId::RepoS3Key,
            CommandId::Backup,
            CommandRole::Local,
            true,
        ),
        (
            OptionId::RepoS3Key,
            CommandId::Expire,
            CommandRole::Remote,
            false,
        ),
        (OptionId::Cmd, CommandId::Backup, CommandRole::Remote, false),
    ];
    for (opt, cmd, role, want) in cases {
        assert_eq!(
            opt.def().valid(*cmd, *role),
            *want,
            "{} {} {}",
            opt.name(),
            cmd.name(),
            role.name()
        );
    }
}
