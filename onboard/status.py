"""Live status: one compact log line per period and a JSON stats file written atomically.

Runs on its own thread (formatting and file writes stay off the loop). The stats file is
written to a temp file, fsync'd and renamed over the old one, so a reader (a dashboard, a test,
`cat`) never sees half a file.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from protocol import strict_json
from protocol.atomic_file import write_atomic

log = logging.getLogger("onboard.status")


def write_json_atomic(path: str, data: dict[str, Any]) -> None:
    """The stats file, strict JSON (NaN -> null), replaced atomically (protocol/atomic_file.py)."""
    write_atomic(path, strict_json.dumps(data, default=str, indent=1))


def status_line(s: dict[str, Any]) -> str:
    """rate, period error p99, tick p99, missed, FSM mode, policy, learner link, spool depth."""
    pe = s.get("period_error_ms", {})
    cm = s.get("compute_ms", {})
    link = s.get("learner", {})
    learner = "off" if not link else ("up" if link.get("connected") else "DOWN")
    return (
        f"{s.get('rate_hz', 0):7.1f} Hz | err p99 {pe.get('p99', float('nan')):.3f} ms max {pe.get('max', float('nan')):.3f}"
        f" | tick p99 {cm.get('p99', float('nan')):.3f} ms | missed {s.get('missed_deadlines', 0)}"
        f" | {s.get('mode', '?'):7s} | policy v{s.get('policy_version', -1)}"
        f" | state {s.get('state_age_ms')} ms | learner {learner} spool {link.get('spool_rows', 0)}"
    )


class StatusReporter:
    """Calls `collect()` every `interval_s`, logs the line, rewrites the stats file."""

    def __init__(self, collect: Callable[[], dict[str, Any]], stats_file: str = "", interval_s: float = 1.0) -> None:
        self.collect = collect
        self.stats_file = stats_file
        self.interval_s = interval_s
        self.write_errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self.report()  # the final figures, even after Ctrl-C

    def report(self) -> dict[str, Any]:
        s = self.collect()
        log.info("%s", status_line(s))
        if self.stats_file:
            try:
                write_json_atomic(self.stats_file, s)
            except OSError as e:
                self.write_errors += 1
                log.warning("stats file %s not written: %s", self.stats_file, e)
        return s

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.report()
            except Exception:
                log.exception("status report failed")
