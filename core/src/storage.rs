//! The only way the core touches a disk.
//!
//! Appends, reads, truncation and directory changes are synchronous calls: on a real disk they
//! land in the page cache and take microseconds, which is how Kafka itself writes. The one slow
//! and meaningful operation, `sync`, is never called by the core on the hot path: the core emits
//! an [`IoCommand::Sync`](crate::IoCommand::Sync) naming the files, the driver runs it off the
//! event loop, and the completion comes back as an input. Durability promises wait for it.
//!
//! Two implementations exist: real files in the server (`headwater-server`'s `FsStorage`), and
//! [`MemStorage`] here, which the unit tests use and which models a disk that forgets writes
//! that were never synced. Both run the same [`conformance`] suite.
//!
//! Paths are relative to the storage root and use `/` separators.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::sync::{Arc, Mutex};

/// An open file. Positional writes and reads; no cursor.
#[allow(clippy::len_without_is_empty)]
pub trait StorageFile: Send + Sync + Debug {
    fn len(&self) -> io::Result<u64>;
    /// Writes `bytes` at `position`, extending the file if needed.
    fn write_at(&self, position: u64, bytes: &[u8]) -> io::Result<()>;
    /// Reads up to `len` bytes at `position`; shorter only at end of file.
    fn read_at(&self, position: u64, len: usize) -> io::Result<Vec<u8>>;
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// Makes every write so far durable. Slow; the core asks the driver to call it.
    fn sync(&self) -> io::Result<()>;
}

pub type FileRef = Arc<dyn StorageFile>;

/// A directory tree of files.
pub trait Storage: Send + Sync + Debug {
    /// Opens `path`, creating an empty file if `create` and it does not exist.
    fn open(&self, path: &str, create: bool) -> io::Result<FileRef>;
    fn exists(&self, path: &str) -> bool;
    fn create_dir_all(&self, path: &str) -> io::Result<()>;
    /// Names (not paths) of the entries in `path`, sorted.
    fn list_dir(&self, path: &str) -> io::Result<Vec<String>>;
    fn remove_file(&self, path: &str) -> io::Result<()>;
    fn remove_dir_all(&self, path: &str) -> io::Result<()>;
    /// Atomically replaces `to` with `from`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &str) -> io::Result<()>;
}

/// Writes a whole small file so that after a crash either the old or the new contents exist:
/// write a temporary file, sync it, rename it over the target, sync the directory.
pub fn write_file_atomic(storage: &dyn Storage, dir: &str, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = format!("{dir}/{name}.tmp");
    let target = format!("{dir}/{name}");
    let file = storage.open(&tmp, true)?;
    file.truncate(0)?;
    file.write_at(0, bytes)?;
    file.sync()?;
    storage.rename(&tmp, &target)?;
    storage.sync_dir(dir)
}

/// Reads a whole small file, or `None` if it does not exist.
pub fn read_file(storage: &dyn Storage, path: &str) -> io::Result<Option<Vec<u8>>> {
    if !storage.exists(path) {
        return Ok(None);
    }
    let file = storage.open(path, false)?;
    let len = usize::try_from(file.len()?).map_err(|_| io::Error::other("file too large"))?;
    file.read_at(0, len).map(Some)
}

/// An in-memory disk. Each file keeps the bytes a crash would leave (`synced`) apart from the
/// bytes written since (`current`). [`MemStorage::crash`] drops everything not synced, which is
/// what a power loss does to the page cache. Directory entries are treated as always durable:
/// the simulator's disk (sim/) models their loss; this one exists for unit tests.
#[derive(Debug, Default, Clone)]
pub struct MemStorage {
    inner: Arc<Mutex<MemInner>>,
}

#[derive(Debug, Default)]
struct MemInner {
    files: BTreeMap<String, Arc<MemFile>>,
    dirs: std::collections::BTreeSet<String>,
}

#[derive(Debug, Default)]
struct MemFile {
    state: Mutex<MemFileState>,
}

#[derive(Debug, Default, Clone)]
struct MemFileState {
    current: Vec<u8>,
    synced: Vec<u8>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loses every write that was not synced, in every file.
    pub fn crash(&self) {
        let inner = self.inner.lock().expect("mem storage lock poisoned");
        for file in inner.files.values() {
            let mut state = file.state.lock().expect("mem file lock poisoned");
            state.current = state.synced.clone();
        }
    }

    /// Flips one bit of a stored (synced and current) file; for corruption tests.
    pub fn flip_bit(&self, path: &str, byte_position: usize, bit: u8) {
        let inner = self.inner.lock().expect("mem storage lock poisoned");
        let file = inner.files.get(path).expect("flip_bit: no such file");
        let mut state = file.state.lock().expect("mem file lock poisoned");
        if let Some(byte) = state.current.get_mut(byte_position) {
            *byte ^= 1 << bit;
        }
        if let Some(byte) = state.synced.get_mut(byte_position) {
            *byte ^= 1 << bit;
        }
    }

