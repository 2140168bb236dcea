//! The command context: the resolved configuration, the logger and the exec id, passed explicitly
//! to every command (no globals).
//!
//! This is the only module that turns option values into the typed settings the lower crates take
//! (storage roots, client options, cipher settings), so option names never leak into commands.

use std::sync::Arc;
use std::time::Duration;

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_config::{Config, Group, OptionId};
use pgkeep_pg::client::ClientOptions;
use pgkeep_storage::Storage;
use pgkeep_storage::posix::PosixStorage;

use crate::log::Logger;

/// Everything a command needs.
pub struct Ctx {
    /// Resolved configuration.
    pub cfg: Config,
    /// Logger.
    pub log: Arc<Logger>,
    /// `<pid>-<8 hex>` id of this command run.
    pub exec_id: String,
}

/// A repository as the commands see it.
pub struct Repo {
    /// The `N` of `repoN`.
    pub key: u32,
    /// Storage rooted at `repoN-path`.
    pub storage: Box<dyn Storage>,
    /// `repoN-cipher-pass` when `repoN-cipher-type` is not `none`.
    pub cipher_pass: Option<String>,
}

impl Repo {
    /// `repoN` for messages.
    #[must_use]
    pub fn name(&self) -> String {
        format!("repo{}", self.key)
    }
}

impl Ctx {
    /// `--stanza`, when given.
    #[must_use]
    pub fn stanza_opt(&self) -> Option<&str> {
        self.cfg.str(OptionId::Stanza)
    }

    /// `--stanza`, required.
    ///
    /// # Errors
    /// `OptionRequired` when missing.
    pub fn stanza(&self) -> Result<&str> {
        self.stanza_opt().ok_or_else(|| {
            Error::new(
                ErrorKind::OptionRequired,
                format!(
                    "{} command requires option: stanza",
                    self.cfg.command().name()
                ),
            )
        })
    }

    /// `lock-path`.
    #[must_use]
    pub fn lock_path(&self) -> &str {
        self.cfg
            .str(OptionId::LockPath)
            .unwrap_or("/tmp/pgbackrest")
    }

    /// `--force`.
    #[must_use]
    pub fn force(&self) -> bool {
        self.cfg.bool(OptionId::Force)
    }

    /// `--online`.
    #[must_use]
    pub fn online(&self) -> bool {
        self.cfg.bool(OptionId::Online)
    }

    /// The repo indexes the command works on: `--repo` when given, else every configured one.
    #[must_use]
    pub fn repo_keys(&self) -> Vec<u32> {
        match self.cfg.int(OptionId::Repo) {
            Some(key) => vec![u32::try_from(key).unwrap_or(1)],
            None => self.cfg.indexes(Group::Repo),
        }
    }

    /// Open repository `key`.
    ///
    /// # Errors
    /// `FeatureNotSupported` for repository types pgkeep cannot reach yet.
    pub fn repo(&self, key: u32) -> Result<Repo> {
        let repo_type = self.cfg.str_idx(OptionId::RepoType, key).unwrap_or("posix");
        let storage: Box<dyn Storage> = match repo_type {
            "posix" | "cifs" => {
                let path = self
                    .cfg
                    .str_idx(OptionId::RepoPath, key)
                    .unwrap_or("/var/lib/pgbackrest");
                Box::new(PosixStorage::new(path))
            }
            other => {
                return Err(Error::new(
                    ErrorKind::FeatureNotSupported,
                    format!("repo{key}-type={other} is not supported by pgkeep yet"),
                ));
            }
        };
        let cipher_pass = match self.cfg.str_idx(OptionId::RepoCipherType, key) {
            Some("aes-256-cbc") => Some(
                self.cfg
                    .str_idx(OptionId::RepoCipherPass, key)
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::OptionRequired,
                            format!(
                                "{} command requires option: repo{key}-cipher-pass",
                                self.cfg.command().name()
                            ),
                        )
                    })?
                    .to_string(),
            ),
            _ => None,
        };
        Ok(Repo {
            key,
            storage,
            cipher_pass,
        })
    }

    /// The pg indexes configured.
    #[must_use]
    pub fn pg_keys(&self) -> Vec<u32> {
        self.cfg.indexes(Group::Pg)
    }

    /// `pgN-path`, required.
    ///
    /// # Errors
    /// `OptionRequired` when missing.
    pub fn pg_path(&self, key: u32) -> Result<&str> {
        self.cfg.str_idx(OptionId::PgPath, key).ok_or_else(|| {
            Error::new(
                ErrorKind::OptionRequired,
                format!(
                    "{} command requires option: pg{key}-path",
                    self.cfg.command().name()
                ),
            )
            .with_hint("does this stanza exist?")
        })
    }

    /// SQL connection settings of `pgN`.
    #[must_use]
    pub fn pg_client_options(&self, key: u32) -> ClientOptions {
        ClientOptions {
            socket_path: self
                .cfg
                .str_idx(OptionId::PgSocketPath, key)
                .map(str::to_string),
            host: None,
            port: self
                .cfg
                .int_idx(OptionId::PgPort, key)
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(5432),
            user: self.cfg.str_idx(OptionId::PgUser, key).map(str::to_string),
            database: self
                .cfg
                .str_idx(OptionId::PgDatabase, key)
                .unwrap_or("postgres")
                .to_string(),
            application_name: format!("pgkeep [{}]", self.cfg.command().name()),
            timeout: self
                .cfg
                .time(OptionId::DbTimeout)
                .unwrap_or(Duration::from_secs(1800)),
        }
    }
}
