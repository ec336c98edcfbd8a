"""Protocol speed: message encode+decode of 64-transition batches, serial frame encode+decode.

Prints one table; rates are per second on this machine, all measured in the same run so ratios
compare under the same load. Usage: .venv/bin/python benchmarks/bench_protocol.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

from protocol.crc import crc32, crc32_reference
from protocol.frames import FrameDecoder, decode_command, decode_state, encode_command, encode_state
from protocol.messages import Hello, decode, empty_transitions, encode, schema_hash
from protocol.robot_types import MotorCommand, RobotState


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of fn, timed in batches until `seconds` have passed (best of 3 windows)."""
    fn()
    best = 0.0
    for _ in range(3):
        n, start = 0, time.perf_counter()
        batch = 1
        while (elapsed := time.perf_counter() - start) < seconds / 3:
            for _ in range(batch):
                fn()
            n += batch
            batch = min(batch * 2, 1024)
        best = max(best, n / elapsed)
    return best


def transitions_batch(obs_dim: int, act_dim: int, rows: int = 64):
    rng = np.random.default_rng(0)
    t = empty_transitions("bench", 0, rows, obs_dim, act_dim)
    t.obs[:] = rng.normal(size=t.obs.shape)
    t.next_obs[:] = rng.normal(size=t.obs.shape)
    t.act[:] = rng.uniform(-1, 1, size=t.act.shape)
    t.rew[:] = rng.normal(size=rows)
    t.logp[:] = rng.normal(size=rows)
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="measuring time per row of the table")
    args = parser.parse_args()
    rows: list[tuple[str, float, str]] = []

    for obs_dim, act_dim in ((4, 1), (17, 6)):
        t = transitions_batch(obs_dim, act_dim)
        buf = encode(t)
        enc = rate(lambda: encode(t), args.seconds)
        dec = rate(lambda: decode(buf), args.seconds)
        both = rate(lambda: decode(encode(t)), args.seconds)
        label = f"TRANSITIONS 64 x obs{obs_dim}/act{act_dim} ({len(buf)} B)"
        rows += [
            (f"{label} encode", enc, "msg/s"),
            (f"{label} decode", dec, "msg/s"),
            (f"{label} encode+decode", both, "msg/s"),
            (f"{label} encode+decode, transitions", both * 64, "rows/s"),
        ]
    hello = Hello(robot_id="r1", schema_hash=schema_hash(), task="stand_still", obs_dim=4, act_dim=1)
    rows.append(("HELLO encode+decode", rate(lambda: decode(encode(hello)), args.seconds), "msg/s"))

    rng = np.random.default_rng(1)
    state = RobotState(t_us=123456789, joint_pos=rng.normal(size=6).astype(np.float32),
                       joint_vel=rng.normal(size=6).astype(np.float32), joint_torque=rng.normal(size=6).astype(np.float32))
    cmd = MotorCommand(q_des=rng.normal(size=6).astype(np.float32), kp=np.full(6, 20, np.float32),
                       kd=np.full(6, 0.5, np.float32), tau_ff=rng.normal(size=6).astype(np.float32))
    decoder = FrameDecoder()
    state_wire = encode_state(state, 1)
    cmd_wire = encode_command(cmd, 1)
    rows.append(("STATE frame encode", rate(lambda: encode_state(state, 7), args.seconds), "frame/s"))
    rows.append(("STATE frame feed+decode", rate(lambda: decode_state(decoder.feed(state_wire)[0].payload), args.seconds), "frame/s"))
    rows.append(("STATE encode+feed+decode", rate(lambda: decode_state(decoder.feed(encode_state(state, 7))[0].payload), args.seconds), "frame/s"))
    rows.append(("COMMAND frame encode", rate(lambda: encode_command(cmd, 7), args.seconds), "frame/s"))
    rows.append(("COMMAND frame feed+decode", rate(lambda: decode_command(decoder.feed(cmd_wire)[0].payload), args.seconds), "frame/s"))
    rows.append(("COMMAND encode+feed+decode", rate(lambda: decode_command(decoder.feed(encode_command(cmd, 7))[0].payload), args.seconds), "frame/s"))
    zeros_state = RobotState()  # mostly zero bytes: worst case for COBS (one block per zero)
    rows.append(("STATE all-zero encode+feed+decode", rate(lambda: decode_state(decoder.feed(encode_state(zeros_state, 7))[0].payload), args.seconds), "frame/s"))
    body = state_wire[:-1]
    zl = rate(lambda: crc32(body), args.seconds)
    ref = rate(lambda: crc32_reference(body), args.seconds)
    rows.append((f"CRC-32 zlib, {len(body)} B", zl, "/s"))
    rows.append((f"CRC-32 table-driven Python, {len(body)} B", ref, "/s"))
    assert decoder.dropped_total == 0

    width = max(len(name) for name, _, _ in rows)
    print(f"{'benchmark':<{width}}  {'rate':>12}  unit")
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>12,.0f}  {unit}")
    print(f"zlib CRC / Python table CRC speed ratio: {zl / ref:.0f}x")


if __name__ == "__main__":
    main()
