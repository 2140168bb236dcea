//! `info`: stanza, backup and archive status, as text or JSON (pgBackRest `src/command/info/info.c`).
//!
//! This module gathers what the repositories hold into the plain data model of [`render`]; the
//! renderer owns every formatting and status rule. Gathering follows pgBackRest: stanzas are the
//! directories of `backup/` on each selected repo (or only `--stanza`), a repo that cannot be read
//! becomes an error status rather than failing the command, and the backup lock is read once per
//! stanza.

pub mod render;

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_config::OptionId;
use pgkeep_repo::archive::wal_range;
use pgkeep_repo::info::{ArchiveInfo, BackupInfo, load_info};
use pgkeep_repo::layout;
use pgkeep_repo::manifest::{LazyManifest, Manifest, TargetType};
use pgkeep_storage::{FileType, InfoLevel};

use crate::ctx::{Ctx, Repo};
use crate::lock;
use render::{
    ArchiveRange, BackupData, BackupLock, Cipher, DbHistory, InfoRequest, RepoData, RepoError,
    RepoSizeMap, RepoStanza, RepoState, SetDatabase, SetManifest, SetTarget, StanzaData,
};

/// `info`.
///
/// # Errors
/// Only option errors; repository problems are reported in the output as pgBackRest does.
pub fn run(ctx: &Ctx) -> Result<()> {
    let set = ctx.cfg.str(OptionId::Set).map(str::to_string);
    let request = InfoRequest {
        set: set.clone(),
        backup_type: ctx.cfg.str(OptionId::Type).map(str::to_string),
    };
    if set.is_some() && ctx.stanza_opt().is_none() {
        return Err(Error::new(
            ErrorKind::OptionInvalid,
            "option 'set' not valid without option 'stanza'",
        ));
    }
    let stanzas = gather(ctx, set.as_deref())?;
    let output = if ctx.cfg.str(OptionId::Output) == Some("json") {
        render::render_json(&stanzas, &request)
    } else {
        render::render_text(&stanzas, &request)
    };
    print!("{output}");
    Ok(())
}

fn cipher_of(ctx: &Ctx, key: u32) -> Cipher {
    match ctx.cfg.str_idx(OptionId::RepoCipherType, key) {
        Some("aes-256-cbc") => Cipher::Aes256Cbc,
        _ => Cipher::None,
    }
}

/// Everything `info` shows, per stanza, in stanza-name order.
fn gather(ctx: &Ctx, set: Option<&str>) -> Result<Vec<StanzaData>> {
    let keys = ctx.repo_keys();
    let requested = ctx.stanza_opt();
    let mut stanzas: Vec<StanzaData> = Vec::new();
    let mut repo_errors: Vec<(u32, RepoError)> = Vec::new();
    let mut set_found = false;

    for &key in &keys {
        let listed = ctx.repo(key).and_then(|repo| {
            let found = match set {
                Some(label) => repo
                    .storage
                    .info(
                        &layout::manifest_path(requested.unwrap_or_default(), label),
                        InfoLevel::Exists,
                        true,
                    )?
                    .is_some(),
                None => false,
            };
            let names = stanza_names(&repo)?;
            Ok((repo, found, names))
        });
        let (repo, found, names) = match listed {
            Ok(v) => v,
            Err(e) => {
                repo_errors.push((key, RepoError::from(&e)));
                continue;
            }
        };
        set_found |= found;
        let names = match requested {
            Some(stanza) => vec![(stanza.to_string(), names.iter().any(|n| n == stanza))],
            None => names.into_iter().map(|n| (n, true)).collect(),
        };
        for (name, exists) in names {
            let index = match stanzas.iter().position(|s| s.name == name) {
                Some(i) => i,
                None => {
                    stanzas.push(new_stanza(ctx, &keys, &name));
                    stanzas.len() - 1
                }
            };
            let state = if exists {
                load_stanza(&repo, &name, if found { set } else { None })
            } else {
                RepoState::MissingStanzaPath
            };
            let stanza = &mut stanzas[index];
            if let Some(slot) = stanza.repos.iter_mut().find(|r| r.key == key) {
                slot.state = state;
            }
        }
    }

    if !repo_errors.is_empty() && stanzas.is_empty() {
        stanzas.push(new_stanza(
            ctx,
            &keys,
            requested.unwrap_or(render::INVALID_STANZA_NAME),
        ));
    }
    for stanza in &mut stanzas {
        for (key, error) in &repo_errors {
            if let Some(slot) = stanza.repos.iter_mut().find(|r| r.key == *key) {
                slot.state = RepoState::Error(error.clone());
            }
        }
        stanza.set_found = set_found;
        if stanza
            .repos
            .iter()
            .any(|r| matches!(r.state, RepoState::Loaded(_)))
        {
            let path = lock::lock_file(ctx.lock_path(), &stanza.name, false);
            if let Some(data) = lock::held(&path) {
                stanza.backup_lock = BackupLock {
                    held: true,
                    percent_complete: data.percent_complete,
                };
            }
        }
    }
    stanzas.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(stanzas)
}

