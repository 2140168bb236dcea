//! Who owns the restored files (pgBackRest `restoreManifestOwner()`,
//! `restoreManifestOwnerReplace()`, `restoreCleanOwnership()`).
//!
//! Contract:
//! - As root, files, paths and links get the manifest's user and group; a name without an id
//!   here (or an owner the backup could not name) falls back to the owner of the data directory
//!   (root when it does not exist yet), with a warning for owners the backup could not name.
//! - As any other user, everything belongs to the running user: [`Owners::new`] warns once per
//!   manifest owner that is not the running user ("unknown user 'x' in backup manifest mapped to
//!   current user"), files are written without changing their owner, and existing entries owned
//!   by someone else are handed to the running user (which fails where the system forbids it).
//! - Names are resolved once per distinct name.

use std::collections::HashMap;

use nix::unistd::{Gid, Group, Uid, User, getegid, geteuid};
use pgkeep_repo::manifest::Manifest;

/// Owner resolution for one restore.
#[derive(Debug, Clone)]
pub struct Owners {
    root: bool,
    uid: u32,
    gid: u32,
    users: HashMap<String, Option<u32>>,
    groups: HashMap<String, Option<u32>>,
    replace_user: Option<String>,
    replace_group: Option<String>,
}

fn user_name(uid: u32) -> Option<String> {
    User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

fn group_name(gid: u32) -> Option<String> {
    Group::from_gid(Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
}

impl Owners {
    /// Collect the manifest's owners; returns the warnings to log. `base_owner` is the
    /// (uid, gid) of the existing data directory, if any.
    #[must_use]
    pub fn new(manifest: &Manifest, base_owner: Option<(u32, u32)>) -> (Owners, Vec<String>) {
        Owners::with_identity(manifest, base_owner, geteuid().as_raw(), getegid().as_raw())
    }

    fn with_identity(
        manifest: &Manifest,
        base_owner: Option<(u32, u32)>,
        uid: u32,
        gid: u32,
    ) -> (Owners, Vec<String>) {
        let mut users: Vec<&str> = Vec::new();
        let mut groups: Vec<&str> = Vec::new();
        let (mut user_null, mut group_null) = (false, false);
        let owners = manifest
            .files
            .values()
            .map(|f| (f.user.as_deref(), f.group.as_deref()))
            .chain(
                manifest
                    .links
                    .values()
                    .map(|l| (l.user.as_deref(), l.group.as_deref())),
            )
            .chain(
                manifest
                    .paths
                    .values()
                    .map(|p| (p.user.as_deref(), p.group.as_deref())),
            );
        for (user, group) in owners {
            match user {
                Some(u) if !users.contains(&u) => users.push(u),
                Some(_) => {}
                None => user_null = true,
            }
            match group {
                Some(g) if !groups.contains(&g) => groups.push(g),
                Some(_) => {}
                None => group_null = true,
            }
        }
        let mut warnings = Vec::new();
        let mut owners = Owners {
            root: uid == 0,
            uid,
            gid,
            users: users
                .iter()
                .map(|u| {
                    let id = User::from_name(u).ok().flatten().map(|u| u.uid.as_raw());
                    ((*u).to_string(), id)
                })
                .collect(),
            groups: groups
                .iter()
                .map(|g| {
                    let id = Group::from_name(g).ok().flatten().map(|g| g.gid.as_raw());
                    ((*g).to_string(), id)
                })
                .collect(),
            replace_user: None,
            replace_group: None,
        };
        if owners.root {
            if user_null || group_null {
                let (base_uid, base_gid) = base_owner.unwrap_or((uid, gid));
                let user = user_name(base_uid).unwrap_or_else(|| "root".to_string());
                let group = group_name(base_gid).unwrap_or_else(|| "root".to_string());
                if user_null {
                    warnings.push(format!(
                        "unknown user in backup manifest mapped to '{user}'"
                    ));
                }
                if group_null {
                    warnings.push(format!(
                        "unknown group in backup manifest mapped to '{group}'"
                    ));
                }
                owners.users.insert(user.clone(), Some(base_uid));
                owners.groups.insert(group.clone(), Some(base_gid));
                owners.replace_user = Some(user);
                owners.replace_group = Some(group);
            }
        } else {
            let me = user_name(uid);
            let my_group = group_name(gid);
            if user_null {
                warnings.push("unknown user in backup manifest mapped to current user".to_string());
            }
            for user in users {
                if me.as_deref() != Some(user) {
                    warnings.push(format!(
                        "unknown user '{user}' in backup manifest mapped to current user"
                    ));
                }
            }
            if group_null {
                warnings
                    .push("unknown group in backup manifest mapped to current group".to_string());
            }
            for group in groups {
                if my_group.as_deref() != Some(group) {
                    warnings.push(format!(
                        "unknown group '{group}' in backup manifest mapped to current group"
                    ));
                }
            }
        }
        (owners, warnings)
    }

    /// Running as root?
    #[must_use]
    pub fn is_root(&self) -> bool {
        self.root
    }

    /// The running user's ids.
    #[must_use]
    pub fn current(&self) -> (u32, u32) {
        (self.uid, self.gid)
    }

    /// The ids an entry with these manifest owners must have.
    #[must_use]
    pub fn expected(&self, user: Option<&str>, group: Option<&str>) -> (u32, u32) {
        if !self.root {
            return (self.uid, self.gid);
        }
        let user = user.or(self.replace_user.as_deref());
        let group = group.or(self.replace_group.as_deref());
        let uid = user
            .and_then(|u| self.users.get(u).copied().flatten())
            .unwrap_or(self.uid);
        let gid = group
            .and_then(|g| self.groups.get(g).copied().flatten())
            .unwrap_or(self.gid);
        (uid, gid)
    }

    /// The owner to give a newly written file: `None` (keep the creator's) unless root.
    #[must_use]
    pub fn for_new(&self, user: Option<&str>, group: Option<&str>) -> Option<(u32, u32)> {
        self.root.then(|| self.expected(user, group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::restore::remap::tests::manifest_from_text;

    fn manifest(file_user: &str) -> Manifest {
        manifest_from_text(&format!(
            "[backup]\nbackup-label=\"20240101-000000F\"\nbackup-type=\"full\"\n\n[backup:db]\ndb-catalog-version=202209061\ndb-control-version=1300\ndb-id=1\ndb-system-id=1\ndb-version=\"15\"\n\n[backup:option]\noption-archive-check=true\noption-archive-copy=false\noption-compress=false\noption-hardlink=false\noption-online=true\n\n[backup:target]\npg_data={{\"path\":\"/d\",\"type\":\"path\"}}\n\n[target:file]\npg_data/a={{\"size\":0,\"timestamp\":1,\"user\":{file_user}}}\n\n[target:file:default]\ngroup=\"root\"\nmode=\"0600\"\nuser=\"root\"\n\n[target:path]\npg_data={{}}\n\n[target:path:default]\ngroup=\"root\"\nmode=\"0700\"\nuser=\"root\"\n"
        ))
    }

    #[test]
    fn non_root_maps_everything_to_the_running_user() {
        let m = manifest("\"nobody-here-xyz\"");
        let (owners, warnings) = Owners::with_identity(&m, None, 4242, 4243);
        assert!(!owners.is_root());
        assert_eq!(owners.expected(Some("root"), None), (4242, 4243));
        assert_eq!(owners.for_new(Some("root"), None), None);
        assert!(warnings.contains(
            &"unknown user 'root' in backup manifest mapped to current user".to_string()
        ));
        assert!(warnings.contains(
            &"unknown user 'nobody-here-xyz' in backup manifest mapped to current user".to_string()
        ));
        assert!(warnings.contains(
            &"unknown group 'root' in backup manifest mapped to current group".to_string()
        ));
        let (_, warnings) = Owners::with_identity(&manifest("false"), None, 4242, 4243);
        assert!(
            warnings
                .contains(&"unknown user in backup manifest mapped to current user".to_string())
        );
    }

    #[test]
    fn root_uses_manifest_names_and_replaces_unnamed_owners() {
        let (owners, warnings) = Owners::with_identity(&manifest("\"root\""), None, 0, 0);
        assert!(warnings.is_empty());
        assert_eq!(owners.for_new(Some("root"), Some("root")), Some((0, 0)));
        // an unknown name falls back to the running user
        assert_eq!(owners.expected(Some("nobody-here-xyz"), None), (0, 0));
        let (owners, warnings) = Owners::with_identity(&manifest("false"), Some((0, 0)), 0, 0);
        assert_eq!(
            warnings,
            vec!["unknown user in backup manifest mapped to 'root'"]
        );
        assert_eq!(owners.expected(None, None), (0, 0));
    }
}
