"""Environments for the learner: env factory, sim rollouts with the current policy, evaluation.

Why separate from train.py: the rollout is the piece a worker pool (processes, mujoco.rollout, a
GPU simulator) would replace; it takes a policy *function* and returns plain numpy arrays, so it
has no tie to torch or to the algorithm.

Populations (learner.train trains several seeds as one population): `PopulationEnvs` holds one
robot per member (or per member and episode), any mix of dynamics profiles, each distinct profile
one vector env (sim_models.vector_env.WheelLeggedVectorEnv for the robot's tasks, gymnasium's
SyncVectorEnv otherwise); `population_rollout` and `population_evaluate` step them all with ONE
policy call per step for every member.

Task names: a sim_models task (`stand_still`, `move_straight`, ... see docs/interfaces.md) built
with `sim_models.make_env(task, profile, seed)`, or `gym:<id>` for any gymnasium env (useful
before sim_models exists and for quick checks); for gym tasks the "profile" is either `nominal`
or comma-separated env kwargs, e.g. `g=12.0` for Pendulum-v1's gravity.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

PolicyFn = Callable[[np.ndarray], np.ndarray]  # obs [obs_dim] -> action [act_dim] in [-1, 1]
# A policy object may also have reset() (a stateful controller): it is called at every episode start.


def _episode_start(policy: PolicyFn) -> None:
    reset = getattr(policy, "reset", None)
    if callable(reset):
        reset()
GYM_PREFIX = "gym:"


class EnvSpecError(ValueError):
    """A task or profile name the learner cannot build."""


def _parse_kwargs(profile: str) -> dict[str, float | str]:
    if profile in ("", "nominal"):
        return {}
    out: dict[str, float | str] = {}
    for part in profile.split(","):
        if "=" not in part:
            raise EnvSpecError(f"gym profile must be 'nominal' or 'key=value,...', got {profile!r}")
        k, v = part.split("=", 1)
        try:
            out[k.strip()] = float(v)
        except ValueError:
            out[k.strip()] = v.strip()
    return out


def make_env(task: str, profile: str = "nominal", seed: int | None = None):
    """A gymnasium env for `task` under dynamics `profile` (see module docstring)."""
    import gymnasium as gym

    if task.startswith(GYM_PREFIX):
        env = gym.make(task[len(GYM_PREFIX):], **_parse_kwargs(profile))
    else:
        try:
            import sim_models
        except ImportError as exc:  # pragma: no cover - depends on the checkout
            raise EnvSpecError(f"sim_models is not importable for task {task!r}: {exc}") from exc
        env = sim_models.make_env(task, profile, seed=seed)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def env_dims(env) -> tuple[int, int]:
    return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))


class ActionScaler:
    """Maps a policy action in [-1, 1] to the env's Box bounds (identity for [-1, 1] envs)."""

    def __init__(self, env):
        space = getattr(env, "action_space", env)  # an env or its (single) action space
        low, high = space.low.astype(np.float32), space.high.astype(np.float32)
        self.center, self.half = (high + low) / 2, (high - low) / 2

    def __call__(self, a: np.ndarray) -> np.ndarray:
        return self.center + self.half * np.clip(a, -1.0, 1.0)


