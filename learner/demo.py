"""The main job on one machine: a robot learns with H2O while it runs.

    python -m learner.demo --minutes 4

What it does: generates CURVE keys for this run; collects an offline "real" dataset on the hidden
profile if none is there (sim_models collect CLI); starts `learner/serve.py` (H2O against the
nominal MuJoCo model) and `onboard/run.py` driving a virtual robot with the hidden profile; lets
them run; then stops both cleanly (also on Ctrl-C) and writes a report (markdown + PNG plots:
robot return vs time, policy versions, loop timing) into the run folder and prints where.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from learner.service.config import ConfigError, _f, add_arguments, load_config  # noqa: E402

log = logging.getLogger("learner.demo")
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class DemoConfig:
    """What the demo runs; every field is a --flag."""

    minutes: float = _f(4.0, "how long robot and learner run together")
    task: str = _f("stand_still", "task name (or id with options, stand_still:action_history=2)")
    task_options: str = _f("", "observation options for robot, learner and offline data, e.g. "
                               "action_history=2 (docs/task_contract.md); empty: the paper's observation")
    profile: str = _f("moderate", "the virtual robot's hidden 'real' dynamics profile")
    dataset: str = _f("", "offline real dataset (D4RL HDF5); empty: data/demo_<task>_<profile>.hdf5")
    dataset_steps: int = _f(10000, "transitions to collect when the dataset is missing")
    behaviour: str = _f("medium", "behaviour policy of the collected dataset")
    run_dir: str = _f("", "output folder; empty: runs/demo-<date>-<time>")
    serve_config: str = _f("configs/serve_demo.toml", "the learner's TOML config")
    algorithm: str = _f("", "override the learner's algorithm (h2o, sac, cql, darc, darc_plus)")
    lockstep: bool = _f(True, "virtual robot steps once per command (no real-time pacing: a busy "
                              "laptop cannot make the robot miss deadlines)")
    port: int = _f(0, "learner port on 127.0.0.1; 0: a free one")
    robot_config: str = _f("configs/onboard_virtual.toml", "the robot's TOML config (catch, retry "
                           "and fall recovery on; the demo's flags override its keys and endpoint)")
    respawn_s: float = _f(1.0, "virtual robot: picked up after lying fallen this long (0: never)")
    damping_recover_s: float = _f(0.0, "robot: DAMPING -> PASSIVE after this long (0: the "
                                       "robot config's recovery decides)")
    status_every_s: float = _f(15.0, "progress line period")

    def validate(self) -> "DemoConfig":
        if self.minutes <= 0:
            raise ConfigError("minutes: must be > 0")
        from task_contract.history import TaskOptionsError, task_id

        try:  # one canonical task id for the dataset, the learner and the robot
            self.task, self.task_options = task_id(self.task, self.task_options), ""
        except TaskOptionsError as exc:
            raise ConfigError(f"task_options: {exc}") from None
        return self


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_dataset(cfg: DemoConfig) -> Path:
    # Offline data in the run's observation layout (a task id with options gets its own file).
    path = Path(cfg.dataset or f"data/demo_{cfg.task.replace(':', '+').replace(',', '+')}_{cfg.profile}.hdf5")
    if path.exists():
        log.info("offline dataset: %s", path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("collecting %d offline transitions on the hidden '%s' profile -> %s",
             cfg.dataset_steps, cfg.profile, path)
    subprocess.run([sys.executable, "-m", "sim_models.collect", "--task", cfg.task,
                    "--profile", cfg.profile, "--behaviour", cfg.behaviour,
                    "--steps", str(cfg.dataset_steps), "--out", str(path)],
                   cwd=ROOT, check=True)
    return path


class Children:
    """The demo's child processes; stopped in reverse start order with SIGINT, then harder."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], log_path: Path) -> subprocess.Popen:
        fh = open(log_path, "w")
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"},
                             start_new_session=True)  # Ctrl-C reaches the demo only
        self.procs.append((name, p))
        log.info("started %s (pid %d), log %s", name, p.pid, log_path)
        return p

    def stop_all(self, timeout_s: float = 30.0) -> None:
        for name, p in reversed(self.procs):
            if p.poll() is not None:
                continue
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s: SIGTERM", name, timeout_s)
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
            log.info("%s exited with %s", name, p.returncode)


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout_s: float,
              stop: dict | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not (stop and stop["flag"]):
        if path.exists() and text in path.read_text():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{path.name}: process exited {proc.returncode}; see {path}")
        time.sleep(0.2)
    if stop and stop["flag"]:
        return
    raise TimeoutError(f"no '{text}' in {path} within {timeout_s} s")


