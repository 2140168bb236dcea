//! Posix driver: a directory tree on a local (or mounted) file system.
//!
//! Contract:
//! - Every method path is relative to the root given to [`PosixStorage::new`] (a leading `/` is
//!   tolerated and means the same); messages name the full file-system path, worded as pgBackRest
//!   words them, with the cause as `[errno] text`.
//! - New files get mode 0640 and new directories 0750 unless told otherwise. The mode is set
//!   explicitly after creation, so the result does not depend on the process umask (pgBackRest
//!   forces umask 0 for the same effect). Existing directories are never re-moded.
//! - An atomic write goes to `<name>.pgbackrest.tmp`, then: flush, set mtime, fsync, rename over
//!   `<name>`, fsync the parent directory. Until the rename nothing changes under `<name>`; if any
//!   step before it fails, or the writer is dropped unfinished, the temp file is removed and the old
//!   `<name>` (if any) is untouched. A non-atomic write goes straight to `<name>`; on failure or drop
//!   that partial file is removed. The temp file is held under an exclusive `flock` by its writer:
//!   a second writer of the same name waits for the first instead of clobbering its file; a
//!   leftover temp file (crash) has no lock holder and is truncated and reused; a link planted at
//!   the temp name is removed, never written through or re-moded.
//! - A write error remembered by the writer makes [`StorageWrite::finish`] fail even if the caller
//!   ignored it, so a short file is never committed.
//! - Mode, uid/gid and link destinations are reported as stored (mode masked with 0o777, as in
//!   pgBackRest manifests); user and group names are `None` when the id has no name.
//! - `move_file` renames; across file systems (`EXDEV`) a regular file is copied (synced, same
//!   mode and mtime, same owner when running as root), then the source is removed.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File, FileTimes, OpenOptions, Permissions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::unistd::{Gid, Group, Uid, User};
use pgkeep_base::error::io_cause;

use crate::{
    Error, ErrorKind, Features, FileType, InfoLevel, LinkType, ReadOptions, Result, Storage,
    StorageInfo, StorageWrite, WriteOptions, join,
};

/// Mode of new files when the caller gives none.
pub const DEFAULT_FILE_MODE: u32 = 0o640;
/// Mode of new directories when the caller gives none.
pub const DEFAULT_PATH_MODE: u32 = 0o750;
/// Suffix of the temp name used by atomic writes (pgBackRest's, so leftovers look familiar).
pub const TEMP_EXTENSION: &str = ".pgbackrest.tmp";

/// Permission bits reported by `info`/`list` (pgBackRest reports rwx bits only).
const MODE_MASK: u32 = 0o777;
/// Write buffer: keeps small writes (manifest lines) from becoming one syscall each.
const WRITE_BUFFER_SIZE: usize = 64 * 1024;
/// Copy buffer for the cross-device move fallback.
const COPY_BUFFER_SIZE: usize = 256 * 1024;

/// Storage on a posix file system below `root`.
#[derive(Debug, Clone)]
pub struct PosixStorage {
    root: String,
    file_mode: u32,
    path_mode: u32,
    /// The root, opened before the first write (see [`Storage::sync_all`]): Linux's `syncfs`
    /// reports the file system's write-back errors that happened after the descriptor it is given
    /// was opened, so a descriptor opened only when syncing would miss those of the writes.
    watch: std::sync::Arc<std::sync::OnceLock<Option<File>>>,
}

impl PartialEq for PosixStorage {
    fn eq(&self, other: &PosixStorage) -> bool {
        (&self.root, self.file_mode, self.path_mode)
            == (&other.root, other.file_mode, other.path_mode)
    }
}

impl Eq for PosixStorage {}

impl PosixStorage {
    /// Storage rooted at `root` (an absolute path; trailing `/` removed) with default modes.
    pub fn new(root: impl Into<String>) -> PosixStorage {
        let mut root = root.into();
        while root.len() > 1 && root.ends_with('/') {
            root.pop();
        }
        PosixStorage {
            root,
            file_mode: DEFAULT_FILE_MODE,
            path_mode: DEFAULT_PATH_MODE,
            watch: std::sync::Arc::default(),
        }
    }

    /// The same storage with other default modes for new files and directories.
    #[must_use]
    pub fn with_defaults(mut self, file_mode: u32, path_mode: u32) -> PosixStorage {
        self.file_mode = file_mode;
        self.path_mode = path_mode;
        self
    }

    /// Default mode of new files.
    #[must_use]
    pub fn file_mode(&self) -> u32 {
        self.file_mode
    }

    /// Default mode of new directories.
    #[must_use]
    pub fn path_mode(&self) -> u32 {
        self.path_mode
    }

    /// The file-system path of a storage path (what messages show).
    #[must_use]
    pub fn path(&self, path: &str) -> String {
        join(&self.root, path)
    }

    /// `EXDEV` fallback of [`Storage::move_file`]: copy a regular file to `dst` through an atomic,
    /// synced write, then remove `src`. Anything but a regular file fails with the rename error.
    fn copy_across(&self, src: &str, dst: &str, rename_err: &io::Error) -> Result<()> {
        let meta = fs::symlink_metadata(src).map_err(|e| {
            sys(
                ErrorKind::FileOpen,
                format!("unable to get info for path/file '{src}'"),
                &e,
            )
        })?;
        if !meta.is_file() {
            return Err(sys(
                ErrorKind::FileMove,
                format!("unable to move '{src}' to '{dst}'"),
                rename_err,
            ));
        }
        let mut input = File::open(src).map_err(|e| {
            sys(
                ErrorKind::FileOpen,
                format!("unable to open file '{src}' for read"),
                &e,
            )
        })?;
        // only root can give a file away; anyone else gets a copy they own, as with cp
        let owner = if Uid::effective().is_root() {
            Owner {
                uid: Some(meta.uid()),
                gid: Some(meta.gid()),
            }
        } else {
            Owner::default()
        };
        let params = WriteParams {
            mode: meta.mode() & 0o7777,
            path_mode: self.path_mode,
            create_path: true,
            atomic: true,
            sync_file: true,
            writeback: false,
            sync_path: false,
            mtime: Some(meta.mtime()),
            owner,
        };
        let mut output = Box::new(PosixWrite::open(dst.to_string(), params)?);
        let mut buf = vec![0u8; COPY_BUFFER_SIZE];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(sys(
                        ErrorKind::FileRead,
                        format!("unable to read '{src}'"),
                        &e,
                    ));
                }
            };
            let chunk = buf.get(..n).unwrap_or_default();
            output
                .write_all(chunk)
                .map_err(|e| sys(ErrorKind::FileWrite, format!("unable to write '{dst}'"), &e))?;
        }
        output.finish()?;
        fs::remove_file(src).map_err(|e| {
            sys(
                ErrorKind::FileRemove,
                format!("unable to remove '{src}'"),
                &e,
            )
        })
    }
}