/// A stanza not yet seen on any repo: every selected repo starts as "missing stanza path".
fn new_stanza(ctx: &Ctx, keys: &[u32], name: &str) -> StanzaData {
    StanzaData {
        name: name.to_string(),
        backup_lock: BackupLock::default(),
        set_found: false,
        repos: keys
            .iter()
            .map(|&key| RepoData {
                key,
                cipher: cipher_of(ctx, key),
                state: RepoState::MissingStanzaPath,
            })
            .collect(),
    }
}

/// Stanza directories under `backup/`, sorted.
fn stanza_names(repo: &Repo) -> Result<Vec<String>> {
    let mut names: Vec<String> = repo
        .storage
        .list(layout::BACKUP_DIR, InfoLevel::Basic)?
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.file_type == FileType::Path || !repo.storage.features().path)
        .map(|e| e.name)
        .collect();
    names.sort();
    Ok(names)
}

/// Load one stanza of one repo; every failure becomes the repo's status.
fn load_stanza(repo: &Repo, stanza: &str, set: Option<&str>) -> RepoState {
    let storage = repo.storage.as_ref();
    let pass = repo.cipher_pass.as_deref();
    let backup_info: BackupInfo = match load_info(storage, &layout::backup_info_path(stanza), pass)
    {
        Ok(info) => info,
        Err(e) if e.kind() == ErrorKind::FileMissing => return RepoState::MissingStanzaData,
        Err(e) if e.kind() == ErrorKind::Crypto => {
            let e = Error::new(
                ErrorKind::Crypto,
                format!(
                    "{}\nHINT: use option --stanza if encryption settings are different for the stanza than the global settings.",
                    render_error_text(&e)
                ),
            );
            return RepoState::Error(RepoError::from(&e));
        }
        Err(e) => return RepoState::Error(RepoError::from(&e)),
    };
    let archive_info: ArchiveInfo =
        match load_info(storage, &layout::archive_info_path(stanza), pass) {
            Ok(info) => info,
            Err(e) => return RepoState::Error(RepoError::from(&e)),
        };
    let set_manifest = match set {
        Some(label) => {
            match LazyManifest::load_full(
                storage,
                &layout::manifest_path(stanza, label),
                backup_info.cipher_pass.as_deref(),
            ) {
                Ok(manifest) => Some(set_manifest(&manifest)),
                Err(e) => return RepoState::Error(RepoError::from(&e)),
            }
        }
        None => None,
    };

    let mut db_history = Vec::new();
    for entry in &backup_info.history {
        let archive = archive_info
            .archive_id_match(entry.id, entry.version, entry.system_id)
            .and_then(|archive_id| {
                let range = wal_range(storage, stanza, &archive_id)?;
                Ok(ArchiveRange {
                    archive_id,
                    min: range.as_ref().map(|r| r.min.clone()),
                    max: range.map(|r| r.max),
                })
            })
            .map_err(|e| RepoError::from(&e));
        db_history.push(DbHistory {
            id: entry.id,
            system_id: entry.system_id,
            version: entry.version.to_string(),
            archive,
        });
    }

    let backups = backup_info
        .backups
        .iter()
        .map(|(label, b)| BackupData {
            label: label.clone(),
            backup_type: b.backup_type.as_str().to_string(),
            prior: b.prior.clone(),
            reference: b.reference.clone(),
            archive_start: b.archive_start.clone(),
            archive_stop: b.archive_stop.clone(),
            backrest_format: b.backrest_format,
            backrest_version: b.backrest_version.clone(),
            db_id: b.db_id,
            size: b.size,
            size_delta: b.size_delta,
            repo_size: b.repo_size,
            repo_size_delta: b.repo_size_delta,
            repo_size_map: b.repo_size_map.map(|size| RepoSizeMap {
                size,
                delta: b.repo_size_map_delta.unwrap_or_default(),
            }),
            timestamp_start: b.timestamp_start,
            timestamp_stop: b.timestamp_stop,
            error: b.error,
            lsn_start: b.lsn_start.clone(),
            lsn_stop: b.lsn_stop.clone(),
            annotation: b
                .annotation
                .as_ref()
                .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        })
        .collect();

    RepoState::Loaded(Box::new(RepoStanza {
        db_current_id: backup_info.current.id,
        db_history,
        backups,
        set_manifest,
    }))
}

/// Message plus hint, as one text.
fn render_error_text(e: &Error) -> String {
    match e.hint() {
        Some(hint) => format!("{}\nHINT: {hint}", e.message()),
        None => e.message().to_string(),
    }
}

/// The `--set` details the renderer needs, straight from the manifest.
fn set_manifest(manifest: &Manifest) -> SetManifest {
    SetManifest {
        databases: manifest
            .databases
            .iter()
            .map(|(name, db)| SetDatabase {
                name: name.clone(),
                oid: u64::from(db.id),
            })
            .collect(),
        targets: manifest
            .targets
            .iter()
            .map(|(name, t)| SetTarget {
                name: name.clone(),
                path: t.path.clone(),
                file: t.file.clone(),
                link: t.target_type == TargetType::Link,
                tablespace_name: t.tablespace_name.clone(),
                tablespace_id: t.tablespace_id.unwrap_or_default(),
            })
            .collect(),
        page_error_files: manifest
            .files
            .iter()
            .filter(|(_, f)| f.checksum_page == Some(false))
            .map(|(name, _)| name.clone())
            .collect(),
    }
}
