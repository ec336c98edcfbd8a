"""The robot side stays light: onboard imports neither torch nor mujoco (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CODE = """
import sys
import onboard.run, onboard.app, onboard.loop, onboard.streamer, onboard.policy, onboard.config
import onboard.status, onboard.spool, onboard.recorder, onboard.safety, onboard.scheduler, onboard.realtime
from onboard.app import make_controller
make_controller("stand_still")
print(",".join(m for m in ("torch", "mujoco", "onnx") if m in sys.modules))
"""


def test_onboard_imports_without_torch_or_mujoco():
    out = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == ""