impl Storage for PosixStorage {
    fn driver(&self) -> &'static str {
        "posix"
    }

    fn features(&self) -> Features {
        Features {
            path: true,
            path_sync: true,
            sync_all: true,
            hardlink: true,
            symlink: true,
            info_detail: true,
        }
    }

    fn root(&self) -> &str {
        &self.root
    }

    fn info(&self, path: &str, level: InfoLevel, follow_link: bool) -> Result<Option<StorageInfo>> {
        let full = self.path(path);
        let meta = if follow_link {
            fs::metadata(&full)
        } else {
            fs::symlink_metadata(&full)
        };
        match meta {
            Ok(meta) => describe(path.to_string(), &full, &meta, level, &mut Names::default()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(sys(
                ErrorKind::FileOpen,
                format!("unable to get info for path/file '{full}'"),
                &e,
            )),
        }
    }

    fn list(&self, path: &str, level: InfoLevel) -> Result<Option<Vec<StorageInfo>>> {
        let mut result = Vec::new();
        let found = self.list_each(path, level, &mut |info| {
            result.push(info);
            Ok(())
        })?;
        Ok(found.then_some(result))
    }

    fn list_each(
        &self,
        path: &str,
        level: InfoLevel,
        each: &mut dyn FnMut(StorageInfo) -> Result<()>,
    ) -> Result<bool> {
        let full = self.path(path);
        let list_err = |e: &io::Error| {
            sys(
                ErrorKind::PathOpen,
                format!("unable to list file info for path '{full}'"),
                e,
            )
        };
        let dir = match fs::read_dir(&full) {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(list_err(&e)),
        };
        let mut names = Names::default();
        for entry in dir {
            let entry = entry.map_err(|e| list_err(&e))?;
            let name = entry.file_name().into_string().map_err(|name| {
                Error::new(
                    ErrorKind::PathOpen,
                    format!(
                        "unable to list file info for path '{full}': name '{}' is not valid UTF-8",
                        name.to_string_lossy()
                    ),
                )
            })?;
            let entry_path = join(&full, &name);
            let info_err = |e: &io::Error| {
                sys(
                    ErrorKind::FileOpen,
                    format!("unable to get info for path/file '{entry_path}'"),
                    e,
                )
            };
            // an entry removed between readdir and stat is simply not listed
            if level == InfoLevel::Exists {
                match entry.file_type() {
                    Ok(file_type) => each(bare_info(name, file_type_of(file_type)))?,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(info_err(&e)),
                }
            } else {
                match fs::symlink_metadata(&entry_path) {
                    Ok(meta) => {
                        if let Some(info) = describe(name, &entry_path, &meta, level, &mut names)? {
                            each(info)?;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(info_err(&e)),
                }
            }
        }
        Ok(true)
    }

    fn open_read(&self, path: &str, opts: ReadOptions) -> Result<Option<Box<dyn Read + Send>>> {
        let full = self.path(path);
        let open_err = |e: &io::Error| {
            sys(
                ErrorKind::FileOpen,
                format!("unable to open file '{full}' for read"),
                e,
            )
        };
        let mut file = match File::open(&full) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if opts.ignore_missing {
                    return Ok(None);
                }
                return Err(Error::new(
                    ErrorKind::FileMissing,
                    format!("unable to open missing file '{full}' for read"),
                ));
            }
            Err(e) => return Err(open_err(&e)),
        };
        // a directory opens fine on posix and only fails at the first read; fail now instead
        let meta = file.metadata().map_err(|e| open_err(&e))?;
        if meta.is_dir() {
            return Err(open_err(&io::Error::from_raw_os_error(
                Errno::EISDIR as i32,
            )));
        }
        if opts.offset > 0 {
            file.seek(SeekFrom::Start(opts.offset)).map_err(|e| {
                sys(
                    ErrorKind::FileOpen,
                    format!("unable to seek to {} in file '{full}'", opts.offset),
                    &e,
                )
            })?;
        }
        if opts.sequential && meta.len() > READ_AHEAD_MIN {
            let end = opts.limit.map_or(meta.len(), |limit| {
                meta.len().min(opts.offset.saturating_add(limit))
            });
            let ahead = ReadAhead {
                file,
                pos: opts.offset,
                advised: opts.offset,
                end,
            };
            return Ok(Some(match opts.limit {
                Some(limit) => Box::new(ahead.take(limit)),
                None => Box::new(ahead),
            }));
        }
        Ok(Some(match opts.limit {
            Some(limit) => Box::new(file.take(limit)),
            None => Box::new(file),
        }))
    }

    fn open_write(&self, path: &str, opts: WriteOptions) -> Result<Box<dyn StorageWrite>> {
        self.watch.get_or_init(|| File::open(&self.root).ok());
        let full = self.path(path);
        let relative = path.trim_start_matches('/');
        if relative.is_empty() || relative.ends_with('/') {
            return Err(Error::new(
                ErrorKind::FileOpen,
                format!("unable to open file '{full}' for write: the path names a directory"),
            ));
        }
        let owner = Owner::resolve(opts.user.as_deref(), opts.group.as_deref(), &full)?;
        let params = WriteParams {
            mode: opts.mode.unwrap_or(self.file_mode),
            path_mode: opts.path_mode.unwrap_or(self.path_mode),
            create_path: opts.create_path,
            atomic: opts.atomic,
            sync_file: opts.sync_file,
            writeback: opts.writeback,
            sync_path: opts.sync_path,
            mtime: opts.mtime,
            owner,
        };
        Ok(Box::new(PosixWrite::open(full, params)?))
    }

    fn remove(&self, path: &str, ignore_missing: bool) -> Result<()> {
        let full = self.path(path);
        match fs::remove_file(&full) {
            Ok(()) => Ok(()),
            Err(e) if ignore_missing && e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(sys(
                ErrorKind::FileRemove,
                format!("unable to remove '{full}'"),
                &e,
            )),
        }
    }

    fn remove_path(&self, path: &str, recurse: bool) -> Result<()> {
        let full = self.path(path);
        if recurse {
            remove_children(Path::new(&full))?;
        }
        remove_dir(Path::new(&full))
    }

    fn path_create(&self, path: &str, mode: Option<u32>) -> Result<()> {
        create_path(&self.path(path), mode.unwrap_or(self.path_mode))
    }

    fn path_sync(&self, path: &str) -> Result<()> {
        sync_dir(&self.path(path))
    }

    fn sync_all(&self, path: &str) -> Result<()> {
        let full = self.path(path);
        let dir = File::open(&full).map_err(|e| {
            sys(
                ErrorKind::PathOpen,
                format!("unable to open path '{full}'"),
                &e,
            )
        })?;
        let failed = |e: Errno| {
            Error::new(
                ErrorKind::PathSync,
                format!(
                    "unable to sync file system of '{full}': [{}] {}",
                    e as i32,
                    e.desc()
                ),
            )
        };
        // the descriptor opened before the first write sees write-back errors since then; the
        // path's own covers a path on another file system (a link below the root)
        if let Some(Some(watch)) = self.watch.get() {
            nix::unistd::syncfs(watch).map_err(failed)?;
        }
        nix::unistd::syncfs(&dir).map_err(failed)
    }

    /// Covered when `path` is on the root's file system (whose descriptor, opened before the
    /// first write, sees every write-back error since) and [`syncfs_reports_errors`] there; a
    /// path on another file system (a mount or link below the root) is not.
    fn sync_all_covers(&self, path: &str) -> bool {
        let device = |p: &str| File::open(p).and_then(|f| f.metadata().map(|m| (f, m.dev())));
        match (device(&self.root), device(&self.path(path))) {
            (Ok((_, root)), Ok((dir, at))) => root == at && syncfs_reports_errors(&dir),
            _ => false,
        }
    }

    fn link_create(&self, target: &str, link_path: &str, link_type: LinkType) -> Result<()> {
        let link_full = self.path(link_path);
        match link_type {
            LinkType::Soft => std::os::unix::fs::symlink(target, &link_full).map_err(|e| {
                sys(
                    ErrorKind::FileOpen,
                    format!("unable to create symlink '{link_full}' to '{target}'"),
                    &e,
                )
            }),
            LinkType::Hard => {
                let target_full = self.path(target);
                fs::hard_link(&target_full, &link_full).map_err(|e| {
                    sys(
                        ErrorKind::FileOpen,
                        format!("unable to create hardlink '{link_full}' to '{target_full}'"),
                        &e,
                    )
                })
            }
        }
    }

    fn move_file(&self, from: &str, to: &str) -> Result<()> {
        let src = self.path(from);
        let dst = self.path(to);
        let move_err = |e: &io::Error| {
            sys(
                ErrorKind::FileMove,
                format!("unable to move '{src}' to '{dst}'"),
                e,
            )
        };
        match fs::rename(&src, &dst) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Err(missing) = fs::symlink_metadata(&src)
                    && missing.kind() == io::ErrorKind::NotFound
                {
                    return Err(sys(
                        ErrorKind::FileMissing,
                        format!("unable to move missing source '{src}'"),
                        &missing,
                    ));
                }
                // the source is there, so the destination's directory is not
                create_path(&parent_of(&dst), self.path_mode)?;
                match fs::rename(&src, &dst) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(Errno::EXDEV as i32) => {
                        self.copy_across(&src, &dst, &e)?;
                    }
                    Err(e) => return Err(move_err(&e)),
                }
            }
            Err(e) if e.raw_os_error() == Some(Errno::EXDEV as i32) => {
                self.copy_across(&src, &dst, &e)?;
            }
            Err(e) => return Err(move_err(&e)),
        }
        let dst_parent = parent_of(&dst);
        let src_parent = parent_of(&src);
        sync_dir(&dst_parent)?;
        if src_parent != dst_parent {
            sync_dir(&src_parent)?;
        }
        Ok(())
    }
}

/// Everything [`PosixWrite::open`] needs, with owner names already resolved to ids.
#[derive(Debug, Clone)]
struct WriteParams {
    mode: u32,
    path_mode: u32,
    create_path: bool,
    atomic: bool,
    sync_file: bool,
    writeback: bool,
    sync_path: bool,
    mtime: Option<i64>,
    owner: Owner,
}

/// Wanted owner ids; `None` keeps what the file got at creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Owner {
    uid: Option<u32>,
    gid: Option<u32>,
}

impl Owner {
    /// Resolve user and group names before anything is created, so an unknown name leaves no trace.
    fn resolve(user: Option<&str>, group: Option<&str>, full: &str) -> Result<Owner> {
        let uid = match user {
            None => None,
            Some(name) => match User::from_name(name) {
                Ok(Some(user)) => Some(user.uid.as_raw()),
                Ok(None) => return Err(unknown_owner("user", name, full, None)),
                Err(errno) => return Err(unknown_owner("user", name, full, Some(errno))),
            },
        };
        let gid = match group {
            None => None,
            Some(name) => match Group::from_name(name) {
                Ok(Some(group)) => Some(group.gid.as_raw()),
                Ok(None) => return Err(unknown_owner("group", name, full, None)),
                Err(errno) => return Err(unknown_owner("group", name, full, Some(errno))),
            },
        };
        Ok(Owner { uid, gid })
    }
}

fn unknown_owner(what: &str, name: &str, full: &str, errno: Option<Errno>) -> Error {
    let cause = match errno {
        None => format!("{what} '{name}' does not exist"),
        Some(errno) => format!(
            "unable to look up {what} '{name}': {}",
            io_cause(&io::Error::from(errno))
        ),
    };
    Error::new(
        ErrorKind::UserMissing,
        format!("unable to set ownership for '{full}': {cause}"),
    )
}

