"""Recordings as frames (step pairing, cut, merge, export) and the replay_cli subcommands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hil_testkit import record_onboard_run

from firmware_bridge.recorder import FW_TO_HOST, HOST_TO_FW
from firmware_bridge.hil.recordings import (
    command_to_action,
    cut,
    decode_recording,
    merge,
    read_records,
    recorded_steps,
    transitions,
)
from firmware_bridge.hil.cli import main
from protocol.frames import FrameType, encode_command, encode_control, encode_state
from protocol.recording import Writer
from protocol.robot_types import MotorCommand, MotorMode, RobotState
from sim_models.datasets import load_d4rl
from sim_models.tasks import TASKS, get_task

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parents[2]


def state(t_us: int, mode: MotorMode = MotorMode.ENABLED, pitch: float = 0.0) -> RobotState:
    s = RobotState(t_us=t_us, mode=int(mode))
    s.imu_quat = np.array([np.cos(pitch / 2), 0, np.sin(pitch / 2), 0], np.float32)
    return s


def torque(tau: float) -> MotorCommand:
    return MotorCommand.torque([0, 0, tau, 0, 0, tau])


@pytest.fixture
def synthetic(tmp_path) -> Path:
    """ENABLE answered without a step, 4 steps, a DISABLE, then 2 steps while DISABLED."""
    path = tmp_path / "synthetic.mcap"
    seq = iter(range(100))
    with Writer(path) as w:
        t = 0
        w.write(FW_TO_HOST, t, encode_state(state(0, MotorMode.DISABLED), next(seq)))
        w.write(HOST_TO_FW, t, encode_control(FrameType.ENABLE, next(seq)))
        w.write(FW_TO_HOST, t, encode_state(state(0), next(seq)))  # same tick: mode only
        for k in range(4):
            t += 5_000_000
            w.write(HOST_TO_FW, t, encode_command(torque(0.3 * (k + 1)), next(seq)))
            w.write(FW_TO_HOST, t, encode_state(state(5000 * (k + 1), pitch=0.01 * k), next(seq)))
        w.write(HOST_TO_FW, t, encode_control(FrameType.DISABLE, next(seq)))
        w.write(FW_TO_HOST, t, encode_state(state(20000, MotorMode.DISABLED), next(seq)))
        for k in range(2):
            t += 5_000_000
            w.write(HOST_TO_FW, t, encode_command(torque(9.0), next(seq)))
            w.write(FW_TO_HOST, t, encode_state(state(25000 + 5000 * k, MotorMode.DISABLED), next(seq)))
    return path


def test_steps_pair_each_tick_with_the_command_in_force(synthetic):
    steps = recorded_steps(decode_recording(synthetic))
    assert len(steps) == 6 and len(steps.states) == 7
    assert [s.t_us for s in steps.states] == [0, 5000, 10000, 15000, 20000, 25000, 30000]
    np.testing.assert_allclose([c.tau_ff[2] for c in steps.commands], [0.3, 0.6, 0.9, 1.2, 9.0, 9.0], rtol=1e-6)
    # the ENABLE answer at t=0 made the first step start ENABLED; the DISABLE answer at 20 ms ended them
    assert steps.applied.tolist() == [True, True, True, True, False, False]


def test_export_keeps_applied_steps_with_task_rewards(synthetic):
    data = transitions(recorded_steps(decode_recording(synthetic)), "stand_still")
    task = get_task("stand_still")
    assert data["observations"].shape == (4, 4) and data["actions"].shape == (4, 1)
    np.testing.assert_allclose(data["actions"][:, 0], [0.1, 0.2, 0.3, 0.4], rtol=1e-5)
    for i in range(4):
        assert data["rewards"][i] == pytest.approx(task.reward(data["observations"][i], data["actions"][i],
                                                               data["next_observations"][i]))
    np.testing.assert_array_equal(data["observations"][1:], data["next_observations"][:-1])
    assert data["timeouts"].tolist() == [False, False, False, True]  # the recording's applied part ends


@pytest.mark.parametrize("name", sorted(TASKS))
def test_command_to_action_inverts_every_task_mapping(name):
    task = get_task(name)
    a = np.random.default_rng(1).uniform(-1, 1, task.act_dim).astype(np.float32)
    np.testing.assert_allclose(command_to_action(task, task.action_to_command(a)), a, atol=1e-6)


def test_cut_and_merge(synthetic, tmp_path):
    n = cut(synthetic, tmp_path / "cut.mcap", start_s=0.004, end_s=0.011)
    rec = decode_recording(tmp_path / "cut.mcap")
    assert n == 4 and len(rec.of(HOST_TO_FW, FrameType.COMMAND)) == 2
    assert merge([synthetic, tmp_path / "cut.mcap"], tmp_path / "m.mcap", prefixes=["a/", "b/"]) == 21
    records = decode_recording(tmp_path / "m.mcap")
    assert records.other_channels == {"a/" + HOST_TO_FW: 8, "a/" + FW_TO_HOST: 9, "b/" + HOST_TO_FW: 2, "b/" + FW_TO_HOST: 2}
    with pytest.raises(ValueError, match="prefixes"):
        merge([synthetic], tmp_path / "x.mcap", prefixes=["a/", "b/"])


@pytest.fixture(scope="module")
def onboard_recording(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    return record_onboard_run(tmp / "runs" / "run.mcap", tmp, ticks=120, profile="nominal")


def test_cli_inspect_cut_merge_export_compare_gap(onboard_recording, tmp_path, capsys):
    rec = str(onboard_recording)
    assert main(["inspect", rec, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["complete"] and info["physics_steps"] == 120 and info["steps_applied"] == 120
    assert info["channels"][HOST_TO_FW]["frames"] == {"ENABLE": 2, "COMMAND": 120, "DISABLE": 1}
    assert [name for _, name in info["control_frames"]] == ["ENABLE", "ENABLE", "DISABLE"]
    assert main(["list", str(onboard_recording.parent)]) == 0
    assert "run.mcap" in capsys.readouterr().out
    assert main(["cut", rec, str(tmp_path / "cut.mcap"), "--end", "0.05"]) == 0
    assert main(["merge", str(tmp_path / "m.mcap"), rec, str(tmp_path / "cut.mcap"), "--prefix", "a/", "--prefix", "b/"]) == 0
    assert main(["export", rec, str(tmp_path / "d.hdf5"), "--task", "stand_still"]) == 0
    data, meta = load_d4rl(tmp_path / "d.hdf5")
    assert data["observations"].shape == (120, 4) and meta["task"] == "stand_still"
    assert np.all(data["rewards"] > 25)  # upright and still: r = 30 - tau^2 - |s'|^2
    assert main(["compare", rec, rec]) == 0
    assert main(["compare", rec, str(tmp_path / "cut.mcap")]) == 1  # the cut one stops early
    assert "DIVERGED" in capsys.readouterr().out
    assert main(["gap", rec, "--profile", "nominal", "--profile", "severe", "--horizon", "40",
                 "--plot", str(tmp_path / "gap.png"), "--json", str(tmp_path / "gap.json")]) == 0
    reports = json.loads((tmp_path / "gap.json").read_text())
    assert [r["profile"] for r in reports] == ["nominal", "severe"]
    assert reports[1]["signals"]["pitch"]["rmse"] > 10 * reports[0]["signals"]["pitch"]["rmse"]
    assert (tmp_path / "gap.png").stat().st_size > 1000


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.mcap")]) == 2
    (tmp_path / "junk.mcap").write_bytes(b"not an mcap file at all")
    assert main(["inspect", str(tmp_path / "junk.mcap")]) == 2
    err = capsys.readouterr().err
    assert "missing.mcap" in err and "not an MCAP" in err
    assert main(["replay", str(tmp_path / "junk.mcap"), "--compare"]) == 2  # --compare needs --out


def test_cli_help_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "firmware_bridge.hil", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for sub in ("list", "inspect", "cut", "merge", "export", "tap", "replay", "compare", "gap"):
        assert sub in out.stdout


def test_harness_modules_import_without_mujoco_or_torch():
    """The tap, replayer, recordings and CLI may run on the robot computer (gap/export import lazily)."""
    code = ("import sys\n"
            "import firmware_bridge.hil.tap, firmware_bridge.hil.replayer, firmware_bridge.hil.compare, "
            "firmware_bridge.hil.recordings, firmware_bridge.hil.cli\n"
            "print(','.join(sorted(m for m in ('torch', 'mujoco', 'gymnasium') if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_tap_passes_a_noisy_line_through_unchanged(tmp_path):
    """Real time, 1% corrupted bytes: the host receives exactly the bytes the tap recorded."""
    import time

    from firmware_bridge.virtual_robot.faults import FaultConfig
    from firmware_bridge.hil.tap import SerialTap
    from firmware_bridge.link import SerialLink, SerialLinkConfig
    from firmware_bridge.virtual_robot import VirtualRobot, VirtualRobotConfig

    faults = FaultConfig(corrupt_byte_prob=0.01, seed=3)
    cfg = VirtualRobotConfig(profile="nominal", device_link=None, lockstep=False, faults=faults)
    with VirtualRobot(cfg) as robot, SerialTap(robot.device, tmp_path / "noisy.mcap") as tap:
        link = SerialLink(SerialLinkConfig(url=tap.device))
        link.configure()
        try:
            deadline = time.monotonic() + 10
            while link.states_received < 100 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            link.close()
        time.sleep(0.05)
        received = link.counters.bytes_in
        bad = sum(link.stats()["counters"].bad_frames.values())
    rec = decode_recording(tmp_path / "noisy.mcap")
    raw = sum(len(r.data) for r in read_records(tmp_path / "noisy.mcap")[0] if r.channel == FW_TO_HOST)
    assert link.states_received >= 100
    assert bad > 0 and sum(rec.dropped[FW_TO_HOST].values()) >= bad  # the damage is in the recording too
    assert 0 < received <= raw  # (the host attached a moment after the tap started recording)
