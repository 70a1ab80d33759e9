//! The control FIFO: the harness writes one command a line, lazyfs carries each out and writes
//! one line about it to stderr.
//!
//! | command | effect |
//! |---|---|
//! | `power-cut` | drop every file's unsynced data |
//! | `fail-write on\|off` | every write fails with EIO |
//! | `fail-fsync on\|off` | every fsync fails with EIO and drops the file's unsynced data |
//! | `enospc on\|off` | writes that grow a file fail with ENOSPC |
//! | `status` | report how many files hold how many unsynced bytes |
//!
//! A writer cannot see when a command has been carried out; the harness waits for the line on
//! lazyfs's stderr that begins `lazyfs: <command>`. Unknown commands are reported the same way
//! (`lazyfs: <line>: unknown command; ignored`) and ignored.
//! After a writer closes the FIFO, lazyfs opens it again, so it can be written to any number of
//! times.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use crate::fs::{Fault, LazyFs};
use crate::limits::CONTROL_LINE_BYTES_MAX;
use crate::sys;

/// One control command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// What the page cache loses when the power goes: every file's unsynced data.
    PowerCut,
    /// Switches a disk fault on or off.
    SetFault(Fault, bool),
    /// Reports the unsynced data held, so the harness can see a power cut would matter.
    Status,
}

impl Command {
    pub fn parse(line: &str) -> Result<Command, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let fault = |name: &str| match name {
            "fail-write" => Some(Fault::FailWrite),
            "fail-fsync" => Some(Fault::FailFsync),
            "enospc" => Some(Fault::Enospc),
            _ => None,
        };
        match words.as_slice() {
            ["power-cut"] => Ok(Command::PowerCut),
            ["status"] => Ok(Command::Status),
            [name, switch] if fault(name).is_some() => match *switch {
                "on" => Ok(Command::SetFault(fault(name).expect("checked above"), true)),
                "off" => Ok(Command::SetFault(fault(name).expect("checked above"), false)),
                _ => Err(format!("{name} takes on or off")),
            },
            _ => Err("unknown command".to_string()),
        }
    }
}

/// Carries out one command and returns the line to report.
pub fn execute(fs: &LazyFs, command: Command) -> String {
    match command {
        Command::PowerCut => {
            let dropped = fs.power_cut();
            format!("power-cut: dropped {} unsynced bytes in {} files", dropped.bytes, dropped.files)
        }
        Command::SetFault(fault, on) => {
            fs.set_fault(fault, on);
            let name = match fault {
                Fault::FailWrite => "fail-write",
                Fault::FailFsync => "fail-fsync",
                Fault::Enospc => "enospc",
            };
            format!("{name} {}", if on { "on" } else { "off" })
        }
        Command::Status => {
            let unsynced = fs.unsynced();
            format!(
                "status: {} files hold {} unsynced bytes; {} inodes known",
                unsynced.files,
                unsynced.bytes,
                fs.inode_count()
            )
        }
    }
}

/// Creates the FIFO at `path` unless one is there already.
pub fn ensure_fifo(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_fifo() => Ok(()),
        Ok(_) => {
            Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists and is not a FIFO", path.display())))
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => sys::mkfifo(path, 0o600),
        Err(error) => Err(error),
    }
}

/// Reads commands from the FIFO for ever, reopening it after each writer closes it. Returns
/// only when the FIFO cannot be opened or read.
pub fn serve(fifo: &Path, fs: &LazyFs) -> io::Error {
    loop {
        // Blocks until a writer opens the FIFO.
        let file = match File::open(fifo) {
            Ok(file) => file,
            Err(error) => return error,
        };
        if let Err(error) = serve_one_writer(BufReader::new(file), fs) {
            return error;
        }
    }
}

/// Carries out the commands one writer sent, until it closes the FIFO.
fn serve_one_writer(mut reader: impl BufRead, fs: &LazyFs) -> io::Result<()> {
    loop {
        let mut line = Vec::new();
        let count = reader.by_ref().take(CONTROL_LINE_BYTES_MAX).read_until(b'\n', &mut line)?;
        if count == 0 {
            return Ok(());
        }
        if !line.ends_with(b"\n") && count as u64 == CONTROL_LINE_BYTES_MAX {
            // Too long to be a command: skip to the end of the line, a bounded piece at a time.
            loop {
                let mut rest = Vec::new();
                let count = reader.by_ref().take(CONTROL_LINE_BYTES_MAX).read_until(b'\n', &mut rest)?;
                if count == 0 || rest.ends_with(b"\n") {
                    break;
                }
            }
            eprintln!("lazyfs: a control line longer than {CONTROL_LINE_BYTES_MAX} bytes ignored");
            continue;
        }
        let line = String::from_utf8_lossy(&line);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match Command::parse(line) {
            Ok(command) => eprintln!("lazyfs: {}", execute(fs, command)),
            Err(error) => eprintln!("lazyfs: {line}: {error}; ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(Command::parse("power-cut"), Ok(Command::PowerCut));
        assert_eq!(Command::parse("  status "), Ok(Command::Status));
        assert_eq!(Command::parse("fail-write on"), Ok(Command::SetFault(Fault::FailWrite, true)));
        assert_eq!(Command::parse("fail-fsync off"), Ok(Command::SetFault(Fault::FailFsync, false)));
        assert_eq!(Command::parse("enospc on"), Ok(Command::SetFault(Fault::Enospc, true)));
    }

    #[test]
    fn bad_commands_are_refused() {
        assert!(Command::parse("power-cut now").is_err());
        assert!(Command::parse("enospc maybe").is_err());
        assert!(Command::parse("fail-read on").is_err());
        assert!(Command::parse("").is_err());
    }

    #[test]
    fn a_writer_s_lines_are_carried_out_and_an_overlong_one_skipped() {
        let root = std::env::temp_dir().join(format!("lazyfs-control-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let (sender, _receiver) = std::sync::mpsc::sync_channel(1);
        let fs = LazyFs::new(root.clone(), sender).unwrap();
        let long = "x".repeat(3 * CONTROL_LINE_BYTES_MAX as usize);
        let input = format!("enospc on\n{long}\nbogus\n\nfail-write on");
        serve_one_writer(input.as_bytes(), &fs).unwrap();
        assert_eq!(fs.statfs().unwrap().blocks_available, 0, "enospc was switched on");
        let root_ino = crate::inodes::ROOT_INO;
        let ino = fs.create(root_ino, "f".as_ref(), 0o644, 0, 0).unwrap().ino.0;
        assert_eq!(fs.write(ino, 0, b"x", 0), Err(fuser::Errno::EIO), "the last line, without a newline, counts");
        std::fs::remove_dir_all(root).unwrap();
    }
}
