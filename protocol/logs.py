"""One logging set-up for every program: `setup_logging(level, file=None)`.

Why one: each program used to call `logging.basicConfig` with its own format (some with times,
some without, local time), so the logs of a robot, its learner and the tools could not be read
side by side. Here every line is

    2025-01-31T12:00:00.123Z INFO onboard.loop: message

with the time in UTC (ISO 8601, `Z`), the same on the robot and the learner whatever their time
zones. Why in protocol/: the robot program uses it too, and protocol/ is the robot-safe package
every side installs (standard library only here).

Calling it again replaces the handlers it installed before (a run that logs to another file, a
test calling main twice) and leaves any other handler alone (pytest's capture, a worker's own).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_OURS = "_h2o_setup_logging"  # attribute marking the handlers setup_logging installed


def formatter() -> logging.Formatter:
    """The one line format, with UTC times."""
    fmt = logging.Formatter(FORMAT, DATE_FORMAT)
    fmt.converter = time.gmtime
    return fmt


def parse_level(level: str | int) -> int:
    """A level name (any case) or number as the logging module's int; ValueError names the valid
    ones (a typo must not silently log at another level)."""
    if isinstance(level, int):
        return level
    name = str(level).strip().upper()
    if name.isdigit():
        return int(name)
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    return logging.getLevelName(name)


def file_handler(path: str | Path) -> logging.FileHandler:
    """A handler appending to `path` (its folder created) in the one format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(formatter())
    return handler


def setup_logging(level: str | int = "INFO", file: str | Path | None = None) -> None:
    """Root logger at `level`, to stderr and, if given, appended to `file`, in the one format."""
    value = parse_level(level)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
        old.close()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter())
    handlers: list[logging.Handler] = [console]
    if file is not None:
        handlers.append(file_handler(file))
    for handler in handlers:
        setattr(handler, _OURS, True)
        root.addHandler(handler)
    root.setLevel(value)
