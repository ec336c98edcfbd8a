"""Ask the OS for real-time help (FIFO priority, CPU affinity, locked memory), warn for each refusal.

Why best effort: a development laptop or a container rarely grants SCHED_FIFO or mlockall, and
the loop must still run there; on the robot computer (rtprio limits set) each request should
succeed. Every refusal is logged once with the reason, as ros2_control's node does, so a robot
that silently runs without its real-time settings is visible in the log.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import threading
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_MCL_CURRENT = 1
_MCL_FUTURE = 2
_MCL_ONFAULT = 4  # Linux >= 4.4: lock pages as they are first touched, do not fault in the rest
_CAP_IPC_LOCK = 14  # capability bit that exempts a process from RLIMIT_MEMLOCK


@dataclass
class RealtimeResult:
    """What was granted; `refused` maps each refused request to the OS's reason."""

    fifo_priority: int | None = None
    cpus: tuple[int, ...] | None = None
    memory_locked: bool = False
    memory_lock_flags: str = ""  # e.g. "CURRENT|FUTURE|ONFAULT" when granted
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
        _lock_memory(result)
    return result


@dataclass(frozen=True)
class MemoryLockPlan:
    """How to call mlockall, or why not to (`refusal`), for this process's limit and size."""

    flags: int = 0
    names: str = ""
    refusal: str = ""


def plan_memory_lock(limit_bytes: int | None, address_space_bytes: int, privileged: bool) -> MemoryLockPlan:
    """Pick mlockall flags for a process of `address_space_bytes` (VmSize) under RLIMIT_MEMLOCK.

    Why not plain mlockall(MCL_CURRENT | MCL_FUTURE): it faults in and pins every mapped page,
    including what is only reserved: 8 MiB stacks of threads that use a few KiB, thread pools'
    buffers. A Python process with numpy, onnxruntime and pyzmq loaded maps ~0.8-1 GB of which
    ~50-300 MB is ever touched, and the plain call makes all of it resident and pins it (measured
    with those three and 9 threads: resident set 49 MB -> 266 MB; with MCL_ONFAULT it stayed at
    49 MB). MCL_ONFAULT pins pages as they are first touched: the RAM pinned is the resident
    set, which is what a real-time loop needs to never page-fault on.

    The kernel still compares the whole address space (not the pinned pages) against
    RLIMIT_MEMLOCK for MCL_CURRENT unless the process has CAP_IPC_LOCK (root has it), and with
    MCL_FUTURE every later mapping that would pass the limit fails (a thread or a policy session
    could not be created). So:
    - privileged or unlimited: CURRENT | FUTURE | ONFAULT;
    - a finite limit above the address space: CURRENT | ONFAULT (later mappings are not locked,
      and cannot fail because of the lock);
    - a limit below the address space: refuse, naming the setting (LimitMEMLOCK=infinity in the
      systemd unit, or "memlock unlimited" in limits.conf; docs/bringup.md).
    """
    if privileged or limit_bytes is None:
        return MemoryLockPlan(_MCL_CURRENT | _MCL_FUTURE | _MCL_ONFAULT, "CURRENT|FUTURE|ONFAULT")
    if limit_bytes >= address_space_bytes:
        return MemoryLockPlan(_MCL_CURRENT | _MCL_ONFAULT, "CURRENT|ONFAULT")
    return MemoryLockPlan(refusal=(
        f"RLIMIT_MEMLOCK is {limit_bytes >> 20} MiB, below this process's {address_space_bytes >> 20} MiB "
        "of address space (the kernel's test for mlockall); set LimitMEMLOCK=infinity in the service "
        "unit or 'memlock unlimited' for the user in /etc/security/limits.conf"))


def _memlock_limit() -> int | None:
    """The soft RLIMIT_MEMLOCK in bytes; None when unlimited."""
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _proc_status(key: str) -> str:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    return ""


def _has_ipc_lock() -> bool:
    try:
        return bool(int(_proc_status("CapEff") or "0", 16) >> _CAP_IPC_LOCK & 1)
    except (OSError, ValueError):
        return os.geteuid() == 0


def _lock_memory(result: RealtimeResult) -> None:
    try:
        vm_size = int(_proc_status("VmSize").split()[0]) * 1024
        plan = plan_memory_lock(_memlock_limit(), vm_size, _has_ipc_lock())
    except (OSError, ValueError, IndexError) as e:  # no /proc: let the kernel decide
        plan = MemoryLockPlan(_MCL_CURRENT | _MCL_FUTURE | _MCL_ONFAULT, "CURRENT|FUTURE|ONFAULT")
        log.debug("memory lock plan without /proc (%s)", e)
    err = plan.refusal
    if not err:
        code = _mlockall(plan.flags)
        if code == errno.EINVAL and plan.flags & _MCL_ONFAULT:  # kernel < 4.4 has no MCL_ONFAULT
            plan = MemoryLockPlan(plan.flags & ~_MCL_ONFAULT, plan.names.replace("|ONFAULT", ""))
            code = _mlockall(plan.flags)
        err = "" if code == 0 else ("libc not found" if code < 0 else os.strerror(code))
    if err:
        result.refused["lock_memory"] = err
        log.warning("mlockall refused (%s): page faults may delay ticks", err)
        return
    result.memory_locked = True
    result.memory_lock_flags = plan.names
    if "FUTURE" not in plan.names:
        log.info("memory locked (%s): mappings made from now on are not locked (raise RLIMIT_MEMLOCK to "
                 "unlimited to lock them too)", plan.names)


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


def _mlockall(flags: int) -> int:
    """0 when granted, else the errno (-1: no libc)."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return -1
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if libc.mlockall(flags) != 0:
        return ctypes.get_errno() or errno.EPERM
    return 0
