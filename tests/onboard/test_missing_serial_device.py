"""A missing serial device ends the robot program with a message that says what to check (exit 2),
not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_missing_serial_device_says_what_to_check(tmp_path):
    missing = tmp_path / "ttyNoSuchRobot"
    proc = subprocess.run([sys.executable, str(ROOT / "onboard" / "run.py"), "--link.url", str(missing),
                           "--run.duration_s", "1"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "cannot open the serial link" in proc.stderr and str(missing) in proc.stderr
    assert "dialout" in proc.stderr and "Traceback" not in proc.stderr
