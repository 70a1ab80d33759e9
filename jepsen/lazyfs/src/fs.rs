//! The filesystem's operations: a passthrough view of the backing directory whose file data is
//! lazy, plus the faults the control commands switch on.
//!
//! What is durable when:
//!
//! - File data: a write goes to the file's [`Overlay`](crate::overlay::Overlay) only; a
//!   truncate too. An fsync (or fdatasync) of the file applies its overlay to the backing file
//!   and syncs that. Closing a file syncs nothing.
//! - Names: create, mkdir, unlink, rmdir and rename change the backing directory at once, so
//!   they are durable at once, whether or not the directory is fsynced. This is a
//!   simplification: a real power cut can undo a rename whose directory was not synced.
//! - Attributes: chmod, chown and timestamps change the backing file at once. An unsynced write
//!   does not change the backing file's mtime.
//! - A clean unmount syncs everything ([`LazyFs::sync_everything`]); lazyfs dying loses the
//!   unsynced data, like a power cut.
//!
//! The methods mirror the FUSE operations (the kernel adapter is [`crate::kernel`]) and return
//! the errno to answer with, so tests can drive them on a temporary directory without mounting.

use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File, FileTimes, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{fchown, DirBuilderExt, DirEntryExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo, TimeOrNow};

use crate::file::{FileState, SharedFile};
use crate::inodes::Inodes;
use crate::limits::{DIR_HANDLES_MAX, FILE_BYTES_MAX, FILE_OVERLAY_BYTES_MAX};
use crate::sys;

/// A fault the control commands switch on and off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every write fails with EIO.
    FailWrite,
    /// Every fsync, of files and directories, fails with EIO, and a file's unsynced data is
    /// dropped, as Linux marks dirty pages clean after a failed writeback: a later fsync
    /// succeeds without writing them.
    FailFsync,
    /// A write that would make a file longer fails with ENOSPC, and statfs reports no free
    /// space. Writes inside a file still succeed, as on a full disk with the blocks allocated.
    Enospc,
}

/// How much unsynced data lazyfs holds (or held, before a power cut dropped it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unsynced {
    /// Files with unsynced writes or truncates.
    pub files: u64,
    /// Written bytes not yet synced (truncates are not counted in bytes).
    pub bytes: u64,
}

/// The attribute changes of a setattr that lazyfs carries out.
#[derive(Debug, Default)]
pub struct AttrChanges {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
}

/// One entry of a directory listing.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// The node's inode number if the kernel knows it, else the backing inode number: the
    /// kernel does not use it, and programs only show it.
    pub ino: u64,
    pub kind: FileType,
    pub name: OsString,
}

/// `statvfs` of the backing filesystem, as the kernel wants it.
#[derive(Debug, Clone, Copy)]
pub struct Space {
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_available: u64,
    pub files: u64,
    pub files_free: u64,
    pub block_bytes: u32,
    pub name_bytes_max: u32,
    pub fragment_bytes: u32,
}

/// The filesystem. Shared by the kernel's event-loop threads and the control thread.
///
/// Locks: `inodes` is taken before a file's lock, never while holding one. An operation on a
/// file takes the table's lock only to find the file, then holds the file's lock alone.
#[derive(Debug)]
pub struct LazyFs {
    /// The backing directory, absolute.
    root: PathBuf,
    inodes: Mutex<Inodes>,
    dirs: Mutex<DirHandles>,
    fail_write: AtomicBool,
    fail_fsync: AtomicBool,
    enospc: AtomicBool,
    /// Inodes whose cached attributes the kernel must forget, because lazyfs dropped unsynced
    /// data under them. A separate thread sends the notifications: sending one while answering
    /// a request about the same inode can deadlock the kernel.
    invalidations: SyncSender<u64>,
}

/// Open directory handles, each a snapshot of the directory taken at opendir, so a listing read
/// in several parts neither skips nor repeats names that change meanwhile.
#[derive(Debug, Default)]
struct DirHandles {
    fh_next: u64,
    open: std::collections::HashMap<u64, Vec<DirEntry>>,
}

