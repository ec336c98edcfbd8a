"""Fixtures: a virtual robot on a real pty (in a thread) and a host link opened on its device."""

from __future__ import annotations

from collections import defaultdict

import pytest

from firmware_bridge.virtual_robot.faults import FaultConfig
from firmware_bridge.link import SerialLink, SerialLinkConfig
from firmware_bridge.virtual_robot import VirtualRobot, VirtualRobotConfig
from protocol.robot_types import MotorCommand

WHEEL_TORQUE = MotorCommand.torque([0, 0, 0.5, 0, 0, 0.5])


def drive_lockstep(link: SerialLink, n: int, command: MotorCommand = WHEEL_TORQUE) -> None:
    """Send `n` COMMANDs on an active lock-step link, each answered by a new STATE (asserted)."""
    for _ in range(n):
        i = link.states_received
        link.send_command(command)
        assert link.wait_for_state(timeout_s=2.0, after_index=i) is not None


class ListRecorder:
    """Collects recorded bytes per channel in memory (a real ByteRecorder, not a mock)."""

    def __init__(self) -> None:
        self.chunks: dict[str, list[tuple[float, bytes]]] = defaultdict(list)

    def record(self, channel: str, t_s: float, data: bytes) -> None:
        self.chunks[channel].append((t_s, bytes(data)))

    def joined(self, channel: str) -> bytes:
        return b"".join(d for _, d in self.chunks[channel])


@pytest.fixture
def start_robot():
    """start_robot(lockstep=..., watchdog_ms=..., faults=FaultConfig(...), recorder=...) -> VirtualRobot."""
    robots: list[VirtualRobot] = []

    def _start(recorder=None, faults: FaultConfig | None = None, **kw) -> VirtualRobot:
        cfg = VirtualRobotConfig(device_link=None, faults=faults or FaultConfig(), **kw)
        robot = VirtualRobot(cfg, recorder=recorder).start()
        robots.append(robot)
        return robot

    yield _start
    for robot in robots:
        robot.stop()


@pytest.fixture
def open_link():
    links: list[SerialLink] = []

    def _open(url: str, **kw) -> SerialLink:
        link = SerialLink(SerialLinkConfig(url=url, **kw))
        link.configure()
        links.append(link)
        return link

    yield _open
    for link in links:
        link.close()


@pytest.fixture(scope="session")
def c_programs(tmp_path_factory):
    """The C reference programs (firmware host, codec tool), compiled once per test session."""
    from .c_programs import build, find_compiler

    compiler = find_compiler()
    if compiler is None:
        pytest.skip("no C compiler on this machine (scripts/system_deps.sh installs one; CI has gcc)")
    return build(tmp_path_factory.mktemp("c_build"), compiler)
