"""run.lock_memory pins the pages the process uses, not its whole address space, and says why not.

Why: plain mlockall(MCL_CURRENT | MCL_FUTURE) faulted in and pinned every reserved page (thread
stacks, pools' buffers): ~1 GB for the robot program, refused to a non-root user by the default
8 MiB RLIMIT_MEMLOCK. onboard.realtime now locks with MCL_ONFAULT and checks the limit first.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from onboard.realtime import _MCL_CURRENT, _MCL_FUTURE, _MCL_ONFAULT, plan_memory_lock

REPO = Path(__file__).resolve().parents[2]
GIB = 1 << 30


def test_plan_locks_future_mappings_only_without_a_finite_limit():
    assert plan_memory_lock(None, GIB, privileged=False).flags == _MCL_CURRENT | _MCL_FUTURE | _MCL_ONFAULT
    assert plan_memory_lock(8 << 20, GIB, privileged=True).flags == _MCL_CURRENT | _MCL_FUTURE | _MCL_ONFAULT
    # A finite limit: MCL_FUTURE would make later mappings past the limit fail, so not asked.
    assert plan_memory_lock(2 * GIB, GIB, privileged=False).flags == _MCL_CURRENT | _MCL_ONFAULT


def test_plan_refuses_below_the_address_space_and_names_the_setting():
    plan = plan_memory_lock(8 << 20, GIB, privileged=False)
    assert plan.flags == 0
    assert "8 MiB" in plan.refusal and "1024 MiB" in plan.refusal
    assert "LimitMEMLOCK=infinity" in plan.refusal and "limits.conf" in plan.refusal


CHILD = r"""
import json, threading
from onboard.realtime import apply_realtime, _proc_status

def rss_mb():
    return int(_proc_status("VmRSS").split()[0]) / 1024

threading.stack_size(64 << 20)  # four threads reserving 256 MB of stack they never touch
stop = threading.Event()
threads = [threading.Thread(target=stop.wait) for _ in range(4)]
for t in threads:
    t.start()
before = rss_mb()
result = apply_realtime(lock_memory=True)
after = rss_mb()
late = threading.Thread(target=stop.wait)  # a mapping made after the lock still works
late.start()
stop.set()
print(json.dumps({"locked": result.memory_locked, "flags": result.memory_lock_flags,
                  "refused": result.refused.get("lock_memory", ""), "grew_mb": after - before,
                  "vm_lck_kb": int(_proc_status("VmLck").split()[0])}))
"""


def test_lock_memory_pins_only_touched_pages_or_says_what_to_set():
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    if r["locked"]:  # root, or a raised limit: locked, and the unused stacks stayed unresident
        assert "ONFAULT" in r["flags"] and r["vm_lck_kb"] > 0
        assert r["grew_mb"] < 64, r  # plain MCL_CURRENT would have made the 256 MB resident
    else:  # default limits for a user: refused before the call, with the setting to change
        assert "LimitMEMLOCK" in r["refused"], r
