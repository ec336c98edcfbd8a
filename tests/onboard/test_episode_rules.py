"""The robot program applies the task's episode rules to what its sensors read.

Real parts: the robot program (OnboardApp, lock-step) drives a virtual robot over a pty through a
recording tap; real ONNX policies; the safety machine catches, the robot falls, the virtual robot
respawns and the controller recovers it. The test then rebuilds, from the recorded sensor stream
alone and with its own literal reading of docs/task_contract.md, every row the robot recorded:
observation with history, next observation, reward, termination and flags, across a policy swap,
controller catches and a fall recovery.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time

import numpy as np

from firmware_bridge.hil.tap import SerialTap
from firmware_bridge.hil.recordings import decode_recording, recorded_steps
from firmware_bridge.virtual_robot import VirtualRobot, VirtualRobotConfig
from onboard.app import OnboardApp
from onboard.config import OnboardConfig
from devkit.dev_policies import mlp_policy_bytes
from onboard.policy import PolicyCandidate
from onboard.safety import Mode
from protocol.messages import Source
from task_contract.episodes import RowFlag
from task_contract.history import ObsLayout
from task_contract.layout import policy_metadata
from task_contract.state import state_values
from task_contract.tasks import episode_origin

TASK, OPTIONS = "stand_still", "action_history=2,obs_history=1"
MAX_TICKS = 3000


def _policy(layout: ObsLayout, version: int, push: float) -> PolicyCandidate:
    """A policy that pushes the wheels steadily: the robot tilts, gets caught or falls."""
    data = mlp_policy_bytes(layout.dim, 1, task=TASK, version=version, hidden=0,
                            linear_gain=np.zeros(layout.dim), mean_bias=push, metadata=policy_metadata(layout))
    return PolicyCandidate(version, hashlib.sha256(data).hexdigest(), data)


def _run_scenario(tmp_path):
    """Controller start, policy v1 (caught), swap to v2 (caught), then no catch: v2 falls, the
    virtual robot respawns, the controller recovers, v2 drives again. Returns (app, rows, path)."""
    robot = VirtualRobot(VirtualRobotConfig(profile="nominal", device_link=None, lockstep=True, seed=0,
                                            respawn_after_s=0.2)).start()
    path = tmp_path / "run.mcap"
    rows: list[dict] = []
    try:
        with SerialTap(robot.device, path, drop_repeated_states=True) as tap:
            cfg = OnboardConfig()
            cfg.run.task, cfg.run.task_options = TASK, OPTIONS
            cfg.run.lockstep, cfg.run.stream = True, False
            cfg.run.stats_file = str(tmp_path / "stats.json")
            cfg.link.url = tap.device
            cfg.policy.inference_budget_ms = 50.0
            cfg.trials.enabled = False  # the loop's episode rules, not trials (its fall would roll v2 back)
            cfg.safety = dataclasses.replace(cfg.safety, stale_state_ms=2000.0, catch_tilt_rad=0.2,
                                             policy_retry_s=0.2, recover_after_s=0.05)
            app = OnboardApp(cfg)
            app.recorder.sink = lambda b: rows.append({k: v.copy() for k, v in b.items()}) or True
            v1, v2 = _policy(app.layout, 1, 0.25), _policy(app.layout, 2, 0.3)
            stop = threading.Event()
            state = {"phase": "controller", "policy_ticks": 0, "tick": 0}
            step = app.loop.step

            def scripted_step():  # the operator's script, between two ticks of the loop thread
                counts, mode, phase = app.fsm.counts, app.fsm.mode, state["phase"]
                state["policy_ticks"] = state["policy_ticks"] + 1 if mode is Mode.POLICY else 0
                ticks_in_policy = state["policy_ticks"]
                state["tick"] += 1
                if phase == "controller" and state["tick"] == 60:
                    app.loop.activate_policy(app.loader.validate_now(v1))
                    state["phase"] = "v1"
                elif phase == "v1" and counts["catches"] >= 1 and ticks_in_policy == 10:
                    app.loop.activate_policy(app.loader.validate_now(v2))  # a swap while v1 drives
                    state["phase"] = "v2"
                elif phase == "v2" and counts["catches"] >= 2 and ticks_in_policy == 5:
                    app.fsm.cfg = dataclasses.replace(app.fsm.cfg, catch_tilt_rad=0.0)  # let it fall
                    state["phase"] = "fall"
                elif phase == "fall" and counts["to_DAMPING"] >= 1 and ticks_in_policy == 20:
                    state["phase"] = "done"  # recovered, and v2 drives again
                    stop.set()
                return step()

            app.loop.step = scripted_step
            try:
                app.start()
                app.run(stop, max_ticks=MAX_TICKS)
            finally:
                app.close(drain_s=0.0)
                time.sleep(0.05)
    finally:
        robot.stop()
    assert state["phase"] == "done", f"scenario stopped in phase {state['phase']}: {list(app.fsm.history)[-8:]}"
    return app, robot, rows, path


def _columns(batches: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


class LiteralRules:
    """docs/task_contract.md, written out: origin and history reset at a stretch start."""

    def __init__(self, layout: ObsLayout) -> None:
        self.task, self.k_obs, self.k_act = layout.task, layout.options.obs_history, layout.options.action_history

    def raw(self, b: list) -> list:
        return np.array(self.task.observe_values(b, [], self.origin), np.float32).tolist()

    def start(self, b: list, handover: bool) -> np.ndarray:
        """handover: the robot was driven up to this reading; the past actions go on (they were
        applied and, under latency, are still in flight); else they are zero."""
        self.origin = episode_origin(b)
        self.cur = self.raw(b)
        self.past_obs = [self.cur] * self.k_obs
        if not handover:
            self.past_act = [[0.0] * self.task.act_dim] * self.k_act
        return self.obs()

    def step(self, action: list, b: list) -> tuple[np.ndarray, list]:
        self.past_obs = ([self.cur] + self.past_obs)[:self.k_obs]
        self.past_act = ([list(np.clip(action, -1, 1))] + self.past_act)[:self.k_act]
        self.cur = self.raw(b)
        return self.obs(), self.cur

    def obs(self) -> np.ndarray:
        return np.array(self.cur + sum(self.past_obs, []) + sum(self.past_act, []), np.float32)


def test_robot_rows_follow_the_task_rules_across_swap_catch_and_recovery(tmp_path):
    app, robot, batches, path = _run_scenario(tmp_path)
    cols = _columns(batches)
    counts = app.fsm.counts
    assert counts["catches"] >= 2 and counts["to_DAMPING"] >= 1 and robot.counters.respawns >= 1
    assert app.loop.swaps == 2  # v1, then v2 while v1 drove

    steps = recorded_steps(decode_recording(path))  # the sensor stream as the robot read it
    index = {s.t_us: k for k, s in enumerate(steps.states)}
    rules = LiteralRules(app.layout)
    n = len(cols["rew"])
    assert n > 300
    prev_k, prev_driver = None, None
    seen = {"swap": 0, "caught": 0, "recovering": 0, "past_termination": 0, "handover_with_actions": 0}
    for i in range(n):
        k = index[int(cols["t_us"][i])]
        driver = (int(cols["source"][i]), int(cols["policy_version"][i]))
        new_stretch = i == 0 or bool(cols["truncated"][i - 1]) or k != prev_k + 1 or driver != prev_driver
        if new_stretch:
            handover = i > 0 and k == prev_k + 1  # driven without a break up to this reading
            obs = rules.start(state_values(steps.states[k]), handover)
            seen["handover_with_actions"] += handover and any(any(a) for a in rules.past_act)
            if i and prev_driver[0] == driver[0] == Source.POLICY and k == prev_k + 1:
                seen["swap"] += 1
        np.testing.assert_array_equal(cols["obs"][i], obs, err_msg=f"row {i}")
        next_obs, raw = rules.step(cols["act"][i].tolist(), state_values(steps.states[k + 1]))
        np.testing.assert_array_equal(cols["next_obs"][i], next_obs, err_msg=f"row {i}")
        assert cols["rew"][i] == np.float32(rules.task.reward_values(cols["act"][i].tolist(), raw)), i
        assert bool(cols["terminated"][i]) == rules.task.terminated_values(raw), i
        # the flags: what drove, after what
        flags = int(cols["flags"][i])
        if driver[0] == Source.POLICY:
            assert flags & ~RowFlag.PAST_TERMINATION == 0, i
        elif new_stretch and i and prev_driver[0] == Source.POLICY and k == prev_k + 1:
            assert flags == RowFlag.CAUGHT, i  # the controller took the robot from the policy
        seen["caught"] += flags == RowFlag.CAUGHT
        seen["recovering"] += flags == RowFlag.RECOVERING
        seen["past_termination"] += bool(flags & RowFlag.PAST_TERMINATION)
        obs, prev_k, prev_driver = next_obs, k, driver
    assert seen["swap"] == 1 and seen["caught"] > 0 and seen["recovering"] > 0
    assert seen["handover_with_actions"] >= 2  # swap and catches carried real, non-zero actions
    first_policy = int(np.argmax(cols["source"] == Source.POLICY))
    assert not cols["flags"][:first_policy].any()  # the controller's start is a task episode
    # After the fall: the controller's rows are RECOVERING until v2 drives again, whose rows are
    # a task episode (flags 0) again.
    last_recovering = int(np.flatnonzero(cols["flags"] == RowFlag.RECOVERING)[-1])
    after = slice(last_recovering + 1, n)
    assert np.all(cols["source"][after] == Source.POLICY) and not cols["flags"][after].any()
