"""One way to replace a file so that a crash or power cut leaves the old or the new file, never half.

Why a shared helper: the robot's stats file, the learner's checkpoints, exported policies and the
deployable policy's evidence all need the same four steps, and copies of them drifted (only one
of three fsync'd the folder, without which a power cut can undo the rename):
temp file in the same folder -> write + fsync -> rename over the target -> fsync the folder.

Robot-safe (standard library only).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def fsync_dir(directory: str | Path) -> None:
    """Make a rename or a new file in `directory` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the rename is then as durable as they allow
    finally:
        os.close(fd)


def write_atomic(path: str | Path, data: bytes | str | Callable[[BinaryIO], None], mode: int = 0o644) -> None:
    """Replace `path` with `data` (bytes, text as UTF-8, or a function writing to the open binary
    file, e.g. `lambda f: torch.save(obj, f)`), atomically and durably; the file gets `mode`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
