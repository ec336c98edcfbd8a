"""The task the service trains, as the link needs it: dims, action scale, control rate.

Why separate from the trainer: an ingest-only service (`--no-train`) checks HELLOs against the
task without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TaskInfo:
    name: str
    obs_dim: int
    act_dim: int
    action_scale: float = 1.0
    control_hz: float = 200.0


def task_info(task: str) -> TaskInfo:
    """The task's dims without building an env (task_contract is numpy-only). `task` may carry
    observation options ("stand_still:action_history=2"): obs_dim is then the layout's."""
    from task_contract.history import ObsLayout, TaskOptionsError
    from task_contract.tasks import TASKS, UnknownTaskError

    try:
        layout = ObsLayout.of(task)
    except (UnknownTaskError, TaskOptionsError) as exc:
        raise ValueError(f"unknown task {task!r} ({exc}); choices: {', '.join(sorted(TASKS))}") from None
    t = layout.task
    return TaskInfo(layout.id, layout.dim, t.act_dim, float(t.action_scale), float(t.control_hz))