def write_report(run_dir: Path, cfg: DemoConfig, started: float, interrupted: bool) -> Path:
    from learner.service.status import plot_run, read_jsonl

    learner_dir = run_dir / "learner"
    plots = plot_run(learner_dir)
    metrics = read_jsonl(learner_dir / "metrics.jsonl")
    episodes = read_jsonl(learner_dir / "episodes.jsonl")
    robot = {}
    stats_path = run_dir / "onboard_stats.json"
    if stats_path.exists():
        robot = json.loads(stats_path.read_text())
    last = metrics[-1] if metrics else {}
    by_version: dict[int, list[float]] = {}
    for e in episodes:
        by_version.setdefault(e["policy_version"], []).append(e["return"])
    gate = {r["version"]: r.get("gate_return") for r in read_jsonl(learner_dir / "published.jsonl")}
    counts = robot.get("safety_counts", {})
    lines = [
        f"# Demo run {run_dir.name}", "",
        f"- task `{cfg.task}`, hidden robot profile `{cfg.profile}`, learner config "
        f"`{cfg.serve_config}`{', algorithm ' + cfg.algorithm if cfg.algorithm else ''}",
        f"- ran {(time.time() - started) / 60:.1f} min{' (interrupted)' if interrupted else ''}, "
        f"{'lock-step' if cfg.lockstep else 'real-time'} virtual robot",
        f"- learner: {last.get('updates', 0)} updates ({last.get('updates_per_s', 0):.1f}/s at the "
        f"end), {last.get('policy_version', 0)} policies published, real buffer "
        f"{last.get('real_rows', 0)} rows ({last.get('real_offline_rows', 0)} offline), sim buffer "
        f"{last.get('sim_rows', 0)}",
        f"- robot: {robot.get('transitions', {}).get('recorded', 0)} transitions recorded, "
        f"{robot.get('learner', {}).get('rows_acked', 0)} acknowledged by the learner "
        f"(store: {last.get('store_rows', 0)}); active policy v{robot.get('policy_version', -1)}, "
        f"{robot.get('policies', {}).get('accepted', 0)} accepted, rejected "
        f"{robot.get('policies', {}).get('rejected', {})}; final mode {robot.get('mode', '?')}",
        (f"- robot loop: lock-step, {robot.get('ticks', 0)} ticks; its clock is logical (one tick per "
         f"physics step), so period error and compute time are not measured here: see "
         f"benchmarks/bench_loop.py for real-time figures; policy swap received -> first action "
         f"p99 {robot.get('swap_latency_ms', {}).get('p99', 0)} ms of wall time"
         if cfg.lockstep else
         f"- robot loop: {robot.get('rate_hz', 0)} Hz, period error p99 "
         f"{robot.get('period_error_ms', {}).get('p99', 0)} ms, compute p99 "
         f"{robot.get('compute_ms', {}).get('p99', 0)} ms, missed deadlines "
         f"{robot.get('missed_deadlines', 0)}, policy swap latency p99 "
         f"{robot.get('swap_latency_ms', {}).get('p99', 0)} ms"),
        f"- last sim return (nominal model) {last.get('sim_return', float('nan')):.0f}; "
        f"robot return (last 5 episodes) {last.get('robot_return', float('nan')):.0f}",
        f"- keeping the robot alive: {counts.get('catches', 0)} catches by the controller, "
        f"{counts.get('to_DAMPING', 0)} falls to DAMPING, "
        f"{robot.get('virtual_robot', {}).get('respawns', 0)} respawns of the virtual robot, "
        f"{counts.get('to_POLICY', 0)} hand-overs to the policy",
        "", "## What happened", "", verdict(by_version, gate, last), "",
        "## Robot episode return by policy version", "",
        "Each policy stint is its own episode (it ends where the controller catches the robot, at a "
        "fall, or after the task's 1000 steps); controller episodes are the baseline.", "",
        "| policy version | gate return (nominal sim) | episodes | mean return | mean length | best |",
        "|---|---|---|---|---|---|",
    ]
    lengths: dict[int, list[int]] = {}
    for e in episodes:
        lengths.setdefault(e["policy_version"], []).append(e["length"])
    for v in sorted(by_version):
        r = by_version[v]
        g = gate.get(v)
        lines.append(f"| {v if v >= 0 else 'controller'} | {'-' if g is None else f'{g:.0f}'} | "
                     f"{len(r)} | {sum(r) / len(r):.0f} | {sum(lengths[v]) / len(lengths[v]):.0f} | "
                     f"{max(r):.0f} |")
    if not by_version:
        lines.append("| - | - | 0 | - | - | - |")
    transitions = robot.get("safety_transitions", [])
    if transitions:
        lines += ["", "## Robot safety transitions", ""]
        lines += [f"- {t['t_s']:.1f} s: {t['from']} -> {t['to']} ({t['reason']}; source {t.get('source', '?')})"
                  for t in transitions[-20:]]
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.relative_to(run_dir)})" for p in plots]
    lines += ["", "Logs: `learner.log`, `robot.log`; learner metrics: `learner/metrics.jsonl`, "
              "robot episodes: `learner/episodes.jsonl`.", ""]
    report = run_dir / "report.md"
    report.write_text("\n".join(lines))
    return report


