"""The onboard program's configuration: defaults in code, a TOML file, then CLI overrides.

One dataclass per part (the loop, the serial link, safety, policy validation, the learner link,
trials, the operator's channel), gathered in `OnboardConfig` and loaded by the project's one
config system (`protocol/config_cli.py`): each field's help lives in its metadata, TOML sections
are the part names ([run], [link], [safety], ...), CLI options are `--<part>.<field-name>`
(`--run.rate-hz 100`; `--run.rate_hz` is accepted too), booleans `--run.lockstep` /
`--no-run.lockstep` (or `--run.lockstep true|false`).
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.link import SerialLinkConfig
from onboard.control import ControlConfig
from onboard.policy import ValidationConfig
from onboard.safety import SafetyConfig
from onboard.streamer import StreamerConfig
from onboard.trials import TrialConfig
from protocol.config_cli import (ConfigError, build, field_help, help_field, load_cli,  # noqa: F401 - API
                                 make_parser, read_toml)


@dataclass
class RunConfig:
    """The loop itself and the program around it."""

    task: str = help_field("stand_still", "task name (task_contract: observation, action mapping, reward, episodes)")
    task_options: str = help_field("",
                                   "observation options, e.g. \"action_history=2,obs_history=1\" (the learner must use "
                                   "the same)")
    rate_hz: float = help_field(0.0, "loop rate; 0: the task's control rate")
    lockstep: bool = help_field(False, "wait for each STATE (a lock-step virtual robot); no wall-clock pacing")
    explore: bool = help_field(False, "sample actions from the policy's Gaussian head (seeded)")
    seed: int = help_field(0, "seed of the exploration noise")
    controller_noise: float = help_field(0.0,
                                         "std of Gaussian noise on the controller's actions in its task episodes "
                                         "(informative data; 0: none)")
    policy_path: str = help_field("", "start-up ONNX policy (its hash in <path>.sha256); empty: controller only")
    stream: bool = help_field(True, "stream transitions to the learner")
    duration_s: float = help_field(0.0, "stop after this long; 0: run until SIGINT/SIGTERM")
    drain_s: float = help_field(1.0,
                                "at the stop, wait up to this long for the learner to ACK what is spooled (the rest "
                                "stays on disk)")
    stats_file: str = help_field("runs/onboard_stats.json", "JSON stats, rewritten atomically each status period")
    status_interval_s: float = help_field(1.0, "status line and stats file period")
    fifo_priority: int = help_field(0, "SCHED_FIFO priority for the loop thread; 0: do not ask")
    helper_priority: int = help_field(0,
                                      "SCHED_FIFO priority (below the loop's) for the helper threads; 0: do not ask")
    cpus: str = help_field("", "CPU affinity of the process, e.g. \"1\" or \"0,1\"; empty: do not ask")
    lock_memory: bool = help_field(False, "mlockall the process")
    spin_us: float = help_field(300.0, "spin this long before each deadline instead of sleeping")
    gc_freeze: bool = help_field(True, "move start-up objects out of the cyclic GC's reach (shorter collections)")
    loop_gc: bool = help_field(True, "young-generation GC in the loop's slack instead of automatic collections")
    gil_switch_interval_us: float = help_field(500.0,
                                               "Python's GIL hand-over interval (default 5000): bounds waits on other "
                                               "threads")
    virtual_robot: str = help_field("", "start an in-process virtual robot with this profile (demo; imports mujoco)")
    virtual_robot_respawn_s: float = help_field(0.0,
                                                "in-process virtual robot: put it back up after lying fallen this "
                                                "long (0: never)")
    log_level: str = help_field("INFO", "logging level")


@dataclass
class OnboardConfig:
    run: RunConfig = help_field(factory=RunConfig, help="the loop itself and the program around it")
    link: SerialLinkConfig = help_field(factory=SerialLinkConfig, help="the serial link to the motor firmware")
    safety: SafetyConfig = help_field(factory=SafetyConfig, help="the safety state machine")
    policy: ValidationConfig = help_field(factory=ValidationConfig, help="checks on every new policy")
    learner: StreamerConfig = help_field(factory=lambda: StreamerConfig(plaintext=True), help="the learner link")
    trials: TrialConfig = help_field(factory=TrialConfig, help="on-robot trials of new policy versions")
    control: ControlConfig = help_field(factory=ControlConfig, help="the operator's control channel")


SECTIONS: tuple[str, ...] = ("run", "link", "safety", "policy", "learner", "trials", "control")


def _check_sections(values: dict, where: str) -> None:
    for section, table in values.items():
        if section not in SECTIONS:
            raise ConfigError(f"{where}: unknown section [{section}]; known: {list(SECTIONS)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: top-level key {section!r} must be a [section]")


def load_toml(path: str, cfg: OnboardConfig | None = None) -> OnboardConfig:
    """`cfg` (or the defaults) updated by the TOML file at `path`."""
    values = read_toml(path)
    _check_sections(values, path)
    return build(OnboardConfig, values, cfg, where="")


def build_parser():
    return make_parser(OnboardConfig, "onboard.run",
                       "Run the robot's control loop: policy or controller at a fixed rate, safety, streaming "
                       "to the learner.",
                       config_help="TOML file with [run] [link] [safety] [policy] [learner] [trials] [control] "
                                   "sections (CLI flags override it)",
                       example="python onboard/run.py --run.virtual-robot moderate --run.lockstep "
                               "--learner.plaintext  (docs/onboard.md; configs/onboard.toml for a real robot)")


def config_from_args(argv: list[str] | None = None) -> OnboardConfig:
    """Defaults < --config TOML < flags (each layer checked: sections, keys, types)."""
    args = build_parser().parse_args(argv)
    base = load_toml(args.config) if args.config else None
    return load_cli(OnboardConfig, args, base)
