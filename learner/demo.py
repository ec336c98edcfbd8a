"""The main job on one machine: a robot learns with H2O while it runs.

    python -m learner.demo            # 10 minutes; --minutes 4 for a shorter look

What it does: generates CURVE keys for this run; collects an offline "real" dataset on the hidden
profile if none is there (sim_models collect CLI); measures the robot's actuation latency in that
data and puts it into the learner's simulator (learner/latency.py); starts `learner/serve.py` (H2O
against the nominal MuJoCo model with that latency) and `onboard/run.py` driving a virtual robot with the hidden profile; lets
them run; the robot tries every new version on itself and promotes or rolls it back; at the end
the robot is pinned to the best version measured on it (the learner's deployable policy); then
stops both cleanly (also on Ctrl-C) and writes a report (learner/demo_report.py: trials, the
deployed version, figures) into the run folder and prints where.
"""

from __future__ import annotations

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

from protocol.logs import setup_logging
from learner.demo_report import write_report
from protocol.config_cli import parse_cli
from learner.service.config import ConfigError, _f

log = logging.getLogger("learner.demo")
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class DemoConfig:
    """What the demo runs; every field is a --flag."""

    minutes: float = _f(10.0, "how long robot and learner run together (what the robot's policies reach by "
                              "when on a 2-core laptop CPU: docs/results.md)")
    task: str = _f("stand_still", "task name (or id with options, stand_still:action_history=2)")
    task_options: str = _f("action_history=2,max_pitch=0.25",
                           "task options for robot, learner and offline data (docs/task_contract.md): the "
                           "last 2 actions make the observation a state again under the hidden profiles' 1-2 "
                           "steps of actuation latency; max_pitch=0.25 ends every episode where the virtual "
                           "robot's safety catch (0.25 rad) ends a policy's; empty: the paper's 4-D "
                           "observation and pi/6")
    profile: str = _f("moderate", "the virtual robot's hidden 'real' dynamics profile")
    dataset: str = _f("", "offline real dataset (D4RL HDF5); empty: data/demo_<task>_<profile>.hdf5")
    dataset_steps: int = _f(10000, "transitions to collect when the dataset is missing")
    behaviour: str = _f("medium", "behaviour policy of the collected dataset")
    run_dir: str = _f("", "output folder; empty: runs/demo-<date>-<time>")
    serve_config: str = _f("configs/serve_demo.toml", "the learner's TOML config")
    sim_latency: str = _f("auto", "the actuation latency (control steps) in the learner's simulator: 'auto' "
                                  "measures it from the offline real data (learner.latency) and sets it on the "
                                  "learner config's sim_profile; an integer sets it; 'config' keeps the "
                                  "config's")
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
        if self.sim_latency not in ("auto", "config") and not (self.sim_latency.isdigit() and int(self.sim_latency) <= 8):
            raise ConfigError(f"sim_latency: 'auto', 'config' or 0-8 control steps, got {self.sim_latency!r}")
        from task_contract.history import TaskOptionsError, task_id

        try:  # one canonical task id for the dataset, the learner and the robot
            self.task, self.task_options = task_id(self.task, self.task_options), ""
        except TaskOptionsError as exc:
            raise ConfigError(f"task_options: {exc}") from None
        return self


def _num(x: float | None) -> str:
    """A metric for the progress line; '-' where there is none yet (no robot episode so far, or
    no simulator evaluation: real-only algorithms such as CQL and BC have none)."""
    return "-" if x is None else f"{x:.0f}"


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


def simulator_profile(cfg: DemoConfig, dataset: Path, run_dir: Path) -> tuple[str, str]:
    """(a --sim-profile for the learner, "" for the config's own; what the report says of it).

    The one property of the robot a team puts into its simulator without guessing is the
    actuation latency, and the robot's own data shows it (learner/latency.py): with 'auto' the
    demo measures it from the offline data and sets it on the learner config's simulator, as a
    team would after recording its robot. An ambiguous measurement keeps the config's."""
    import tomllib
    from dataclasses import replace

    from learner.latency import LatencyDataError, estimate_file
    from sim_models.profiles import load_profile

    def in_repo(path: str) -> Path:  # config paths are relative to the repository root
        return Path(path) if Path(path).is_absolute() else ROOT / path

    with open(in_repo(cfg.serve_config), "rb") as fh:
        base = str(tomllib.load(fh).get("sim_profile", "nominal"))
    if cfg.sim_latency == "config":
        return "", f"`{base}` (the learner config's)"
    if cfg.sim_latency == "auto":
        try:
            est = estimate_file(dataset)
        except LatencyDataError as exc:
            log.warning("simulator latency: cannot measure it from %s (%s); keeping %s", dataset, exc, base)
            return "", f"`{base}` (the latency could not be measured: {exc})"
        if not est.clear:
            log.warning("simulator latency: %s; keeping %s", est.verdict(), base)
            return "", f"`{base}` (the offline data's latency is {est.verdict()})"
        steps, how = est.steps, f"measured from the offline data, {est.verdict()}"
    else:
        steps, how = int(cfg.sim_latency), "set by --sim-latency"
    profile = load_profile(in_repo(base) if Path(base).suffix == ".toml" else base)  # a path, or a name
    if profile.latency_steps == steps:
        log.info("simulator: %s, its latency_steps = %d (%s)", base, steps, how)
        return "", f"`{base}`, its latency_steps = {steps} ({how})"
    profile = replace(profile, name=f"{profile.name}_latency{steps}", latency_steps=steps)
    path = run_dir / "sim_profile.toml"
    path.write_text(f"# The learner's simulator: {base} with latency_steps = {steps} ({how})\n" + profile.to_toml())
    log.info("simulator: %s with latency_steps = %d (%s)", base, steps, how)
    return str(path), f"`{base}` with latency_steps = {steps} ({how})"


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


