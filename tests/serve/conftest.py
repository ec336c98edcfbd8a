"""Fixtures for the learner service tests: keys in a temp dir, a server thread on a free port."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zmq

from learner.service import wire
from learner.service.client import RobotLinkClient
from learner.service.ingest import Ingest
from learner.service.keys import ensure_demo_keys
from learner.service.publisher import Publisher
from learner.service.server import LearnerServer, LinkConfig
from learner.service.sessions import HelloPolicy
from learner.service.store import RealStore

OBS_DIM, ACT_DIM, TASK = 4, 1, "stand_still"


def make_hello(robot_id: str = "robot1", **kw) -> wire.Hello:
    base = dict(robot_id=robot_id, schema_hash=wire.schema_hash(), obs_dim=OBS_DIM,
                act_dim=ACT_DIM, task=TASK, software_version="test")
    base.update(kw)
    return wire.Hello(**base)


def make_batch(stream_id: str, first_seq: int, n: int) -> wire.Transitions:
    """Rows whose rew is their seq, so tests can check exactly which rows were stored."""
    batch = wire.empty_transitions(str(stream_id), first_seq, n, OBS_DIM, ACT_DIM)
    batch.rew[:] = np.arange(first_seq, first_seq + n, dtype=np.float32)
    batch.obs[:, 0] = batch.rew
    return batch


class RunningServer:
    """A LearnerServer in a thread, with the pieces tests look at."""

    def __init__(self, tmp_path, keys, plaintext: bool = False) -> None:
        self.context = zmq.Context()
        self.store = RealStore(tmp_path / "store")
        self.report = self.store.open()
        self.rows_seen: list[np.ndarray] = []
        self.ingest = Ingest(self.store, OBS_DIM, ACT_DIM, sink=lambda r, s, c: self.rows_seen.append(c["rew"]))
        self.publisher = Publisher()
        link = LinkConfig(bind="tcp://127.0.0.1:*", plaintext=plaintext,
                          server_secret_key=str(keys["learner_secret"]),
                          authorized_keys_dir=str(keys["authorized"]), heartbeat_timeout_s=2.0,
                          policy_resend_s=0.5)
        self.server = LearnerServer(link, self.store, HelloPolicy(wire.schema_hash(), OBS_DIM,
                                                                  ACT_DIM, TASK),
                                    self.publisher, self.ingest, context=self.context)
        self.endpoint = self.server.start_socket()
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def client(self, keys, name: str = "robot1") -> RobotLinkClient:
        return RobotLinkClient(self.endpoint, keys[f"{name}_secret"], keys["learner_public"],
                               context=self.context)

    def close(self) -> None:
        self.server.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.server.close()
        self.store.close()
        self.context.destroy(linger=0)


@pytest.fixture(name="make_hello")
def _make_hello_fixture():
    return make_hello


@pytest.fixture(name="make_batch")
def _make_batch_fixture():
    return make_batch


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    key_dir = tmp_path_factory.mktemp("keys")
    out = ensure_demo_keys(key_dir, ["robot1", "robot2"])
    # a key pair the learner has never seen
    from learner.service.keys import create_keypair
    create_keypair("intruder", key_dir / "unauthorised")
    out["intruder_secret"] = key_dir / "unauthorised" / "intruder.key_secret"
    return out


@pytest.fixture
def server(tmp_path, keys):
    srv = RunningServer(tmp_path, keys)
    yield srv
    srv.close()
