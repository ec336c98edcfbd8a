"""The tasks: observation, reward, termination and action mapping, one definition for sim and robot.

NUMPY ONLY. The simulator's env (single and batched, fast path included), the robot program, the
HIL and recordings tools all call these functions; tests/sim_models/test_step_fast_path.py and
test_vector_env.py hold the env's paths bit-identical to them.

Paper-faithful tasks (H2O, "The wheel-legged robot"):
  obs = [x, v, pitch, pitch_rate]; x = r (wheel travel since the episode start), wheel travel =
  mean wheel angle + pitch (the encoders measure the wheel relative to the base, so the base pitch
  is added back), v = r (mean wheel speed + pitch rate); one action in [-1, 1] -> 3 N·m on both
  wheels; 200 Hz; 1000 steps; terminated at |pitch| > pi/6.
  stand_still:   r = 30 - tau^2 - ||s'||^2        (tau = the raw torque in N·m)
  move_straight: r = 15 - ((v - 0.2)^2 + tau^2)
Richer tasks on the same machinery: turn (two wheel torques, a yaw-rate command in the obs) and
locomotion (six actuators, legs by position targets, forward-velocity and height commands).

The episode origin: x counts from the wheel travel at the episode's first reading (`origin`),
on both sides. The simulator's reset puts the wheels where x = 0 anyway; the robot's wheels keep
their count across episodes, and without the origin a robot that had rolled 70 m paid
-x^2 ~ -5,000 per step in every later episode (the -3.5 million controller episodes of the demo).

Every function reads the flat state values of task_contract.state (`b`) and works on Python
floats; the array forms (`TaskSpec.observe`, `.reward`, `.terminated`) wrap them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from protocol.robot_types import LEG_INDICES, WHEEL_INDICES, MotorCommand, RobotState
from task_contract.actuation import IDLE, POSITION, ActuatorMap, Drive, clip_unit
from task_contract.geometry import (
    CONTROL_HZ,
    EPISODE_STEPS,
    MAX_PITCH_RAD,
    MAX_ROLL_RAD,
    WHEEL_RADIUS_M,
    axle_speed,
    base_height_values,
    pitch_of_values,
    roll_of_values,
    wheel_travel_rad,
)
from task_contract.state import GYRO, POS, VEL, state_values

PAPER_TORQUE_NM = 3.0  # the paper's action scale: torque / 3, clipped to [-1, 1]
STRAIGHT_SPEED_MPS = 0.2
# Locomotion: legs are position-controlled around joint zero.
LEG_RANGE_RAD = 0.5
LEG_KP = 150.0  # stiff enough that the balance loop sees an almost rigid body (40 oscillated)
LEG_KD = 3.0
LOCO_WHEEL_TORQUE_NM = 5.0
TURN_YAW_RATE_RANGE = 1.0  # rad/s, command drawn uniformly in +-this
TURN_DEFAULT_YAW_RATE = 0.5  # rad/s, the command when none is given (onboard default)
LOCO_SPEED_RANGE = 0.5  # m/s, forward-velocity command in +-this
LOCO_HEIGHT_RANGE = (0.24, 0.32)  # m, base-height command
LOCO_DEFAULT_COMMAND = (0.0, 0.296)  # stand at the nominal crouch height
_L, _R = WHEEL_INDICES
_GY, _GZ = GYRO + 1, GYRO + 2


def episode_origin(b: list) -> float:
    """The wheel travel (rad) an episode's x counts from: read at its first state."""
    return wheel_travel_rad(b, pitch_of_values(b))


def finite(values: list) -> bool:
    """All values finite (one float64 sum: float32-range values cannot overflow it)."""
    return math.isfinite(sum(values))


# ------------------------------------------------------------------ paper tasks (1 torque, 4-D obs)
PAPER_FIELDS = ("x", "v", "pitch", "pitch_rate")


def observe_paper(b: list, c: list, origin: float) -> list:
    """[x, v, pitch, pitch_rate] (the command is unused: these tasks have none)."""
    pitch = pitch_of_values(b)
    x = WHEEL_RADIUS_M * (wheel_travel_rad(b, pitch) - origin)
    return [x, axle_speed(b), pitch, b[_GY]]


