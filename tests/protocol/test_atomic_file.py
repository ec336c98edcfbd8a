"""protocol.atomic_file: a replaced file holds the old or the new content, never a part."""

from __future__ import annotations

import os
import stat

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
