//! In-memory `Storage` for this crate's unit tests: files in a map, directories implied by file paths, writes
//! visible only after `finish`, optional failure injection for writes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, PoisonError};

use pgkeep_base::{Error, ErrorKind, Result};
use pgkeep_storage::{
    FileType, InfoLevel, ReadOptions, Storage, StorageInfo, StorageWrite, WriteOptions, join,
};

type Files = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// Files by normalised path (no leading `/`).
#[derive(Default, Clone)]
pub struct MemStorage {
    files: Files,
    /// Paths whose writes fail at finish.
    fail_writes: Arc<Mutex<Vec<String>>>,
}

fn norm(path: &str) -> String {
    path.trim_start_matches('/').to_string()
}

fn info(name: &str, file_type: FileType, size: u64) -> StorageInfo {
    StorageInfo {
        name: name.to_string(),
        file_type,
        size,
        mtime: 0,
        mode: 0o640,
        uid: 0,
        gid: 0,
        user: None,
        group: None,
        link_destination: None,
    }
}

impl MemStorage {
    pub fn new() -> Self {
        MemStorage::default()
    }

    pub fn insert(&self, path: &str, data: &[u8]) {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(norm(path), data.to_vec());
    }

    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&norm(path))
            .cloned()
    }

    pub fn delete(&self, path: &str) {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&norm(path));
    }

    pub fn fail_write(&self, path: &str) {
        self.fail_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(norm(path));
    }
}

struct MemWrite {
    files: Files,
    path: String,
    data: Vec<u8>,
    fail: bool,
}

impl Write for MemWrite {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.data.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl StorageWrite for MemWrite {
    fn finish_as(mut self: Box<Self>, name: &str) -> Result<()> {
        self.path = match self.path.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{name}"),
            None => name.to_string(),
        };
        self.finish()
    }

    fn finish(self: Box<Self>) -> Result<()> {
        if self.fail {
            return Err(Error::new(
                ErrorKind::FileWrite,
                format!(
                    "unable to write file '/mem/{}': [28] No space left on device",
                    self.path
                ),
            ));
        }
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(self.path, self.data);
        Ok(())
    }
}

impl Storage for MemStorage {
    fn driver(&self) -> &'static str {
        "memory"
    }

    fn features(&self) -> pgkeep_storage::Features {
        pgkeep_storage::Features::default()
    }

    fn root(&self) -> &str {
        "/mem"
    }

    fn info(&self, path: &str, _level: InfoLevel, _follow: bool) -> Result<Option<StorageInfo>> {
        let path = norm(path);
        let files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(data) = files.get(&path) {
            return Ok(Some(info(&path, FileType::File, data.len() as u64)));
        }
        let prefix = format!("{path}/");
        Ok(files
            .keys()
            .any(|k| k.starts_with(&prefix))
            .then(|| info(&path, FileType::Path, 0)))
    }

    fn list(&self, path: &str, _level: InfoLevel) -> Result<Option<Vec<StorageInfo>>> {
        let path = norm(path);
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: BTreeMap<String, StorageInfo> = BTreeMap::new();
        for (key, data) in files.iter() {
            let Some(rest) = key.strip_prefix(&prefix) else {
                continue;
            };
            match rest.split_once('/') {
                Some((dir, _)) => {
                    out.entry(dir.to_string())
                        .or_insert_with(|| info(dir, FileType::Path, 0));
                }
                None => {
                    out.insert(
                        rest.to_string(),
                        info(rest, FileType::File, data.len() as u64),
                    );
                }
            }
        }
        if out.is_empty() {
            return Ok(None);
        }
        Ok(Some(out.into_values().collect()))
    }

    fn open_read(&self, path: &str, opts: ReadOptions) -> Result<Option<Box<dyn Read + Send>>> {
        match self.read(path) {
            Some(data) => Ok(Some(Box::new(std::io::Cursor::new(data)))),
            None if opts.ignore_missing => Ok(None),
            None => Err(Error::new(
                ErrorKind::FileMissing,
                format!(
                    "unable to open missing file '{}' for read",
                    join("/mem", path)
                ),
            )),
        }
    }

    fn open_write(&self, path: &str, _opts: WriteOptions) -> Result<Box<dyn StorageWrite>> {
        let path = norm(path);
        let fail = self
            .fail_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&path);
        Ok(Box::new(MemWrite {
            files: Arc::clone(&self.files),
            path,
            data: Vec::new(),
            fail,
        }))
    }

    fn remove(&self, path: &str, _ignore_missing: bool) -> Result<()> {
        self.delete(path);
        Ok(())
    }

    fn remove_path(&self, path: &str, _recurse: bool) -> Result<()> {
        let prefix = format!("{}/", norm(path));
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| !k.starts_with(&prefix));
        Ok(())
    }
}
