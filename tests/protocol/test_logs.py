"""protocol.logs: every program logs one line format (UTC times), to stderr and optionally a file."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from protocol.logs import LEVELS, parse_level, setup_logging

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.\d{3}Z (\w+) ([\w.]+): (.*)$")


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)


def test_file_and_stderr_get_the_one_format_with_utc_times(tmp_path, restore_root_logger, capsys) -> None:
    log_file = tmp_path / "sub" / "run.log"
    before = time.time()
    setup_logging("warning", file=log_file)
    logging.getLogger("h2o.test").info("not at WARNING")
    logging.getLogger("h2o.test").warning("hello %d", 7)
    lines = log_file.read_text().splitlines()
    assert len(lines) == 1
    stamp, level, name, message = LINE.match(lines[0]).groups()
    assert (level, name, message) == ("WARNING", "h2o.test", "hello 7")
    utc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(before))
    assert stamp[:13] == utc[:13] or stamp > utc  # the UTC hour of the call (or just after)
    assert LINE.match(capsys.readouterr().err.strip().splitlines()[-1]).group(4) == "hello 7"


def test_calling_again_replaces_its_handlers_and_keeps_others(tmp_path, restore_root_logger) -> None:
    other = logging.StreamHandler()
    logging.getLogger().addHandler(other)
    setup_logging("INFO", file=tmp_path / "a.log")
    setup_logging("INFO", file=tmp_path / "b.log")
    logging.getLogger("h2o.test").info("only in b")
    assert (tmp_path / "a.log").read_text() == "" and "only in b" in (tmp_path / "b.log").read_text()
    assert other in logging.getLogger().handlers
    files = [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    assert str(tmp_path / "a.log") not in files and files.count(str(tmp_path / "b.log")) == 1
    logging.getLogger().removeHandler(other)


def test_levels_are_case_insensitive_and_a_typo_is_refused() -> None:
    assert parse_level("debug") == logging.DEBUG and parse_level(" Error ") == logging.ERROR
    assert parse_level(15) == 15 and parse_level("15") == 15
    with pytest.raises(ValueError) as err:
        parse_level("LOUD")
    assert all(name in str(err.value) for name in LEVELS)


def test_the_robot_program_refuses_a_bad_log_level_with_exit_2() -> None:
    bad = subprocess.run([sys.executable, "-m", "onboard.run", "--run.log_level", "LOUD"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown log level 'LOUD'" in bad.stderr


@pytest.mark.timeout(180)
def test_train_writes_its_log_file_in_the_one_format(tmp_path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "learner.train", "--algorithm", "sac", "--task", "gym:Pendulum-v1",
         "--real-profile", "nominal", "--collect-steps", "100", "--total-updates", "10", "--updates-per-epoch", "10",
         "--sim-steps-per-epoch", "10", "--hidden", "8-8", "--real-batch", "8", "--sim-batch", "8",
         "--eval-every", "10", "--eval-episodes", "1", "--max-episode-steps", "20", "--checkpoint-every", "10",
         "--threads", "1", "--no-progress", "--run-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = (tmp_path / "train.log").read_text().splitlines()
    assert lines and all(LINE.match(line) for line in lines), lines[:3]
    assert any("collected 100 real transitions (random" in line for line in lines)
