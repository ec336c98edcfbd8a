"""History in the observation: the last k actions and the last k raw observations.

Why: under actuation latency (the `moderate` profile delays every command by one control step)
the paper's 4-D observation is not a state: the command still in flight changes what happens
next, and no policy on [x, v, pitch, pitch_rate] can see it. Feeding the last actions (and
optionally past observations) back in, as legged-robot practice does, makes it one again.

Options (per task, a string "action_history=2,obs_history=1"; defaults 0 = the paper's obs):
  action_history = k: the last k actions as applied (clipped to [-1, 1]), newest first
  obs_history = k: the last k raw observations before the current one, newest first
  max_pitch = rad: a tighter termination than the task's |pitch| > pi/6 (0: the task's own), so
      that the learner's episodes end where the robot's safety catch ends a policy's
      (task_contract.tasks.TaskSpec.with_max_pitch; docs/task_contract.md)
Observation layout: [raw_t, raw_t-1, ..., raw_t-k, a_t-1, ..., a_t-k]. The current raw
observation always comes first, so a reader of the raw fields (the balance controller, the
reward, the termination) needs no change.

Reset rules (what the history holds at an episode start; task_contract.episodes says when an
episode starts on the robot): past observations are copies of the first raw observation; past
actions are zero where nothing was driving the robot before (the simulator's reset from rest, the
robot program's start, the controller after a fall or any tick without a driver), and the actions
really applied where the robot was driven up to this step (a hand-over: a policy swap, the policy
taking the robot from the controller, a catch, the task's length). Why the second case: under
latency the last command is still in flight and IS part of the state; zeros there told a policy
taking over a balancing robot that nothing was pending while the controller's ~0.3 of wheel
torque was, and its first actions kicked the robot past the catch limit. Within an episode the
history only ever moves forward one step per control step.

A task id joins a task and its options: "stand_still:action_history=2"; robot and learner compare
ids (HELLO) and the policy carries its layout (task_contract.layout), so all three agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from task_contract.actuation import clip_unit
from task_contract.geometry import MAX_PITCH_RAD
from task_contract.tasks import TaskSpec, get_task

OPTION_NAMES = ("action_history", "obs_history", "max_pitch")
HISTORY_OPTIONS = ("action_history", "obs_history")
MAX_HISTORY = 50


class TaskOptionsError(ValueError):
    """A malformed or unknown task option."""


@dataclass(frozen=True)
class TaskOptions:
    """How a task's observation is built (see the module docstring)."""

    action_history: int = 0
    obs_history: int = 0
    max_pitch: float = 0.0  # rad; 0 = the task's own termination

    def __post_init__(self) -> None:
        for name in HISTORY_OPTIONS:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_HISTORY:
                raise TaskOptionsError(f"{name} must be an integer in [0, {MAX_HISTORY}], got {v!r}")
        v = self.max_pitch
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= MAX_PITCH_RAD:
            raise TaskOptionsError(f"max_pitch must be a number of radians in [0, {MAX_PITCH_RAD:.4f}] "
                                   f"(0: the task's own pi/6), got {v!r}")
        object.__setattr__(self, "max_pitch", float(v))

    @classmethod
    def parse(cls, text: "str | TaskOptions | None") -> "TaskOptions":
        """From "action_history=2,obs_history=1" ("" or None: the defaults)."""
        if isinstance(text, TaskOptions):
            return text
        values: dict[str, float] = {}
        for part in (text or "").replace(" ", "").split(","):
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep or key not in OPTION_NAMES:
                raise TaskOptionsError(f"task option {part!r}: expected one of {OPTION_NAMES} as key=value")
            kind = float if key == "max_pitch" else int
            try:
                values[key] = kind(value)
            except ValueError:
                raise TaskOptionsError(f"task option {part!r}: {value!r} is not {'a number' if kind is float else 'an integer'}") from None
        return cls(**values)

    def __str__(self) -> str:
        """Canonical text: non-default options in a fixed order ("" for the defaults)."""
        return ",".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                        if getattr(self, f.name) != f.default)


