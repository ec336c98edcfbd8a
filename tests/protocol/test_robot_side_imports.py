"""The robot imports protocol/ and the firmware side: they must load without torch, mujoco or gymnasium."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def heavy_modules_after_importing(modules: str) -> str:
    """Import `modules` (comma-separated) in a fresh interpreter; the heavy packages that came along."""
    code = (
        "import sys\n"
        f"import {modules}\n"
        "heavy = sorted(m for m in ('torch', 'mujoco', 'gymnasium') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_protocol_imports_no_heavy_packages() -> None:
    modules = "protocol, protocol.frames, protocol.messages, protocol.recording, protocol.robot_types"
    assert heavy_modules_after_importing(modules) == ""


def test_firmware_side_modules_import_no_heavy_packages() -> None:
    """The firmware rules and the stand plant run where MuJoCo and torch are not installed."""
    assert heavy_modules_after_importing("firmware_bridge.virtual_robot.firmware, firmware_bridge.virtual_robot.stand_plant, firmware_bridge.link") == ""
