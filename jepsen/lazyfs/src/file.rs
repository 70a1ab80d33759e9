//! What lazyfs keeps for one regular file: its backing descriptor while the kernel has it open,
//! and its [`Overlay`] of unsynced writes and truncates.
//!
//! The methods do the I/O of one file; whether a fault turns an operation into an error is
//! decided by the caller ([`crate::fs::LazyFs`]) before it calls them.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::overlay::{read_full, Backing, Overlay};

/// One file's state, shared between its inode node and the operations on it. Each operation
/// holds the lock for its whole length, so an fsync applies a consistent overlay and a write
/// never lands half-way through it.
pub type SharedFile = Arc<Mutex<FileState>>;

#[derive(Debug, Default)]
pub struct FileState {
    /// The backing file, open while the kernel holds at least one handle to this file (and for
    /// the length of a truncate that comes without one).
    backing: Option<File>,
    /// Handles the kernel holds: opens and creates not yet released.
    handles_open: u32,
    /// Writes and truncates not yet applied to the backing file; `None` when the file is clean.
    overlay: Option<Overlay>,
    /// The file's last name was removed: its data lives only as long as its handles, so the
    /// overlay goes when the last one does.
    unlinked: bool,
}

impl FileState {
    /// Takes a new handle, opening the backing file by `full_path` if no handle holds it yet.
    pub fn open_handle(&mut self, full_path: &Path) -> io::Result<()> {
        if self.backing.is_none() {
            if self.unlinked {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            self.backing = Some(open_backing(full_path)?);
        }
        self.handles_open += 1;
        Ok(())
    }

    /// Takes a new handle on a file just created and opened as `backing`.
    pub fn adopt_handle(&mut self, backing: File) {
        // If the file already had a handle, the descriptor it holds serves the new one too.
        self.backing.get_or_insert(backing);
        self.handles_open += 1;
    }

    /// Gives back a handle. The last one closes the backing file; its overlay stays, since
    /// closing a file does not make it durable, unless the file has no name left.
    pub fn release_handle(&mut self) {
        if self.handles_open == 0 {
            // The kernel sends one release per successful open; this is its mistake, not ours.
            eprintln!("lazyfs: a release without an open; ignored");
            return;
        }
        self.handles_open -= 1;
        if self.handles_open == 0 {
            self.backing = None;
            if self.unlinked {
                self.overlay = None;
            }
        }
    }

    /// Records that the file's last name is gone.
    pub fn mark_unlinked(&mut self) {
        self.unlinked = true;
        if self.handles_open == 0 {
            self.overlay = None;
        }
    }

    /// The backing descriptor, if a handle holds it open.
    pub fn backing(&self) -> Option<&File> {
        self.backing.as_ref()
    }

    /// The length the application sees, when it differs from the backing file's because of
    /// unsynced changes.
    pub fn overlay_length_bytes(&self) -> Option<u64> {
        self.overlay.as_ref().map(Overlay::length_bytes)
    }

    /// Written bytes not yet synced.
    pub fn unsynced_bytes(&self) -> u64 {
        self.overlay.as_ref().map_or(0, Overlay::unsynced_bytes)
    }

    /// True when a power cut would change this file.
    pub fn is_dirty(&self) -> bool {
        self.overlay.is_some()
    }

    /// True while the kernel holds a handle.
    pub fn is_open(&self) -> bool {
        self.handles_open > 0
    }

    /// The length the application sees. Needs an open handle.
    pub fn length_bytes(&self) -> io::Result<u64> {
        match &self.overlay {
            Some(overlay) => Ok(overlay.length_bytes()),
            None => self.open_backing()?.length(),
        }
    }

    /// Reads up to `size` bytes at `offset` of what the application sees. A clean file is read
    /// straight from the backing file. Needs an open handle.
    pub fn read(&self, offset: u64, size: usize) -> io::Result<Vec<u8>> {
        let backing = self.open_backing()?;
        match &self.overlay {
            Some(overlay) => overlay.read(backing, offset, size),
            None => {
                let mut buf = vec![0u8; size];
                let filled = read_full(backing, &mut buf, offset)?;
                buf.truncate(filled);
                Ok(buf)
            }
        }
    }

    /// Records a write in the overlay; the backing file is not touched. Needs an open handle.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.overlay_mut()?.write(offset, data);
        Ok(())
    }

