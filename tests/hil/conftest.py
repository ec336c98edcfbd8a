"""HIL fixtures: record a lock-step onboard run on the virtual robot, replay a recording into onboard.

`replay_regression` turns a recording into a regression test in one line:

    def test_balance_run(replay_regression):
        replay_regression(path_to_recording)                           # commands must be bit-identical
        diff = replay_regression("run.mcap", config={"safety.tilt_limit_rad": 0.3}, expect_identical=False)

Everything is real: the virtual robot (MuJoCo) behind a pty, the recording tap, the unchanged
onboard program (OnboardApp, in process) on the replayer's pty, MCAP files on disk.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hil_testkit import record_onboard_run, replay_into_onboard

from firmware_bridge.hil.compare import CommandDiff


@pytest.fixture
def record_run(tmp_path):
    """record_run(name, ticks=300, profile="nominal", controller=None, overrides=None) -> recording path."""
    def _record(name: str = "run.mcap", **kw) -> Path:
        return record_onboard_run(tmp_path / name, tmp_path, **kw)
    return _record


@pytest.fixture
def replay_regression(tmp_path):
    """replay_regression(path, config=None, controller=None, expect_identical=True, on_tick=None, ticks=None).

    Replays the recording's firmware side into the unchanged onboard program (lock-step) and
    compares the commands it sends with the recorded ones. With expect_identical (default) a
    difference fails the test with the diff report; otherwise the diff is returned to inspect.
    `config`: onboard overrides {"section.field": value}; `controller`: the STAND controller;
    `on_tick(app, i)`: called before tick i (e.g. operator requests); `ticks`: default, the
    recording's COMMAND count. Returns the CommandDiff.
    """
    counter = iter(range(1_000_000))

    def _replay(path: str | Path, config: dict[str, Any] | None = None, controller=None,
                expect_identical: bool = True, on_tick=None, ticks: int | None = None) -> CommandDiff:
        out = tmp_path / f"replayed_{next(counter)}.mcap"
        diff, _ = replay_into_onboard(path, out, tmp_path, ticks=ticks, controller=controller, overrides=config,
                                      on_tick=on_tick)
        if expect_identical:
            assert diff.identical, f"replay of {path} diverged:\n{diff.report()}"
        return diff

    return _replay
