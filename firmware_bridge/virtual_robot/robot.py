"""The virtual robot: motor firmware behind a pty, driving MuJoCo with a hidden "real" profile.

Why: every host program (link, onboard loop, console) can be run and tested against something
that speaks the exact serial protocol of the real board, with the real board's rules (enable,
e-stop latch, watchdog, torque limits; firmware.py), and dynamics the host does not know
(a `sim_models` profile such as "moderate").

Two clocks:
- real time: a fixed firmware rate (1 / control_dt, 200 Hz) paced by absolute deadlines; the
  latest accepted COMMAND is applied at each tick and one STATE is streamed per tick.
- lock-step: the physics advances one control period per COMMAND received and the firmware
  answers it with exactly one STATE; ENABLE/DISABLE/ESTOP/ESTOP_CLEAR are answered with a STATE
  without stepping. Firmware time is simulated time, so the watchdog counts simulated time and a
  run is deterministic: same seed and same host bytes -> bit-identical bytes back.

Respawn ("a person picks the robot up"), off by default: with `respawn_after_s` > 0, a robot
that has lain fallen (base tilt beyond `respawn_tilt_rad`) or sat disabled and tilted (motors not
ENABLED, tilt beyond `respawn_disabled_tilt_rad`) for that long in firmware time is put back in
its home pose (`plant.reset()`), as an operator would lift a fallen robot during learning. The
firmware mode is not touched. Each respawn is logged and counted (`counters.respawns`); the
firmware clock (STATE t_us) keeps running across it, so hosts never see time go backwards.

Both clocks answer a host HEARTBEAT with a HEARTBEAT carrying the host's clock value unchanged
(the echo the link times round trips with) and send a FAULT frame when a fault bit rises.

CLI: python -m firmware_bridge.virtual_robot --profile moderate --device /tmp/ttyRobot [--lockstep]
     [--respawn-after-s 2] [--config robot.toml] (defaults < TOML < flags)
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from protocol.logs import setup_logging
from firmware_bridge.virtual_robot.faults import ChannelFaults, FaultConfig, SensorFaults
from firmware_bridge.virtual_robot.firmware import DEFAULT_TORQUE_LIMIT_NM, FirmwareConfig, FirmwareLogic
from firmware_bridge.virtual_robot.pty_port import PtyPort
from firmware_bridge.recorder import FW_TO_HOST, HOST_TO_FW
from protocol.frames import (
    FaultReport,
    Frame,
    FrameDecoder,
    FrameType,
    SeqTracker,
    encode_fault,
    encode_heartbeat,
    encode_state,
    unpack_command,
    unpack_heartbeat,
)
from protocol.robot_types import FaultFlags, MotorCommand, MotorMode, RobotState
from protocol.config_cli import (ArgumentParser, ConfigError, add_dataclass_arguments, build, help_field, load_cli,
                                 read_toml)

log = logging.getLogger(__name__)

# Fault bits worth an immediate FAULT frame when they rise (the rest are per-tick conditions).
REPORTED_FAULTS = FaultFlags.WATCHDOG | FaultFlags.ESTOP_LATCHED | FaultFlags.MOTOR_STUCK | FaultFlags.BAD_COMMAND
MAX_CATCH_UP_TICKS = 2  # real time: after a stall, skip missed ticks beyond this instead of bursting


class Plant(Protocol):
    """What the firmware drives: sim_models.robot.WheelLeggedSim fits."""

    control_dt: float

    def reset(self) -> RobotState: ...

    def step(self, cmd: MotorCommand) -> RobotState: ...


class ByteRecorder(Protocol):
    """Where raw serial bytes go (recorder.SerialByteRecorder writes them to an MCAP file)."""

    def record(self, channel: str, t_s: float, data: bytes) -> None: ...


@dataclass
class VirtualRobotConfig:
    profile: str = help_field("moderate", "sim_models profile name or TOML path: the hidden \"real\" dynamics")
    variant: str = help_field("legs_locked", "model variant: legs_locked (the paper's tasks) | full")
    device_link: str | None = help_field("/tmp/ttyRobot", "stable symlink to the pty (None: none)")
    lockstep: bool = help_field(False, "one physics step per COMMAND instead of wall-clock ticks")
    seed: int = help_field(0, "plant noise and fault injection")
    watchdog_ms: float = help_field(100.0, "motors off after this long without a COMMAND")
    respawn_after_s: float = help_field(0.0, "> 0: reset a robot down this long to its home pose (0: never)")
    respawn_tilt_rad: float = help_field(1.0, "\"fallen\": base tilt from vertical beyond this (lying is ~1.57)")
    respawn_disabled_tilt_rad: float = help_field(0.35,
                                                  "motors not ENABLED and tilted beyond this also counts as down")
    faults: FaultConfig = help_field(factory=FaultConfig, help="fault injection on the line, the sensors and the motors")


@dataclass
class VirtualRobotCounters:
    ticks: int = 0
    overruns: int = 0  # real time: ticks that started late by more than a period
    ticks_skipped: int = 0
    states_sent: int = 0
    fault_frames_sent: int = 0
    heartbeats_echoed: int = 0
    frames_in: dict[str, int] = field(default_factory=dict)
    host_seq_lost: int = 0
    respawns: int = 0  # times the robot was put back in its home pose (respawn_after_s)


def make_plant(config: VirtualRobotConfig) -> Plant:
    """The MuJoCo robot with the chosen profile (imports mujoco; only this module may)."""
    from sim_models.profiles import load_profile
    from sim_models.robot import WheelLeggedSim

    return WheelLeggedSim(variant=config.variant, profile=load_profile(config.profile), seed=config.seed)


def base_tilt_rad(q_wxyz: np.ndarray) -> float:
    """Angle between the base z axis and world z (inf for a non-finite quaternion)."""
    w, x, y, z = (float(v) for v in q_wxyz)
    n = w * w + x * x + y * y + z * z
    if not math.isfinite(n) or n < 1e-6:
        return math.inf
    return math.acos(max(-1.0, min(1.0, 1.0 - 2.0 * (x * x + y * y) / n)))


def plant_torque_limits(plant: Plant) -> tuple[float, ...]:
    limits = getattr(plant, "torque_limits", None)
    if limits is None:
        return DEFAULT_TORQUE_LIMIT_NM
    return tuple(float(x) for x in np.asarray(limits, dtype=np.float64).reshape(-1))


class VirtualRobot:
    """One virtual motor board on one pty. `run(stop)` blocks; `start()` runs it on a thread."""

    def __init__(
        self,
        config: VirtualRobotConfig | None = None,
        plant: Plant | None = None,
        recorder: ByteRecorder | None = None,
    ) -> None:
        self.config = config or VirtualRobotConfig()
        self.config.faults.validate()
        self.plant = plant if plant is not None else make_plant(self.config)
        self.dt = float(self.plant.control_dt)
        self.recorder = recorder
        self.firmware = FirmwareLogic(
            FirmwareConfig(watchdog_ms=self.config.watchdog_ms, torque_limit_nm=plant_torque_limits(self.plant))
        )
        faults = self.config.faults
        self._line_out = ChannelFaults(faults, stream_id=1) if faults.applies_to("fw_to_host") else None
        self._line_in = ChannelFaults(faults, stream_id=2) if faults.applies_to("host_to_fw") else None
        self._sensors = SensorFaults(faults)
        self.decoder = FrameDecoder()
        self._host_seq = SeqTracker()
        self.counters = VirtualRobotCounters()
        self._seq = 0
        self._steps = 0
        self._measured = self.plant.reset()
        self._last_sent: RobotState | None = None
        self._reported_faults = FaultFlags.NONE
        self._down_since_s: float | None = None  # firmware time the robot was first seen down
        self._t_offset_us = 0  # plant clock restarts at a respawn; the firmware clock does not
        self._t0 = time.monotonic()
        self.pty = PtyPort(self.config.device_link)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def device(self) -> str:
        """The path a host opens (the pty slave)."""
        return self.pty.device

    # ------------------------------------------------------------------ running
    def start(self) -> "VirtualRobot":
        self._thread = threading.Thread(target=self.run, name="virtual-robot", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self.pty.close()

    def __enter__(self) -> "VirtualRobot":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or self._stop
        mode = "lock-step" if self.config.lockstep else f"real time {1 / self.dt:.0f} Hz"
        log.info("virtual robot on %s (%s, profile %s)", self.device, mode, self.config.profile)
        try:
            if self.config.lockstep:
                self._run_lockstep(stop)
            else:
                self._run_realtime(stop)
        finally:
            log.info("virtual robot stopped: %s", self.counters)

    def _run_lockstep(self, stop: threading.Event) -> None:
        while not (stop.is_set() or self._stop.is_set()):
            data = self.pty.read(timeout_s=0.05)
            if data:
                self._receive(data, self.firmware_time_s())

    def _run_realtime(self, stop: threading.Event) -> None:
        self._t0 = time.monotonic()
        next_tick = self._t0 + self.dt
        while not (stop.is_set() or self._stop.is_set()):
            left = next_tick - time.monotonic()
            if left > 0:
                data = self.pty.read(timeout_s=min(left, 0.05))
                if data:
                    self._receive(data, self.firmware_time_s())
                continue
            now = self.firmware_time_s()
            if self._line_in is not None:  # host frames held by an injected delay/stall fall due
                for frame in self.decoder.feed(self._line_in.release_due(now)):
                    self._dispatch(frame)
            self._tick(now)
            next_tick += self.dt
            behind = time.monotonic() - next_tick
            if behind > self.dt:
                self.counters.overruns += 1
                missed = int(behind / self.dt)
                if missed > MAX_CATCH_UP_TICKS:
                    self.counters.ticks_skipped += missed
                    next_tick += missed * self.dt

    def firmware_time_s(self) -> float:
        """Simulated time in lock-step; wall-clock time since start in real time."""
        if self.config.lockstep:
            return self._steps * self.dt
        return time.monotonic() - self._t0

    # ------------------------------------------------------------------ frames in
    def _receive(self, data: bytes, now_s: float) -> None:
        self._record(HOST_TO_FW, data)
        if self._line_in is not None:
            data = self._line_in.feed(data, now_s)
        for frame in self.decoder.feed(data):
            self._dispatch(frame)

    def _dispatch(self, frame: Frame) -> None:
        fw = self.firmware
        name = frame.type.name
        self.counters.frames_in[name] = self.counters.frames_in.get(name, 0) + 1
        self.counters.host_seq_lost += self._host_seq.update(frame.seq)
        now = self.firmware_time_s()
        t = frame.type
        if t == FrameType.COMMAND:
            fw.on_command(unpack_command(frame.payload), now)
            if self.config.lockstep:
                self._tick(now)
            return
        if t == FrameType.HEARTBEAT:
            self._send(encode_heartbeat(unpack_heartbeat(frame.payload), self._next_seq()))
            self.counters.heartbeats_echoed += 1
            return
        handler = {
            FrameType.ENABLE: fw.on_enable,
            FrameType.DISABLE: fw.on_disable,
            FrameType.ESTOP: fw.on_estop,
            FrameType.ESTOP_CLEAR: fw.on_estop_clear,
        }.get(t)
        if handler is None:
            return  # firmware-bound types only; a STATE/FAULT from the host is just counted
        handler(now)
        if self.config.lockstep:  # answer with the new mode, no physics step
            self._send_state(fw.stamp(self._copy_state(self._last_sent or self._measured)), now)

    # ------------------------------------------------------------------ one firmware tick
    def _tick(self, now_s: float) -> None:
        fw = self.firmware
        stuck = self._sensors.stuck_motor_at(now_s)
        cmd = fw.output(now_s, self._measured, stuck_index=stuck)
        self._measured = self.plant.step(cmd)
        self._steps += 1
        self.counters.ticks += 1
        self._maybe_respawn(self._steps * self.dt)
        state = self._copy_state(self._measured)
        state.t_us = int(state.t_us) + self._t_offset_us
        plant_faults = state.faults  # e.g. the simulator's own BAD_COMMAND; kept beside ours
        if self._sensors.dropout_now() and self._last_sent is not None:
            held = self._last_sent
            state.joint_pos, state.joint_vel = held.joint_pos.copy(), held.joint_vel.copy()
            state.imu_quat, state.imu_gyro = held.imu_quat.copy(), held.imu_gyro.copy()
            state.imu_acc = held.imu_acc.copy()
            fw.stamp(state)
            state.faults |= int(FaultFlags.SENSOR_DROPOUT)
        else:
            fw.stamp(state)
        state.faults |= int(plant_faults)
        self._send_state(state, self.firmware_time_s())

    def _maybe_respawn(self, now_s: float) -> None:
        """Put a robot that has been down `respawn_after_s` back in its home pose (see docstring)."""
        cfg = self.config
        if cfg.respawn_after_s <= 0:
            return
        tilt = base_tilt_rad(self._measured.imu_quat)
        enabled = self.firmware.mode == MotorMode.ENABLED
        down = tilt > cfg.respawn_tilt_rad or (not enabled and tilt > cfg.respawn_disabled_tilt_rad)
        if not down:
            self._down_since_s = None
            return
        if self._down_since_s is None:
            self._down_since_s = now_s
            return
        if now_s - self._down_since_s < cfg.respawn_after_s:
            return
        self._t_offset_us = int(round(now_s * 1e6))  # the reset plant's clock starts again at 0
        self._measured = self.plant.reset()
        self._down_since_s = None
        self.counters.respawns += 1
        log.warning("respawn %d: robot down (tilt %.2f rad, motors %s) for %.1f s, put back in its "
                    "home pose", self.counters.respawns, tilt, self.firmware.mode.name, cfg.respawn_after_s)

    def _send_state(self, state: RobotState, now_s: float) -> None:
        risen = FaultFlags(state.faults) & REPORTED_FAULTS & ~self._reported_faults
        self._reported_faults = FaultFlags(state.faults) & REPORTED_FAULTS
        if risen:
            report = FaultReport(t_us=int(state.t_us), faults=int(risen), detail=0)
            self._send(encode_fault(report, self._next_seq()), now_s)
            self.counters.fault_frames_sent += 1
        self._send(encode_state(state, self._next_seq()), now_s)
        self._last_sent = state
        self.counters.states_sent += 1

    # ------------------------------------------------------------------ bytes out
    def _send(self, frame: bytes, now_s: float | None = None) -> None:
        now_s = self.firmware_time_s() if now_s is None else now_s
        if self._line_out is not None:
            frame = self._line_out.frame(frame, now_s)
        if frame:
            self._record(FW_TO_HOST, frame)
            self.pty.write(frame)

    def _record(self, channel: str, data: bytes) -> None:
        if self.recorder is not None:
            self.recorder.record(channel, self.firmware_time_s(), data)

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFFFF
        return seq

    @staticmethod
    def _copy_state(s: RobotState) -> RobotState:
        return RobotState(
            t_us=int(s.t_us),
            joint_pos=np.array(s.joint_pos, np.float32),
            joint_vel=np.array(s.joint_vel, np.float32),
            joint_torque=np.array(s.joint_torque, np.float32),
            imu_quat=np.array(s.imu_quat, np.float32),
            imu_gyro=np.array(s.imu_gyro, np.float32),
            imu_acc=np.array(s.imu_acc, np.float32),
            mode=int(s.mode),
            faults=int(s.faults),
        )


# ---------------------------------------------------------------------------- CLI


class VirtualRobotConfigError(ValueError):
    """A config file or flag names an unknown field or has a value of the wrong kind."""


def _checked(config: VirtualRobotConfig, seed_given: bool = False) -> VirtualRobotConfig:
    """'' as the device link means none; the fault seed follows `seed` unless given; probabilities
    in range (FaultConfigError names the field)."""
    if config.device_link == "":
        config.device_link = None
    if seed_given:
        config.faults.seed = config.seed
    config.faults.validate()
    return config


def load_config(path: str | Path) -> VirtualRobotConfig:
    """VirtualRobotConfig from TOML: top-level fields, plus a [faults] table of FaultConfig fields."""
    try:
        return _checked(build(VirtualRobotConfig, read_toml(str(path))))
    except ConfigError as exc:
        raise VirtualRobotConfigError(f"{path}: {exc}") from None


def build_arg_parser() -> argparse.ArgumentParser:
    """One flag per config field (`--faults.<field>` for the fault injection); flags left out keep
    the value from --config (or the dataclass default)."""
    p = ArgumentParser(
        prog="python -m firmware_bridge.virtual_robot",
        description="Virtual motor firmware: MuJoCo with a hidden dynamics profile behind a pty.",
        example="python -m firmware_bridge.virtual_robot --profile moderate --device /tmp/ttyRobot "
                "--faults.drop-frame-prob 0.01  (docs/firmware_bridge.md)",
    )
    p.add_argument("--config", help="TOML file with VirtualRobotConfig fields and a [faults] table")
    add_dataclass_arguments(p, VirtualRobotConfig, flag_names={"device_link": "--device"})
    p.add_argument("--record", help="write both directions' bytes to this MCAP recording")
    p.add_argument("--log-level", default="INFO", help="logging level")
    return p


def config_from_args(args: argparse.Namespace) -> VirtualRobotConfig:
    """Defaults, then --config, then the flags given. The fault seed follows --seed unless set."""
    try:
        base = load_config(args.config) if args.config else VirtualRobotConfig()
        config = load_cli(VirtualRobotConfig, args, base)
    except ConfigError as exc:
        raise VirtualRobotConfigError(str(exc)) from None
    fault_seed_given = getattr(args, "faults.seed", None) is not None
    return _checked(config, seed_given=args.seed is not None and not fault_seed_given)


def main(argv: list[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = config_from_args(args)
    except (OSError, ValueError) as exc:  # unreadable/invalid TOML, unknown field, bad probability
        print(f"error: {exc}", file=sys.stderr)
        return 2
    recorder = None
    if args.record:
        from firmware_bridge.recorder import SerialByteRecorder

        recorder = SerialByteRecorder(args.record, clock="elapsed")  # firmware time, from 0
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    robot = VirtualRobot(config, recorder=recorder)
    print(robot.device, flush=True)  # the first line of output is the device path, for scripts
    try:
        robot.run(stop)
    finally:
        robot.stop()
        if recorder is not None:
            recorder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
