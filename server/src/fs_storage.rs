//! [`Storage`] over real files under a data directory. Positional reads and writes
//! (`pread`/`pwrite`), `fdatasync` for file syncs, `fsync` of the directory for renames and
//! creations. Runs the core's storage conformance suite in its tests.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use headwater_core::storage::{FileRef, Storage, StorageFile};

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

    fn path(&self, relative: &str) -> PathBuf {
        if relative.is_empty() {
            self.root.clone()
        } else {
            self.root.join(relative)
        }
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
        let full = self.path(path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&full)
            .map_err(|e| with_path(e, &full))?;
        Ok(Arc::new(FsFile { file, path: full }))
    }

    fn exists(&self, path: &str) -> bool {
        self.path(path).exists()
    }

    fn create_dir_all(&self, path: &str) -> io::Result<()> {
        let full = self.path(path);
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
        let full = self.path(path);
        let mut names: Vec<String> = fs::read_dir(&full)
            .map_err(|e| with_path(e, &full))?
            .filter_map(|entry| entry.ok().and_then(|e| e.file_name().into_string().ok()))
            .collect();
        names.sort();
        Ok(names)
    }

    fn remove_file(&self, path: &str) -> io::Result<()> {
        let full = self.path(path);
        fs::remove_file(&full).map_err(|e| with_path(e, &full))
    }

    fn remove_dir_all(&self, path: &str) -> io::Result<()> {
        let full = self.path(path);
        match fs::remove_dir_all(&full) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other.map_err(|e| with_path(e, &full)),
        }
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from_full, to_full) = (self.path(from), self.path(to));
        fs::rename(&from_full, &to_full).map_err(|e| with_path(e, &from_full))
    }

    fn sync_dir(&self, path: &str) -> io::Result<()> {
        sync_directory(&self.path(path))
    }
}

fn sync_directory(path: &Path) -> io::Result<()> {
    File::open(path).and_then(|dir| dir.sync_all()).map_err(|e| with_path(e, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_storage_conforms() {
        let dir = std::env::temp_dir().join(format!("headwater-fs-conformance-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let storage = FsStorage::new(&dir).unwrap();
        headwater_core::storage::conformance::run(&storage);
        fs::remove_dir_all(&dir).unwrap();
    }
}
