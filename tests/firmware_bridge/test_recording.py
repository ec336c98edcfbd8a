"""Byte-level recording (MCAP) of both directions, its summary, and replay over a pty."""

from __future__ import annotations

import threading

import numpy as np

from firmware_bridge.link import SerialLink, SerialLinkConfig
from firmware_bridge.recorder import FW_TO_HOST, HOST_TO_FW, SerialByteRecorder
from firmware_bridge.hil.summary import read_chunks, serve, summarise
from protocol.frames import FrameDecoder, FrameType, unpack_state

from .conftest import ListRecorder, drive_lockstep


def test_virtual_robot_and_link_recordings_hold_the_same_bytes(start_robot, tmp_path):
    fw_file, host_file = tmp_path / "fw.mcap", tmp_path / "host.mcap"
    fw_rec, host_rec, mem = SerialByteRecorder(fw_file), SerialByteRecorder(host_file), ListRecorder()

    class Both:  # one firmware-side recorder feeding the MCAP file and an in-memory copy
        def record(self, channel, t_s, data):
            fw_rec.record(channel, t_s, data)
            mem.record(channel, t_s, data)

    robot = start_robot(lockstep=True, recorder=Both())
    link = SerialLink(SerialLinkConfig(url=robot.device), recorder=host_rec)
    link.configure()
    assert link.activate()
    drive_lockstep(link, 20)
    i = link.states_received
    link.deactivate()
    link.wait_for_state(timeout_s=2.0, after_index=i)
    link.close()
    robot.stop()
    fw_rec.close()
    host_rec.close()

    fw, host = read_chunks(fw_file), read_chunks(host_file)
    assert b"".join(d for _, d in fw[FW_TO_HOST]) == mem.joined(FW_TO_HOST)
    # What the firmware sent is what the host read, and the other way round.
    assert b"".join(d for _, d in host[FW_TO_HOST]) == mem.joined(FW_TO_HOST)
    assert b"".join(d for _, d in host[HOST_TO_FW]) == mem.joined(HOST_TO_FW)
    t = [t for t, _ in fw[FW_TO_HOST]]
    assert t == sorted(t) and t[-1] > 0  # firmware clock
    summary = summarise(fw_file)
    assert summary[HOST_TO_FW].frames == {"ENABLE": 1, "COMMAND": 20, "DISABLE": 1}
    assert summary[FW_TO_HOST].frames["STATE"] == 22 and not summary[FW_TO_HOST].dropped


def test_replay_serves_recorded_firmware_bytes_to_a_host(start_robot, tmp_path):
    path = tmp_path / "fw.mcap"
    recorder = SerialByteRecorder(path)
    robot = start_robot(lockstep=False, recorder=recorder)
    link = SerialLink(SerialLinkConfig(url=robot.device, state_queue_size=1000))
    link.configure()
    for _ in range(10):
        link.wait_for_state(timeout_s=2.0)
    link.close()
    robot.stop()
    recorder.close()
    recorded = FrameDecoder().feed(b"".join(d for _, d in read_chunks(path)[FW_TO_HOST]))
    assert len(recorded) >= 10

    stop, ready = threading.Event(), threading.Event()
    devices: list[str] = []
    player = threading.Thread(
        target=serve, args=(path, None, 4.0, stop),
        kwargs={"on_ready": lambda d: (devices.append(d), ready.set())},
    )
    player.start()
    try:
        assert ready.wait(5.0)
        replay_link = SerialLink(SerialLinkConfig(url=devices[0], state_queue_size=1000))
        replay_link.configure()
        replay_link.enable()  # any host byte starts playback
        last_seq = recorded[-1].seq
        final = replay_link.wait_for_state(lambda s: s.seq == last_seq, timeout_s=10.0)
        assert final is not None
        got = []
        while not replay_link.states.empty():
            got.append(replay_link.states.get_nowait())
        replay_link.close()
    finally:
        stop.set()
        player.join(timeout=5.0)
    want = {f.seq: f for f in recorded if f.type == FrameType.STATE}
    assert got and all(g.seq in want for g in got)
    for g in got:  # byte-identical states: same clock and same readings as recorded
        rec = unpack_state(want[g.seq].payload)
        assert rec.t_us == g.state.t_us and np.array_equal(rec.joint_vel, g.state.joint_vel)
