//! One storage interface, many drivers. A driver knows nothing of what it stores.
//!
//! Contract:
//! - Paths are `/`-separated and relative to the storage's root (`""` is the root itself). A driver
//!   rooted at `/` (the PostgreSQL host storage) therefore accepts `var/lib/x` for `/var/lib/x`;
//!   callers build paths with [`join`]. A leading `/` is tolerated and means the same as without.
//! - Reads of a missing file return `Ok(None)` when the caller allows it; every other failure is an
//!   [`Error`] naming the path and the driver.
//! - Writes are atomic: nothing is visible under the final name until [`StorageWrite::finish`]
//!   returns; dropping an unfinished writer discards it. On posix that is a temp name, fsync, rename
//!   and fsync of the directory (each step can be switched off through [`WriteOptions`] for data
//!   that is re-verified anyway).
//! - Optional operations (links, moves, path sync) are announced by [`Features`]; calling one a
//!   driver lacks returns a `FeatureNotSupported` error.

use std::io::{Read, Write};

pub use pgkeep_base::{Error, ErrorKind, Result};

pub mod posix;

/// What kind of entry a [`StorageInfo`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// Regular file.
    File,
    /// Directory (a key prefix on object stores).
    Path,
    /// Symbolic link (not followed).
    Link,
    /// Socket, FIFO, device.
    Special,
}

/// How much [`Storage::info`] and [`Storage::list`] must fill in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum InfoLevel {
    /// Only existence and type.
    Exists,
    /// Type, size, mtime.
    Basic,
    /// Also mode, owner (uid/gid and names) and link destination.
    Detail,
}

/// Facts about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageInfo {
    /// Entry name: the last path component for `list`, the requested path for `info`.
    pub name: String,
    /// Entry type.
    pub file_type: FileType,
    /// Size in bytes (files only, 0 otherwise).
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// Permission bits (`0o777` mask, as pgBackRest reports them); `Detail` level only.
    pub mode: u32,
    /// Owner uid; `Detail` level only.
    pub uid: u32,
    /// Owner gid; `Detail` level only.
    pub gid: u32,
    /// Owner name, `None` when the uid has no name; `Detail` level only.
    pub user: Option<String>,
    /// Group name, `None` when the gid has no name; `Detail` level only.
    pub group: Option<String>,
    /// Link destination as read by readlink; links at `Detail` level only.
    pub link_destination: Option<String>,
}

/// Options of [`Storage::open_read`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Start reading at this byte offset.
    pub offset: u64,
    /// Read at most this many bytes.
    pub limit: Option<u64>,
    /// A missing file is `Ok(None)` instead of a `FileMissing` error.
    pub ignore_missing: bool,
    /// The reader goes through the file once, start to end, and computes while it reads: the
    /// driver may fetch ahead of it (posix: `posix_fadvise(WILLNEED)` a few MiB ahead of the read
    /// position, so the disk works while the caller compresses).
    pub sequential: bool,
}

/// Options of [`Storage::open_write`]. The default is the safe one: atomic, synced, paths created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// Permission bits of the new file (driver default when `None`, 0640 on posix).
    pub mode: Option<u32>,
    /// Permission bits of directories created on the way (0750 on posix when `None`).
    pub path_mode: Option<u32>,
    /// Create missing parent directories.
    pub create_path: bool,
    /// Write to a temp name and rename on finish.
    pub atomic: bool,
    /// fsync the file before finish returns.
    pub sync_file: bool,
    /// Without `sync_file`: ask the kernel to start writing the file to disk at finish (and to
    /// drop it from the page cache once written) instead of at some later flush, so the disk
    /// writes while the caller goes on. A hint (posix: `posix_fadvise(DONTNEED)` on the open
    /// descriptor); never an error.
    pub writeback: bool,
    /// fsync the parent directory after the rename.
    pub sync_path: bool,
    /// Set this modification time (Unix seconds) on finish.
    pub mtime: Option<i64>,
    /// Change the owner to this user name on finish (posix, when permitted).
    pub user: Option<String>,
    /// Change the group to this group name on finish (posix, when permitted).
    pub group: Option<String>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            mode: None,
            path_mode: None,
            create_path: true,
            atomic: true,
            sync_file: true,
            writeback: false,
            sync_path: true,
            mtime: None,
            user: None,
            group: None,
        }
    }
}