def verdict(by_version: dict[int, list[float]], gate: dict, last: dict) -> str:
    """One plain sentence on whether the robot's policy return rose across versions."""
    versions = sorted(v for v in by_version if v >= 0)
    if not gate:
        return (f"No policy passed the publish gate in this run ({last.get('updates', 0)} updates, "
                f"{last.get('gated', 0)} exports held back): the robot ran the controller throughout. "
                "Run longer (--minutes 8) or see docs/service.md.")
    if not versions:
        return (f"{len(gate)} policies were published but no policy episode finished on the robot "
                "before the end of the run.")
    means = [sum(by_version[v]) / len(by_version[v]) for v in versions]
    first, last_mean = means[0], means[-1]
    i_best = max(range(len(means)), key=means.__getitem__)
    if len(versions) == 1:
        return (f"One policy version (v{versions[0]}) ran on the robot: mean policy-episode return "
                f"{first:.0f}; there is no second version to compare with.")
    rose = max(means) > first
    text = (f"Robot return of policy episodes {'ROSE' if rose else 'did NOT rise'} across "
            f"{len(versions)} versions on the robot: v{versions[0]} {first:.0f}, best "
            f"v{versions[i_best]} {means[i_best]:.0f}, last v{versions[-1]} {last_mean:.0f}.")
    g_best, g_last = gate.get(versions[i_best]), gate.get(versions[-1])
    if last_mean < 0.8 * means[i_best] and g_best is not None and g_last is not None and g_last > g_best:
        text += (f" After v{versions[i_best]} the nominal-sim gate return kept rising ({g_best:.0f} -> "
                 f"{g_last:.0f}) while the robot return fell: the simulator ranks policies the robot "
                 "does not (the dynamics gap; the publish gate only sees the simulator).")
    return text


