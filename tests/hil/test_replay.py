"""Lock-step sensor replay into the unchanged onboard program: bit-identical or a readable diff."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.hil.compare import compare_host_streams
from firmware_bridge.hil.replayer import SensorReplayer
from firmware_bridge.hil.recordings import FW_TO_HOST, HOST_TO_FW, decode_recording, recorded_steps
from onboard.safety import Operator
from protocol.frames import FrameType
from sim_models.controller import LQR_GAIN, BalanceController

from hil_testkit import LOCKSTEP_SAFETY, record_onboard_run, replay_into_onboard

pytestmark = pytest.mark.timeout(90)
REPO = Path(__file__).resolve().parents[2]
TICKS = 300


class GainStepController:
    """The classical controller whose gains are scaled from its `at_tick`-th action on."""

    def __init__(self, at_tick: int, scale: float) -> None:
        self.inner = BalanceController("stand_still")
        self.at_tick, self.scale, self.calls = at_tick, scale, 0

    def reset(self) -> None:
        self.inner.reset()

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.calls == self.at_tick:
            self.inner.gain = LQR_GAIN * self.scale
        self.calls += 1
        return self.inner.act(obs)


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """One 300-tick lock-step run of onboard (classical controller) on the nominal virtual robot."""
    tmp = tmp_path_factory.mktemp("rec")
    return record_onboard_run(tmp / "run.mcap", tmp, ticks=TICKS, profile="nominal")


def test_recording_has_one_state_per_command(recording):
    rec = decode_recording(recording)
    commands = rec.of(HOST_TO_FW, FrameType.COMMAND)
    states = rec.of(FW_TO_HOST, FrameType.STATE)
    assert len(commands) == TICKS
    # the start-up ENABLE's answer + one per COMMAND + the closing DISABLE's answer
    assert len(states) == TICKS + 2
    assert recorded_steps(rec).applied.all()
    assert rec.complete and not any(rec.dropped.values())


def test_replay_into_onboard_gives_bit_identical_commands(recording, replay_regression):
    diff = replay_regression(recording)  # the one-line regression test
    assert diff.identical
    assert diff.ticks_compared == TICKS and diff.divergent_ticks == 0
    assert diff.frames_compared == diff.original_frames == TICKS + 3  # 2 ENABLE + commands + DISABLE
    assert "IDENTICAL" in diff.report()


def test_changed_gains_diff_names_the_first_divergent_tick(recording, replay_regression):
    diff = replay_regression(recording, controller=GainStepController(at_tick=120, scale=1.3), expect_identical=False)
    assert not diff.identical
    assert diff.first_divergent_tick == 120
    assert diff.first_divergent_frame == 2 + 120  # after the two ENABLEs
    assert diff.divergent_ticks > 0
    # only the wheel torques differ (the stand_still action drives the wheels)
    tau = diff.deltas_at_first["tau_ff"]
    assert tau[2] != 0 and tau[5] != 0 and tau[0] == tau[1] == tau[3] == tau[4] == 0
    assert all(not any(diff.max_abs_delta[k]) for k in ("q_des", "qd_des", "kp", "kd"))
    report = diff.report()
    assert "first divergent tick 120" in report and "left_wheel" in report


def test_estop_shows_in_the_state_machine_transitions(recording, replay_regression):
    def operator(app, tick: int) -> None:
        if tick == 50:
            app.loop.request(Operator.ESTOP)

    # After ESTOP the host sends no COMMAND, so each further lock-step tick waits out its timeout: keep it short.
    diff = replay_regression(recording, expect_identical=False, on_tick=operator, ticks=55)
    assert diff.first_divergent_tick == 50
    assert (50, "ESTOP") in diff.transitions_replayed
    assert "ESTOP" not in [name for _, name in diff.transitions_original]
    assert "state-machine frames replayed" in diff.report()


def test_damping_shows_as_a_command_kind_transition(recording, replay_regression):
    """A tighter tilt limit sends the replayed onboard to DAMPING: the diff says from which tick."""
    diff = replay_regression(recording, config={"safety.tilt_limit_rad": 0.005}, expect_identical=False)
    assert diff.command_kinds_original == [(0, "DRIVE")]
    kinds = dict((kind, tick) for tick, kind in diff.command_kinds_replayed)
    assert "DAMPING" in kinds and kinds["DAMPING"] == diff.first_divergent_tick
    assert "command kinds replayed" in diff.report()


def _policy_file(tmp: Path, version: int, gain_scale: float = 1.0) -> str:
    from devkit.dev_policies import mlp_policy_bytes, sha256_hex

    gain = np.array([[1.0, 2.0, 30.0, 3.0]]) / 3.0 * gain_scale  # a linear balance law, run through tanh
    data = mlp_policy_bytes(4, 1, version=version, linear_gain=gain, hidden=16, seed=version)
    path = tmp / f"policy_v{version}.onnx"
    path.write_bytes(data)
    path.with_suffix(".onnx.sha256").write_text(sha256_hex(data))
    return str(path)


def test_same_onnx_policy_replays_bit_identical_and_another_diverges(tmp_path, record_run, replay_regression):
    """The POLICY driver too: the same ONNX policy gives the same commands; another one does not."""
    policy = _policy_file(tmp_path, version=3)
    rec = record_run("policy.mcap", ticks=150, overrides={"run.policy_path": policy})
    diff = replay_regression(rec, config={"run.policy_path": policy})
    assert diff.identical and diff.ticks_compared == 150
    other = replay_regression(rec, config={"run.policy_path": _policy_file(tmp_path, version=4, gain_scale=1.2)},
                              expect_identical=False)
    assert not other.identical and other.divergent_ticks > 0
    # the controller alone (no policy) drives differently from the policy run
    assert not replay_regression(rec, expect_identical=False).identical


def test_truncated_recording_replays_up_to_its_last_complete_record(recording, tmp_path):
    cut = tmp_path / "cut.mcap"
    data = recording.read_bytes()
    # Mid-record, as a kill -9 leaves it: from 55% of the file on, the first cut that does not fall
    # exactly on a record boundary (where it falls depends on the recording's timing).
    for end in range(int(len(data) * 0.55), int(len(data) * 0.55) + 4096, 7):
        cut.write_bytes(data[:end])
        rec = decode_recording(cut)
        if rec.tail_bytes > 0:
            break
    assert not rec.complete and rec.tail_bytes > 0
    n_states = len(rec.of(FW_TO_HOST, FrameType.STATE))
    assert 0 < n_states < TICKS
    diff, replayer = replay_into_onboard(cut, tmp_path / "replayed.mcap", tmp_path)
    assert replayer.counters.states_sent == n_states
    assert replayer.done.is_set()
    assert diff.identical, diff.report()
    assert diff.frames_compared == diff.original_frames


def test_timed_replay_plays_every_state_at_the_recorded_pace(recording, tmp_path):
    from firmware_bridge.link import SerialLink, SerialLinkConfig

    n_states = len(decode_recording(recording).of(FW_TO_HOST, FrameType.STATE))
    out = tmp_path / "timed.mcap"
    with SensorReplayer(recording, lockstep=False, record_path=out, speed=4.0) as replayer:
        link = SerialLink(SerialLinkConfig(url=replayer.device))
        link.configure()
        try:
            link.send_heartbeat()  # the host's first byte starts the playback
            assert replayer.done.wait(20)
            deadline = time.monotonic() + 5
            while link.states_received < n_states and time.monotonic() < deadline:
                time.sleep(0.01)
            assert link.states_received == n_states
            deadline = time.monotonic() + 5
            while replayer.counters.heartbeats_echoed < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert replayer.counters.heartbeats_echoed == 1
        finally:
            link.close()
    assert decode_recording(out).of(HOST_TO_FW, FrameType.HEARTBEAT)


def test_unchanged_onboard_run_py_against_the_replayer(recording, tmp_path):
    """onboard/run.py as a separate program, only its --link.url pointed at the replay pty."""
    out = tmp_path / "replayed.mcap"
    with SensorReplayer(recording, lockstep=True, record_path=out) as replayer:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.run(
            [sys.executable, str(REPO / "onboard" / "run.py"), "--link.url", replayer.device,
             "--run.lockstep", "true", "--run.stream", "false", "--run.duration_s", "4",
             "--run.stats_file", str(tmp_path / "stats.json"), "--run.log_level", "WARNING",
             "--safety.stale_state_ms", str(LOCKSTEP_SAFETY["safety.stale_state_ms"])],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert replayer.done.is_set(), f"{replayer.counters}\n{proc.stdout}\n{proc.stderr[-2000:]}"
    diff = compare_host_streams(recording, out)
    # run.py keeps ticking after the recording ends (DAMPING on stale state): those frames are extra
    assert diff.ticks_compared == TICKS, f"{diff.report()}\n{proc.stdout}\n{proc.stderr[-2000:]}"
    assert diff.divergent_ticks == 0, f"{diff.report()}\n{proc.stdout}\n{proc.stderr[-2000:]}"
    assert diff.first_divergent_frame in (None, TICKS + 2)  # at most the closing DISABLE differs


def test_replayer_rejects_a_recording_without_states(tmp_path):
    from protocol.recording import Writer

    empty = tmp_path / "empty.mcap"
    with Writer(empty) as w:
        w.write(HOST_TO_FW, 0, b"\x00")
    with pytest.raises(ValueError, match="no firmware STATE"):
        SensorReplayer(empty)
    with pytest.raises(ValueError, match="speed"):
        SensorReplayer(_one_state_recording(tmp_path), speed=0)


def _one_state_recording(tmp_path: Path) -> Path:
    from protocol.frames import encode_state
    from protocol.recording import Writer
    from protocol.robot_types import RobotState

    path = tmp_path / "one.mcap"
    with Writer(path) as w:
        w.write(FW_TO_HOST, 0, encode_state(RobotState(), 0))
    return path
