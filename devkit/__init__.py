"""Development fakes for tests and benchmarks: contract ONNX policies and a minimal learner ROUTER.

Why a top-level package outside the robot's: these are test doubles, not robot code. They used to
live in onboard/, so every robot install (`pip install '.[robot]'`) shipped them and the
dev_policies module needs `onnx`, which the robot does not install. Here they are:

- not in any wheel: pyproject.toml's `[tool.setuptools.packages.find]` does not include
  `devkit*`, so neither the robot nor the learner install carries them
  (tests/task_contract/test_robot_install.py checks it);
- importable from a checkout without touching sys.path in code: pytest puts the repository root
  on the path (`pythonpath = ["."]` in pyproject.toml), `python -m ...` from the root does the
  same, and the benchmarks are run from the checkout with the root on their path;
- importing only what the robot side's tests have anyway (protocol, pyzmq, onnx).

Modules: `devkit.dev_policies` (torch-free ONNX policies following the policy contract, and
broken ones on purpose) and `devkit.dev_learner` (`DevLearner`, the learner half of the protocol
just enough for end-to-end tests of the robot side).
"""
