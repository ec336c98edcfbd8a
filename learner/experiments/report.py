"""Results table (markdown + CSV, the paper's layout) and plots from the cells' run folders (or
their archived copies in <results_dir>/cells/, learner/experiments/archive.py).

Layout (H2O paper, Table 1): one row per (task, gap, dataset), one column per algorithm, entry =
final real-profile return, mean ± std over seeds. Because simulation-based evaluation can mislead,
the markdown also gives the sim-profile return of the same policies, and the CSV has both plus
per-seed values. Plots: learning curves (real solid, sim dashed, mean ± std over seeds) per row,
and final sim return vs real return per seed, coloured by algorithm (the "misleading simulator"
picture: points far below the diagonal look good in sim and fail on the robot).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from learner.experiments.archive import archive_cell, source_for
from learner.experiments.config import GridConfig

CSV_FIELDS = ("task", "gap", "dataset", "algorithm", "n_seeds", "real_mean", "real_std", "sim_mean", "sim_std",
              "best_real_mean", "last5_real_mean", "updates", "wall_min", "real_per_seed", "sim_per_seed", "behaviour_return", "tuned_return")


def _read_rows(csv_path: Path) -> list[dict]:
    if not csv_path.exists():
        return []
    with open(csv_path, newline="") as fh:
        return [r for r in csv.DictReader(fh) if r.get("eval/real_return")]


def collect(cfg: GridConfig) -> list[dict]:
    """One dict per cell finished at its algorithm's budget: summary figures plus its evaluation curve."""
    out = []
    for cell in cfg.cells():
        d = source_for(cfg, cell)  # its run folder, else its archived copy (learner/experiments/archive.py)
        if d is None:
            continue  # not run, or a summary from a smaller budget: not finished at this one
        s = json.loads((d / "summary.json").read_text())
        curve = [(int(r["update"]), float(r["eval/real_return"]), float(r["eval/sim_return"]))
                 for r in _read_rows(d / "progress.csv")]
        out.append({"task": cell.task, "gap": cell.gap.name, "dataset": cell.dataset.name, "algorithm": cell.algorithm,
                    "seed": cell.seed, "real": float(s["final_real_return"]), "sim": float(s["final_sim_return"]),
                    "best_real": float(s["best_real_return"]), "updates": int(s["updates"]),
                    "wall_s": float(s.get("wall_s", math.nan)), "curve": curve})
    return out


def _dataset_meta(cfg: GridConfig, task: str, gap: str, dataset: str) -> dict:
    """The dataset's sidecar JSON: the driver's own (collected data) or the one beside a file dataset
    (learner.experiments.behaviour_data writes it; its expert policy's return stands in for the tuned
    controller, which only the wheel-legged tasks have)."""
    spec = next((d for d in cfg.datasets if d.name == dataset), None)
    if spec is not None and spec.kind == "file":
        side = Path(spec.path).with_suffix(".json")
        meta = json.loads(side.read_text()) if side.exists() else {}
        if "tuned_return" not in meta and "expert_eval_return" in meta:
            meta["tuned_return"] = meta["expert_eval_return"]
        return meta
    g = next(g for g in cfg.gaps if g.name == gap)
    side = Path(cfg.out_dir) / "data" / f"{task}_{g.real_profile}_{dataset}.json".replace("/", "_")
    return json.loads(side.read_text()) if side.exists() else {}


def aggregate(cfg: GridConfig, cells: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for c in cells:
        groups[(c["task"], c["gap"], c["dataset"], c["algorithm"])].append(c)
    rows = []
    for (task, gap, ds, algo), cs in groups.items():
        cs.sort(key=lambda c: c["seed"])
        real, sim = np.array([c["real"] for c in cs]), np.array([c["sim"] for c in cs])
        meta = _dataset_meta(cfg, task, gap, ds)
        rows.append({"task": task, "gap": gap, "dataset": ds, "algorithm": algo, "n_seeds": len(cs),
                     "real_mean": real.mean(), "real_std": real.std(), "sim_mean": sim.mean(), "sim_std": sim.std(),
                     "best_real_mean": float(np.mean([c["best_real"] for c in cs])),
                     # how much the final number swings: each seed's last five evaluations, averaged
                     "last5_real_mean": float(np.mean([np.mean([r for _, r, _ in c["curve"][-5:]] or [c["real"]])
                                                       for c in cs])),
                     "updates": min(c["updates"] for c in cs),
                     # the population job's wall time (its cells share it; NaN for runs from before it was kept)
                     "wall_min": float(np.mean([c["wall_s"] for c in cs])) / 60.0,
                     "real_per_seed": " ".join(f"{v:.0f}" for v in real), "sim_per_seed": " ".join(f"{v:.0f}" for v in sim),
                     "behaviour_return": meta.get("behaviour_return_mean", math.nan),
                     "tuned_return": meta.get("tuned_return", math.nan)})
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.1f}" if isinstance(v, float) else v) for k, v in r.items()})
    path.write_text(buf.getvalue())


