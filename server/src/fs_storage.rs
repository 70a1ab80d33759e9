//! [`Storage`] over real files under a data directory. Positional reads and writes
//! (`pread`/`pwrite`), `fdatasync` for file syncs, `fsync` of the directory for renames and
//! creations. Every path is checked against the core's path model first, so nothing can be
//! written outside the data directory. Runs the core's storage conformance suite in its tests.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use headwater_core::storage::path::{self, Root};
use headwater_core::storage::{FileRef, Storage, StorageFile, StorageSpace};

#[derive(Debug)]
pub struct FsStorage {
    root: PathBuf,
}

#[derive(Debug)]
struct FsFile {
    file: File,
    path: PathBuf,
}

impl FsStorage {
    /// Uses `root` as the data directory, creating it if needed.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<FsStorage> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(FsStorage { root })
    }

    /// The real path of `relative`, once it is known to stay under the root.
    fn path(&self, relative: &str, root: Root) -> io::Result<PathBuf> {
        path::check(relative, root)?;
        Ok(if relative.is_empty() { self.root.clone() } else { self.root.join(relative) })
    }
}

fn with_path(error: io::Error, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

impl StorageFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata().map_err(|e| with_path(e, &self.path))?.len())
    }

    fn write_at(&self, position: u64, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all_at(bytes, position).map_err(|e| with_path(e, &self.path))
    }

    fn read_at(&self, position: u64, len: usize) -> io::Result<Vec<u8>> {
        let file_len = self.len()?;
        let available = usize::try_from(file_len.saturating_sub(position)).unwrap_or(usize::MAX);
        let mut buffer = vec![0u8; len.min(available)];
        let mut filled = 0;
        while filled < buffer.len() {
            match self.file.read_at(&mut buffer[filled..], position + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(with_path(e, &self.path)),
            }
        }
        buffer.truncate(filled);
        Ok(buffer)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len).map_err(|e| with_path(e, &self.path))
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data().map_err(|e| with_path(e, &self.path))
    }
}

impl Storage for FsStorage {
    fn open(&self, path: &str, create: bool) -> io::Result<FileRef> {
        let full = self.path(path, Root::Refused)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&full)
            .map_err(|e| with_path(e, &full))?;
        Ok(Arc::new(FsFile { file, path: full }))
    }

    fn exists(&self, path: &str) -> io::Result<bool> {
        let full = self.path(path, Root::Allowed)?;
        full.try_exists().map_err(|e| with_path(e, &full))
    }

    fn create_dir_all(&self, path: &str) -> io::Result<()> {
        let full = self.path(path, Root::Allowed)?;
        let existed = full.exists();
        fs::create_dir_all(&full).map_err(|e| with_path(e, &full))?;
        if !existed {
            // Make the new directory's entry durable in its parent.
            if let Some(parent) = full.parent() {
                sync_directory(parent)?;
            }
        }
        Ok(())
    }

    fn list_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let full = self.path(path, Root::Allowed)?;
        let mut names: Vec<String> = fs::read_dir(&full)
            .map_err(|e| with_path(e, &full))?
            .filter_map(|entry| entry.ok().and_then(|e| e.file_name().into_string().ok()))
            .collect();
        names.sort();
        Ok(names)
    }

    fn remove_file(&self, path: &str) -> io::Result<()> {
        let full = self.path(path, Root::Refused)?;
        fs::remove_file(&full).map_err(|e| with_path(e, &full))
    }

    fn remove_dir_all(&self, path: &str) -> io::Result<()> {
        let full = self.path(path, Root::Refused)?;
        match fs::remove_dir_all(&full) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other.map_err(|e| with_path(e, &full)),
        }
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from_full, to_full) = (self.path(from, Root::Refused)?, self.path(to, Root::Refused)?);
        fs::rename(&from_full, &to_full).map_err(|e| with_path(e, &from_full))
    }

    fn sync_dir(&self, path: &str) -> io::Result<()> {
        sync_directory(&self.path(path, Root::Allowed)?)
    }

    fn space(&self) -> io::Result<Option<StorageSpace>> {
        filesystem_space(&self.root).map(Some)
    }
}

/// `statvfs(2)` of the filesystem holding `path`.
#[allow(unsafe_code)]
fn filesystem_space(path: &Path) -> io::Result<StorageSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: NUL in path", path.display())))?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call, and `stats` points
    // to writable memory of the struct's size; statvfs fills it completely when it returns 0.
    let stats = unsafe {
        if libc::statvfs(c_path.as_ptr(), stats.as_mut_ptr()) != 0 {
            return Err(with_path(io::Error::last_os_error(), path));
        }
        stats.assume_init()
    };
    let block = stats.f_frsize as u64;
    Ok(StorageSpace { total_bytes: stats.f_blocks as u64 * block, usable_bytes: stats.f_bavail as u64 * block })
}

fn sync_directory(path: &Path) -> io::Result<()> {
    File::open(path).and_then(|dir| dir.sync_all()).map_err(|e| with_path(e, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("headwater-{name}-{}", std::process::id()));
            if dir.exists() {
                fs::remove_dir_all(&dir).unwrap();
            }
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            // Best effort: a leftover temporary directory harms nothing.
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn fs_storage_conforms() {
        let dir = TempDir::new("fs-conformance");
        let storage = FsStorage::new(&dir.0).unwrap();
        headwater_core::storage::conformance::run(&storage, None);
    }

    #[test]
    fn a_root_level_write_lands_in_the_data_directory() {
        let dir = TempDir::new("fs-root-write");
        let storage = FsStorage::new(dir.0.join("data")).unwrap();
        headwater_core::storage::write_file_atomic(&storage, "", "recovery-point-offset-checkpoint", b"0\n0\n")
            .unwrap();
        assert_eq!(fs::read(dir.0.join("data/recovery-point-offset-checkpoint")).unwrap(), b"0\n0\n");
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1, "only the data directory is in its parent");
        let escape = storage.open("/tmp/headwater-escape", true).unwrap_err();
        assert_eq!(escape.kind(), io::ErrorKind::InvalidInput);
        assert!(!Path::new("/tmp/headwater-escape").exists());
    }
}
