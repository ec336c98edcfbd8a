"""Every program's `--help` shows an example command line and the default of every option that has
one, and every program refuses a typo in its config (a flag or a TOML key) with exit 2.

Why: a reader learns a program from its --help; an option whose default is not shown makes them
read the source, and a help without an example makes them guess the shape of a command line. A
typo that a program accepts silently runs with the default instead of what was meant.

How the help is judged: each program runs with its real command line, but `parse_args` is replaced
by a dump of the parser it built (every option, every subcommand's options, the rendered help), so
the check sees argparse's own view of each option: an option whose default is a value (0 is; None,
False and empty are not) must show the word "default" in its help; some line of the help (outside usage)
must run the program with at least one argument.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (how the program is started, the spellings an example line may start with)
PROGRAMS = [
    (["onboard/run.py"], ["python onboard/run.py", "python -m onboard.run", "h2o-onboard"]),
    (["-m", "onboard.control"], ["python -m onboard.control"]),
    (["learner/serve.py"], ["python learner/serve.py", "python -m learner.serve", "h2o-serve"]),
    (["-m", "learner.train"], ["python -m learner.train", "h2o-train"]),
    (["-m", "learner.demo"], ["python -m learner.demo"]),
    (["-m", "learner.fleet"], ["python -m learner.fleet"]),
    (["-m", "learner.robot_rules"], ["python -m learner.robot_rules"]),
    (["-m", "learner.latency"], ["python -m learner.latency"]),
    (["-m", "learner.experiments"], ["python -m learner.experiments"]),
    (["-m", "learner.experiments.gates"], ["python -m learner.experiments.gates"]),
    (["-m", "learner.experiments.behaviour_data"], ["python -m learner.experiments.behaviour_data"]),
    (["-m", "learner.service.keys"], ["python -m learner.service.keys"]),
    (["-m", "learner.service.replay"], ["python -m learner.service.replay"]),
    (["-m", "learner.service.status"], ["python -m learner.service.status"]),
    (["-m", "firmware_bridge.virtual_robot"], ["python -m firmware_bridge.virtual_robot", "h2o-virtual-robot"]),
    (["-m", "firmware_bridge.console"], ["python -m firmware_bridge.console", "h2o-console"]),
    (["-m", "firmware_bridge.hil"], ["python -m firmware_bridge.hil", "h2o-hil"]),
    (["-m", "sim_models.collect"], ["python -m sim_models.collect", "h2o-collect"]),
    (["-m", "sim_models.minari_io"], ["python -m sim_models.minari_io"]),
]

DUMP = r"""
import argparse, json, runpy, sys

def dump(parser):
    fmt = parser._get_formatter()
    out = {"prog": parser.prog, "help": parser.format_help(), "options": [], "subcommands": {}}
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                out["subcommands"].setdefault(sub.prog, dump(sub))
        elif a.option_strings and a.help is not argparse.SUPPRESS and not isinstance(
                a, (argparse._HelpAction, argparse._VersionAction)):
            d = a.default
            valued = not (d is None or d is False or d is argparse.SUPPRESS
                          or (isinstance(d, (str, list, tuple, dict)) and not d))
            out["options"].append({"flag": a.option_strings[0], "default": repr(a.default), "valued": valued,
                                   "help": fmt._get_help_string(a) if a.help else ""})  # no help: none shown
    return out

def fake_parse_args(self, args=None, namespace=None):
    print("\0" + json.dumps(dump(self)))
    sys.exit(0)

argparse.ArgumentParser.parse_args = fake_parse_args
target = sys.argv[1]
if target == "-m":
    sys.argv = [sys.argv[2]]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
else:
    sys.argv = [target]
    runpy.run_path(target, run_name="__main__")
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _command(command: list[str]) -> list[str]:
    return [str(ROOT / c) if c.endswith(".py") else c for c in command]


