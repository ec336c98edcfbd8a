"""Classical balance controller: behaviour policy for offline data and the onboard fallback.

NUMPY ONLY (runs on the robot: the STAND driver, and the behaviour policy of the offline data).
Discrete LQR with integral action on the planar
wheeled-inverted-pendulum model of the legs-locked robot. The gains are derived offline by
`sim_models.lqr_design` (costs = the paper's stand-still reward, Q = I on [x, v, pitch,
pitch_rate] and R = 1 on the per-wheel torque in N·m, plus weight 20 on the integral of the
position error, which stops the run-away a COM shift otherwise causes) and stored here; a test
re-derives them from the MJCF and checks they match.

The error it regulates: e = [integral of (x - x_ref), x - x_ref, v - v_ref, pitch, pitch_rate],
with x_ref advancing at v_ref per call. Per task:
- stand_still: v_ref = 0. move_straight: v_ref = 0.2 m/s.
- turn (no x in the obs): x is integrated from v; a differential yaw-rate term is added.
- locomotion: legs crouch symmetrically (hip +d, knee -2d) to the height command, wheels balance
  and track the speed command.
`detuned=True`: half the integral, position, speed and pitch-rate gains. On a gap profile
("moderate") it falls after about 1.5 s, about a third of the tuned return: genuinely medium data.
Why not the tuned controller plus noise: on this robot that is nearly expert data, behaviour
cloning alone then reaches almost the controller's return, and an offline benchmark built on it
cannot tell the algorithms apart.

Stateful (integral, reference): call `reset()` at each episode start. It reads the raw fields
at the head of the observation, so it drives a task with history options unchanged
(task_contract.history puts the current raw observation first).
"""

from __future__ import annotations

import numpy as np

from task_contract.geometry import CONTROL_HZ, HIP_ZERO_RAD, SHANK_M, THIGH_M, WHEEL_RADIUS_M
from task_contract.tasks import (
    LEG_RANGE_RAD,
    LOCO_WHEEL_TORQUE_NM,
    PAPER_TORQUE_NM,
    STRAIGHT_SPEED_MPS,
    TASKS,
)

# u = -K e (per-wheel torque, N·m); from `python -m sim_models.lqr_design` (model 0.1.0).
LQR_GAIN = np.array([-3.782796, -5.096803, -3.326041, -11.659486, -1.798409])
# Half the integral, position, speed and pitch-rate gains: near-expert on the nominal robot but
# it loses a COM-shifted one within seconds (on "moderate" the medium datasets score well
# below the tuned controller: docs/results.md).
DETUNED_GAIN = LQR_GAIN * np.array([0.5, 0.5, 0.5, 1.0, 0.5])
# Anti-windup: a +4 cm COM shift needs ~0.5 m·s of integral; beyond 1 m·s it only saturates the
# motors (a robot held in the air or stuck would otherwise wind it up without bound).
INTEGRAL_LIMIT_M_S = 1.0
CROUCH_RATE_RAD_S = 0.3  # locomotion: how fast the hip angle moves toward the height command
YAW_RATE_GAIN = 2.0  # N·m of wheel-torque difference per rad/s of yaw-rate error
_LOCO_PITCH, _LOCO_GYRO_Y, _LOCO_V, _LOCO_VCMD, _LOCO_HCMD = 0, 3, 15, 17, 18


class UnsupportedTaskError(ValueError):
    """The controller has no law for this task name."""


class BalanceController:
    """act(obs) -> action in [-1, 1]^act_dim for one of the four tasks."""

    def __init__(self, task: str = "stand_still", detuned: bool = False,
                 speed_mps: float | None = None) -> None:
        task = task.split(":", 1)[0]  # a task id with options: the same law on the raw fields
        if task not in TASKS:
            raise UnsupportedTaskError(f"no controller for task {task!r}; known: {sorted(TASKS)}")
        self.task = task
        self.detuned = detuned
        self.gain = (DETUNED_GAIN if detuned else LQR_GAIN).copy()
        default_speed = STRAIGHT_SPEED_MPS if task == "move_straight" else 0.0
        self.speed_mps = default_speed if speed_mps is None else float(speed_mps)
        self.dt = 1.0 / CONTROL_HZ
        self.reset()

    def reset(self) -> None:
        """Forget the reference, the integral and the integrated position (episode start)."""
        self._x_ref: float | None = None
        self._x_hat = 0.0
        self._integral = 0.0
        self._crouch = 0.0

    def _balance_torque(self, x: float | None, v: float, pitch: float, pitch_rate: float,
                        speed: float) -> float:
        if x is None:  # no position in the obs: integrate the measured speed
            self._x_hat += v * self.dt
            x = self._x_hat
        if self._x_ref is None:
            self._x_ref = x
        else:
            self._x_ref += speed * self.dt
        x_err = x - self._x_ref
        self._integral = min(INTEGRAL_LIMIT_M_S,
                             max(-INTEGRAL_LIMIT_M_S, self._integral + x_err * self.dt))
        err = np.array([self._integral, x_err, v - speed, pitch, pitch_rate])
        return float(-self.gain @ err)

    def act(self, obs: np.ndarray) -> np.ndarray:
        o = np.asarray(obs, dtype=np.float64)
        if self.task in ("stand_still", "move_straight"):
            tau = self._balance_torque(o[0], o[1], o[2], o[3], self.speed_mps)
            return np.clip(np.array([tau / PAPER_TORQUE_NM]), -1.0, 1.0).astype(np.float32)
        if self.task == "turn":
            # obs = [v, pitch, pitch_rate, yaw_rate, yaw_rate_cmd]; +yaw (left) = right wheel ahead.
            tau = self._balance_torque(None, o[0], o[1], o[2], self.speed_mps)
            diff = 0.5 * YAW_RATE_GAIN * (o[4] - o[3])
            return np.clip(np.array([tau - diff, tau + diff]) / PAPER_TORQUE_NM,
                           -1.0, 1.0).astype(np.float32)
        tau = self._balance_torque(None, o[_LOCO_V], o[_LOCO_PITCH], o[_LOCO_GYRO_Y], o[_LOCO_VCMD])
        # Height: hip +d, knee -2d keeps the axle under the hip; axle drop = 2 L cos(hip0 + d).
        reach = (float(o[_LOCO_HCMD]) - WHEEL_RADIUS_M) / (THIGH_M + SHANK_M)
        target = float(np.arccos(np.clip(reach, -1.0, 1.0))) - HIP_ZERO_RAD
        # Crouch slowly: a step change of the leg targets throws the body off balance.
        step = CROUCH_RATE_RAD_S * self.dt
        self._crouch += float(np.clip(target - self._crouch, -step, step))
        d = self._crouch
        a = np.zeros(6)
        a[[0, 3]] = d / LEG_RANGE_RAD
        a[[1, 4]] = -2.0 * d / LEG_RANGE_RAD
        a[[2, 5]] = tau / LOCO_WHEEL_TORQUE_NM
        return np.clip(a, -1.0, 1.0).astype(np.float32)
