"""The two programs through their real CLIs: virtual robot (subprocess, SIGTERM) and console."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware_bridge.recorder import FW_TO_HOST, HOST_TO_FW
from firmware_bridge.hil.summary import summarise

REPO = Path(__file__).resolve().parents[2]


def test_virtual_robot_cli_serves_console_and_shuts_down_on_sigterm(tmp_path):
    link_path, record = tmp_path / "ttyRobot", tmp_path / "run.mcap"
    robot = subprocess.Popen(
        [sys.executable, "-m", "firmware_bridge.virtual_robot", "--profile", "mild",
         "--device", str(link_path), "--watchdog-ms", "200", "--log-level", "WARNING",
         "--record", str(record)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        device = robot.stdout.readline().strip()
        assert device.startswith("/dev/pts/"), device
        assert os.path.realpath(link_path) == device
        console = subprocess.run(
            [sys.executable, "-m", "firmware_bridge.console", "--device", str(link_path), "--enable",
             "--torque", "0,0,1,0,0,1", "--duration", "0.5", "--watch-hz", "0"],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )
        assert console.returncode == 0, console.stderr
        assert "mode=ENABLED" in console.stdout.splitlines()[-1]
        assert "'COMMAND'" in console.stderr  # frames-out summary
    finally:
        robot.send_signal(signal.SIGTERM)
        _, err = robot.communicate(timeout=30)
    assert robot.returncode == 0, err
    assert not os.path.lexists(link_path)  # symlink removed on shutdown
    summary = summarise(record)  # the recording was finished on SIGTERM and holds both directions
    assert summary[HOST_TO_FW].frames["COMMAND"] > 5 and summary[HOST_TO_FW].frames["ENABLE"] == 1
    assert summary[FW_TO_HOST].frames["STATE"] > 5
    inspect = subprocess.run([sys.executable, "-m", "firmware_bridge.hil", "inspect", str(record), "--json"],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert inspect.returncode == 0 and json.loads(inspect.stdout)["channels"][FW_TO_HOST]["frames"]["STATE"] > 5


def test_console_rejects_bad_torque_and_missing_device(tmp_path):
    bad = subprocess.run(
        [sys.executable, "-m", "firmware_bridge.console", "--device", str(tmp_path / "x"), "--torque", "1,2"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2 and "6 finite" in bad.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "firmware_bridge.console", "--device", str(tmp_path / "nope"), "--open-timeout-s", "0.1"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert missing.returncode == 1 and "cannot open" in missing.stderr


def test_virtual_robot_cli_help_and_bad_probability():
    helptext = subprocess.run([sys.executable, "-m", "firmware_bridge.virtual_robot", "--help"],
                              cwd=REPO, capture_output=True, text=True, timeout=60)
    assert helptext.returncode == 0 and "--lockstep" in helptext.stdout and "--faults.corrupt-byte-prob" in helptext.stdout
    assert "flip one random bit of a byte" in helptext.stdout  # help from the field's metadata
    bad = subprocess.run([sys.executable, "-m", "firmware_bridge.virtual_robot", "--faults.corrupt-byte-prob", "2"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "corrupt_byte_prob" in bad.stderr


def test_config_layering_defaults_then_toml_then_flags(tmp_path):
    from firmware_bridge.virtual_robot import (
        VirtualRobotConfigError, build_arg_parser, config_from_args, load_config,
    )

    shipped = load_config(REPO / "firmware_bridge" / "configs" / "virtual_robot_faulty.toml")
    assert shipped.faults.corrupt_byte_prob == 0.01 and shipped.faults.directions == "both"
    toml = tmp_path / "vr.toml"
    toml.write_text('profile = "severe"\nwatchdog_ms = 50.0\n[faults]\ncorrupt_byte_prob = 0.02\n')
    args = build_arg_parser().parse_args(["--config", str(toml), "--watchdog-ms", "75", "--seed", "3", "--device", ""])
    cfg = config_from_args(args)
    assert (cfg.profile, cfg.watchdog_ms, cfg.seed, cfg.device_link) == ("severe", 75.0, 3, None)
    assert cfg.faults.corrupt_byte_prob == 0.02 and cfg.faults.seed == 3 and cfg.lockstep is False
    toml.write_text("watchdog = 5\n[faults]\nbogus = 1\n")
    with pytest.raises(VirtualRobotConfigError, match="unknown key.*watchdog"):
        load_config(toml)
    toml.write_text("[faults]\nbogus = 1\n")
    with pytest.raises(VirtualRobotConfigError, match="faults: unknown key.*bogus"):
        load_config(toml)
    # the booleans and the sections as every program spells them
    args = build_arg_parser().parse_args(["--lockstep", "--faults.seed", "9", "--seed", "4", "--faults.directions", "both"])
    cfg = config_from_args(args)
    assert cfg.lockstep is True and cfg.seed == 4 and cfg.faults.seed == 9 and cfg.faults.directions == "both"
    assert config_from_args(build_arg_parser().parse_args(["--no-lockstep"])).lockstep is False


def test_console_interactive_session(start_robot):
    robot = start_robot(lockstep=False, watchdog_ms=500.0)
    lines = "enable\ntorque 0,0,1,0,0,1\nwait 0.3\nstate\ntorque 1,2\nbogus\nestop\nstate\nquit\n"
    console = subprocess.run(
        [sys.executable, "-m", "firmware_bridge.console", "--device", robot.device, "--interactive"],
        cwd=REPO, input=lines, capture_output=True, text=True, timeout=60,
    )
    assert console.returncode == 0, console.stderr
    out = console.stdout
    assert "enabled" in out and "holding torque" in out and "mode=ENABLED" in out
    assert "error: torque must be 6" in out and "unknown command 'bogus'" in out
    assert robot.firmware.counters.estops == 1 and robot.firmware.counters.commands_accepted > 0


def test_console_sigterm_disables_motors_before_exit(start_robot):
    robot = start_robot(lockstep=False, watchdog_ms=2000.0)
    console = subprocess.Popen(
        [sys.executable, "-m", "firmware_bridge.console", "--device", robot.device, "--enable",
         "--torque", "0,0,0.5,0,0,0.5", "--duration", "30", "--watch-hz", "20"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert "mode=ENABLED" in console.stdout.readline() + console.stdout.readline()
    finally:
        console.send_signal(signal.SIGTERM)
        console.communicate(timeout=30)
    assert console.returncode == 130
    for _ in range(200):  # the DISABLE is on the wire; give the firmware thread a moment to read it
        if robot.firmware.counters.disables:
            break
        time.sleep(0.01)
    assert robot.firmware.counters.disables == 1  # the console switched the motors off on its way out
