"""Ask the OS for real-time help (FIFO priority, CPU affinity, locked memory), warn for each refusal.

Why best effort: a development laptop or a container rarely grants SCHED_FIFO or mlockall, and
the loop must still run there; on the robot computer (rtprio limits set) each request should
succeed. Every refusal is logged once with the reason, as ros2_control's node does, so a robot
that silently runs without its real-time settings is visible in the log.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_MCL_CURRENT = 1
_MCL_FUTURE = 2


@dataclass
class RealtimeResult:
    """What was granted; `refused` maps each refused request to the OS's reason."""

    fifo_priority: int | None = None
    cpus: tuple[int, ...] | None = None
    memory_locked: bool = False
    refused: dict[str, str] = field(default_factory=dict)


def apply_realtime(fifo_priority: int = 0, cpus: tuple[int, ...] = (), lock_memory: bool = False) -> RealtimeResult:
    """Apply the requested settings to the calling thread/process; 0 / () / False = not asked."""
    result = RealtimeResult()
    if fifo_priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(fifo_priority))
            result.fifo_priority = fifo_priority
        except (OSError, AttributeError) as e:
            result.refused["fifo_priority"] = str(e)
            log.warning("SCHED_FIFO priority %d refused (%s): loop runs with normal priority", fifo_priority, e)
    if cpus:
        try:
            os.sched_setaffinity(0, set(cpus))
            result.cpus = tuple(sorted(cpus))
        except (OSError, AttributeError, ValueError) as e:
            result.refused["cpus"] = str(e)
            log.warning("CPU affinity %s refused (%s): loop may migrate between cores", cpus, e)
    if lock_memory:
        err = _mlockall()
        if err is None:
            result.memory_locked = True
        else:
            result.refused["lock_memory"] = err
            log.warning("mlockall refused (%s): page faults may delay ticks", err)
    return result


def _mlockall() -> str | None:
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return "libc not found"
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if libc.mlockall(_MCL_CURRENT | _MCL_FUTURE) != 0:
        return os.strerror(ctypes.get_errno())
    return None