/// An open posix write; see the module contract for the commit sequence.
struct PosixWrite {
    /// Final name.
    path: String,
    /// Name being written: the temp name, or `path` when not atomic.
    path_tmp: String,
    file: Option<BufWriter<File>>,
    /// A second descriptor of the temp file that keeps its lock until the writer is gone (after
    /// the rename, or after drop removed the temp name).
    _lock: Option<File>,
    params: WriteParams,
    /// First write/flush error, replayed by later writes and by `finish`.
    failed: Option<io::Error>,
    /// Set once the data is under the final name: drop must not remove it any more.
    committed: bool,
}

impl PosixWrite {
    fn open(path: String, params: WriteParams) -> Result<PosixWrite> {
        let path_tmp = if params.atomic {
            format!("{path}{TEMP_EXTENSION}")
        } else {
            path.clone()
        };
        // A temp name is ours alone while we hold the exclusive lock on it (see `open_temp`); the
        // final name of a non-atomic write is opened like any path, following links.
        let open = || {
            if params.atomic {
                open_temp(&path_tmp, params.mode)
            } else {
                let mut options = OpenOptions::new();
                options
                    .write(true)
                    .mode(params.mode)
                    .create(true)
                    .truncate(true);
                options.open(&path_tmp).map(|file| (file, None))
            }
        };
        let opened = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound && params.create_path => {
                create_path(&parent_of(&path), params.path_mode)?;
                open()
            }
            other => other,
        };
        let (file, lock) = match opened {
            Ok(opened) => opened,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::new(
                    ErrorKind::FileMissing,
                    format!("unable to open file '{path}' for write in missing path"),
                ));
            }
            Err(e) => {
                return Err(sys(
                    ErrorKind::FileOpen,
                    format!("unable to open file '{path}' for write"),
                    &e,
                ));
            }
        };
        // from here on, an early return drops the writer, which removes what was created
        let writer = PosixWrite {
            path,
            path_tmp,
            file: Some(BufWriter::with_capacity(WRITE_BUFFER_SIZE, file)),
            _lock: lock,
            params,
            failed: None,
            committed: false,
        };
        writer.set_mode_and_owner()?;
        Ok(writer)
    }

    fn file(&self) -> Result<&File> {
        match &self.file {
            Some(buffered) => Ok(buffered.get_ref()),
            None => Err(Error::new(
                ErrorKind::Assert,
                format!("write of '{}' is already closed", self.path),
            )),
        }
    }

    /// Exact mode regardless of umask (and of a stale temp file's mode), then the owner.
    fn set_mode_and_owner(&self) -> Result<()> {
        let file = self.file()?;
        file.set_permissions(Permissions::from_mode(self.params.mode))
            .map_err(|e| {
                sys(
                    ErrorKind::FileMode,
                    format!("unable to set mode for '{}'", self.path),
                    &e,
                )
            })?;
        let owner = self.params.owner;
        if owner == Owner::default() {
            return Ok(());
        }
        let owner_err = |e: &io::Error| {
            sys(
                ErrorKind::FileOwner,
                format!("unable to set ownership for '{}'", self.path),
                e,
            )
        };
        let meta = file.metadata().map_err(|e| owner_err(&e))?;
        // asking for the owner the file already has is a no-op, also for unprivileged users
        let uid = owner.uid.filter(|uid| *uid != meta.uid());
        let gid = owner.gid.filter(|gid| *gid != meta.gid());
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::fchown(file, uid, gid).map_err(|e| owner_err(&e))?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(sys(
                ErrorKind::FileWrite,
                format!("unable to write '{}'", self.path),
                e,
            ));
        }
        let Some(buffered) = self.file.take() else {
            return Err(Error::new(
                ErrorKind::Assert,
                format!("write of '{}' is already closed", self.path),
            ));
        };
        let file = match buffered.into_inner() {
            Ok(file) => file,
            Err(e) => {
                let err = sys(
                    ErrorKind::FileWrite,
                    format!("unable to write '{}'", self.path),
                    e.error(),
                );
                // discard the unwritten buffer instead of letting drop try to flush it again
                drop(e.into_inner().into_parts());
                return Err(err);
            }
        };
        if let Some(mtime) = self.params.mtime {
            let time = unix_time(mtime).ok_or_else(|| {
                Error::new(
                    ErrorKind::FileInfo,
                    format!(
                        "unable to set time for '{}': {mtime} is out of range",
                        self.path
                    ),
                )
            })?;
            file.set_times(FileTimes::new().set_accessed(time).set_modified(time))
                .map_err(|e| {
                    sys(
                        ErrorKind::FileInfo,
                        format!("unable to set time for '{}'", self.path),
                        &e,
                    )
                })?;
        }
        if self.params.sync_file {
            file.sync_all().map_err(|e| {
                sys(
                    ErrorKind::FileSync,
                    format!("unable to sync file '{}' after write", self.path),
                    &e,
                )
            })?;
        }
        if self.params.writeback && !self.params.sync_file {
            let _ = nix::fcntl::posix_fadvise(
                &file,
                0,
                0,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            );
        }
        drop(file);
        if self.params.atomic {
            fs::rename(&self.path_tmp, &self.path).map_err(|e| {
                sys(
                    ErrorKind::FileMove,
                    format!("unable to move '{}' to '{}'", self.path_tmp, self.path),
                    &e,
                )
            })?;
        }
        self.committed = true;
        if self.params.sync_path {
            sync_dir(&parent_of(&self.path))?;
        }
        Ok(())
    }

    /// A write error that names the file: it crosses `std::io` as an [`Error`] that
    /// `Error::from_io_error` recovers intact (interruptions stay plain so `write_all` retries).
    fn named(&self, e: &io::Error) -> io::Error {
        if e.kind() == io::ErrorKind::Interrupted {
            return copy_io_error(e);
        }
        io::Error::from(sys(
            ErrorKind::FileWrite,
            format!("unable to write '{}'", self.path),
            e,
        ))
    }

    fn remember(&mut self, e: &io::Error) {
        if e.kind() != io::ErrorKind::Interrupted && self.failed.is_none() {
            self.failed = Some(copy_io_error(e));
        }
    }
}

impl Write for PosixWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(self.named(e));
        }
        let result = match self.file.as_mut() {
            Some(file) => file.write(buf),
            None => Err(io::Error::other("write after close")),
        };
        if let Err(e) = &result {
            self.remember(e);
            return Err(self.named(e));
        }
        result
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = &self.failed {
            return Err(self.named(e));
        }
        let result = match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        };
        if let Err(e) = &result {
            self.remember(e);
            return Err(self.named(e));
        }
        result
    }
}

impl StorageWrite for PosixWrite {
    fn finish(mut self: Box<Self>) -> Result<()> {
        // on error, drop of `self` removes the temp (or partial) file
        self.commit()
    }

    fn finish_as(mut self: Box<Self>, name: &str) -> Result<()> {
        if !self.params.atomic || name.is_empty() || name.contains('/') {
            return Err(Error::new(
                ErrorKind::Assert,
                format!(
                    "unable to commit '{}' as '{name}': needs an atomic write and a file name",
                    self.path
                ),
            ));
        }
        self.path = format!("{}/{name}", parent_of(&self.path));
        self.commit()
    }
}

impl Drop for PosixWrite {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // drop buffered bytes unwritten: they belong to a write nobody will commit
        if let Some(buffered) = self.file.take() {
            drop(buffered.into_parts());
        }
        let _ = fs::remove_file(&self.path_tmp);
    }
}

/// Files up to this size are read without [`ReadAhead`]: one kernel readahead covers them.
const READ_AHEAD_MIN: u64 = 4 * 1024 * 1024;

/// How far [`ReadAhead`] asks the kernel to read ahead of the read position.
const READ_AHEAD_WINDOW: u64 = 8 * 1024 * 1024;