def markdown_table(cfg: GridConfig, rows: list[dict]) -> str:
    """Rows task/gap/dataset, columns algorithms; 'real mean ± std (sim mean)'; best real in bold."""
    by = {(r["task"], r["gap"], r["dataset"], r["algorithm"]): r for r in rows}
    head = ["task", "gap", "dataset", "data / tuned ctrl"] + list(cfg.algorithms)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task in cfg.tasks:
        for gap in cfg.gaps:
            for ds in cfg.datasets:
                present = [by.get((task, gap.name, ds.name, a)) for a in cfg.algorithms]
                if not any(present):
                    continue
                best = max((r["real_mean"] for r in present if r), default=None)
                ref = next(r for r in present if r)
                cells = []
                for r in present:
                    if r is None:
                        cells.append("not finished")
                        continue
                    txt = f"{r['real_mean']:.0f} ± {r['real_std']:.0f}"
                    if r["real_mean"] == best:
                        txt = f"**{txt}**"
                    seeds = f", n={r['n_seeds']}" if r["n_seeds"] != len(cfg.seeds) else ""
                    cells.append(f"{txt} (sim {r['sim_mean']:.0f}{seeds})")
                data = " / ".join("n/a" if math.isnan(v) else f"{v:.0f}"
                                  for v in (ref["behaviour_return"], ref["tuned_return"]))
                lines.append("| " + " | ".join([task, gap.name, ds.name, data] + cells) + " |")
    return "\n".join(lines) + "\n"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(cfg: GridConfig, cells: list[dict], path: Path) -> None:
    """One panel per (task, gap, dataset): mean over seeds, real solid with ± std band, sim dashed."""
    plt = _plt()
    panels = sorted({(c["task"], c["gap"], c["dataset"]) for c in cells})
    if not panels:
        return
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows), squeeze=False)
    colours = {a: f"C{i}" for i, a in enumerate(cfg.algorithms)}
    for ax, panel in zip(axes.flat, panels):
        for algo in cfg.algorithms:
            curves = [c["curve"] for c in cells if (c["task"], c["gap"], c["dataset"]) == panel
                      and c["algorithm"] == algo and c["curve"]]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            x = np.array([p[0] for p in curves[0][:n]])
            real = np.array([[p[1] for p in c[:n]] for c in curves])
            sim = np.array([[p[2] for p in c[:n]] for c in curves])
            ax.plot(x, real.mean(0), color=colours[algo], label=algo)
            ax.fill_between(x, real.mean(0) - real.std(0), real.mean(0) + real.std(0), color=colours[algo], alpha=0.15)
            ax.plot(x, sim.mean(0), color=colours[algo], ls="--", lw=1)
        ax.set_title(" / ".join(panel) + " (solid real, dashed sim)", fontsize=8)
        ax.set_xlabel("updates")
        ax.set_ylabel("return")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_sim_vs_real(cfg: GridConfig, cells: list[dict], path: Path) -> None:
    """Final sim return (x) vs real return (y), one point per seed and row, colour = algorithm."""
    plt = _plt()
    if not cells:
        return
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    markers = "osD^vP*X"
    rows = sorted({(c["task"], c["gap"], c["dataset"]) for c in cells})
    for i, algo in enumerate(cfg.algorithms):
        for j, row in enumerate(rows):
            pts = [(c["sim"], c["real"]) for c in cells if c["algorithm"] == algo and (c["task"], c["gap"], c["dataset"]) == row]
            if pts:
                xs, ys = zip(*pts)
                ax.scatter(xs, ys, color=f"C{i}", marker=markers[j % len(markers)], s=28, alpha=0.8,
                           label=algo if j == 0 else None)
    lo = min(min(c["sim"], c["real"]) for c in cells)
    hi = max(max(c["sim"], c["real"]) for c in cells)
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls=":")
    ax.set_xlabel("final return in the simulator (sim profile)")
    ax.set_ylabel("final return on the 'real' profile")
    ax.set_title("sim vs real evaluation of the same policies\n(below the diagonal: sim over-promises)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def backup_line(cfg: GridConfig) -> str:
    """Which TD backup each algorithm's critic used (soft: with the entropy term), as configured."""
    from learner.algorithms import REGISTRY, config_class
    from learner.algorithms.base import config_from
    from learner.task_defaults import algorithm_config

    parts = []
    for algo in cfg.algorithms:
        fixed = REGISTRY[algo].backup_note  # a target that does not follow backup_entropy (H2O+, BC)
        if fixed:
            parts.append(f"{algo} {fixed}")
            continue
        values = algorithm_config(algo, cfg.tasks[0], hidden=cfg.train.get("hidden", "256-256"), seed=0,
                                  overrides=cfg.algo_overrides(algo))
        parts.append(f"{algo} {'soft' if config_from(config_class(algo), values).backup_entropy else 'hard'}")
    return "Critic backup (soft: the target includes -alpha log pi): " + ", ".join(parts) + "."


def time_text(cfg: GridConfig, rows: list[dict]) -> str:
    """Wall minutes of each row's population jobs (one per method; its seeds train together), as
    measured on whatever machine ran them; rows from before the time was kept are left out."""
    lines = []
    for task in cfg.tasks:
        for gap in cfg.gaps:
            for ds in cfg.datasets:
                got = [(r["algorithm"], r["wall_min"]) for a in cfg.algorithms for r in rows
                       if (r["task"], r["gap"], r["dataset"], r["algorithm"]) == (task, gap.name, ds.name, a)
                       and math.isfinite(r["wall_min"])]
                if got:
                    lines.append(f"- {task} / {gap.name} / {ds.name}: " + ", ".join(f"{a} {m:.0f}" for a, m in got)
                                 + f" (sum {sum(m for _, m in got):.0f})")
    if not lines:
        return ""
    return "Wall time of each population job, minutes (the seeds of a row train together):\n" + "\n".join(lines) + "\n"


def budget_text(cfg: GridConfig) -> str:
    """'Budget 60000 updates per cell (cql: 30000)': the grid's budget and any per-algorithm one."""
    own = {a: cfg.updates_for(a) for a in cfg.algorithms if cfg.updates_for(a) != cfg.total_updates}
    extra = " (" + ", ".join(f"{a}: {n}" for a, n in own.items()) + ")" if own else ""
    return f"Budget {cfg.total_updates} updates per cell{extra}"


def write_report(cfg: GridConfig) -> dict:
    """Write results.csv, results.md, learning_curves.png, sim_vs_real.png into cfg.results_dir."""
    out = Path(cfg.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    for cell in cfg.cells():  # cells finished before the driver archived them, or by another command
        archive_cell(cfg, cell)
    cells = collect(cfg)
    rows = aggregate(cfg, cells)
    write_csv(rows, out / "results.csv")
    table = markdown_table(cfg, rows)
    total = len(list(cfg.cells()))
    (out / "results.md").write_text(
        f"# {cfg.name}\n\nFinal return on the real profile, mean ± std over seeds {cfg.seeds} "
        f"(in brackets: the same policies evaluated in the simulator). {budget_text(cfg)}; {len(cells)} of {total} cells finished. 'data / tuned ctrl': mean episode return of the "
        f"offline data's behaviour policy and of the tuned controller on the real profile (for a file dataset with a sidecar JSON: of its expert policy).\n\n{table}"
        f"\n{backup_line(cfg)}\n\n{time_text(cfg, rows)}")
    plot_learning_curves(cfg, cells, out / "learning_curves.png")
    plot_sim_vs_real(cfg, cells, out / "sim_vs_real.png")
    return {"cells": len(cells), "of": total, "table": table}
