"""Each broker's data directory on lazyfs (jepsen/lazyfs), for the faults that need a disk of
our own: power loss (unsynced writes dropped), a full disk (ENOSPC) and EIO on write or fsync.

    n<id>/backing   what the disk holds: written by lazyfs on fsync only
    n<id>/data      the mount point, the broker's data_dir
    n<id>/lazyfs.ctl  the control FIFO

Commands are acknowledged on lazyfs's stderr (`lazyfs: <command>...`); `command` waits for
that line, so a broker is never restarted before its power cut has happened.
"""

import os
import subprocess
import threading
import time
from pathlib import Path

from . import mounts

REPO = Path(__file__).resolve().parent.parent.parent
LAZYFS_TARGET = REPO / "target" / "lazyfs"
LAZYFS_BIN = LAZYFS_TARGET / "release" / "lazyfs"


def build_lazyfs():
    """cargo builds it into target/lazyfs (quick when nothing changed)."""
    subprocess.run(["cargo", "build", "--release", "--locked", "--manifest-path",
                    str(REPO / "jepsen" / "lazyfs" / "Cargo.toml")],
                   env=dict(os.environ, CARGO_TARGET_DIR=str(LAZYFS_TARGET)), check=True)


class LazyFs:
    def __init__(self, node_dir, mounts_file):
        node_dir = Path(node_dir)
        self.backing = node_dir / "backing"
        self.mount = node_dir / "data"
        self.control = node_dir / "lazyfs.ctl"
        self.log_path = node_dir / "lazyfs.log"
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mount.mkdir(parents=True, exist_ok=True)
        self.lines = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            [str(LAZYFS_BIN), "--backing", str(self.backing), "--mount", str(self.mount),
             "--control", str(self.control)],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True)
        mounts.record(mounts_file, self.mount)
        threading.Thread(target=self._pump, daemon=True).start()
        self._wait_for("mounted ", 30)

    def _pump(self):
        with open(self.log_path, "ab") as log:
            for raw in self.proc.stderr:
                log.write(raw)
                log.flush()
                with self.cond:
                    self.lines.append(raw.decode(errors="replace").strip())
                    self.cond.notify_all()

    def _wait_for(self, prefix, timeout_s, after=0):
        """The first stderr line from index `after` on that starts `lazyfs: <prefix>`."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                for line in self.lines[after:]:
                    if line.startswith(f"lazyfs: {prefix}"):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"lazyfs at {self.mount}: no '{prefix}' line "
                                       f"(see {self.log_path})")
                self.cond.wait(left)

    def command(self, command, timeout_s=30):
        """Sends one command and returns lazyfs's report of it."""
        with self.cond:
            seen = len(self.lines)
        with open(self.control, "w") as fifo:
            fifo.write(command + "\n")
        return self._wait_for(command.split()[0], timeout_s, after=seen)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["umount", "-l", str(self.mount)], capture_output=True)
