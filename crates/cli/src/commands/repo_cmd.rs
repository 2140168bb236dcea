//! `repo-ls` and `repo-get`: list and read repository files (pgBackRest 2.45 `src/command/repo/{ls,get,common}.c`),
//! with pgBackRest's output byte for byte.
//!
//! Contract:
//! - Both work on one repository (`--repo`, else the first) and take one path parameter, relative to the repository
//!   or absolute below `repoN-path`; `//` is refused and a trailing `/` ignored (pgBackRest `repoPathIsValid()`).
//! - `repo-ls` lists a path (or, for a file, the file itself as `.`), optionally `--recurse`d (paths before their
//!   content, after it with `--sort=desc`), filtered by a POSIX extended regular expression (`--filter`, matched
//!   against the name relative to the listed path) and sorted by name (byte order). Text is one name per line;
//!   JSON is one object `{"<name>":{"type":..,"size":..,"time":..,"destination":..},...}` on one line, starting with
//!   `"."` for a listed path. A missing path lists as empty (text) or as just `"."` (JSON).
//! - `repo-get` writes a file's bytes to stdout. Unless `--raw`, an encrypted repository's file is decrypted with the
//!   passphrase pgBackRest would use: `--cipher-pass`, else by location — info files with `repoN-cipher-pass`, the
//!   archive with archive.info's sub-passphrase, manifests and `backup.history` with backup.info's, backup files
//!   with their manifest's. Like pgBackRest it does not decompress (the bytes of a `.gz` file stay gzip), so the
//!   output can be piped into the matching tool. A missing file is an error, or exit code 1 with
//!   `--ignore-missing`. A closed stdout (e.g. `| head`) is not an error.

use std::io::Write;

use pgkeep_base::io::{Chain, FilterRead, FilterSpec};
use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_config::{Group, OptionId};
use pgkeep_repo::info::load_info;
use pgkeep_repo::layout;
use pgkeep_repo::manifest::LazyManifest;
use pgkeep_repo::{ArchiveInfo, BackupInfo};
use pgkeep_storage::{FileType, InfoLevel, ReadOptions, Storage, StorageInfo, join};

use crate::ctx::{Ctx, Repo};

/// The repository the repo commands work on: `--repo`, else the default (first) one.
fn default_repo(ctx: &Ctx) -> Result<Repo> {
    let key = match ctx.cfg.int(OptionId::Repo) {
        Some(key) => u32::try_from(key).unwrap_or(1),
        None => ctx.cfg.default_index(Group::Repo),
    };
    ctx.repo(key)
}

/// pgBackRest `repoPathIsValid()`: the repository-relative form of `path`.
///
/// # Errors
/// `ParamInvalid` for `//` or an absolute path outside the repository.
pub fn repo_relative(path: &str, repo_root: &str, repo_path_display: &str) -> Result<String> {
    if path.contains("//") {
        return Err(Error::new(
            ErrorKind::ParamInvalid,
            format!("path '{path}' cannot contain //"),
        ));
    }
    let path = if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    };
    let Some(_) = path.strip_prefix('/') else {
        return Ok(path.to_string());
    };
    if path == repo_root {
        return Ok(String::new());
    }
    if repo_root == "/" {
        return Ok(path.trim_start_matches('/').to_string());
    }
    match path
        .strip_prefix(repo_root)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        Some(rest) => Ok(rest.to_string()),
        None => Err(Error::new(
            ErrorKind::ParamInvalid,
            format!("absolute path '{path}' is not in base path '{repo_path_display}'"),
        )),
    }
}

fn relative_param(ctx: &Ctx, repo: &Repo, path: &str) -> Result<String> {
    let display = ctx
        .cfg
        .display(OptionId::RepoPath, Some(repo.key))
        .unwrap_or_else(|| repo.storage.root().to_string());
    repo_relative(path, repo.storage.root(), &display)
}

/// pgBackRest's JSON string: escapes `"`, `\`, `\n`, `\r`, `\t`, `\b`, `\f` only.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            other => out.push(other),
        }
    }
    out.push('"');
    out
}

fn render_entry(name: &str, info: &StorageInfo, json: bool) -> String {
    if !json {
        return format!("{name}\n");
    }
    let ty = match info.file_type {
        FileType::File => "file",
        FileType::Link => "link",
        FileType::Path => "path",
        FileType::Special => "special",
    };
    let mut out = format!("{}:{{\"type\":\"{ty}\"", json_str(name));
    if info.file_type == FileType::File {
        out.push_str(&format!(",\"size\":{},\"time\":{}", info.size, info.mtime));
    }
    if info.file_type == FileType::Link {
        out.push_str(&format!(
            ",\"destination\":{}",
            json_str(info.link_destination.as_deref().unwrap_or_default())
        ));
    }
    out.push('}');
    out
}

