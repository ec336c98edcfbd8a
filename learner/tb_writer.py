"""TensorBoard events for `learner.train` and the learner service: one writer rule for both.

`--tensorboard` in either program writes event files into `<run folder>/tb/` through torch's
SummaryWriter when the tensorboard package is installed (the learner extra brings it). Without it
the program says so once and goes on with its CSV / JSONL files, which hold the same numbers.
"""

from __future__ import annotations

import logging
import math
import numbers
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger(__name__)

TB_DIR = "tb"  # beside progress.csv (learner.train) or metrics.jsonl (the service)
_warned = False


def open_writer(run_dir: str | Path, **kw: Any):
    """A SummaryWriter on `<run_dir>/tb`, or None (and one warning per process) when tensorboard
    is not installed. `kw` goes to SummaryWriter (e.g. flush_secs)."""
    global _warned
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises it when the tensorboard package is missing
        if not _warned:
            log.warning("tensorboard is not installed (pip install '.[learner]' brings it); writing no "
                        "TensorBoard events, the CSV/JSONL files only")
            _warned = True
        return None
    return SummaryWriter(str(Path(run_dir) / TB_DIR), **kw)


def add_scalars(writer, values: dict[str, Any], step: int, skip: Iterable[str] = (), prefix: str = "") -> int:
    """Each finite number in `values` (bools and other types left out, and the keys in `skip`) as
    the scalar `prefix + key` at `step`; returns how many were written."""
    n = 0
    for key, value in values.items():
        if key in skip or isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        if not math.isfinite(float(value)):  # a value that does not exist yet (NaN): no point, not a spike
            continue
        writer.add_scalar(prefix + key, float(value), step)
        n += 1
    return n
