"""Replay: a recorded stream goes into the learner as if a robot were connected; twice = once."""

from __future__ import annotations

import json
import time

import jsonschema
import msgpack
import numpy as np
import pytest
from mcap.reader import make_reader

from learner.service import replay as replay_mod
from learner.service import wire
from protocol.recording import Writer, default_schema
from sim_models.datasets import save_d4rl

from .conftest import make_hello


def test_replay_recording_is_stored_once(server, keys, tmp_path, make_hello, make_batch):
    path = tmp_path / "rec.mcap"
    with Writer(path) as w:
        w.write("link", 0, wire.encode(make_hello("robot1")))
        for i in range(30):
            w.write("link", i * 10_000_000, wire.encode(make_batch("rec", 20 * i, 20)))
        w.write("link", 400_000_000, b"\x00garbage")  # skipped, counted
    hello, batches, skipped = replay_mod.load_recording(path)
    assert hello.robot_id == "robot1" and len(batches) == 30 and skipped == 1
    for fast in (True, False):  # second pass at recorded pace (0.3 s): all duplicates
        c = server.client(keys)
        res = replay_mod.replay(c, hello, batches, fast=fast, window=4, speed=1.0, timeout_s=10)
        c.close()
        assert res.rows == 600 and res.acked_rows == 600
    assert server.store.next_seq("robot1", "rec") == 600
    assert server.ingest.rows_stored == 600 and server.ingest.rows_duplicate == 600
    np.testing.assert_array_equal(np.sort(np.concatenate(server.rows_seen)), np.arange(600))


def test_from_dataset_recording_opens_in_mcap_with_schemas_and_replays_with_its_hello(server, keys, tmp_path):
    """The recording `from-dataset` writes: HELLO first (as docs/service.md says), every channel
    with the protocol's JSON Schema, epoch times; mcap's own reader sees that, the decoded
    messages validate against the registered schema, and `send` replays it with that HELLO."""
    n = 120
    rng = np.random.default_rng(0)
    data = {"observations": rng.normal(size=(n, 4)).astype(np.float32),
            "actions": rng.uniform(-1, 1, size=(n, 1)).astype(np.float32),
            "rewards": np.arange(n, dtype=np.float32),
            "next_observations": rng.normal(size=(n, 4)).astype(np.float32),
            "terminals": np.zeros(n, np.float32), "timeouts": np.zeros(n, np.float32)}
    dataset = save_d4rl(tmp_path / "d.hdf5", data, {"task": "stand_still"})
    out = tmp_path / "rec.mcap"
    before = time.time_ns()
    assert replay_mod.main(["from-dataset", str(dataset), "--out", str(out), "--batch", "50",
                            "--robot-id", "robot1"]) == 0
    after = time.time_ns()

    with open(out, "rb") as f:
        seen = list(make_reader(f).iter_messages())
    assert len(seen) == 1 + 3  # HELLO, then 50 + 50 + 20 rows
    types = []
    for schema, channel, message in seen:
        assert schema is not None and schema.name == "h2o_robot.protocol.Message" and schema.encoding == "jsonschema"
        assert channel.message_encoding == "msgpack" and channel.topic == replay_mod.CHANNEL
        body = msgpack.unpackb(message.data, raw=False)
        jsonschema.validate(body, json.loads(schema.data))
        types.append(body["type"])
        assert message.publish_time == message.log_time
        assert before <= seen[0][2].log_time <= message.log_time <= after + 10**9  # wall clock, 1 s of rows
    assert types == ["HELLO", "TRANSITIONS", "TRANSITIONS", "TRANSITIONS"]
    assert seen[-1][2].log_time - seen[0][2].log_time == 100 * 5_000_000  # row 100 at 200 Hz

    hello, batches, skipped = replay_mod.load_recording(out)
    assert (hello.robot_id, hello.task, hello.obs_dim, hello.act_dim, hello.control_hz) == ("robot1", "stand_still", 4, 1, 200.0)
    assert hello.streams == {"dataset": 0} and skipped == 0
    c = server.client(keys)
    try:
        res = replay_mod.replay(c, hello, batches, fast=True, window=4, timeout_s=10)
    finally:
        c.close()
    assert res.rows == res.acked_rows == n
    np.testing.assert_array_equal(np.sort(np.concatenate(server.rows_seen)), np.arange(n))


def test_a_message_the_schema_does_not_describe_fails_validation() -> None:
    """The registered schema has teeth: a HELLO with a field the protocol lacks is refused."""
    schema = json.loads(default_schema("msgpack").data)
    body = msgpack.unpackb(wire.encode(make_hello()), raw=False)
    jsonschema.validate(body, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**body, "extra": 1}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**body, "obs_dim": "four"}, schema)
