//! lazyfs: a FUSE filesystem that loses what a power cut would lose.
//!
//! `lazyfs --backing DIR --mount MNT --control FIFO` shows DIR at MNT. A broker runs on MNT as
//! on any directory, but what it writes stays in lazyfs's memory until it fsyncs the file. The
//! fault harness kills the broker, writes `power-cut` to the FIFO, and lazyfs forgets every
//! unsynced write: the restarted broker finds what a machine that lost power would have kept.
//! The FIFO also switches on EIO for writes or fsyncs and ENOSPC for growing writes.
//!
//! ```text
//!   broker ──syscalls──▶ kernel ──/dev/fuse──▶ kernel.rs ──▶ fs.rs (LazyFs) ──▶ DIR (backing)
//!                          ▲                   event-loop      │  inodes.rs: inode ⇄ path
//!                          │                   threads         │  file.rs: one file's state
//!                          │                                   │  overlay.rs: unsynced bytes
//!                          │  invalidate cached attributes     │
//!                          └────────── invalidation thread ◀───┤
//!   harness ──lines──▶ FIFO ──▶ control.rs (control thread) ──▶┘
//! ```
//!
//! Threads: [`limits::EVENT_LOOP_THREADS`] answer the kernel; one reads the FIFO; one sends
//! the kernel cache invalidations; one waits for SIGTERM or SIGINT and unmounts. The main
//! thread runs the session until the filesystem is unmounted (by that signal, by
//! `fusermount3 -u MNT` or by `umount MNT`).

mod control;
mod file;
mod fs;
mod inodes;
mod kernel;
mod limits;
mod overlay;
mod sys;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread;

use fuser::{Config, INodeNo, MountOption, Notifier, Session, SessionACL};

use crate::fs::LazyFs;
use crate::kernel::Mounted;
use crate::limits::{EVENT_LOOP_THREADS, INVALIDATIONS_QUEUED_MAX};
use crate::sys::TerminationSignals;

const USAGE: &str = "usage: lazyfs --backing DIR --mount MNT --control FIFO

Mounts at MNT a view of DIR whose writes stay in memory until fsync. Commands, one a line,
written to FIFO (created if missing): power-cut, fail-write on|off, fail-fsync on|off,
enospc on|off, status. Each is reported on stderr. SIGTERM or SIGINT unmounts.";

#[derive(Debug, PartialEq, Eq)]
struct Args {
    backing: PathBuf,
    mount: PathBuf,
    control: PathBuf,
}

/// Parses the arguments after the program name. `Ok(None)` asks for the usage text.
fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Option<Args>, String> {
    let (mut backing, mut mount, mut control) = (None, None, None);
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let slot = match flag.to_str() {
            Some("--backing") => &mut backing,
            Some("--mount") => &mut mount,
            Some("--control") => &mut control,
            Some("-h" | "--help") => return Ok(None),
            _ => return Err(format!("unknown argument {flag:?}")),
        };
        let value = args.next().ok_or_else(|| format!("{flag:?} needs a value"))?;
        *slot = Some(PathBuf::from(value));
    }
    match (backing, mount, control) {
        (Some(backing), Some(mount), Some(control)) => Ok(Some(Args { backing, mount, control })),
        _ => Err("--backing, --mount and --control are all required".to_string()),
    }
}