    /// Records a truncate in the overlay. Without a handle (a `truncate(2)` by path) the
    /// backing file is opened by `full_path` just to learn its length. A truncate of a clean file to the length it has changes nothing and leaves it clean (an
    /// `O_TRUNC` open of an empty file is one).
    pub fn truncate(&mut self, full_path: &Path, length_bytes: u64) -> io::Result<()> {
        if self.overlay.is_none() {
            let length_backing = match &self.backing {
                Some(backing) => backing.length()?,
                None if self.unlinked => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
                None => open_backing(full_path)?.length()?,
            };
            if length_backing == length_bytes {
                return Ok(());
            }
            self.overlay = Some(Overlay::new(length_backing));
        }
        self.overlay_mut()?.truncate(length_bytes);
        Ok(())
    }

    /// Applies the overlay to the backing file and syncs it (`fdatasync` when `data_only`).
    /// On failure the overlay is kept, so the caller may try again. Needs an open handle.
    pub fn sync(&mut self, data_only: bool) -> io::Result<()> {
        self.write_back()?;
        let backing = self.open_backing()?;
        if data_only {
            backing.sync_data()
        } else {
            backing.sync_all()
        }
    }

    /// Applies the overlay to the backing file without syncing it, as the kernel's background
    /// writeback would. Needs an open handle.
    pub fn write_back(&mut self) -> io::Result<()> {
        if let Some(overlay) = &self.overlay {
            let backing = self.backing.as_mut().ok_or_else(not_open)?;
            overlay.apply(backing)?;
            self.overlay = None;
        }
        Ok(())
    }

    /// Applies and syncs the overlay even when no handle holds the file, opening it by
    /// `full_path` for the purpose: at unmount, when the kernel has closed everything. Returns the
    /// written bytes it synced. A file with no name and no handle has nothing worth syncing.
    pub fn sync_closed(&mut self, full_path: &Path) -> io::Result<u64> {
        if self.overlay.is_none() {
            return Ok(0);
        }
        if self.backing.is_none() && self.unlinked {
            self.overlay = None;
            return Ok(0);
        }
        let opened_here = self.backing.is_none();
        if opened_here {
            self.backing = Some(open_backing(full_path)?);
        }
        let bytes = self.unsynced_bytes();
        let synced = self.sync(true);
        if opened_here {
            self.backing = None;
        }
        synced.map(|()| bytes)
    }

    /// Forgets the unsynced changes, as a power cut or a failed fsync does. Returns the written
    /// bytes dropped, or `None` if the file was clean.
    pub fn drop_unsynced(&mut self) -> Option<u64> {
        self.overlay.take().map(|overlay| overlay.unsynced_bytes())
    }

    fn open_backing(&self) -> io::Result<&File> {
        self.backing.as_ref().ok_or_else(not_open)
    }

    /// The overlay, created over the backing file's current length on the first change.
    fn overlay_mut(&mut self) -> io::Result<&mut Overlay> {
        if self.overlay.is_none() {
            let length_backing = self.open_backing()?.length()?;
            self.overlay = Some(Overlay::new(length_backing));
        }
        // Set just above when it was missing.
        Ok(self.overlay.as_mut().expect("the overlay was just created"))
    }
}

/// Opens a backing file for reading and writing whatever the application asked for: the one
/// descriptor serves every handle, and an fsync must be able to write through it. Root can open
/// any file so; a read-only backing filesystem falls back to reading only.
fn open_backing(full_path: &Path) -> io::Result<File> {
    match OpenOptions::new().read(true).write(true).open(full_path) {
        Err(error) if error.raw_os_error() == Some(libc::EROFS) || error.raw_os_error() == Some(libc::EACCES) => {
            File::open(full_path)
        }
        other => other,
    }
}

/// The error for I/O on a file the kernel holds no handle to; the kernel never sends one.
fn not_open() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}