/// Sort order of `--sort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// By name, ascending.
    Asc,
    /// By name, descending (a path follows its content when recursing).
    Desc,
    /// As the storage lists them.
    None,
}

/// What to list.
pub struct Listing<'a> {
    /// Recurse into paths.
    pub recurse: bool,
    /// Sort order.
    pub sort: Sort,
    /// Filter on the relative name.
    pub filter: Option<&'a regex::bytes::Regex>,
}

/// pgBackRest's storage iterator: every entry below `path` as `(relative name, info)`, in its order.
///
/// # Errors
/// Storage errors.
pub fn walk(
    storage: &dyn Storage,
    path: &str,
    listing: &Listing<'_>,
) -> Result<Vec<(String, StorageInfo)>> {
    let mut out = Vec::new();
    walk_into(storage, path, None, listing, &mut out)?;
    Ok(out)
}

fn list_sorted(storage: &dyn Storage, path: &str, sort: Sort) -> Result<Option<Vec<StorageInfo>>> {
    let Some(mut entries) = storage.list(path, InfoLevel::Detail)? else {
        return Ok(None);
    };
    match sort {
        Sort::Asc => entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes())),
        Sort::Desc => entries.sort_by(|a, b| b.name.as_bytes().cmp(a.name.as_bytes())),
        Sort::None => {}
    }
    Ok(Some(entries))
}

fn walk_into(
    storage: &dyn Storage,
    root: &str,
    sub: Option<&str>,
    listing: &Listing<'_>,
    out: &mut Vec<(String, StorageInfo)>,
) -> Result<()> {
    let here = match sub {
        Some(sub) => join(root, sub),
        None => root.to_string(),
    };
    let Some(entries) = list_sorted(storage, &here, listing.sort)? else {
        return Ok(());
    };
    for entry in entries {
        let name = match sub {
            Some(sub) => format!("{sub}/{}", entry.name),
            None => entry.name.clone(),
        };
        // the content of a path is listed only when there is some
        let content = if entry.file_type == FileType::Path && listing.recurse {
            storage
                .list(&join(root, &name), InfoLevel::Exists)?
                .is_some_and(|l| !l.is_empty())
        } else {
            false
        };
        let matches = listing.filter.is_none_or(|re| re.is_match(name.as_bytes()));
        if !matches {
            if content {
                walk_into(storage, root, Some(&name), listing, out)?;
            }
            continue;
        }
        if content && listing.sort == Sort::Desc {
            walk_into(storage, root, Some(&name), listing, out)?;
            out.push((name, entry));
        } else {
            out.push((name.clone(), entry));
            if content {
                walk_into(storage, root, Some(&name), listing, out)?;
            }
        }
    }
    Ok(())
}

/// Compile `--filter` (POSIX extended syntax, bytes, no Unicode classes).
///
/// # Errors
/// `Format` (as pgBackRest's `regcomp()` failure) when the expression does not compile.
pub fn compile_filter(expression: &str) -> Result<regex::bytes::Regex> {
    regex::bytes::RegexBuilder::new(expression)
        .unicode(false)
        .build()
        .map_err(|e| {
            let first = e.to_string();
            let first = first.lines().last().unwrap_or_default().trim().to_string();
            Error::new(
                ErrorKind::Format,
                format!("invalid regular expression '{expression}': {first}"),
            )
        })
}

