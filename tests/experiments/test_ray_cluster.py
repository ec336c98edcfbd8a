"""The grid on a two-node Ray cluster on this machine: a node dies mid-run, the grid still ends
with the local pool's table, and the interrupted cells resume from their checkpoints.

Real parts only: `ray start --head` and `ray start --address` (a worker node) as two processes
with their own temp folders and ports, token authentication shared between them, both nodes
advertising 127.0.0.1; the grid CLI (`--ray-address`) as a third process; the tiny grid of the
smoke test with a budget long enough to kill the worker node after its cells checkpointed.

Two jobs (one population per algorithm) on two nodes of one CPU each: one job runs on each node.
Once the worker node's cells have a checkpoint, every process of that node is killed (the raylet
and its workers: a node lost, not a task cancelled); Ray runs the job again on the head, where it
resumes from the checkpoints, and the table must equal the one the local process pool writes.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from learner.experiments.cli import main
from learner.experiments.testing import TINY_GRID_TOML

ray = pytest.importorskip("ray", reason="ray is not installed: the cluster test needs the cluster extra "
                                        "(pip install -e '.[cluster]', part of '.[dev]')")

pytestmark = [pytest.mark.timeout(420), pytest.mark.slow]
log = logging.getLogger(__name__)

# Checkpoints every 10 updates; the budget leaves a few seconds between the worker node's first
# checkpoints and its end (the tiny networks do ~100 updates/s) in which to kill the node.
TOTAL_UPDATES = 150
KILL_AFTER_UPDATES = 20
RAY_CLI = [str(Path(sys.executable).with_name("ray"))]
# `ray start --address 127.0.0.1:P` for the worker node, except that Ray 2.60 turns a loopback
# bootstrap address into the machine's outward address (ray._private.services.
# resolve_ip_for_localhost), which a head listening on loopback only never answers; the switch
# that stops it (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) makes `ray start` refuse worker nodes. So the
# worker node runs Ray's own CLI with that one rewrite turned off. If Ray renames the function,
# the worker node cannot reach the head and the test fails at start-up, never silently leaving loopback.
WORKER_CLI = [sys.executable, "-c",
              "import sys, ray._private.services as s; s.resolve_ip_for_localhost = lambda host: host; "
              "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; sys.exit(main())"]


def _free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _node_pids(root: int) -> list[int]:
    """The processes of a node: `root` (its `ray start`, in a session of its own), everything in
    that session, and every descendant (Ray's workers are the raylet's children; whatever process
    group or session they choose, they are found through their parents)."""
    procs: dict[int, tuple[int, int]] = {}  # pid -> (parent, session)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            procs[int(stat.parent.name)] = (int(fields[1]), int(fields[3]))
    found = {pid for pid, (_, sid) in procs.items() if sid == root} | ({root} if root in procs else set())
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in procs.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return sorted(found)


def _listening_addresses(pids: list[int]) -> set[str]:
    """Addresses the given processes listen on (TCP, from /proc/net: no extra tools)."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                continue
            hex_addr = cols[1].split(":")[0]
            raw = b"".join(bytes.fromhex(hex_addr[i:i + 8])[::-1] for i in range(0, len(hex_addr), 8))
            found.add(socket.inet_ntop(family, raw))
    return found


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


class Node:
    """One `ray start --block` process in a session of its own; kill() ends its whole process group."""

    def __init__(self, cli: list[str], args: list[str], env: dict, log_path: Path) -> None:
        self.cmd, self.env, self.log_path = [*cli, "start", "--block", *args], env, log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120, tries: int = 2) -> None:
        """Start the node; a start that fails (Ray gives a raylet a fixed 30 s to register, which a
        loaded 2-core machine can miss) is torn down and tried again."""
        text = ""
        for attempt in range(1, tries + 1):
            with open(self.log_path, "wb") as fh:
                self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                             start_new_session=True)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self.proc.poll() is None:
                if "Ray runtime started" in self.log_path.read_text(errors="replace"):
                    return
                time.sleep(0.2)
            text = self.log_path.read_text(errors="replace")
            self.kill()
            log.warning("ray node start %d of %d failed:\n%s", attempt, tries, text[-2000:])
        raise AssertionError(f"ray node did not start:\n{text[-3000:]}")

    def pids(self) -> list[int]:
        return _node_pids(self.proc.pid) if self.proc is not None else []

    def raylet_arg(self, name: str) -> str:
        """A flag of this node's raylet command line (its node id, its advertised address)."""
        for pid in self.pids():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            if cmd[0].endswith("/raylet"):
                for arg in cmd:
                    if arg.startswith(f"--{name}="):
                        return arg.split("=", 1)[1]
        raise AssertionError(f"no raylet with --{name} among the node's processes")

    def kill(self) -> None:
        """SIGKILL every process of the node at once: what a machine failure looks like to Ray."""
        if self.proc is None:
            return
        for _ in range(3):  # again, for anything started while the first signals went out
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not self.pids(), f"processes of the ray node outlived SIGKILL: {self.pids()}"


