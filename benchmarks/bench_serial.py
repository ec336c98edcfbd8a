"""Serial link speed over a real pty against the virtual robot firmware (a separate process).

Prints, in one run (the machine is shared and noisy, so compare figures side by side):
  1. lock-step COMMAND -> STATE round trip (one physics step per command), p50/p99/max;
  2. HEARTBEAT echo round trip (no physics: the line + both processes), p50/p99/max;
  3. send_command() cost for the caller (it only queues), p50/p99;
  4. throughput: COMMANDs pipelined (a window in flight), frames/s each way;
  5. real time (200 Hz firmware): STATE inter-arrival p50/p99 and command -> next STATE latency;
  6. in-process parts of a round trip (encode, decode, one MuJoCo control step), to explain 1;
  7. A/B in one run: lock-step round trip with the sender's direct write vs the writer-thread
     hand-off (`SerialLinkConfig.direct_write`), interleaved in blocks so load noise hits both.

Usage: .venv/bin/python benchmarks/bench_serial.py [--n 2000] [--window 8] [--realtime-s 3]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from firmware_bridge.link import SerialLink, SerialLinkConfig  # noqa: E402
from protocol.robot_types import MotorCommand  # noqa: E402


def pct(samples_s: list[float] | np.ndarray) -> str:
    a = np.asarray(samples_s) * 1e3
    return f"p50 {np.percentile(a, 50):7.3f} ms  p99 {np.percentile(a, 99):7.3f} ms  max {a.max():7.3f} ms  (n={a.size})"


def start_firmware(lockstep: bool, profile: str) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "firmware_bridge.virtual_robot", "--device", "", "--profile", profile,
           "--log-level", "WARNING", "--watchdog-ms", "500"]
    if lockstep:
        cmd.append("--lockstep")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    device = proc.stdout.readline().strip()
    if not device:
        raise RuntimeError("virtual robot did not print its device")
    return proc, device


def stop_firmware(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=10)


def bench_lockstep(args: argparse.Namespace) -> None:
    proc, device = start_firmware(True, args.profile)
    link = SerialLink(SerialLinkConfig(url=device, write_queue_frames=max(64, 4 * args.window)))
    try:
        link.configure()
        if not link.activate():
            raise RuntimeError("firmware did not confirm ENABLE")
        cmd = MotorCommand.torque([0, 0, 0.1, 0, 0, 0.1])
        for _ in range(50):  # warm-up
            i = link.states_received
            link.send_command(cmd)
            link.wait_for_state(timeout_s=2.0, after_index=i)
        rtt, send_cost = [], []
        for _ in range(args.n):
            i = link.states_received
            t0 = time.perf_counter()
            link.send_command(cmd)
            t1 = time.perf_counter()
            if link.wait_for_state(timeout_s=2.0, after_index=i) is None:
                raise RuntimeError("lost a lock-step reply")
            rtt.append(time.perf_counter() - t0)
            send_cost.append(t1 - t0)
        hb = []
        for _ in range(args.n // 2):
            before = len(link.round_trip_samples()[0])
            link.send_heartbeat()
            end = time.monotonic() + 2.0
            while len(link.round_trip_samples()[0]) == before and time.monotonic() < end:
                time.sleep(0)  # yield to the reader thread
        hb = link.round_trip_samples()[0]
        # Throughput: keep `window` commands in flight.
        n_tp = args.n * 2
        sent = 0
        start_states = link.states_received
        t0 = time.perf_counter()
        while link.states_received - start_states < n_tp:
            while sent < n_tp and sent - (link.states_received - start_states) < args.window:
                link.send_command(cmd)
                sent += 1
            link.wait_for_state(timeout_s=2.0)
        dt = time.perf_counter() - t0
        c = link.stats()["counters"]
        print("lock-step (firmware process, MuJoCo step per COMMAND):")
        print(f"  COMMAND -> STATE round trip   {pct(rtt)}")
        print(f"  HEARTBEAT echo round trip     {pct(hb)}")
        print(f"  send_command() caller cost    {pct(send_cost)}")
        print(f"  pipelined (window {args.window}): {n_tp / dt:8.0f} COMMAND/s host->fw, {n_tp / dt:8.0f} STATE/s fw->host"
              f"  ({(c.bytes_out + c.bytes_in) / dt / 1e6:.2f} MB/s both ways, bad frames {sum(c.bad_frames.values())})")
    finally:
        link.close()
        stop_firmware(proc)


def bench_realtime(args: argparse.Namespace) -> None:
    proc, device = start_firmware(False, args.profile)
    arrivals: list[float] = []
    link = SerialLink(SerialLinkConfig(url=device), on_state=lambda s: arrivals.append(s.received_s))
    try:
        link.configure()
        if not link.activate():
            raise RuntimeError("firmware did not confirm ENABLE")
        cmd = MotorCommand.torque([0, 0, 0.1, 0, 0, 0.1])
        arrivals.clear()
        end = time.monotonic() + args.realtime_s
        period = 0.005
        next_t = time.monotonic()
        while time.monotonic() < end:  # a 200 Hz host loop, phase-shifted from the firmware
            link.send_command(cmd)
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))
        gaps = np.diff(arrivals)
        c2s = link.round_trip_samples()[1]
        print(f"real time (200 Hz firmware, {args.realtime_s:.0f} s):")
        print(f"  STATE inter-arrival           {pct(gaps)}")
        print(f"  COMMAND -> next STATE         {pct(c2s)}  (bounded by the 5 ms tick)")
        print(f"  seq lost {link.stats()['counters'].seq_lost}")
    finally:
        link.close()
        stop_firmware(proc)


def bench_parts(args: argparse.Namespace) -> None:
    import timeit

    from firmware_bridge.virtual_robot import VirtualRobotConfig, make_plant
    from protocol.frames import FrameDecoder, encode_command, encode_state

    cmd = MotorCommand.torque([0, 0, 0.1, 0, 0, 0.1])
    plant = make_plant(VirtualRobotConfig(profile=args.profile))
    state = plant.reset()
    state_frame = encode_state(state, 1)
    decoder = FrameDecoder()
    n = 5000
    parts = {
        "encode COMMAND frame": lambda: encode_command(cmd, 1),
        "decode STATE frame": lambda: decoder.feed(state_frame),
        "encode STATE frame": lambda: encode_state(state, 1),
        "MuJoCo control step (5 ms)": lambda: plant.step(cmd),
    }
    print("parts (in-process, best of 3):")
    for name, fn in parts.items():
        best = min(timeit.repeat(fn, number=n, repeat=3)) / n
        print(f"  {name:28s} {best * 1e6:7.1f} us")


def bench_direct_write_ab(args: argparse.Namespace) -> None:
    proc, device = start_firmware(True, args.profile)
    link = SerialLink(SerialLinkConfig(url=device))
    try:
        link.configure()
        if not link.activate():
            raise RuntimeError("firmware did not confirm ENABLE")
        cmd = MotorCommand.torque([0, 0, 0.1, 0, 0, 0.1])
        rtt: dict[bool, list[float]] = {True: [], False: []}
        cost: dict[bool, list[float]] = {True: [], False: []}
        for _block in range(20):
            for direct in (True, False):
                link.config.direct_write = direct  # read at each send
                for _ in range(max(1, args.n // 40)):
                    i = link.states_received
                    t0 = time.perf_counter()
                    link.send_command(cmd)
                    t1 = time.perf_counter()
                    if link.wait_for_state(timeout_s=2.0, after_index=i) is None:
                        raise RuntimeError("lost a lock-step reply")
                    rtt[direct].append(time.perf_counter() - t0)
                    cost[direct].append(t1 - t0)
        r = {d: np.percentile(rtt[d], 50) for d in rtt}
        c = {d: np.percentile(cost[d], 50) for d in cost}
        print("A/B lock-step, direct write vs writer-thread hand-off (interleaved blocks):")
        print(f"  round trip   direct {pct(rtt[True])}")
        print(f"               queued {pct(rtt[False])}")
        print(f"  send cost    direct {pct(cost[True])}")
        print(f"               queued {pct(cost[False])}")
        print(f"  p50 ratio queued/direct: round trip {r[False] / r[True]:.2f}x, send cost {c[False] / c[True]:.2f}x")
    finally:
        link.close()
        stop_firmware(proc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2000, help="round trips measured (lock-step)")
    p.add_argument("--window", type=int, default=8, help="COMMANDs in flight for the throughput run")
    p.add_argument("--realtime-s", type=float, default=3.0, help="seconds of the real-time run")
    p.add_argument("--profile", default="moderate", help="virtual robot dynamics profile")
    args = p.parse_args()
    print(f"bench_serial: {platform.node()} {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}")
    bench_lockstep(args)
    bench_realtime(args)
    bench_parts(args)
    bench_direct_write_ab(args)


if __name__ == "__main__":
    main()
