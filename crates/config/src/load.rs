//! Load-time updates after parsing, as pgBackRest's `cfgLoadUpdateOption()` (`src/config/load.c`).
//!
//! Contract: rules that span several options and cannot be written as a table row: stanza-delete
//! needs `--repo` with several repositories; two local repositories may not share a path;
//! protocol-timeout is kept above db-timeout; pg and repo hosts cannot both be remote; retention
//! warnings and the derived `repoN-retention-archive`; S3 bucket names with dots under TLS;
//! defaults that depend on other values (upload chunk size, TLS host port, compress-level per
//! compress-type); the deprecated `compress=n` becomes `compress-type=none`. Messages are
//! pgBackRest's; warnings are appended to the config's warnings.

use pgkeep_base::{Result, bail, err};

use crate::config::{Config, Source};
use crate::defs::{CommandId, OptionId};
use crate::rules::Group;
use crate::value::Value;

/// Positions and keys (one-based) of the configured repositories, when the group is valid.
fn repo_positions(cfg: &Config) -> Vec<(usize, u32)> {
    let group = &cfg.groups[Group::Repo.slot()];
    if !group.valid {
        return Vec::new();
    }
    group
        .keys
        .iter()
        .enumerate()
        .map(|(pos, k)| (pos, k + 1))
        .collect()
}

fn pg_positions(cfg: &Config) -> Vec<(usize, u32)> {
    let group = &cfg.groups[Group::Pg.slot()];
    if !group.valid {
        return Vec::new();
    }
    group
        .keys
        .iter()
        .enumerate()
        .map(|(pos, k)| (pos, k + 1))
        .collect()
}