fn main() -> ExitCode {
    match parse_args(std::env::args_os().skip(1)) {
        Ok(Some(args)) => match run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("lazyfs: {error}");
                ExitCode::FAILURE
            }
        },
        Ok(None) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("lazyfs: {error}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    // Before any thread starts, so that every thread inherits the blocked signals.
    let signals = TerminationSignals::block().map_err(|e| format!("blocking signals: {e}"))?;
    sys::clear_umask();
    control::ensure_fifo(&args.control).map_err(|e| format!("control FIFO {}: {e}", args.control.display()))?;
    let backing = args.backing.canonicalize().map_err(|e| format!("backing {}: {e}", args.backing.display()))?;
    // Resolved now: once mounted, a lookup through the mount point would need the session that
    // has not started running yet.
    let mount = args.mount.canonicalize().map_err(|e| format!("mount point {}: {e}", args.mount.display()))?;
    let (invalidations, invalidation_queue) = mpsc::sync_channel(INVALIDATIONS_QUEUED_MAX);
    let fs = Arc::new(LazyFs::new(backing.clone(), invalidations).map_err(|e| format!("backing: {e}"))?);

    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("lazyfs:{}", backing.display())),
        MountOption::Subtype("lazyfs".to_string()),
        // fusermount3 unmounts if lazyfs dies, rather than leaving a dead mount behind.
        MountOption::AutoUnmount,
    ];
    // AutoUnmount needs allow_other or allow_root; lazyfs runs as root, so this admits root.
    config.acl = SessionACL::RootAndOwner;
    config.n_threads = Some(EVENT_LOOP_THREADS);
    let session = Session::new(Mounted(Arc::clone(&fs)), &mount, &config)
        .map_err(|e| format!("mounting at {}: {e}", mount.display()))?;

    let notifier = session.notifier();
    spawn("invalidate", move || send_invalidations(invalidation_queue, notifier))?;
    let control_fs = Arc::clone(&fs);
    let fifo = args.control.clone();
    spawn("control", move || {
        let error = control::serve(&fifo, &control_fs);
        eprintln!("lazyfs: control FIFO {}: {error}; no more commands are read", fifo.display());
    })?;
    let mount_to_unmount = mount.clone();
    spawn("signals", move || unmount_on_signal(signals, &mount_to_unmount))?;

    eprintln!("lazyfs: mounted {} at {}, control FIFO {}", backing.display(), mount.display(), args.control.display());
    let ended = session.run();
    // Even after a failed session: whatever was written is better on disk than lost.
    let synced = fs.sync_everything();
    eprintln!(
        "lazyfs: unmounted {}; synced the {} unsynced bytes of {} files, as a clean shutdown does",
        mount.display(),
        synced.bytes,
        synced.files
    );
    ended.map_err(|e| format!("session: {e}"))
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<(), String> {
    thread::Builder::new().name(name.to_string()).spawn(body).map(drop).map_err(|e| format!("starting {name}: {e}"))
}

/// Tells the kernel to forget the cached attributes of each inode whose unsynced data was
/// dropped, so it does not go on reporting the old size.
fn send_invalidations(queue: Receiver<u64>, notifier: Notifier) {
    for ino in queue {
        // ENOENT means the kernel no longer caches the inode: nothing to forget.
        let _ = notifier.inval_inode(INodeNo(ino), 0, 0);
    }
}

/// The first signal unmounts, which ends the session once no process uses the mount. A second
/// one exits at once, for when a process holds files open on it.
///
/// fuser's own unmount, with AutoUnmount, only lets go of fusermount3, which unmounts only
/// once lazyfs's connection is dead; so lazyfs, being root, unmounts itself.
fn unmount_on_signal(signals: TerminationSignals, mount: &Path) {
    let mut received = 0;
    loop {
        let signal = match signals.wait() {
            Ok(signal) => signal,
            Err(error) => {
                eprintln!("lazyfs: waiting for signals: {error}");
                return;
            }
        };
        received += 1;
        if received > 1 {
            eprintln!("lazyfs: signal {signal} again: exiting without waiting");
            std::process::exit(1);
        }
        eprintln!("lazyfs: signal {signal}: unmounting");
        match sys::unmount(mount, false) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(libc::EBUSY) => {
                eprintln!("lazyfs: {} is busy: detaching it, serving its open files until they close", mount.display());
                if let Err(error) = sys::unmount(mount, true) {
                    eprintln!("lazyfs: unmounting: {error}");
                }
            }
            Err(error) => eprintln!("lazyfs: unmounting: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments_parse() {
        let parsed = parse_args(args(&["--mount", "m", "--backing", "b", "--control", "c"])).unwrap().unwrap();
        assert_eq!(parsed, Args { backing: "b".into(), mount: "m".into(), control: "c".into() });
        assert_eq!(parse_args(args(&["--help"])), Ok(None));
        assert!(parse_args(args(&["--mount", "m"])).is_err());
        assert!(parse_args(args(&["--mount"])).is_err());
        assert!(parse_args(args(&["--bogus", "x"])).is_err());
    }
}