impl LazyFs {
    /// A filesystem over the backing directory `root` (an absolute path).
    pub fn new(root: PathBuf, invalidations: SyncSender<u64>) -> io::Result<LazyFs> {
        let meta = fs::metadata(&root)?;
        if !meta.is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a directory", root.display())));
        }
        Ok(LazyFs {
            root,
            inodes: Mutex::new(Inodes::new(meta.ino())),
            dirs: Mutex::new(DirHandles::default()),
            fail_write: AtomicBool::new(false),
            fail_fsync: AtomicBool::new(false),
            enospc: AtomicBool::new(false),
            invalidations,
        })
    }

    // ---- Control commands ----

    pub fn set_fault(&self, fault: Fault, on: bool) {
        let flag = match fault {
            Fault::FailWrite => &self.fail_write,
            Fault::FailFsync => &self.fail_fsync,
            Fault::Enospc => &self.enospc,
        };
        flag.store(on, Ordering::SeqCst);
    }

    /// Drops every file's unsynced data, as a power loss drops the page cache. The caller
    /// (the harness) has killed the processes using the mount first; a file still open keeps
    /// its handle and sees its synced contents from now on.
    pub fn power_cut(&self) -> Unsynced {
        let files = lock(&self.inodes).files();
        let mut dropped = Unsynced::default();
        for (ino, _, file) in files {
            if let Some(bytes) = lock(&file).drop_unsynced() {
                dropped.files += 1;
                dropped.bytes += bytes;
                self.invalidate(ino);
            }
        }
        lock(&self.inodes).collect_garbage();
        dropped
    }

    /// What a power cut would drop now.
    pub fn unsynced(&self) -> Unsynced {
        let files = lock(&self.inodes).files();
        let mut unsynced = Unsynced::default();
        for (_, _, file) in files {
            let state = lock(&file);
            if state.is_dirty() {
                unsynced.files += 1;
                unsynced.bytes += state.unsynced_bytes();
            }
        }
        unsynced
    }

    /// Applies and syncs every file's unsynced data, as the kernel writes back dirty pages when
    /// a filesystem is unmounted: a clean unmount is a clean shutdown, not a power cut. Call
    /// only once the session has ended. Returns what it synced; a file it cannot sync is
    /// reported and skipped.
    pub fn sync_everything(&self) -> Unsynced {
        let files = lock(&self.inodes).files();
        let mut synced = Unsynced::default();
        for (ino, path, file) in files {
            match lock(&file).sync_closed(&self.root.join(&path)) {
                Ok(0) => {}
                Ok(bytes) => {
                    synced.files += 1;
                    synced.bytes += bytes;
                }
                Err(error) => eprintln!("lazyfs: syncing inode {ino} ({}): {error}", path.display()),
            }
        }
        synced
    }

    /// How many inodes lazyfs keeps track of (to watch its memory).
    pub fn inode_count(&self) -> usize {
        lock(&self.inodes).count()
    }

    // ---- Names ----

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        let path = self.child_path(parent, name)?;
        let meta = fs::symlink_metadata(self.root.join(&path))?;
        Ok(self.remember(path, &meta))
    }

    pub fn forget(&self, ino: u64, count: u64) {
        lock(&self.inodes).forget(ino, count);
    }

    pub fn mkdir(&self, parent: u64, name: &OsStr, mode: u32, umask: u32) -> Result<FileAttr, Errno> {
        let path = self.child_path(parent, name)?;
        let full = self.root.join(&path);
        DirBuilder::new().mode(mode & !umask & 0o7777).create(&full)?;
        let meta = fs::symlink_metadata(&full)?;
        Ok(self.remember(path, &meta))
    }

    /// Creates and opens a regular file; the kernel then holds a lookup and a handle.
    pub fn create(&self, parent: u64, name: &OsStr, mode: u32, umask: u32, flags: i32) -> Result<FileAttr, Errno> {
        let path = self.child_path(parent, name)?;
        let mut options = OpenOptions::new();
        options.read(true).write(true).mode(mode & !umask & 0o7777);
        if flags & libc::O_EXCL != 0 {
            options.create_new(true);
        } else {
            options.create(true);
        }
        let backing = options.open(self.root.join(&path))?;
        let meta = backing.metadata()?;
        if !meta.is_file() {
            return Err(Errno::EINVAL);
        }
        let kind = FileType::RegularFile;
        let (ino, file) = {
            let mut inodes = lock(&self.inodes);
            let ino = inodes.remember(path, meta.ino(), kind);
            (ino, inodes.node(ino).and_then(|node| node.file.clone()).expect("a regular file's node has a state"))
        };
        let mut state = lock(&file);
        state.adopt_handle(backing);
        Ok(attr(ino, &meta, state.overlay_length_bytes()))
    }

    pub fn unlink(&self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let full = self.root.join(self.child_path(parent, name)?);
        let meta = fs::symlink_metadata(&full)?;
        fs::remove_file(&full)?;
        if meta.nlink() <= 1 {
            self.unlinked(meta.ino());
        }
        Ok(())
    }

    pub fn rmdir(&self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let full = self.root.join(self.child_path(parent, name)?);
        let meta = fs::symlink_metadata(&full)?;
        fs::remove_dir(&full)?;
        self.unlinked(meta.ino());
        Ok(())
    }

    /// Renames, replacing the target if there is one (unless `no_replace`). Exchanging two
    /// names is not supported.
    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        parent_new: u64,
        name_new: &OsStr,
        no_replace: bool,
    ) -> Result<(), Errno> {
        let (from, to) = (self.child_path(parent, name)?, self.child_path(parent_new, name_new)?);
        let (from_full, to_full) = (self.root.join(&from), self.root.join(&to));
        let moved = fs::symlink_metadata(&from_full)?;
        let replaced = fs::symlink_metadata(&to_full).ok();
        if no_replace {
            sys::rename_no_replace(&from_full, &to_full)?;
        } else {
            fs::rename(&from_full, &to_full)?;
        }
        if let Some(replaced) = replaced {
            // Renaming a name onto another name of the same file changes nothing.
            if replaced.ino() != moved.ino() && (replaced.is_dir() || replaced.nlink() <= 1) {
                self.unlinked(replaced.ino());
            }
        }
        lock(&self.inodes).renamed(&from, &to);
        Ok(())
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        let (path, _) = self.named_path(ino)?;
        Ok(fs::read_link(self.root.join(path))?.as_os_str().as_bytes().to_vec())
    }

    // ---- Attributes ----

    pub fn getattr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let (path, unlinked, file) = self.node_of(ino)?;
        match file {
            Some(file) => {
                let state = lock(&file);
                let meta = match state.backing() {
                    Some(backing) => backing.metadata()?,
                    None if unlinked => return Err(Errno::ENOENT),
                    None => fs::symlink_metadata(self.root.join(&path))?,
                };
                Ok(attr(ino, &meta, state.overlay_length_bytes()))
            }
            None if unlinked => Err(Errno::ENOENT),
            None => Ok(attr(ino, &fs::symlink_metadata(self.root.join(&path))?, None)),
        }
    }

    /// Changes attributes. A new size is pending like a write; the rest is applied at once.
    pub fn setattr(&self, ino: u64, changes: &AttrChanges) -> Result<FileAttr, Errno> {
        let (path, unlinked, file) = self.node_of(ino)?;
        let full = self.root.join(&path);
        if let Some(size) = changes.size {
            let file = file.as_ref().ok_or(Errno::EISDIR)?;
            if size > FILE_BYTES_MAX {
                return Err(Errno::EFBIG);
            }
            lock(file).truncate(&full, size)?;
        }
        let metadata_changes = changes.mode.is_some()
            || changes.uid.is_some()
            || changes.gid.is_some()
            || changes.atime.is_some()
            || changes.mtime.is_some();
        if metadata_changes {
            // Change them through a descriptor: the backing one if a handle holds it (the file
            // may have no name left), else one opened by path (that works for directories too).
            let descriptor = match file.as_ref().and_then(|file| lock(file).backing().map(File::try_clone)) {
                Some(cloned) => cloned?,
                None if unlinked => return Err(Errno::ENOENT),
                None => File::open(&full)?,
            };
            if let Some(mode) = changes.mode {
                descriptor.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
            }
            if changes.uid.is_some() || changes.gid.is_some() {
                fchown(&descriptor, changes.uid, changes.gid)?;
            }
            let mut times = FileTimes::new();
            if let Some(atime) = changes.atime {
                times = times.set_accessed(system_time(atime));
            }
            if let Some(mtime) = changes.mtime {
                times = times.set_modified(system_time(mtime));
            }
            if changes.atime.is_some() || changes.mtime.is_some() {
                descriptor.set_times(times)?;
            }
        }
        self.getattr(ino)
    }

    // ---- File data ----

    pub fn open(&self, ino: u64) -> Result<(), Errno> {
        let (path, _, file) = self.node_of(ino)?;
        let file = file.ok_or(Errno::EINVAL)?;
        lock(&file).open_handle(&self.root.join(path))?;
        Ok(())
    }

    pub fn release(&self, ino: u64) {
        if let Ok((_, _, Some(file))) = self.node_of(ino) {
            lock(&file).release_handle();
        }
    }

    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let file = self.file_of(ino)?;
        let state = lock(&file);
        Ok(state.read(offset, size as usize)?)
    }

    /// Records a write in the file's overlay. `flags` are the handle's open flags: with
    /// O_DSYNC or O_SYNC the write is synced before it is answered.
    pub fn write(&self, ino: u64, offset: u64, data: &[u8], flags: i32) -> Result<u32, Errno> {
        if self.fail_write.load(Ordering::SeqCst) {
            return Err(Errno::EIO);
        }
        let count = u32::try_from(data.len()).map_err(|_| Errno::EINVAL)?;
        let end = offset.checked_add(data.len() as u64).filter(|&end| end <= FILE_BYTES_MAX).ok_or(Errno::EFBIG)?;
        let file = self.file_of(ino)?;
        let mut state = lock(&file);
        if self.enospc.load(Ordering::SeqCst) && end > state.length_bytes()? {
            return Err(Errno::ENOSPC);
        }
        state.write(offset, data)?;
        if state.unsynced_bytes() > FILE_OVERLAY_BYTES_MAX {
            eprintln!(
                "lazyfs: inode {ino} holds over {FILE_OVERLAY_BYTES_MAX} unsynced bytes; \
                 writing them back unsynced (they will survive a power cut)"
            );
            state.write_back()?;
        }
        if flags & libc::O_DSYNC != 0 {
            self.sync_state(ino, &mut state, flags & libc::O_SYNC == libc::O_SYNC)?;
        }
        Ok(count)
    }

    /// fsync (or fdatasync, when `data_only`) of a file: applies its overlay and syncs it.
    pub fn fsync(&self, ino: u64, data_only: bool) -> Result<(), Errno> {
        let file = self.file_of(ino)?;
        let mut state = lock(&file);
        self.sync_state(ino, &mut state, !data_only)
    }

    // ---- Directories ----

    /// Opens a directory: takes a snapshot of its entries. Returns the handle.
    pub fn opendir(&self, ino: u64) -> Result<u64, Errno> {
        let (path, node_kind) = self.named_path(ino)?;
        if node_kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        let full = self.root.join(&path);
        let parent_meta = fs::symlink_metadata(full.join(".."))?;
        let mut entries = vec![
            DirEntry { ino, kind: FileType::Directory, name: ".".into() },
            DirEntry { ino: self.reported_ino(parent_meta.ino()), kind: FileType::Directory, name: "..".into() },
        ];
        for entry in fs::read_dir(&full)? {
            let entry = entry?;
            let kind = FileType::from_std(entry.file_type()?).unwrap_or(FileType::RegularFile);
            entries.push(DirEntry { ino: self.reported_ino(entry.ino()), kind, name: entry.file_name() });
        }
        let mut dirs = lock(&self.dirs);
        if dirs.open.len() >= DIR_HANDLES_MAX {
            return Err(Errno::EMFILE);
        }
        dirs.fh_next += 1;
        let fh = dirs.fh_next;
        dirs.open.insert(fh, entries);
        Ok(fh)
    }

    /// Passes the entries of an open directory, from `index` on, to `add` with their index,
    /// until `add` returns true (the reply is full).
    pub fn readdir(&self, fh: u64, index: u64, mut add: impl FnMut(u64, &DirEntry) -> bool) -> Result<(), Errno> {
        let dirs = lock(&self.dirs);
        let entries = dirs.open.get(&fh).ok_or(Errno::EBADF)?;
        let skipped = usize::try_from(index).unwrap_or(usize::MAX);
        for (index, entry) in (index..).zip(entries.iter().skip(skipped)) {
            if add(index, entry) {
                break;
            }
        }
        Ok(())
    }

    pub fn releasedir(&self, fh: u64) {
        lock(&self.dirs).open.remove(&fh);
    }

    /// fsync of a directory. Names are durable at once, so it only passes the sync on.
    pub fn fsyncdir(&self, ino: u64) -> Result<(), Errno> {
        if self.fail_fsync.load(Ordering::SeqCst) {
            return Err(Errno::EIO);
        }
        let (path, _) = self.named_path(ino)?;
        File::open(self.root.join(path))?.sync_all()?;
        Ok(())
    }

    pub fn statfs(&self) -> Result<Space, Errno> {
        let stats = sys::statvfs(&self.root)?;
        let full = self.enospc.load(Ordering::SeqCst);
        Ok(Space {
            blocks: stats.f_blocks,
            blocks_free: if full { 0 } else { stats.f_bfree },
            blocks_available: if full { 0 } else { stats.f_bavail },
            files: stats.f_files,
            files_free: stats.f_ffree,
            block_bytes: stats.f_bsize as u32,
            name_bytes_max: stats.f_namemax as u32,
            fragment_bytes: stats.f_frsize as u32,
        })
    }

    // ---- Internals ----

    /// Syncs one file whose lock the caller holds, or, while fsyncs fail, drops its unsynced
    /// data and fails.
    fn sync_state(&self, ino: u64, state: &mut FileState, metadata_too: bool) -> Result<(), Errno> {
        if self.fail_fsync.load(Ordering::SeqCst) {
            if state.drop_unsynced().is_some() {
                self.invalidate(ino);
            }
            return Err(Errno::EIO);
        }
        state.sync(!metadata_too)?;
        Ok(())
    }

    /// Counts a lookup of the entry at `path` and returns its attributes.
    fn remember(&self, path: PathBuf, meta: &Metadata) -> FileAttr {
        let kind = FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile);
        let (ino, file) = {
            let mut inodes = lock(&self.inodes);
            let ino = inodes.remember(path, meta.ino(), kind);
            (ino, inodes.node(ino).and_then(|node| node.file.clone()))
        };
        let length = file.and_then(|file| lock(&file).overlay_length_bytes());
        attr(ino, meta, length)
    }

    /// The backing file lost its last name: forget the mapping, and its unsynced data unless a
    /// handle still holds it.
    fn unlinked(&self, backing_ino: u64) {
        let file = lock(&self.inodes).unlinked(backing_ino);
        if let Some(file) = file {
            lock(&file).mark_unlinked();
        }
    }

    /// The path of `name` inside directory `parent`, relative to the root.
    fn child_path(&self, parent: u64, name: &OsStr) -> Result<PathBuf, Errno> {
        if name.as_bytes().contains(&b'/') || name == "." || name == ".." {
            return Err(Errno::EINVAL);
        }
        let (path, kind) = self.named_path(parent)?;
        if kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        Ok(path.join(name))
    }

    /// The path and kind of a node that still has a name.
    fn named_path(&self, ino: u64) -> Result<(PathBuf, FileType), Errno> {
        let inodes = lock(&self.inodes);
        let node = inodes.node(ino).ok_or(Errno::ENOENT)?;
        if node.unlinked {
            return Err(Errno::ENOENT);
        }
        Ok((node.path.clone(), node.kind))
    }

    /// A node's path, whether its name is gone, and its file state if it is a regular file.
    fn node_of(&self, ino: u64) -> Result<(PathBuf, bool, Option<SharedFile>), Errno> {
        let inodes = lock(&self.inodes);
        let node = inodes.node(ino).ok_or(Errno::ENOENT)?;
        Ok((node.path.clone(), node.unlinked, node.file.clone()))
    }

    fn file_of(&self, ino: u64) -> Result<SharedFile, Errno> {
        self.node_of(ino)?.2.ok_or(Errno::EISDIR)
    }

    fn reported_ino(&self, backing_ino: u64) -> u64 {
        lock(&self.inodes).ino_of_backing(backing_ino).unwrap_or(backing_ino)
    }

    /// Asks the invalidation thread to make the kernel forget what it cached about `ino`.
    fn invalidate(&self, ino: u64) {
        match self.invalidations.try_send(ino) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                eprintln!("lazyfs: invalidation queue full; the kernel may show inode {ino}'s old size for a moment");
            }
        }
    }
}