def split_task_id(task_id: str) -> tuple[str, TaskOptions]:
    """"stand_still:action_history=2" -> ("stand_still", TaskOptions(action_history=2))."""
    name, _, options = task_id.partition(":")
    return name, TaskOptions.parse(options)


def task_id(name: str, options: "str | TaskOptions | None" = None) -> str:
    """The canonical id of a task with options; options may also sit in `name` already (they
    must not disagree with `options`)."""
    base, inline = split_task_id(name)
    extra = TaskOptions.parse(options)
    if str(inline) and str(extra) and inline != extra:
        raise TaskOptionsError(f"task {name!r} and options {str(extra)!r} disagree")
    text = str(extra) or str(inline)
    return f"{base}:{text}" if text else base


@dataclass(frozen=True)
class ObsLayout:
    """The observation a task with options hands the policy: fields and history lengths."""

    task: TaskSpec
    options: TaskOptions = TaskOptions()

    @classmethod
    def of(cls, task_or_id: "str | TaskSpec", options: "str | TaskOptions | None" = None) -> "ObsLayout":
        if isinstance(task_or_id, TaskSpec):
            opts = TaskOptions.parse(options)
            return cls(task_or_id.with_max_pitch(opts.max_pitch), opts)
        name, inline = split_task_id(task_id(task_or_id, options))
        return cls(get_task(name).with_max_pitch(inline.max_pitch), inline)

    @property
    def id(self) -> str:
        return task_id(self.task.name, self.options)

    @property
    def raw_dim(self) -> int:
        return self.task.obs_dim

    @property
    def dim(self) -> int:
        o = self.options
        return self.raw_dim * (1 + o.obs_history) + self.task.act_dim * o.action_history

    @property
    def plain(self) -> bool:
        """No history: the observation is the raw one."""
        return self.dim == self.raw_dim

    def names(self) -> list[str]:
        """One name per observation entry (raw fields, then "<field>@-k", then "action<i>@-k")."""
        out = list(self.task.obs_fields)
        for k in range(1, self.options.obs_history + 1):
            out += [f"{f}@-{k}" for f in self.task.obs_fields]
        for k in range(1, self.options.action_history + 1):
            out += [f"action{i}@-{k}" for i in range(self.task.act_dim)]
        return out

    def describe(self) -> dict:
        """What the policy metadata records (h2o.obs_layout): enough to rebuild the layout."""
        return {"task": self.task.name, "fields": list(self.task.obs_fields),
                "obs_history": self.options.obs_history, "action_history": self.options.action_history,
                "act_dim": self.task.act_dim, "dim": self.dim}


class History:
    """Builds the observation with history for one episode at a time (see the reset rules above).

    `start(raw)` at an episode start, then `step(action, raw)` once per control step; both return
    the observation values. Plain layouts pass the raw values through.
    """

    def __init__(self, layout: ObsLayout) -> None:
        self.layout = layout
        self._k_obs = layout.options.obs_history
        self._k_act = layout.options.action_history
        self._act_dim = layout.task.act_dim
        self._past_obs: list = []  # newest first, k_obs raw observations (flattened)
        self._past_act: list = []  # newest first, k_act actions (flattened)
        self._current: list = []

    def start(self, raw: list, keep_actions: bool = False) -> list:
        """Episode start: past observations = copies of `raw`; past actions = zeros, or with
        `keep_actions` the actions this history saw applied last (a hand-over while driving)."""
        self._past_obs = list(raw) * self._k_obs
        if not keep_actions or len(self._past_act) != self._act_dim * self._k_act:
            self._past_act = [0.0] * (self._act_dim * self._k_act)
        self._current = list(raw)
        return self.values()

    def step(self, action: list, raw: list) -> list:
        """One control step: `action` was applied, `raw` is the new raw observation."""
        if self._k_obs:
            n = len(raw)
            self._past_obs = (self._current + self._past_obs)[:n * self._k_obs]
        if self._k_act:
            self._past_act = ([clip_unit(v) for v in action] + self._past_act)[:self._act_dim * self._k_act]
        self._current = list(raw)
        return self.values()

    def values(self) -> list:
        return self._current + self._past_obs + self._past_act

    def array(self) -> np.ndarray:
        return np.array(self.values(), np.float32)
