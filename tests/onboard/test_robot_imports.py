"""The robot side stays light: onboard imports neither torch nor mujoco (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CODE = """
import sys
import onboard.run, onboard.app, onboard.loop, onboard.streamer, onboard.policy, onboard.config
import onboard.status, onboard.spool, onboard.batcher, onboard.safety, onboard.scheduler, onboard.realtime
from onboard.app import make_controller
make_controller("stand_still")
print(",".join(m for m in ("torch", "mujoco", "onnx") if m in sys.modules))
"""


def test_onboard_imports_without_torch_or_mujoco():
    out = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == ""


LAZY_RECORDING = """
import sys
import onboard.run, onboard.app, firmware_bridge.link, firmware_bridge.recorder
from firmware_bridge.link import SerialLink, SerialLinkConfig
link = SerialLink(SerialLinkConfig(url="loop://"))
link.configure()
link.close()
before = sorted(m for m in ("mcap", "lz4", "zstandard") if m in sys.modules)
from firmware_bridge.recorder import SerialByteRecorder
SerialByteRecorder(sys.argv[1]).close()
print(",".join(before) + "|" + str("mcap" in sys.modules))
"""


def test_the_serial_link_loads_the_recording_libraries_only_when_it_records(tmp_path):
    """A robot that does not record never imports mcap, lz4 or zstandard (start-up time, memory);
    making a recorder is what loads them."""
    out = subprocess.run([sys.executable, "-c", LAZY_RECORDING, str(tmp_path / "r.mcap")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "|True"
    assert (tmp_path / "r.mcap").stat().st_size > 0