/// `repo-ls`.
///
/// # Errors
/// Parameter and option errors, storage errors.
pub fn ls(ctx: &Ctx) -> Result<()> {
    let params = ctx.cfg.params();
    if params.len() > 1 {
        return Err(Error::new(
            ErrorKind::ParamInvalid,
            "only one path may be specified",
        ));
    }
    let repo = default_repo(ctx)?;
    let path = match params.first() {
        Some(p) => relative_param(ctx, &repo, p)?,
        None => String::new(),
    };
    let json = ctx.cfg.str(OptionId::Output) == Some("json");
    let filter = ctx
        .cfg
        .str(OptionId::Filter)
        .map(compile_filter)
        .transpose()?;
    let sort = match ctx.cfg.str(OptionId::Sort) {
        Some("desc") => Sort::Desc,
        Some("none") => Sort::None,
        _ => Sort::Asc,
    };
    let storage = repo.storage.as_ref();
    let mut out = String::new();
    if json {
        out.push('{');
    }
    let info = storage.info(&path, InfoLevel::Detail, false)?;
    match info {
        Some(info) if info.file_type == FileType::File => {
            let full = join(storage.root(), &path);
            if filter
                .as_ref()
                .is_none_or(|re| re.is_match(full.as_bytes()))
            {
                out.push_str(&render_entry(".", &info, json));
            }
        }
        _ => {
            let mut first = true;
            if json && filter.as_ref().is_none_or(|re| re.is_match(b".")) {
                let dot = StorageInfo {
                    name: ".".to_string(),
                    file_type: FileType::Path,
                    size: 0,
                    mtime: 0,
                    mode: 0,
                    uid: 0,
                    gid: 0,
                    user: None,
                    group: None,
                    link_destination: None,
                };
                out.push_str(&render_entry(".", &dot, json));
                first = false;
            }
            let listing = Listing {
                recurse: ctx.cfg.bool(OptionId::Recurse),
                sort,
                filter: filter.as_ref(),
            };
            for (name, info) in walk(storage, &path, &listing)? {
                if json && !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&render_entry(&name, &info, json));
            }
        }
    }
    if json {
        out.push_str("}\n");
    }
    // a closed stdout (e.g. piped into head) is not an error, as in pgBackRest
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(())
}

/// The passphrase pgBackRest's repo-get decrypts `file` with (`None` when it cannot tell).
fn cipher_pass_for(ctx: &Ctx, repo: &Repo, file: &str) -> Result<Option<String>> {
    if let Some(pass) = ctx.cfg.str(OptionId::CipherPass) {
        return Ok(Some(pass.to_string()));
    }
    let parts: Vec<&str> = file.split('/').collect();
    let (Some(kind), Some(stanza), Some(third)) = (parts.first(), parts.get(1), parts.get(2))
    else {
        return Ok(None);
    };
    if let Some(option) = ctx.stanza_opt()
        && option != *stanza
    {
        return Err(Error::new(
            ErrorKind::OptionInvalidValue,
            format!("stanza name '{option}' given in option doesn't match the given path"),
        ));
    }
    let storage = repo.storage.as_ref();
    let repo_pass = repo.cipher_pass.clone();
    let ends = |name: &str| file.ends_with(name) || file.ends_with(&layout::copy_path(name));
    let mut pass = None;
    if *kind == layout::ARCHIVE_DIR {
        pass = repo_pass.clone();
        if !ends(layout::ARCHIVE_INFO_FILE) {
            let info: ArchiveInfo = load_info(
                storage,
                &layout::archive_info_path(stanza),
                repo_pass.as_deref(),
            )?;
            pass = info.cipher_pass;
        }
    }
    if *kind == layout::BACKUP_DIR {
        pass = repo_pass.clone();
        if !ends(layout::BACKUP_INFO_FILE) {
            let info: BackupInfo = load_info(
                storage,
                &layout::backup_info_path(stanza),
                repo_pass.as_deref(),
            )?;
            pass = info.cipher_pass;
            if *third != layout::HISTORY_DIR && !ends(layout::MANIFEST_FILE) {
                // only its passphrase is needed: the file entries stay in the repository
                let manifest = LazyManifest::load(
                    storage,
                    &layout::manifest_path(stanza, third),
                    pass.as_deref(),
                )?;
                pass = manifest.manifest.cipher_pass;
            }
        }
    }
    Ok(pass)
}

