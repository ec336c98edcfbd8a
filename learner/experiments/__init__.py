"""Experiment driver: the H2O paper's comparison as a resumable grid of learner.train runs.

    python -m learner.experiments configs/experiments/wheel_legged_reduced.toml
    python -m learner.experiments configs/experiments/wheel_legged_reduced.toml --report-only

Modules: config (grid TOML -> cells), datasets (genuinely medium offline data in the real
profile), driver (process pool, skip/resume), report (paper-layout table, plots).
"""
