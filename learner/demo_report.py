"""The demo's report: what happened, the robot's trials, the policy deployed at the end, figures.

Why its own module: `learner/demo.py` runs the programs; this reads what they left in the run
folder (learner metrics, robot episodes, published versions, trial reports, the deployable
policy's evidence, the robot's stats file) and writes `report.md` with figures that read at a
glance: returns on the policy's own scale (the controller's ~28.5k is a labelled reference, not
the axis), times in minutes since the demo started, no timing panel for a lock-step run (its
clock is logical), and a caption under every figure saying what it measures.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from learner.service.status import fmt_number, plot_run, read_jsonl

OUTCOME_COLOUR = {"promoted": "tab:green", "rolled_back": "tab:red", "superseded": "0.6"}
MIN_EPISODES_FOR_BEST = 5  # a version needs this many robot episodes to count as "best seen"


def noise_note(robot: dict) -> str:
    """The controller's episodes carry exploration noise (onboard run.controller_noise): say so
    where its return is the baseline, since the clean controller scores a little more."""
    sigma = float(robot.get("controller_noise") or 0.0)
    if sigma <= 0:
        return ""
    return (f" The controller's own episodes carry Gaussian action noise (std {sigma:g}, robot option "
            "run.controller_noise) so that its rows teach the learner; without it the controller scores "
            "a few percent more (docs/results.md).")


@dataclass
class RunData:
    """Everything the report reads, loaded once."""

    metrics: list[dict]
    episodes: list[dict]
    published: list[dict]
    trials: list[dict]
    deployable: dict
    robot: dict
    ending: dict = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: Path, ending: dict | None = None) -> "RunData":
        learner = run_dir / "learner"
        deployable = learner / "policies" / "deployable.json"
        stats = run_dir / "onboard_stats.json"
        return cls(read_jsonl(learner / "metrics.jsonl"), read_jsonl(learner / "episodes.jsonl"),
                   read_jsonl(learner / "published.jsonl"), read_jsonl(learner / "trials.jsonl"),
                   json.loads(deployable.read_text()) if deployable.exists() else {},
                   json.loads(stats.read_text()) if stats.exists() else {}, dict(ending or {}))

    def by_version(self) -> dict[int, list[dict]]:
        out: dict[int, list[dict]] = {}
        for e in self.episodes:
            out.setdefault(e["policy_version"], []).append(e)
        return out

    def outcome(self, version: int) -> str:
        """The version's own trial's outcome ('' when none reached the learner)."""
        rows = [t for t in self.trials if t["version"] == version]
        return rows[-1]["outcome"] if rows else ""


def _mean(xs: list[float]) -> float:
    return float(np.mean(xs)) if xs else math.nan


# ---------------------------------------------------------------------------- text
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
        text += (f" After v{versions[i_best]} the simulator's gate return kept rising ({g_best:.0f} -> "
                 f"{g_last:.0f}) while the robot return fell: the simulator ranks policies the robot "
                 "does not (the dynamics gap; the publish gate only sees the simulator).")
    return text


def ending_summary(data: RunData) -> tuple[str, dict[str, Any]]:
    """Which version the run ended on, against the best version seen on the robot."""
    means = {v: _mean([e["return"] for e in eps]) for v, eps in data.by_version().items()
             if v >= 0 and len(eps) >= MIN_EPISODES_FOR_BEST}
    deployed = data.deployable.get("version")
    robot_v = data.ending.get("robot_version", data.robot.get("policy_version", -1))
    best_v = max(means, key=means.get, default=None)
    figures = {"deployed": deployed, "robot_version": robot_v, "best_seen": best_v,
               "best_seen_mean": means.get(best_v, math.nan) if best_v is not None else math.nan,
               "deployed_mean": means.get(deployed, math.nan) if deployed is not None else math.nan}
    if deployed is None:
        return ("No version was promoted on the robot, so there is no deployable policy; the robot "
                f"ended on {'the controller' if robot_v < 0 else f'v{robot_v}'}.", figures)
    ratio = figures["deployed_mean"] / figures["best_seen_mean"] if best_v is not None else math.nan
    figures["ratio"] = ratio
    text = (f"The run ends on v{deployed}, the best version measured on the robot (deployable policy "
            f"`learner/policies/deployable.onnx`, mean robot return {fmt_number(data.deployable.get('mean_return'))} "
            f"over its latest {data.deployable.get('episodes', 0)} episodes)")
    text += (f"; the robot drives it at the end ({data.ending['how']})." if robot_v == deployed and
             data.ending.get("how") else "." if robot_v == deployed else
             f"; the robot itself ended on v{robot_v} ({data.ending.get('how', 'not pinned')}).")
    if best_v is not None and math.isfinite(ratio):
        text += (f" Best version seen in the run (mean over all its robot episodes, >= "
                 f"{MIN_EPISODES_FOR_BEST}): v{best_v} {fmt_number(figures['best_seen_mean'])}; the deployed "
                 f"v{deployed} scores {fmt_number(figures['deployed_mean'])} on the same measure, "
                 f"{100 * ratio:.0f} % of it.")
    return text, figures


def trials_section(data: RunData) -> list[str]:
    if not data.trials:
        return ["No trial reached the learner (no policy drove the robot long enough)."]
    n = {o: sum(t["outcome"] == o for t in data.trials) for o in OUTCOME_COLOUR}
    lines = [f"{len(data.trials)} trials: {n['promoted']} promoted, {n['rolled_back']} rolled back by "
             f"the robot, {n['superseded']} superseded. Each new version drove as the candidate until "
             "a one-sided Welch t-test on its episode returns against the incumbent's (margin 10 % of "
             "the incumbent's mean, alpha 0.2) showed it not worse (promoted) or worse (rolled back), "
             "or the trial's cap was reached (docs/onboard.md, On-robot trials).", "",
             "| candidate | tried against | outcome | episodes | mean return | incumbent mean (episodes) "
             "| p(not worse) | p(worse) | catches | falls | trial length |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in data.trials:
        inc = "controller" if t["incumbent"] < 0 else f"v{t['incumbent']}"
        ref = t["reference_returns"]
        lines.append(
            f"| v{t['version']} | {inc} | **{t['outcome'].replace('_', ' ')}** | {len(t['returns'])} | "
            f"{fmt_number(_mean(t['returns']))} | {fmt_number(_mean(ref))} ({len(ref)}) | {fmt_number(t['p_not_worse'], 3)} | "
            f"{fmt_number(t['p_worse'], 3)} | {t['catches']} | {t['falls']} | {t['duration_s']:.0f} s |")
    return lines


def write_report(run_dir: Path, cfg, started: float, interrupted: bool, ending: dict | None = None,
                 simulator: str = "") -> Path:
    """report.md with figures in run_dir/plots; returns its path. `simulator`: what the learner's
    simulator was and where its latency came from."""
    data = RunData.load(run_dir, ending)
    figures = plot_demo(run_dir, data, started, cfg.lockstep)
    metrics, robot = data.metrics, data.robot
    last = metrics[-1] if metrics else {}
    by_version = {v: [e["return"] for e in eps] for v, eps in data.by_version().items()}
    gate = {r["version"]: r.get("gate_return") for r in data.published}
    counts = robot.get("safety_counts", {})
    end_text, _ = ending_summary(data)
    lines = [
        f"# Demo run {run_dir.name}", "",
        f"- task `{cfg.task}`, hidden robot profile `{cfg.profile}`, learner config "
        f"`{cfg.serve_config}`{', algorithm ' + cfg.algorithm if cfg.algorithm else ''}"
        f"{'; simulator ' + simulator if simulator else ''}",
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
        f"- keeping the robot alive: {counts.get('catches', 0)} catches by the controller, "
        f"{counts.get('to_DAMPING', 0)} falls to DAMPING, "
        f"{robot.get('virtual_robot', {}).get('respawns', 0)} respawns of the virtual robot, "
        f"{counts.get('to_POLICY', 0)} hand-overs to the policy",
        "", "## What happened", "", verdict(by_version, gate, last), "", end_text, "",
        "## On-robot trials", "", *trials_section(data), "",
        "## Robot episode return by policy version", "",
        "Each policy stint is its own episode (it ends where the controller catches the robot, at a "
        "fall, or after the task's 1000 steps); controller episodes are the baseline. Outcome: the "
        "version's own trial on the robot." + noise_note(data.robot), "",
        "| policy version | gate return (learner's simulator) | outcome on the robot | episodes | mean return "
        "| mean length | best |",
        "|---|---|---|---|---|---|---|",
    ]
    for v, eps in sorted(data.by_version().items()):
        r, g = [e["return"] for e in eps], gate.get(v)
        lines.append(f"| {v if v >= 0 else 'controller'} | {fmt_number(g)} | "
                     f"{(data.outcome(v) or '-').replace('_', ' ') if v >= 0 else '-'} | {len(r)} | "
                     f"{fmt_number(_mean(r))} | {fmt_number(_mean([e['length'] for e in eps]))} | {fmt_number(max(r))} |")
    if not data.episodes:
        lines.append("| - | - | - | 0 | - | - | - |")
    transitions = robot.get("safety_transitions", [])
    if transitions:
        t0 = robot.get("loop_started_s", 0.0)
        clock = "simulated seconds of the lock-step clock" if cfg.lockstep else "seconds"
        lines += ["", "## Robot safety transitions (the last 10)", "",
                  f"Times are {clock} since the robot's loop started.", ""]
        lines += [f"- {t['t_s'] - t0:.1f} s: {t['from']} -> {t['to']} ({t['reason']}; source "
                  f"{t.get('source', '?')})" for t in transitions[-20:]]
    lines += ["", "## Figures", ""]
    for path, caption in figures:
        lines += [f"![{path.stem}]({path.relative_to(run_dir)})", "", f"*{caption}*", ""]
    lines += ["Logs: `learner.log`, `robot.log`; learner metrics: `learner/metrics.jsonl`, robot "
              "episodes: `learner/episodes.jsonl`, trials: `learner/trials.jsonl`, deployable "
              "policy and its evidence: `learner/policies/deployable.{onnx,json}`.", ""]
    report = run_dir / "report.md"
    report.write_text("\n".join(lines))
    return report


# ---------------------------------------------------------------------------- figures
def plot_demo(run_dir: Path, data: RunData, started: float, lockstep: bool) -> list[tuple[Path, str]]:
    """The report's figures, each with its caption."""
    import matplotlib

    matplotlib.use("Agg")
    out = run_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    figures = [(_plot_returns(out, data, started), (
        "What it measures: the robot's return of every policy episode (dots, one colour per version; "
        "lines: each version's mean over its time on the robot), in minutes since the demo started, on "
        "the policy's own scale. The controller's episodes (about 28.5k: it balances all 1000 steps) "
        "are a labelled reference, not the axis. Green / red lines: a trial promoted / rolled back "
        "that version. Lower panel: per version, the robot's mean return (bars, coloured by its "
        "trial's outcome) beside the return the learner's nominal simulator gave it at publishing "
        "(black dots, right axis): where they disagree, the simulator misleads.")),
        (_plot_trials(out, data), (
            "What it measures: each on-robot trial, the candidate's episode returns on the robot "
            "(coloured: green promoted, red rolled back, grey superseded) beside the incumbent's "
            "reference episodes it was tested against (grey, left of each pair); bars are means, "
            "p = the Welch test's p-value that decided.")),
        (_plot_versions(out, data, started), (
            "What it measures: which policy version the learner had published (grey) and which one "
            "drove the robot (blue), in minutes since the demo started; x: a rollback by the robot, "
            "^: a promotion, star: the version the run ends on (the deployable one)."))]
    if not lockstep:  # a lock-step loop's clock is logical: its timing would be a flat line
        written = plot_run(run_dir / "learner")
        figures += [(p, "What it measures: the learner's updates per second and the robot loop's "
                        "timing (period error, tick compute, p99 in ms) over the run.")
                    for p in written if p.stem == "timing"]
    return figures


