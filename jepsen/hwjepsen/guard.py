"""The cleanup guard: a process the harness starts in a session of its own, holding the read end
of a pipe whose write end only the harness holds. When the harness ends, however it ends (a
normal exit, Ctrl-C, SIGKILL, a crash), the pipe reaches end of file and the guard removes
everything the run set up: processes in the test namespaces, the namespaces, mounts.

    python -m hwjepsen.guard MOUNTS_FILE
"""

import os
import signal
import sys

from . import mounts, net


def main():
    mounts_file = sys.argv[1] if len(sys.argv) > 1 else None
    # Ctrl-C at the terminal reaches the whole foreground process group; the guard has its own
    # session, but ignore the signals anyway: its one job is to outlive the harness.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):
        pass
    net.destroy_all()
    if mounts_file:
        mounts.unmount_listed(mounts_file)
    os._exit(0)


if __name__ == "__main__":
    main()
