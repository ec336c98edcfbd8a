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
import threading
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


def raise_helper_threads(priority: int, by_name: dict[str, int] | None = None) -> dict[str, str]:
    """SCHED_FIFO for every other Python thread of this process (by native id).

    Why: a helper thread that holds the GIL and is then preempted by some other process keeps
    the loop waiting for as long as it is off the CPU (priority inversion through the GIL;
    measured: 100 ms stalls on a loaded 2-core machine). Helpers at a real-time priority below
    the loop's are not preempted by ordinary processes, so they hand the GIL back within the
    switch interval. FIFO does not time-slice equal priorities, so threads that must never wait
    behind a long job (the serial reader) get their own, higher priority via `by_name`
    (thread-name prefix -> priority). Returns {thread name: reason} for each refusal.
    """
    refused: dict[str, str] = {}
    me = threading.get_native_id()
    for t in threading.enumerate():
        tid = t.native_id
        if tid is None or tid == me:
            continue
        prio = next((p for prefix, p in (by_name or {}).items() if t.name.startswith(prefix)), priority)
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(prio))
        except (OSError, AttributeError) as e:
            refused[t.name] = str(e)
    if refused:
        log.warning("SCHED_FIFO refused for helper threads %s", refused)
    return refused


def _mlockall() -> str | None:
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return "libc not found"
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if libc.mlockall(_MCL_CURRENT | _MCL_FUTURE) != 0:
        return os.strerror(ctypes.get_errno())
    return None