def stand_still_reward(a: list, o: list) -> float:
    """r = 30 - tau^2 - ||s'||^2, tau in N·m."""
    tau = PAPER_TORQUE_NM * clip_unit(a[0])
    x, v, pitch, rate = o
    return 30.0 - tau * tau - (x * x + v * v + pitch * pitch + rate * rate)


def move_straight_reward(a: list, o: list) -> float:
    """r = 15 - ((v - 0.2)^2 + tau^2), tau in N·m."""
    tau = PAPER_TORQUE_NM * clip_unit(a[0])
    dv = o[1] - STRAIGHT_SPEED_MPS
    return 15.0 - (dv * dv + tau * tau)


def pitch_terminated(o: list) -> bool:
    """|pitch| > pi/6 (o[2]), or a non-finite observation."""
    return not finite(o) or abs(o[2]) > MAX_PITCH_RAD


# ------------------------------------------------------------------ turn (2 torques, yaw-rate command)
TURN_FIELDS = ("v", "pitch", "pitch_rate", "yaw_rate", "yaw_rate_cmd")


def observe_turn(b: list, c: list, origin: float) -> list:
    """[v, pitch, pitch_rate, yaw_rate, yaw_rate_command]."""
    return [axle_speed(b), pitch_of_values(b), b[_GY], b[_GZ], c[0]]


def turn_reward(a: list, o: list) -> float:
    """r = 15 - (v^2 + (yaw_rate - command)^2 + (tau_l^2 + tau_r^2) / 2)."""
    left, right = PAPER_TORQUE_NM * clip_unit(a[0]), PAPER_TORQUE_NM * clip_unit(a[1])
    v, yaw_rate, cmd = o[0], o[3], o[4]
    return 15.0 - (v * v + (yaw_rate - cmd) ** 2 + 0.5 * (left * left + right * right))


def turn_terminated(o: list) -> bool:
    return not finite(o) or abs(o[1]) > MAX_PITCH_RAD


# ------------------------------------------------------------------ locomotion (6 actuators)
LOCO_FIELDS = ("pitch", "roll", "gyro_x", "gyro_y", "gyro_z",
               "q_left_hip", "q_left_knee", "q_right_hip", "q_right_knee",
               "qd_left_hip", "qd_left_knee", "qd_right_hip", "qd_right_knee",
               "qd_left_wheel", "qd_right_wheel", "v", "height", "v_cmd", "height_cmd")
_LOCO_V, _LOCO_H, _LOCO_VCMD, _LOCO_HCMD = 15, 16, 17, 18
_LEG_POS = [POS + i for i in LEG_INDICES]
_LEG_VEL = [VEL + i for i in LEG_INDICES]


def observe_locomotion(b: list, c: list, origin: float) -> list:
    """[pitch, roll, gyro(3), leg q(4), leg qd(4), wheel qd(2), v, height, v_cmd, height_cmd]."""
    pitch = pitch_of_values(b)
    hl, kl, hr, kr = _LEG_POS
    vhl, vkl, vhr, vkr = _LEG_VEL
    return [pitch, roll_of_values(b), b[GYRO], b[_GY], b[_GZ], b[hl], b[kl], b[hr], b[kr],
            b[vhl], b[vkl], b[vhr], b[vkr], b[VEL + _L], b[VEL + _R], axle_speed(b),
            base_height_values(b, pitch), c[0], c[1]]


def locomotion_reward(a: list, o: list) -> float:
    """r = 10 - (2 (v - v_cmd)^2 + 100 (h - h_cmd)^2 + 0.1 yaw_rate^2 + 0.05 ||tau_wheels||^2)."""
    left, right = LOCO_WHEEL_TORQUE_NM * clip_unit(a[_L]), LOCO_WHEEL_TORQUE_NM * clip_unit(a[_R])
    dv, dh = o[_LOCO_V] - o[_LOCO_VCMD], o[_LOCO_H] - o[_LOCO_HCMD]
    return 10.0 - (2.0 * dv * dv + 100.0 * dh * dh + 0.1 * o[4] * o[4] + 0.05 * (left * left + right * right))