def run(cfg: DemoConfig) -> Path:
    from learner.service.keys import ensure_demo_keys

    run_dir = Path(cfg.run_dir or time.strftime("runs/demo-%Y%m%d-%H%M%S"))
    run_dir.mkdir(parents=True, exist_ok=True)
    keys = ensure_demo_keys(run_dir / "keys", ["robot0"])  # generated now, never committed
    dataset = ensure_dataset(cfg)
    port = cfg.port or _free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    children = Children()
    started = time.time()
    interrupted = False
    failure: Exception | None = None
    stop = {"flag": False}

    def on_signal(signum, _frame):
        stop["flag"] = True

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        serve_cmd = [sys.executable, str(ROOT / "learner" / "serve.py"),
                     "--config", cfg.serve_config, "--bind", endpoint,
                     "--run-dir", str(run_dir / "learner"), "--task", cfg.task,
                     "--server-secret-key", str(keys["learner_secret"]),
                     "--authorized-keys-dir", str(keys["authorized"]),
                     "--datasets", str(dataset)]
        if cfg.algorithm:
            serve_cmd += ["--algorithm", cfg.algorithm]
        serve = children.start("learner", serve_cmd, run_dir / "learner.log")
        _wait_for(run_dir / "learner.log", "serving on", serve, 120, stop)
        robot_cmd = [sys.executable, str(ROOT / "onboard" / "run.py"),
                     *(["--config", cfg.robot_config] if cfg.robot_config else []),
                     "--run.task", cfg.task,
                     "--run.virtual_robot", cfg.profile,
                     "--run.virtual_robot_respawn_s", str(cfg.respawn_s),
                     "--run.lockstep", "true" if cfg.lockstep else "false",
                     "--run.stats_file", str(run_dir / "onboard_stats.json"),
                     "--run.status_interval_s", "5",
                     "--safety.damping_recover_s", str(cfg.damping_recover_s),
                     "--learner.endpoint", endpoint, "--learner.robot_id", "robot0",
                     "--learner.plaintext", "false",
                     "--learner.client_secret_key_file", str(keys["robot0_secret"]),
                     "--learner.server_public_key_file", str(keys["learner_public"]),
                     "--learner.spool_dir", str(run_dir / "spool")]
        if stop["flag"]:
            raise KeyboardInterrupt
        children.start("robot", robot_cmd, run_dir / "robot.log")
        deadline = time.monotonic() + cfg.minutes * 60
        next_status = time.monotonic() + cfg.status_every_s
        from learner.service.status import read_jsonl

        while time.monotonic() < deadline and not stop["flag"]:
            time.sleep(0.5)
            for name, p in children.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited early with {p.returncode}; see "
                                       f"{run_dir / (name + '.log')}")
            if time.monotonic() >= next_status:
                next_status += cfg.status_every_s
                m = read_jsonl(run_dir / "learner" / "metrics.jsonl")
                if m:
                    r = m[-1]
                    rob = r["robots"].get("robot0", {})
                    print(f"[{(time.time() - started) / 60:4.1f} min] updates {r['updates']}, "
                          f"policy v{r['policy_version']} (robot v{rob.get('policy_version', '-')}, "
                          f"link {rob.get('link', 'down')}), robot return "
                          f"{r['robot_return']:.0f}, sim return {r['sim_return']:.0f}", flush=True)
        interrupted = stop["flag"]
    except KeyboardInterrupt:
        interrupted = True
    except (RuntimeError, TimeoutError) as exc:
        failure = exc
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        children.stop_all()
    report = write_report(run_dir, cfg, started, interrupted)
    if failure is not None:  # the report is written anyway: it shows how far the run got
        raise RuntimeError(f"{failure} (partial report: {report})")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m learner.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="TOML file of DemoConfig fields (CLI flags override it)")
    add_arguments(parser, DemoConfig)
    args = parser.parse_args(argv)
    try:
        cfg = load_config(DemoConfig, args.config, args)
    except (ConfigError, OSError, TypeError) as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.chdir(ROOT)
    try:
        report = run(cfg)
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
        log.error("demo failed: %s", exc)
        return 1
    print(f"report: {report}")
    print(f"plots:  {report.parent / 'learner' / 'plots'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
