"""How many control steps late the robot's commands act, measured from its own recorded data.

Why: the one thing about the real robot a team can put into its simulator without guessing is its
actuation (bus) latency, and it matters most: on the latency profiles every method trained in a
latency-free simulator failed, and with the measured latency in the simulator H2O holds the robot
(docs/results.md). This module measures it from transitions the robot recorded anyway (an
offline dataset, the learner's real buffer), with no special test on the hardware.

How: with latency L, the command that acts during step t is a[t-L]. Near its operating point the
robot's state change is close to linear, so the model

    s[t+1] - s[t] = W [s[t], 1, a[t], a[t-1], ..., a[t-max_lag]]

is fitted by least squares, and lag k's score is the share of the state change's variance (each
state dimension standardised, so a large velocity does not drown a small angle) that a[t-k]
explains *beyond the state and every other lag* (the rise in residual when a[t-k] is left out).
The true lag keeps most of it; its neighbours, which the behaviour correlates with it through the
state, keep little once the true lag is in the model (on a policy's own closed-loop stream the
single-lag fit gave the true lag 58 % and its neighbour 28 %; this score 28 % against 7 %). The
exploration noise in the recorded actions is what tells the lags apart: with a deterministic
policy a[t-k] is a function of the state and the other lags, every score is small, and the
estimate says it is ambiguous rather than guess.

`s` is the task's raw observation: the history entries the task contract appends (the last
actions) are dropped, since their next value is the action itself. The first `max_lag` rows of
each episode are left out (the actions before an episode are unknown).

    python -m learner.latency data/demo_stand_still+action_history=2+max_pitch=0.25_moderate.hdf5
    python -m learner.latency DATA.hdf5 --write-profile my_robot_sim.toml
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from protocol.config_cli import ArgumentParser

log = logging.getLogger(__name__)

MIN_SHARE = 0.1  # the best lag must explain at least this share of the state change on its own ...
MIN_RATIO = 3.0  # ... and this many times the next best lag's share, or the estimate is ambiguous


class LatencyDataError(ValueError):
    """Data the latency cannot be measured from (too few rows, wrong shapes, no state dims)."""


@dataclass
class LatencyEstimate:
    steps: int  # the best lag (control steps); meaningful when `clear`
    shares: list  # per lag 0..max_lag: share of the state change's variance only a[t-lag] explains
    clear: bool  # the best lag stands out (MIN_SHARE, MIN_RATIO)
    rows: int  # transitions used
    state_dims: int

    def verdict(self) -> str:
        ranked = sorted(range(len(self.shares)), key=lambda k: self.shares[k], reverse=True)
        second = ranked[1] if len(ranked) > 1 else ranked[0]
        if self.clear:
            return (f"latency {self.steps} control step(s): a[t-{self.steps}] alone explains {self.shares[self.steps]:.0%} "
                    f"of the state change, the next best lag ({second}) {self.shares[second]:.0%}")
        return (f"ambiguous: the best lag {self.steps} explains {self.shares[self.steps]:.0%}, lag {second} "
                f"{self.shares[second]:.0%} (need >= {MIN_SHARE:.0%} and {MIN_RATIO:.0f}x the next); record "
                "with exploration noise on the actions, or more of it")


def episode_slices(observations: np.ndarray, next_observations: np.ndarray, ends: np.ndarray) -> list[slice]:
    """Runs of consecutive rows of one episode: split at terminals / timeouts and wherever a row's
    next observation is not the following row's observation (a reset the flags do not show)."""
    cut = np.asarray(ends, dtype=bool).copy()
    if len(observations) > 1:
        cut[:-1] |= np.any(np.abs(next_observations[:-1] - observations[1:]) > 1e-6, axis=1)
    out, start = [], 0
    for i in np.flatnonzero(cut).tolist() + [len(observations) - 1]:
        if i >= start:
            out.append(slice(start, i + 1))
        start = i + 1
    return out


