"""Suite-wide settings. Each package's tests live in tests/<package>/ with their own fixtures."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Offscreen rendering without a display (Mesa software EGL); set before mujoco is imported.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def firmware_process(tmp_path):
    """A virtual robot in its own process (real time, nominal profile, picked up 1 s after a fall)
    behind a pty symlink: (process, device path). Its own process, so a test can stop it (SIGSTOP)
    and make the host's writes stall for real."""
    device = tmp_path / "tty"
    proc = subprocess.Popen([sys.executable, "-m", "firmware_bridge.virtual_robot", "--device", str(device),
                             "--profile", "nominal", "--respawn-after-s", "1.0", "--log-level", "WARNING"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not device.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "virtual robot did not create its pty"
        time.sleep(0.1)
    yield proc, str(device)
    os.kill(proc.pid, signal.SIGCONT)
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
