//! A blocking SQL session with a PostgreSQL cluster, set up the way pgBackRest sets up its own.
//!
//! Contract:
//! - [`Client::connect`] opens one session and prepares it like pgBackRest: `search_path` =
//!   `pg_catalog`, `client_encoding` = `UTF8`, the caller's `application_name`, and
//!   `max_parallel_workers_per_gather = 0` (a backup stop must not run in a parallel worker). It
//!   reads `server_version_num` once and refuses majors without a row in the version table.
//! - Connection failures are `DbConnect` with pgBackRest's wording, naming the libpq-style
//!   connection string: `unable to connect to 'dbname='postgres' port=5432 host='/tmp'': <cause>`.
//!   Query failures are `DbQuery`: `unable to execute query '<sql>': <cause>`, or
//!   `query '<sql>' timed out after <n>ms` when the statement outlived [`ClientOptions::timeout`]
//!   (the query is cancelled on the server first, so the session stays usable).
//! - Every statement is schema-qualified and version-dependent names (`pg_switch_wal`,
//!   `pg_walfile_name`, backup functions) come from the version table, never from version checks.
//! - Results are read as text (the simple query protocol), so any query can be run by
//!   [`Client::query_rows`] without knowing its column types.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use pgkeep_base::{Error, ErrorKind, Result};
use postgres::{NoTls, SimpleQueryMessage};

use crate::version::{PgVersion, VersionInfo};
use crate::wal::Lsn;

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Unix socket directory (`pg1-socket-path`); wins over `host` when both are set.
    pub socket_path: Option<String>,
    /// TCP host name or address, used when there is no socket path.
    pub host: Option<String>,
    /// Port (`pg1-port`); also names the socket file `.s.PGSQL.<port>`.
    pub port: u16,
    /// Role to connect as (`pg1-user`); the OS user when `None`.
    pub user: Option<String>,
    /// Database (`pg1-database`).
    pub database: String,
    /// `application_name` of the session, e.g. `pgBackRest [backup]`.
    pub application_name: String,
    /// Connect timeout and longest time a single statement may run (`db-timeout`).
    pub timeout: Duration,
}

/// Socket directory used when neither a socket path nor a host is given (Debian's libpq default).
pub const DEFAULT_SOCKET_PATH: &str = "/var/run/postgresql";

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            socket_path: None,
            host: None,
            port: 5432,
            user: None,
            database: "postgres".to_string(),
            application_name: "pgkeep".to_string(),
            timeout: Duration::from_secs(1800),
        }
    }
}

impl ClientOptions {
    /// The libpq-style connection string pgBackRest would use, for messages:
    /// `dbname='<db>' port=<port>[ user='<user>'][ host='<socket or host>']`.
    #[must_use]
    pub fn conninfo(&self) -> String {
        let mut s = format!(
            "dbname={} port={}",
            conninfo_quote(&self.database),
            self.port
        );
        if let Some(user) = &self.user {
            s.push_str(&format!(" user={}", conninfo_quote(user)));
        }
        if let Some(host) = self.socket_path.as_ref().or(self.host.as_ref()) {
            s.push_str(&format!(" host={}", conninfo_quote(host)));
        }
        s
    }
}

/// Quotes a conninfo value: single quotes, with `'` and `\` backslash-escaped.
fn conninfo_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// Quotes an SQL string literal (standard_conforming_strings is on in 10+).
#[must_use]
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// One database as pgBackRest records it in the manifest.
pub type DatabaseRow = (String, u32, u32);

/// An open, prepared session.
pub struct Client {
    inner: postgres::Client,
    conninfo: String,
    timeout: Duration,
    server_version_num: i32,
    version: PgVersion,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("conninfo", &self.conninfo)
            .field("server_version_num", &self.server_version_num)
            .finish_non_exhaustive()
    }
}

