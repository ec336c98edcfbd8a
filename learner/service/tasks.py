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
    """The task's dims without building an env (sim_models.tasks is numpy-only)."""
    from sim_models.tasks import TASKS

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choices: {', '.join(sorted(TASKS))}")
    t = TASKS[task]
    return TaskInfo(task, t.obs_dim, t.act_dim, float(t.action_scale), float(t.control_hz))
