"""Helpers of the HIL tests (tests/hil): record a lock-step onboard run, replay a recording into onboard."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

from firmware_bridge.hil.compare import CommandDiff, compare_host_streams
from firmware_bridge.hil.replayer import SensorReplayer
from firmware_bridge.hil.tap import SerialTap
from firmware_bridge.hil.recordings import HOST_TO_FW, decode_recording
from onboard.app import OnboardApp
from onboard.config import OnboardConfig
from protocol.frames import FrameType

LINGER_S = 0.05  # after the host closes, let the last bytes reach the recorder
# The onboard safety FSM ages states by the wall clock, even in lock-step: on a loaded 2-core
# machine a 50 ms stall between a STATE's arrival and its tick would flip STAND to DAMPING in one
# run and not the other. A lock-step HIL run is about the data, so the check is widened.
LOCKSTEP_SAFETY = {"safety.stale_state_ms": 2000.0}


def onboard_config(url: str, tmp: Path, overrides: dict[str, Any] | None = None) -> OnboardConfig:
    """Lock-step, no streaming, stats in tmp, LOCKSTEP_SAFETY; overrides as {"section.field": value}."""
    cfg = OnboardConfig()
    cfg.run.lockstep = True
    cfg.run.stream = False
    cfg.run.stats_file = str(tmp / "onboard_stats.json")
    cfg.link.url = url
    for key, value in {**LOCKSTEP_SAFETY, **(overrides or {})}.items():
        section, name = key.split(".", 1)
        setattr(getattr(cfg, section), name, value)
    return cfg


def run_onboard(url: str, tmp: Path, ticks: int, controller=None, overrides: dict[str, Any] | None = None,
                on_tick: Callable[[OnboardApp, int], None] | None = None) -> OnboardApp:
    """Run the onboard app for `ticks` control ticks against `url`, then close it (DISABLE)."""
    app = OnboardApp(onboard_config(url, tmp, overrides), controller=controller)
    try:
        app.start()
        if on_tick is None:
            app.run(threading.Event(), max_ticks=ticks)
        else:
            for i in range(ticks):
                on_tick(app, i)
                app.run(threading.Event(), max_ticks=1)
    finally:
        app.close(drain_s=0.0)
    return app


def record_onboard_run(path: Path, tmp: Path, ticks: int = 300, profile: str = "nominal", controller=None,
                       overrides: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """Virtual robot (lock-step) <- tap (records the host's view) <- onboard for `ticks` ticks."""
    from firmware_bridge.virtual_robot import VirtualRobot, VirtualRobotConfig

    robot = VirtualRobot(VirtualRobotConfig(profile=profile, device_link=None, lockstep=True, seed=seed)).start()
    try:
        with SerialTap(robot.device, path, drop_repeated_states=True) as tap:
            run_onboard(tap.device, tmp, ticks, controller, overrides)
            time.sleep(LINGER_S)
    finally:
        robot.stop()
    return path


def replay_into_onboard(recording: str | Path, out: Path, tmp: Path, ticks: int | None = None, controller=None,
                        overrides: dict[str, Any] | None = None,
                        on_tick: Callable[[OnboardApp, int], None] | None = None) -> tuple[CommandDiff, SensorReplayer]:
    """Replay `recording` into a fresh onboard app (as many ticks as it has COMMANDs) and compare."""
    rec = decode_recording(recording)
    if ticks is None:
        ticks = len(rec.of(HOST_TO_FW, FrameType.COMMAND))
    replayer = SensorReplayer(rec, lockstep=True, record_path=out).start()
    try:
        run_onboard(replayer.device, tmp, ticks, controller, overrides, on_tick)
        time.sleep(LINGER_S)
    finally:
        replayer.stop()
    return compare_host_streams(rec, out), replayer
