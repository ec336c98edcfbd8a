"""The one config system (protocol/config_cli.py): layers, sections, flag spellings and errors."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import pytest

from protocol.config_cli import ConfigError, add_dataclass_arguments, field_help, help_field, load_config


@dataclass
class Inner:
    rate_hz: float = help_field(200.0, "loop rate")
    enabled: bool = help_field(True, "on or off")
    cpus: tuple[int, ...] = help_field((0,), "CPU list")


@dataclass
class Outer:
    name: str = help_field("robot0", "its name")
    retries: int = help_field(3, "how many")
    extra: dict = help_field({}, "free-form table")
    inner: Inner = help_field(factory=Inner, help="a section")


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False, exit_on_error=False)
    p.add_argument("--config", default="")
    add_dataclass_arguments(p, Outer)
    return p.parse_args(argv)


def test_defaults_then_toml_then_flags(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('name = "a"\nretries = 5\n[extra]\nk = 1\n[inner]\nrate_hz = 100\nenabled = false\n')
    cfg = load_config(Outer, str(toml), _parse(["--retries", "7", "--inner.rate-hz", "50", "--extra", "j=[1, 2]"]))
    assert (cfg.name, cfg.retries, cfg.extra) == ("a", 7, {"k": 1, "j": [1, 2]})
    assert cfg.inner.rate_hz == 50.0 and cfg.inner.enabled is False and cfg.inner.cpus == (0,)
    assert load_config(Outer, None, _parse([])) == Outer()


@pytest.mark.parametrize("argv, value", [
    (["--inner.enabled"], True), (["--no-inner.enabled"], False),
    (["--inner.enabled", "false"], False), (["--inner.enabled", "yes"], True),
])
def test_booleans_as_every_program_spells_them(argv, value):
    assert load_config(Outer, None, _parse(["--no-inner.enabled"] + argv)).inner.enabled is value


def test_underscore_spelling_is_accepted_and_abbreviations_are_not():
    assert load_config(Outer, None, _parse(["--inner.rate_hz", "10"])).inner.rate_hz == 10.0
    with pytest.raises((SystemExit, argparse.ArgumentError)):
        _parse(["--inner.rate", "10"])


@pytest.mark.parametrize("text, match", [
    ("bogus = 1\n", r"unknown key\(s\) \['bogus'\]"),
    ("[inner]\nrate = 1\n", r"inner: unknown key\(s\) \['rate'\]"),
    ("retries = 'many'\n", "retries = 'many': expected int"),
    ("inner = 3\n", r"must be a \[inner\] table"),
    ("not toml [", "cannot read"),
])
def test_bad_toml_is_an_error_naming_the_key(tmp_path, text, match):
    toml = tmp_path / "c.toml"
    toml.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(Outer, str(toml), None)


def test_bad_flag_value_names_the_flag():
    with pytest.raises(ConfigError, match="inner.rate_hz = 'fast': expected float"):
        load_config(Outer, None, _parse(["--inner.rate-hz", "fast"]))


def _every_config_class():
    from firmware_bridge.virtual_robot import VirtualRobotConfig
    from learner.demo import DemoConfig
    from learner.service.config import ServeConfig
    from learner.train import TrainConfig
    from onboard.config import OnboardConfig

    seen, todo = [], [OnboardConfig, VirtualRobotConfig, ServeConfig, TrainConfig, DemoConfig]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.type) or (isinstance(f.type, str) and f.name in
                                                     ("run", "link", "safety", "policy", "learner", "trials",
                                                      "control", "faults")):
                todo.append(type(getattr(cls(), f.name)))
    return seen


def test_every_program_option_has_help_from_metadata():
    """Help lives in the fields, not in source comments a robot install may not ship."""
    missing = [f"{cls.__name__}.{name}" for cls in _every_config_class()
               for name, text in field_help(cls).items() if not text]
    assert not missing, f"fields without help: {missing}"
