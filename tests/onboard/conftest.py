"""Fixtures for onboard integration tests: a virtual robot on a real pty, the app wired to it."""

from __future__ import annotations

import socket
import time

import pytest

from onboard.app import OnboardApp
from onboard.config import OnboardConfig

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def endpoint() -> str:
    """A free loopback TCP endpoint for a learner ROUTER."""
    return f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture(name="wait_for")
def wait_for_fixture():
    """Poll a condition (bounded): the tests' only way to wait on other threads."""
    return wait_for


@pytest.fixture
def make_app(tmp_path):
    """Build an OnboardApp on an in-process virtual robot; closes everything at the end."""
    apps: list[OnboardApp] = []

    def build(lockstep: bool = True, stream: bool = False, endpoint: str = "", profile: str = "nominal",
              respawn_s: float = 0.0, task: str = "stand_still", task_options: str = "", configure=None,
              **safety) -> OnboardApp:
        cfg = OnboardConfig()
        cfg.run.task = task
        cfg.run.task_options = task_options
        cfg.run.lockstep = lockstep
        cfg.run.stream = stream
        cfg.run.virtual_robot = profile
        cfg.run.virtual_robot_respawn_s = respawn_s
        cfg.run.stats_file = str(tmp_path / "stats.json")
        cfg.run.status_interval_s = 0.2
        cfg.policy.inference_budget_ms = 20.0  # the test machine is shared: budget checks elsewhere
        cfg.learner.spool_dir = str(tmp_path / "spool")
        cfg.learner.heartbeat_interval_s = 0.1
        cfg.learner.reconnect_initial_s = 0.05
        cfg.learner.reconnect_max_s = 0.2
        if endpoint:
            cfg.learner.endpoint = endpoint
        for k, v in safety.items():
            setattr(cfg.safety, k, v)
        cfg.trials.enabled = False  # these tests drive the loop; trials are on where a test turns them on
        if configure is not None:  # any other section, e.g. trials or the control channel
            configure(cfg)
        app = OnboardApp(cfg)
        apps.append(app)
        app.start()
        return app

    yield build
    for app in apps:
        app.close(drain_s=0.0)
