"""Serial recordings as foreign tools see them: mcap's own high-level reader finds a schema on
every channel and wall-clock times; the decoded JSON copy validates against its JSON Schemas; a
recording cut short by a crash, which mcap's reader refuses, opens after `replay_cli recover`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from mcap.exceptions import McapError
from mcap.reader import make_reader

from firmware_bridge.hil import cli as replay_cli
from firmware_bridge.link import SerialLink, SerialLinkConfig
from firmware_bridge.recorder import FW_TO_HOST, HOST_TO_FW, SerialByteRecorder
from firmware_bridge.hil.summary import read_chunks
from protocol.frames import FrameDecoder, FrameType, unpack_state
from protocol.recording import CLOCK_METADATA, ENCODING_SERIAL, Reader, Writer

from .conftest import drive_lockstep


def foreign_messages(path: Path) -> list:
    """(schema, channel, message) of every message, read by mcap's high-level reader."""
    with open(path, "rb") as f:
        return list(make_reader(f).iter_messages())


@pytest.fixture
def link_recording(start_robot, tmp_path: Path) -> tuple[Path, Path, int, int]:
    """A real lock-step session: the firmware side (firmware clock) and the host side (the
    link's monotonic clock) recorded; returns both files and the wall-clock window."""
    fw_file, host_file = tmp_path / "fw.mcap", tmp_path / "host.mcap"
    before = time.time_ns()
    fw_rec = SerialByteRecorder(fw_file, clock="elapsed")
    host_rec = SerialByteRecorder(host_file)
    robot = start_robot(lockstep=True, recorder=fw_rec)
    link = SerialLink(SerialLinkConfig(url=robot.device), recorder=host_rec)
    try:
        link.configure()
        assert link.activate()
        drive_lockstep(link, 10)
    finally:
        link.close()
        robot.stop()
        fw_rec.close()
        host_rec.close()
    return fw_file, host_file, before, time.time_ns()


def test_mcap_reader_sees_schemas_and_wall_clock_times(link_recording) -> None:
    fw_file, host_file, before, after = link_recording
    for path, clock in ((fw_file, "elapsed"), (host_file, "monotonic")):
        seen = foreign_messages(path)
        assert {c.topic for _, c, _ in seen} == {HOST_TO_FW, FW_TO_HOST}
        for schema, channel, message in seen:
            assert schema is not None and schema.name == "h2o_robot.serial.RawBytes" and schema.encoding == "text"
            assert b"COBS" in schema.data and channel.message_encoding == ENCODING_SERIAL
            assert message.publish_time == message.log_time
        times = [m.log_time for _, _, m in seen]
        # the host's monotonic clock becomes exact wall time; the firmware clock (simulated time in
        # lock-step) starts at the wall time of its first record and keeps its own intervals
        assert before - 10**9 <= min(times) and max(times) <= after + 10**9, (path, min(times), before)
        reader = Reader(path)
        list(reader)
        assert reader.metadata[CLOCK_METADATA]["clock"] == clock
    # the bytes mcap's reader returns are the bytes our reader returns
    ours = read_chunks(host_file)
    theirs = {ch: [(m.log_time, m.data) for _, c, m in foreign_messages(host_file) if c.topic == ch] for ch in ours}
    assert theirs == ours


def test_foxglove_copy_holds_decoded_frames_with_json_schemas(link_recording, tmp_path: Path) -> None:
    fw_file, _, _, _ = link_recording
    out = tmp_path / "fw.json.mcap"
    assert replay_cli.main(["foxglove", str(fw_file), str(out)]) == 0
    by_topic: dict[str, list[dict]] = {}
    for schema, channel, message in foreign_messages(out):
        assert channel.message_encoding == "json" and schema.encoding == "jsonschema"
        body = json.loads(message.data)
        jsonschema.validate(body, json.loads(schema.data))
        assert schema.name == "h2o_robot.serial." + channel.topic.rsplit("/", 1)[1]
        by_topic.setdefault(channel.topic, []).append(body)
    assert len(by_topic[f"{HOST_TO_FW}/COMMAND"]) == 10 and len(by_topic[f"{HOST_TO_FW}/ENABLE"]) == 1
    raw_states = [unpack_state(f.payload) for f in FrameDecoder().feed(
        b"".join(d for _, d in read_chunks(fw_file)[FW_TO_HOST])) if f.type == FrameType.STATE]
    states = by_topic[f"{FW_TO_HOST}/STATE"]
    assert len(states) == len(raw_states) >= 11
    np.testing.assert_allclose([s["joint_pos"] for s in states], [r.joint_pos for r in raw_states], rtol=1e-6)
    assert [s["t_us"] for s in states] == [r.t_us for r in raw_states]
    assert all(c["tau_ff"][2] == 0.5 for c in by_topic[f"{HOST_TO_FW}/COMMAND"])


def test_a_crash_truncated_recording_is_recovered_for_foreign_readers(tmp_path: Path) -> None:
    """A writer that never closed (no summary, no footer) and whose last record is cut: mcap's
    reader refuses the file; `recover` writes every complete record into a complete file."""
    path = tmp_path / "crashed.mcap"
    writer = Writer(path, default_encoding=ENCODING_SERIAL, clock="monotonic")
    t0 = time.monotonic_ns()
    for i in range(50):
        writer.write(HOST_TO_FW if i % 2 else FW_TO_HOST, t0 + i * 5_000_000, bytes([i + 1]) * 30)
    writer.flush()  # handed to the OS, never closed: what SIGKILL leaves
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(path.read_bytes()[:-7])  # and the last record half-written
    with pytest.raises((McapError, ValueError, EOFError)):
        foreign_messages(cut)

    out = tmp_path / "recovered.mcap"
    assert replay_cli.main(["recover", str(cut), str(out)]) == 0
    seen = foreign_messages(out)
    assert [m.data for _, _, m in seen] == [bytes([i + 1]) * 30 for i in range(49)]
    assert all(s is not None and s.name == "h2o_robot.serial.RawBytes" for s, _, _ in seen)
    assert seen[1][2].log_time - seen[0][2].log_time == 5_000_000
    assert abs(seen[0][2].log_time - time.time_ns()) < 60 * 10**9  # epoch, not since boot
    reader = Reader(out)
    list(reader)
    assert reader.complete and reader.metadata[CLOCK_METADATA]["clock"] == "monotonic"
    info = replay_cli.inspect_recording(str(cut))
    assert info["records"] == 49 and not info["complete"] and info["tail_bytes_ignored"] > 0
