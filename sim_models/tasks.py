"""Task definitions over the robot I/O contract: observation, action mapping, reward, termination.

NUMPY ONLY (no mujoco, no gymnasium): the onboard loop imports this to build the same observation
and reward from a firmware RobotState that the simulator env builds from WheelLeggedSim's. One
definition on both sides is what makes sim and real data comparable for H2O.

Paper-faithful tasks (H2O, reference/h2o_algorithm.md "The wheel-legged robot"):
  obs = [x, v, pitch, pitch_rate]; x = r (mean wheel angle + pitch), v = r (mean wheel speed +
  pitch rate) (the wheel angle is measured relative to the base, so the base pitch is added back
  to get the wheel's rotation in the world); one action in [-1, 1] -> 3 N·m on both wheels;
  200 Hz; 1000 steps; terminated at |pitch| > pi/6.
  stand_still:   r = 30 - tau^2 - ||s'||^2        (tau = the raw torque in N·m)
  move_straight: r = 15 - ((v - 0.2)^2 + tau^2)
Richer tasks on the same machinery: turn (two wheel torques, a yaw-rate command in the obs) and
locomotion (six actuators, legs by position targets, forward-velocity and height commands).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from protocol.robot_types import N_ACTUATORS, LEG_INDICES, WHEEL_INDICES, MotorCommand, RobotState

CONTROL_HZ = 200.0
EPISODE_STEPS = 1000
WHEEL_RADIUS_M = 0.065  # = sim_models.model.WHEEL_RADIUS_M (a test checks they agree)
PAPER_TORQUE_NM = 3.0  # the paper's action scale: torque / 3, clipped to [-1, 1]
MAX_PITCH_RAD = math.pi / 6
MAX_ROLL_RAD = math.pi / 18  # the authors' 3-D task: reset when |roll| > 10 deg
STRAIGHT_SPEED_MPS = 0.2
# Leg geometry (base frame, joint zero = the nominal crouch); mirrors wheel_legged.xml.
THIGH_M = 0.14
SHANK_M = 0.14
HIP_ZERO_RAD = 0.6  # thigh pitched back at joint zero
KNEE_ZERO_RAD = -1.2  # shank relative to thigh at joint zero
# Locomotion: legs are position-controlled around joint zero.
LEG_RANGE_RAD = 0.5
LEG_KP = 150.0  # stiff enough that the balance loop sees an almost rigid body (40 oscillated)
LEG_KD = 3.0
LOCO_WHEEL_TORQUE_NM = 5.0
LEFT_WHEEL, RIGHT_WHEEL = WHEEL_INDICES

_LEFT, _RIGHT = WHEEL_INDICES


def pitch_of(quat: np.ndarray) -> float:
    """Pitch (rotation about +y, nose down positive) from a w, x, y, z quaternion."""
    w, x, y, z = quat.tolist()
    return math.asin(max(-1.0, min(1.0, 2.0 * (w * y - z * x))))


def roll_of(quat: np.ndarray) -> float:
    """Roll (rotation about +x) from a w, x, y, z quaternion."""
    w, x, y, z = quat.tolist()
    return math.atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))


def wheel_odometry(state: RobotState, pitch: float | None = None) -> tuple[float, float]:
    """(x, v) of the axle along the base's forward axis from the wheel encoders and the IMU."""
    if pitch is None:
        pitch = pitch_of(state.imu_quat)
    pos, vel = state.joint_pos.tolist(), state.joint_vel.tolist()
    x = WHEEL_RADIUS_M * (0.5 * (pos[_LEFT] + pos[_RIGHT]) + pitch)
    v = WHEEL_RADIUS_M * (0.5 * (vel[_LEFT] + vel[_RIGHT]) + float(state.imu_gyro[1]))
    return x, v


def base_height(state: RobotState) -> float:
    """Base-centre height above the floor from leg kinematics and pitch (flat floor assumed)."""
    pitch = pitch_of(state.imu_quat)
    s, c = math.sin(pitch), math.cos(pitch)
    heights = []
    for hip, knee in ((0, 1), (3, 4)):
        t1 = HIP_ZERO_RAD + float(state.joint_pos[hip])
        t2 = t1 + KNEE_ZERO_RAD + float(state.joint_pos[knee])
        ax = -THIGH_M * math.sin(t1) - SHANK_M * math.sin(t2)
        az = -THIGH_M * math.cos(t1) - SHANK_M * math.cos(t2)
        heights.append(WHEEL_RADIUS_M - (-s * ax + c * az))
    return 0.5 * (heights[0] + heights[1])


def _wheel_torque_command(tau_left: float, tau_right: float) -> MotorCommand:
    tau = np.zeros(N_ACTUATORS, np.float32)
    tau[_LEFT] = tau_left
    tau[_RIGHT] = tau_right
    return MotorCommand(tau_ff=tau)


def _clip(action: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)


def _clip_scalar(a: float) -> float:
    """Clip to [-1, 1]; NaN stays NaN (the robot rejects a non-finite command, never hides it)."""
    return -1.0 if a < -1.0 else (1.0 if a > 1.0 else a)


