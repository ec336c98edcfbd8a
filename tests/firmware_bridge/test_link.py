"""SerialLink on its own: loop://, lifecycle rules, status returns, and a dying port."""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.link import LinkError, LinkState, SerialLink, SerialLinkConfig, WriteStatus
from firmware_bridge.virtual_robot.pty_port import PtyPort
from protocol.frames import encode_heartbeat, encode_state
from protocol.robot_types import MotorCommand, MotorMode, RobotState


def test_loop_url_delivers_states_and_counts_own_frames():
    link = SerialLink(SerialLinkConfig(url="loop://", state_queue_size=8))
    link.configure()
    try:
        assert link.lifecycle == LinkState.INACTIVE
        state = RobotState(t_us=5000, mode=int(MotorMode.ENABLED))
        state.joint_vel[2] = 1.5
        assert link.send_raw(b"\x01\x02garbage\x00" + encode_state(state, seq=9)) == WriteStatus.OK
        sample = link.wait_for_state(timeout_s=2.0, after_index=0)
        assert sample is not None and sample.seq == 9 and sample.state.joint_vel[2] == np.float32(1.5)
        assert sample.age_s >= 0 and link.states.get_nowait() is sample
        assert link.stats()["counters"].bad_frames  # the garbage was dropped and counted
        # A loop has no firmware, so no ENABLE confirmation: activate() says so and stays INACTIVE.
        link.config.activate_timeout_s = 0.1
        assert link.activate() is False and link.lifecycle == LinkState.INACTIVE
    finally:
        link.close()
    assert link.lifecycle == LinkState.FINALIZED
    assert link.send_command(MotorCommand()) == WriteStatus.NOT_OPEN
    assert link.estop() == WriteStatus.NOT_OPEN


def test_lifecycle_rules_and_non_finite_command_never_sent():
    link = SerialLink(SerialLinkConfig(url="loop://"))
    assert link.enable() == WriteStatus.NOT_OPEN  # before configure
    link.configure()
    with pytest.raises(LinkError):
        link.configure()
    # Play the firmware: once ENABLE is queued, answer with a STATE that says ENABLED.
    def answer_enable() -> None:
        for _ in range(2000):
            if link.counters.frames_out.get("ENABLE"):
                link.send_raw(encode_state(RobotState(mode=int(MotorMode.ENABLED)), seq=0))
                return
            time.sleep(0.001)

    responder = threading.Thread(target=answer_enable)
    responder.start()
    assert link.activate()
    responder.join()
    assert link.send_command(MotorCommand.torque([np.nan] * 6)) == WriteStatus.INVALID
    assert link.send_command(MotorCommand()) == WriteStatus.OK
    assert link.deactivate() == WriteStatus.OK and link.lifecycle == LinkState.INACTIVE
    assert link.send_command(MotorCommand()) == WriteStatus.NOT_ACTIVE
    link.close()
    out = link.stats()["counters"].frames_out
    assert out == {"ENABLE": 1, "COMMAND": 1, "DISABLE": 1}


def test_heartbeat_echo_gives_round_trip_sample():
    link = SerialLink(SerialLinkConfig(url="loop://"))
    link.configure()
    try:
        assert link.send_heartbeat() == WriteStatus.OK  # loop:// echoes it back verbatim
        link.send_raw(encode_heartbeat(12345, seq=0))  # an unknown clock value: no sample
        link.send_raw(encode_state(RobotState(), seq=1))
        assert link.wait_for_state(timeout_s=2.0, after_index=0) is not None
        assert link.stats()["heartbeat_rtt"]["count"] == 1
    finally:
        link.close()


def test_port_vanishing_puts_link_in_error_not_exception(start_robot):
    robot = start_robot(lockstep=True)
    link = SerialLink(SerialLinkConfig(url=robot.device))
    link.configure()
    assert link.activate()
    robot.stop()  # firmware gone: pty master closed under the host
    deadline_states = link.wait_for_state(timeout_s=2.0)  # returns None once the link fails
    assert deadline_states is None
    assert link.lifecycle == LinkState.ERROR and link.error is not None
    assert link.send_command(MotorCommand()) == WriteStatus.NOT_OPEN
    link.close()
    assert link.lifecycle == LinkState.FINALIZED


def test_open_failure_is_a_link_error_naming_the_url(tmp_path):
    link = SerialLink(SerialLinkConfig(url=str(tmp_path / "missing"), open_timeout_s=0.1))
    with pytest.raises(LinkError, match="missing"):
        link.configure()


@pytest.mark.parametrize("direct_write", [False, True])
def test_stalled_peer_gives_queue_full_then_error_without_blocking_the_sender(direct_write):
    """A firmware that stops reading: sends keep returning at once, then the link reports ERROR."""
    with PtyPort(None) as firmware_end:  # nobody reads its master: the kernel buffer fills
        link = SerialLink(SerialLinkConfig(url=firmware_end.device, write_queue_frames=8, write_stall_s=0.3,
                                           direct_write=direct_write))
        link.configure()

        def answer_enable() -> None:
            if firmware_end.read(timeout_s=2.0):  # the ENABLE
                firmware_end.write(encode_state(RobotState(mode=int(MotorMode.ENABLED)), seq=0))

        responder = threading.Thread(target=answer_enable)
        responder.start()
        assert link.activate()
        responder.join()
        statuses = collections.Counter()
        for _ in range(20000):
            statuses[link.send_command(MotorCommand())] += 1
            if link.lifecycle == LinkState.ERROR:
                break
            if statuses[WriteStatus.QUEUE_FULL]:
                time.sleep(0.001)  # the writer is stuck; give the stall timer a chance
        assert statuses[WriteStatus.QUEUE_FULL] > 0
        assert link.wait_for_state(timeout_s=3.0) is None or link.lifecycle == LinkState.ERROR
        assert link.lifecycle == LinkState.ERROR and link.counters.write_errors == 1
        assert link.send_command(MotorCommand()) == WriteStatus.NOT_OPEN
        link.close()


def test_robot_side_modules_import_without_torch_or_mujoco():
    code = (
        "import sys\n"
        "import firmware_bridge.link, firmware_bridge.console, firmware_bridge.hil.summary\n"
        "import firmware_bridge.recorder, firmware_bridge.virtual_robot.firmware, firmware_bridge.virtual_robot.faults, firmware_bridge.virtual_robot.pty_port\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'mujoco', 'gymnasium', 'sim_models')]\n"
        "print(heavy)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
