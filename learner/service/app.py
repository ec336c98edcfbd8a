"""The service assembled: store, ingest, ROUTER server, trainer, status; start and stop.

Start order matters for exactly-once: the store is opened (damage set aside) before the socket
is bound, and the stored rows within the ingest bounds are fed to the real buffer before training
starts. Stop order: trainer (writes its checkpoint), then the server (final fsync), then the store,
then the last status row. A thread that dies stops the service and `failed` names it, so
`serve.py` exits non-zero and a supervisor restarts it.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

from learner.service import wire
from learner.service.config import ServeConfig
from learner.service.evidence import RobotEvidence
from learner.service.ingest import Bounds, Ingest, RealFeed
from learner.service.publisher import Publisher
from learner.service.server import LearnerServer, LinkConfig
from learner.service.sessions import HelloPolicy
from learner.service.status import RobotReturns, StatusBoard
from learner.service.store import RealStore, StoreError
from learner.service.tasks import task_info

log = logging.getLogger(__name__)


def check_datasets(paths: list[str]) -> None:
    """A missing offline dataset is a configuration error, said before anything starts."""
    for p in paths:
        if p.startswith("minari:"):  # a Minari dataset: DatasetError (a ValueError) when it is not there
            from sim_models.minari_io import dataset_folder

            dataset_folder(p[len("minari:"):])
            continue
        if not Path(p).is_file():
            raise FileNotFoundError(f"offline dataset {p} not found: fix `datasets` in the config "
                                    "(or --datasets), or drop it to train on streamed rows only")


def load_datasets(paths: list[str]) -> list:
    from sim_models.datasets import load_dataset

    check_datasets(paths)
    out = []
    for p in paths:
        data, _meta = load_dataset(p)  # D4RL HDF5, or minari:<id or folder>
        log.info("offline dataset %s: %d rows", p, len(data["rewards"]))
        out.append(data)
    return out


class Service:
    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.stop_event = threading.Event()
        check_datasets(cfg.datasets)
        run = cfg.run_path
        run.mkdir(parents=True, exist_ok=True)
        self.info = task_info(cfg.task)
        self.store = RealStore(run / "store", cfg.segment_bytes, cfg.fsync)
        report = self.store.open()
        log.info("store: %d rows in %d records (%d segments); %d damaged bytes set aside, %d "
                 "rows recorded lost earlier, %d holes pending", report.rows, report.records,
                 report.segments, report.damaged_bytes, report.lost_rows, len(report.holes))
        self.bounds = Bounds(cfg.max_abs_obs, cfg.max_abs_rew, cfg.max_abs_act)
        self.failed = ""  # name of a thread that died
        self.feed = RealFeed()
        self.returns = RobotReturns(run / "episodes.jsonl")
        self.publisher = Publisher()
        self.trainer = None
        if cfg.train:
            from learner.service.trainer import Trainer  # torch: only when training

            self.trainer = Trainer(cfg, self.publisher, self.feed, load_datasets(cfg.datasets))
            refused = 0
            for batch in self.store.iter_batches():  # streamed rows from earlier runs
                cols, bad = self.bounds.filter(batch.columns)
                refused += bad
                if len(cols["rew"]):
                    self.feed.put(cols)
            if refused:
                log.warning("store: %d stored rows exceed the ingest bounds; not trained on",
                            refused)

        self.latency = None
        if cfg.train:  # the robots' measured latency against the simulator's (learner/latency.py)
            from learner.latency import LatencyWatch
            from sim_models.profiles import load_profile
            from task_contract.history import ObsLayout

            try:
                self.latency = LatencyWatch(ObsLayout.of(cfg.task).raw_dim,
                                            load_profile(cfg.sim_profile).latency_steps)
            except (KeyError, ValueError) as exc:  # a task or profile without a latency to compare
                log.info("no latency check of the robots' data: %s", exc)

        def sink(robot: str, stream: str, cols) -> None:
            if self.trainer is not None:
                self.feed.put(cols)
            self.returns.add(robot, stream, cols)
            if self.latency is not None:
                self.latency.add(f"{robot}/{stream}", cols)

        self.ingest = Ingest(self.store, self.info.obs_dim, self.info.act_dim, sink=sink,
                             bounds=self.bounds)
        link = LinkConfig(bind=cfg.bind, plaintext=cfg.plaintext,
                          server_secret_key=cfg.server_secret_key,
                          authorized_keys_dir=cfg.authorized_keys_dir,
                          max_message_bytes=cfg.max_message_bytes,
                          heartbeat_timeout_s=cfg.heartbeat_timeout_s,
                          policy_resend_s=cfg.policy_resend_s,
                          robot_id_from_key=cfg.robot_id_from_key)
        self.server = LearnerServer(link, self.store, HelloPolicy(wire.schema_hash(),
                                                                  self.info.obs_dim,
                                                                  self.info.act_dim, cfg.task),
                                    self.publisher, self.ingest,
                                    evidence=RobotEvidence(run))  # robots' trials, deployable policy
        self.status = StatusBoard(run, self.server, self.trainer, self.returns, cfg.status_every_s,
                                  tensorboard=cfg.tensorboard, latency=self.latency)
        self._threads: list[threading.Thread] = []
        self._trainer_stop = threading.Event()

    def install_signal_handlers(self) -> None:
        def handler(signum, _frame):
            log.info("signal %s: shutting down", signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def start(self) -> str:
        endpoint = self.server.start_socket()
        self._spawn("server", self.server.run)
        if self.trainer is not None:
            self._spawn("trainer", lambda: self.trainer.run(self._trainer_stop))
        self._spawn("status", lambda: self.status.run(self.stop_event))
        return endpoint

    def _spawn(self, name: str, target) -> None:
        def guarded():
            try:
                target()
            except BaseException:  # a dead thread stops the whole service, loudly
                log.exception("%s thread failed; stopping the service (exit code 1: a "
                              "supervisor should restart it)", name)
                self.failed = self.failed or name
                self.stop_event.set()

        t = threading.Thread(target=guarded, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def wait(self) -> None:
        t0 = time.monotonic()
        while not self.stop_event.wait(0.5):
            if self.cfg.max_seconds and time.monotonic() - t0 >= self.cfg.max_seconds:
                log.info("max_seconds reached")
                break

    def shutdown(self) -> None:
        self.stop_event.set()
        self._trainer_stop.set()
        for t in self._threads:
            if t.name == "trainer":
                t.join(60)
        self.server.stop()
        for t in self._threads:
            t.join(10)
        self.server.close()
        try:
            self.store.close()
        except StoreError as exc:  # nothing unsynced was acknowledged; robots resend it
            log.error("store: final sync failed: %s", exc)
        try:
            self.status.tick()
        finally:
            self.status.close()
            self.returns.close()
        log.info("service stopped")