def estimate(observations: np.ndarray, actions: np.ndarray, next_observations: np.ndarray, ends: np.ndarray,
             state_dims: int | None = None, max_lag: int = 4) -> LatencyEstimate:
    """The lag (0..max_lag control steps) whose action best explains the state change; see the
    module docstring. `state_dims`: the raw observation's leading entries (default: all)."""
    obs, act, nxt = (np.asarray(x, dtype=np.float64) for x in (observations, actions, next_observations))
    if act.ndim == 1:
        act = act[:, None]
    if obs.ndim != 2 or nxt.shape != obs.shape or len(act) != len(obs) or len(ends) != len(obs):
        raise LatencyDataError(f"shapes do not match: observations {obs.shape}, actions {act.shape}, "
                               f"next_observations {nxt.shape}, ends {np.shape(ends)}")
    bad = int((~np.isfinite(obs).all(1) | ~np.isfinite(nxt).all(1) | ~np.isfinite(act).all(1)).sum())
    if bad:
        raise LatencyDataError(f"{bad} rows hold NaN or inf")
    d = obs.shape[1] if state_dims is None else int(state_dims)
    if not 1 <= d <= obs.shape[1] or max_lag < 1:
        raise LatencyDataError(f"need 1 <= state_dims <= {obs.shape[1]} (got {d}) and max_lag >= 1 (got {max_lag})")
    states, deltas, lagged = [], [], [[] for _ in range(max_lag + 1)]
    for sl in episode_slices(obs, nxt, ends):
        n = sl.stop - sl.start
        if n <= max_lag:
            continue
        a = act[sl]
        states.append(obs[sl][max_lag:, :d])
        deltas.append(nxt[sl][max_lag:, :d] - obs[sl][max_lag:, :d])
        for k in range(max_lag + 1):
            lagged[k].append(a[max_lag - k:n - k])
    rows = sum(len(s) for s in states)
    min_rows = 20 * (d + act.shape[1] + 1)
    if rows < min_rows:
        raise LatencyDataError(f"{rows} usable rows (episodes longer than {max_lag} steps); need at least {min_rows}")
    s, y = np.vstack(states), np.vstack(deltas)
    y = (y - y.mean(axis=0)) / np.maximum(y.std(axis=0), 1e-12)  # every state dimension counts alike
    base = np.hstack([s, np.ones((rows, 1))])

    def residual(x: np.ndarray) -> float:
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        return float(np.mean((y - x @ coef) ** 2))

    r0 = residual(base)
    lags = [np.vstack(x) for x in lagged]
    full = residual(np.hstack([base, *lags]))
    shares = [max(0.0, residual(np.hstack([base, *(lags[:k] + lags[k + 1:])])) - full) / max(r0, 1e-12)
              for k in range(max_lag + 1)]
    ranked = sorted(range(max_lag + 1), key=lambda k: shares[k], reverse=True)
    best, second = ranked[0], ranked[1]
    clear = shares[best] >= MIN_SHARE and shares[best] >= MIN_RATIO * shares[second]
    return LatencyEstimate(best, shares, clear, rows, d)


def raw_state_dims(task: str, obs_dim: int) -> int:
    """The raw observation's size for a task id with options (its history entries left out)."""
    from task_contract.history import ObsLayout

    try:
        layout = ObsLayout.of(task)
    except (KeyError, ValueError) as exc:
        raise LatencyDataError(f"the data's task {task!r} is not one of ours ({exc}); pass --state-dims") from None
    if layout.dim != obs_dim:
        raise LatencyDataError(f"task {task!r} has a {layout.dim}-D observation, the data {obs_dim}-D")
    return layout.raw_dim


def estimate_file(path: str | Path, state_dims: int | None = None, max_lag: int = 4) -> LatencyEstimate:
    """From a D4RL-style HDF5 or `minari:<id>` (ours carry the task id, so the history entries are
    found by themselves)."""
    from sim_models.datasets import load_dataset

    data, meta = load_dataset(path)
    if state_dims is None and meta.get("task"):
        state_dims = raw_state_dims(str(meta["task"]), data["observations"].shape[1])
    return estimate_d4rl(data, state_dims, max_lag)