/// Locks a mutex. A poisoned lock means a thread panicked inside an operation, which is a bug
/// in lazyfs; the state may be half-changed, so stop rather than go on.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().expect("a lazyfs thread panicked while holding a lock")
}

/// The attributes the kernel sees: the backing file's, with the length the overlay gives it.
fn attr(ino: u64, meta: &Metadata, overlay_length_bytes: Option<u64>) -> FileAttr {
    let size = overlay_length_bytes.unwrap_or(meta.len());
    FileAttr {
        ino: INodeNo(ino),
        size,
        // Blocks of unsynced data are not allocated yet; count them so a file does not look sparse.
        blocks: meta.blocks().max(size.div_ceil(512)),
        atime: time(meta.atime(), meta.atime_nsec()),
        mtime: time(meta.mtime(), meta.mtime_nsec()),
        ctime: time(meta.ctime(), meta.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile),
        perm: (meta.mode() & 0o7777) as u16,
        nlink: meta.nlink() as u32,
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: meta.rdev() as u32,
        blksize: meta.blksize() as u32,
        flags: 0,
    }
}

fn time(seconds: i64, nanoseconds: i64) -> SystemTime {
    let nanoseconds = Duration::from_nanos(nanoseconds.clamp(0, 999_999_999) as u64);
    if seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(seconds as u64) + nanoseconds
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()) + nanoseconds
    }
}

