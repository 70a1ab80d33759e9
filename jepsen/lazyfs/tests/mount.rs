//! lazyfs mounted for real: the built binary over temporary directories, driven through the
//! kernel and its control FIFO. Needs root, /dev/fuse and fusermount3; without them each test
//! prints why and passes without checking anything.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// How long lazyfs may take to mount, answer a command or exit.
const WAIT: Duration = Duration::from_secs(10);

/// Why mounting cannot be tried here, if it cannot.
fn cannot_mount() -> Option<&'static str> {
    #[allow(unsafe_code)]
    // SAFETY: geteuid only reads the process's credentials.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some("not running as root");
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing");
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join("fusermount3").exists()))
        .unwrap_or(false);
    if !on_path {
        return Some("fusermount3 is not on PATH");
    }
    None
}

macro_rules! require_mount {
    () => {
        if let Some(reason) = cannot_mount() {
            eprintln!("skipping: {reason}");
            return;
        }
    };
}

/// A running lazyfs over fresh directories. Dropping it kills lazyfs and cleans up.
struct Mounted {
    child: Child,
    dir: PathBuf,
    backing: PathBuf,
    mount: PathBuf,
    fifo: PathBuf,
    /// lazyfs's stderr, a line at a time.
    lines: Receiver<String>,
}

impl Mounted {
    fn start(name: &str) -> Mounted {
        let dir = std::env::temp_dir().join(format!("lazyfs-test-{name}-{}", std::process::id()));
        let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(dir.join("mnt")).stderr(Stdio::null()).status();
        let _ = fs::remove_dir_all(&dir);
        let (backing, mount, fifo) = (dir.join("backing"), dir.join("mnt"), dir.join("control"));
        fs::create_dir_all(&backing).unwrap();
        fs::create_dir_all(&mount).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_lazyfs"))
            .arg("--backing")
            .arg(&backing)
            .arg("--mount")
            .arg(&mount)
            .arg("--control")
            .arg(&fifo)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{line}]");
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mounted = Mounted { child, dir, backing, mount, fifo, lines };
        mounted.wait_for_line("lazyfs: mounted");
        assert!(is_mounted(&mounted.mount), "lazyfs says it mounted, but it is not in /proc/mounts");
        mounted
    }

    /// Waits until lazyfs writes a line starting with `prefix`, and returns it.
    fn wait_for_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => panic!("no line starting {prefix:?} from lazyfs within {WAIT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("lazyfs exited before writing {prefix:?}"),
            }
        }
    }

    /// Sends one command and waits until lazyfs reports it carried it out; returns the report.
    fn command(&self, command: &str) -> String {
        let mut fifo = OpenOptions::new().write(true).open(&self.fifo).unwrap();
        writeln!(fifo, "{command}").unwrap();
        drop(fifo);
        let name = command.split_whitespace().next().unwrap();
        self.wait_for_line(&format!("lazyfs: {name}"))
    }

    fn signal(&self, signal: libc::c_int) {
        #[allow(unsafe_code)]
        // SAFETY: kill only sends a signal to our own child process.
        let result = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(result, 0, "kill failed");
    }

    fn wait_for_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "lazyfs did not exit within {WAIT:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // Best effort: whatever a failed test left behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(&self.mount).stderr(Stdio::null()).status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn is_mounted(mount: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    let mount = mount.to_str().unwrap();
    mounts.lines().any(|line| line.split_whitespace().nth(1) == Some(mount))
}

fn wait_until_unmounted(mount: &Path) {
    let deadline = Instant::now() + WAIT;
    while is_mounted(mount) {
        assert!(Instant::now() < deadline, "{} is still mounted after {WAIT:?}", mount.display());
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_power_cut_keeps_only_the_synced_bytes() {
    require_mount!();
    let mut m = Mounted::start("power-cut");
    let (path, on_disk) = (m.mount.join("log"), m.backing.join("log"));
    let mut file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
    file.write_all(&[b'a'; 4096]).unwrap();
    file.sync_data().unwrap();
    file.write_all(&[b'b'; 1000]).unwrap();
    file.write_all_at(b"zz", 10).unwrap();

    let mut expected = vec![b'a'; 4096];
    expected[10..12].copy_from_slice(b"zz");
    expected.extend_from_slice(&[b'b'; 1000]);
    assert_eq!(fs::read(&path).unwrap(), expected, "the mount shows the unsynced writes");
    assert_eq!(fs::metadata(&path).unwrap().len(), 5096);
    assert_eq!(fs::read(&on_disk).unwrap(), [b'a'; 4096], "the backing file has only the synced bytes");
    assert_eq!(m.command("status"), "lazyfs: status: 1 files hold 1002 unsynced bytes; 2 inodes known");
    drop(file);

    assert_eq!(m.command("power-cut"), "lazyfs: power-cut: dropped 1002 unsynced bytes in 1 files");
    assert_eq!(fs::read(&path).unwrap(), [b'a'; 4096], "after the power cut the mount shows the synced bytes");
    assert_eq!(fs::metadata(&path).unwrap().len(), 4096);
    assert_eq!(fs::read(&on_disk).unwrap(), [b'a'; 4096]);

    // Names are durable at once: a file renamed into place survives, with what was synced.
    let tmp = m.mount.join("meta.tmp");
    fs::write(&tmp, b"unsynced").unwrap();
    fs::rename(&tmp, m.mount.join("meta")).unwrap();
    File::open(&m.mount).unwrap().sync_all().unwrap();
    m.command("power-cut");
    assert_eq!(fs::read(m.mount.join("meta")).unwrap(), b"");
    assert!(!tmp.exists());

    m.signal(libc::SIGTERM);
    m.wait_for_line("lazyfs: unmounted");
    assert!(m.wait_for_exit().success());
    assert!(!is_mounted(&m.mount));
}

#[test]
fn fsync_write_and_space_faults_fail_with_their_errors() {
    require_mount!();
    let m = Mounted::start("faults");
    let path = m.mount.join("f");
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
    file.write_all_at(b"synced", 0).unwrap();
    file.sync_data().unwrap();

    m.command("fail-fsync on");
    file.write_all_at(b" lost", 6).unwrap();
    assert_eq!(file.sync_data().unwrap_err().raw_os_error(), Some(libc::EIO));
    assert_eq!(File::open(&m.mount).unwrap().sync_all().unwrap_err().raw_os_error(), Some(libc::EIO));
    m.command("fail-fsync off");
    assert_eq!(fs::read(&path).unwrap(), b"synced", "a failed fsync dropped the unsynced bytes");
    file.sync_data().unwrap();
    assert_eq!(fs::read(m.backing.join("f")).unwrap(), b"synced");

    m.command("enospc on");
    assert_eq!(file.write_all_at(b"grow", 6).unwrap_err().raw_os_error(), Some(libc::ENOSPC));
    file.write_all_at(b"S", 0).unwrap();
    m.command("enospc off");
    file.write_all_at(b"!", 6).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"Synced!");

    m.command("fail-write on");
    assert_eq!(file.write_all_at(b"x", 0).unwrap_err().raw_os_error(), Some(libc::EIO));
    m.command("fail-write off");
    assert!(m.command("no-such-command").contains("ignored"));
}

#[test]
fn a_killed_lazyfs_leaves_no_mount_behind() {
    require_mount!();
    let mut m = Mounted::start("killed");
    m.signal(libc::SIGKILL);
    m.wait_for_exit();
    wait_until_unmounted(&m.mount);
}