def locomotion_terminated(o: list) -> bool:
    return not finite(o) or abs(o[0]) > MAX_PITCH_RAD or abs(o[1]) > MAX_ROLL_RAD


# ------------------------------------------------------------------ action maps
_PAPER_WHEEL = Drive(0, scale=PAPER_TORQUE_NM)
PAPER_DRIVES = ActuatorMap((IDLE, IDLE, _PAPER_WHEEL, IDLE, IDLE, _PAPER_WHEEL))
TURN_DRIVES = ActuatorMap((IDLE, IDLE, Drive(0, scale=PAPER_TORQUE_NM), IDLE, IDLE, Drive(1, scale=PAPER_TORQUE_NM)))
LOCO_DRIVES = ActuatorMap(tuple(
    Drive(i, POSITION, LEG_RANGE_RAD, LEG_KP, LEG_KD) if i in LEG_INDICES else Drive(i, scale=LOCO_WHEEL_TORQUE_NM)
    for i in range(6)))


# ------------------------------------------------------------------ registry
@dataclass(frozen=True)
class TaskSpec:
    """What a task is, independent of where it runs (simulator or robot).

    The value functions are the definition; the array methods below wrap them for callers that
    hold arrays (the robot loop, the recordings tools, tests).
    """

    name: str
    obs_fields: tuple[str, ...]  # the raw observation's fields, in order
    act_dim: int
    variant: str  # sim_models.model variant: "legs_locked" or "full"
    observe_values: Callable[[list, list, float], list]  # (state values, command, origin) -> raw obs
    reward_values: Callable[[list, list], float]  # (action values, next raw obs values) -> reward
    terminated_values: Callable[[list], bool]  # next raw obs values -> terminated
    drives: ActuatorMap
    control_hz: float = CONTROL_HZ
    max_episode_steps: int = EPISODE_STEPS
    command_low: tuple[float, ...] = ()  # per-episode command drawn uniformly in [low, high]
    command_high: tuple[float, ...] = ()
    default_command: tuple[float, ...] = field(default=())
    pitch_index: int = 2  # where the raw observation holds the pitch (with_max_pitch)
    max_pitch: float = MAX_PITCH_RAD  # the pitch beyond which an episode terminates

    def with_max_pitch(self, max_pitch: float) -> "TaskSpec":
        """This task terminating at |pitch| > `max_pitch` as well (0 or >= pi/6: itself).

        Why: a robot's safety catch ends a policy's episode at a tilt well inside pi/6 (0.25 rad in
        the virtual robot's config). With the task's own limit the learner never sees that end:
        its simulator lets a policy lean to 0.5 rad, and the robot's caught episodes look like
        ones that go on, so a lean to the catch costs nothing in the learner's values. The option
        puts the same end into every episode, simulated or real.
        """
        base = self if self.max_pitch >= MAX_PITCH_RAD else TASKS[self.name]
        if not max_pitch or max_pitch >= MAX_PITCH_RAD:
            return base
        return dataclasses.replace(base, max_pitch=float(max_pitch),
                                   terminated_values=PitchLimit(base.terminated_values, base.pitch_index, max_pitch))

    @property
    def obs_dim(self) -> int:
        """Length of the raw observation (without history; see task_contract.history)."""
        return len(self.obs_fields)

    @property
    def action_scale(self) -> float:
        """N·m per unit action on the wheels (the per-actuator table is `drives`)."""
        return self.drives.drives[_L].scale

    def command_values(self, command: "np.ndarray | None") -> list:
        """The episode's task command as values (the default when None)."""
        return list(self.default_command) if command is None else np.asarray(command, np.float64).tolist()

    def observe(self, state: RobotState, command: "np.ndarray | None" = None, origin: float = 0.0) -> np.ndarray:
        """The raw float32 observation of `state` (x counted from `origin`, see the module doc)."""
        return np.array(self.observe_values(state_values(state), self.command_values(command), origin), np.float32)

    def reward(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> float:
        """Reward of `action` leading to raw observation `next_obs` (`obs` is not used)."""
        return self.reward_values(_values(action), _values(next_obs))

    def terminated(self, next_obs: np.ndarray) -> bool:
        return bool(self.terminated_values(_values(next_obs)))

    def action_to_command(self, action: np.ndarray) -> MotorCommand:
        return self.drives.command(_values(action))

    def command_to_action(self, cmd: MotorCommand) -> np.ndarray:
        """The action in [-1, 1] that produced `cmd` (the recordings tools' inverse)."""
        return self.drives.action_of(cmd, self.act_dim)

    def sample_command(self, rng: np.random.Generator) -> np.ndarray:
        """A command for one episode (empty for tasks without one)."""
        if not self.command_low:
            return np.zeros(0, np.float32)
        # One scalar draw per component: the same values, in the same order, as
        # rng.uniform(low, high) with arrays (low + (high - low) * next_double each), without its
        # array checks (far cheaper; the env draws a command at every reset).
        return np.array([rng.uniform(lo, hi) for lo, hi in zip(self.command_low, self.command_high)],
                        np.float32)


class PitchLimit:
    """A task's termination, tightened: also terminated at |o[index]| > limit (picklable)."""

    def __init__(self, base: Callable[[list], bool], index: int, limit: float) -> None:
        self.base, self.index, self.limit = base, index, float(limit)

    def __call__(self, o: list) -> bool:
        return self.base(o) or abs(o[self.index]) > self.limit


def _values(x) -> list:
    return np.asarray(x).reshape(-1).tolist()


TASKS: dict[str, TaskSpec] = {
    "stand_still": TaskSpec("stand_still", PAPER_FIELDS, 1, "legs_locked", observe_paper,
                            stand_still_reward, pitch_terminated, PAPER_DRIVES),
    "move_straight": TaskSpec("move_straight", PAPER_FIELDS, 1, "legs_locked", observe_paper,
                              move_straight_reward, pitch_terminated, PAPER_DRIVES),
    "turn": TaskSpec("turn", TURN_FIELDS, 2, "legs_locked", observe_turn, turn_reward, turn_terminated,
                     TURN_DRIVES, command_low=(-TURN_YAW_RATE_RANGE,), command_high=(TURN_YAW_RATE_RANGE,),
                     default_command=(TURN_DEFAULT_YAW_RATE,), pitch_index=1),
    "locomotion": TaskSpec("locomotion", LOCO_FIELDS, 6, "full", observe_locomotion, locomotion_reward,
                           locomotion_terminated, LOCO_DRIVES,
                           command_low=(-LOCO_SPEED_RANGE, LOCO_HEIGHT_RANGE[0]),
                           command_high=(LOCO_SPEED_RANGE, LOCO_HEIGHT_RANGE[1]),
                           default_command=LOCO_DEFAULT_COMMAND, pitch_index=0),
}


class UnknownTaskError(KeyError):
    """A task name not in TASKS."""


def get_task(name: str) -> TaskSpec:
    """The task called `name` (a task id with options, "stand_still:action_history=2", gives its
    base task: the options shape the observation, see task_contract.history)."""
    base = name.split(":", 1)[0]
    try:
        return TASKS[base]
    except KeyError:
        raise UnknownTaskError(f"unknown task {base!r}; known: {sorted(TASKS)}") from None


# ------------------------------------------------------------------ RobotState conveniences
def pitch_of(quat: np.ndarray) -> float:
    """Pitch from a w, x, y, z quaternion (pitch_of_values on an array)."""
    return pitch_of_values([0.0] * 18 + np.asarray(quat).tolist())


def roll_of(quat: np.ndarray) -> float:
    """Roll from a w, x, y, z quaternion."""
    return roll_of_values([0.0] * 18 + np.asarray(quat).tolist())


def wheel_odometry(state: RobotState) -> tuple[float, float]:
    """(x, v) of the axle from the wheel encoders and the IMU, x counted from wheel travel 0."""
    b = state_values(state)
    return WHEEL_RADIUS_M * wheel_travel_rad(b, pitch_of_values(b)), axle_speed(b)


def base_height(state: RobotState) -> float:
    """Base-centre height above the floor from leg kinematics and pitch (flat floor assumed)."""
    b = state_values(state)
    return base_height_values(b, pitch_of_values(b))