fn system_time(time: TimeOrNow) -> SystemTime {
    match time {
        TimeOrNow::SpecificTime(time) => time,
        TimeOrNow::Now => SystemTime::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inodes::ROOT_INO;
    use std::sync::mpsc;

    /// A filesystem over a fresh temporary directory, driven by direct calls (no mount).
    struct Fixture {
        fs: LazyFs,
        root: PathBuf,
        _invalidated: mpsc::Receiver<u64>,
    }

    impl Fixture {
        fn new(name: &str) -> Fixture {
            let root = std::env::temp_dir().join(format!("lazyfs-fs-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(&root).unwrap();
            let (sender, receiver) = mpsc::sync_channel(64);
            Fixture { fs: LazyFs::new(root.clone(), sender).unwrap(), root, _invalidated: receiver }
        }

        /// Creates `name` in the root and returns its inode, with one handle open.
        fn create(&self, name: &str) -> u64 {
            self.fs.create(ROOT_INO, OsStr::new(name), 0o644, 0, 0).unwrap().ino.0
        }

        fn read_all(&self, ino: u64) -> Vec<u8> {
            self.fs.read(ino, 0, 1 << 20).unwrap()
        }

        fn on_disk(&self, name: &str) -> Vec<u8> {
            fs::read(self.root.join(name)).unwrap()
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            // Best effort: a leftover temporary directory harms nothing.
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    #[test]
    fn writes_reach_the_backing_file_only_at_fsync() {
        let f = Fixture::new("fsync");
        let ino = f.create("log");
        assert_eq!(f.fs.write(ino, 0, b"hello", 0), Ok(5));
        assert_eq!(f.read_all(ino), b"hello");
        assert_eq!(f.fs.getattr(ino).unwrap().size, 5);
        assert_eq!(f.on_disk("log"), b"", "a write must not reach the backing file");
        f.fs.fsync(ino, true).unwrap();
        assert_eq!(f.on_disk("log"), b"hello");
        assert_eq!(f.fs.unsynced(), Unsynced::default());
    }

    #[test]
    fn a_power_cut_keeps_only_what_was_synced() {
        let f = Fixture::new("power-cut");
        let ino = f.create("log");
        f.fs.write(ino, 0, b"synced.", 0).unwrap();
        f.fs.fsync(ino, true).unwrap();
        f.fs.write(ino, 7, b"lost", 0).unwrap();
        f.fs.write(ino, 0, b"S", 0).unwrap();
        f.fs.setattr(ino, &AttrChanges { size: Some(3), ..AttrChanges::default() }).unwrap();
        f.fs.write(ino, 3, b"!", 0).unwrap();
        assert_eq!(f.read_all(ino), b"Syn!");
        assert_eq!(f.fs.unsynced(), Unsynced { files: 1, bytes: 2 }, "the write past the cut was cut too");
        f.fs.release(ino);
        assert_eq!(f.fs.unsynced().files, 1, "closing the file does not sync it");
        assert_eq!(f.fs.power_cut(), Unsynced { files: 1, bytes: 2 });
        assert_eq!(f.on_disk("log"), b"synced.");
        f.fs.open(ino).unwrap();
        assert_eq!(f.read_all(ino), b"synced.");
        assert_eq!(f.fs.getattr(ino).unwrap().size, 7);
    }

    #[test]
    fn unmounting_syncs_every_file_like_a_clean_shutdown() {
        let f = Fixture::new("unmount");
        let ino = f.create("log");
        f.fs.write(ino, 0, b"closed", 0).unwrap();
        f.fs.release(ino);
        let open = f.create("open");
        f.fs.write(open, 0, b"still open", 0).unwrap();
        let gone = f.create("gone");
        f.fs.write(gone, 0, b"no name", 0).unwrap();
        f.fs.unlink(ROOT_INO, OsStr::new("gone")).unwrap();
        f.fs.release(gone);
        assert_eq!(f.fs.sync_everything(), Unsynced { files: 2, bytes: 16 });
        assert_eq!(f.on_disk("log"), b"closed");
        assert_eq!(f.on_disk("open"), b"still open");
        assert_eq!(f.fs.unsynced(), Unsynced::default());
    }

    #[test]
    fn a_failed_fsync_drops_the_unsynced_data() {
        let f = Fixture::new("fail-fsync");
        let ino = f.create("log");
        f.fs.write(ino, 0, b"kept", 0).unwrap();
        f.fs.fsync(ino, false).unwrap();
        f.fs.write(ino, 4, b"dropped", 0).unwrap();
        f.fs.set_fault(Fault::FailFsync, true);
        assert_eq!(f.fs.fsync(ino, true), Err(Errno::EIO));
        assert_eq!(f.fs.fsyncdir(ROOT_INO), Err(Errno::EIO));
        f.fs.set_fault(Fault::FailFsync, false);
        assert_eq!(f.read_all(ino), b"kept");
        f.fs.fsync(ino, true).unwrap();
        assert_eq!(f.on_disk("log"), b"kept");
    }

    #[test]
    fn enospc_fails_only_writes_that_grow_the_file() {
        let f = Fixture::new("enospc");
        let ino = f.create("log");
        f.fs.write(ino, 0, b"0123", 0).unwrap();
        f.fs.set_fault(Fault::Enospc, true);
        assert_eq!(f.fs.write(ino, 4, b"x", 0), Err(Errno::ENOSPC));
        assert_eq!(f.fs.write(ino, 2, b"xyz", 0), Err(Errno::ENOSPC));
        assert_eq!(f.fs.write(ino, 1, b"ab", 0), Ok(2));
        assert_eq!(f.fs.statfs().unwrap().blocks_available, 0);
        f.fs.set_fault(Fault::Enospc, false);
        assert_eq!(f.fs.write(ino, 4, b"x", 0), Ok(1));
        assert_eq!(f.read_all(ino), b"0ab3x");
    }

    #[test]
    fn fail_write_fails_every_write() {
        let f = Fixture::new("fail-write");
        let ino = f.create("log");
        f.fs.set_fault(Fault::FailWrite, true);
        assert_eq!(f.fs.write(ino, 0, b"x", 0), Err(Errno::EIO));
        f.fs.set_fault(Fault::FailWrite, false);
        assert_eq!(f.fs.write(ino, 0, b"x", 0), Ok(1));
    }

    #[test]
    fn an_o_dsync_write_is_synced_at_once() {
        let f = Fixture::new("dsync");
        let ino = f.create("log");
        f.fs.write(ino, 0, b"now", libc::O_DSYNC).unwrap();
        assert_eq!(f.on_disk("log"), b"now");
    }

    #[test]
    fn unsynced_data_follows_a_renamed_file_and_the_rename_is_durable_at_once() {
        let f = Fixture::new("rename");
        let ino = f.create("a.tmp");
        f.fs.write(ino, 0, b"data", 0).unwrap();
        f.fs.rename(ROOT_INO, OsStr::new("a.tmp"), ROOT_INO, OsStr::new("a"), false).unwrap();
        assert_eq!(f.fs.lookup(ROOT_INO, OsStr::new("a")).unwrap().ino.0, ino);
        assert_eq!(f.read_all(ino), b"data");
        f.fs.fsync(ino, true).unwrap();
        assert_eq!(f.on_disk("a"), b"data");
        // Written and renamed without an fsync: the name survives a power cut, the data not.
        let other = f.create("b.tmp");
        f.fs.write(other, 0, b"unsynced", 0).unwrap();
        f.fs.rename(ROOT_INO, OsStr::new("b.tmp"), ROOT_INO, OsStr::new("a"), false).unwrap();
        f.fs.power_cut();
        assert_eq!(f.on_disk("a"), b"");
    }

    #[test]
    fn an_unlinked_open_file_keeps_its_data_until_closed() {
        let f = Fixture::new("unlink");
        let ino = f.create("gone");
        f.fs.write(ino, 0, b"still here", 0).unwrap();
        f.fs.unlink(ROOT_INO, OsStr::new("gone")).unwrap();
        assert_eq!(f.read_all(ino), b"still here");
        assert_eq!(f.fs.getattr(ino).unwrap().size, 10);
        assert_eq!(f.fs.lookup(ROOT_INO, OsStr::new("gone")), Err(Errno::ENOENT));
        f.fs.release(ino);
        assert_eq!(f.fs.unsynced(), Unsynced::default(), "a file with no name and no handle has no data");
    }

    #[test]
    fn directories_list_their_entries() {
        let f = Fixture::new("readdir");
        let dir = f.fs.mkdir(ROOT_INO, OsStr::new("d"), 0o755, 0).unwrap().ino.0;
        f.fs.create(dir, OsStr::new("x"), 0o644, 0, 0).unwrap();
        let fh = f.fs.opendir(dir).unwrap();
        let list = |index: u64, count_max: usize| {
            let mut names: Vec<OsString> = Vec::new();
            f.fs.readdir(fh, index, |_, entry| {
                names.push(entry.name.clone());
                names.len() == count_max
            })
            .unwrap();
            names
        };
        let mut names = list(0, 10);
        names.sort();
        assert_eq!(names, [".", "..", "x"]);
        assert_eq!(list(1, 1).len(), 1, "a full reply stops the listing");
        assert_eq!(list(3, 10).len(), 0);
        f.fs.releasedir(fh);
        assert_eq!(f.fs.rmdir(ROOT_INO, OsStr::new("d")), Err(Errno::ENOTEMPTY));
    }
}
