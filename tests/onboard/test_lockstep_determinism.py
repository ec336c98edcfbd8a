"""Lock-step runs are a function of their seed: two runs send bit-identical bytes to the firmware.

Why it matters: a lock-step run is the team's reproducible experiment (HIL replays, bisecting a
behaviour change). The virtual robot answers ENABLE with an extra STATE of the same tick; the loop
must take the STATE whose firmware clock moved forward, not whichever one is newest when it looks.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import time

from firmware_bridge.recorder import HOST_TO_FW
from firmware_bridge.virtual_robot import VirtualRobot, VirtualRobotConfig, make_plant
from onboard.app import OnboardApp
from onboard.config import OnboardConfig
from devkit.dev_policies import mlp_policy_bytes, sha256_hex
from onboard.policy import PolicyCandidate
from protocol.frames import FrameDecoder, FrameType

pytestmark = pytest.mark.timeout(120)

TICKS = 300


class HostBytes:
    """The bytes the firmware received from the host (a real ByteRecorder, in memory)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def record(self, channel: str, t_s: float, data: bytes) -> None:
        if channel == HOST_TO_FW:
            self.chunks.append(bytes(data))


class SlowFirstTicks:
    """The real MuJoCo plant, with its first physics steps taking 30 ms (a busy firmware).

    Why: it widens the window in which the answer to ENABLE has arrived and the answer to the
    COMMAND sent right after it has not, the window in which a loop taking "the newest STATE"
    decides on a repeated tick. Without it the race shows only on a loaded machine.
    """

    def __init__(self, plant, slow_steps: int = 5) -> None:
        self.plant, self.slow_steps = plant, slow_steps
        self.control_dt = plant.control_dt
        self.torque_limits = plant.torque_limits

    def reset(self):
        return self.plant.reset()

    def step(self, cmd):
        if self.slow_steps > 0:
            self.slow_steps -= 1
            time.sleep(0.03)
        return self.plant.step(cmd)


def lockstep_run(tmp_path, name: str, seed: int, rows: list | None = None) -> bytes:
    """300 ticks: PASSIVE -> STAND (second ENABLE) -> POLICY with seeded exploration."""
    recorder = HostBytes()
    vr_cfg = VirtualRobotConfig(profile="moderate", device_link=None, lockstep=True, seed=0)
    robot = VirtualRobot(vr_cfg, plant=SlowFirstTicks(make_plant(vr_cfg)), recorder=recorder).start()
    cfg = OnboardConfig()
    cfg.link.url = robot.device
    cfg.run.lockstep, cfg.run.stream, cfg.run.explore, cfg.run.seed = True, False, True, seed
    cfg.run.stats_file = str(tmp_path / f"{name}.json")
    cfg.policy.inference_budget_ms = 50.0
    app = OnboardApp(cfg)
    if rows is not None:
        app.recorder.sink = lambda batch: rows.append(batch) or True
    try:
        app.start()
        data = mlp_policy_bytes(4, 1, version=1, linear_gain=np.array([[1.0, 2.0, 30.0, 3.0]]) / 3.0)
        app.loop.activate_policy(app.loader.validate_now(PolicyCandidate(1, sha256_hex(data), data)))
        app.run(threading.Event(), max_ticks=TICKS)
        app.recorder.flush()
        assert app.fsm.mode.value == "POLICY" and app.loop.no_new_state == 0
    finally:
        app.close(drain_s=0.0)
        robot.stop()
    return b"".join(recorder.chunks)


def test_two_lockstep_runs_with_the_same_seed_send_identical_bytes(tmp_path):
    rows: list = []
    a = lockstep_run(tmp_path, "a", seed=3, rows=rows)
    t_us = np.concatenate([r["t_us"] for r in rows])
    assert len(t_us) >= TICKS - 5
    assert np.all(np.diff(t_us) == 5000)  # every tick decided on the next firmware tick's STATE
    b = lockstep_run(tmp_path, "b", seed=3)
    frames = FrameDecoder().feed(a)
    types = [f.type for f in frames]
    assert types.count(FrameType.ENABLE) >= 2  # the race's trigger is there
    assert types.count(FrameType.COMMAND) >= TICKS
    assert a == b
    assert lockstep_run(tmp_path, "c", seed=4) != a  # and the seed matters (exploration noise)
