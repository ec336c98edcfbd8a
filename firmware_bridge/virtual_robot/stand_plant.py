"""The robot on a stand: a plant for the virtual robot that needs no MuJoCo.

Why: the firmware's rules (power states, watchdog, e-stop latch, torque limits, fault frames) are
tested over a real pty against both firmware_bridge/virtual_robot/firmware.py and the C skeleton
(firmware_bridge/c/); a plant whose joints never move makes every torque those rules produce
show unchanged in STATE, and both sides can implement it identically (the C one is
firmware_bridge/c/host/sim_hal.c). It also lets a host program be tried against the virtual
robot on a board without MuJoCo.

Per step the plant applies, per actuator, the firmware's output command to joints held at zero:
    tau = clip(kp * (q_des - 0) + kd * (qd_des - 0) + tau_ff, -limit, limit)
(the firmware has already clipped tau_ff; this clip of the total is what MuJoCo's actuator
force range does). The base is level and at rest: identity quaternion, 9.81 m/s^2 up.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from firmware_bridge.virtual_robot.firmware import DEFAULT_TORQUE_LIMIT_NM
from protocol.robot_types import N_ACTUATORS, MotorCommand, RobotState

GRAVITY = 9.81


class StandPlant:
    """`virtual_robot.Plant` without physics. `clock` gives the firmware time in seconds.

    The virtual robot stamps STATE with the plant's `t_us`; pass the robot's own clock
    (`plant.clock = robot.firmware_time_s`) so the stamps and its watchdog read the same time.
    Without one, time is the number of steps times `control_dt` (as in lock-step).
    """

    def __init__(self, control_dt: float = 0.005, clock: Callable[[], float] | None = None,
                 torque_limits: tuple[float, ...] = DEFAULT_TORQUE_LIMIT_NM) -> None:
        self.control_dt = control_dt
        self.clock = clock
        self.torque_limits = np.asarray(torque_limits, dtype=np.float32).reshape(N_ACTUATORS)
        self._steps = 0

    def _t_us(self) -> int:
        t_s = self.clock() if self.clock is not None else self._steps * self.control_dt
        return int(t_s * 1e6)

    def reset(self) -> RobotState:
        self._steps = 0
        return self._state(np.zeros(N_ACTUATORS, np.float32))

    def step(self, cmd: MotorCommand) -> RobotState:
        self._steps += 1
        q = np.zeros(N_ACTUATORS, np.float32)
        servo = cmd.kp * (cmd.q_des - q) + cmd.kd * (cmd.qd_des - q)
        tau = np.clip(servo + cmd.tau_ff, -self.torque_limits, self.torque_limits).astype(np.float32)
        return self._state(tau)

    def _state(self, tau: np.ndarray) -> RobotState:
        return RobotState(
            t_us=self._t_us(),
            joint_torque=tau,
            imu_acc=np.array([0.0, 0.0, GRAVITY], np.float32),
        )