    fn parent_exists(inner: &MemInner, path: &str) -> bool {
        match path.rsplit_once('/') {
            Some((parent, _)) => inner.dirs.contains(parent),
            None => true,
        }
    }
}

impl StorageFile for MemFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.state.lock().expect("mem file lock poisoned").current.len() as u64)
    }

    fn write_at(&self, position: u64, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.state.lock().expect("mem file lock poisoned");
        let start = usize::try_from(position).map_err(io::Error::other)?;
        let end = start + bytes.len();
        if state.current.len() < end {
            state.current.resize(end, 0);
        }
        state.current[start..end].copy_from_slice(bytes);
        Ok(())
    }

    fn read_at(&self, position: u64, len: usize) -> io::Result<Vec<u8>> {
        let state = self.state.lock().expect("mem file lock poisoned");
        let start = usize::try_from(position).map_err(io::Error::other)?.min(state.current.len());
        let end = start.saturating_add(len).min(state.current.len());
        Ok(state.current[start..end].to_vec())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut state = self.state.lock().expect("mem file lock poisoned");
        let len = usize::try_from(len).map_err(io::Error::other)?;
        state.current.resize(len, 0);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut state = self.state.lock().expect("mem file lock poisoned");
        state.synced = state.current.clone();
        Ok(())
    }
}

impl Storage for MemStorage {
    fn open(&self, path: &str, create: bool) -> io::Result<FileRef> {
        let mut inner = self.inner.lock().expect("mem storage lock poisoned");
        if let Some(file) = inner.files.get(path) {
            return Ok(file.clone());
        }
        if !create {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{path}: not found")));
        }
        if !Self::parent_exists(&inner, path) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{path}: no parent directory")));
        }
        let file = Arc::new(MemFile::default());
        inner.files.insert(path.to_string(), file.clone());
        Ok(file)
    }

    fn exists(&self, path: &str) -> bool {
        let inner = self.inner.lock().expect("mem storage lock poisoned");
        inner.files.contains_key(path) || inner.dirs.contains(path)
    }

    fn create_dir_all(&self, path: &str) -> io::Result<()> {
        let mut inner = self.inner.lock().expect("mem storage lock poisoned");
        let mut prefix = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            inner.dirs.insert(prefix.clone());
        }
        Ok(())
    }

    fn list_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let inner = self.inner.lock().expect("mem storage lock poisoned");
        if !path.is_empty() && !inner.dirs.contains(path) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{path}: not found")));
        }
        let prefix = if path.is_empty() { String::new() } else { format!("{path}/") };
        let mut names: Vec<String> = inner
            .files
            .keys()
            .chain(inner.dirs.iter())
            .filter_map(|p| p.strip_prefix(&prefix))
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn remove_file(&self, path: &str) -> io::Result<()> {
        let mut inner = self.inner.lock().expect("mem storage lock poisoned");
        match inner.files.remove(path) {
            Some(_) => Ok(()),
            None => Err(io::Error::new(io::ErrorKind::NotFound, format!("{path}: not found"))),
        }
    }

    fn remove_dir_all(&self, path: &str) -> io::Result<()> {
        let mut inner = self.inner.lock().expect("mem storage lock poisoned");
        let prefix = format!("{path}/");
        inner.files.retain(|p, _| !p.starts_with(&prefix));
        inner.dirs.retain(|p| p != path && !p.starts_with(&prefix));
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut inner = self.inner.lock().expect("mem storage lock poisoned");
        if let Some(file) = inner.files.remove(from) {
            inner.files.insert(to.to_string(), file);
            return Ok(());
        }
        if !inner.dirs.contains(from) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{from}: not found")));
        }
        // A directory: move it and everything under it.
        let prefix = format!("{from}/");
        let moved_files: Vec<String> = inner.files.keys().filter(|p| p.starts_with(&prefix)).cloned().collect();
        for path in moved_files {
            let file = inner.files.remove(&path).expect("listed above");
            inner.files.insert(format!("{to}/{}", &path[prefix.len()..]), file);
        }
        let moved_dirs: Vec<String> =
            inner.dirs.iter().filter(|p| *p == from || p.starts_with(&prefix)).cloned().collect();
        for path in moved_dirs {
            inner.dirs.remove(&path);
            inner.dirs.insert(format!("{to}{}", &path[from.len()..]));
        }
        Ok(())
    }

    fn sync_dir(&self, _path: &str) -> io::Result<()> {
        Ok(())
    }
}

/// The behaviour every [`Storage`] must have. Each implementation's tests call [`run`] on a
/// fresh, empty instance (openraft's log-store suite is the model).
pub mod conformance {
    use super::*;