/// Optional capabilities of a driver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// Real directories exist (posix, cifs); object stores have only key prefixes.
    pub path: bool,
    /// Directories can be fsynced.
    pub path_sync: bool,
    /// Everything written below a path can be made durable at once ([`Storage::sync_all`]),
    /// so writers may skip the per-file fsync.
    pub sync_all: bool,
    /// Hard links can be created.
    pub hardlink: bool,
    /// Symbolic links can be created and read.
    pub symlink: bool,
    /// Mode, owner and link destination are reported.
    pub info_detail: bool,
}

/// Kind of link for [`Storage::link_create`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// Symbolic link.
    Soft,
    /// Hard link.
    Hard,
}

/// An open write. Bytes become visible only when [`StorageWrite::finish`] succeeds.
pub trait StorageWrite: Write + Send {
    /// Commit the write (flush, fsync, rename, fsync directory as the options ask).
    ///
    /// # Errors
    /// Any I/O failure, naming the path; the final name is then untouched.
    fn finish(self: Box<Self>) -> Result<()>;

    /// Commit an atomic write under `name`, a file name in the directory of the path it was
    /// opened with, instead of that path: for files whose name depends on their content (a WAL
    /// segment's SHA-1). The temp file stays this writer's until the rename, so a concurrent
    /// writer of the same path never sees or moves it.
    ///
    /// # Errors
    /// As [`StorageWrite::finish`]; `Assert` for a non-atomic write or a `name` with a `/`.
    fn finish_as(self: Box<Self>, name: &str) -> Result<()>;
}

/// A storage driver.
pub trait Storage: Send + Sync {
    /// Driver name for messages (`posix`, `s3`, ...).
    fn driver(&self) -> &'static str;

    /// Optional capabilities.
    fn features(&self) -> Features;

    /// The root this storage is based at, for messages (`/var/lib/pgbackrest`).
    fn root(&self) -> &str;

    /// Facts about `path`, or `None` when it does not exist. Links are not followed unless
    /// `follow_link`.
    ///
    /// # Errors
    /// Any failure other than absence.
    fn info(&self, path: &str, level: InfoLevel, follow_link: bool) -> Result<Option<StorageInfo>>;

    /// Entries directly inside `path` (unsorted), or `None` when the path does not exist.
    ///
    /// # Errors
    /// Any failure other than absence.
    fn list(&self, path: &str, level: InfoLevel) -> Result<Option<Vec<StorageInfo>>>;

