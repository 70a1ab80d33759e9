"""How a worker reports: one JSON object per line on stdout, each an event of the history.

    {"time": ns, "process": "confluent-p0", "type": "invoke"|"ok"|"fail"|"info",
     "f": "send"|"poll"|"commit"|"committed"|"assign"|"revoke"|"crash"|..., "value": ...}

`time` is the wall clock in nanoseconds; every worker and the harness run on one machine and
read the same clock (libfaketime skews only the brokers).
"""

import json
import signal
import sys
import time


class Reporter:
    def __init__(self, process):
        self.process = process
        self.stopping = False
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)

    def _stop(self, *_):
        self.stopping = True

    def emit(self, type_, f, value=None, at=None):
        event = {"time": at if at is not None else time.time_ns(), "process": self.process,
                 "type": type_, "f": f, "value": value}
        sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    def now(self):
        return time.time_ns()
