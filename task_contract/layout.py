"""The contract a policy carries: its observation layout and the scale of every actuator.

Why: a policy trained on one observation (say the paper's 4-D one) and run on a robot that builds
another (the same fields plus two past actions) computes garbage without any error: the robot
must know what the policy reads. The exporter (learner/export.py) writes these ONNX metadata
keys from the task id; the robot (onboard/policy.py) refuses a policy whose layout is not the one
it builds, with a message that says what differs, and keeps its active policy.

Keys (all strings, docs/task_contract.md):
  h2o.task_id      the task with its options, "stand_still:action_history=2"
  h2o.obs_layout   JSON {"task", "fields", "obs_history", "action_history", "act_dim", "dim"}
  h2o.actuators    JSON, per actuator in protocol order: {"actuator", "action", "mode", "scale",
                   "unit"[, "kp", "kd"]}; "action": null for an actuator the task does not drive
A policy without h2o.obs_layout predates layouts: it reads the task's raw observation.
"""

from __future__ import annotations

import json

from task_contract.history import ObsLayout, TaskOptions

TASK_ID_KEY = "h2o.task_id"
OBS_LAYOUT_KEY = "h2o.obs_layout"
ACTUATORS_KEY = "h2o.actuators"


def policy_metadata(layout: ObsLayout) -> dict[str, str]:
    """The layout keys of a policy for `layout`."""
    return {
        TASK_ID_KEY: layout.id,
        OBS_LAYOUT_KEY: json.dumps(layout.describe(), separators=(",", ":")),
        ACTUATORS_KEY: layout.task.drives.to_json(),
    }


def _summary(d: dict) -> str:
    extra = []
    if d.get("obs_history"):
        extra.append(f"{d['obs_history']} past observations")
    if d.get("action_history"):
        extra.append(f"{d['action_history']} past actions")
    return f"{d.get('task')} [{', '.join(d.get('fields', []))}]{' + ' + ' + '.join(extra) if extra else ''} (dim {d.get('dim')})"


def layout_problem(meta: dict[str, str], layout: ObsLayout) -> str:
    """Why this robot (building `layout`) cannot feed the policy with metadata `meta`; '' if it can."""
    want = layout.describe()
    raw = meta.get(OBS_LAYOUT_KEY)
    if raw is None:  # a policy from before layouts: the task's raw observation
        have = ObsLayout(layout.task, TaskOptions()).describe()
        have["task"] = meta.get("h2o.task", "?")
    else:
        try:
            have = json.loads(raw)
            if not isinstance(have, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            return f"{OBS_LAYOUT_KEY} is not a JSON object ({exc})"
    keys = ("task", "fields", "obs_history", "action_history", "act_dim", "dim")
    if any(have.get(k) != want[k] for k in keys):
        return (f"the policy reads {_summary(have)}; this robot builds {_summary(want)} "
                f"(robot and learner must run task id {meta.get(TASK_ID_KEY, have.get('task'))!r}: "
                f"set the robot's run.task_options or retrain)")
    actuators = meta.get(ACTUATORS_KEY)
    if actuators is not None:
        try:
            theirs = json.loads(actuators)
        except ValueError as exc:
            return f"{ACTUATORS_KEY} is not JSON ({exc})"
        if theirs != layout.task.drives.describe():
            return (f"the policy's actuator scales {actuators} differ from this robot's "
                    f"{layout.task.drives.to_json()}")
    return ""
