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


# ---------------------------------------------------------------- serve.py as a real subprocess
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """`python learner/serve.py` in a child process; restartable on the same port and run dir."""

    def __init__(self, run_dir: Path, keys, port: int, extra: list[str] | None = None) -> None:
        self.run_dir, self.keys, self.port = run_dir, keys, port
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None
        self.log_path = run_dir.parent / f"serve-{port}.log"

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        cmd = [sys.executable, str(ROOT / "learner" / "serve.py"), "--bind", self.endpoint,
               "--run-dir", str(self.run_dir), "--task", TASK,
               "--server-secret-key", str(self.keys["learner_secret"]),
               "--authorized-keys-dir", str(self.keys["authorized"]),
               "--status-every-s", "1", *self.extra]
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "serving on" in self.log_path.read_text():
                if self.log_path.read_text().count("serving on") > getattr(self, "_starts", 0):
                    self._starts = getattr(self, "_starts", 0) + 1
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve.py exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.1)
        raise TimeoutError(f"serve.py did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()[-4000:]

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def pause(self, seconds: float) -> None:
        """A link outage: the learner process is frozen (no replies, no ACKs) for `seconds`."""
        self.proc.send_signal(signal.SIGSTOP)
        time.sleep(seconds)
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise


@pytest.fixture
def serve_process(tmp_path, keys):
    procs: list[ServeProcess] = []

    def factory(extra: list[str] | None = None, run_dir: Path | None = None) -> ServeProcess:
        p = ServeProcess(run_dir or tmp_path / "run", keys, free_port(), extra)
        p.log_path = tmp_path / f"serve-{p.port}.log"
        procs.append(p)
        return p

    yield factory
    for p in procs:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)


# ---------------------------------------------------------------- the real onboard streamer
class Streaming:
    """The onboard streamer against a learner, with rows whose rew is their seq."""

    rows_per_batch = 50

    def __init__(self, keys, tmp_path: Path) -> None:
        self.keys, self.tmp_path = keys, tmp_path
        self.streamers: list = []

    def streamer(self, endpoint: str, spool_dir: Path | None = None):
        from onboard.streamer import Streamer, StreamerConfig

        cfg = StreamerConfig(endpoint=endpoint, robot_id="robot1",
                             client_secret_key_file=str(self.keys["robot1_secret"]),
                             server_public_key_file=str(self.keys["learner_public"]),
                             spool_dir=str(spool_dir or self.tmp_path / "spool"),
                             heartbeat_interval_s=0.2, liveness=3, reconnect_initial_s=0.1,
                             reconnect_max_s=0.5, resend_after_s=1.0)
        s = Streamer(cfg, hello=lambda: make_hello("robot1"))
        s.start()
        self.streamers.append(s)
        return s

    def cols(self, first_seq: int) -> dict:
        b = make_batch("x", first_seq, self.rows_per_batch)
        return {name: getattr(b, name) for name in wire.TRANSITION_COLUMNS}

    def offer(self, streamer, first: int, n_batches: int, pause_s: float = 0.01) -> int:
        """Hand `n_batches` to the streamer as the loop would; returns the next seq."""
        seq = first
        for _ in range(n_batches):
            deadline = time.monotonic() + 10
            while not streamer.offer(self.cols(seq)):
                assert time.monotonic() < deadline, "streamer queue stuck"
                time.sleep(0.01)
            seq += self.rows_per_batch
            time.sleep(pause_s)
        return seq

    @staticmethod
    def wait_drained(streamer, timeout_s: float = 40.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            st = streamer.status()
            if st["spool_batches"] == 0 and st["queue_batches"] == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"spool not drained: {streamer.status()}")


@pytest.fixture
def streaming(keys, tmp_path):
    helper = Streaming(keys, tmp_path)
    yield helper
    for s in helper.streamers:
        s.stop()
