//! [`MemStorage`]: the one in-memory directory tree. Unit tests use it as it is; the
//! simulator's disk (`headwater-sim`'s `SimDisk`) layers its faults on top of it, so both
//! share one implementation of paths, directories, renames and what a crash keeps.
//!
//! Each file keeps the bytes a crash would leave (`synced`) apart from the bytes written since
//! (`current`). [`MemStorage::crash`] drops everything not synced, which is what a power loss
//! does to the page cache; [`MemStorage::crash_with`] lets a fault layer decide per file what
//! survives instead (a torn or garbled tail). Directory entries (creations, renames, removals)
//! are durable at once in this model.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use super::path::{self, Root};
use super::{FileRef, Storage, StorageFile};

#[derive(Debug, Default, Clone)]
pub struct MemStorage {
    inner: Arc<Mutex<Tree>>,
}

#[derive(Debug, Default)]
struct Tree {
    files: BTreeMap<String, Arc<MemFile>>,
    dirs: BTreeSet<String>,
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

/// What survives a crash of one file with unsynced writes, as a fault layer decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashKeeps {
    /// Only what was synced (the page cache is lost).
    Synced,
    /// These bytes (for example the synced bytes plus a torn prefix of the rest).
    Bytes(Vec<u8>),
}

fn not_found(path: &str, what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{path}: {what}"))
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    fn tree(&self) -> MutexGuard<'_, Tree> {
        // A panic while holding the lock leaves a tree we cannot trust; tests fail loudly.
        self.inner.lock().expect("mem storage lock poisoned")
    }

    /// Loses every write that was not synced, in every file.
    pub fn crash(&self) {
        self.crash_with(|_, _, _| CrashKeeps::Synced);
    }

    /// A crash where `keep(path, synced, current)` decides, for each file whose current bytes
    /// differ from its synced bytes, what survives. Files are visited in path order, so a
    /// seeded caller is deterministic.
    pub fn crash_with(&self, mut keep: impl FnMut(&str, &[u8], &[u8]) -> CrashKeeps) {
        let tree = self.tree();
        for (path, file) in &tree.files {
            let mut state = file.lock();
            if state.current == state.synced {
                continue;
            }
            match keep(path, &state.synced, &state.current) {
                CrashKeeps::Synced => state.current = state.synced.clone(),
                CrashKeeps::Bytes(bytes) => {
                    state.synced = bytes.clone();
                    state.current = bytes;
                }
            }
        }
    }

    /// Flips one bit of a stored (synced and current) file; for corruption tests.
    pub fn flip_bit(&self, path: &str, byte_position: usize, bit: u8) {
        let tree = self.tree();
        let file = tree.files.get(path).expect("flip_bit: no such file");
        let mut state = file.lock();
        if let Some(byte) = state.current.get_mut(byte_position) {
            *byte ^= 1 << bit;
        }
        if let Some(byte) = state.synced.get_mut(byte_position) {
            *byte ^= 1 << bit;
        }
    }

    /// Every file path, sorted; for tests that check where things were written.
    pub fn file_paths(&self) -> Vec<String> {
        self.tree().files.keys().cloned().collect()
    }
}

impl Tree {
    fn is_dir(&self, path: &str) -> bool {
        path.is_empty() || self.dirs.contains(path)
    }

    fn require_parent(&self, path: &str) -> io::Result<()> {
        if self.is_dir(path::parent(path)) {
            Ok(())
        } else {
            Err(not_found(path, "no parent directory"))
        }
    }
}

impl MemFile {
    fn lock(&self) -> MutexGuard<'_, MemFileState> {
        self.state.lock().expect("mem file lock poisoned")
    }
}

