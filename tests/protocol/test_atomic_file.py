"""protocol.atomic_file: a replaced file holds the old or the new content, never a part."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from protocol.atomic_file import write_atomic


def test_bytes_text_and_writer_functions_replace_the_file(tmp_path):
    path = tmp_path / "sub" / "stats.json"
    write_atomic(path, b"one")
    assert path.read_bytes() == b"one"
    write_atomic(path, "twö")
    assert path.read_text(encoding="utf-8") == "twö"
    write_atomic(path, lambda f: f.write(b"three"), mode=0o600)
    assert path.read_bytes() == b"three"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["stats.json"]  # no temp file left behind


def test_a_failing_writer_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    write_atomic(path, b"old")

    def half_then_crash(f):
        f.write(b"new but not fin")
        raise RuntimeError("disk pulled")

    with pytest.raises(RuntimeError, match="disk pulled"):
        write_atomic(path, half_then_crash)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


# Renames that are not "write a file's new content": each says why it is not write_atomic.
NOT_WRITES = {
    "learner/service/store.py": "a damaged segment's clean copy swapped in after the original is linked aside",
    "learner/service/trainer.py": "a rejected checkpoint moved aside (no new content)",
    "learner/train.py": "a member's previous checkpoint set aside while the population saves (no new content)",
    "firmware_bridge/virtual_robot/pty_port.py": "a symlink to the pty swapped in",
}
RENAMES = re.compile(r"\bos\.(replace|rename)\(|\.rename\(|\.replace\([^)\"']*(tmp|temp)|mkstemp\(|NamedTemporaryFile\(")


def test_every_file_replacement_goes_through_the_one_atomic_writer():
    """One writer with the folder fsync: a module that renames a temp file over a target itself
    (the copies this module replaced drifted: only one fsync'd the folder) is listed here."""
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=repo, capture_output=True, text=True, check=True).stdout
    sources = [p for p in out.split() if p.split("/", 1)[0] in
               ("protocol", "onboard", "learner", "firmware_bridge", "sim_models", "task_contract")]
    found = {p for p in sources if RENAMES.search((repo / p).read_text(encoding="utf-8"))}
    assert found - {"protocol/atomic_file.py"} == set(NOT_WRITES), sorted(found)
