"""The robot imports protocol/: it must load without torch, mujoco or gymnasium."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_protocol_imports_no_heavy_packages() -> None:
    code = (
        "import sys\n"
        "import protocol, protocol.frames, protocol.messages, protocol.recording, protocol.robot_types\n"
        "heavy = sorted(m for m in ('torch', 'mujoco', 'gymnasium') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_firmware_side_modules_import_no_heavy_packages() -> None:
    """The firmware rules and the stand plant run where MuJoCo and torch are not installed."""
    code = (
        "import sys\n"
        "import firmware_bridge.firmware, firmware_bridge.stand_plant, firmware_bridge.link\n"
        "heavy = sorted(m for m in ('torch', 'mujoco', 'gymnasium') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