fn cause(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}:  {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

fn parse_num<T: std::str::FromStr>(sql: &str, value: Option<&str>) -> Result<T> {
    value.and_then(|v| v.parse().ok()).ok_or_else(|| {
        Error::new(
            ErrorKind::DbQuery,
            format!(
                "unable to parse '{}' returned by '{sql}'",
                value.unwrap_or("<null>")
            ),
        )
    })
}

impl Client {
    /// Connects and prepares the session (see the module contract).
    pub fn connect(options: &ClientOptions) -> Result<Client> {
        let conninfo = options.conninfo();
        let mut config = postgres::Config::new();
        config
            .dbname(&options.database)
            .port(options.port)
            .application_name(&options.application_name)
            .notice_callback(|_| {});
        if !options.timeout.is_zero() {
            config.connect_timeout(options.timeout);
        }
        if let Some(user) = &options.user {
            config.user(user);
        }
        match (&options.socket_path, &options.host) {
            (Some(socket), _) => {
                config.host_path(socket);
            }
            (None, Some(host)) => {
                config.host(host);
            }
            (None, None) => {
                config.host_path(DEFAULT_SOCKET_PATH);
            }
        }
        let inner = config.connect(NoTls).map_err(|e| {
            Error::new(
                ErrorKind::DbConnect,
                format!("unable to connect to '{conninfo}': {}", cause(&e)),
            )
        })?;
        let mut client = Client {
            inner,
            conninfo,
            timeout: options.timeout,
            server_version_num: 0,
            version: PgVersion::from_major(10)?,
        };
        client.execute("set search_path = 'pg_catalog'")?;
        client.execute("set client_encoding = 'UTF8'")?;
        let sql = "select setting from pg_catalog.pg_settings where name = 'server_version_num'";
        let num: i32 = parse_num(sql, client.query_value(sql)?.as_deref())?;
        client.version = PgVersion::from_server_version_num(num)?;
        client.server_version_num = num;
        client.execute(&format!(
            "set application_name = {}",
            quote_literal(&options.application_name)
        ))?;
        client.execute("set max_parallel_workers_per_gather = 0")?;
        Ok(client)
    }

    /// The connection string used, as shown in messages.
    #[must_use]
    pub fn conninfo(&self) -> &str {
        &self.conninfo
    }

    /// Runs `f` with the statement timeout enforced by a watchdog that cancels the query.
    fn run<T>(
        &mut self,
        sql: &str,
        f: impl FnOnce(&mut postgres::Client) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        if self.timeout.is_zero() {
            return f(&mut self.inner).map_err(|e| query_error(sql, &e));
        }
        let token = self.inner.cancel_token();
        let timeout = self.timeout;
        let (done, wait) = mpsc::channel::<()>();
        let watchdog = thread::spawn(move || match wait.recv_timeout(timeout) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = token.cancel_query(NoTls);
                true
            }
            _ => false,
        });
        let result = f(&mut self.inner);
        drop(done);
        // a watchdog that panicked did so while cancelling, i.e. after the timeout
        let timed_out = watchdog.join().unwrap_or(true);
        match result {
            Ok(value) => Ok(value),
            Err(_) if timed_out => Err(Error::new(
                ErrorKind::DbQuery,
                format!("query '{sql}' timed out after {}ms", timeout.as_millis()),
            )),
            Err(e) => Err(query_error(sql, &e)),
        }
    }

    /// Runs statements that return no rows.
    pub fn execute(&mut self, sql: &str) -> Result<()> {
        self.run(sql, |c| c.batch_execute(sql))
    }

    /// Runs any query and returns every row as text (`None` for SQL NULL).
    pub fn query_rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let messages = self.run(sql, |c| c.simple_query(sql))?;
        let mut rows = Vec::new();
        for message in messages {
            if let SimpleQueryMessage::Row(row) = message {
                let mut values = Vec::with_capacity(row.len());
                for idx in 0..row.len() {
                    let value = row.try_get(idx).map_err(|e| query_error(sql, &e))?;
                    values.push(value.map(str::to_string));
                }
                rows.push(values);
            }
        }
        Ok(rows)
    }

    /// Runs a query that must return exactly one row of one column.
    pub fn query_value(&mut self, sql: &str) -> Result<Option<String>> {
        let rows = self.query_rows(sql)?;
        match rows.as_slice() {
            [row] => match row.as_slice() {
                [value] => Ok(value.clone()),
                _ => Err(Error::new(
                    ErrorKind::DbQuery,
                    format!("{} columns returned by '{sql}' but expected 1", row.len()),
                )),
            },
            _ => Err(Error::new(
                ErrorKind::DbQuery,
                format!("{} rows returned by '{sql}' but expected 1", rows.len()),
            )),
        }
    }

    /// Like [`Client::query_value`] but NULL is an error.
    fn query_text(&mut self, sql: &str) -> Result<String> {
        self.query_value(sql)?
            .ok_or_else(|| Error::new(ErrorKind::DbQuery, format!("null returned by '{sql}'")))
    }

    /// `server_version_num` read at connect (`150018`).
    #[must_use]
    pub fn server_version_num(&self) -> i32 {
        self.server_version_num
    }

    /// The server's major.
    #[must_use]
    pub fn version(&self) -> PgVersion {
        self.version
    }

    /// The version table row of the server's major.
    pub fn version_info(&self) -> Result<&'static VersionInfo> {
        self.version.require_info()
    }

    /// `data_directory` as the server reports it.
    pub fn data_directory(&mut self) -> Result<String> {
        self.setting("data_directory")?.ok_or_else(|| {
            Error::new(
                ErrorKind::DbQuery,
                "unable to select some rows from pg_settings",
            )
            .with_hint("is the backup user a superuser or in the pg_read_all_settings role?")
        })
    }

    /// True on a standby (`pg_is_in_recovery()`).
    pub fn is_in_recovery(&mut self) -> Result<bool> {
        let sql = "select pg_catalog.pg_is_in_recovery()";
        Ok(self.query_text(sql)? == "t")
    }

    /// A server setting from `pg_settings` (`archive_mode`, `archive_command`,
    /// `checkpoint_timeout` in seconds…); `None` when unknown or not visible to the role.
    pub fn setting(&mut self, name: &str) -> Result<Option<String>> {
        let sql = format!(
            "select setting from pg_catalog.pg_settings where name = {}",
            quote_literal(name)
        );
        let rows = self.query_rows(&sql)?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten()))
    }

    /// Name of the WAL segment being written (primary only).
    pub fn current_wal_file(&mut self) -> Result<String> {
        let v = self.version_info()?;
        let sql = format!(
            "select pg_catalog.pg_{w}file_name(pg_catalog.pg_current_{w}_insert_{l}())::text",
            w = v.wal_name,
            l = v.lsn_name
        );
        self.query_text(&sql)
    }

    /// Forces a WAL segment switch and returns the name of the segment that was closed.
    ///
    /// Like pgBackRest, a restore point is created first so the current segment has something
    /// in it; otherwise a switch right after another one does nothing.
    pub fn switch_wal(&mut self) -> Result<String> {
        self.create_restore_point("pgkeep Archive Check")?;
        let v = self.version_info()?;
        let sql = format!(
            "select pg_catalog.pg_{w}file_name(pg_catalog.pg_switch_{w}())::text",
            w = v.wal_name
        );
        self.query_text(&sql)
    }

    /// Creates a named restore point and returns its LSN.
    pub fn create_restore_point(&mut self, name: &str) -> Result<Lsn> {
        let sql = format!(
            "select pg_catalog.pg_create_restore_point({})::text",
            quote_literal(name)
        );
        let text = self.query_text(&sql)?;
        text.parse()
            .map_err(|e: Error| Error::new(ErrorKind::DbQuery, e.message().to_string()))
    }

    /// Every database as (name, oid, oid of template0); pgBackRest records the last as
    /// `datlastsysoid` (the boundary between system and user databases).
    pub fn databases(&mut self) -> Result<Vec<DatabaseRow>> {
        let sql = "select oid::oid, datname::text, (select oid::oid from pg_catalog.pg_database \
                   where datname = 'template0') as datlastsysoid from pg_catalog.pg_database \
                   order by oid";
        let rows = self.query_rows(sql)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let [oid, name, last] = row.as_slice() else {
                return Err(Error::new(
                    ErrorKind::DbQuery,
                    format!("unexpected row shape returned by '{sql}'"),
                ));
            };
            let name = name.clone().unwrap_or_default();
            out.push((
                name,
                parse_num(sql, oid.as_deref())?,
                parse_num(sql, last.as_deref())?,
            ));
        }
        Ok(out)
    }

    /// Every tablespace as (oid, name).
    pub fn tablespaces(&mut self) -> Result<Vec<(u32, String)>> {
        let sql = "select oid::oid, spcname::text from pg_catalog.pg_tablespace order by oid";
        let rows = self.query_rows(sql)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let [oid, name] = row.as_slice() else {
                return Err(Error::new(
                    ErrorKind::DbQuery,
                    format!("unexpected row shape returned by '{sql}'"),
                ));
            };
            out.push((
                parse_num(sql, oid.as_deref())?,
                name.clone().unwrap_or_default(),
            ));
        }
        Ok(out)
    }

    /// The server clock (`clock_timestamp()`), Unix milliseconds.
    pub fn time_now_ms(&mut self) -> Result<i64> {
        let sql = "select (extract(epoch from pg_catalog.clock_timestamp()) * 1000)::bigint";
        let text = self.query_text(sql)?;
        parse_num(sql, Some(&text))
    }

    /// The server clock (`clock_timestamp()`), Unix seconds.
    pub fn time_now(&mut self) -> Result<i64> {
        Ok(self.time_now_ms()?.div_euclid(1000))
    }

    /// Closes the session cleanly.
    pub fn close(self) -> Result<()> {
        let conninfo = self.conninfo;
        self.inner.close().map_err(|e| {
            Error::new(
                ErrorKind::DbQuery,
                format!("unable to close '{conninfo}': {}", cause(&e)),
            )
        })
    }
}

