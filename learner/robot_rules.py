"""Evaluate a policy in the simulator under the robot's episode rules, as the demo's trials see it.

    python -m learner.robot_rules runs/demo-*/learner/policies/policy-v00012.onnx controller \
        --profile moderate --seconds 120

Why: the learner's own evaluation starts every episode from a reset and lets it run to the task's
termination; on the robot a policy drives only after the controller has held the robot upright
for a while, and the safety catch ends its episode early. On `moderate` the two disagree wildly
(figures in docs/learner.md), so a policy is judged here the way the robot will judge it:
  - the controller drives from a reset; the policy takes over once the robot has been upright
    (tilt <= `upright_rad`) for `retry_s` under the controller (safety.policy_retry_s);
  - the policy's episode ends where |pitch| passes `catch_rad` (safety.catch_tilt_rad), at a fall
    (the task's termination: the sim resets) or after the task's length (a new episode starts);
  - x counts from the hand-over (the robot's episode origin) and the action history goes on with
    the actions applied (a hand-over, docs/task_contract.md).
How closely this reproduces the robot's trial returns: docs/learner.md and docs/results.md.

Policies: an ONNX file exported by the learner, `controller` (the task's balance controller), or
`linear:k_x,k_v,k_pitch,k_rate,h_1,h_2` (a = clip(-(k . raw) / 3 + h . past actions), the
memoryless linear policy of docs/results.md).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol.config_cli import ArgumentParser
from protocol.logs import setup_logging

log = logging.getLogger(__name__)

Policy = Callable[[np.ndarray], np.ndarray]


@dataclass
class RobotRules:
    """The robot's episode rules (the virtual robot's config: configs/onboard_virtual.toml)."""

    catch_rad: float = 0.25
    upright_rad: float = 0.3
    retry_s: float = 1.0


@dataclass
class Episode:
    ret: float
    length: int
    end: str  # "catch", "fall" or "length"


def evaluate(policy: Policy, task: str = "stand_still:action_history=2", profile: str = "moderate",
             seconds: float = 120.0, seed: int = 0, rules: RobotRules | None = None) -> list[Episode]:
    """The policy's finished episodes in `seconds` of simulated robot time (paper tasks only)."""
    from learner.rollout import make_env
    from task_contract.controller import BalanceController
    from task_contract.tasks import PAPER_FIELDS, get_task

    spec = get_task(task)
    if spec.obs_fields != PAPER_FIELDS or spec.act_dim != 1:
        raise ValueError(f"robot-rules evaluation covers the paper tasks (stand_still, move_straight), not {task!r}")
    rules = rules or RobotRules()
    env = make_env(task.split(":", 1)[0] + ":" + _history_only(task), profile, seed=seed)
    hz = spec.control_hz
    obs, _ = env.reset(seed=1000 + seed)
    controller = BalanceController(task)
    controller.reset()
    driving, stand_since, upright_since = False, 0, 0
    out: list[Episode] = []
    ret, length, x0 = 0.0, 0, 0.0
    for t in range(int(seconds * hz)):
        if abs(float(obs[2])) > rules.upright_rad:
            upright_since = t + 1
        if not driving and t - max(stand_since, upright_since) >= rules.retry_s * hz:
            driving, ret, length, x0 = True, 0.0, 0, float(obs[0])
        if driving:
            seen = obs.copy()
            seen[0] -= x0  # the robot's episode origin: the hand-over
            action = np.asarray(policy(seen), np.float32).reshape(1)
        else:
            action = np.asarray(controller.act(obs), np.float32).reshape(1)
        obs, _, terminated, _, _ = env.step(action)
        if terminated:  # a fall by the task's own rules: the sim resets (the virtual robot respawns)
            if driving:
                out.append(Episode(ret, length, "fall"))
            obs, _ = env.reset()
            controller.reset()
            driving, stand_since, upright_since = False, t + 1, t + 1
            continue
        if driving:
            seen_next = obs.copy()
            seen_next[0] -= x0
            ret += spec.reward(None, action, seen_next[:4])
            length += 1
            if abs(float(obs[2])) > rules.catch_rad:
                out.append(Episode(ret, length, "catch"))
                driving, stand_since = False, t + 1
            elif length >= spec.max_episode_steps:
                out.append(Episode(ret, length, "length"))
                ret, length, x0 = 0.0, 0, float(obs[0])
    return out


def _history_only(task: str) -> str:
    """The task's options without max_pitch: the catch here plays that part."""
    from task_contract.history import TaskOptions, split_task_id

    opts = split_task_id(task)[1]
    return str(TaskOptions(opts.action_history, opts.obs_history))


def load_policy(name: str, task: str) -> Policy:
    """An ONNX file, `controller` or `linear:k_x,k_v,k_pitch,k_rate,h_1,h_2` (see the module doc)."""
    if name == "controller":
        from task_contract.controller import BalanceController

        c = BalanceController(task)
        return c.act
    if name.startswith("linear:"):
        from task_contract.history import ObsLayout

        k = np.array([float(v) for v in name[len("linear:"):].split(",")])
        if k.size != 6:
            raise ValueError(f"{name!r}: a linear policy is 6 numbers k_x,k_v,k_pitch,k_rate,h_1,h_2")
        layout = ObsLayout.of(task)
        if layout.options.action_history != 2:
            raise ValueError(f"a linear policy reads the last 2 actions: task {task!r} needs action_history=2")
        a1 = layout.dim - 2  # the actions come last, newest first (task_contract.history)
        return lambda o: np.clip(-(k[:4] @ o[:4]) / 3.0 + k[4] * o[a1] + k[5] * o[a1 + 1], -1.0, 1.0)
    import onnxruntime as ort

    session = ort.InferenceSession(name, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0].name
    return lambda o: session.run(None, {inp: o[None].astype(np.float32)})[0][0]


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m learner.robot_rules", description=__doc__)
    p.add_argument("policies", nargs="+", help="ONNX files, 'controller' or 'linear:k_x,k_v,k_pitch,k_rate,h_1,h_2'")
    p.add_argument("--task", default="stand_still:action_history=2", help="task id the policies observe")
    p.add_argument("--profile", default="moderate", help="the robot's dynamics profile (hidden 'real' one)")
    p.add_argument("--seconds", type=float, default=120.0, help="simulated robot time per policy")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulator's resets")
    p.add_argument("--catch-rad", type=float, default=RobotRules.catch_rad, help="the safety catch (tilt, rad)")
    args = p.parse_args(argv)
    setup_logging()
    rules = RobotRules(catch_rad=args.catch_rad)
    for name in args.policies:
        eps = evaluate(load_policy(name, args.task), args.task, args.profile, args.seconds, args.seed, rules)
        if not eps:
            print(f"{name}: no finished episode in {args.seconds:.0f} s")
            continue
        r = np.array([e.ret for e in eps])
        n = np.array([e.length for e in eps])
        ends = {k: sum(e.end == k for e in eps) for k in ("catch", "fall", "length")}
        print(f"{name}: {len(eps)} episodes, mean return {r.mean():,.0f} (best {r.max():,.0f}), "
              f"mean length {n.mean():.0f}; ends {ends}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
