"""Config layering (code defaults -> TOML -> CLI) and the run.py entry point through its real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from onboard.config import ConfigError, build_parser, config_from_args, field_help, load_toml
from onboard.run import main
from onboard.safety import SafetyConfig

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def test_toml_then_cli_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[safety]\ntilt_limit_rad = 0.5\n[run]\ntask = "move_straight"\nlockstep = true\n')
    cfg = config_from_args(["--config", str(p), "--safety.tilt_limit_rad", "0.55", "--run.cpus", "0,1"])
    assert cfg.safety.tilt_limit_rad == 0.55
    assert cfg.run.task == "move_straight" and cfg.run.lockstep is True and cfg.run.cpus == "0,1"


@pytest.mark.parametrize(
    "text, match",
    [
        ("[safety]\ntilt_limit = 0.5\n", "unknown key"),
        ("[nope]\nx = 1\n", "unknown section"),
        ("[run]\nseed = 'x'\n", "expected int"),
        ("[safety]\nlearner_lost = 'pray'\n", "learner_lost"),
        ("[learner]\nendpoint = 'tcp://10.1.1.1:5'\nplaintext = true\n", "loopback"),
        ("not toml [", "cannot read"),
    ],
)
def test_bad_config_is_a_typed_error(tmp_path, text, match):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_toml(str(p))


def test_committed_configs_load():
    robot = load_toml(str(ROOT / "configs" / "onboard.toml"))
    virtual = load_toml(str(ROOT / "configs" / "onboard_virtual.toml"))
    # The real robot never lets software catch or stand a fallen robot back up on its own;
    # the virtual robot's config turns both on so the demo keeps learning after a fall.
    assert robot.safety.catch_tilt_rad == 0.0
    assert robot.safety.recover_after_s == 0.0
    assert virtual.safety.catch_tilt_rad == pytest.approx(0.25)
    assert virtual.safety.recover_after_s == pytest.approx(0.1)


def test_every_option_has_help():
    assert set(field_help(SafetyConfig)) == {f for f in SafetyConfig.__dataclass_fields__}
    for action in build_parser()._actions:
        if action.dest.count(".") == 1:
            assert action.help and not action.help.startswith(action.dest.split(".")[1].replace("_", " ") + " (")


def test_main_returns_2_on_bad_config(capsys):
    assert main(["--run.seed", "abc"]) == 2
    assert "config error" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_run_py_as_script_and_module_on_virtual_robot(tmp_path):
    env = dict(os.environ, PYTHONPATH="")
    help_out = subprocess.run([PY, "onboard/run.py", "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert help_out.returncode == 0 and "--safety.tilt_limit_rad" in help_out.stdout
    stats = tmp_path / "stats.json"
    proc = subprocess.run(
        [PY, "-m", "onboard.run", "--run.virtual_robot", "nominal", "--run.lockstep", "true", "--run.stream", "false",
         "--run.duration_s", "1.5", "--run.stats_file", str(stats), "--run.log_level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mode STAND" in proc.stdout
    s = json.loads(stats.read_text())
    assert s["ticks"] > 50 and s["transitions"]["recorded"] > 0
