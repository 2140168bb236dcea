//! Where a backup's targets go: the data directory, tablespaces and links, remapped as the user
//! asks (pgBackRest `restoreManifestMap()`, `manifestLinkCheck()`, `manifestTargetPath()`).
//!
//! Contract:
//! - [`apply`] changes only the manifest's targets and links, in pgBackRest's order: data
//!   directory to `pg1-path`; tablespaces by `--tablespace-map` (by name or id, both must agree)
//!   then `--tablespace-map-all`; links by `--link-map` (an existing link is moved, a path or file
//!   of the backup becomes a new link); without `--link-all`, every link that was not mapped is
//!   dropped so its content is restored in place (a warning each). It returns the messages to log.
//! - [`link_check`] refuses destinations that would overlap: inside the data directory, two links
//!   to one directory or one file, a directory link inside another's destination.
//! - [`target_path`] is the absolute directory of a target: its `path`, resolved against the
//!   link's directory in the data directory when relative.
//! - Nothing here touches the file system.

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_repo::manifest::{Manifest, ManifestLink, ManifestTarget, TARGET_PGDATA, TargetType};

/// The remapping options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maps {
    /// `--tablespace-map` pairs (name or oid → path).
    pub tablespace: Vec<(String, String)>,
    /// `--tablespace-map-all`.
    pub tablespace_all: Option<String>,
    /// `--link-map` pairs (link path relative to the data directory → destination).
    pub link: Vec<(String, String)>,
    /// `--link-all`.
    pub link_all: bool,
}

/// Messages to log after remapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    /// Info level.
    pub info: Vec<String>,
    /// Warning level.
    pub warn: Vec<String>,
}

/// The path of a manifest name relative to the data directory (pgBackRest `manifestPathPg()`):
/// `pg_data` → ``, `pg_data/x` → `x`, `pg_tblspc/...` unchanged.
#[must_use]
pub fn pg_relative(name: &str) -> &str {
    if name == TARGET_PGDATA {
        ""
    } else if let Some(rest) = name
        .strip_prefix(TARGET_PGDATA)
        .and_then(|r| r.strip_prefix('/'))
    {
        rest
    } else {
        name
    }
}

/// Directory part of a path (`a/b` → `a`, `/b` → `/`, `b` → ``).
#[must_use]
pub fn dir_name(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => path.get(..i).unwrap_or_default(),
        None => "",
    }
}

/// Last component of a path.
#[must_use]
pub fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `path` made absolute against the absolute `base`, with `.` and `..` resolved.
///
/// # Errors
/// `Assert` when `..` climbs above `/`.
pub fn path_absolute(path: &str, base: &str) -> Result<String> {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", base.trim_end_matches('/'))
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(Error::new(
                        ErrorKind::Assert,
                        format!("result path '{path}' relative to '{base}' is above the root"),
                    ));
                }
            }
            other => parts.push(other),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The absolute directory of target `name`.
///
/// # Errors
/// `Format` when the target or the data directory target is missing; see [`path_absolute`].
pub fn target_path(manifest: &Manifest, name: &str) -> Result<String> {
    let target = manifest
        .targets
        .get(name)
        .ok_or_else(|| missing_target(name))?;
    if target.path.starts_with('/') {
        return Ok(target.path.clone());
    }
    let base = manifest
        .targets
        .get(TARGET_PGDATA)
        .ok_or_else(|| missing_target(TARGET_PGDATA))?;
    let dir = dir_name(pg_relative(name));
    let relative = if dir.is_empty() {
        target.path.clone()
    } else {
        format!("{dir}/{}", target.path)
    };
    path_absolute(&relative, &base.path)
}

fn missing_target(name: &str) -> Error {
    Error::new(
        ErrorKind::Format,
        format!("unable to find '{name}' in manifest target list"),
    )
}

/// The link entry of a target: tablespace targets `pg_tblspc/N` are linked as `pg_data/pg_tblspc/N`.
#[must_use]
pub fn link_name(target_name: &str) -> String {
    if target_name.starts_with("pg_tblspc/") {
        format!("{TARGET_PGDATA}/{target_name}")
    } else {
        target_name.to_string()
    }
}