    pub fn run(storage: &dyn Storage) {
        write_then_read_back(storage);
        read_past_end_is_short(storage);
        truncate_shrinks(storage);
        directories_list_sorted(storage);
        rename_replaces(storage);
        rename_moves_directories(storage);
        atomic_write_round_trips(storage);
        remove_dir_removes_files(storage);
        open_missing_without_create_fails(storage);
    }

    fn write_then_read_back(storage: &dyn Storage) {
        storage.create_dir_all("c1").unwrap();
        let file = storage.open("c1/a.log", true).unwrap();
        file.write_at(0, b"hello").unwrap();
        file.write_at(5, b" world").unwrap();
        file.sync().unwrap();
        assert_eq!(file.len().unwrap(), 11);
        assert_eq!(file.read_at(0, 11).unwrap(), b"hello world");
        assert_eq!(file.read_at(6, 5).unwrap(), b"world");
        let again = storage.open("c1/a.log", false).unwrap();
        assert_eq!(again.read_at(0, 5).unwrap(), b"hello");
    }

    fn read_past_end_is_short(storage: &dyn Storage) {
        storage.create_dir_all("c2").unwrap();
        let file = storage.open("c2/a", true).unwrap();
        file.write_at(0, b"abc").unwrap();
        assert_eq!(file.read_at(1, 100).unwrap(), b"bc");
        assert!(file.read_at(10, 5).unwrap().is_empty());
    }

    fn truncate_shrinks(storage: &dyn Storage) {
        storage.create_dir_all("c3").unwrap();
        let file = storage.open("c3/a", true).unwrap();
        file.write_at(0, b"abcdef").unwrap();
        file.truncate(2).unwrap();
        assert_eq!(file.len().unwrap(), 2);
        file.write_at(2, b"Z").unwrap();
        assert_eq!(file.read_at(0, 10).unwrap(), b"abZ");
    }

    fn directories_list_sorted(storage: &dyn Storage) {
        storage.create_dir_all("c4/sub").unwrap();
        storage.open("c4/b", true).unwrap();
        storage.open("c4/a", true).unwrap();
        assert_eq!(storage.list_dir("c4").unwrap(), vec!["a", "b", "sub"]);
        assert!(storage.exists("c4/sub"));
        assert!(storage.exists("c4/a"));
        assert!(!storage.exists("c4/zz"));
    }

    fn rename_replaces(storage: &dyn Storage) {
        storage.create_dir_all("c5").unwrap();
        storage.open("c5/old", true).unwrap().write_at(0, b"new").unwrap();
        storage.open("c5/target", true).unwrap().write_at(0, b"previous").unwrap();
        storage.rename("c5/old", "c5/target").unwrap();
        assert!(!storage.exists("c5/old"));
        let file = storage.open("c5/target", false).unwrap();
        assert_eq!(file.read_at(0, 100).unwrap(), b"new");
    }

    fn rename_moves_directories(storage: &dyn Storage) {
        storage.create_dir_all("c9/inner").unwrap();
        storage.open("c9/inner/x", true).unwrap().write_at(0, b"data").unwrap();
        storage.rename("c9/inner", "c9/moved").unwrap();
        assert!(!storage.exists("c9/inner"));
        assert!(!storage.exists("c9/inner/x"));
        assert_eq!(storage.list_dir("c9").unwrap(), vec!["moved"]);
        assert_eq!(storage.open("c9/moved/x", false).unwrap().read_at(0, 10).unwrap(), b"data");
    }

    fn atomic_write_round_trips(storage: &dyn Storage) {
        storage.create_dir_all("c6").unwrap();
        write_file_atomic(storage, "c6", "meta", b"first version, long").unwrap();
        write_file_atomic(storage, "c6", "meta", b"second").unwrap();
        assert_eq!(read_file(storage, "c6/meta").unwrap().unwrap(), b"second");
        assert_eq!(read_file(storage, "c6/none").unwrap(), None);
    }

    fn remove_dir_removes_files(storage: &dyn Storage) {
        storage.create_dir_all("c7/inner").unwrap();
        storage.open("c7/inner/x", true).unwrap();
        storage.remove_dir_all("c7").unwrap();
        assert!(!storage.exists("c7/inner/x"));
        assert!(!storage.exists("c7"));
    }

    fn open_missing_without_create_fails(storage: &dyn Storage) {
        let error = storage.open("c8/none", false).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_storage_conforms() {
        conformance::run(&MemStorage::new());
    }

    #[test]
    fn crash_drops_unsynced_writes() {
        let storage = MemStorage::new();
        storage.create_dir_all("d").unwrap();
        let file = storage.open("d/f", true).unwrap();
        file.write_at(0, b"durable").unwrap();
        file.sync().unwrap();
        file.write_at(7, b" lost").unwrap();
        storage.crash();
        assert_eq!(file.read_at(0, 100).unwrap(), b"durable");
    }
}
