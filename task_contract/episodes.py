"""The task's episodes over a robot's sensor stream, and the flags of rows outside them.

Why: the simulator's env starts every episode from a reset and ends it at the task's termination
or length; the robot never resets. Its loop hands the robot between drivers (controller, policy
versions), catches a policy that tilts too far, falls, lies in DAMPING, is picked up (or the
virtual robot respawns) and recovers. `TaskStream` applies the env's rules to that stream, with
the same functions: an episode starts with the odometry origin and the history reset
(task_contract.history), every row's observation, reward and termination are the task's, and it
ends at termination, at the task's length, or where its driver stops driving.

Rows the robot records outside a task episode carry flags (TRANSITIONS column `flags`) and never
enter the learner's real buffer (learner.service.trainer keeps `flags == 0` only):
  PAST_TERMINATION  the episode terminated earlier in this stretch and the robot went on
  RECOVERING        the controller drives after a fall (DAMPING), until the policy takes over
  CAUGHT            the controller drives a robot it took from the policy (a catch, an operator's
                    stand, no policy, learner lost), until the policy takes over again
  MOTORS_OFF        the firmware reported its motors not enabled after the step: the action was
                    not applied (watchdog, a respawn of the virtual robot)
A stretch is one driver's uninterrupted drive; the loop starts a new one (a new episode) when the
driver or the policy version changes, after the task's length, and after any tick without a
driver. Only the controller's stretches from a standing start (program start, operator reset)
and the policy's stretches are task episodes. Within a stretch, an episode that terminated ends
there; when the robot comes back within the task's bounds under the same driver (a controller
swinging past a tight `max_pitch` and back), the next episode starts at that reading.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from task_contract.history import History, ObsLayout
from task_contract.tasks import episode_origin


class RowFlag(enum.IntFlag):
    NONE = 0
    PAST_TERMINATION = 1
    RECOVERING = 2
    CAUGHT = 4
    MOTORS_OFF = 8


def in_task_episode(flags: "np.ndarray | None", n: int) -> np.ndarray:
    """Boolean mask of the rows that belong to a task episode (rows without flags: all)."""
    if flags is None:
        return np.ones(n, bool)
    return np.asarray(flags) == 0


@dataclass
class StepResult:
    """One control step of a stretch: the next observation and what the task says of the step."""

    obs: np.ndarray  # the policy's observation (with history)
    reward: float
    terminated: bool  # the task's termination on this step's raw observation
    truncated: bool  # the task's length reached (not terminated)
    flags: int  # the row's flags (the stretch's, plus PAST_TERMINATION after a termination)


class TaskStream:
    """Episodes of one task over one robot's readings (state values, task_contract.state).

    `start(b, flags)` opens a stretch at reading `b` (an episode start: origin, history; `flags`
    marks a stretch outside the task's episodes) and returns its first observation;
    `step(action, b)` is one control step within it; `stop()` closes it.
    """

    def __init__(self, layout: ObsLayout, command: "np.ndarray | None" = None) -> None:
        self.layout = layout
        self.task = layout.task
        self.command = self.task.command_values(command)
        self.history = History(layout)
        self.active = False
        self.flags = 0
        self.steps = 0
        self.terminated = False
        self.origin = 0.0
        self.raw: list = []

    def start(self, b: list, flags: int = 0, handover: bool = False) -> np.ndarray:
        """`handover`: the robot was driven up to this reading (a swap, a catch, the policy taking
        over, the task's length): the past actions in the history are the ones really applied."""
        self.active = True
        self.flags = int(flags)
        self.steps = 0
        self.terminated = False
        self.origin = episode_origin(b)
        self.raw = self._raw(b)
        return np.array(self.history.start(self.raw, keep_actions=handover), np.float32)

    def step(self, action: np.ndarray, b: list) -> StepResult:
        a = np.asarray(action).reshape(-1).tolist()
        self.raw = self._raw(b)
        obs = np.array(self.history.step(a, self.raw), np.float32)
        terminated = bool(self.task.terminated_values(self.raw))
        reward = float(self.task.reward_values(a, self.raw))
        flags = self.flags | (RowFlag.PAST_TERMINATION if self.terminated else 0)
        self.steps += 1
        if self.terminated and not terminated:
            # Back within the task's bounds while the same driver drives (the controller, whose
            # own limits are wider than a task with a tight max_pitch): the row that came back is
            # outside any episode, and the next episode starts at this reading, as an env's reset
            # would start one (new origin; the actions in flight kept: the robot was driven).
            self.steps, self.terminated = 0, False
            self.origin = episode_origin(b)
            self.raw = self._raw(b)
            obs = np.array(self.history.start(self.raw, keep_actions=True), np.float32)
            return StepResult(obs, reward, False, False, int(flags))
        # Past a termination the episode is over: no length truncation starts another one.
        truncated = not terminated and not self.terminated and self.steps >= self.task.max_episode_steps
        self.terminated = self.terminated or terminated
        return StepResult(obs, reward, terminated, truncated, int(flags))

    def stop(self) -> None:
        self.active = False

    def _raw(self, b: list) -> list:
        """The raw observation's values as the policy sees them (float32-rounded)."""
        return np.array(self.task.observe_values(b, self.command, self.origin), np.float32).tolist()