/// Remap the manifest (see the module contract).
///
/// # Errors
/// `TablespaceMap` (76) and `LinkMap` (78) with pgBackRest's messages.
pub fn apply(manifest: &mut Manifest, pg_path: &str, maps: &Maps) -> Result<Notes> {
    let mut notes = Notes::default();

    // the data directory
    let base = manifest
        .targets
        .get_mut(TARGET_PGDATA)
        .ok_or_else(|| missing_target(TARGET_PGDATA))?;
    if base.path != pg_path {
        notes
            .info
            .push(format!("remap data directory to '{pg_path}'"));
        base.path = pg_path.to_string();
    }

    // tablespaces
    if !maps.tablespace.is_empty() || maps.tablespace_all.is_some() {
        let lookup = |key: &str| {
            maps.tablespace
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let mut remapped: Vec<String> = Vec::new();
        let mut changes: Vec<(String, String)> = Vec::new();
        for (name, target) in &manifest.targets {
            let Some(id) = target.tablespace_id.filter(|id| *id != 0) else {
                continue;
            };
            let ts_name = target
                .tablespace_name
                .clone()
                .unwrap_or_else(|| format!("ts{id}"));
            let by_name = lookup(&ts_name);
            let by_id = lookup(&id.to_string());
            if by_name.is_some() {
                remapped.push(ts_name.clone());
            }
            if by_id.is_some() {
                remapped.push(id.to_string());
            }
            let path = match (by_name, by_id) {
                (Some(a), Some(b)) if a != b => {
                    return Err(Error::new(
                        ErrorKind::TablespaceMap,
                        format!(
                            "tablespace remapped by name '{ts_name}' and id {id} with different paths"
                        ),
                    ));
                }
                (Some(a), _) => Some(a),
                (None, Some(b)) => Some(b),
                (None, None) => maps
                    .tablespace_all
                    .as_ref()
                    .map(|all| format!("{}/{ts_name}", all.trim_end_matches('/'))),
            };
            if let Some(path) = path {
                notes
                    .info
                    .push(format!("map tablespace '{name}' to '{path}'"));
                changes.push((name.clone(), path));
            }
        }
        for (key, _) in &maps.tablespace {
            if !remapped.contains(key) {
                return Err(Error::new(
                    ErrorKind::TablespaceMap,
                    format!("unable to remap invalid tablespace '{key}'"),
                ));
            }
        }
        for (name, path) in changes {
            if let Some(target) = manifest.targets.get_mut(&name) {
                target.path.clone_from(&path);
            }
            if let Some(link) = manifest.links.get_mut(&link_name(&name)) {
                link.destination = path;
            }
        }
    }

    // links
    let mut link_keys: Vec<&(String, String)> = maps.link.iter().collect();
    link_keys.sort_by(|a, b| a.0.cmp(&b.0));
    link_keys.dedup_by(|a, b| a.0 == b.0);
    for (link, _) in &link_keys {
        let Some(destination) = maps
            .link
            .iter()
            .rev()
            .find(|(k, _)| k == link)
            .map(|(_, v)| v.clone())
        else {
            continue;
        };
        map_link(manifest, link, &destination, &mut notes)?;
    }

    // links not mapped are restored as plain directories or files
    if !maps.link_all {
        let unmapped: Vec<(String, bool)> = manifest
            .targets
            .iter()
            .filter(|(name, t)| {
                t.target_type == TargetType::Link
                    && t.tablespace_id.unwrap_or(0) == 0
                    && !maps.link.iter().any(|(k, _)| k == pg_relative(name))
            })
            .map(|(name, t)| (name.clone(), t.file.is_some()))
            .collect();
        for (name, file) in unmapped {
            let link = pg_relative(&name);
            notes.warn.push(if file {
                format!("file link '{link}' will be restored as a file at the same location")
            } else {
                format!(
                    "contents of directory link '{link}' will be restored in a directory at the same location"
                )
            });
            manifest.links.remove(&name);
            manifest.targets.remove(&name);
        }
    }
    Ok(notes)
}

fn map_link(
    manifest: &mut Manifest,
    link: &str,
    destination: &str,
    notes: &mut Notes,
) -> Result<()> {
    let name = format!("{TARGET_PGDATA}/{link}");
    let existing = manifest.targets.get(&name).cloned();
    let (mut target, create) = match existing {
        Some(target) => (target, false),
        None => {
            let path_exists = manifest.paths.contains_key(&name);
            let file_exists = manifest.files.contains_key(&name);
            if path_exists && file_exists {
                return Err(Error::new(
                    ErrorKind::Format,
                    "link may not be both file and path",
                ));
            }
            if !path_exists && !file_exists {
                return Err(
                    Error::new(ErrorKind::LinkMap, format!("unable to map link '{link}'"))
                        .with_hint("Does the link reference a valid backup path or file?"),
                );
            }
            (
                ManifestTarget {
                    target_type: TargetType::Link,
                    path: destination.to_string(),
                    file: file_exists.then(|| ".".to_string()),
                    tablespace_id: None,
                    tablespace_name: None,
                    extra: Default::default(),
                },
                true,
            )
        }
    };
    if target.target_type != TargetType::Link {
        return Err(Error::new(ErrorKind::Format, "target must be a link"));
    }
    if target.tablespace_id.unwrap_or(0) != 0 {
        return Err(Error::new(
            ErrorKind::LinkMap,
            format!("unable to remap tablespace '{link}'"),
        )
        .with_hint("use 'tablespace-map' option to remap tablespaces."));
    }
    target.path = destination.to_string();
    notes.info.push(format!(
        "{}link '{link}' to '{destination}'",
        if create { "" } else { "map " }
    ));
    if create {
        let (user, group) = manifest
            .paths
            .get(TARGET_PGDATA)
            .map(|p| (p.user.clone(), p.group.clone()))
            .unwrap_or_default();
        manifest.links.insert(
            name.clone(),
            ManifestLink {
                destination: destination.to_string(),
                user,
                group,
                extra: Default::default(),
            },
        );
    } else if let Some(entry) = manifest.links.get_mut(&name) {
        entry.destination = destination.to_string();
    }
    if target.file.is_some() {
        let dir = dir_name(destination);
        if dir.is_empty() {
            return Err(Error::new(
                ErrorKind::LinkMap,
                format!(
                    "'{destination}' is not long enough to be the destination for file link '{link}'"
                ),
            ));
        }
        target.file = Some(base_name(destination).to_string());
        target.path = dir.to_string();
    }
    manifest.targets.insert(name, target);
    Ok(())
}

/// Refuse overlapping link destinations (see the module contract).
///
/// # Errors
/// `LinkDestination` (70) with pgBackRest's messages.
pub fn link_check(manifest: &Manifest) -> Result<()> {
    let base = format!(
        "{}/",
        target_path(manifest, TARGET_PGDATA)?.trim_end_matches('/')
    );
    struct Seen {
        name: String,
        dir: String,
        file: Option<String>,
    }
    let mut seen: Vec<Seen> = Vec::new();
    for (name, target) in &manifest.targets {
        if target.target_type != TargetType::Link {
            continue;
        }
        let full = target_path(manifest, name)?;
        let dir = format!("{}/", full.trim_end_matches('/'));
        let shown = pg_relative(name).to_string();
        if dir.starts_with(&base) {
            return Err(Error::new(
                ErrorKind::LinkDestination,
                format!("link '{shown}' destination '{full}' is in PGDATA"),
            ));
        }
        let strip = |d: &str| d.trim_end_matches('/').to_string();
        for other in &seen {
            let other_shown = pg_relative(&other.name);
            if other.dir == dir {
                match (&target.file, &other.file) {
                    (Some(a), Some(b)) if a == b => {
                        return Err(Error::new(
                            ErrorKind::LinkDestination,
                            format!(
                                "link '{shown}' ({}/{a}) destination is the same file as link '{other_shown}' ({}/{b})",
                                strip(&dir),
                                strip(&other.dir)
                            ),
                        ));
                    }
                    (Some(_), Some(_)) => {}
                    _ => {
                        return Err(Error::new(
                            ErrorKind::LinkDestination,
                            format!(
                                "link '{shown}' ({}) destination is the same directory as link '{other_shown}' ({})",
                                strip(&dir),
                                strip(&other.dir)
                            ),
                        ));
                    }
                }
            } else if target.file.is_none() && other.file.is_none() {
                let (sub, sub_dir, parent, parent_dir) = if dir.starts_with(&other.dir) {
                    (shown.as_str(), &dir, other_shown, &other.dir)
                } else if other.dir.starts_with(&dir) {
                    (other_shown, &other.dir, shown.as_str(), &dir)
                } else {
                    continue;
                };
                return Err(Error::new(
                    ErrorKind::LinkDestination,
                    format!(
                        "link '{sub}' ({}) destination is a subdirectory of link '{parent}' ({})",
                        strip(sub_dir),
                        strip(parent_dir)
                    ),
                ));
            }
        }
        seen.push(Seen {
            name: name.clone(),
            dir,
            file: target.file.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A manifest from INI text (no checksum needed; `[backrest]` is skipped).
    pub(crate) fn manifest_from_text(text: &str) -> Manifest {
        let mut ini = pgkeep_repo::info::Ini::new();
        let mut section = String::new();
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
                continue;
            }
            if section == "backrest" {
                continue;
            }
            let (key, value) = line.split_once('=').unwrap();
            ini.section_mut(&section).push(key, value);
        }
        <Manifest as pgkeep_repo::InfoFile>::from_ini(ini).unwrap()
    }

    /// The targets of the pgBackRest sample manifest (§3.5), with paths and files behind them.
    fn manifest() -> Manifest {
        let text = "[backrest]\nbackrest-format=5\nbackrest-version=\"2.45\"\n\n[backup]\nbackup-label=\"20240101-000000F\"\nbackup-timestamp-copy-start=1\nbackup-timestamp-start=1\nbackup-timestamp-stop=2\nbackup-type=\"full\"\n\n[backup:db]\ndb-catalog-version=202209061\ndb-control-version=1300\ndb-id=1\ndb-system-id=1\ndb-version=\"15\"\n\n[backup:option]\noption-archive-check=true\noption-archive-copy=false\noption-compress=false\noption-hardlink=false\noption-online=true\n\n[backup:target]\npg_data={\"path\":\"/srv/demo/data\",\"type\":\"path\"}\npg_data/mylinkdir={\"path\":\"/srv/demo/ext/dirlink\",\"type\":\"link\"}\npg_data/pg_ident.conf={\"file\":\"pg_ident.conf\",\"path\":\"/srv/demo/ext/conf\",\"type\":\"link\"}\npg_tblspc/16384={\"path\":\"/srv/demo/ts1\",\"tablespace-id\":\"16384\",\"tablespace-name\":\"ts1\",\"type\":\"link\"}\n\n[target:file]\npg_data/PG_VERSION={\"checksum\":\"587b596f04f7db9c2cad3d6b87dd2b3a05de4f35\",\"size\":3,\"timestamp\":1}\npg_data/pg_hba.conf={\"checksum\":\"587b596f04f7db9c2cad3d6b87dd2b3a05de4f35\",\"size\":3,\"timestamp\":1}\npg_data/pg_ident.conf={\"checksum\":\"587b596f04f7db9c2cad3d6b87dd2b3a05de4f35\",\"size\":3,\"timestamp\":1}\n\n[target:file:default]\ngroup=\"postgres\"\nmode=\"0600\"\nuser=\"postgres\"\n\n[target:link]\npg_data/mylinkdir={\"destination\":\"/srv/demo/ext/dirlink\"}\npg_data/pg_ident.conf={\"destination\":\"/srv/demo/ext/conf/pg_ident.conf\"}\npg_data/pg_tblspc/16384={\"destination\":\"/srv/demo/ts1\"}\n\n[target:link:default]\ngroup=\"postgres\"\nuser=\"postgres\"\n\n[target:path]\npg_data={}\npg_data/base={}\npg_data/mylinkdir={}\npg_data/pg_tblspc={}\npg_tblspc={}\npg_tblspc/16384={}\n\n[target:path:default]\ngroup=\"postgres\"\nmode=\"0700\"\nuser=\"postgres\"\n";
        manifest_from_text(text)
    }

    #[test]
    fn names_and_paths() {
        assert_eq!(pg_relative("pg_data"), "");
        assert_eq!(pg_relative("pg_data/base/1"), "base/1");
        assert_eq!(pg_relative("pg_tblspc/1/PG_15"), "pg_tblspc/1/PG_15");
        assert_eq!(dir_name("a/b/c"), "a/b");
        assert_eq!(dir_name("/c"), "/");
        assert_eq!(dir_name("c"), "");
        assert_eq!(path_absolute("../x/./y", "/a/b").unwrap(), "/a/x/y");
        assert_eq!(path_absolute("/abs", "/a").unwrap(), "/abs");
        assert!(path_absolute("../../..", "/a").is_err());
        let mut m = manifest();
        m.targets.get_mut("pg_tblspc/16384").unwrap().path = "../ts".to_string();
        assert_eq!(
            target_path(&m, "pg_tblspc/16384").unwrap(),
            "/srv/demo/data/ts"
        );
        m.targets.get_mut("pg_data/mylinkdir").unwrap().path = "../other".to_string();
        assert_eq!(
            target_path(&m, "pg_data/mylinkdir").unwrap(),
            "/srv/demo/other"
        );
    }

    #[test]
    fn default_drops_plain_links_and_keeps_tablespaces() {
        let mut m = manifest();
        let notes = apply(&mut m, "/restore", &Maps::default()).unwrap();
        assert_eq!(notes.info, vec!["remap data directory to '/restore'"]);
        assert_eq!(
            notes.warn,
            vec![
                "contents of directory link 'mylinkdir' will be restored in a directory at the same location",
                "file link 'pg_ident.conf' will be restored as a file at the same location",
            ]
        );
        assert_eq!(
            m.targets.keys().collect::<Vec<_>>(),
            vec!["pg_data", "pg_tblspc/16384"]
        );
        assert_eq!(
            m.links.keys().collect::<Vec<_>>(),
            vec!["pg_data/pg_tblspc/16384"]
        );
        link_check(&m).unwrap();
    }

    #[test]
    fn tablespace_maps_by_name_id_and_all() {
        let mut m = manifest();
        let maps = Maps {
            tablespace: vec![("ts1".into(), "/new/ts".into())],
            link_all: true,
            ..Maps::default()
        };
        let notes = apply(&mut m, "/srv/demo/data", &maps).unwrap();
        assert_eq!(
            notes.info,
            vec!["map tablespace 'pg_tblspc/16384' to '/new/ts'"]
        );
        assert_eq!(m.targets["pg_tblspc/16384"].path, "/new/ts");
        assert_eq!(m.links["pg_data/pg_tblspc/16384"].destination, "/new/ts");

        let mut m = manifest();
        let maps = Maps {
            tablespace: vec![("16384".into(), "/a".into()), ("ts1".into(), "/b".into())],
            ..Maps::default()
        };
        let err = apply(&mut m, "/x", &maps).unwrap_err();
        assert_eq!(err.code(), 76);
        assert_eq!(
            err.message(),
            "tablespace remapped by name 'ts1' and id 16384 with different paths"
        );

        let mut m = manifest();
        let maps = Maps {
            tablespace: vec![("nope".into(), "/a".into())],
            ..Maps::default()
        };
        assert_eq!(
            apply(&mut m, "/x", &maps).unwrap_err().message(),
            "unable to remap invalid tablespace 'nope'"
        );

        let mut m = manifest();
        let maps = Maps {
            tablespace_all: Some("/all/".into()),
            ..Maps::default()
        };
        apply(&mut m, "/x", &maps).unwrap();
        assert_eq!(m.targets["pg_tblspc/16384"].path, "/all/ts1");
        assert_eq!(m.links["pg_data/pg_tblspc/16384"].destination, "/all/ts1");
    }

    #[test]
    fn link_maps_move_create_and_refuse() {
        let mut m = manifest();
        let maps = Maps {
            link: vec![
                ("pg_ident.conf".into(), "/etc/pg/ident.conf".into()),
                ("mylinkdir".into(), "/moved".into()),
                ("pg_hba.conf".into(), "/etc/pg/hba.conf".into()),
                ("base".into(), "/bases".into()),
            ],
            ..Maps::default()
        };
        let notes = apply(&mut m, "/srv/demo/data", &maps).unwrap();
        assert_eq!(
            notes.info,
            vec![
                "link 'base' to '/bases'",
                "map link 'mylinkdir' to '/moved'",
                "link 'pg_hba.conf' to '/etc/pg/hba.conf'",
                "map link 'pg_ident.conf' to '/etc/pg/ident.conf'",
            ]
        );
        assert!(notes.warn.is_empty());
        let t = &m.targets["pg_data/pg_hba.conf"];
        assert_eq!(
            (t.path.as_str(), t.file.as_deref()),
            ("/etc/pg", Some("hba.conf"))
        );
        assert_eq!(
            m.links["pg_data/pg_hba.conf"].destination,
            "/etc/pg/hba.conf"
        );
        assert_eq!(
            m.links["pg_data/pg_hba.conf"].user.as_deref(),
            Some("postgres")
        );
        let t = &m.targets["pg_data/pg_ident.conf"];
        assert_eq!(
            (t.path.as_str(), t.file.as_deref()),
            ("/etc/pg", Some("ident.conf"))
        );
        assert_eq!(m.targets["pg_data/base"].file, None);
        // two file links into one directory are fine
        link_check(&m).unwrap();

        let mut m = manifest();
        let maps = Maps {
            link: vec![("nothing".into(), "/x".into())],
            ..Maps::default()
        };
        let err = apply(&mut m, "/srv/demo/data", &maps).unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (78, "unable to map link 'nothing'")
        );
        let mut m = manifest();
        let maps = Maps {
            link: vec![("pg_hba.conf".into(), "hba".into())],
            ..Maps::default()
        };
        assert_eq!(
            apply(&mut m, "/srv/demo/data", &maps)
                .unwrap_err()
                .message(),
            "'hba' is not long enough to be the destination for file link 'pg_hba.conf'"
        );
    }

    #[test]
    fn overlapping_destinations_are_refused() {
        let check = |edit: &dyn Fn(&mut Manifest)| {
            let mut m = manifest();
            edit(&mut m);
            link_check(&m).map_err(|e| (e.code(), e.message().to_string()))
        };
        assert!(check(&|_| {}).is_ok());
        assert_eq!(
            check(&|m| m.targets.get_mut("pg_tblspc/16384").unwrap().path =
                "/srv/demo/data/ts".into()),
            Err((
                70,
                "link 'pg_tblspc/16384' destination '/srv/demo/data/ts' is in PGDATA".into()
            ))
        );
        assert_eq!(
            check(&|m| m.targets.get_mut("pg_tblspc/16384").unwrap().path = "/srv/demo/ext/dirlink/ts".into()),
            Err((70, "link 'pg_tblspc/16384' (/srv/demo/ext/dirlink/ts) destination is a subdirectory of link 'mylinkdir' (/srv/demo/ext/dirlink)".into()))
        );
        assert_eq!(
            check(&|m| m.targets.get_mut("pg_tblspc/16384").unwrap().path = "/srv/demo/ext/conf".into()),
            Err((70, "link 'pg_tblspc/16384' (/srv/demo/ext/conf) destination is the same directory as link 'pg_ident.conf' (/srv/demo/ext/conf)".into()))
        );
        assert_eq!(
            check(&|m| {
                let mut t = m.targets["pg_data/pg_ident.conf"].clone();
                t.file = Some("pg_ident.conf".into());
                m.targets.insert("pg_data/pg_hba.conf".into(), t);
            }),
            Err((70, "link 'pg_ident.conf' (/srv/demo/ext/conf/pg_ident.conf) destination is the same file as link 'pg_hba.conf' (/srv/demo/ext/conf/pg_ident.conf)".into()))
        );
    }
}