@dataclass
class Transitions:
    """Columnar transitions (float32), `terminals` = true termination (no bootstrap)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    episode_returns: list[float]

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in
                ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")}


def rollout(env, policy: PolicyFn, n_steps: int, seed: int, max_episode_steps: int | None = None) -> Transitions:
    """Run `policy` for n_steps from a fresh reset(seed), resetting at episode ends.

    Starting every call from reset(seed) makes a call a pure function of (seed, policy): a run
    resumed from a checkpoint then replays exactly what the uninterrupted run did.
    """
    scale = ActionScaler(env)
    obs_l, act_l, rew_l, next_l, term_l, tout_l, returns = [], [], [], [], [], [], []
    obs, _ = env.reset(seed=seed)
    _episode_start(policy)
    ep_ret, ep_len = 0.0, 0
    for _ in range(n_steps):
        a = np.asarray(policy(np.asarray(obs, np.float32)), np.float32).reshape(-1)
        next_obs, r, terminated, truncated, _ = env.step(scale(a))
        ep_ret += float(r)
        ep_len += 1
        truncated = truncated or (max_episode_steps is not None and ep_len >= max_episode_steps)
        obs_l.append(obs); act_l.append(a); rew_l.append(r); next_l.append(next_obs)
        term_l.append(terminated); tout_l.append(truncated and not terminated)
        if terminated or truncated:
            returns.append(ep_ret)
            ep_ret, ep_len = 0.0, 0
            obs, _ = env.reset()
            _episode_start(policy)
        else:
            obs = next_obs
    f = np.float32
    return Transitions(np.asarray(obs_l, f), np.asarray(act_l, f), np.asarray(rew_l, f), np.asarray(next_l, f),
                       np.asarray(term_l, f), np.asarray(tout_l, f), returns)


def evaluate(env, policy: PolicyFn, episodes: int, seed: int, max_episode_steps: int | None = None) -> dict:
    """Mean/std return and mean length of `episodes` full episodes (deterministic policy expected)."""
    scale = ActionScaler(env)
    rets, lens = [], []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        _episode_start(policy)
        ret, n, done = 0.0, 0, False
        while not done:
            obs, r, terminated, truncated, _ = env.step(scale(policy(np.asarray(obs, np.float32))))
            ret += float(r)
            n += 1
            done = terminated or truncated or (max_episode_steps is not None and n >= max_episode_steps)
        rets.append(ret)
        lens.append(n)
    return {"return_mean": float(np.mean(rets)), "return_std": float(np.std(rets)), "length_mean": float(np.mean(lens))}


# ---- populations -------------------------------------------------------------------------------
PopulationPolicyFn = Callable[[np.ndarray], np.ndarray]  # obs [N, obs_dim] -> actions [N, act_dim]


def is_robot_task(task: str) -> bool:
    """A wheel-legged sim_models task (which has a batched env), not gym: or HalfCheetah."""
    return not task.startswith((GYM_PREFIX, "h2o/HalfCheetah", "halfcheetah"))


def make_vector_env(task: str, profile: str, n: int, max_episode_steps: int | None = None):
    """n robots of `task` under `profile` as a gymnasium VectorEnv with same-step autoreset."""
    if is_robot_task(task):
        import dataclasses

        from sim_models.vector_env import WheelLeggedVectorEnv

        venv = WheelLeggedVectorEnv(task, n, profile=profile)
        if max_episode_steps and max_episode_steps < venv.task.max_episode_steps:
            venv.task = dataclasses.replace(venv.task, max_episode_steps=max_episode_steps)  # followed per step
        return venv
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    def one():
        env = make_env(task, profile)
        return gym.wrappers.TimeLimit(env, max_episode_steps) if max_episode_steps else env

    return SyncVectorEnv([one for _ in range(n)], autoreset_mode=AutoresetMode.SAME_STEP)


class PopulationEnvs:
    """Robots in rows (one per member, or per member x episode), each row with its own profile.

    Rows sharing a profile are one vector env; `step` returns, per row, the observation to act on
    next and the transition's own next observation (the last one of an ended episode: the vector
    envs reset a robot in the same step).
    """

    def __init__(self, task: str, profiles: list[str], max_episode_steps: int | None = None):
        groups: dict[str, list[int]] = {}
        for row, profile in enumerate(profiles):
            groups.setdefault(profile, []).append(row)
        self.groups = [(np.array(rows), make_vector_env(task, profile, len(rows), max_episode_steps))
                       for profile, rows in groups.items()]
        first = self.groups[0][1]
        self.n = len(profiles)
        self.obs_dim = int(np.prod(first.single_observation_space.shape))
        self.act_dim = int(np.prod(first.single_action_space.shape))
        self.scale = ActionScaler(first.single_action_space)

    def reset(self, seeds: list[int]) -> np.ndarray:
        """Reset every row, row i from seeds[i]; observations [n, obs_dim]."""
        obs = np.zeros((self.n, self.obs_dim), np.float32)
        for rows, venv in self.groups:
            obs[rows] = venv.reset(seed=[int(seeds[r]) for r in rows])[0]
        return obs

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(obs to act on next, reward, terminated, truncated, the transitions' next obs), per row."""
        obs = np.zeros((self.n, self.obs_dim), np.float32)
        next_obs = np.zeros_like(obs)
        rew, term, trunc = np.zeros(self.n), np.zeros(self.n, bool), np.zeros(self.n, bool)
        for rows, venv in self.groups:
            o, r, te, tr, info = venv.step(self.scale(actions[rows]))
            obs[rows], rew[rows], term[rows], trunc[rows] = o, r, te, tr
            final = info.get("_final_obs")
            if final is not None and np.any(final):
                o = np.array(o, np.float32, copy=True)
                o[final] = np.stack([info["final_obs"][i] for i in np.flatnonzero(final)])
            next_obs[rows] = o
        return obs, rew, term, trunc, next_obs

    def close(self) -> None:
        for _, venv in self.groups:
            venv.close()


