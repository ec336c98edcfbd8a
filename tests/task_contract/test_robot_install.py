"""The robot install: the task contract and the robot program import nothing outside the `robot`
extra (numpy, msgpack, onnxruntime, pyzmq, pyserial, mcap and what they pull in themselves).

An import hook in a clean interpreter refuses every top-level package that is neither standard
library, nor the repository's robot-side packages, nor installed by the robot extra's
distributions (resolved from their installed metadata, dependencies included).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HOOK = r"""
import importlib.metadata as md
import re
import sys

ROBOT_EXTRA = ["numpy", "msgpack", "onnxruntime", "pyzmq", "pyserial", "mcap"]
OURS = {"task_contract", "protocol", "onboard", "firmware_bridge"}


def closure(names):
    seen, todo = set(), [n.lower() for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" in req:
                continue
            todo.append(re.split(r"[ ;<>=!~\[(]", req, 1)[0].lower().replace("_", "-"))
    return seen


dists = closure(ROBOT_EXTRA)
allowed = set(sys.stdlib_module_names) | OURS | {"_distutils_hack"}
for top, owners in md.packages_distributions().items():
    if any(o.lower().replace("_", "-") in dists for o in owners):
        allowed.add(top)


class Refuse:
    blocked = []

    def find_spec(self, name, path=None, target=None):
        top = name.split(".", 1)[0]
        if top not in allowed and not top.startswith("_"):
            Refuse.blocked.append(top)
            raise ImportError(f"{top} is outside the robot install")
        return None


sys.meta_path.insert(0, Refuse())
"""

ROBOT_PROGRAM = """
import task_contract.tasks, task_contract.history, task_contract.episodes, task_contract.controller
import task_contract.layout
import onboard.run, onboard.app, onboard.loop, onboard.policy, onboard.config, onboard.recorder
import firmware_bridge.link, firmware_bridge.recordings
from task_contract.controller import BalanceController
BalanceController("stand_still:action_history=2")
heavy = sorted(m for m in ("gymnasium", "torch", "mujoco", "h5py", "sim_models", "learner") if m in sys.modules)
print("loaded:", ",".join(heavy), "blocked:", ",".join(sorted(set(Refuse.blocked))))
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HOOK + code], cwd=ROOT, capture_output=True, text=True, timeout=120)


HEAVY = {"gymnasium", "torch", "mujoco", "h5py", "sim_models", "learner", "onnx"}


def test_the_robot_program_imports_only_the_robot_install():
    out = _run(ROBOT_PROGRAM)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded, blocked = out.stdout.strip().removeprefix("loaded:").split("blocked:")
    assert loaded.strip() == ""
    # Optional probes of installed packages (e.g. a newer stdlib name tried first) may be refused;
    # a refused heavy package would mean robot code tried it (and fell back silently).
    assert not HEAVY & set(filter(None, blocked.strip().split(","))), blocked


def test_the_hook_refuses_what_the_robot_does_not_install():
    """The check has teeth: the simulator side is refused in the same interpreter."""
    out = _run("import sim_models.envs\n")
    assert out.returncode != 0 and "outside the robot install" in out.stderr