fn str_pos(cfg: &Config, opt: OptionId, pos: usize) -> Option<&str> {
    match cfg.slot_pos(opt, pos)?.value.as_ref()? {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

fn int_pos(cfg: &Config, opt: OptionId, pos: usize) -> Option<i64> {
    match cfg.slot_pos(opt, pos)?.value.as_ref()? {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn set_pos(cfg: &Config, opt: OptionId, pos: usize) -> bool {
    cfg.slot_pos(opt, pos).is_some_and(|s| s.value.is_some())
}

fn source_pos(cfg: &Config, opt: OptionId, pos: usize) -> Source {
    cfg.slot_pos(opt, pos).map_or(Source::Default, |s| s.source)
}

fn display_pos(cfg: &Config, opt: OptionId, pos: usize) -> String {
    cfg.slot_pos(opt, pos)
        .and_then(|s| s.display.clone())
        .unwrap_or_default()
}

/// Seconds as pgBackRest shows a computed time.
fn seconds(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}", ms / 1000)
    } else {
        let text = format!("{}.{:03}", ms / 1000, (ms % 1000).abs());
        text.trim_end_matches('0').to_string()
    }
}

/// Apply every update; see the module contract.
pub(crate) fn update(cfg: &mut Config) -> Result<()> {
    let repos = repo_positions(cfg);

    if cfg.valid(OptionId::Repo)
        && cfg.command == CommandId::StanzaDelete
        && !cfg.is_set(OptionId::Repo)
        && (repos.len() > 1 || repos.first().is_some_and(|(_, k)| *k != 1))
    {
        return Err(err!(
            OptionRequired,
            "{} command requires option: repo",
            cfg.command.name()
        )
        .with_hint("this command requires a specific repository to operate on"));
    }

    if repos.len() > 1 && cfg.valid(OptionId::RepoType) && cfg.valid(OptionId::RepoPath) {
        for &(a, key_a) in &repos {
            let type_a = str_pos(cfg, OptionId::RepoType, a);
            if set_pos(cfg, OptionId::RepoHost, a) || !matches!(type_a, Some("posix" | "cifs")) {
                continue;
            }
            for &(b, key_b) in &repos {
                if a != b
                    && !set_pos(cfg, OptionId::RepoHost, b)
                    && type_a == str_pos(cfg, OptionId::RepoType, b)
                    && str_pos(cfg, OptionId::RepoPath, a) == str_pos(cfg, OptionId::RepoPath, b)
                {
                    bail!(
                        OptionInvalidValue,
                        "local repo{key_a} and repo{key_b} paths are both '{}' but must be different",
                        display_pos(cfg, OptionId::RepoPath, b)
                    );
                }
            }
        }
    }

    if let (Some(db), Some(protocol)) = (
        int_pos(cfg, OptionId::DbTimeout, 0),
        int_pos(cfg, OptionId::ProtocolTimeout, 0),
    ) && protocol <= db
    {
        if source_pos(cfg, OptionId::ProtocolTimeout, 0) == Source::Default {
            let value = db + 30_000;
            cfg.set_pos(
                OptionId::ProtocolTimeout,
                0,
                Value::Int(value),
                Source::Default,
                seconds(value),
            );
        } else if source_pos(cfg, OptionId::DbTimeout, 0) == Source::Default {
            let value = if protocol - 30_000 >= 15_000 {
                protocol - 30_000
            } else {
                protocol / 2
            };
            cfg.set_pos(
                OptionId::DbTimeout,
                0,
                Value::Int(value),
                Source::Default,
                seconds(value),
            );
        } else {
            let p = display_pos(cfg, OptionId::ProtocolTimeout, 0);
            let d = display_pos(cfg, OptionId::DbTimeout, 0);
            return Err(err!(
                OptionInvalidValue,
                "'{p}' is not valid for 'protocol-timeout' option"
            )
            .with_hint(format!(
                "'protocol-timeout' option ({p}) should be greater than 'db-timeout' option ({d})."
            )));
        }
    }

    if cfg.valid(OptionId::PgHost) && cfg.valid(OptionId::RepoHost) {
        let pg_remote = pg_positions(cfg)
            .iter()
            .any(|(pos, _)| set_pos(cfg, OptionId::PgHost, *pos));
        let repo_remote = repos
            .iter()
            .any(|(pos, _)| set_pos(cfg, OptionId::RepoHost, *pos));
        if pg_remote && repo_remote {
            bail!(
                Config,
                "pg and repo hosts cannot both be configured as remote"
            );
        }
    }

    if cfg.valid(OptionId::RepoRetentionFullType) {
        for &(pos, key) in &repos {
            if !set_pos(cfg, OptionId::RepoRetentionFull, pos) {
                let full = OptionId::RepoRetentionFull.def().index_name(key);
                let full_type = OptionId::RepoRetentionFullType.def().index_name(key);
                let warning = format!(
                    "option '{full}' is not set for '{full_type}={}', the repository may run out of space\n\
                     HINT: to retain full backups indefinitely (without warning), set option '{full}' to the maximum.",
                    display_pos(cfg, OptionId::RepoRetentionFullType, pos)
                );
                cfg.warnings.push(warning);
            }
        }
    }

    if cfg.valid(OptionId::RepoRetentionArchive) {
        for &(pos, key) in &repos {
            let archive = OptionId::RepoRetentionArchive.def().index_name(key);
            let archive_type_name = OptionId::RepoRetentionArchiveType.def().index_name(key);
            let diff = OptionId::RepoRetentionDiff.def().index_name(key);
            let archive_type = str_pos(cfg, OptionId::RepoRetentionArchiveType, pos)
                .unwrap_or("full")
                .to_string();
            let off = format!(
                "WAL segments will not be expired: option '{archive_type_name}={archive_type}' but"
            );
            if !set_pos(cfg, OptionId::RepoRetentionArchive, pos) {
                match archive_type.as_str() {
                    "full" => {
                        if str_pos(cfg, OptionId::RepoRetentionFullType, pos) == Some("count")
                            && let Some(full) = int_pos(cfg, OptionId::RepoRetentionFull, pos)
                        {
                            cfg.set_pos(
                                OptionId::RepoRetentionArchive,
                                pos,
                                Value::Int(full),
                                Source::Default,
                                full.to_string(),
                            );
                        }
                    }
                    "diff" => match int_pos(cfg, OptionId::RepoRetentionDiff, pos) {
                        Some(value) => cfg.set_pos(
                            OptionId::RepoRetentionArchive,
                            pos,
                            Value::Int(value),
                            Source::Default,
                            value.to_string(),
                        ),
                        None => cfg.warnings.push(format!(
                            "{off} neither option '{archive}' nor option '{diff}' is set"
                        )),
                    },
                    _ => cfg
                        .warnings
                        .push(format!("{off} option '{archive}' is not set")),
                }
            } else if archive_type == "diff" && !set_pos(cfg, OptionId::RepoRetentionDiff, pos) {
                cfg.warnings.push(format!(
                    "option '{diff}' is not set for '{archive_type_name}=diff'\n\
                     HINT: to retain differential backups indefinitely (without warning), set option '{diff}' to the maximum."
                ));
            }
        }
    }

    for &(pos, key) in &repos {
        if let Some(bucket) = str_pos(cfg, OptionId::RepoS3Bucket, pos) {
            let verify = matches!(
                cfg.slot_pos(OptionId::RepoStorageVerifyTls, pos)
                    .and_then(|s| s.value.as_ref()),
                Some(Value::Bool(true))
            );
            if verify && bucket.contains('.') {
                return Err(err!(
                    OptionInvalidValue,
                    "'{bucket}' is not valid for option '{}'",
                    OptionId::RepoS3Bucket.def().index_name(key)
                )
                .with_hint(
                    "RFC-2818 forbids dots in wildcard matches.\n\
                     HINT: TLS/SSL verification cannot proceed with this bucket name.\n\
                     HINT: remove dots from the bucket name.",
                ));
            }
        }
    }

    if cfg.valid(OptionId::RepoStorageUploadChunkSize) {
        for &(pos, _) in &repos {
            if !set_pos(cfg, OptionId::RepoStorageUploadChunkSize, pos) {
                let mib = if str_pos(cfg, OptionId::RepoType, pos) == Some("s3") {
                    5
                } else {
                    4
                };
                cfg.set_pos(
                    OptionId::RepoStorageUploadChunkSize,
                    pos,
                    Value::Int(mib << 20),
                    Source::Default,
                    format!("{mib}MiB"),
                );
            }
        }
    }

    for (port, host_type, positions) in [
        (
            OptionId::RepoHostPort,
            OptionId::RepoHostType,
            repos.clone(),
        ),
        (
            OptionId::PgHostPort,
            OptionId::PgHostType,
            pg_positions(cfg),
        ),
    ] {
        if !cfg.valid(port) {
            continue;
        }
        for (pos, _) in positions {
            if str_pos(cfg, host_type, pos) == Some("tls")
                && source_pos(cfg, port, pos) == Source::Default
            {
                cfg.set_pos(
                    port,
                    pos,
                    Value::Int(8432),
                    Source::Default,
                    "8432".to_string(),
                );
            }
        }
    }

    if cfg.valid(OptionId::Compress) {
        if source_pos(cfg, OptionId::Compress, 0) != Source::Default {
            if source_pos(cfg, OptionId::CompressType, 0) != Source::Default {
                cfg.warnings.push(
                    "'compress' and 'compress-type' options should not both be set\n\
                     HINT: 'compress-type' is preferred and 'compress' is deprecated."
                        .to_string(),
                );
            }
            if !cfg.bool(OptionId::Compress)
                && source_pos(cfg, OptionId::CompressType, 0) == Source::Default
            {
                cfg.set_pos(
                    OptionId::CompressType,
                    0,
                    Value::Str("none".to_string()),
                    Source::CommandLine,
                    "none".to_string(),
                );
            }
        }
        cfg.invalidate(OptionId::Compress);
    }

    if cfg.valid(OptionId::CompressLevel) {
        let compress_type = str_pos(cfg, OptionId::CompressType, 0)
            .unwrap_or("gz")
            .to_string();
        let (default, min, max) = match compress_type.as_str() {
            "bz2" => (9, 1, 9),
            "gz" => (6, -1, 9),
            "lz4" => (1, -5, 12),
            "zst" => (3, -7, 22),
            _ => (0, 0, 0),
        };
        if source_pos(cfg, OptionId::CompressLevel, 0) == Source::Default {
            cfg.set_pos(
                OptionId::CompressLevel,
                0,
                Value::Int(default),
                Source::Default,
                default.to_string(),
            );
        } else if compress_type != "none" {
            let level = int_pos(cfg, OptionId::CompressLevel, 0).unwrap_or(default);
            if level < min || level > max {
                bail!(
                    OptionInvalidValue,
                    "'{level}' is out of range for 'compress-level' option when 'compress-type' option = '{compress_type}'"
                );
            }
        }
    }

    Ok(())
}

#[cfg(test)]
mod tests {
    use super::seconds;

    #[test]
    fn computed_times_render_as_seconds() {
        assert_eq!(seconds(1_830_000), "1830");
        assert_eq!(seconds(45_500), "45.5");
        assert_eq!(seconds(100), "0.1");
    }
}
