"""Console scripts that need more than the robot install say so, instead of a traceback.

Why: pip installs every [project.scripts] entry whatever extras were chosen, so the robot
computer (`pip install '.[robot]'`: no torch, no MuJoCo) gets `h2o-train`, `h2o-serve`,
`h2o-collect` and `h2o-virtual-robot` too, and they ended in ModuleNotFoundError. Their entry
points come here first: a missing library gives one line naming the extra to install (exit 2);
otherwise the program's own `main` runs. Standard library only, so it loads on any install.
The robot install runs h2o-onboard, h2o-console and h2o-hil (its `gap` and `export` need the sim
extra and say so).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

ROBOT_SCRIPTS = ("h2o-onboard", "h2o-console", "h2o-hil")


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """The top-level modules of `modules` that this interpreter cannot import."""
    missing = []
    for module in modules:
        try:
            if importlib.util.find_spec(module) is None:
                missing.append(module)
        except (ImportError, ValueError):  # a broken or blocked install counts as missing
            missing.append(module)
    return missing


def install_hint(extra: str, missing: list[str]) -> str:
    """One line: what is missing and the pip command that brings it."""
    return (f"needs the {extra} install: pip install 'h2o-robot[{extra}]' (missing here: {', '.join(missing)}; "
            f"the robot install runs {', '.join(ROBOT_SCRIPTS)})")


def _launch(script: str, extra: str, modules: tuple[str, ...], target: str) -> int:
    missing = missing_modules(modules)
    if missing:
        print(f"{script}: {install_hint(extra, missing)}", file=sys.stderr)
        return 2
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)()


def train() -> int:
    """h2o-train: offline/online training (torch, MuJoCo, gymnasium)."""
    return _launch("h2o-train", "learner", ("torch", "mujoco", "gymnasium", "h5py", "tomli_w"), "learner.train:main")


def serve() -> int:
    """h2o-serve: the learner service (torch, MuJoCo, onnx)."""
    return _launch("h2o-serve", "learner", ("torch", "mujoco", "gymnasium", "onnx"), "learner.serve:main")


def collect() -> int:
    """h2o-collect: offline datasets from the simulator (MuJoCo, gymnasium, h5py)."""
    return _launch("h2o-collect", "sim", ("mujoco", "gymnasium", "h5py"), "sim_models.collect:main")


def virtual_robot() -> int:
    """h2o-virtual-robot: the MuJoCo virtual firmware behind a pty."""
    return _launch("h2o-virtual-robot", "sim", ("mujoco",), "firmware_bridge.virtual_robot:main")