def _clip_first(action: np.ndarray) -> float:
    """The first action component clipped to [-1, 1] (scalar math: this runs every step)."""
    return _clip_scalar(float(np.asarray(action).reshape(-1)[0]))


def _finite(values: list[float]) -> bool:
    return all(math.isfinite(v) for v in values)


# ------------------------------------------------------------------ paper tasks (1 torque, 4-D obs)
def observe_paper(state: RobotState, command: np.ndarray | None = None) -> np.ndarray:
    """[x, v, pitch, pitch_rate] (the command is unused: these tasks have none)."""
    pitch = pitch_of(state.imu_quat)
    x, v = wheel_odometry(state, pitch)
    return np.array([x, v, pitch, float(state.imu_gyro[1])], dtype=np.float32)


def paper_command(action: np.ndarray) -> MotorCommand:
    """One action in [-1, 1] -> the same torque (x 3 N·m) on both wheels."""
    tau = PAPER_TORQUE_NM * _clip_first(action)
    return _wheel_torque_command(tau, tau)


def stand_still_reward(obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> float:
    """r = 30 - tau^2 - ||s'||^2, tau in N·m."""
    tau = PAPER_TORQUE_NM * _clip_first(action)
    return 30.0 - tau * tau - sum(v * v for v in np.asarray(next_obs, dtype=np.float64).tolist())


def move_straight_reward(obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> float:
    """r = 15 - ((v - 0.2)^2 + tau^2), tau in N·m."""
    tau = PAPER_TORQUE_NM * _clip_first(action)
    dv = float(next_obs[1]) - STRAIGHT_SPEED_MPS
    return 15.0 - (dv * dv + tau * tau)


def pitch_terminated(next_obs: np.ndarray) -> bool:
    """|pitch| > pi/6 (obs[2] in the paper tasks), or a non-finite observation."""
    values = np.asarray(next_obs).tolist()
    return not _finite(values) or abs(values[2]) > MAX_PITCH_RAD


# ------------------------------------------------------------------ turn (2 torques, yaw-rate command)
TURN_YAW_RATE_RANGE = 1.0  # rad/s, command drawn uniformly in +-this
TURN_DEFAULT_YAW_RATE = 0.5  # rad/s, the command when none is given (onboard default)


def observe_turn(state: RobotState, command: np.ndarray | None = None) -> np.ndarray:
    """[v, pitch, pitch_rate, yaw_rate, yaw_rate_command]."""
    pitch = pitch_of(state.imu_quat)
    _, v = wheel_odometry(state, pitch)
    cmd = TURN_DEFAULT_YAW_RATE if command is None else float(command[0])
    _, pitch_rate, yaw_rate = state.imu_gyro.tolist()
    return np.array([v, pitch, pitch_rate, yaw_rate, cmd], dtype=np.float32)


def turn_command(action: np.ndarray) -> MotorCommand:
    left, right = (_clip_scalar(v) for v in np.asarray(action, np.float64).reshape(-1).tolist())
    return _wheel_torque_command(PAPER_TORQUE_NM * left, PAPER_TORQUE_NM * right)


def turn_reward(obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> float:
    """r = 15 - (v^2 + (yaw_rate - command)^2 + (tau_l^2 + tau_r^2) / 2)."""
    tau = PAPER_TORQUE_NM * _clip(action)
    v, yaw_rate, cmd = float(next_obs[0]), float(next_obs[3]), float(next_obs[4])
    return 15.0 - (v * v + (yaw_rate - cmd) ** 2 + 0.5 * float(tau @ tau))


def turn_terminated(next_obs: np.ndarray) -> bool:
    return not bool(np.all(np.isfinite(next_obs))) or abs(float(next_obs[1])) > MAX_PITCH_RAD


# ------------------------------------------------------------------ locomotion (6 actuators)
LOCO_SPEED_RANGE = 0.5  # m/s, forward-velocity command in +-this
LOCO_HEIGHT_RANGE = (0.24, 0.32)  # m, base-height command
LOCO_DEFAULT_COMMAND = (0.0, 0.296)  # stand at the nominal crouch height
_LOCO_V, _LOCO_H, _LOCO_VCMD, _LOCO_HCMD = 15, 16, 17, 18


def observe_locomotion(state: RobotState, command: np.ndarray | None = None) -> np.ndarray:
    """[pitch, roll, gyro(3), leg q(4), leg qd(4), wheel qd(2), v, height, v_cmd, height_cmd]."""
    _, v = wheel_odometry(state)
    v_cmd, h_cmd = LOCO_DEFAULT_COMMAND if command is None else (float(command[0]), float(command[1]))
    legs = list(LEG_INDICES)
    return np.concatenate([
        [pitch_of(state.imu_quat), roll_of(state.imu_quat)],
        state.imu_gyro,
        state.joint_pos[legs],
        state.joint_vel[legs],
        state.joint_vel[list(WHEEL_INDICES)],
        [v, base_height(state), v_cmd, h_cmd],
    ]).astype(np.float32)


def locomotion_command(action: np.ndarray) -> MotorCommand:
    """Legs: position targets (+-0.5 rad about the crouch, kp 150, kd 3); wheels: torque (5 N·m)."""
    a = _clip(action)
    cmd = MotorCommand()
    legs = list(LEG_INDICES)
    cmd.q_des[legs] = LEG_RANGE_RAD * a[legs]
    cmd.kp[legs] = LEG_KP
    cmd.kd[legs] = LEG_KD
    wheels = list(WHEEL_INDICES)
    cmd.tau_ff[wheels] = LOCO_WHEEL_TORQUE_NM * a[wheels]
    return cmd


def locomotion_reward(obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> float:
    """r = 10 - (2 (v - v_cmd)^2 + 100 (h - h_cmd)^2 + 0.1 yaw_rate^2 + 0.05 ||tau_wheels||^2)."""
    s = next_obs
    tau = LOCO_WHEEL_TORQUE_NM * _clip(action)[list(WHEEL_INDICES)]
    return 10.0 - (2.0 * float(s[_LOCO_V] - s[_LOCO_VCMD]) ** 2
                   + 100.0 * float(s[_LOCO_H] - s[_LOCO_HCMD]) ** 2
                   + 0.1 * float(s[4]) ** 2 + 0.05 * float(tau @ tau))


def locomotion_terminated(next_obs: np.ndarray) -> bool:
    if not bool(np.all(np.isfinite(next_obs))):
        return True
    return abs(float(next_obs[0])) > MAX_PITCH_RAD or abs(float(next_obs[1])) > MAX_ROLL_RAD


# ------------------------------------------------------------------ registry
@dataclass(frozen=True)
class TaskSpec:
    """What a task is, independent of where it runs (simulator or robot)."""

    name: str
    obs_dim: int
    act_dim: int
    variant: str  # sim_models.model variant: "legs_locked" or "full"
    observe: Callable[..., np.ndarray]  # (state, command=None) -> float32[obs_dim]
    action_to_command: Callable[[np.ndarray], MotorCommand]
    reward: Callable[[np.ndarray, np.ndarray, np.ndarray], float]
    terminated: Callable[[np.ndarray], bool]
    action_scale: float  # N·m per unit action on the wheels
    control_hz: float = CONTROL_HZ
    max_episode_steps: int = EPISODE_STEPS
    command_low: tuple[float, ...] = ()  # per-episode command drawn uniformly in [low, high]
    command_high: tuple[float, ...] = ()
    default_command: tuple[float, ...] = field(default=())

    def sample_command(self, rng: np.random.Generator) -> np.ndarray:
        """A command for one episode (empty for tasks without one)."""
        if not self.command_low:
            return np.zeros(0, np.float32)
        # One scalar draw per component: the same values, in the same order, as
        # rng.uniform(low, high) with arrays (low + (high - low) * next_double each), without its
        # array checks (~10x faster; the env draws a command at every reset).
        return np.array([rng.uniform(lo, hi) for lo, hi in zip(self.command_low, self.command_high)],
                        np.float32)


TASKS: dict[str, TaskSpec] = {
    "stand_still": TaskSpec("stand_still", 4, 1, "legs_locked", observe_paper, paper_command,
                            stand_still_reward, pitch_terminated, PAPER_TORQUE_NM),
    "move_straight": TaskSpec("move_straight", 4, 1, "legs_locked", observe_paper, paper_command,
                              move_straight_reward, pitch_terminated, PAPER_TORQUE_NM),
    "turn": TaskSpec("turn", 5, 2, "legs_locked", observe_turn, turn_command, turn_reward,
                     turn_terminated, PAPER_TORQUE_NM,
                     command_low=(-TURN_YAW_RATE_RANGE,), command_high=(TURN_YAW_RATE_RANGE,),
                     default_command=(TURN_DEFAULT_YAW_RATE,)),
    "locomotion": TaskSpec("locomotion", 19, 6, "full", observe_locomotion, locomotion_command,
                           locomotion_reward, locomotion_terminated, LOCO_WHEEL_TORQUE_NM,
                           command_low=(-LOCO_SPEED_RANGE, LOCO_HEIGHT_RANGE[0]),
                           command_high=(LOCO_SPEED_RANGE, LOCO_HEIGHT_RANGE[1]),
                           default_command=LOCO_DEFAULT_COMMAND),
}


# Gymnasium ids of the tasks (registered by `import sim_models` where gymnasium is installed).
ENV_IDS: dict[str, str] = {
    "stand_still": "h2o/StandStill-v0",
    "move_straight": "h2o/MoveStraight-v0",
    "turn": "h2o/Turn-v0",
    "locomotion": "h2o/Locomotion-v0",
}


class UnknownTaskError(KeyError):
    """A task name not in TASKS."""


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}; known: {sorted(TASKS)}") from None