@pytest.fixture
def cluster(tmp_path: Path):
    """A head and a worker node on 127.0.0.1 only, one CPU each, sharing a fresh auth token; torn
    down whatever the test does."""
    token = secrets.token_hex(32)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0",
           # a lost node is noticed within a few seconds, not Ray's default ~30 s
           "RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "2000",
           "RAY_health_check_failure_threshold": "3",
           # the agents' start-up may take longer than Ray's default on a loaded 2-core machine
           "RAY_agent_register_timeout_ms": "120000"}
    env.pop("RAY_ADDRESS", None)
    # Ray turns --node-ip-address 127.0.0.1 (and a driver's 127.0.0.1 address) into the machine's
    # outward address, and then listens on every interface, unless told this is a one-machine
    # cluster; told so, the head listens on 127.0.0.1 only and the grid's driver connects there.
    head_env = {**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    ports = _free_ports(16 + 2 * 20)
    common = ["--num-cpus", "1", "--object-store-memory", str(100 * 1024 * 1024), "--disable-usage-stats"]
    # Ray's unix sockets live under --temp-dir and their paths must stay under 107 bytes: pytest's
    # tmp_path is too deep, so the nodes get a short folder of their own.
    short = Path(tempfile.mkdtemp(prefix="h2oray"))
    head = worker = None
    try:
        head = Node(RAY_CLI, ["--head", "--node-ip-address", "127.0.0.1", "--port", str(ports[0]),
                              "--include-dashboard", "false", "--temp-dir", str(short / "head"),
                              "--ray-client-server-port", str(ports[1]), "--node-manager-port", str(ports[2]),
                              "--object-manager-port", str(ports[3]), "--dashboard-agent-listen-port", str(ports[4]),
                              "--dashboard-agent-grpc-port", str(ports[5]), "--runtime-env-agent-port", str(ports[6]),
                              "--metrics-export-port", str(ports[7]),
                              "--worker-port-list", ",".join(map(str, ports[16:36])), *common],
                    head_env, tmp_path / "ray_head.log")
        head.start()
        address = f"127.0.0.1:{ports[0]}"
        worker = Node(WORKER_CLI, ["--address", address, "--node-ip-address", "127.0.0.1",
                                   "--temp-dir", str(short / "worker"), "--node-manager-port", str(ports[8]),
                                   "--object-manager-port", str(ports[9]), "--dashboard-agent-listen-port",
                                   str(ports[10]), "--dashboard-agent-grpc-port", str(ports[11]),
                                   "--runtime-env-agent-port", str(ports[12]), "--metrics-export-port", str(ports[13]),
                                   "--worker-port-list", ",".join(map(str, ports[36:56])), *common],
                      env, tmp_path / "ray_worker.log")
        worker.start()
        yield {"address": address, "driver_env": head_env, "head": head, "worker": worker}
    finally:
        for node in (worker, head):
            if node is not None:
                node.kill()
        shutil.rmtree(short, ignore_errors=True)


def _cell_dirs(out: Path) -> dict[str, Path]:
    return {f"{a}_seed{s}": out / "stand_still" / "moderate" / "medium" / f"{a}_seed{s}"
            for a in ("h2o", "sac") for s in (0, 1)}


def _checkpointed(cell: Path) -> int:
    try:
        return int(json.loads((cell / "checkpoint.json").read_text())["updates"])
    except (OSError, ValueError, KeyError):
        return 0


def _eval_curve(cell: Path) -> list[tuple]:
    with open(cell / "progress.csv", newline="") as fh:
        return [(r["update"], r["env_steps"], r["eval/real_return"], r["eval/sim_return"])
                for r in csv.DictReader(fh) if r.get("eval/real_return")]


def _attempts(cell: Path) -> list[str]:
    """Where each attempt at the cell ran, in order (driver.run_job's first line per attempt)."""
    text = (cell / "train.log").read_text() if (cell / "train.log").exists() else ""
    return re.findall(r"attempt on ray node (\w+) at ([\d.]+)", text)


def test_grid_on_two_nodes_survives_a_lost_node(tmp_path: Path, cluster: dict, capsys) -> None:
    config = TINY_GRID_TOML.replace("total_updates = 20", f"total_updates = {TOTAL_UPDATES}")
    local_cfg, ray_cfg = tmp_path / "local.toml", tmp_path / "ray.toml"
    local_cfg.write_text(config.format(out=tmp_path / "local_runs", results=tmp_path / "local_results"))
    ray_cfg.write_text(config.format(out=tmp_path / "ray_runs", results=tmp_path / "ray_results"))

    # The reference: the default local process pool.
    assert main([str(local_cfg), "--skip-gates"]) == 0, capsys.readouterr().out

    head, worker = cluster["head"], cluster["worker"]
    head_id, worker_id = head.raylet_arg("node_id")[:12], worker.raylet_arg("node_id")[:12]
    assert head.raylet_arg("node_ip_address") == worker.raylet_arg("node_ip_address") == "127.0.0.1"
    for node in (head, worker):  # nothing of either node listens on the machine's other addresses
        listening = _listening_addresses(node.pids())
        assert listening and all(_is_loopback(a) for a in listening), listening

    driver_log = tmp_path / "driver.log"
    with open(driver_log, "wb") as fh:
        driver = subprocess.Popen([sys.executable, "-m", "learner.experiments", str(ray_cfg), "--skip-gates",
                                   "--ray-address", cluster["address"]], env=cluster["driver_env"], stdout=fh,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        cells = _cell_dirs(tmp_path / "ray_runs")
        # Wait until the worker node's cells have checkpointed but not finished, then lose the node.
        deadline, on_worker = time.monotonic() + 150, []
        while time.monotonic() < deadline:
            on_worker = [k for k, d in cells.items() if any(n == worker_id for n, _ in _attempts(d))]
            if on_worker and all(KILL_AFTER_UPDATES <= _checkpointed(cells[k]) < TOTAL_UPDATES
                                 and not (cells[k] / "summary.json").exists() for k in on_worker):
                break
            assert driver.poll() is None, driver_log.read_text()
            time.sleep(0.1)
        else:
            raise AssertionError(f"the worker node's cells never reached a checkpoint: {on_worker}\n"
                                 f"{driver_log.read_text()[-3000:]}")
        at_kill = {k: _checkpointed(cells[k]) for k in on_worker}
        worker.kill()
        rc = driver.wait(timeout=150)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=10)
    out = driver_log.read_text()
    assert rc == 0, out[-5000:]
    assert json.loads(out.strip().splitlines()[-1]) == {"done_before": 0, "ran": 4, "failed": []}

    # The cells ran on both nodes; the worker node's cells ran again on the head, from their checkpoints.
    on_head = [k for k, d in cells.items() if _attempts(d) == [(head_id, "127.0.0.1")]]
    assert on_head and on_worker and set(on_head) | set(on_worker) == set(cells), (on_head, on_worker)
    for k in on_worker:
        assert [n for n, _ in _attempts(cells[k])] == [worker_id, head_id], k
        text = (cells[k] / "train.log").read_text()
        resumed = [int(u) for u in re.findall(r"resumed \d+ member\(s\) at epoch \d+ \((\d+) updates\)", text)]
        assert len(resumed) == 1 and at_kill[k] <= resumed[0] < TOTAL_UPDATES, (k, resumed, at_kill)

    # Same numbers as the local pool: the table, and every cell's evaluation curve.
    def table(folder: str) -> list[dict]:  # every figure but the wall time, which is the machine's
        with open(tmp_path / folder / "results.csv", newline="") as fh:
            return [{k: v for k, v in row.items() if k != "wall_min"} for row in csv.DictReader(fh)]

    assert table("ray_results") == table("local_results")
    local_cells = _cell_dirs(tmp_path / "local_runs")
    for k, d in cells.items():
        assert _eval_curve(d) == _eval_curve(local_cells[k]), k
        assert json.loads((d / "summary.json").read_text())["updates"] == TOTAL_UPDATES
