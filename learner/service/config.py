"""The service's configuration: one dataclass, three layers (defaults < TOML file < CLI flags).

Every field carries its help text in `metadata["help"]`; `add_arguments` turns the fields into
`--flags` (underscores become dashes), so `--help` always matches the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse


from protocol.endpoints import is_loopback as _is_loopback
from protocol.config_cli import ConfigError, add_dataclass_arguments, help_field, load_config  # noqa: F401

_f = help_field
add_arguments = add_dataclass_arguments  # the service's, demo's and replay's name for it


@dataclass
class ServeConfig:
    """Everything `learner/serve.py` needs. Units are in the names."""

    # --- link
    bind: str = _f("tcp://127.0.0.1:5555", "ZMQ endpoint of the learner's ROUTER socket")
    plaintext: bool = _f(False, "disable CURVE (allowed only when `bind` is a loopback address)")
    server_secret_key: str = _f("keys/learner.key_secret", "the learner's CURVE secret key file")
    authorized_keys_dir: str = _f("keys/authorized", "directory of authorised robots' public keys")
    robot_id_from_key: bool = _f(True, "a robot's HELLO id must be its key file's stem (robots "
                                       "cannot write each other's streams)")
    max_message_bytes: int = _f(16 * 1024 * 1024, "larger inbound messages are dropped by ZMQ")
    heartbeat_timeout_s: float = _f(3.0, "a robot silent this long is marked 'lost'")
    policy_resend_s: float = _f(2.0, "resend POLICY to a robot still reporting an older version")
    # --- ingest
    segment_bytes: int = _f(64 * 1024 * 1024, "size at which the store starts a new segment file")
    fsync: bool = _f(True, "fsync the store before ACKing (turn off only for benchmarks)")
    max_abs_obs: float = _f(1e4, "rows with a larger |observation| value are stored but never "
                                 "trained on (finite garbage: sensor glitch, bad robot)")
    max_abs_rew: float = _f(1e5, "... the same for |reward|")
    max_abs_act: float = _f(1.001, "... the same for |action| (policy units, nominally [-1, 1])")
    # --- task and data
    task: str = _f("stand_still", "task name or id with options, e.g. stand_still:action_history=2 "
                                  "(obs/act spec and task id checked at HELLO)")
    task_options: str = _f("", "observation options of the task, e.g. action_history=2,obs_history=1 "
                               "(docs/task_contract.md); the robot's run.task_options must match")
    datasets: list = _f([], "offline real datasets (D4RL HDF5, or minari:<id> under $MINARI_DATASETS_PATH) that "
                            "seed the real buffer")
    run_dir: str = _f("runs/serve", "store, checkpoints, policies, metrics and plots go here")
    # --- training
    train: bool = _f(True, "run the background trainer (off: ingest-only service)")
    algorithm: str = _f("h2o", "algorithm name for learner.algorithms.make (h2o, sac, ...)")
    device: str = _f("cpu", "torch device for training (cpu, cuda, cuda:0)")
    hidden: str = _f("256-256", "policy/critic hidden sizes, '-'-separated")
    disc_hidden: str = _f("256-256", "classifier hidden sizes (h2o, darc)")
    obs_normalisation: bool = _f(True, "networks read the observation centred on the robot's operating point "
                                 "and scaled per field (learner/task_defaults.py; paper tasks only)")
    obs_centre_rows: int = _f(2000, "the centre is the mean of the robot's first this-many streamed rows, "
                              "whoever drove them (its stand controller swings about its balance point); "
                              "training waits for them. 0: the mean of the real buffer when training starts")
    disc_batch: int = _f(256, "rows per source for each classifier update (h2o, darc)")
    real_capacity: int = _f(1_000_000, "streamed real rows kept beside the offline data (FIFO)")
    batch_real: int = _f(128, "real rows per update")
    batch_sim: int = _f(128, "sim rows per update")
    sim_profile: str = _f("nominal", "dynamics profile of the simulator the learner trusts")
    sim_workers: int = _f(1, "sim rollout worker processes")
    sim_ray_address: str = _f("", "run the sim workers as Ray actors on this cluster (host:port or auto; "
                                  "docs/cluster.md); empty: local processes")
    sim_steps_per_update: float = _f(1.0, "sim env steps collected per gradient update")
    sim_capacity: int = _f(1_000_000, "FIFO capacity of the sim buffer")
    warmup_sim_steps: int = _f(1000, "sim steps collected before the first update")
    min_real_rows: int = _f(256, "real rows needed before the first update")
    torch_threads: int = _f(1, "torch intra-op threads for the trainer")
    max_updates: int = _f(0, "stop after this many updates (0 = no limit)")
    max_seconds: float = _f(0.0, "stop after this long (0 = no limit)")
    seed: int = _f(0, "random seed")
    algo: dict = _f({}, "extra algorithm config (TOML table [algo]), passed to the algorithm")
    # --- publishing and checkpoints
    export_every_updates: int = _f(1000, "export + publish a policy every K updates")
    export_every_s: float = _f(0.0, "... or every T seconds (0 = off), whichever comes first")
    publish_gate_steps: int = _f(0, "publish only a policy that keeps the nominal sim robot up "
                                    "this many steps, deterministic (0 = publish every export)")
    publish_gate_improve: bool = _f(False, "publish only a policy whose gate return (the learner's simulator, "
                                           "fixed seeds) beats the last published one's")
    publish_gate_episodes: int = _f(1, "deterministic episodes the publish gate runs")
    pretrain_updates: int = _f(0, "publish nothing before this many updates (offline real data + "
                                  "sim pretraining); the first export comes right at this count")
    checkpoint_every_s: float = _f(60.0, "atomic checkpoint period (0 = only at shutdown)")
    resume: bool = _f(True, "resume from run_dir's checkpoint if one is there")
    # --- status
    status_every_s: float = _f(5.0, "status line and metrics row period")
    tensorboard: bool = _f(False, "also write TensorBoard events into <run_dir>/tb/ every status period (needs the "
                                  "tensorboard package: the learner extra)")
    log_level: str = _f("INFO", "logging level")

    def validate(self) -> "ServeConfig":
        """Check ranges and the plaintext rule; fill derived values. Raises ConfigError."""
        self._fold_task_options()
        url = urlparse(self.bind)
        if url.scheme not in ("tcp", "ipc", "inproc"):
            raise ConfigError(f"bind: unsupported endpoint {self.bind!r}")
        if self.plaintext and not _is_loopback(self.bind):
            raise ConfigError(f"plaintext: refused on non-loopback endpoint {self.bind!r} "
                              "(CURVE is required off this machine)")
        if self.pretrain_updates < 0:
            raise ConfigError(f"pretrain_updates: must be >= 0, got {self.pretrain_updates}")
        for name in ("publish_gate_episodes", "batch_real", "batch_sim", "sim_workers", "disc_batch", "real_capacity", "export_every_updates",
                     "max_message_bytes", "segment_bytes", "torch_threads"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("heartbeat_timeout_s", "status_every_s", "max_abs_obs", "max_abs_rew",
                     "max_abs_act"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.sim_steps_per_update < 0:
            raise ConfigError("sim_steps_per_update: must be >= 0")
        if isinstance(self.datasets, str):
            self.datasets = [self.datasets]
        from learner.device import DeviceError, check_device

        try:
            check_device(self.device)
        except DeviceError as exc:
            raise ConfigError(str(exc)) from None
        return self

    def _fold_task_options(self) -> None:
        """`task` becomes the canonical task id (options included): what HELLO compares."""
        if self.task.startswith("gym:") or self.task.startswith("h2o/"):
            return
        from task_contract.history import TaskOptionsError, task_id

        try:
            self.task = task_id(self.task, self.task_options)
        except TaskOptionsError as exc:
            raise ConfigError(f"task_options: {exc}") from None
        self.task_options = ""

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir)