def estimate_d4rl(data: dict, state_dims: int | None = None, max_lag: int = 4) -> LatencyEstimate:
    """`estimate` on D4RL-style arrays (an episode ends at a terminal or a timeout)."""
    ends = np.logical_or(data["terminals"], data.get("timeouts", np.zeros_like(data["terminals"])))
    return estimate(data["observations"], data["actions"], data["next_observations"], ends, state_dims, max_lag)


def check_simulator(data: dict, task: str, sim_profile: str, source: str = "the real data") -> LatencyEstimate | None:
    """Warn when the real data's measured latency differs from the simulator's `latency_steps`
    (learner.train calls it on its dataset: the same check the service runs on streamed rows).
    None when it cannot tell (a gym task, too little data, an ambiguous estimate)."""
    from sim_models.profiles import ProfileError, load_profile

    try:
        sim = load_profile(sim_profile).latency_steps
        est = estimate_d4rl(data, raw_state_dims(task, np.shape(data["observations"])[1]))
    except (LatencyDataError, ProfileError, KeyError, ValueError):
        return None
    if est.clear and est.steps != sim:
        log.warning("%s shows an actuation latency of %d control step(s), the simulator %s has %d: set "
                    "latency_steps = %d in its profile (docs/sim_models.md); %s", source, est.steps, sim_profile,
                    sim, est.steps, est.verdict())
    return est


def profile_text(est: LatencyEstimate, source: str, name: str = "") -> str:
    """A simulator profile: the nominal body with the measured latency (sim_models/profiles.py)."""
    name = name or f"nominal_latency{est.steps}_measured"
    return (f"# The nominal simulator with the actuation latency measured from the robot's own data\n"
            f"# (python -m learner.latency {source}): {est.verdict()}.\n"
            f'name = "{name}"\nlatency_steps = {est.steps}\n')


