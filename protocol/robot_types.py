"""The robot's I/O contract, shared by firmware, virtual robot, onboard loop and simulator.

Why here: the serial STATE/COMMAND frames, the MuJoCo model's sensors and the task observation
functions must agree on names, order and units, or a policy trained in simulation reads a
different robot from the one it drives. One definition, imported everywhere (numpy only).

Actuator order (index -> joint):
    0 left_hip   1 left_knee   2 left_wheel   3 right_hip   4 right_knee   5 right_wheel

Units: rad, rad/s, N·m, m/s^2, microseconds. Frames: the base frame is x forward, y left,
z up; pitch is rotation about +y (nose down positive), as MuJoCo's right-handed convention.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

ACTUATOR_NAMES: tuple[str, ...] = (
    "left_hip",
    "left_knee",
    "left_wheel",
    "right_hip",
    "right_knee",
    "right_wheel",
)
N_ACTUATORS = len(ACTUATOR_NAMES)
WHEEL_INDICES: tuple[int, int] = (2, 5)
LEG_INDICES: tuple[int, ...] = (0, 1, 3, 4)


class MotorMode(enum.IntEnum):
    """Firmware power state, reported in every STATE frame."""

    DISABLED = 0  # motors unpowered (boot, after DISABLE, after watchdog)
    ENABLED = 1  # COMMANDs are applied
    ESTOP = 2  # latched: only an explicit ENABLE after a clear leaves it


class FaultFlags(enum.IntFlag):
    """Bitmask in STATE.faults. Bits stay set while the condition holds (ESTOP: until cleared)."""

    NONE = 0
    WATCHDOG = 1 << 0  # no valid COMMAND within the watchdog time: motors were switched off
    ESTOP_LATCHED = 1 << 1
    SENSOR_DROPOUT = 1 << 2  # IMU/encoder values are stale (held) this frame
    MOTOR_STUCK = 1 << 3
    TORQUE_LIMITED = 1 << 4  # a commanded torque was clipped to the actuator limit
    BAD_COMMAND = 1 << 5  # a COMMAND with non-finite values was rejected


def _f32(n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.float32)


@dataclass
class RobotState:
    """One firmware sensor snapshot (the STATE frame's payload, decoded)."""

    t_us: int = 0  # firmware clock at sampling, microseconds
    joint_pos: np.ndarray = field(default_factory=lambda: _f32(N_ACTUATORS))  # rad; wheels accumulate
    joint_vel: np.ndarray = field(default_factory=lambda: _f32(N_ACTUATORS))  # rad/s
    joint_torque: np.ndarray = field(default_factory=lambda: _f32(N_ACTUATORS))  # N·m actually applied
    imu_quat: np.ndarray = field(default_factory=lambda: np.array([1, 0, 0, 0], np.float32))  # w,x,y,z
    imu_gyro: np.ndarray = field(default_factory=lambda: _f32(3))  # rad/s, base frame
    imu_acc: np.ndarray = field(default_factory=lambda: _f32(3))  # m/s^2 specific force, base frame
    mode: int = int(MotorMode.DISABLED)
    faults: int = int(FaultFlags.NONE)


@dataclass
class MotorCommand:
    """Per-actuator impedance command (the MIT-Cheetah motor format).

    The firmware applies, every physics tick,
        tau = kp * (q_des - q) + kd * (qd_des - qd) + tau_ff
    clipped to the actuator's torque limit. A pure torque command is kp = kd = 0.
    """

    q_des: np.ndarray = field(default_factory=lambda: _f32(N_ACTUATORS))
    qd_des: np.ndarray = field(default_factory=lambda: _f32(N_ACTUATORS))
    kp: np.ndarray = field(default_factory=lambda: _f32(N_ACTUATORS))
    kd: np.ndarray = field(default_factory=lambda: _f32(N_ACTUATORS))
    tau_ff: np.ndarray = field(default_factory=lambda: _f32(N_ACTUATORS))

    @classmethod
    def torque(cls, tau: np.ndarray) -> "MotorCommand":
        return cls(tau_ff=np.asarray(tau, dtype=np.float32).reshape(N_ACTUATORS).copy())

    def is_finite(self) -> bool:
        return all(np.all(np.isfinite(a)) for a in (self.q_des, self.qd_des, self.kp, self.kd, self.tau_ff))
