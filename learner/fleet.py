"""A fleet of virtual robots on one learner: `python -m learner.fleet --robots 4 --minutes 4`.

Why: a team with several robots connects them all to one learner; this starts that on one
machine so it can be watched, tested and measured. One `learner/serve.py` and N `onboard/run.py`
programs, each driving its own virtual robot (lock-step by default), each with

- its own CURVE key pair, made at run time (`learner.service.keys.ensure_demo_keys`; the robot id
  is the key's stem, so the learner refuses a robot writing another's streams),
- its own hidden dynamics profile (`--profiles moderate,severe` is cycled over the robots),
- its own run folder `RUN/robots/<id>/` (spool, stats file, log, operator control socket).

At the end (or on Ctrl-C) the robots are stopped first (each drains its spool to the learner for
up to `--drain-s`), then the learner; `RUN/fleet.md` and `RUN/fleet.json` then hold the per-robot
accounting: rows each robot recorded and had acknowledged, rows the learner's store holds of it,
whether every row is there exactly once, its final policy version, episodes and return; plots of
the learner's run are in `RUN/learner/plots/` (one series per robot).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from learner.demo import Children, _free_port, _wait_for
from protocol.config_cli import parse_cli
from learner.service.config import ConfigError, _f
from protocol.logs import setup_logging

log = logging.getLogger("learner.fleet")
ROOT = Path(__file__).resolve().parent.parent
MAX_IPC_PATH = 100  # a Unix socket path longer than ~107 bytes cannot be bound


@dataclass
class FleetConfig:
    """What the fleet runs; every field is a --flag."""

    robots: int = _f(4, "how many robot programs (each with its own virtual robot, key and folder)")
    minutes: float = _f(4.0, "how long the fleet runs")
    task: str = _f("stand_still", "task name (or id with options)")
    task_options: str = _f("action_history=2", "observation options for the robots and the learner "
                                               "(docs/task_contract.md); empty: the 4-D observation")
    profiles: str = _f("moderate", "hidden dynamics profiles, comma-separated, cycled over the robots "
                                   "(robot k gets profiles[k % len])")
    dataset: str = _f("", "offline real dataset (D4RL HDF5) for the learner; empty: none (the robots' "
                          "streamed rows only)")
    run_dir: str = _f("", "output folder; empty: runs/fleet-<date>-<time>")
    serve_config: str = _f("configs/serve_demo.toml", "the learner's TOML config")
    serve_args: str = _f("", "extra learner/serve.py flags, one shell-quoted string")
    robot_config: str = _f("configs/onboard_virtual.toml", "every robot's TOML config (the fleet "
                                                           "overrides id, keys, endpoint and folders)")
    robot_args: str = _f("", "extra onboard/run.py flags for every robot, one shell-quoted string")
    lockstep: bool = _f(True, "virtual robots step once per command (no real-time pacing)")
    respawn_s: float = _f(1.0, "virtual robot: picked up after lying fallen this long (0: never)")
    port: int = _f(0, "learner port on 127.0.0.1; 0: a free one")
    seed: int = _f(0, "robot k explores with seed + k")
    drain_s: float = _f(10.0, "at the stop, each robot waits up to this long for its spool to be ACKed")
    status_every_s: float = _f(15.0, "progress line period")

    def validate(self) -> "FleetConfig":
        if self.robots < 1:
            raise ConfigError("robots: must be >= 1")
        if self.minutes <= 0:
            raise ConfigError("minutes: must be > 0")
        if not [p for p in self.profiles.split(",") if p.strip()]:
            raise ConfigError("profiles: name at least one profile")
        from task_contract.history import TaskOptionsError, task_id

        try:
            self.task, self.task_options = task_id(self.task, self.task_options), ""
        except TaskOptionsError as exc:
            raise ConfigError(f"task_options: {exc}") from None
        return self


class Fleet:
    """One learner and N robot programs as child processes; see the module docstring.

    Methods for a person (`run`) and for tests and the benchmark (start, kill or restart one
    robot, read the learner's latest status, account for every robot's rows after the stop)."""

    def __init__(self, cfg: FleetConfig, extra_keys: tuple[str, ...] = ()) -> None:
        from learner.service.keys import ensure_demo_keys

        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir or time.strftime("runs/fleet-%Y%m%d-%H%M%S")).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.robot_ids = [f"robot{k}" for k in range(cfg.robots)]
        profiles = [p.strip() for p in cfg.profiles.split(",") if p.strip()]
        self.profiles = {rid: profiles[k % len(profiles)] for k, rid in enumerate(self.robot_ids)}
        # generated now, never committed; extra_keys: authorised ids that are not fleet robots
        self.keys = ensure_demo_keys(self.run_dir / "keys", [*self.robot_ids, *extra_keys])
        self.endpoint = f"tcp://127.0.0.1:{cfg.port or _free_port()}"
        self.children = Children()
        self.learner_dir = self.run_dir / "learner"
        self.robots: dict[str, subprocess.Popen] = {}
        self.killed: set[str] = set()  # robots stopped on purpose mid-run (not a failure)
        self.started = time.time()

    # ------------------------------------------------------------------ processes
    def robot_dir(self, rid: str) -> Path:
        return self.run_dir / "robots" / rid

    def start_learner(self, timeout_s: float = 120.0) -> None:
        cmd = [sys.executable, str(ROOT / "learner" / "serve.py"), "--config", self.cfg.serve_config,
               "--bind", self.endpoint, "--run-dir", str(self.learner_dir), "--task", self.cfg.task,
               "--server-secret-key", str(self.keys["learner_secret"]),
               "--authorized-keys-dir", str(self.keys["authorized"]),
               *(["--datasets", self.cfg.dataset] if self.cfg.dataset else []),
               *shlex.split(self.cfg.serve_args)]
        proc = self.children.start("learner", cmd, self.run_dir / "learner.log")
        _wait_for(self.run_dir / "learner.log", "serving on", proc, timeout_s)

    def start_robot(self, rid: str) -> subprocess.Popen:
        """Start (or restart: same key, spool and folder) one robot program."""
        k = self.robot_ids.index(rid)
        folder = self.robot_dir(rid)
        folder.mkdir(parents=True, exist_ok=True)
        control = f"ipc://{folder / 'control.sock'}"
        if len(control) > MAX_IPC_PATH:
            log.warning("%s: run folder path too long for a control socket; its control channel is off", rid)
            control = ""
        cmd = [sys.executable, str(ROOT / "onboard" / "run.py"),
               *(["--config", self.cfg.robot_config] if self.cfg.robot_config else []),
               "--run.task", self.cfg.task, "--run.virtual_robot", self.profiles[rid],
               "--run.virtual_robot_respawn_s", str(self.cfg.respawn_s),
               "--run.lockstep", "true" if self.cfg.lockstep else "false",
               "--run.seed", str(self.cfg.seed + k), "--run.drain_s", str(self.cfg.drain_s),
               "--run.stats_file", str(folder / "onboard_stats.json"), "--run.status_interval_s", "1",
               "--learner.endpoint", self.endpoint, "--learner.robot_id", rid, "--learner.plaintext", "false",
               "--learner.client_secret_key_file", str(self.keys[f"{rid}_secret"]),
               "--learner.server_public_key_file", str(self.keys["learner_public"]),
               "--learner.spool_dir", str(folder / "spool"), "--control.endpoint", control,
               *shlex.split(self.cfg.robot_args)]
        name = rid if rid not in self.robots else f"{rid}-restart{sum(n.startswith(rid) for n, _ in self.children.procs)}"
        proc = self.children.start(name, cmd, folder / f"{name}.log")
        self.robots[rid] = proc
        self.killed.discard(rid)
        return proc

    def start(self) -> None:
        self.start_learner()
        for rid in self.robot_ids:
            self.start_robot(rid)

    def kill_robot(self, rid: str, sig: int = signal.SIGKILL) -> None:
        """Stop one robot abruptly (a crash, a pulled plug): the others must not notice."""
        self.killed.add(rid)
        proc = self.robots[rid]
        proc.send_signal(sig)
        proc.wait(30)
        log.info("%s killed with %s (exit %s)", rid, signal.Signals(sig).name, proc.returncode)

    def check_alive(self) -> None:
        """Raise if a child that should be running has exited."""
        for name, p in self.children.procs:
            rid = name.split("-restart")[0]
            if p.poll() is not None and not (rid in self.robots and (rid in self.killed or self.robots[rid] is not p)):
                raise RuntimeError(f"{name} exited early with {p.returncode}; see its log in {self.run_dir}")

    def stop(self) -> None:
        """Robots first, all at once (each drains its spool while the learner still ACKs; one
        after the other, the robots not yet stopped kept recording while the first drained, and
        16 robots on a loaded machine took minutes), then the learner."""
        wait_s = max(30.0, self.cfg.drain_s + 20.0)
        robots = [(n, p) for n, p in self.children.procs if n != "learner" and p.poll() is None]
        for _, p in robots:
            p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + wait_s
        for name, p in robots:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s", name, wait_s)
        self.children.stop_all(timeout_s=wait_s)  # whatever is left (the learner), harder if need be

    # ------------------------------------------------------------------ what happened
    def status(self) -> dict[str, Any]:
        """The learner's latest status row (metrics.jsonl), {} before the first."""
        from learner.service.status import read_jsonl

        rows = read_jsonl(self.learner_dir / "metrics.jsonl")
        return rows[-1] if rows else {}

    def robot_stats(self, rid: str) -> dict[str, Any]:
        path = self.robot_dir(rid) / "onboard_stats.json"
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def accounting(self) -> dict[str, dict[str, Any]]:
        """Per robot, after the stop: what it recorded and had ACKed (its stats file) against
        what the learner's store holds of it (each stream's rows: present once, from 0, no gap)."""
        from learner.service.store import RealStore

        store = RealStore(self.learner_dir / "store")
        store.open()
        seqs: dict[tuple[str, str], list] = {}
        try:
            for b in store.iter_batches():
                seqs.setdefault((b.robot, b.stream), []).append((b.first_seq, b.n))
        finally:
            store.close()
        out: dict[str, dict[str, Any]] = {}
        for rid in self.robot_ids:
            st = self.robot_stats(rid)
            learner = st.get("learner", {})
            streams = {}
            for (robot, stream), parts in seqs.items():
                if robot != rid:
                    continue
                parts.sort()
                rows = sum(n for _, n in parts)
                end = max(a + n for a, n in parts)
                covered = sorted(s for a, n in parts for s in range(a, a + n))
                streams[stream] = {"rows": rows, "exactly_once": covered == list(range(end))}
            own = streams.get(learner.get("stream_id", ""), {"rows": 0, "exactly_once": True})
            recorded = int(st.get("transitions", {}).get("recorded", 0))
            out[rid] = {
                "profile": self.profiles[rid], "stream_id": learner.get("stream_id", ""),
                "recorded": recorded, "acked": int(learner.get("rows_acked", 0)),
                "spool_rows": int(learner.get("spool_rows", 0)),
                "stored": own["rows"], "stored_all_streams": sum(s["rows"] for s in streams.values()),
                "streams": streams,
                "exactly_once": all(s["exactly_once"] for s in streams.values()) and own["rows"] == recorded,
                "policy_version": st.get("policy_version", -1),
                "reports_pending": int(learner.get("reports_pending", 0)),
                "killed_mid_run": any(n.startswith(f"{rid}-restart") for n, _ in self.children.procs),
            }
        return out

    def write_report(self) -> Path:
        """fleet.json + fleet.md (per-robot table) and the learner's plots."""
        from learner.service.status import plot_run, read_jsonl

        acc = self.accounting()
        episodes = read_jsonl(self.learner_dir / "episodes.jsonl")
        last = self.status()
        for rid, a in acc.items():
            pol = [e["return"] for e in episodes if e["robot"] == rid and e["policy_version"] >= 0]
            a["policy_episodes"] = len(pol)
            a["policy_mean_return"] = float(sum(pol) / len(pol)) if pol else math.nan
            a["learner_row"] = {k: v for k, v in last.get("robots", {}).get(rid, {}).items()
                                if k in ("link", "rows", "stored_rows", "duplicates", "rejected", "trial_reports")}
        try:
            plots = [str(p.relative_to(self.run_dir)) for p in plot_run(self.learner_dir)]
        except Exception as exc:  # noqa: BLE001 - the table is worth having without the plots
            log.warning("plots not written: %s", exc)
            plots = []
        from protocol import strict_json

        summary = {"config": asdict(self.cfg), "endpoint": self.endpoint, "started_unix": self.started,
                   "minutes_run": (time.time() - self.started) / 60, "learner_last_status": last,
                   "published_version": last.get("policy_version", -1), "robots": acc, "plots": plots}
        (self.run_dir / "fleet.json").write_text(strict_json.dumps(summary, indent=1) + "\n")
        lines = [f"# Fleet run: {len(acc)} robots on one learner", "",
                 f"{summary['minutes_run']:.1f} min, {last.get('updates', 0)} updates, latest published "
                 f"policy v{summary['published_version']}. Rows: recorded and acknowledged on each robot, "
                 "held by the learner's store (this robot's current stream / all its streams, a restarted "
                 "robot has two).", "",
                 "| robot | profile | recorded | acked | in spool | stored (stream / all) | exactly once | "
                 "version | policy episodes | mean return |", "|---|---|---|---|---|---|---|---|---|---|"]
        for rid, a in acc.items():
            mean = "-" if math.isnan(a["policy_mean_return"]) else f"{a['policy_mean_return']:.0f}"
            lines.append(f"| {rid}{' (killed, restarted)' if a['killed_mid_run'] else ''} | {a['profile']} | "
                         f"{a['recorded']} | {a['acked']} | {a['spool_rows']} | {a['stored']} / "
                         f"{a['stored_all_streams']} | {'yes' if a['exactly_once'] else 'NO'} | "
                         f"v{a['policy_version']} | {a['policy_episodes']} | {mean} |")
        lines += ["", *[f"![{Path(p).stem}]({p})" for p in plots], ""]
        (self.run_dir / "fleet.md").write_text("\n".join(lines))
        return self.run_dir / "fleet.md"

    # ------------------------------------------------------------------ for a person
    def run(self) -> Path:
        stop = {"flag": False}

        def on_signal(signum, _frame):
            stop["flag"] = True

        old = signal.signal(signal.SIGINT, on_signal), signal.signal(signal.SIGTERM, on_signal)
        failure: Exception | None = None
        try:
            self.start()
            deadline = time.monotonic() + self.cfg.minutes * 60
            next_status = time.monotonic() + self.cfg.status_every_s
            while time.monotonic() < deadline and not stop["flag"]:
                time.sleep(0.5)
                self.check_alive()
                if time.monotonic() >= next_status:
                    next_status += self.cfg.status_every_s
                    row = self.status()
                    if row:
                        robots = ", ".join(f"{rid} v{r['policy_version']} {r['link']} {r['rows']} rows"
                                           for rid, r in sorted(row["robots"].items()))
                        log.info("[%.1f min] updates %d, published v%d | %s", (time.time() - self.started) / 60,
                                 row["updates"], row["policy_version"], robots or "no robots yet")
        except (RuntimeError, TimeoutError) as exc:
            failure = exc
        finally:
            signal.signal(signal.SIGINT, old[0])
            signal.signal(signal.SIGTERM, old[1])
            self.stop()
        report = self.write_report()
        if failure is not None:
            raise RuntimeError(f"{failure} (partial report: {report})")
        return report


def main(argv: list[str] | None = None) -> int:
    cfg = parse_cli(FleetConfig, "python -m learner.fleet", __doc__, argv,
                    example="python -m learner.fleet --robots 4 --minutes 4 --profiles moderate,severe")
    if cfg is None:
        return 2
    setup_logging("INFO")
    os.chdir(ROOT)
    try:
        report = Fleet(cfg).run()
    except (RuntimeError, TimeoutError) as exc:
        log.error("fleet failed: %s", exc)
        return 1
    log.info("report: %s", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
