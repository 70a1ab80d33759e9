//! A test disk that fails on demand: `MemStorage` whose creations, renames and removals under
//! a path prefix answer ENOSPC.

use std::sync::Arc;

use super::{FileRef, MemStorage, Storage};

/// A `MemStorage` whose file creations, renames and removals under a path prefix fail, for the
/// tests that each former `let _ =` now surfaces its error.
#[derive(Debug, Clone, Default)]
pub struct FailingStorage {
    pub tree: MemStorage,
    failing: Arc<std::sync::Mutex<Option<String>>>,
}

impl FailingStorage {
    pub fn fail_under(&self, prefix: &str) {
        *self.failing.lock().unwrap() = Some(prefix.to_string());
    }

    pub fn heal(&self) {
        *self.failing.lock().unwrap() = None;
    }

    fn check(&self, path: &str) -> std::io::Result<()> {
        match &*self.failing.lock().unwrap() {
            Some(prefix) if path.starts_with(prefix.as_str()) => {
                Err(std::io::Error::new(std::io::ErrorKind::StorageFull, format!("{path}: injected ENOSPC")))
            }
            _ => Ok(()),
        }
    }
}

impl Storage for FailingStorage {
    fn open(&self, path: &str, create: bool) -> std::io::Result<FileRef> {
        if create && !self.tree.exists(path)? {
            self.check(path)?;
        }
        self.tree.open(path, create)
    }
    fn exists(&self, path: &str) -> std::io::Result<bool> {
        self.tree.exists(path)
    }
    fn create_dir_all(&self, path: &str) -> std::io::Result<()> {
        self.tree.create_dir_all(path)
    }
    fn list_dir(&self, path: &str) -> std::io::Result<Vec<String>> {
        self.tree.list_dir(path)
    }
    fn remove_file(&self, path: &str) -> std::io::Result<()> {
        self.check(path)?;
        self.tree.remove_file(path)
    }
    fn remove_dir_all(&self, path: &str) -> std::io::Result<()> {
        self.check(path)?;
        self.tree.remove_dir_all(path)
    }
    fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        self.check(from)?;
        self.tree.rename(from, to)
    }
    fn sync_dir(&self, path: &str) -> std::io::Result<()> {
        self.tree.sync_dir(path)
    }
}