/// `repo-get`; returns the exit code (1 for a missing file with `--ignore-missing`).
///
/// # Errors
/// `ParamRequired` without exactly one file, passphrase, storage and decryption errors.
pub fn get(ctx: &Ctx) -> Result<u8> {
    let params = ctx.cfg.params();
    let [file] = params else {
        return Err(Error::new(ErrorKind::ParamRequired, "source file required"));
    };
    let repo = default_repo(ctx)?;
    let file = relative_param(ctx, &repo, file)?;
    let mut chain = Chain::new();
    let encrypted = ctx
        .cfg
        .str_idx(OptionId::RepoCipherType, repo.key)
        .is_some_and(|t| t != "none");
    if !ctx.cfg.bool(OptionId::Raw) && encrypted {
        let pass = cipher_pass_for(ctx, &repo, &file)?.ok_or_else(|| {
            Error::new(
                ErrorKind::OptionInvalidValue,
                format!("unable to determine cipher passphrase for '{file}'"),
            )
        })?;
        chain.transform(FilterSpec::Decrypt { pass })?;
    }
    let Some(source) = repo.storage.open_read(
        &file,
        ReadOptions {
            ignore_missing: ctx.cfg.bool(OptionId::IgnoreMissing),
            ..ReadOptions::default()
        },
    )?
    else {
        return Ok(1);
    };
    let mut reader = FilterRead::new(source, chain);
    let mut stdout = std::io::stdout().lock();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read_data(&mut buf)?;
        if n == 0 {
            break;
        }
        if stdout.write_all(buf.get(..n).unwrap_or_default()).is_err() {
            // the reader went away (e.g. `| head`): stop quietly, as pgBackRest does
            return Ok(0);
        }
    }
    let _ = stdout.flush();
    Ok(0)
}

#[cfg(test)]
mod tests {
    use pgkeep_storage::posix::PosixStorage;

    use super::*;

    #[test]
    fn paths_are_made_relative_as_pgbackrest_does() {
        assert_eq!(
            repo_relative("backup/demo", "/r", "/r").unwrap(),
            "backup/demo"
        );
        assert_eq!(
            repo_relative("backup/demo/", "/r", "/r").unwrap(),
            "backup/demo"
        );
        assert_eq!(repo_relative("/r", "/r", "/r").unwrap(), "");
        assert_eq!(repo_relative("/r/", "/r", "/r").unwrap(), "");
        assert_eq!(repo_relative("/r/archive", "/r", "/r").unwrap(), "archive");
        assert_eq!(repo_relative("/x/y", "/", "/").unwrap(), "x/y");
        let err = repo_relative("/rx/archive", "/r", "/r/").unwrap_err();
        assert_eq!(err.code(), 96);
        assert_eq!(
            err.message(),
            "absolute path '/rx/archive' is not in base path '/r/'"
        );
        assert_eq!(
            repo_relative("a//b", "/r", "/r").unwrap_err().message(),
            "path 'a//b' cannot contain //"
        );
    }

    #[test]
    fn json_strings_escape_like_pgbackrest() {
        assert_eq!(
            json_str("a\"b\\c\nd\te/f\u{1}"),
            "\"a\\\"b\\\\c\\nd\\te/f\u{1}\""
        );
    }

    #[test]
    fn walk_orders_recursion_and_filters_like_the_storage_iterator() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for p in ["a/x", "a/y", "b", "c/empty"] {
            std::fs::create_dir_all(root.join(p)).unwrap();
        }
        std::fs::write(root.join("a/x/f1"), b"1").unwrap();
        std::fs::write(root.join("a/f0"), b"0").unwrap();
        std::fs::write(root.join("z"), b"zz").unwrap();
        let storage = PosixStorage::new(root.to_str().unwrap());
        let names = |listing: &Listing<'_>| -> Vec<String> {
            walk(&storage, "", listing)
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        let flat = Listing {
            recurse: false,
            sort: Sort::Asc,
            filter: None,
        };
        assert_eq!(names(&flat), ["a", "b", "c", "z"]);
        let rec = Listing {
            recurse: true,
            ..flat
        };
        assert_eq!(
            names(&rec),
            [
                "a", "a/f0", "a/x", "a/x/f1", "a/y", "b", "c", "c/empty", "z"
            ]
        );
        let desc = Listing {
            recurse: true,
            sort: Sort::Desc,
            filter: None,
        };
        assert_eq!(
            names(&desc),
            [
                "z", "c/empty", "c", "b", "a/y", "a/x/f1", "a/x", "a/f0", "a"
            ]
        );
        let re = compile_filter("f[0-9]$").unwrap();
        let filtered = Listing {
            recurse: true,
            sort: Sort::Asc,
            filter: Some(&re),
        };
        assert_eq!(names(&filtered), ["a/f0", "a/x/f1"]);
        assert!(walk(&storage, "missing", &flat).unwrap().is_empty());
        assert_eq!(compile_filter("(").unwrap_err().code(), 29);
        let info = storage
            .info("z", InfoLevel::Detail, false)
            .unwrap()
            .unwrap();
        assert_eq!(
            render_entry("z", &info, true),
            format!(
                "\"z\":{{\"type\":\"file\",\"size\":2,\"time\":{}}}",
                info.mtime
            )
        );
        assert_eq!(render_entry("z", &info, false), "z\n");
    }
}
