"""Every program refuses an abbreviated option with exit 2 (argparse would otherwise accept
`--run.rate 100` as `--run.rate_hz 100`, or `--total 5` as `--total-updates 5`, silently)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (command, an abbreviation of one of its long options)
PROGRAMS = [
    (["onboard/run.py"], ["--run.rate", "100"]),
    (["-m", "onboard.control"], ["--endp", "ipc://x"]),
    (["-m", "learner.train"], ["--total", "5"]),
    (["learner/serve.py"], ["--algo", "h2o"]),
    (["-m", "learner.demo"], ["--minu", "1"]),
    (["-m", "learner.fleet"], ["--robo", "2"]),
    (["-m", "learner.latency", "x.hdf5"], ["--max", "2"]),
    (["-m", "learner.experiments"], ["--skip", "x.toml"]),
    (["-m", "learner.service.keys", "create"], ["--na", "x"]),
    (["-m", "firmware_bridge.virtual_robot"], ["--prof", "nominal"]),
    (["-m", "firmware_bridge.hil", "list"], ["--rec", "x"]),
    (["-m", "sim_models.collect"], ["--behav", "medium"]),
    (["-m", "sim_models.minari_io", "export"], ["--desc", "x"]),
    (["-m", "sim_models.minari_io", "import"], ["--sour", "h2o/x-v0"]),
]


@pytest.mark.parametrize("command,abbreviation", PROGRAMS, ids=[" ".join(c) for c, _ in PROGRAMS])
def test_abbreviated_option_is_refused(command, abbreviation, tmp_path):
    # run from an empty folder: a program that wrongly accepted the option writes nothing into the repo
    command = [str(ROOT / c) if c.endswith(".py") else c for c in command]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, *command, *abbreviation], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-1500:])
    assert "unrecognized arguments" in r.stderr or "invalid choice" in r.stderr or "error" in r.stderr.lower()