def parser_of(command: list[str], cwd: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", DUMP, *_command(command)], cwd=cwd, env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "\0" in r.stdout, (r.returncode, r.stderr[-2000:])
    return json.loads(r.stdout.rsplit("\0", 1)[1])


def parsers(tree: dict) -> list[dict]:
    return [tree, *(p for sub in tree["subcommands"].values() for p in parsers(sub))]


def has_example(help_text: str, spellings: list[str]) -> bool:
    """Some line after the usage block starts a command line of the program with an argument."""
    body = help_text.split("\n\n", 1)[-1]
    for line in body.splitlines():
        text = line.strip().lstrip("`").removeprefix("$ ").removeprefix(".venv/bin/")
        if any(text.startswith(s + " ") and len(text) > len(s) + 1 and not text[len(s) + 1:].startswith("--help")
               for s in spellings):
            return True
    return False


@pytest.mark.parametrize("command,spellings", PROGRAMS, ids=[" ".join(c) for c, _ in PROGRAMS])
def test_help_shows_an_example_and_every_default(command, spellings, tmp_path) -> None:
    tree = parser_of(command, tmp_path)
    assert has_example(tree["help"], spellings), f"no example command line in:\n{tree['help']}"
    hidden = [f"{p['prog']} {o['flag']} (default {o['default']})" for p in parsers(tree) for o in p["options"]
              if o["valued"] and "default" not in o["help"].lower()]
    assert not hidden, f"options whose --help does not show their default: {hidden}"


def test_the_checks_see_a_missing_example_and_a_hidden_default() -> None:
    spellings = ["python -m x"]
    assert has_example("usage: x [-h]\n\nDoes x.\n\n    python -m x --n 3\n", spellings)
    assert not has_example("usage: python -m x --n 3\n\nDoes x.\n", spellings)
    assert not has_example("usage: x\n\nsee `python -m x --help`\n  python -m x --help\n", spellings)


# ------------------------------------------------------------------------------ typos
# (command, a flag that is a typo of one of its options, a TOML file with a typo or None)
FLAT_TYPO = "bogus_key = 1\n"
TYPOS = [
    (["onboard/run.py"], "--run.rate-hzz", "[run]\nrate_hzz = 100\n"),
    (["-m", "onboard.control", "status"], "--endpont", None),
    (["learner/serve.py"], "--algoritm", FLAT_TYPO),
    (["-m", "learner.train"], "--total-update", FLAT_TYPO),
    (["-m", "learner.demo"], "--minuts", FLAT_TYPO),
    (["-m", "learner.fleet"], "--robot", FLAT_TYPO),
    (["-m", "learner.robot_rules", "controller"], "--secconds", None),
    (["-m", "learner.latency", "x.hdf5"], "--max-lagg", None),
    (["-m", "learner.experiments"], "--worker", FLAT_TYPO),
    (["-m", "learner.experiments.gates"], "--jobs", FLAT_TYPO),
    (["-m", "learner.experiments.behaviour_data"], "--env-step", FLAT_TYPO),
    (["-m", "learner.service.keys", "create", "--name", "x"], "--dirr", None),
    (["-m", "learner.service.replay", "send", "x.mcap"], "--endpont", None),
    (["-m", "learner.service.status", "show", "x"], "--folow", None),
    (["-m", "firmware_bridge.virtual_robot"], "--profle", "[faults]\ndrop_frame_prob = 0.1\nbogus = 1\n"),
    (["-m", "firmware_bridge.console"], "--devce", None),
    (["-m", "firmware_bridge.hil", "list", "x"], "--jsn", None),
    (["-m", "sim_models.collect"], "--step", FLAT_TYPO),
    (["-m", "sim_models.minari_io", "export"], "--datset", None),
]


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *_command(command)], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("command,flag,toml", TYPOS, ids=[" ".join(c) for c, _, _ in TYPOS])
def test_a_config_typo_is_refused_with_exit_2(command, flag, toml, tmp_path) -> None:
    # from an empty folder: a program that wrongly accepted the typo writes nothing into the repo
    r = _run([*command, flag, "1"], tmp_path)
    assert r.returncode == 2 and flag in r.stderr, (r.returncode, r.stderr[-1500:])
    if toml is None:
        return
    (tmp_path / "typo.toml").write_text(toml)
    # the grid programs take the TOML as their argument; the others as --config
    grid = command[-1] in ("learner.experiments", "learner.experiments.gates")
    r = _run([*command, "typo.toml"] if grid else [*command, "--config", "typo.toml"], tmp_path)
    named = "rate_hzz" if "rate_hzz" in toml else "bogus"
    assert r.returncode == 2 and named in r.stderr and "Traceback" not in r.stderr, (r.returncode, r.stderr[-1500:])


# ------------------------------------------------------------------------------ README
def _readme_rows(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8").split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in text.splitlines() if line.startswith("| `")]


def test_the_readme_programs_table_names_every_program_and_its_console_script() -> None:
    """Every program above has a row in README "The programs", with its console script where
    pyproject.toml installs one, and every console script is in the table."""
    import tomllib

    rows = _readme_rows("The programs")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for command, spellings in PROGRAMS:
        row = [r for r in rows if f"`{spellings[0]} --help`" in r.split("|")[1]]
        assert row, f"README's programs table has no row for `{spellings[0]} --help`"
        for script in (s for s in spellings if s.startswith("h2o-")):
            assert f"`{script}`" in row[0].split("|")[1], f"the row of {spellings[0]} does not name {script}"
    named = {s for _, spellings in PROGRAMS for s in spellings}
    assert set(scripts) <= named, f"console scripts not in the programs table: {sorted(set(scripts) - named)}"
