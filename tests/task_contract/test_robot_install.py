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
            raise ModuleNotFoundError(f"{top} is outside the robot install", name=top)
        return None


sys.meta_path.insert(0, Refuse())
"""

ROBOT_PROGRAM = """
import task_contract.tasks, task_contract.history, task_contract.episodes, task_contract.controller
import task_contract.layout
import onboard.run, onboard.app, onboard.loop, onboard.policy, onboard.config, onboard.batcher
import firmware_bridge.link, firmware_bridge.hil.recordings
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


# What `pip install '.[robot]'` really puts on a robot: every package of this repository (the
# learner's and the simulator's sources included), none of torch, MuJoCo, gymnasium, h5py.
ROBOT_INSTALL = 'allowed.update({"learner", "sim_models"})\n'


def _script(target: str, args: list[str]) -> subprocess.CompletedProcess:
    module, function = target.split(":")
    code = (ROBOT_INSTALL + f"sys.argv = ['script', *{args!r}]\nimport importlib\n"
            f"sys.exit(getattr(importlib.import_module({module!r}), {function!r})())\n")
    return _run(code)


def test_every_console_script_runs_or_names_the_extra_it_needs_on_the_robot_install():
    """The robot's scripts show their help; the others exit 2 with one line naming the extra
    to install, never a ModuleNotFoundError traceback."""
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    from protocol.install import ROBOT_SCRIPTS

    assert set(ROBOT_SCRIPTS) <= set(scripts)
    for name, target in scripts.items():
        out = _script(target, ["--help"])
        if name in ROBOT_SCRIPTS:
            assert out.returncode == 0 and "usage" in out.stdout.lower(), (name, out.stderr[-2000:])
        else:
            assert out.returncode == 2 and "Traceback" not in out.stderr, (name, out.stderr[-2000:])
            assert f"{name}: needs the " in out.stderr and "pip install 'h2o-robot[" in out.stderr, out.stderr


def test_hil_subcommands_that_need_the_simulator_say_so_on_the_robot_install(tmp_path):
    from protocol.recording import ENCODING_SERIAL, Writer

    path = tmp_path / "r.mcap"
    with Writer(path, default_encoding=ENCODING_SERIAL, clock="elapsed") as w:
        w.write("serial/fw_to_host", 0, b"\x00")
    out = _script("firmware_bridge.hil.cli:main", ["gap", str(path)])
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "gap needs the sim install: pip install 'h2o-robot[sim]'" in out.stderr, out.stderr
    assert _script("firmware_bridge.hil.cli:main", ["inspect", str(path)]).returncode == 0


def test_no_install_ships_the_test_fakes():
    """devkit/ (fakes for tests and benchmarks) is in no wheel, and the robot package holds no fakes."""
    import tomllib

    from setuptools import find_namespace_packages

    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    shipped = set(find_namespace_packages(str(ROOT), include=find["include"]))
    assert {"onboard", "protocol", "task_contract", "firmware_bridge"} <= shipped
    assert (ROOT / "devkit" / "dev_learner.py").exists() and not any(p.startswith("devkit") for p in shipped)
    assert not sorted((ROOT / "onboard").glob("dev_*.py"))
