"""The motor firmware's rules, without the motors: power states, e-stop latch, watchdog, limits.

Why separate from the virtual robot: these rules are what a real motor board enforces whatever
the host does, so they are written once, plainly, and tested directly. The virtual robot wires
them between the serial frames and the MuJoCo plant; nothing here imports mujoco.

Rules (times are firmware time, seconds):
- Boot in DISABLED. ENABLE -> ENABLED (refused while the e-stop is latched). DISABLE -> DISABLED.
- ESTOP -> ESTOP mode, latched: ENABLE is refused until ESTOP_CLEAR, which returns to DISABLED;
  a fresh ENABLE is then needed (MotorMode's contract).
- A COMMAND is accepted only with finite values and gains in [0, kp_max] / [0, kd_max] (a huge
  gain makes the joint servo unstable); a rejected one sets BAD_COMMAND (until the next
  accepted one) and does not feed the watchdog.
- Watchdog: ENABLED and no accepted COMMAND for `watchdog_ms` -> DISABLED with WATCHDOG set
  (until the next ENABLE). ENABLE itself restarts the watchdog period.
- Outside ENABLED the motors get a zero command (no torque). In ENABLED, feed-forward torque is
  clipped to the limit; TORQUE_LIMITED is set on any tick whose estimated total torque exceeds it.
- A jammed actuator (fault injection) is held at the position where it jammed; MOTOR_STUCK is set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from protocol.robot_types import N_ACTUATORS, FaultFlags, MotorCommand, MotorMode, RobotState

log = logging.getLogger(__name__)

# Per-actuator torque limits (N·m) when the plant does not report its own: hip, knee, wheel (x2).
# Same numbers as the MJCF actuators (sim_models/wheel_legged/wheel_legged.xml forcerange).
DEFAULT_TORQUE_LIMIT_NM: tuple[float, ...] = (27.0, 27.0, 5.0, 27.0, 27.0, 5.0)
# A jammed gearbox is modelled as a stiff hold at the jam position (the plant still clips it).
STUCK_KP = 400.0
STUCK_KD = 4.0
# Gain limits of the joint servo: far above what the tasks use (legs kp 40, kd 1), far below
# where a 5 ms-period impedance loop on these inertias goes unstable.
MAX_KP = 500.0
MAX_KD = 50.0


@dataclass
class FirmwareConfig:
    watchdog_ms: float = 100.0  # no accepted COMMAND for this long while ENABLED -> motors off
    torque_limit_nm: tuple[float, ...] = DEFAULT_TORQUE_LIMIT_NM
    kp_max: float = MAX_KP  # COMMANDs with a larger stiffness are rejected (BAD_COMMAND)
    kd_max: float = MAX_KD  # likewise for damping


@dataclass
class FirmwareCounters:
    commands_accepted: int = 0
    commands_rejected: int = 0
    enables: int = 0
    enables_refused: int = 0  # ENABLE while the e-stop is latched
    disables: int = 0
    estops: int = 0
    estop_clears: int = 0
    watchdog_trips: int = 0
    torque_limited_ticks: int = 0


@dataclass
class FirmwareLogic:
    """State machine of one motor board. Call the handlers on frames, `output()` once a tick."""

    config: FirmwareConfig = field(default_factory=FirmwareConfig)
    mode: MotorMode = MotorMode.DISABLED
    faults: FaultFlags = FaultFlags.NONE
    counters: FirmwareCounters = field(default_factory=FirmwareCounters)

    def __post_init__(self) -> None:
        self._limit = np.asarray(self.config.torque_limit_nm, dtype=np.float32).reshape(N_ACTUATORS)
        self._command = MotorCommand()
        self._last_command_s: float | None = None
        self._stuck_index = -1
        self._stuck_pos = 0.0

    # --- frame handlers ---
    def on_enable(self, now_s: float) -> None:
        if self.mode == MotorMode.ESTOP:
            self.counters.enables_refused += 1
            log.warning("ENABLE refused: e-stop latched (send ESTOP clear first)")
            return
        self.counters.enables += 1
        self.mode = MotorMode.ENABLED
        self.faults &= ~FaultFlags.WATCHDOG
        self._last_command_s = now_s
        self._command = MotorCommand()  # never resume an old command after a gap

    def on_disable(self, now_s: float) -> None:
        self.counters.disables += 1
        if self.mode != MotorMode.ESTOP:
            self.mode = MotorMode.DISABLED

    def on_estop(self, now_s: float) -> None:
        self.counters.estops += 1
        self.mode = MotorMode.ESTOP
        self.faults |= FaultFlags.ESTOP_LATCHED

    def on_estop_clear(self, now_s: float) -> None:
        if self.mode == MotorMode.ESTOP:
            self.counters.estop_clears += 1
            self.mode = MotorMode.DISABLED
            self.faults &= ~FaultFlags.ESTOP_LATCHED

    def on_command(self, cmd: MotorCommand, now_s: float) -> bool:
        """Take a COMMAND; False (and BAD_COMMAND set) when it is not safe to apply."""
        cfg = self.config
        if (
            not cmd.is_finite()
            or np.any(cmd.kp < 0) or np.any(cmd.kp > cfg.kp_max)
            or np.any(cmd.kd < 0) or np.any(cmd.kd > cfg.kd_max)
        ):
            self.counters.commands_rejected += 1
            self.faults |= FaultFlags.BAD_COMMAND
            return False
        self.counters.commands_accepted += 1
        self.faults &= ~FaultFlags.BAD_COMMAND
        self._command = cmd
        self._last_command_s = now_s
        return True

    # --- once per tick ---
    def check_watchdog(self, now_s: float) -> None:
        if self.mode != MotorMode.ENABLED or self._last_command_s is None:
            return
        if (now_s - self._last_command_s) * 1e3 > self.config.watchdog_ms:
            self.counters.watchdog_trips += 1
            self.mode = MotorMode.DISABLED
            self.faults |= FaultFlags.WATCHDOG
            log.warning("watchdog: no command for > %.0f ms, motors off", self.config.watchdog_ms)

    def output(self, now_s: float, measured: RobotState, stuck_index: int = -1) -> MotorCommand:
        """The command the motors get this tick (after watchdog, mode, limits and jams)."""
        self.check_watchdog(now_s)
        if self.mode == MotorMode.ENABLED:
            src = self._command
            out = MotorCommand(
                q_des=src.q_des.copy(),
                qd_des=src.qd_des.copy(),
                kp=src.kp.copy(),
                kd=src.kd.copy(),
                tau_ff=np.clip(src.tau_ff, -self._limit, self._limit).astype(np.float32),
            )
            tau_est = (
                src.kp * (src.q_des - measured.joint_pos)
                + src.kd * (src.qd_des - measured.joint_vel)
                + src.tau_ff
            )
            if np.any(np.abs(tau_est) > self._limit):
                self.faults |= FaultFlags.TORQUE_LIMITED
                self.counters.torque_limited_ticks += 1
            else:
                self.faults &= ~FaultFlags.TORQUE_LIMITED
        else:
            out = MotorCommand()
            self.faults &= ~FaultFlags.TORQUE_LIMITED
        self._apply_jam(out, measured, stuck_index)
        return out

    def _apply_jam(self, out: MotorCommand, measured: RobotState, stuck_index: int) -> None:
        if stuck_index < 0:
            return
        if self._stuck_index != stuck_index:
            self._stuck_index = stuck_index
            self._stuck_pos = float(measured.joint_pos[stuck_index])
            log.warning("fault injection: actuator %d jammed at %.3f rad", stuck_index, self._stuck_pos)
        i = stuck_index
        out.q_des[i], out.qd_des[i], out.kp[i], out.kd[i], out.tau_ff[i] = (
            self._stuck_pos, 0.0, STUCK_KP, STUCK_KD, 0.0)
        self.faults |= FaultFlags.MOTOR_STUCK

    def stamp(self, state: RobotState) -> RobotState:
        """Write the firmware's mode and fault bits into a sensor snapshot."""
        state.mode = int(self.mode)
        state.faults = int(self.faults)
        return state