/// A sequential reader that keeps the kernel fetching the next [`READ_AHEAD_WINDOW`] of the file
/// while the caller works on what it read (`posix_fadvise(WILLNEED)` only queues the reads). The
/// kernel's own readahead is small (128 KiB by default) and starts only when a read misses, so a
/// single thread that reads and compresses in turn would otherwise leave the disk idle while it
/// compresses. Advice is a hint: when it fails, reading goes on unchanged.
struct ReadAhead {
    file: File,
    /// Offset of the next read.
    pos: u64,
    /// Everything before this offset has been asked for.
    advised: u64,
    /// End of what will be read.
    end: u64,
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.advised < self.end && self.advised < self.pos.saturating_add(READ_AHEAD_WINDOW) {
            let from = self.advised.max(self.pos);
            // a file that grew since it was opened can be read past `end`: nothing to advise then
            let len = READ_AHEAD_WINDOW.min(self.end.saturating_sub(from));
            if len > 0
                && let (Ok(offset), Ok(length)) = (i64::try_from(from), i64::try_from(len))
            {
                let _ = nix::fcntl::posix_fadvise(
                    &self.file,
                    offset,
                    length,
                    nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
                );
            }
            self.advised = from + len;
        }
        let n = self.file.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// How long a writer waits for another live writer of the same temp name to finish.
const TEMP_WAIT: Duration = Duration::from_secs(60);

/// Open the temp name of an atomic write for this writer alone.
///
/// Two processes may write the same file at once (two `archive-push` of one segment). Each takes
/// an exclusive `flock` on the temp file and truncates it only once the lock is held, so neither
/// removes, truncates or renames the other's half-written file; the second waits (up to
/// [`TEMP_WAIT`]) until the first has renamed its file, then writes its own. A leftover of a
/// crashed writer has no lock holder and is simply reused after truncation. The temp name is
/// opened with `O_NOFOLLOW` and must be a regular file with one link, so a link planted there is
/// removed, never written through (nor chmod-ed or chown-ed).
///
/// Returns the file and a second descriptor holding the lock.
fn open_temp(path_tmp: &str, mode: u32) -> io::Result<(File, Option<File>)> {
    let deadline = std::time::Instant::now() + TEMP_WAIT;
    loop {
        let mut options = OpenOptions::new();
        // O_NONBLOCK: a FIFO planted at the temp name fails (ENXIO) instead of blocking; it
        // changes nothing for regular files
        options
            .write(true)
            .create(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK);
        let file = match options.open(path_tmp) {
            Ok(file) => file,
            Err(e) if matches!(e.raw_os_error(), Some(nix::libc::ELOOP | nix::libc::ENXIO)) => {
                remove_if_present(path_tmp)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => {}
            // a file system without flock (NFS without lockd, some FUSE): pgBackRest's way, a
            // fresh temp file created exclusively, without protection from a concurrent writer
            Err(fs::TryLockError::Error(e))
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::ENOLCK | nix::libc::EOPNOTSUPP | nix::libc::ENOSYS)
                ) =>
            {
                drop(file);
                remove_if_present(path_tmp)?;
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(path_tmp)?;
                return Ok((file, None));
            }
            Err(fs::TryLockError::WouldBlock) => {
                if std::time::Instant::now() >= deadline {
                    return Err(io::Error::other(format!(
                        "another process has been writing it for more than {}s",
                        TEMP_WAIT.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        // The previous holder may have renamed or removed the name between our open and lock:
        // then this inode is not (or no longer) the temp name, start over.
        let ours = file.metadata()?;
        let named = match fs::symlink_metadata(path_tmp) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if named.dev() != ours.dev() || named.ino() != ours.ino() {
            continue;
        }
        if !ours.file_type().is_file() || ours.nlink() != 1 {
            // not something this writer may truncate: remove the name (we hold the lock, so no
            // live writer owns it) and create a fresh file
            remove_if_present(path_tmp)?;
            continue;
        }
        file.set_len(0)?;
        let lock = file.try_clone()?;
        return Ok((file, Some(lock)));
    }
}

fn remove_if_present(path: &str) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Caches id-to-name lookups over one `list` (a data directory has thousands of entries, one owner).
#[derive(Default)]
struct Names {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl Names {
    fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| user_name(uid))
            .clone()
    }

    fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| group_name(gid))
            .clone()
    }
}

/// Name of a uid; `None` when unmapped (a lookup failure counts as unmapped, as in pgBackRest).
fn user_name(uid: u32) -> Option<String> {
    User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|user| user.name)
}

/// Name of a gid; `None` when unmapped.
fn group_name(gid: u32) -> Option<String> {
    Group::from_gid(Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|group| group.name)
}

fn file_type_of(file_type: fs::FileType) -> FileType {
    if file_type.is_file() {
        FileType::File
    } else if file_type.is_dir() {
        FileType::Path
    } else if file_type.is_symlink() {
        FileType::Link
    } else {
        FileType::Special
    }
}

fn bare_info(name: String, file_type: FileType) -> StorageInfo {
    StorageInfo {
        name,
        file_type,
        size: 0,
        mtime: 0,
        mode: 0,
        uid: 0,
        gid: 0,
        user: None,
        group: None,
        link_destination: None,
    }
}

/// Fill a [`StorageInfo`] from metadata up to `level`; `None` when a link vanished meanwhile.
fn describe(
    name: String,
    full: &str,
    meta: &fs::Metadata,
    level: InfoLevel,
    names: &mut Names,
) -> Result<Option<StorageInfo>> {
    let mut info = bare_info(name, file_type_of(meta.file_type()));
    if level >= InfoLevel::Basic {
        info.mtime = meta.mtime();
        if info.file_type == FileType::File {
            info.size = meta.len();
        }
    }
    if level >= InfoLevel::Detail {
        info.mode = meta.mode() & MODE_MASK;
        info.uid = meta.uid();
        info.gid = meta.gid();
        info.user = names.user(info.uid);
        info.group = names.group(info.gid);
        if info.file_type == FileType::Link {
            let link_err = |cause: String| {
                Error::new(
                    ErrorKind::FileRead,
                    format!("unable to get destination for link '{full}': {cause}"),
                )
            };
            let destination = match fs::read_link(full) {
                Ok(destination) => destination,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(link_err(io_cause(&e))),
            };
            let destination = destination.into_os_string().into_string().map_err(|d| {
                link_err(format!(
                    "destination '{}' is not valid UTF-8",
                    d.to_string_lossy()
                ))
            })?;
            info.link_destination = Some(destination);
        }
    }
    Ok(Some(info))
}

/// Create `full` and missing parents with `mode`; an existing directory (or link to one) is fine.
fn create_path(full: &str, mode: u32) -> Result<()> {
    let create_err = |e: &io::Error| {
        sys(
            ErrorKind::PathCreate,
            format!("unable to create path '{full}'"),
            e,
        )
    };
    let mkdir = || DirBuilder::new().mode(mode).create(full);
    let mut result = mkdir();
    if let Err(e) = &result
        && e.kind() == io::ErrorKind::NotFound
    {
        let parent = parent_of(full);
        if !parent.is_empty() && parent != full {
            create_path(&parent, mode)?;
            result = mkdir();
        }
    }
    match result {
        // mkdir applied the umask; set the exact mode asked for
        Ok(()) => {
            fs::set_permissions(full, Permissions::from_mode(mode)).map_err(|e| create_err(&e))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match fs::metadata(full) {
            Ok(meta) if meta.is_dir() => Ok(()),
            _ => Err(create_err(&e)),
        },
        Err(e) => Err(create_err(&e)),
    }
}

/// Whether one `syncfs()` through `dir`, a descriptor opened before the writes, makes every file
/// written since on its file system durable *and* reports their write-back errors, so a writer
/// may skip the per-file fsync. Not before Linux 5.8 (its syncfs reports no write-back error), and
/// not on FUSE (a FUSE daemon has no file-system sync: only a per-file fsync reaches it). Anything
/// that cannot be told (an unreadable kernel release, a failing `fstatfs`) answers `false`.
#[must_use]
pub fn syncfs_reports_errors(dir: &File) -> bool {
    static KERNEL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let kernel = *KERNEL.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|release| kernel_version(&release))
            .is_some_and(|version| version >= (5, 8))
    });
    kernel
        && nix::sys::statfs::fstatfs(dir)
            .is_ok_and(|fs| fs.filesystem_type() != nix::sys::statfs::FUSE_SUPER_MAGIC)
}

/// `(major, minor)` of a kernel release such as `6.1.0-18-amd64`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// fsync a directory so renames and creations inside it survive a crash.
fn sync_dir(full: &str) -> Result<()> {
    let dir = match File::open(full) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::new(
                ErrorKind::PathMissing,
                format!("unable to sync missing path '{full}'"),
            ));
        }
        Err(e) => {
            return Err(sys(
                ErrorKind::PathOpen,
                format!("unable to open path '{full}' for sync"),
                &e,
            ));
        }
    };
    dir.sync_all().map_err(|e| {
        sys(
            ErrorKind::PathSync,
            format!("unable to sync path '{full}'"),
            &e,
        )
    })
}

/// Remove everything inside `dir` without following links; entries that vanish meanwhile are fine.
fn remove_children(dir: &Path) -> Result<()> {
    let path_err = |e: &io::Error| {
        sys(
            ErrorKind::PathRemove,
            format!("unable to remove path '{}'", dir.display()),
            e,
        )
    };
    // Listing comes first, and a path that can't be listed is pgBackRest's PathOpenError.
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(sys(
                ErrorKind::PathOpen,
                format!("unable to list file info for path '{}'", dir.display()),
                &e,
            ));
        }
    };
    for entry in entries {
        let entry = entry.map_err(|e| path_err(&e))?;
        let child = entry.path();
        let file_type = match entry.file_type() {
            Ok(file_type) => file_type,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(path_err(&e)),
        };
        if file_type.is_dir() {
            remove_children(&child)?;
            remove_dir(&child)?;
        } else {
            match fs::remove_file(&child) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(sys(
                        ErrorKind::PathRemove,
                        format!("unable to remove file '{}'", child.display()),
                        &e,
                    ));
                }
            }
        }
    }
    Ok(())
}

/// rmdir; a missing directory is not an error.
fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(sys(
            ErrorKind::PathRemove,
            format!("unable to remove path '{}'", dir.display()),
            &e,
        )),
    }
}

/// Parent directory of a file-system path (`/` for top-level entries, `.` for bare names).
fn parent_of(full: &str) -> String {
    match Path::new(full).parent() {
        Some(parent) if parent.as_os_str().is_empty() => ".".to_string(),
        Some(parent) => parent.to_string_lossy().into_owned(),
        None => full.to_string(),
    }
}

