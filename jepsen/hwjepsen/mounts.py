"""Mounts a run makes (small filesystems for the disk-full fault, FUSE filesystems for power
loss), listed one path per line in a file so the guard can undo them after a crash."""

import subprocess
from pathlib import Path


def record(mounts_file, path):
    with open(mounts_file, "a") as f:
        f.write(f"{path}\n")


def unmount_listed(mounts_file):
    try:
        paths = Path(mounts_file).read_text().split()
    except OSError:
        return
    for path in reversed(paths):
        subprocess.run(["umount", "-l", path], capture_output=True)
    Path(mounts_file).unlink(missing_ok=True)