def population_rollout(envs: PopulationEnvs, policy: PopulationPolicyFn, n_steps: int,
                       seeds: list[int]) -> list[Transitions]:
    """n_steps per row from a fresh reset (row i from seeds[i]), one policy call per step for all
    rows; Transitions per row. As `rollout`, a call is a pure function of (seeds, policy)."""
    obs = envs.reset(seeds)
    n, f = envs.n, np.float32
    o_buf = np.zeros((n_steps, n, envs.obs_dim), f)
    a_buf = np.zeros((n_steps, n, envs.act_dim), f)
    r_buf, t_buf, to_buf = np.zeros((n_steps, n), f), np.zeros((n_steps, n), f), np.zeros((n_steps, n), f)
    next_buf = np.zeros_like(o_buf)
    returns: list[list[float]] = [[] for _ in range(n)]
    ep_ret = np.zeros(n)
    for t in range(n_steps):
        a = np.asarray(policy(obs), f).reshape(n, envs.act_dim)
        next_act_obs, r, term, trunc, next_obs = envs.step(a)
        o_buf[t], a_buf[t], r_buf[t], next_buf[t] = obs, a, r, next_obs
        t_buf[t], to_buf[t] = term, trunc & ~term
        ep_ret += r
        for i in np.flatnonzero(term | trunc).tolist():
            returns[i].append(float(ep_ret[i]))
            ep_ret[i] = 0.0
        obs = next_act_obs
    return [Transitions(o_buf[:, i], a_buf[:, i], r_buf[:, i], next_buf[:, i], t_buf[:, i], to_buf[:, i], returns[i])
            for i in range(n)]


def population_evaluate(envs: PopulationEnvs, policy: PopulationPolicyFn, episodes: int,
                        seeds: list[int]) -> list[dict]:
    """evaluate() for many members at once: envs has members x episodes rows (member-major), row
    (k, e) runs ONE episode from seeds[k] + e; one policy call per step for all rows. Returns the
    per-member dicts of `evaluate`."""
    n = envs.n
    members = n // episodes
    obs = envs.reset([seeds[k] + e for k in range(members) for e in range(episodes)])
    ret, length, live = np.zeros(n), np.zeros(n, int), np.ones(n, bool)
    while live.any():
        obs, r, term, trunc, _ = envs.step(np.asarray(policy(obs), np.float32).reshape(n, envs.act_dim))
        ret += np.where(live, r, 0.0)
        length += live
        live &= ~(term | trunc)
    out = []
    for k in range(members):
        rows = slice(k * episodes, (k + 1) * episodes)
        out.append({"return_mean": float(np.mean(ret[rows])), "return_std": float(np.std(ret[rows])),
                    "length_mean": float(np.mean(length[rows]))})
    return out