def finish_on_best(run_dir: Path, control: str) -> dict:
    """The run ends on the best version measured on the robot: an operator's pin of the learner's
    deployable version over the robot's control channel (unless it already drives it)."""
    from onboard.control import request

    info = run_dir / "learner" / "policies" / "deployable.json"
    if not info.exists():
        return {"how": "no deployable version"}
    best = json.loads(info.read_text())["version"]
    try:
        status = request(control, "status", timeout_s=10)
        if status.get("policy_version") == best and not (status.get("trials") or {}).get("trial"):
            return {"robot_version": best, "how": "it was driving it already"}
        reply = request(control, "pin", str(best), timeout_s=10)
    except Exception as exc:  # noqa: BLE001 - the report is written anyway and says so
        log.warning("could not pin v%d on the robot: %s", best, exc)
        return {"how": f"pin failed: {exc}"}
    log.info("end of the run: pin v%d (the best measured on the robot): %s", best, reply.get("message"))
    how = f"pinned by `python -m onboard.control pin {best}` at the end"
    if not reply.get("ok"):
        how = f"pin refused: {reply.get('message')}"
        # the robot no longer holds it (the robot and the learner rank by different windows of
        # episodes): pin the best version it still holds by the robot's episodes in the store
        held = set((status.get("trials") or {}).get("policies_held") or [])
        fallback = best_held(run_dir / "learner" / "episodes.jsonl", held)
        if fallback is not None:
            try:
                again = request(control, "pin", str(fallback), timeout_s=10)
            except Exception as exc:  # noqa: BLE001 - the report says so
                again = {"ok": False, "message": str(exc)}
            if again.get("ok"):
                reply = again
                how += f"; pinned v{fallback} instead, the best version it holds by its robot episodes"
    time.sleep(2.0)  # it drives a little before the stop
    return {"robot_version": reply.get("policy_version", -1), "how": how}


def best_held(episodes: Path, held: "set[int]", min_episodes: int = 5) -> "int | None":
    """Among the versions a robot holds, the one with the best mean robot return over its
    episodes in the learner's `episodes.jsonl` (at least `min_episodes`); None if none has."""
    returns: dict[int, list[float]] = {}
    if held and episodes.exists():
        for line in episodes.read_text().splitlines():
            try:
                e = json.loads(line)
                v = int(e["policy_version"])
                if v in held:
                    returns.setdefault(v, []).append(float(e["return"]))
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line: skipped
    means = {v: sum(r) / len(r) for v, r in returns.items() if len(r) >= min_episodes}
    return max(means, key=means.get) if means else None


def run(cfg: DemoConfig) -> Path:
    from learner.service.keys import ensure_demo_keys

    run_dir = Path(cfg.run_dir or time.strftime("runs/demo-%Y%m%d-%H%M%S"))
    run_dir.mkdir(parents=True, exist_ok=True)
    keys = ensure_demo_keys(run_dir / "keys", ["robot0"])  # generated now, never committed
    dataset = ensure_dataset(cfg)
    sim_profile, sim_text = simulator_profile(cfg, dataset, run_dir)
    port = cfg.port or _free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    control = f"ipc://{(run_dir / 'control.sock').resolve()}"  # the robot's operator channel
    ending: dict = {}
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
        if sim_profile:
            serve_cmd += ["--sim-profile", sim_profile]
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
                     "--learner.spool_dir", str(run_dir / "spool"),
                     "--control.endpoint", control]
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
                    trial = int(rob.get("trial_version", -1))
                    print(f"[{(time.time() - started) / 60:4.1f} min] updates {r['updates']}, "
                          f"policy v{r['policy_version']} (robot v{rob.get('policy_version', '-')}"
                          f"{f', trial of v{trial}' if trial >= 0 else ''}, trusted "
                          f"v{int(rob.get('incumbent_version', -1))}, link {rob.get('link', 'down')}), "
                          f"robot return {_num(r.get('robot_return'))}, sim return {_num(r.get('sim_return'))}",
                          flush=True)
        interrupted = stop["flag"]
        if not interrupted:
            ending = finish_on_best(run_dir, control)
    except KeyboardInterrupt:
        interrupted = True
    except (RuntimeError, TimeoutError) as exc:
        failure = exc
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        children.stop_all()
    report = write_report(run_dir, cfg, started, interrupted, ending, simulator=sim_text)
    if failure is not None:  # the report is written anyway: it shows how far the run got
        raise RuntimeError(f"{failure} (partial report: {report})")
    return report


def main(argv: list[str] | None = None) -> int:
    cfg = parse_cli(DemoConfig, "python -m learner.demo", __doc__, argv)
    if cfg is None:
        return 2
    setup_logging("INFO")
    os.chdir(ROOT)
    try:
        report = run(cfg)
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
        log.error("demo failed: %s", exc)
        return 1
    print(f"report: {report}")
    print(f"plots:  {report.parent / 'plots'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
