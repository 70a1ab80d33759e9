//! The inode table: which backing path each inode number the kernel holds stands for.
//!
//! lazyfs hands out its own inode numbers, never reused, rather than the backing filesystem's:
//! the backing filesystem reuses a deleted file's number at once, while the kernel may still
//! hold the old inode (an open, deleted file). A node is found again by its backing inode
//! number, so a file keeps its node, and with it its unsynced data, across renames.
//!
//! Paths are relative to the backing root (the root is the empty path). Every namespace change
//! goes through lazyfs, which updates the paths here; nothing else may change the backing
//! directory while it is mounted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use fuser::FileType;

use crate::file::SharedFile;

/// The inode number FUSE gives the mount's root.
pub const ROOT_INO: u64 = 1;

#[derive(Debug)]
pub struct Node {
    /// Where the node is in the backing directory, relative to its root.
    pub path: PathBuf,
    pub kind: FileType,
    /// The backing filesystem's inode number, to find the node again under another name.
    pub backing_ino: u64,
    /// Lookups the kernel has not forgotten yet; at zero the node can go.
    lookups: u64,
    /// The node's name is gone. Its path is stale: only open handles reach it.
    pub unlinked: bool,
    /// The state of a regular file; `None` for directories and everything else.
    pub file: Option<SharedFile>,
}

#[derive(Debug)]
pub struct Inodes {
    nodes: HashMap<u64, Node>,
    /// Backing inode number to node, for the nodes that still have a name.
    by_backing: HashMap<u64, u64>,
    ino_next: u64,
}

impl Inodes {
    pub fn new(root_backing_ino: u64) -> Inodes {
        let root = Node {
            path: PathBuf::new(),
            kind: FileType::Directory,
            backing_ino: root_backing_ino,
            lookups: 1,
            unlinked: false,
            file: None,
        };
        Inodes {
            nodes: HashMap::from([(ROOT_INO, root)]),
            by_backing: HashMap::from([(root_backing_ino, ROOT_INO)]),
            ino_next: ROOT_INO + 1,
        }
    }

    pub fn node(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    /// The node of a backing inode that still has a name, if the kernel knows it.
    pub fn ino_of_backing(&self, backing_ino: u64) -> Option<u64> {
        self.by_backing.get(&backing_ino).copied()
    }

    /// Counts a lookup of the entry at `path` (every entry reply the kernel gets is one), making
    /// a node for it if it has none. Returns its inode number.
    pub fn remember(&mut self, path: PathBuf, backing_ino: u64, kind: FileType) -> u64 {
        if let Some(ino) = self.by_backing.get(&backing_ino).copied() {
            let node = self.nodes.get_mut(&ino).expect("by_backing only names live nodes");
            if node.kind == kind {
                node.lookups += 1;
                // With hard links a file has several names; the latest one found serves.
                node.path = path;
                return ino;
            }
            // The backing number now belongs to another kind of file: the old one was removed
            // behind lazyfs's back. The old node keeps only its open handles.
            node.unlinked = true;
            if let Some(file) = &node.file {
                crate::fs::lock(file).mark_unlinked();
            }
        }
        let ino = self.ino_next;
        self.ino_next += 1;
        let file = (kind == FileType::RegularFile).then(SharedFile::default);
        self.nodes.insert(ino, Node { path, kind, backing_ino, lookups: 1, unlinked: false, file });
        self.by_backing.insert(backing_ino, ino);
        ino
    }

    /// The kernel dropped `count` lookups of `ino`. A node nobody looks up any more goes, unless
    /// it holds unsynced data: that must survive until it is synced or a power cut drops it.
    pub fn forget(&mut self, ino: u64, count: u64) {
        if ino == ROOT_INO {
            return;
        }
        let Some(node) = self.nodes.get_mut(&ino) else { return };
        if node.lookups < count {
            // The kernel's count is the truth; ours can only be higher (a reply it never got).
            eprintln!("lazyfs: the kernel forgot {count} lookups of inode {ino}, which had {}", node.lookups);
        }
        node.lookups = node.lookups.saturating_sub(count);
        if node.lookups == 0 && removable(node) {
            self.remove(ino);
        }
    }

    /// Removes the nodes the kernel no longer holds and that hold no unsynced data (after a
    /// power cut, the ones that `forget` kept for their data).
    pub fn collect_garbage(&mut self) {
        let idle: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(&ino, node)| ino != ROOT_INO && node.lookups == 0 && removable(node))
            .map(|(&ino, _)| ino)
            .collect();
        for ino in idle {
            self.remove(ino);
        }
    }