    /// [`Storage::list`] one entry at a time, without holding the listing: `each` sees every
    /// entry (unsorted); `false` when the path does not exist. Drivers that can stream their
    /// listing override it (posix: one `readdir` entry at a time), so a directory of a million
    /// files costs no memory per file.
    ///
    /// # Errors
    /// Any failure other than absence, and `each`'s errors.
    fn list_each(
        &self,
        path: &str,
        level: InfoLevel,
        each: &mut dyn FnMut(StorageInfo) -> Result<()>,
    ) -> Result<bool> {
        match self.list(path, level)? {
            Some(list) => {
                for info in list {
                    each(info)?;
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Open `path` for reading. `Ok(None)` when missing and `opts.ignore_missing`.
    ///
    /// # Errors
    /// Missing file (`FileMissing`) when not ignored, or any open failure (`FileOpen`).
    fn open_read(&self, path: &str, opts: ReadOptions) -> Result<Option<Box<dyn Read + Send>>>;

    /// Open `path` for an atomic write.
    ///
    /// # Errors
    /// `FileOpen` when the (temp) file cannot be created, `FileMissing` when its directory is
    /// missing and `create_path` is off, `PathCreate` for parent paths, `UserMissing` for an unknown
    /// user/group name, `FileOwner` when the owner cannot be changed. Nothing is left behind.
    fn open_write(&self, path: &str, opts: WriteOptions) -> Result<Box<dyn StorageWrite>>;

    /// Remove a file (or link). Missing is an error unless `ignore_missing`.
    ///
    /// # Errors
    /// `FileRemove` on failure.
    fn remove(&self, path: &str, ignore_missing: bool) -> Result<()>;

    /// Remove a directory, with everything in it when `recurse`. A missing path is not an error.
    ///
    /// # Errors
    /// `PathRemove` on failure.
    fn remove_path(&self, path: &str, recurse: bool) -> Result<()>;

    /// Create a directory (and parents). Existing is fine.
    ///
    /// # Errors
    /// `PathCreate` on failure; `FeatureNotSupported` on drivers without paths.
    fn path_create(&self, path: &str, mode: Option<u32>) -> Result<()> {
        let _ = mode;
        Err(not_supported(self.driver(), "path create", path))
    }

    /// fsync a directory.
    ///
    /// # Errors
    /// `PathMissing` when absent, `PathOpen` when it cannot be opened, `PathSync` when the fsync
    /// fails; `FeatureNotSupported` on drivers without paths.
    fn path_sync(&self, path: &str) -> Result<()> {
        Err(not_supported(self.driver(), "path sync", path))
    }

    /// Make every file written below `path` durable at once (posix: one `syncfs()` of the file
    /// system holding it), for writers that skipped the per-file fsync because
    /// [`Storage::sync_all_covers`] said they could.
    ///
    /// # Errors
    /// `PathOpen` when `path` cannot be opened, `PathSync` when the flush fails;
    /// `FeatureNotSupported` on drivers without [`Features::sync_all`].
    fn sync_all(&self, path: &str) -> Result<()> {
        Err(not_supported(self.driver(), "sync all", path))
    }

    /// Whether files written below `path` (an existing directory) may skip their per-file fsync
    /// and rely on one [`Storage::sync_all`] afterwards: it must make them durable *and* report
    /// the write-back errors of their writes. `false` on drivers without [`Features::sync_all`],
    /// and whenever that cannot be told.
    fn sync_all_covers(&self, path: &str) -> bool {
        let _ = path;
        false
    }

    /// Create a link at `link_path` pointing to `target`. A soft link's target is stored as given
    /// (relative to the link's directory when relative); a hard link's target is a storage path.
    ///
    /// # Errors
    /// `FileOpen` on failure; `FeatureNotSupported` where links do not exist.
    fn link_create(&self, target: &str, link_path: &str, link_type: LinkType) -> Result<()> {
        let _ = (target, link_type);
        Err(not_supported(self.driver(), "link create", link_path))
    }

    /// Rename `from` to `to` within this storage (atomic on posix, parent of `to` synced, missing
    /// parents of `to` created). Across file systems a file is copied, then the source removed.
    ///
    /// # Errors
    /// `FileMissing` when `from` is missing, `FileMove` on other failures; `FeatureNotSupported`
    /// where unsupported.
    fn move_file(&self, from: &str, to: &str) -> Result<()> {
        let _ = to;
        Err(not_supported(self.driver(), "move", from))
    }
}

fn not_supported(driver: &str, op: &str, path: &str) -> Error {
    Error::new(
        ErrorKind::FeatureNotSupported,
        format!("{driver} storage does not support {op} for '{path}'"),
    )
}

/// Join two storage paths with exactly one `/`.
#[must_use]
pub fn join(base: &str, name: &str) -> String {
    let name = name.trim_start_matches('/');
    if base.is_empty() {
        name.to_string()
    } else if name.is_empty() {
        base.to_string()
    } else {
        format!("{}/{}", base.trim_end_matches('/'), name)
    }
}

/// Read a whole file; `Ok(None)` when it does not exist.
///
/// # Errors
/// Any read failure, naming the path.
pub fn get(storage: &dyn Storage, path: &str) -> Result<Option<Vec<u8>>> {
    let Some(mut reader) = storage.open_read(
        path,
        ReadOptions {
            ignore_missing: true,
            ..ReadOptions::default()
        },
    )?
    else {
        return Ok(None);
    };
    let mut data = Vec::new();
    reader.read_to_end(&mut data).map_err(|e| {
        Error::io(
            ErrorKind::FileRead,
            "unable to read",
            join(storage.root(), path),
            &e,
        )
    })?;
    Ok(Some(data))
}

/// Write a whole file atomically with `opts`.
///
/// # Errors
/// Any write failure, naming the path; the old content (if any) is then unchanged.
pub fn put(storage: &dyn Storage, path: &str, data: &[u8], opts: WriteOptions) -> Result<()> {
    let mut writer = storage.open_write(path, opts)?;
    writer.write_all(data).map_err(|e| {
        Error::from_io_error(
            &e,
            ErrorKind::FileWrite,
            format!("unable to write '{}'", join(storage.root(), path)),
        )
    })?;
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::join;

    #[test]
    fn join_uses_one_slash() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("a/", "/b"), "a/b");
        assert_eq!(join("a", ""), "a");
        assert_eq!(join("/", "etc"), "/etc");
    }
}
