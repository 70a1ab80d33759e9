//! The few system calls std does not wrap. Each unsafe block is here, with why it is sound.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: NUL in path", path.display())))
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Clears the process's umask, so files and directories get exactly the mode the application
/// asked for (the kernel has already applied the application's umask).
pub fn clear_umask() {
    // SAFETY: umask only swaps an integer in the process; it cannot fail.
    unsafe {
        libc::umask(0);
    }
}

/// SIGTERM and SIGINT, blocked in the calling thread and every thread it starts afterwards, so
/// that they wait for [`TerminationSignals::wait`] instead of killing the process mid-request.
#[derive(Clone, Copy)]
pub struct TerminationSignals(libc::sigset_t);

impl TerminationSignals {
    /// Blocks them. Call before starting any thread.
    pub fn block() -> io::Result<TerminationSignals> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it points to; sigaddset and pthread_sigmask
        // read the initialised set, and a null old-set pointer is allowed.
        unsafe {
            check(libc::sigemptyset(set.as_mut_ptr()))?;
            check(libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM))?;
            check(libc::sigaddset(set.as_mut_ptr(), libc::SIGINT))?;
            let set = set.assume_init();
            match libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) {
                0 => Ok(TerminationSignals(set)),
                error => Err(io::Error::from_raw_os_error(error)),
            }
        }
    }

    /// Waits for one of them to arrive and returns its number.
    pub fn wait(&self) -> io::Result<libc::c_int> {
        let mut signal: libc::c_int = 0;
        // SAFETY: the set was initialised in `block`, and `signal` is a valid place to write.
        match unsafe { libc::sigwait(&self.0, &mut signal) } {
            0 => Ok(signal),
            error => Err(io::Error::from_raw_os_error(error)),
        }
    }
}

/// Creates a FIFO at `path`.
pub fn mkfifo(path: &Path, mode: libc::mode_t) -> io::Result<()> {
    let path = c_path(path)?;
    // SAFETY: `path` is NUL-terminated and outlives the call.
    check(unsafe { libc::mkfifo(path.as_ptr(), mode) })
}

/// `statvfs(2)` of the filesystem holding `path`.
pub fn statvfs(path: &Path) -> io::Result<libc::statvfs> {
    let path = c_path(path)?;
    let mut stats = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and outlives the call; `stats` points to writable memory
    // of the struct's size, which statvfs fills completely when it returns 0.
    unsafe {
        check(libc::statvfs(path.as_ptr(), stats.as_mut_ptr()))?;
        Ok(stats.assume_init())
    }
}

/// `renameat2(2)` with RENAME_NOREPLACE: fails with EEXIST instead of replacing `to`.
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let (from, to) = (c_path(from)?, c_path(to)?);
    // SAFETY: both paths are NUL-terminated and outlive the call; AT_FDCWD makes them relative
    // to the working directory, and they are absolute anyway.
    check(unsafe {
        libc::renameat2(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::RENAME_NOREPLACE)
    })
}

/// Unmounts the filesystem at `path`; with `detach`, lazily (`MNT_DETACH`: the mount leaves
/// the namespace now, and goes away once no process uses it any more).
pub fn unmount(path: &Path, detach: bool) -> io::Result<()> {
    let path = c_path(path)?;
    let flags = if detach { libc::MNT_DETACH } else { 0 };
    // SAFETY: `path` is NUL-terminated and outlives the call.
    check(unsafe { libc::umount2(path.as_ptr(), flags) })
}