fn unix_time(secs: i64) -> Option<SystemTime> {
    let offset = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    }
}

/// `<message>: [errno] text`, pgBackRest's shape for system errors.
fn sys(kind: ErrorKind, message: String, e: &io::Error) -> Error {
    Error::new(kind, format!("{message}: {}", io_cause(e)))
}

/// io::Error is not Clone; keep the errno when there is one so messages stay exact.
fn copy_io_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(errno) => io::Error::from_raw_os_error(errno),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, symlink};
    use std::process::Command;

    use super::*;
    use crate::{get, put};

    fn setup() -> (tempfile::TempDir, PosixStorage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = PosixStorage::new(dir.path().to_str().unwrap());
        (dir, storage)
    }

    fn is_root() -> bool {
        Uid::effective().is_root()
    }

    fn detail(storage: &PosixStorage, path: &str) -> StorageInfo {
        storage
            .info(path, InfoLevel::Detail, false)
            .unwrap()
            .unwrap()
    }

    fn names(storage: &PosixStorage, path: &str) -> Vec<String> {
        let mut names: Vec<String> = storage
            .list(path, InfoLevel::Exists)
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|info| info.name)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn paths_are_joined_below_the_root() {
        let storage = PosixStorage::new("/a/b/");
        assert_eq!(storage.root(), "/a/b");
        assert_eq!(storage.path("x/y"), "/a/b/x/y");
        assert_eq!(storage.path("/x"), "/a/b/x");
        assert_eq!(storage.path(""), "/a/b");
        let host = PosixStorage::new("/");
        assert_eq!(host.root(), "/");
        assert_eq!(host.path("var/lib"), "/var/lib");
        assert_eq!(host.path("/var/lib"), "/var/lib");
        assert_eq!(host.path(""), "/");
        assert_eq!(parent_of("/x"), "/");
        assert_eq!(parent_of("/a/b"), "/a");
    }

    #[test]
    fn new_files_and_paths_get_default_modes() {
        let (_dir, storage) = setup();
        put(&storage, "a/b/f", b"x", WriteOptions::default()).unwrap();
        assert_eq!(detail(&storage, "a/b/f").mode, 0o640);
        assert_eq!(detail(&storage, "a").mode, 0o750);
        assert_eq!(detail(&storage, "a/b").mode, 0o750);
    }

    #[test]
    fn modes_are_exact_whatever_the_umask() {
        // 0o666/0o777 would lose bits to any usual umask (022, 027) if the driver relied on open/mkdir
        let (_dir, storage) = setup();
        let storage = storage.with_defaults(0o666, 0o777);
        assert_eq!((storage.file_mode(), storage.path_mode()), (0o666, 0o777));
        put(&storage, "p/f", b"x", WriteOptions::default()).unwrap();
        assert_eq!(detail(&storage, "p/f").mode, 0o666);
        assert_eq!(detail(&storage, "p").mode, 0o777);
        let opts = WriteOptions {
            mode: Some(0o600),
            path_mode: Some(0o700),
            ..WriteOptions::default()
        };
        put(&storage, "q/r/f", b"x", opts).unwrap();
        assert_eq!(detail(&storage, "q/r/f").mode, 0o600);
        assert_eq!(detail(&storage, "q/r").mode, 0o700);
        assert_eq!(detail(&storage, "q").mode, 0o700);
        // rewriting a file re-modes it (the temp is new); existing directories keep theirs
        put(&storage, "q/r/f", b"y", WriteOptions::default()).unwrap();
        assert_eq!(detail(&storage, "q/r/f").mode, 0o666);
        storage.path_create("q", Some(0o755)).unwrap();
        assert_eq!(detail(&storage, "q").mode, 0o700);
    }

    #[test]
    fn detail_reports_owner_ids_and_names() {
        let (_dir, storage) = setup();
        put(&storage, "f", b"abc", WriteOptions::default()).unwrap();
        let info = detail(&storage, "f");
        let meta = fs::metadata(storage.path("f")).unwrap();
        assert_eq!((info.uid, info.gid), (meta.uid(), meta.gid()));
        assert_eq!(info.uid, Uid::effective().as_raw());
        assert_eq!(
            info.user,
            User::from_uid(Uid::effective()).unwrap().map(|u| u.name)
        );
        assert_eq!(
            info.group,
            Group::from_gid(Gid::from_raw(info.gid))
                .unwrap()
                .map(|g| g.name)
        );
        assert_eq!(info.name, "f");
        assert_eq!(info.size, 3);
        assert!(info.link_destination.is_none());
        // Basic does not fill detail fields
        let basic = storage.info("f", InfoLevel::Basic, false).unwrap().unwrap();
        assert_eq!((basic.mode, basic.user.as_deref()), (0, None));
        assert!(basic.mtime > 0);
    }

    #[test]
    fn unmapped_ids_have_no_names() {
        const UNMAPPED: u32 = 3_999_999_999;
        assert_eq!(user_name(UNMAPPED), None);
        assert_eq!(group_name(UNMAPPED), None);
        let (_dir, storage) = setup();
        put(&storage, "f", b"x", WriteOptions::default()).unwrap();
        let chowned = std::os::unix::fs::chown(storage.path("f"), Some(UNMAPPED), Some(UNMAPPED));
        if is_root() {
            chowned.unwrap();
            let info = detail(&storage, "f");
            assert_eq!((info.uid, info.gid), (UNMAPPED, UNMAPPED));
            assert_eq!((info.user, info.group), (None, None));
            let listed = storage.list("", InfoLevel::Detail).unwrap().unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].user, None);
        } else {
            // an unprivileged user cannot make such a file: the kernel refuses, as expected
            assert_eq!(chowned.unwrap_err().raw_os_error(), Some(1));
        }
    }

    #[test]
    fn links_are_reported_not_followed_unless_asked() {
        let (_dir, storage) = setup();
        put(&storage, "target.txt", b"12345", WriteOptions::default()).unwrap();
        storage
            .link_create("target.txt", "soft", LinkType::Soft)
            .unwrap();
        let info = detail(&storage, "soft");
        assert_eq!(info.file_type, FileType::Link);
        assert_eq!(info.link_destination.as_deref(), Some("target.txt"));
        assert_eq!(info.size, 0);
        let followed = storage
            .info("soft", InfoLevel::Detail, true)
            .unwrap()
            .unwrap();
        assert_eq!(followed.file_type, FileType::File);
        assert_eq!(followed.size, 5);
        assert_eq!(followed.link_destination, None);
        let listed = storage.list("", InfoLevel::Detail).unwrap().unwrap();
        let link = listed.iter().find(|i| i.name == "soft").unwrap();
        assert_eq!(link.file_type, FileType::Link);
        assert_eq!(link.link_destination.as_deref(), Some("target.txt"));

        // dangling: exists as a link, missing when followed
        storage
            .link_create("../nowhere", "dangling", LinkType::Soft)
            .unwrap();
        assert!(
            storage
                .info("dangling", InfoLevel::Basic, true)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            detail(&storage, "dangling").link_destination.as_deref(),
            Some("../nowhere")
        );

        // hard link: a storage path, same inode
        storage
            .link_create("target.txt", "hard", LinkType::Hard)
            .unwrap();
        let a = fs::metadata(storage.path("target.txt")).unwrap();
        let b = fs::metadata(storage.path("hard")).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(get(&storage, "hard").unwrap().unwrap(), b"12345");

        let err = storage
            .link_create("target.txt", "soft", LinkType::Soft)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileOpen);
        assert_eq!(
            err.message(),
            format!(
                "unable to create symlink '{}' to 'target.txt': [17] File exists",
                storage.path("soft")
            )
        );
        let err = storage
            .link_create("missing", "hard2", LinkType::Hard)
            .unwrap_err();
        assert_eq!(
            err.message(),
            format!(
                "unable to create hardlink '{}' to '{}': [2] No such file or directory",
                storage.path("hard2"),
                storage.path("missing")
            )
        );
    }

    #[test]
    fn sockets_are_special() {
        let (_dir, storage) = setup();
        let _listener = std::os::unix::net::UnixListener::bind(storage.path("sock")).unwrap();
        assert!(
            fs::symlink_metadata(storage.path("sock"))
                .unwrap()
                .file_type()
                .is_socket()
        );
        assert_eq!(detail(&storage, "sock").file_type, FileType::Special);
        let listed = storage.list("", InfoLevel::Exists).unwrap().unwrap();
        assert_eq!(listed[0].file_type, FileType::Special);
    }

    #[test]
    fn read_errors_use_pgbackrest_wording() {
        let (_dir, storage) = setup();
        let err = storage
            .open_read("missing", ReadOptions::default())
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::FileMissing);
        assert_eq!(err.code(), 55);
        assert_eq!(
            err.message(),
            format!(
                "unable to open missing file '{}' for read",
                storage.path("missing")
            )
        );

        put(&storage, "file", b"x", WriteOptions::default()).unwrap();
        let err = storage
            .open_read("file/below", ReadOptions::default())
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::FileOpen);
        assert_eq!(
            err.message(),
            format!(
                "unable to open file '{}' for read: [20] Not a directory",
                storage.path("file/below")
            )
        );

        storage.path_create("dir", None).unwrap();
        let err = storage
            .open_read("dir", ReadOptions::default())
            .err()
            .unwrap();
        assert_eq!(err.code(), 41);
        assert_eq!(
            err.message(),
            format!(
                "unable to open file '{}' for read: [21] Is a directory",
                storage.path("dir")
            )
        );

        // permission: root bypasses mode bits, everyone else is refused
        fs::set_permissions(storage.path("file"), Permissions::from_mode(0o000)).unwrap();
        let result = storage.open_read("file", ReadOptions::default());
        if is_root() {
            let mut data = Vec::new();
            result.unwrap().unwrap().read_to_end(&mut data).unwrap();
            assert_eq!(data, b"x");
        } else {
            let err = result.err().unwrap();
            assert_eq!(err.kind(), ErrorKind::FileOpen);
            assert_eq!(
                err.message(),
                format!(
                    "unable to open file '{}' for read: [13] Permission denied",
                    storage.path("file")
                )
            );
        }
    }

    #[test]
    fn info_and_list_errors() {
        let (_dir, storage) = setup();
        put(&storage, "file", b"x", WriteOptions::default()).unwrap();
        let err = storage
            .info("file/below", InfoLevel::Exists, false)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileOpen);
        assert_eq!(
            err.message(),
            format!(
                "unable to get info for path/file '{}': [20] Not a directory",
                storage.path("file/below")
            )
        );
        let err = storage.list("file", InfoLevel::Exists).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PathOpen);
        assert_eq!(
            err.message(),
            format!(
                "unable to list file info for path '{}': [20] Not a directory",
                storage.path("file")
            )
        );
        assert!(storage.list("nope", InfoLevel::Detail).unwrap().is_none());
        // the root itself
        let root = storage.info("", InfoLevel::Basic, false).unwrap().unwrap();
        assert_eq!(root.file_type, FileType::Path);
    }

    #[test]
    fn write_errors_name_the_final_path() {
        let (_dir, storage) = setup();
        put(&storage, "file", b"x", WriteOptions::default()).unwrap();
        let err = put(&storage, "file/below", b"y", WriteOptions::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileOpen);
        assert_eq!(
            err.message(),
            format!(
                "unable to open file '{}' for write: [20] Not a directory",
                storage.path("file/below")
            )
        );
        let opts = WriteOptions {
            create_path: false,
            ..WriteOptions::default()
        };
        let err = put(&storage, "missing/f", b"y", opts).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileMissing);
        assert_eq!(
            err.message(),
            format!(
                "unable to open file '{}' for write in missing path",
                storage.path("missing/f")
            )
        );
        let err = put(&storage, "file/sub/f", b"y", WriteOptions::default()).unwrap_err();
        // parent creation runs into the file: mkdir says ENOTDIR
        assert_eq!(err.kind(), ErrorKind::FileOpen);
        for bad in ["", "/", "dir/"] {
            let err = storage
                .open_write(bad, WriteOptions::default())
                .err()
                .unwrap();
            assert_eq!(err.kind(), ErrorKind::FileOpen, "{bad}");
        }
        assert_eq!(names(&storage, ""), ["file"]);
    }

    #[test]
    fn path_create_errors() {
        let (_dir, storage) = setup();
        put(&storage, "file", b"x", WriteOptions::default()).unwrap();
        let err = storage.path_create("file", None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PathCreate);
        assert_eq!(
            err.message(),
            format!(
                "unable to create path '{}': [17] File exists",
                storage.path("file")
            )
        );
        let err = storage.path_create("file/sub", None).unwrap_err();
        assert_eq!(
            err.message(),
            format!(
                "unable to create path '{}': [20] Not a directory",
                storage.path("file/sub")
            )
        );
        // a link to a directory counts as an existing directory (pg_wal may be a link)
        storage.path_create("real", None).unwrap();
        storage
            .link_create("real", "alias", LinkType::Soft)
            .unwrap();
        storage.path_create("alias", None).unwrap();
    }

    #[test]
    fn mtime_is_set_on_finish() {
        let (_dir, storage) = setup();
        for mtime in [1_600_000_000, 0, -86_400] {
            let opts = WriteOptions {
                mtime: Some(mtime),
                ..WriteOptions::default()
            };
            put(&storage, "f", b"x", opts).unwrap();
            let info = storage.info("f", InfoLevel::Basic, false).unwrap().unwrap();
            assert_eq!(info.mtime, mtime);
            let atime = fs::metadata(storage.path("f")).unwrap().atime();
            assert_eq!(atime, mtime);
        }
    }

    #[test]
    fn unknown_owner_names_fail_before_anything_is_created() {
        let (_dir, storage) = setup();
        let opts = WriteOptions {
            user: Some("pgkeep-no-such-user".to_string()),
            ..WriteOptions::default()
        };
        let err = put(&storage, "d/f", b"x", opts).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UserMissing);
        assert_eq!(err.code(), 89);
        assert_eq!(
            err.message(),
            format!(
                "unable to set ownership for '{}': user 'pgkeep-no-such-user' does not exist",
                storage.path("d/f")
            )
        );
        let opts = WriteOptions {
            group: Some("pgkeep-no-such-group".to_string()),
            ..WriteOptions::default()
        };
        let err = put(&storage, "d/f", b"x", opts).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UserMissing);
        assert!(
            err.message()
                .ends_with("group 'pgkeep-no-such-group' does not exist")
        );
        assert!(
            storage
                .list("", InfoLevel::Exists)
                .unwrap()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn owner_is_set_when_permitted() {
        let (_dir, storage) = setup();
        // naming the owner the file gets anyway always works
        let me = User::from_uid(Uid::effective()).unwrap().unwrap();
        let my_group = Group::from_gid(Gid::effective()).unwrap().unwrap();
        let opts = WriteOptions {
            user: Some(me.name.clone()),
            group: Some(my_group.name.clone()),
            ..WriteOptions::default()
        };
        put(&storage, "mine", b"x", opts).unwrap();
        assert_eq!(detail(&storage, "mine").user, Some(me.name.clone()));

        if is_root() {
            let other = ["nobody", "daemon", "bin"]
                .iter()
                .find_map(|name| User::from_name(name).unwrap())
                .expect("no non-root user in /etc/passwd to chown to");
            let opts = WriteOptions {
                user: Some(other.name.clone()),
                ..WriteOptions::default()
            };
            put(&storage, "theirs", b"x", opts).unwrap();
            let info = detail(&storage, "theirs");
            assert_eq!(info.uid, other.uid.as_raw());
            assert_eq!(info.user, Some(other.name));
        } else {
            let opts = WriteOptions {
                user: Some("root".to_string()),
                ..WriteOptions::default()
            };
            let err = put(&storage, "theirs", b"x", opts).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::FileOwner);
            assert_eq!(err.code(), 88);
            assert_eq!(
                err.message(),
                format!(
                    "unable to set ownership for '{}': [1] Operation not permitted",
                    storage.path("theirs")
                )
            );
            assert_eq!(names(&storage, ""), ["mine"]);
        }
    }

    #[test]
    fn atomic_write_uses_the_temp_name_and_drop_removes_it() {
        let (_dir, storage) = setup();
        put(&storage, "f", b"old", WriteOptions::default()).unwrap();
        let mut writer = storage.open_write("f", WriteOptions::default()).unwrap();
        writer.write_all(b"new").unwrap();
        writer.flush().unwrap();
        assert_eq!(names(&storage, ""), ["f", "f.pgbackrest.tmp"]);
        assert_eq!(fs::read(storage.path("f.pgbackrest.tmp")).unwrap(), b"new");
        assert_eq!(get(&storage, "f").unwrap().unwrap(), b"old");
        drop(writer);
        assert_eq!(names(&storage, ""), ["f"]);
        assert_eq!(get(&storage, "f").unwrap().unwrap(), b"old");

        // a stale temp file from a crash is simply overwritten
        fs::write(storage.path("f.pgbackrest.tmp"), b"stale stale stale").unwrap();
        put(&storage, "f", b"newer", WriteOptions::default()).unwrap();
        assert_eq!(names(&storage, ""), ["f"]);
        assert_eq!(get(&storage, "f").unwrap().unwrap(), b"newer");
    }

    #[test]
    fn non_atomic_write_goes_in_place() {
        let (_dir, storage) = setup();
        let opts = WriteOptions {
            atomic: false,
            ..WriteOptions::default()
        };
        let mut writer = storage.open_write("f", opts.clone()).unwrap();
        writer.write_all(b"data").unwrap();
        writer.flush().unwrap();
        assert_eq!(names(&storage, ""), ["f"]);
        assert_eq!(fs::read(storage.path("f")).unwrap(), b"data");
        writer.finish().unwrap();
        assert_eq!(get(&storage, "f").unwrap().unwrap(), b"data");
        assert_eq!(detail(&storage, "f").mode, 0o640);

        // dropped unfinished: the partial file goes away
        let mut writer = storage.open_write("g", opts).unwrap();
        writer.write_all(b"partial").unwrap();
        drop(writer);
        assert_eq!(names(&storage, ""), ["f"]);
    }

    /// A writer as `open` makes it, except that its descriptor is /dev/full (every write gets
    /// ENOSPC); the temp file exists as usual so its removal can be checked.
    fn writer_on_dev_full(storage: &PosixStorage, path: &str) -> Box<PosixWrite> {
        let dev_full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        assert!(
            dev_full.metadata().unwrap().file_type().is_char_device(),
            "this test needs Linux's /dev/full"
        );
        let path = storage.path(path);
        let path_tmp = format!("{path}{TEMP_EXTENSION}");
        fs::write(&path_tmp, b"").unwrap();
        Box::new(PosixWrite {
            path,
            path_tmp,
            file: Some(BufWriter::with_capacity(WRITE_BUFFER_SIZE, dev_full)),
            _lock: None,
            params: WriteParams {
                mode: DEFAULT_FILE_MODE,
                path_mode: DEFAULT_PATH_MODE,
                create_path: true,
                atomic: true,
                sync_file: true,
                writeback: false,
                sync_path: true,
                mtime: None,
                owner: Owner::default(),
            },
            failed: None,
            committed: false,
        })
    }

    #[test]
    fn full_disk_leaves_the_old_file_untouched() {
        let (_dir, storage) = setup();
        put(&storage, "f", b"old", WriteOptions::default()).unwrap();

        // small write: buffered, fails when finish flushes
        let mut writer = writer_on_dev_full(&storage, "f");
        writer.write_all(b"new content").unwrap();
        let err = writer.finish().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileWrite);
        assert_eq!(
            err.message(),
            format!(
                "unable to write '{}': [28] No space left on device",
                storage.path("f")
            )
        );
        assert_eq!(get(&storage, "f").unwrap().unwrap(), b"old");
        assert_eq!(names(&storage, ""), ["f"]);

        // big write: fails inside write(); a caller ignoring that still cannot commit
        let mut writer = writer_on_dev_full(&storage, "f");
        let full = format!(
            "unable to write '{}': [28] No space left on device",
            storage.path("f")
        );
        let message = |e: std::io::Error| {
            Error::from_io_error(&e, ErrorKind::FileWrite, "lost the path")
                .message()
                .to_string()
        };
        assert_eq!(
            message(writer.write_all(&vec![1u8; 1 << 20]).unwrap_err()),
            full
        );
        assert_eq!(message(writer.write(b"more").unwrap_err()), full);
        assert_eq!(message(writer.flush().unwrap_err()), full);
        let err = writer.finish().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileWrite);
        assert!(err.message().ends_with("[28] No space left on device"));
        assert_eq!(get(&storage, "f").unwrap().unwrap(), b"old");
        assert_eq!(names(&storage, ""), ["f"]);

        // dropped after the failure: same
        let mut writer = writer_on_dev_full(&storage, "f");
        assert!(writer.write_all(&vec![1u8; 1 << 20]).is_err());
        drop(writer);
        assert_eq!(names(&storage, ""), ["f"]);
    }

    #[test]
    fn links_at_the_temp_name_are_not_written_through() {
        let (_dir, storage) = setup();
        put(&storage, "victim", b"precious", WriteOptions::default()).unwrap();
        fs::set_permissions(storage.path("victim"), Permissions::from_mode(0o604)).unwrap();
        symlink(storage.path("victim"), storage.path("f.pgbackrest.tmp")).unwrap();
        put(&storage, "f", b"new", WriteOptions::default()).unwrap();
        assert_eq!(get(&storage, "f").unwrap().unwrap(), b"new");
        assert_eq!(detail(&storage, "f").file_type, FileType::File);
        assert_eq!(get(&storage, "victim").unwrap().unwrap(), b"precious");
        assert_eq!(detail(&storage, "victim").mode, 0o604);
        assert_eq!(names(&storage, ""), ["f", "victim"]);
    }

    #[test]
    fn finish_as_commits_under_another_name_in_the_same_directory() {
        let (_dir, storage) = setup();
        let mut writer = storage
            .open_write("arch/seg", WriteOptions::default())
            .unwrap();
        writer.write_all(b"segment").unwrap();
        writer.finish_as("seg-0123.zst").unwrap();
        assert_eq!(
            get(&storage, "arch/seg-0123.zst").unwrap().unwrap(),
            b"segment"
        );
        assert_eq!(names(&storage, "arch"), ["seg-0123.zst"]);
        for name in ["", "x/y"] {
            let writer = storage
                .open_write("arch/other", WriteOptions::default())
                .unwrap();
            assert_eq!(
                writer.finish_as(name).unwrap_err().kind(),
                ErrorKind::Assert
            );
        }
        let writer = storage
            .open_write(
                "arch/plain",
                WriteOptions {
                    atomic: false,
                    ..WriteOptions::default()
                },
            )
            .unwrap();
        assert_eq!(writer.finish_as("x").unwrap_err().kind(), ErrorKind::Assert);
        assert_eq!(names(&storage, "arch"), ["seg-0123.zst"]);
    }

    #[test]
    fn a_fifo_at_the_temp_name_is_removed_not_waited_on() {
        let (_dir, storage) = setup();
        nix::unistd::mkfifo(
            storage.path("f.pgbackrest.tmp").as_str(),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        put(&storage, "f", b"new", WriteOptions::default()).unwrap();
        assert_eq!(get(&storage, "f").unwrap().unwrap(), b"new");
        assert_eq!(names(&storage, ""), ["f"]);
    }

    #[test]
    fn hard_links_at_the_temp_name_are_not_truncated() {
        let (_dir, storage) = setup();
        put(&storage, "victim", b"precious", WriteOptions::default()).unwrap();
        fs::hard_link(storage.path("victim"), storage.path("f.pgbackrest.tmp")).unwrap();
        put(&storage, "f", b"new", WriteOptions::default()).unwrap();
        assert_eq!(get(&storage, "f").unwrap().unwrap(), b"new");
        assert_eq!(get(&storage, "victim").unwrap().unwrap(), b"precious");
        assert_eq!(names(&storage, ""), ["f", "victim"]);
    }

    #[test]
    fn a_second_writer_of_the_same_file_waits_for_the_first() {
        let (_dir, storage) = setup();
        let storage = std::sync::Arc::new(storage);
        let mut first = storage.open_write("seg", WriteOptions::default()).unwrap();
        first.write_all(&vec![b'a'; 100_000]).unwrap();
        first.flush().unwrap();
        let (opened_tx, opened_rx) = std::sync::mpsc::channel();
        let second = {
            let storage = std::sync::Arc::clone(&storage);
            std::thread::spawn(move || {
                let mut second = storage.open_write("seg", WriteOptions::default()).unwrap();
                opened_tx.send(()).unwrap();
                second.write_all(&vec![b'b'; 50_000]).unwrap();
                second.finish().unwrap();
            })
        };
        // the second writer must not get the temp file while the first holds it
        assert!(
            opened_rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "the second writer opened the temp file the first is writing"
        );
        first.write_all(&vec![b'a'; 100_000]).unwrap();
        first.finish().unwrap();
        assert_eq!(
            get(storage.as_ref(), "seg").unwrap().unwrap(),
            vec![b'a'; 200_000]
        );
        second.join().unwrap();
        assert_eq!(
            get(storage.as_ref(), "seg").unwrap().unwrap(),
            vec![b'b'; 50_000]
        );
        assert_eq!(names(storage.as_ref(), ""), ["seg"]);
    }

    const FSIZE_CHILD_ENV: &str = "PGKEEP_STORAGE_FSIZE_CHILD";

    /// Runs only in the child spawned by `file_size_limit_leaves_the_old_file_untouched`.
    #[test]
    #[ignore = "helper: run in a child process under RLIMIT_FSIZE"]
    fn file_size_limit_child() {
        let Ok(root) = std::env::var(FSIZE_CHILD_ENV) else {
            return;
        };
        let storage = PosixStorage::new(root);
        let err = put(&storage, "f", &vec![7u8; 1 << 20], WriteOptions::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileWrite);
        assert_eq!(
            err.message(),
            format!(
                "unable to write '{}': [27] File too large",
                storage.path("f")
            )
        );
        assert_eq!(get(&storage, "f").unwrap().unwrap(), b"old");
        assert_eq!(names(&storage, ""), ["f"]);
        println!("fsize-child-ok");
    }

    /// A real regular-file write failure: the child runs with a small RLIMIT_FSIZE and SIGXFSZ
    /// ignored, so writes past the limit fail with EFBIG after a partial temp file was written.
    #[test]
    fn file_size_limit_leaves_the_old_file_untouched() {
        let (dir, storage) = setup();
        put(&storage, "f", b"old", WriteOptions::default()).unwrap();
        let exe = std::env::current_exe().unwrap();
        let output = Command::new("sh")
            .arg("-c")
            .arg("trap '' XFSZ; ulimit -f 64 && exec \"$0\" \"$@\"")
            .arg(exe)
            .args([
                "--ignored",
                "--exact",
                "posix::tests::file_size_limit_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(FSIZE_CHILD_ENV, dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("fsize-child-ok"),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(get(&storage, "f").unwrap().unwrap(), b"old");
        assert_eq!(names(&storage, ""), ["f"]);
    }

    #[test]
    fn move_renames_creates_parents_and_reports_missing_sources() {
        let (_dir, storage) = setup();
        put(&storage, "a", b"data", WriteOptions::default()).unwrap();
        storage.move_file("a", "x/y/b").unwrap();
        assert_eq!(get(&storage, "x/y/b").unwrap().unwrap(), b"data");
        assert!(get(&storage, "a").unwrap().is_none());
        assert_eq!(detail(&storage, "x").mode, 0o750);
        let err = storage.move_file("a", "c").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileMissing);
        assert_eq!(
            err.message(),
            format!(
                "unable to move missing source '{}': [2] No such file or directory",
                storage.path("a")
            )
        );
        put(&storage, "file", b"x", WriteOptions::default()).unwrap();
        let err = storage.move_file("x/y/b", "file/b").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileMove);
        assert_eq!(
            err.message(),
            format!(
                "unable to move '{}' to '{}': [20] Not a directory",
                storage.path("x/y/b"),
                storage.path("file/b")
            )
        );
    }

    #[test]
    fn cross_device_copy_keeps_content_mode_and_mtime() {
        let (_dir, storage) = setup();
        let opts = WriteOptions {
            mode: Some(0o604),
            mtime: Some(1_500_000_000),
            ..WriteOptions::default()
        };
        let data: Vec<u8> = (0..(COPY_BUFFER_SIZE * 2 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        put(&storage, "src", &data, opts).unwrap();
        let exdev = io::Error::from_raw_os_error(Errno::EXDEV as i32);
        storage
            .copy_across(&storage.path("src"), &storage.path("new/dst"), &exdev)
            .unwrap();
        assert!(get(&storage, "src").unwrap().is_none());
        assert_eq!(get(&storage, "new/dst").unwrap().unwrap(), data);
        let info = detail(&storage, "new/dst");
        assert_eq!((info.mode, info.mtime), (0o604, 1_500_000_000));
        assert_eq!(names(&storage, "new"), ["dst"]);

        storage.path_create("dir", None).unwrap();
        let err = storage
            .copy_across(&storage.path("dir"), &storage.path("dir2"), &exdev)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileMove);
        assert_eq!(
            err.message(),
            format!(
                "unable to move '{}' to '{}': [18] Invalid cross-device link",
                storage.path("dir"),
                storage.path("dir2")
            )
        );
    }

    /// Through `move_file` when two file systems are at hand (/dev/shm is tmpfs on most Linux).
    #[test]
    fn move_across_file_systems() {
        let (dir, _) = setup();
        let shm = match tempfile::tempdir_in("/dev/shm") {
            Ok(shm) => shm,
            Err(e) => {
                eprintln!("move_across_file_systems: no /dev/shm ({e}); only same-device move ran");
                return;
            }
        };
        let same_device =
            fs::metadata(dir.path()).unwrap().dev() == fs::metadata(shm.path()).unwrap().dev();
        let host = PosixStorage::new("/");
        let src = format!("{}/f", shm.path().display());
        let dst = format!("{}/sub/f", dir.path().display());
        fs::write(&src, b"across").unwrap();
        host.move_file(&src, &dst).unwrap();
        assert_eq!(fs::read(&dst).unwrap(), b"across");
        assert!(fs::symlink_metadata(&src).is_err());
        if same_device {
            eprintln!(
                "move_across_file_systems: /dev/shm and the temp dir share a device; EXDEV not exercised here"
            );
        }
    }

    #[test]
    fn remove_path_does_not_follow_links() {
        let (_dir, storage) = setup();
        put(&storage, "outside/keep", b"x", WriteOptions::default()).unwrap();
        put(&storage, "tree/a/b/f", b"x", WriteOptions::default()).unwrap();
        storage
            .link_create("../../outside", "tree/a/link", LinkType::Soft)
            .unwrap();
        storage
            .link_create(&storage.path("outside/keep"), "tree/abs", LinkType::Soft)
            .unwrap();
        storage.remove_path("tree", true).unwrap();
        assert!(
            storage
                .info("tree", InfoLevel::Exists, false)
                .unwrap()
                .is_none()
        );
        assert_eq!(get(&storage, "outside/keep").unwrap().unwrap(), b"x");
        // missing is fine, with or without recursion
        storage.remove_path("tree", true).unwrap();
        storage.remove_path("tree", false).unwrap();
    }

    #[test]
    fn remove_errors() {
        let (_dir, storage) = setup();
        put(&storage, "d/f", b"x", WriteOptions::default()).unwrap();
        let err = storage.remove_path("d", false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PathRemove);
        assert_eq!(
            err.message(),
            format!(
                "unable to remove path '{}': [39] Directory not empty",
                storage.path("d")
            )
        );
        let err = storage.remove("d", false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileRemove);
        assert_eq!(
            err.message(),
            format!(
                "unable to remove '{}': [21] Is a directory",
                storage.path("d")
            )
        );
        let err = storage.remove("missing", false).unwrap_err();
        assert_eq!(
            err.message(),
            format!(
                "unable to remove '{}': [2] No such file or directory",
                storage.path("missing")
            )
        );
        storage.remove("missing", true).unwrap();
        // a recursive remove lists first: pgBackRest's PathOpenError when that fails
        let err = storage.remove_path("d/f", true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PathOpen);
        assert_eq!(
            err.message(),
            format!(
                "unable to list file info for path '{}': [20] Not a directory",
                storage.path("d/f")
            )
        );
        let err = storage.remove_path("d/f", false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PathRemove);
    }

    #[test]
    fn sequential_reads_with_read_ahead_return_the_same_bytes() {
        let (_dir, storage) = setup();
        let data: Vec<u8> = (0..READ_AHEAD_MIN as usize + 3 * READ_AHEAD_WINDOW as usize / 2)
            .map(|i| (i % 251) as u8)
            .collect();
        put(&storage, "big", &data, WriteOptions::default()).unwrap();
        let len = data.len() as u64;
        for (offset, limit) in [
            (0, None),
            (0, Some(len)),
            (7, Some(READ_AHEAD_WINDOW + 3)),
            (len - 10, None),
            (len - 10, Some(100)),
        ] {
            let mut reader = storage
                .open_read(
                    "big",
                    ReadOptions {
                        offset,
                        limit,
                        sequential: true,
                        ..ReadOptions::default()
                    },
                )
                .unwrap()
                .unwrap();
            let mut got = Vec::new();
            reader.read_to_end(&mut got).unwrap();
            let from = offset as usize;
            let to = limit.map_or(data.len(), |l| data.len().min(from + l as usize));
            assert_eq!(got, data[from..to], "offset {offset} limit {limit:?}");
        }
    }

    #[test]
    fn kernel_releases_are_read_and_compared() {
        assert_eq!(kernel_version("6.1.0-18-amd64\n"), Some((6, 1)));
        assert_eq!(kernel_version("5.8.0"), Some((5, 8)));
        assert_eq!(kernel_version("4.18.0-513.el8.x86_64"), Some((4, 18)));
        assert_eq!(kernel_version("garbage"), None);
        assert!(kernel_version("4.18.0").unwrap() < (5, 8));
        assert!(kernel_version("5.10.1").unwrap() >= (5, 8));
        // this machine's kernel and temp file system
        let dir = tempfile::tempdir().unwrap();
        let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let fuse = nix::sys::statfs::statfs(dir.path())
            .unwrap()
            .filesystem_type()
            == nix::sys::statfs::FUSE_SUPER_MAGIC;
        let expected = kernel_version(&release).unwrap() >= (5, 8) && !fuse;
        assert_eq!(
            syncfs_reports_errors(&File::open(dir.path()).unwrap()),
            expected
        );
        let storage = PosixStorage::new(dir.path().to_str().unwrap());
        fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(storage.sync_all_covers("sub"), expected);
        assert_eq!(storage.sync_all_covers(""), expected);
        assert!(
            !storage.sync_all_covers("missing"),
            "unknown: per-file syncs"
        );
        // a file system mounted below the root is not covered by the root's syncfs
        let here = fs::metadata(dir.path()).unwrap().dev();
        if let Some(other) = ["/dev/shm", "/proc", "/sys"]
            .into_iter()
            .find(|p| fs::metadata(p).is_ok_and(|m| m.dev() != here))
        {
            std::os::unix::fs::symlink(other, dir.path().join("elsewhere")).unwrap();
            assert!(!storage.sync_all_covers("elsewhere"));
        }
    }

    #[test]
    fn sync_all_flushes_a_tree_and_names_a_missing_path() {
        let (_dir, storage) = setup();
        assert!(storage.features().sync_all);
        put(&storage, "tree/a/f", b"x", WriteOptions::default()).unwrap();
        storage.sync_all("tree").unwrap();
        let err = storage.sync_all("missing").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PathOpen);
        assert_eq!(
            err.message(),
            format!(
                "unable to open path '{}': [2] No such file or directory",
                storage.path("missing")
            )
        );
    }

    #[test]
    fn path_sync_errors() {
        let (_dir, storage) = setup();
        storage.path_sync("").unwrap();
        let err = storage.path_sync("missing").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PathMissing);
        assert_eq!(
            err.message(),
            format!("unable to sync missing path '{}'", storage.path("missing"))
        );
    }

    #[test]
    fn features_are_all_on() {
        let features = PosixStorage::new("/").features();
        assert!(
            features.path
                && features.path_sync
                && features.hardlink
                && features.symlink
                && features.info_detail
        );
        assert_eq!(PosixStorage::new("/").driver(), "posix");
    }
}
