//! The only way the core touches a disk.
//!
//! Appends, reads, truncation and directory changes are synchronous calls: on a real disk they
//! land in the page cache and take microseconds, which is how Kafka itself writes. The one slow
//! and meaningful operation, `sync`, is never called by the core on the hot path: the core emits
//! an [`IoCommand::Sync`](crate::IoCommand::Sync) naming the files, the driver runs it off the
//! event loop, and the completion comes back as an input. Durability promises wait for it.
//!
//! Implementations: real files in the server (`headwater-server`'s `FsStorage`), [`MemStorage`]
//! here (the unit tests' disk, which forgets writes that were never synced), and the
//! simulator's `SimDisk`, which is a `MemStorage` with faults layered on top. All of them run
//! the same `conformance` suite and follow one path model ([`path`]): paths are relative to
//! the storage root, `/`-separated, and an absolute path, a `..` or an empty component is
//! refused with `InvalidInput` by every implementation.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(test)]
pub mod failing;
mod mem;
pub mod path;

use std::fmt::Debug;
use std::io;
use std::sync::Arc;

pub use mem::{CrashKeeps, MemStorage};

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

/// An open file with the path it was opened at (relative to the storage root). Commands that
/// carry files carry these, so they print and compare by path and tests can assert on them.
#[derive(Clone)]
pub struct NamedFile {
    pub path: String,
    pub file: FileRef,
}

impl NamedFile {
    pub fn new(path: impl Into<String>, file: FileRef) -> NamedFile {
        NamedFile { path: path.into(), file }
    }
}

impl PartialEq for NamedFile {
    fn eq(&self, other: &NamedFile) -> bool {
        self.path == other.path
    }
}

impl Eq for NamedFile {}

impl Debug for NamedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.path)
    }
}

/// A directory tree of files under one root. Every method refuses a path outside the model of
/// [`path`] with `InvalidInput`; the empty path names the root, for directory operations only.
pub trait Storage: Send + Sync + Debug {
    /// Opens `path`, creating an empty file if `create` and it does not exist (its directory
    /// must exist).
    fn open(&self, path: &str, create: bool) -> io::Result<FileRef>;
    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &str) -> io::Result<bool>;
    fn create_dir_all(&self, path: &str) -> io::Result<()>;
    /// Names (not paths) of the entries in `path`, sorted.
    fn list_dir(&self, path: &str) -> io::Result<Vec<String>>;
    /// Removes a file; `NotFound` if there is none.
    fn remove_file(&self, path: &str) -> io::Result<()>;
    /// Removes a directory and everything under it; nothing to remove is not an error.
    fn remove_dir_all(&self, path: &str) -> io::Result<()>;
    /// Atomically replaces `to` with `from` (a file or a directory).
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &str) -> io::Result<()>;
    /// Size and free space of what holds the root, where the implementation can tell.
    fn space(&self) -> io::Result<Option<StorageSpace>> {
        Ok(None)
    }
}

/// The size of a filesystem and what an unprivileged writer may still use of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageSpace {
    pub total_bytes: u64,
    pub usable_bytes: u64,
}

/// Writes a whole small file so that after a crash either the old or the new contents exist:
/// write a temporary file, sync it, rename it over the target, sync the directory.
pub fn write_file_atomic(storage: &dyn Storage, dir: &str, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = path::join(dir, &format!("{name}.tmp"));
    let target = path::join(dir, name);
    let file = storage.open(&tmp, true)?;
    file.truncate(0)?;
    file.write_at(0, bytes)?;
    file.sync()?;
    storage.rename(&tmp, &target)?;
    storage.sync_dir(dir)
}

/// Reads a whole small file, or `None` if it does not exist.
pub fn read_file(storage: &dyn Storage, path: &str) -> io::Result<Option<Vec<u8>>> {
    if !storage.exists(path)? {
        return Ok(None);
    }
    let file = storage.open(path, false)?;
    let len = usize::try_from(file.len()?).map_err(|_| io::Error::other("file too large"))?;
    file.read_at(0, len).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_storage_conforms() {
        let storage = MemStorage::new();
        conformance::run(&storage, Some(&|| storage.crash()));
    }

    #[test]
    fn crash_with_keeps_what_the_fault_layer_says() {
        let storage = MemStorage::new();
        storage.create_dir_all("d").unwrap();
        let file = storage.open("d/f", true).unwrap();
        file.write_at(0, b"synced").unwrap();
        file.sync().unwrap();
        file.write_at(6, b"+tail").unwrap();
        let mut seen = Vec::new();
        storage.crash_with(|path, synced, current| {
            seen.push((path.to_string(), synced.to_vec(), current.to_vec()));
            CrashKeeps::Bytes(current[..8].to_vec())
        });
        assert_eq!(seen, vec![("d/f".to_string(), b"synced".to_vec(), b"synced+tail".to_vec())]);
        assert_eq!(file.read_at(0, 100).unwrap(), b"synced+t");
        storage.crash();
        assert_eq!(file.read_at(0, 100).unwrap(), b"synced+t", "what a crash kept counts as synced");
    }
}
