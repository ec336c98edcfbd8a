"""Hardware-in-the-loop comparison: how a replayed run's host commands differ from the original's.

`compare_host_streams` lines up the host frames of an original recording (a tap's, tap.py) and of
a replayed run (replayer.py): identical byte for byte, or a `CommandDiff` naming the first
divergent tick, the action deltas and the state-machine frames (ENABLE/DISABLE/ESTOP/ESTOP_CLEAR)
of each side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from firmware_bridge.recorder import HOST_TO_FW
from firmware_bridge.hil.recordings import CONTROL_TYPES, DecodedRecording, decode_recording
from protocol.frames import Frame, FrameType, unpack_command
from protocol.robot_types import ACTUATOR_NAMES

COMMAND_FIELDS = ("q_des", "qd_des", "kp", "kd", "tau_ff")


@dataclass
class CommandDiff:
    """How a replayed host stream differs from the original one."""

    identical: bool  # every original host frame came back byte for byte, in order
    frames_compared: int
    original_frames: int
    replayed_frames: int
    first_divergent_frame: int | None  # index among host frames (heartbeats excluded)
    first_divergent_tick: int | None  # index among COMMAND frames (= control tick)
    ticks_compared: int
    divergent_ticks: int
    max_abs_delta: dict[str, list[float]]  # command field -> per-actuator max |replayed - original|
    deltas_at_first: dict[str, list[float]]  # command field -> per-actuator delta at the first divergent tick
    transitions_original: list[tuple[int, str]]  # (tick, ENABLE/DISABLE/ESTOP/ESTOP_CLEAR)
    transitions_replayed: list[tuple[int, str]]
    # (tick, kind) where the kind of COMMAND changes: DRIVE (torques/targets), DAMPING (kd only),
    # ZERO (all zero: onboard PASSIVE). How onboard's safety FSM shows on the wire.
    command_kinds_original: list[tuple[int, str]]
    command_kinds_replayed: list[tuple[int, str]]
    extra_replayed_frames: int  # frames the host sent after the recording ran out

    def report(self) -> str:
        lines = [
            f"host frames: original {self.original_frames}, replayed {self.replayed_frames}, compared {self.frames_compared}",
            f"commands compared: {self.ticks_compared}, divergent: {self.divergent_ticks}",
        ]
        if self.identical:
            lines.append("IDENTICAL: every original host frame was reproduced byte for byte")
        else:
            lines.append(f"DIVERGED at host frame {self.first_divergent_frame}, "
                         f"first divergent tick {self.first_divergent_tick}")
            for name, delta in self.deltas_at_first.items():
                if any(delta):
                    lines.append(f"  at tick {self.first_divergent_tick}: d{name} = "
                                 + " ".join(f"{a}:{d:+.4g}" for a, d in zip(ACTUATOR_NAMES, delta) if d))
            for name, delta in self.max_abs_delta.items():
                if any(delta):
                    lines.append(f"  max |d{name}| = " + " ".join(f"{a}:{d:.4g}" for a, d in zip(ACTUATOR_NAMES, delta) if d))
        if self.transitions_original != self.transitions_replayed:
            lines.append(f"  state-machine frames original: {self.transitions_original}")
            lines.append(f"  state-machine frames replayed: {self.transitions_replayed}")
        else:
            lines.append(f"state-machine frames (same on both sides): {self.transitions_original}")
        if self.command_kinds_original != self.command_kinds_replayed:
            lines.append(f"  command kinds original: {self.command_kinds_original}")
            lines.append(f"  command kinds replayed: {self.command_kinds_replayed}")
        else:
            lines.append(f"command kinds (same on both sides): {self.command_kinds_original}")
        if self.extra_replayed_frames:
            lines.append(f"host sent {self.extra_replayed_frames} frames after the recording ran out (not compared)")
        return "\n".join(lines)


def _host_stream(rec: DecodedRecording) -> list[Frame]:
    return [f.frame for f in rec.of(HOST_TO_FW) if f.frame.type != FrameType.HEARTBEAT]


def command_kind(payload: bytes) -> str:
    """DRIVE, DAMPING (damping gains only: onboard's soft landing) or ZERO (onboard PASSIVE)."""
    cmd = unpack_command(payload)
    if not (np.any(cmd.tau_ff) or np.any(cmd.kp) or np.any(cmd.q_des) or np.any(cmd.qd_des)):
        return "DAMPING" if np.any(cmd.kd) else "ZERO"
    return "DRIVE"


def _command_kinds(frames: list[Frame]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    tick = 0
    for f in frames:
        if f.type != FrameType.COMMAND:
            continue
        kind = command_kind(f.payload)
        if not out or out[-1][1] != kind:
            out.append((tick, kind))
        tick += 1
    return out


def _transitions(frames: list[Frame]) -> list[tuple[int, str]]:
    out, tick = [], 0
    for f in frames:
        if f.type == FrameType.COMMAND:
            tick += 1
        elif f.type in CONTROL_TYPES:
            out.append((tick, f.type.name))
    return out


def compare_host_streams(original: str | os.PathLike[str] | DecodedRecording,
                         replayed: str | os.PathLike[str] | DecodedRecording,
                         max_frames: int | None = None) -> CommandDiff:
    """Compare what the host sent in two recordings (heartbeats excluded: their clock differs).

    Frames are compared byte for byte (type, seq, payload). Ticks are the COMMAND frames; action
    deltas are per command field and actuator. Only as many frames as the original has are
    compared (after its last STATE the replay host keeps running on stale data).
    """
    a = _host_stream(original if isinstance(original, DecodedRecording) else decode_recording(original))
    b = _host_stream(replayed if isinstance(replayed, DecodedRecording) else decode_recording(replayed))
    n = min(len(a), len(b)) if max_frames is None else min(len(a), len(b), max_frames)
    first_frame = next((i for i in range(n) if a[i] != b[i]), None)
    if first_frame is None and len(b) < len(a) and (max_frames is None or n < max_frames):
        first_frame = n  # the replay stopped early
    ca = [unpack_command(f.payload) for f in a[:n] if f.type == FrameType.COMMAND]
    cb = [unpack_command(f.payload) for f in b[:n] if f.type == FrameType.COMMAND]
    m = min(len(ca), len(cb))
    max_abs = {k: np.zeros(len(ACTUATOR_NAMES)) for k in COMMAND_FIELDS}
    first_tick, at_first, divergent = None, {k: [0.0] * len(ACTUATOR_NAMES) for k in COMMAND_FIELDS}, 0
    for t in range(m):
        deltas = {k: np.asarray(getattr(cb[t], k), np.float64) - np.asarray(getattr(ca[t], k), np.float64)
                  for k in COMMAND_FIELDS}
        if any(np.any(d != 0) for d in deltas.values()):
            divergent += 1
            if first_tick is None:
                first_tick = t
                at_first = {k: [float(x) for x in d] for k, d in deltas.items()}
        for k, d in deltas.items():
            max_abs[k] = np.maximum(max_abs[k], np.abs(d))
    if first_frame is not None and first_tick is None:
        first_tick = sum(f.type == FrameType.COMMAND for f in a[:first_frame])  # a control frame or seq differs
    return CommandDiff(
        identical=first_frame is None,
        frames_compared=n,
        original_frames=len(a),
        replayed_frames=len(b),
        first_divergent_frame=first_frame,
        first_divergent_tick=first_tick,
        ticks_compared=m,
        divergent_ticks=divergent,
        max_abs_delta={k: [float(x) for x in v] for k, v in max_abs.items()},
        deltas_at_first=at_first,
        transitions_original=_transitions(a[:n]),
        transitions_replayed=_transitions(b[:n]),
        command_kinds_original=_command_kinds(a[:n]),
        command_kinds_replayed=_command_kinds(b[:n]),
        extra_replayed_frames=max(0, len(b) - len(a)),
    )