class LatencyWatch:
    """The learner's running check of its simulator's latency against the robots' streamed data.

    Why: a simulator without the robot's latency is the most costly single mistake measured here
    (H2O 10 % of the tuned controller against 101 % with it). The service feeds every streamed
    row of the task's episodes in (`add`, network thread); `check` (status thread) re-measures
    over the latest `window_rows` once `every_rows` new rows have come, and warns when a clear
    measurement disagrees with the simulator's `latency_steps`."""

    def __init__(self, state_dims: int, sim_latency: int, window_rows: int = 20_000, every_rows: int = 5_000,
                 max_lag: int = 4) -> None:
        import collections
        import threading

        self.state_dims, self.sim_latency, self.max_lag = state_dims, sim_latency, max_lag
        self.window_rows, self.every_rows = window_rows, every_rows
        self._chunks: collections.deque = collections.deque()  # (key, obs, act, next_obs, ends)
        self._rows = self._new = 0
        self._lock = threading.Lock()
        self.last: LatencyEstimate | None = None
        self._warned: int | None = None

    def add(self, key: str, cols: dict) -> None:
        """Rows of one robot stream, in order (columns obs, act, next_obs, terminated, truncated,
        flags); rows outside the task's episodes (task_contract.episodes) are left out."""
        from task_contract.episodes import in_task_episode

        keep = in_task_episode(cols.get("flags"), len(cols["rew"]))
        n = int(keep.sum())
        if not n:
            return
        ends = (np.asarray(cols["terminated"]) | np.asarray(cols["truncated"]))[keep]
        if not keep.all():  # a left-out stretch is a break in the episode
            ends = ends | np.append(~keep[1:], False)[keep]
        chunk = (key, np.asarray(cols["obs"])[keep], np.asarray(cols["act"])[keep],
                 np.asarray(cols["next_obs"])[keep], ends)
        with self._lock:
            self._chunks.append(chunk)
            self._rows += n
            self._new += n
            while self._rows - len(self._chunks[0][1]) >= self.window_rows:
                self._rows -= len(self._chunks.popleft()[1])

    def check(self) -> LatencyEstimate | None:
        """Measure again when enough new rows came (else the last estimate); warns on a mismatch."""
        with self._lock:
            if self._new < self.every_rows:
                return self.last
            self._new = 0
            by_key: dict = {}
            for key, *arrays in self._chunks:
                by_key.setdefault(key, []).append(arrays)
        parts = []
        for chunks in by_key.values():  # one robot stream after another, a break between them
            o, a, n, e = (np.concatenate(x) for x in zip(*chunks))
            e = e.copy()
            e[-1] = True
            parts.append((o, a, n, e))
        o, a, n, e = (np.concatenate(x) for x in zip(*parts))
        try:
            self.last = estimate(o, a, n, e, self.state_dims, self.max_lag)
        except LatencyDataError:
            return self.last
        if self.last.clear and self.last.steps != self.sim_latency and self._warned != self.last.steps:
            self._warned = self.last.steps
            log.warning("the robots' data shows an actuation latency of %d control step(s), the learner's "
                        "simulator has %d: set latency_steps = %d in its sim_profile (docs/sim_models.md); "
                        "%s", self.last.steps, self.sim_latency, self.last.steps, self.last.verdict())
        return self.last

    def status(self) -> dict:
        """For the status row: the robots' measured latency (None until clear) and the simulator's."""
        est = self.last
        return {"robot_latency_steps": est.steps if est is not None and est.clear else None,
                "sim_latency_steps": self.sim_latency}


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(
        prog="python -m learner.latency",
        description="Measure the robot's actuation latency (control steps between a command and its effect) from "
                    "recorded transitions, to put into the simulator (sim profile latency_steps). Needs "
                    "exploration noise in the recorded actions; says so when the data cannot tell. Exit 0: every "
                    "estimate clear, 1: one is ambiguous, 2: bad input.",
        example="python -m learner.latency data/robot.hdf5 --write-profile my_robot_sim.toml")
    p.add_argument("datasets", nargs="+",
                   help="D4RL-style HDF5 files of real transitions, or minari:<id> (one estimate each)")
    p.add_argument("--max-lag", type=int, default=4, help="largest latency considered, in control steps")
    p.add_argument("--state-dims", type=int,
                   help="leading observation entries that are the robot's state (default: from the file's task "
                        "id, else all)")
    p.add_argument("--write-profile", metavar="TOML",
                   help="write a simulator profile (nominal body + the measured latency) for the first file; "
                        "refused when the estimate is ambiguous")
    p.add_argument("--json", action="store_true", help="print one JSON object per file instead of the table")
    args = p.parse_args(argv)
    from sim_models.datasets import DatasetError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ests = []
    for path in args.datasets:
        try:
            est = estimate_file(path, args.state_dims, args.max_lag)
        except (OSError, KeyError, LatencyDataError, DatasetError) as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            return 2
        ests.append(est)
        if args.json:
            print(json.dumps({"dataset": str(path), **asdict(est), "verdict": est.verdict()}))
        else:
            print(f"{path}: {est.rows} transitions, {est.state_dims} state dims")
            print("  lag  share of the state change explained")
            for k, share in enumerate(est.shares):
                print(f"  {k:>3}  {share:6.1%}{'  <- best' if k == est.steps else ''}")
            print(f"  {est.verdict()}")
    if args.write_profile:
        est = ests[0]
        if not est.clear:
            print(f"error: not writing {args.write_profile}: the estimate is ambiguous", file=sys.stderr)
            return 1
        Path(args.write_profile).write_text(profile_text(est, args.datasets[0]))
        print(f"wrote {args.write_profile}")
    return 0 if all(e.clear for e in ests) else 1


if __name__ == "__main__":
    sys.exit(main())