def _minutes(t: float, started: float) -> float:
    return (t - started) / 60.0


def _plot_returns(out: Path, data: RunData, started: float) -> Path:
    import matplotlib.pyplot as plt

    fig, (ax, bars) = plt.subplots(2, 1, figsize=(8, 6.5), gridspec_kw={"height_ratios": [3, 2]})
    by_v = data.by_version()
    policy = [e for e in data.episodes if e["policy_version"] >= 0]
    ctrl = [e["return"] for e in by_v.get(-1, [])]
    top = 1.15 * max([e["return"] for e in policy], default=1.0)
    n_versions = sum(1 for v in by_v if v >= 0)
    cmap = plt.get_cmap("tab10" if n_versions <= 10 else "tab20")  # no two versions share a colour
    for i, v in enumerate(sorted(v for v in by_v if v >= 0)):
        eps = by_v[v]
        ts = [_minutes(e["t"], started) for e in eps]
        ax.plot(ts, [e["return"] for e in eps], "o", ms=3, alpha=0.5, color=cmap(i % cmap.N))
        ax.plot([ts[0], ts[-1]], [_mean([e["return"] for e in eps])] * 2, "-", lw=2.5, color=cmap(i % cmap.N),
                label=f"v{v}")
    if ctrl:
        c = _mean(ctrl)
        if c <= top:
            ax.axhline(c, ls="--", color="0.5", lw=1)
            ax.text(0.01, c, f" controller mean {c:,.0f}", va="bottom", fontsize=8, color="0.4",
                    transform=ax.get_yaxis_transform())
        else:
            ax.text(0.99, 0.02, f"controller episodes: mean {c:,.0f} (above this axis)", va="bottom",
                    ha="right", fontsize=8, color="0.4", transform=ax.transAxes)
    for t in data.trials:
        if t["outcome"] in ("promoted", "rolled_back"):
            x = _minutes(t["t"], started)
            ax.axvline(x, color=OUTCOME_COLOUR[t["outcome"]], lw=1, alpha=0.7)
            ax.text(x, 0.99, f"v{t['version']}{'✓' if t['outcome'] == 'promoted' else '✗'}",
                    transform=ax.get_xaxis_transform(), fontsize=7, ha="center", va="top",
                    color=OUTCOME_COLOUR[t["outcome"]])
    ax.set_ylim(0, top)
    ax.set_xlabel("minutes since the demo started")
    ax.set_ylabel("robot return per policy episode")
    ax.set_title("Robot return of each policy episode, by version")
    if policy:
        ax.legend(fontsize=7, ncol=6, loc="upper left", bbox_to_anchor=(0, -0.18), frameon=False)
    versions = sorted(v for v in by_v if v >= 0)
    gate = {r["version"]: r.get("gate_return") for r in data.published}
    xs = np.arange(len(versions))
    bars.bar(xs, [_mean([e["return"] for e in by_v[v]]) for v in versions],
             color=[OUTCOME_COLOUR.get(data.outcome(v), "tab:blue") for v in versions])
    bars.set_xticks(xs, [f"v{v}" for v in versions])
    bars.set_ylabel("robot mean return")
    twin = bars.twinx()
    g = [(x, gate[v]) for x, v in zip(xs, versions) if gate.get(v) is not None]
    if g:
        twin.plot(*zip(*g), "ko", ms=4)
    twin.ticklabel_format(axis="y", useOffset=False, style="plain")
    twin.set_ylabel("simulator gate return (dots)")
    bars.set_title("Per version: robot mean return (bars) vs the simulator's score (dots)", fontsize=9)
    return _save(fig, out / "returns.png")