fn query_error(sql: &str, e: &postgres::Error) -> Error {
    Error::new(
        ErrorKind::DbQuery,
        format!("unable to execute query '{sql}': {}", cause(e)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_like_pgbackrest() {
        let mut o = ClientOptions {
            socket_path: Some("/tmp".to_string()),
            ..ClientOptions::default()
        };
        assert_eq!(o.conninfo(), "dbname='postgres' port=5432 host='/tmp'");
        o.user = Some("it's\\me".to_string());
        o.port = 6000;
        o.database = "db".to_string();
        assert_eq!(
            o.conninfo(),
            "dbname='db' port=6000 user='it\\'s\\\\me' host='/tmp'"
        );
        o.socket_path = None;
        o.host = Some("db.example".to_string());
        assert!(o.conninfo().ends_with(" host='db.example'"));
        o.host = None;
        assert_eq!(o.conninfo(), "dbname='db' port=6000 user='it\\'s\\\\me'");
    }

    #[test]
    fn literal_quoting() {
        assert_eq!(quote_literal("a'b"), "'a''b'");
        assert_eq!(quote_literal(""), "''");
    }

    #[test]
    fn connect_failure_names_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let options = ClientOptions {
            socket_path: Some(dir.path().display().to_string()),
            port: 5999,
            timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        };
        let err = Client::connect(&options).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DbConnect);
        let prefix = format!(
            "unable to connect to 'dbname='postgres' port=5999 host='{}'': ",
            dir.path().display()
        );
        assert!(err.message().starts_with(&prefix), "{}", err.message());
    }
}
