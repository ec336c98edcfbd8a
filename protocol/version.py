"""The project's version, one source: pyproject.toml's [project] version.

Why here: the robot says it in HELLO (software_version) and the learner writes it into every ONNX
export (producer_version, h2o.project_version), so a file or a log line names the code that made
it. Robot-safe (standard library only).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

DISTRIBUTION = "h2o-robot"
UNKNOWN = "0+unknown"
_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
_VERSION_LINE = re.compile(r'^version\s*=\s*"([^"]+)"', re.MULTILINE)


@functools.lru_cache(maxsize=1)
def project_version() -> str:
    """The version of the code that is running: the source tree's pyproject.toml when run from a
    checkout (an installed copy elsewhere may be another version), else the installed
    distribution's metadata, else "0+unknown"."""
    if _PYPROJECT.is_file():
        text = _PYPROJECT.read_text(encoding="utf-8")
        section = text.split("[project]", 1)[1].split("\n[", 1)[0] if "[project]" in text else ""
        match = _VERSION_LINE.search(section)
        if match:
            return match.group(1)
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        log.warning("no %s in the source tree and %s is not installed: version %s", _PYPROJECT.name, DISTRIBUTION, UNKNOWN)
        return UNKNOWN