impl StorageFile for MemFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.lock().current.len() as u64)
    }

    fn write_at(&self, position: u64, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.lock();
        let start = usize::try_from(position).map_err(io::Error::other)?;
        let end = start.checked_add(bytes.len()).ok_or_else(|| io::Error::other("write past the address space"))?;
        if state.current.len() < end {
            state.current.resize(end, 0);
        }
        state.current[start..end].copy_from_slice(bytes);
        Ok(())
    }

    fn read_at(&self, position: u64, len: usize) -> io::Result<Vec<u8>> {
        let state = self.lock();
        let start = usize::try_from(position).unwrap_or(usize::MAX).min(state.current.len());
        let end = start.saturating_add(len).min(state.current.len());
        Ok(state.current[start..end].to_vec())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut state = self.lock();
        let len = usize::try_from(len).map_err(io::Error::other)?;
        state.current.resize(len, 0);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut state = self.lock();
        state.synced = state.current.clone();
        Ok(())
    }
}

impl Storage for MemStorage {
    fn open(&self, path: &str, create: bool) -> io::Result<FileRef> {
        path::check(path, Root::Refused)?;
        let mut tree = self.tree();
        if let Some(file) = tree.files.get(path) {
            return Ok(file.clone());
        }
        if tree.dirs.contains(path) {
            return Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{path}: is a directory")));
        }
        if !create {
            return Err(not_found(path, "not found"));
        }
        tree.require_parent(path)?;
        let file = Arc::new(MemFile::default());
        tree.files.insert(path.to_string(), file.clone());
        Ok(file)
    }

    fn exists(&self, path: &str) -> io::Result<bool> {
        path::check(path, Root::Allowed)?;
        let tree = self.tree();
        Ok(tree.files.contains_key(path) || tree.is_dir(path))
    }

    fn create_dir_all(&self, path: &str) -> io::Result<()> {
        path::check(path, Root::Allowed)?;
        let mut tree = self.tree();
        let mut prefix = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            prefix = path::join(&prefix, part);
            if tree.files.contains_key(&prefix) {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{prefix}: is a file")));
            }
            tree.dirs.insert(prefix.clone());
        }
        Ok(())
    }

    fn list_dir(&self, path: &str) -> io::Result<Vec<String>> {
        path::check(path, Root::Allowed)?;
        let tree = self.tree();
        if !tree.is_dir(path) {
            return Err(not_found(path, "no such directory"));
        }
        let prefix = path::join(path, "");
        let mut names: Vec<String> = tree
            .files
            .keys()
            .chain(tree.dirs.iter())
            .filter_map(|p| p.strip_prefix(&prefix))
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn remove_file(&self, path: &str) -> io::Result<()> {
        path::check(path, Root::Refused)?;
        self.tree().files.remove(path).map(|_| ()).ok_or_else(|| not_found(path, "not found"))
    }

    fn remove_dir_all(&self, path: &str) -> io::Result<()> {
        path::check(path, Root::Refused)?;
        let mut tree = self.tree();
        let prefix = format!("{path}/");
        tree.files.retain(|p, _| !p.starts_with(&prefix));
        tree.dirs.retain(|p| p != path && !p.starts_with(&prefix));
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        path::check(from, Root::Refused)?;
        path::check(to, Root::Refused)?;
        let mut tree = self.tree();
        tree.require_parent(to)?;
        if let Some(file) = tree.files.remove(from) {
            tree.files.insert(to.to_string(), file);
            return Ok(());
        }
        if !tree.dirs.contains(from) {
            return Err(not_found(from, "not found"));
        }
        // A directory: move it and everything under it.
        let prefix = format!("{from}/");
        let moved_files: Vec<String> = tree.files.keys().filter(|p| p.starts_with(&prefix)).cloned().collect();
        for path in moved_files {
            let file = tree.files.remove(&path).expect("listed above");
            tree.files.insert(format!("{to}/{}", &path[prefix.len()..]), file);
        }
        let moved_dirs: Vec<String> =
            tree.dirs.iter().filter(|p| *p == from || p.starts_with(&prefix)).cloned().collect();
        for path in moved_dirs {
            tree.dirs.remove(&path);
            tree.dirs.insert(format!("{to}{}", &path[from.len()..]));
        }
        Ok(())
    }

    fn sync_dir(&self, path: &str) -> io::Result<()> {
        path::check(path, Root::Allowed)?;
        // Directory entries are durable at once in this model; the directory must exist.
        if self.tree().is_dir(path) {
            Ok(())
        } else {
            Err(not_found(path, "no such directory"))
        }
    }
}
