"""The robot refuses a policy whose observation layout it does not build, and keeps the active one.

Real parts: policies exported by learner/export.py (torch -> ONNX, the layout in the metadata), the
robot program on a lock-step virtual robot over a pty, onnxruntime sessions in its loader.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from learner.export import PolicyMetadata, export_policy  # noqa: E402
from learner.networks import TanhGaussianPolicy  # noqa: E402
from onboard.policy import PolicyCandidate  # noqa: E402
from onboard.safety import Mode  # noqa: E402
from task_contract.history import ObsLayout  # noqa: E402


def _exported(task_id: str, version: int) -> PolicyCandidate:
    torch.manual_seed(version)
    layout = ObsLayout.of(task_id)
    net = TanhGaussianPolicy(layout.dim, layout.task.act_dim, hidden=(16, 16))
    with torch.no_grad():
        net.head.weight.mul_(0.01)  # small actions: the controller-like robot stays up
    exp = export_policy(net, PolicyMetadata(version=version, task=task_id, algorithm="sac"))
    return PolicyCandidate(version, exp.sha256, exp.onnx_bytes)


def test_a_policy_of_another_layout_is_refused_and_the_active_one_kept(make_app, wait_for):
    robot = make_app(task_options="action_history=2")
    assert robot.layout.dim == 6
    robot.loop.activate_policy(robot.loader.validate_now(_exported("stand_still:action_history=2", 1)))
    robot.run(threading.Event(), max_ticks=40)
    assert robot.loop.policy_version == 1 and robot.fsm.mode is Mode.POLICY

    robot.loader.submit(_exported("stand_still", 2))  # the paper's 4-D observation
    assert wait_for(lambda: robot.loader.last_result is not None and robot.loader.last_result[0] == 2)
    version, ok, reason = robot.loader.last_result
    assert not ok and reason.startswith("layout_mismatch")
    assert "[x, v, pitch, pitch_rate] (dim 4)" in reason and "2 past actions (dim 6)" in reason
    robot.run(threading.Event(), max_ticks=20)
    assert robot.loop.policy_version == 1 and robot.fsm.mode is Mode.POLICY  # still driving

    robot.loader.submit(_exported("stand_still:obs_history=1,action_history=2", 3))  # same task, more history
    assert wait_for(lambda: robot.loader.last_result[0] == 3)
    assert not robot.loader.last_result[1] and "1 past observations" in robot.loader.last_result[2]

    robot.loader.submit(_exported("stand_still:action_history=2", 4))  # the robot's layout
    assert wait_for(lambda: robot.loader.last_result[0] == 4)
    assert robot.loader.last_result[1], robot.loader.last_result
    robot.run(threading.Event(), max_ticks=5)
    assert robot.loop.policy_version == 4
    obs = robot.loop.recent_observations()
    assert obs.shape[1] == 6 and np.all(np.isfinite(obs))


def test_robot_and_learner_agree_on_the_task_id_at_hello(make_app):
    """The robot's HELLO names its task id; the learner welcomes the same id (whatever the order
    of the options it was given) and refuses another layout of the same width."""
    from learner.service.config import ServeConfig
    from learner.service.sessions import HelloPolicy
    from learner.service.tasks import task_info
    from protocol.messages import schema_hash

    hello = make_app(task_options="obs_history=1,action_history=2")._hello()
    assert hello.task == "stand_still:action_history=2,obs_history=1" and hello.obs_dim == 10

    def learner(task: str, options: str) -> HelloPolicy:
        cfg = ServeConfig(task=task, task_options=options).validate()
        info = task_info(cfg.task)
        return HelloPolicy(schema_hash(), info.obs_dim, info.act_dim, cfg.task)

    assert learner("stand_still", "action_history=2,obs_history=1").check(hello) == ""
    assert learner("stand_still:obs_history=1,action_history=2", "").check(hello) == ""
    # action_history=6 gives 4 + 6 = 10, the same dims, another observation.
    refusal = learner("stand_still", "action_history=6").check(hello)
    assert refusal.startswith("task_mismatch") and "action_history=6" in refusal
