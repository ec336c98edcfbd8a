"""Config layering, the plaintext rule, the keys CLI and serve.py's CLI errors."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import zmq.auth

from learner.service.config import ConfigError, ServeConfig, add_arguments, load_config
from learner.service.keys import main as keys_main

ROOT = Path(__file__).resolve().parents[2]


def _parse(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--config")
    add_arguments(p, ServeConfig)
    return p.parse_args(argv)


def test_toml_then_cli_overrides(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('hidden = "32-32"\nbatch_real = 16\ndatasets = ["a.hdf5"]\n[algo]\nbeta = 0.5\n')
    cfg = load_config(ServeConfig, str(toml), _parse(["--batch-real", "8", "--algo", "tau=0.01"]))
    assert (cfg.hidden, cfg.batch_real, cfg.datasets) == ("32-32", 8, ["a.hdf5"])
    assert cfg.algo == {"beta": 0.5, "tau": 0.01}
    assert load_config(ServeConfig, None, _parse([])).plaintext is False  # CURVE by default


def test_bad_values_are_named(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text("batch_rael = 3\n")
    with pytest.raises(ConfigError, match="batch_rael"):
        load_config(ServeConfig, str(toml), None)
    with pytest.raises(ConfigError, match="plaintext"):
        load_config(ServeConfig, None, _parse(["--plaintext", "--bind", "tcp://0.0.0.0:5555"]))
    with pytest.raises(ConfigError, match="batch_sim"):
        load_config(ServeConfig, None, _parse(["--batch-sim", "0"]))
    assert load_config(ServeConfig, None, _parse(["--plaintext", "--bind", "tcp://[::1]:5"])).plaintext


def test_keys_cli_creates_and_authorises(tmp_path, capsys):
    assert keys_main(["create", "--name", "robot9", "--dir", str(tmp_path)]) == 0
    public, secret = zmq.auth.load_certificate(str(tmp_path / "robot9.key_secret"))
    assert public and secret
    assert (tmp_path / "robot9.key_secret").stat().st_mode & 0o077 == 0
    assert keys_main(["authorise", "--public", str(tmp_path / "robot9.key"),
                      "--dir", str(tmp_path / "auth")]) == 0
    assert (tmp_path / "auth" / "robot9.key").exists()
    assert keys_main(["create", "--name", "../x", "--dir", str(tmp_path)]) == 2
    assert keys_main(["authorise", "--public", str(tmp_path / "nope.key"), "--dir", str(tmp_path)]) == 2


def test_serve_cli_refuses_plaintext_off_loopback_and_missing_keys(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "learner" / "serve.py"), "--plaintext",
                        "--bind", "tcp://0.0.0.0:5555"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "plaintext" in r.stderr
    r = subprocess.run([sys.executable, "-m", "learner.serve", "--no-train", "--bind",
                        "tcp://127.0.0.1:0", "--run-dir", str(tmp_path / "run"),
                        "--server-secret-key", str(tmp_path / "missing.key_secret"),
                        "--authorized-keys-dir", str(tmp_path)], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "missing.key_secret" in r.stderr