def _plot_trials(out: Path, data: RunData) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.5, 1.1 * len(data.trials) + 2), 4))
    rng = np.random.default_rng(0)
    for i, t in enumerate(data.trials):
        for dx, ys, colour in ((-0.2, t["reference_returns"], "0.55"),
                               (0.2, t["returns"], OUTCOME_COLOUR[t["outcome"]])):
            if ys:
                ax.plot(i + dx + rng.uniform(-0.06, 0.06, len(ys)), ys, "o", ms=3, alpha=0.6, color=colour)
                ax.plot([i + dx - 0.12, i + dx + 0.12], [_mean(ys)] * 2, "-", lw=2.5, color=colour)
        p = t["p_not_worse"] if t["outcome"] == "promoted" else t["p_worse"]
        ax.text(i, 1.0, f"{t['outcome'].replace('_', ' ')}" + (f"\np={p:.2f}" if p is not None else ""),
                transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=7,
                color=OUTCOME_COLOUR[t["outcome"]])
    ax.set_xticks(range(len(data.trials)),
                  [f"v{t['version']} vs\n{'ctrl' if t['incumbent'] < 0 else 'v%d' % t['incumbent']}"
                   for t in data.trials], fontsize=8)
    ax.set_ylabel("robot return per episode")
    ax.set_title("On-robot trials: incumbent (grey, left) vs candidate", pad=22)
    if not data.trials:
        ax.text(0.5, 0.5, "no trial in this run", transform=ax.transAxes, ha="center")
    return _save(fig, out / "trials.png")


def _plot_versions(out: Path, data: RunData, started: float) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    m = data.metrics
    if m:
        ax.step([_minutes(r["t"], started) for r in m], [r["policy_version"] for r in m], where="post",
                color="0.6", label="published by the learner")
        for robot in sorted({r for row in m for r in row.get("robots", {})}):
            pts = [(_minutes(row["t"], started), row["robots"][robot]["policy_version"]) for row in m
                   if robot in row.get("robots", {})]
            ax.step(*zip(*pts), where="post", color="tab:blue", label=f"{robot}: driving (-1: controller)")
    for t in data.trials:
        if t["outcome"] in ("promoted", "rolled_back"):
            ax.plot(_minutes(t["t"], started), t["version"], "^" if t["outcome"] == "promoted" else "x",
                    color=OUTCOME_COLOUR[t["outcome"]], ms=8)
    end_v = data.deployable.get("version")
    if end_v is not None and m:
        ax.plot(_minutes(m[-1]["t"], started), end_v, "*", color="gold", ms=14, mec="k",
                label=f"run ends on v{end_v}")
    ax.set_xlabel("minutes since the demo started")
    ax.set_ylabel("policy version")
    ax.set_title("Which policy drove the robot")
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, out / "policy_versions.png")


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