    /// The backing inode lost its last name. Its node, if any, is marked so; a new file that
    /// gets the same backing number later gets a new node. Returns the file state to tell.
    pub fn unlinked(&mut self, backing_ino: u64) -> Option<SharedFile> {
        let ino = self.by_backing.remove(&backing_ino)?;
        let node = self.nodes.get_mut(&ino).expect("by_backing only names live nodes");
        node.unlinked = true;
        node.file.clone()
    }

    /// `from` was renamed to `to`: the node there, and everything under it if it is a
    /// directory, moves with it.
    pub fn renamed(&mut self, from: &Path, to: &Path) {
        for node in self.nodes.values_mut().filter(|node| !node.unlinked) {
            if let Ok(rest) = node.path.strip_prefix(from) {
                node.path = if rest.as_os_str().is_empty() { to.to_path_buf() } else { to.join(rest) };
            }
        }
    }

    /// Every regular file's inode number, path and state.
    pub fn files(&self) -> Vec<(u64, PathBuf, SharedFile)> {
        self.nodes.iter().filter_map(|(&ino, node)| Some((ino, node.path.clone(), node.file.clone()?))).collect()
    }

    /// How many nodes the table holds.
    pub fn count(&self) -> usize {
        self.nodes.len()
    }

    fn remove(&mut self, ino: u64) {
        let node = self.nodes.remove(&ino).expect("removing a node that exists");
        if self.by_backing.get(&node.backing_ino) == Some(&ino) {
            self.by_backing.remove(&node.backing_ino);
        }
    }
}

/// A node nobody holds may go unless it is a file with unsynced data and a name (data of a file
/// without a name is gone with its last handle anyway). Locks the file: the table's lock is
/// taken before a file's, never after.
fn removable(node: &Node) -> bool {
    match &node.file {
        None => true,
        Some(file) => {
            let state = crate::fs::lock(file);
            !state.is_open() && (node.unlinked || !state.is_dirty())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renamed_directory_takes_its_descendants_along() {
        let mut inodes = Inodes::new(100);
        let dir = inodes.remember("t-0".into(), 101, FileType::Directory);
        let segment = inodes.remember("t-0/0.log".into(), 102, FileType::RegularFile);
        let other = inodes.remember("t-00/0.log".into(), 103, FileType::RegularFile);
        inodes.renamed(Path::new("t-0"), Path::new("t-0-delete"));
        assert_eq!(inodes.node(dir).unwrap().path, Path::new("t-0-delete"));
        assert_eq!(inodes.node(segment).unwrap().path, Path::new("t-0-delete/0.log"));
        assert_eq!(inodes.node(other).unwrap().path, Path::new("t-00/0.log"), "a prefix of a name is not a parent");
    }

    #[test]
    fn a_file_found_under_a_new_name_keeps_its_node() {
        let mut inodes = Inodes::new(100);
        let ino = inodes.remember("a.tmp".into(), 101, FileType::RegularFile);
        assert_eq!(inodes.remember("a".into(), 101, FileType::RegularFile), ino);
        assert_eq!(inodes.node(ino).unwrap().path, Path::new("a"));
    }

    #[test]
    fn a_reused_backing_number_gets_a_new_node_after_an_unlink() {
        let mut inodes = Inodes::new(100);
        let old = inodes.remember("a".into(), 101, FileType::RegularFile);
        assert!(inodes.unlinked(101).is_some());
        let new = inodes.remember("b".into(), 101, FileType::RegularFile);
        assert_ne!(old, new);
        assert!(inodes.node(old).unwrap().unlinked);
        assert_eq!(inodes.ino_of_backing(101), Some(new));
    }

    #[test]
    fn forget_keeps_a_file_with_unsynced_data_until_it_is_clean() {
        let mut inodes = Inodes::new(100);
        let clean = inodes.remember("clean".into(), 101, FileType::RegularFile);
        let dirty = inodes.remember("dirty".into(), 102, FileType::RegularFile);
        let file = inodes.node(dirty).unwrap().file.clone().unwrap();
        let dir = tempdir("forget");
        std::fs::write(dir.join("dirty"), b"x").unwrap();
        crate::fs::lock(&file).truncate(&dir.join("dirty"), 0).unwrap();
        inodes.forget(clean, 1);
        inodes.forget(dirty, 1);
        assert!(inodes.node(clean).is_none());
        assert!(inodes.node(dirty).is_some(), "its unsynced truncate must survive");
        inodes.collect_garbage();
        assert!(inodes.node(dirty).is_some());
        crate::fs::lock(&file).drop_unsynced();
        inodes.collect_garbage();
        assert!(inodes.node(dirty).is_none());
        assert_eq!(inodes.count(), 1, "only the root is left");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lazyfs-inodes-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
