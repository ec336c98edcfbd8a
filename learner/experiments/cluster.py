"""The grid's population jobs as Ray tasks on a cluster (the optional `cluster` extra: ray[default]).

Only the executor differs from the local pool: a job is the same `driver.run_job` call on the
same plain-data PopulationJob, and RayJobPool offers the two methods of
concurrent.futures.Executor the driver uses (submit, shutdown), so the driver's collecting,
logging and progress code is shared. What Ray adds is placement (one job a CPU anywhere in the
cluster) and retries: a job whose node dies is run again (`max_retries`) on a node still alive,
and because every cell checkpoints atomically in its run folder and runs with train.py's
`resume = true`, the retry continues from the last checkpoint and ends with the numbers of an
uninterrupted run.

What the driver expects of the cluster (docs/cluster.md):
- every node runs the same commit of this repository, installed with the `learner` extra, in the
  same Python environment (tasks import `learner.experiments.driver` by name);
- the grid's `out_dir` (datasets, run folders) is the same path on every node and on the head,
  on a filesystem they all see (NFS or similar): datasets are written by the head before any job
  starts and read by the jobs, and a retried job finds its checkpoint there whatever node ran it.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any, Callable

log = logging.getLogger(__name__)


class RayUnavailableError(RuntimeError):
    """A cluster address was given but ray is not installed (pip install -e '.[cluster]')."""


def ray_job(job: Any) -> dict:
    """Body of one Ray task: the driver's run_job, told which node it runs on so that each cell's
    train.log records every attempt (a retried job logs a second line naming another node)."""
    import ray

    from learner.experiments.driver import run_job

    ctx = ray.get_runtime_context()
    return run_job(job, where=f"ray node {ctx.get_node_id()[:12]} at {ray.util.get_node_ip_address()}")


class RayJobPool:
    """Submit population jobs as Ray tasks; futures are concurrent.futures.Future objects, so the
    driver waits on them exactly as on a ProcessPoolExecutor's."""

    def __init__(self, address: str, max_retries: int = 3, num_cpus: float = 1.0) -> None:
        try:
            import ray
        except ImportError as exc:
            raise RayUnavailableError(
                f"a Ray cluster address ({address!r}) was given but ray is not installed: "
                "pip install -e '.[cluster]'") from exc
        self._ray = ray
        # The driver's own log lines stay on the head; the jobs' lines go to each cell's train.log
        # (shared filesystem), so the workers' stdout is not forwarded here as well.
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        resources = ray.cluster_resources()
        log.info("connected to Ray cluster at %s: %d node(s), %.0f CPU(s)", address,
                 sum(1 for n in ray.nodes() if n.get("Alive")), resources.get("CPU", 0.0))
        # A job is one process with torch threads = 1: one CPU. max_retries covers system failures
        # (a worker or node dying); run_job itself never raises, so exceptions are not retried.
        self._task = ray.remote(num_cpus=num_cpus, max_retries=max_retries, retry_exceptions=False)(ray_job)
        self._refs: list = []

    def submit(self, fn: Callable[..., dict], job: Any) -> Future:
        """Run `fn(job)` as a Ray task; `fn` must be driver.run_job (the only job body there is)."""
        from learner.experiments.driver import run_job

        if fn is not run_job:
            raise ValueError("RayJobPool runs driver.run_job only")
        ref = self._task.remote(job)
        self._refs.append(ref)
        return ref.future()

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Disconnect from the cluster; with cancel_futures (Ctrl-C on the head) stop the running
        jobs too, as the local pool terminates its workers (their checkpoints keep what they did)."""
        if cancel_futures:
            for ref in self._refs:
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:  # a finished or lost task: nothing to stop
                    log.debug("cancel of %s failed", ref, exc_info=True)
        self._ray.shutdown()
