"""The onboard program's configuration: defaults in code, a TOML file, then CLI overrides.

One dataclass per part (the loop, the serial link, safety, policy validation, the learner link),
gathered in `OnboardConfig`. Each field's trailing comment is its `--help` text, so the help
cannot drift from the code. TOML sections are the part names ([run], [link], [safety],
[policy], [learner]); CLI options are `--<part>.<field>`.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import tomllib
import typing
from dataclasses import dataclass, field
from typing import Any

from firmware_bridge.link import SerialLinkConfig
from onboard.control import ControlConfig
from onboard.policy import ValidationConfig
from onboard.safety import SafetyConfig
from onboard.streamer import StreamerConfig
from onboard.trials import TrialConfig


@dataclass
class RunConfig:
    """The loop itself and the program around it."""

    task: str = "stand_still"  # task name (task_contract: observation, action mapping, reward, episodes)
    task_options: str = ""  # observation options, e.g. "action_history=2,obs_history=1" (the learner must use the same)
    rate_hz: float = 0.0  # loop rate; 0: the task's control rate
    lockstep: bool = False  # wait for each STATE (a lock-step virtual robot); no wall-clock pacing
    explore: bool = False  # sample actions from the policy's Gaussian head (seeded)
    seed: int = 0  # seed of the exploration noise
    controller_noise: float = 0.0  # std of Gaussian noise on the controller's actions in its task episodes (informative data; 0: none)
    policy_path: str = ""  # start-up ONNX policy (its hash in <path>.sha256); empty: controller only
    stream: bool = True  # stream transitions to the learner
    duration_s: float = 0.0  # stop after this long; 0: run until SIGINT/SIGTERM
    drain_s: float = 1.0  # at the stop, wait up to this long for the learner to ACK what is spooled (the rest stays on disk)
    stats_file: str = "runs/onboard_stats.json"  # JSON stats, rewritten atomically each status period
    status_interval_s: float = 1.0  # status line and stats file period
    fifo_priority: int = 0  # SCHED_FIFO priority for the loop thread; 0: do not ask
    helper_priority: int = 0  # SCHED_FIFO priority (below the loop's) for the helper threads; 0: do not ask
    cpus: str = ""  # CPU affinity of the process, e.g. "1" or "0,1"; empty: do not ask
    lock_memory: bool = False  # mlockall the process
    spin_us: float = 300.0  # spin this long before each deadline instead of sleeping
    gc_freeze: bool = True  # move start-up objects out of the cyclic GC's reach (shorter collections)
    loop_gc: bool = True  # young-generation GC in the loop's slack instead of automatic collections
    gil_switch_interval_us: float = 500.0  # Python's GIL hand-over interval (default 5000): bounds waits on other threads
    virtual_robot: str = ""  # start an in-process virtual robot with this profile (demo; imports mujoco)
    virtual_robot_respawn_s: float = 0.0  # in-process virtual robot: put it back up after lying fallen this long (0: never)
    log_level: str = "INFO"  # logging level


@dataclass
class OnboardConfig:
    run: RunConfig = field(default_factory=RunConfig)
    link: SerialLinkConfig = field(default_factory=SerialLinkConfig)
    safety: SafetyConfig = field(default_factory=lambda: SafetyConfig())
    policy: ValidationConfig = field(default_factory=ValidationConfig)
    learner: StreamerConfig = field(default_factory=lambda: StreamerConfig(plaintext=True))
    trials: TrialConfig = field(default_factory=TrialConfig)  # on-robot trials of new policy versions
    control: ControlConfig = field(default_factory=ControlConfig)  # the operator's control channel


SECTIONS: tuple[str, ...] = ("run", "link", "safety", "policy", "learner", "trials", "control")


class ConfigError(ValueError):
    """A config file or override names an unknown key or holds a value of the wrong type."""


def field_help(cls: type) -> dict[str, str]:
    """Field name -> its `# comment` in the class source (trailing, else the lines just above)."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    above: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        m = re.match(r"^\s+(\w+)\s*:\s*[^=]+=\s*(.*)$", line)
        if m:
            trailing = re.search(r"#\s*(.+)$", m.group(2))
            text = trailing.group(1).strip() if trailing else " ".join(above)
            if text:
                out[m.group(1)] = text
        above = []
    return out


def _section_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(section: str, name: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is tuple and args:
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, (list, tuple)):
            return tuple(_coerce(section, name, v, args[0]) for v in items)
    else:
        return value
    raise ConfigError(f"[{section}] {name} = {value!r}: expected {getattr(tp, '__name__', tp)}")


def _apply(cfg: OnboardConfig, section: str, values: dict[str, Any]) -> None:
    if section not in SECTIONS:
        raise ConfigError(f"unknown section [{section}]; known: {list(SECTIONS)}")
    part = getattr(cfg, section)
    types = _section_types(type(part))
    kwargs = {f.name: getattr(part, f.name) for f in dataclasses.fields(part)}
    for name, value in values.items():
        if name not in types:
            raise ConfigError(f"unknown key {name!r} in [{section}]; known: {sorted(types)}")
        kwargs[name] = _coerce(section, name, value, types[name])
    try:
        setattr(cfg, section, type(part)(**kwargs))  # re-run __post_init__ checks
    except ValueError as e:
        raise ConfigError(f"[{section}]: {e}") from None


def load_toml(path: str, cfg: OnboardConfig | None = None) -> OnboardConfig:
    cfg = cfg or OnboardConfig()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read config {path!r}: {e}") from None
    for section, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: top-level key {section!r} must be a [section]")
        _apply(cfg, section, values)
    return cfg


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        allow_abbrev=False, prog="onboard.run",
        description="Run the robot's control loop: policy or controller at a fixed rate, safety, streaming to the learner.",
    )
    p.add_argument("--config", default="", help="TOML file with [run] [link] [safety] [policy] [learner] sections")
    defaults = OnboardConfig()
    for section in SECTIONS:
        part = getattr(defaults, section)
        helps = field_help(type(part))
        group = p.add_argument_group(section)
        for f in dataclasses.fields(part):
            text = helps.get(f.name) or f.name.replace("_", " ")
            group.add_argument(f"--{section}.{f.name}", dest=f"{section}.{f.name}", default=None, metavar="V",
                               help=f"{text} (default: {getattr(part, f.name)!r})".replace("%", "%%"))  # argparse %-formats help
    return p


def config_from_args(argv: list[str] | None = None) -> OnboardConfig:
    args = build_parser().parse_args(argv)
    cfg = load_toml(args.config) if args.config else OnboardConfig()
    overrides: dict[str, dict[str, Any]] = {}
    for key, value in vars(args).items():
        if "." in key and value is not None:
            section, name = key.split(".", 1)
            overrides.setdefault(section, {})[name] = value
    for section, values in overrides.items():
        _apply(cfg, section, values)
    return cfg
