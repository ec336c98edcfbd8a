"""Live status: robot episode returns from the stream, a status line, a metrics file, plots.

Why robot return here: the paper's lesson is that sim returns mislead; the robot's own return is
computed from the streamed rewards (episode = rows up to terminated/truncated), per robot, and is
shown beside the sim return everywhere (status line, metrics.jsonl, plots).

Files in the run folder: metrics.jsonl (one row every status period), episodes.jsonl (one row per
finished robot episode), plots/*.png (`python -m learner.service.status plot RUN_DIR`), and with
`tensorboard` on, TensorBoard events in tb/ (`TensorBoardCharts`).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
from pathlib import Path

import numpy as np

from protocol import strict_json
from protocol.config_cli import ArgumentParser

log = logging.getLogger(__name__)


class RobotReturns:
    """Per (robot, stream) running episode sums; finished episodes go to `episodes.jsonl`."""

    def __init__(self, path: Path | None = None, keep: int = 1000) -> None:
        self._running: dict[tuple[str, str], list] = {}  # [return, length, {version: rows}]
        self._lock = threading.Lock()
        self.episodes: list[dict] = []
        self.keep = keep
        self.path = path
        self._fh = open(path, "a", buffering=1) if path is not None else None

    def add(self, robot: str, stream: str, cols: dict[str, np.ndarray]) -> None:
        """Accumulate rows; an episode ends at terminated|truncated. Its `policy_version` is the
        version that chose most of its actions (-1: the controller). Rows outside the task's
        episodes (nonzero flags, task_contract.episodes) are not part of any return."""
        from task_contract.episodes import in_task_episode

        keep = in_task_episode(cols.get("flags"), len(cols["rew"]))
        if not keep.all():
            cols = {k: np.asarray(v)[keep] for k, v in cols.items()}
        rew = np.asarray(cols["rew"], np.float64)
        ends = np.flatnonzero(np.asarray(cols["terminated"]) | np.asarray(cols["truncated"]))
        versions = np.asarray(cols["policy_version"])
        with self._lock:
            acc = self._running.setdefault((robot, stream), [0.0, 0, {}])
            start = 0
            stops = [int(e) + 1 for e in ends]
            if not stops or stops[-1] < len(rew):
                stops.append(len(rew))
            for stop in stops:
                acc[0] += float(rew[start:stop].sum())
                acc[1] += int(stop - start)
                for v, c in zip(*np.unique(versions[start:stop], return_counts=True)):
                    acc[2][int(v)] = acc[2].get(int(v), 0) + int(c)
                if stop - 1 in ends:
                    ep = {"t": time.time(), "robot": robot, "stream": stream, "return": acc[0],
                          "length": acc[1], "policy_version": max(acc[2], key=acc[2].get),
                          "terminated": bool(cols["terminated"][stop - 1])}
                    self.episodes.append(ep)
                    self._write(ep)
                    acc[0], acc[1], acc[2] = 0.0, 0, {}
                start = stop
            del self.episodes[:-self.keep]

    def _write(self, ep: dict) -> None:
        """A full disk must not stop ingest (this runs on the network thread): warn once."""
        if self._fh is None:
            return
        try:
            self._fh.write(strict_json.dumps(ep) + "\n")
        except OSError as exc:
            log.warning("cannot write %s (%s); episode returns are kept in memory only",
                        self.path, exc)
            self._fh = None

    def recent(self, robot: str | None = None, n: int = 5) -> float:
        with self._lock:
            eps = [e["return"] for e in self.episodes if robot is None or e["robot"] == robot]
        return float(np.mean(eps[-n:])) if eps else math.nan

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class TensorBoardCharts:
    """The status rows as TensorBoard scalars in <run_dir>/tb/ (the writer learner.train uses,
    learner/tb_writer.py). Each tag keeps one x axis whose steps only grow, across restarts too:

    - training, at step = updates (learner.train's axis), once the trainer has made updates since
      the last row: `losses/*` and `charts/*` (the algorithm's, e.g. H2O's `charts/u_mean`; means
      over the updates since the last row), `trainer/updates_per_s`, `trainer/sim_return`,
      `trainer/gated`, `trainer/nonfinite_updates`, `buffer/real_rows`, `buffer/real_offline_rows`,
      `buffer/sim_rows`;
    - the service and its robots, at step = the row's index in metrics.jsonl (one per status period;
      TensorBoard's relative or wall-time axis shows them against time): `service/store_rows`,
      `service/updates`, `service/policy_version` (the latest published; published.jsonl has the
      update count of each), `service/rejected` and the other problem
      counters, `robot/return` (mean of the last 5 robot episodes), per robot
      `robot/<id>/{rows,stored_rows,duplicates,rejected,trial_reports,policy_version,return}`, and
      the robots' trial evidence `trials/reports`, `trials/deployable_version`,
      `trials/deployable_mean_return`.
    """

    SERVICE_KEYS = ("store_rows", "updates", "policy_version", "rejected", "store_errors", "rows_lost",
                    "rows_out_of_bounds", "robot_id_shared", "handshake_failed")
    TRAINER_KEYS = {"updates_per_s": "trainer/updates_per_s", "sim_return": "trainer/sim_return",
                    "gated": "trainer/gated", "nonfinite_updates": "trainer/nonfinite_updates",
                    "real_rows": "buffer/real_rows", "real_offline_rows": "buffer/real_offline_rows",
                    "sim_rows": "buffer/sim_rows"}
    ROBOT_KEYS = ("rows", "stored_rows", "duplicates", "rejected", "trial_reports", "policy_version", "return")

    def __init__(self, writer, first_row: int) -> None:
        self.writer = writer
        self.next_row = first_row  # metrics.jsonl's row count when the service started
        self.last_updates = -1

    @classmethod
    def open(cls, run_dir: Path, first_row: int) -> "TensorBoardCharts | None":
        from learner.tb_writer import open_writer

        writer = open_writer(run_dir)
        return None if writer is None else cls(writer, first_row)

    def write(self, row: dict, evidence: dict, loss_means: dict) -> None:
        """One status row: the service tags at the next row index, the training tags when the
        trainer got further; flushed, so TensorBoard shows it within a status period."""
        from learner.tb_writer import add_scalars

        step = self.next_row
        self.next_row += 1
        add_scalars(self.writer, {k: row.get(k) for k in self.SERVICE_KEYS}, step, prefix="service/")
        add_scalars(self.writer, {"return": row.get("robot_return")}, step, prefix="robot/")
        for rid, r in row.get("robots", {}).items():
            add_scalars(self.writer, {k: r.get(k) for k in self.ROBOT_KEYS}, step, prefix=f"robot/{rid}/")
        if evidence:
            deployable = evidence.get("deployable")
            versions = evidence.get("versions", {})
            add_scalars(self.writer, {"reports": evidence.get("reports"), "deployable_version": deployable,
                                      "deployable_mean_return": versions.get(deployable, {}).get("mean_return")},
                        step, prefix="trials/")
        updates = int(row.get("updates") or 0)
        if updates > self.last_updates and (updates > 0 or loss_means):
            self.last_updates = updates
            add_scalars(self.writer, {tag: row.get(k) for k, tag in self.TRAINER_KEYS.items()}, updates)
            losses = loss_means or {k: v for k, v in row.items() if k.startswith(("losses/", "charts/"))}
            add_scalars(self.writer, losses, updates)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class StatusBoard:
    """Collects the server's and trainer's snapshots every period: a log line + a metrics row
    (and TensorBoard scalars with `tensorboard`)."""

    def __init__(self, run_dir: Path, server, trainer, returns: RobotReturns, period_s: float,
                 tensorboard: bool = False, latency=None) -> None:
        self.server, self.trainer, self.returns = server, trainer, returns
        self.latency = latency  # learner.latency.LatencyWatch: the robots' latency against the simulator's
        self.period_s = period_s
        self.path = run_dir / "metrics.jsonl"
        self.charts = TensorBoardCharts.open(run_dir, len(read_jsonl(self.path))) if tensorboard else None
        self._fh = open(self.path, "a", buffering=1)
        self._write_failed = False
        self.t0 = time.time()

    def row(self, srv: dict | None = None) -> dict:
        srv = srv if srv is not None else self.server.snapshot()
        tr = self.trainer.snapshot() if self.trainer is not None else {}
        row = {"t": time.time(), "elapsed_s": time.time() - self.t0,
               "updates": tr.get("updates", 0), "updates_per_s": tr.get("updates_per_s", 0.0),
               "real_rows": tr.get("real_rows", 0), "real_offline_rows": tr.get("real_offline_rows", 0),
               "sim_rows": tr.get("sim_rows", 0), "sim_return": tr.get("sim_return", math.nan),
               "trainer_state": tr.get("state", "off"), "gated": tr.get("gated", 0),
               "policy_version": srv["policy_version"], "store_rows": srv["store_rows"],
               "robot_return": self.returns.recent(), "rejected": sum(
                   v for k, v in srv["counters"].items() if k.startswith("rejected/")),
               **{k: srv["counters"].get(k, 0) for k in ("store_errors", "rows_lost",
                                                          "rows_out_of_bounds",
                                                          "robot_id_shared",
                                                          "handshake_failed")},
               "nonfinite_updates": tr.get("nonfinite_updates", 0),
               "robots": {}}
        if self.latency is not None:
            self.latency.check()
            row.update(self.latency.status())
        for rid, r in srv["robots"].items():
            stats = r.get("stats", {})
            row["robots"][rid] = {"link": r["link"], "policy_version": r["policy_version"],
                                  "rows": r["rows"], "return": self.returns.recent(rid),
                                  **{k: r[k] for k in ("duplicates", "stored_rows", "rejected",
                                                       "trial_reports") if k in r},
                                  **{k: stats[k] for k in sorted(stats)[:16]}}
        for k, v in tr.get("losses", {}).items():
            if k.startswith(("losses/", "charts/")):
                row[k] = v
        return row

    @staticmethod
    def line(row: dict) -> str:
        return status_line(row)

    def tick(self) -> dict:
        srv = self.server.snapshot()
        row = self.row(srv)
        log.info("%s", self.line(row))
        if self.charts is not None:
            losses = self.trainer.take_loss_means() if self.trainer is not None else {}
            try:
                self.charts.write(row, srv.get("evidence") or {}, losses)
            except OSError as exc:  # a full disk: metrics.jsonl and the log line still tell
                log.warning("cannot write TensorBoard events: %s", exc)
        try:
            self._fh.write(strict_json.dumps(row, default=str) + "\n")
        except OSError as exc:  # a full disk: the log line above still says how things stand
            if not self._write_failed:
                log.warning("cannot write %s: %s", self.path, exc)
            self._write_failed = True
        else:
            self._write_failed = False
        return row

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.period_s):
            try:
                self.tick()
            except Exception:  # status must never take the service down
                log.exception("status tick failed")

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError:
            pass
        if self.charts is not None:
            self.charts.close()


def fmt_number(x: float | None, nd: int = 0) -> str:
    """A number for people: '-' for a value that does not exist yet (null in the JSON files,
    where strict JSON has no NaN; NaN in memory)."""
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:,.{nd}f}"


def status_line(row: dict) -> str:
    """One line: progress, buffers, policy, sim and robot return side by side, robots' links.
    `row` is live (NaN for what is not known yet) or read back from metrics.jsonl (null)."""
    robots = " ".join(f"{rid}:{r['link']} v{r['policy_version']} ret {fmt_number(r['return'])}"
                      for rid, r in row["robots"].items()) or "no robots"
    return (f"upd {row['updates']} ({fmt_number(row['updates_per_s'], 1)}/s) | real {row['real_rows']} "
            f"sim {row['sim_rows']} | policy v{row['policy_version']} | sim ret "
            f"{fmt_number(row['sim_return'])} robot ret {fmt_number(row['robot_return'])} | {robots} | "
            f"{row['trainer_state']}{_problems(row)}")


PROBLEMS = (("store_errors", "store write errors (disk full?)"), ("rows_lost", "rows lost"),
            ("rows_out_of_bounds", "rows beyond ingest bounds"),
            ("robot_id_shared", "msgs from a robot id used twice"),
            ("nonfinite_updates", "non-finite updates undone"),
            ("handshake_failed", "handshakes refused (check robot keys / plaintext)"))


def _problems(row: dict) -> str:
    """' | PROBLEMS: ...' naming every non-zero failure counter (see docs/service.md)."""
    found = [f"{row[k]} {label}" for k, label in PROBLEMS if row.get(k)]
    robot, sim = row.get("robot_latency_steps"), row.get("sim_latency_steps")
    if robot is not None and sim is not None and robot != sim:
        found.append(f"robot data shows {robot} step(s) of latency, the simulator has {sim}")
    return f" | PROBLEMS: {', '.join(found)}" if found else ""


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line after a crash
    return out


def plot_run(run_dir: str | Path) -> list[Path]:
    """PNG plots of a run: returns (robot vs sim), policy versions, updates/s, loop timing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    out_dir = run_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    episodes = read_jsonl(run_dir / "episodes.jsonl")
    written = []
    t0 = min([m["t"] for m in metrics] + [e["t"] for e in episodes] or [0.0])

    fig, ax = plt.subplots(figsize=(7, 4))
    for robot in sorted({e["robot"] for e in episodes}):
        # Controller episodes (the fallback, often short stints after a catch) faint; the
        # policy's episodes in colour, with each version's mean as a line over its time span.
        ctrl = [e for e in episodes if e["robot"] == robot and e["policy_version"] < 0]
        pol = [e for e in episodes if e["robot"] == robot and e["policy_version"] >= 0]
        if ctrl:
            ax.plot([e["t"] - t0 for e in ctrl], [e["return"] for e in ctrl], ".", ms=2,
                    color="0.8", label=f"{robot} controller episodes")
        if pol:
            ax.plot([e["t"] - t0 for e in pol], [e["return"] for e in pol], "o", ms=3, alpha=0.5,
                    label=f"{robot} policy episodes (robot return)")
            means_t, means_r = [], []
            for v in sorted({e["policy_version"] for e in pol}):
                ev = [e for e in pol if e["policy_version"] == v]
                means_t += [ev[0]["t"] - t0, ev[-1]["t"] - t0]
                means_r += [float(np.mean([e["return"] for e in ev]))] * 2
            ax.plot(means_t, means_r, "-", lw=2, label=f"{robot} mean per policy version")
    if metrics:
        ax.plot([m["t"] - t0 for m in metrics], [m["sim_return"] for m in metrics], "--",
                label="sim return (nominal model, stochastic policy)")
    ax.set_xlabel("time [s]"), ax.set_ylabel("episode return"), ax.legend(fontsize=8)
    ax.set_title("robot vs sim return")
    written.append(_save(fig, out_dir / "returns.png"))

    fig, ax = plt.subplots(figsize=(7, 3))
    if metrics:
        ax.step([m["t"] - t0 for m in metrics], [m["policy_version"] for m in metrics], where="post",
                label="published")
        for robot in sorted({r for m in metrics for r in m.get("robots", {})}):
            pts = [(m["t"] - t0, m["robots"][robot]["policy_version"]) for m in metrics
                   if robot in m.get("robots", {})]
            ax.step(*zip(*pts), where="post", label=f"{robot} active")
    ax.set_xlabel("time [s]"), ax.set_ylabel("policy version"), ax.legend(fontsize=8)
    written.append(_save(fig, out_dir / "policy_versions.png"))

    fig, axes = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    if metrics:
        axes[0].plot([m["t"] - t0 for m in metrics], [m["updates_per_s"] for m in metrics])
        axes[0].set_ylabel("updates/s")
        keys = sorted({k for m in metrics for r in m.get("robots", {}).values() for k in r
                       if any(s in k for s in ("period", "tick", "compute", "overrun", "_ms"))})
        for robot in sorted({r for m in metrics for r in m.get("robots", {})}):
            for k in keys[:4]:
                pts = [(m["t"] - t0, m["robots"][robot][k]) for m in metrics
                       if k in m.get("robots", {}).get(robot, {})]
                if pts:
                    axes[1].plot(*zip(*pts), label=f"{robot} {k}")
        axes[1].set_ylabel("robot loop timing"), axes[1].legend(fontsize=7)
    axes[1].set_xlabel("time [s]")
    written.append(_save(fig, out_dir / "timing.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m learner.service.status", description="Plots and a summary of a service run folder.",
                            example="python -m learner.service.status show runs/demo-<date>/learner --follow\n"
                                    "python -m learner.service.status plot runs/demo-<date>/learner")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plot", help="write PNG plots into RUN_DIR/plots", allow_abbrev=False)
    p.add_argument("run_dir", help="the service's run folder (holds metrics.jsonl)")
    show = sub.add_parser("show", help="print the run's latest status (live with --follow)", allow_abbrev=False)
    show.add_argument("run_dir", help="the service's run folder (holds metrics.jsonl)")
    show.add_argument("--follow", action="store_true", help="keep printing new rows (Ctrl-C ends)")
    show.add_argument("--poll-s", type=float, default=1.0, help="how often --follow looks")
    args = parser.parse_args(argv)
    if args.cmd == "plot":
        for path in plot_run(args.run_dir):
            print(path)
        return 0
    path = Path(args.run_dir) / "metrics.jsonl"
    seen = 0
    try:
        while True:
            rows = read_jsonl(path)
            for row in rows[seen:] if args.follow else rows[-1:]:
                stamp = time.strftime("%H:%M:%S", time.localtime(row["t"]))
                print(f"{stamp} {status_line(row)}", flush=True)
            seen = len(rows)
            if not args.follow:
                return 0 if rows else 1
            time.sleep(args.poll_s)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
