"""Serial-byte recordings as frames: decode, cut, merge, and pair physics steps with commands.

Why here: the virtual robot, the link, the HIL tap and the replayer record the raw bytes of both
directions of the serial line (firmware_bridge.recorder, MCAP) on the channels
`serial/host_to_fw` and `serial/fw_to_host`; summary.py summarises them. Everything the HIL
harness does with a recording starts from the same decoded view: the frames of each direction, in
the order they were recorded, with their times.
Keeping that one view here means the replayer, the command comparison, the gap report input and
the CLI cannot disagree on what a recording contains.

Times: a record's t_ns is nanoseconds since the Unix epoch (protocol.recording): the recorder's
clock moved there by one offset per file (the virtual robot's firmware time, simulated in
lock-step, is anchored at the wall time of its first record; the link's monotonic clock is exact
wall time), so intervals within a file are the recorder's own. Record order is the causal order in lock-step:
a host chunk is recorded before the frames the firmware sent in answer to it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from firmware_bridge.recorder import FW_TO_HOST, HOST_TO_FW
from protocol.frames import Frame, FrameDecoder, FrameType, unpack_command, unpack_fault, unpack_heartbeat, unpack_state
from protocol.recording import (
    CLOCK_UNIX,
    ENCODING_JSON,
    ChannelInfo,
    Reader,
    Record,
    RecordingError,
    Schema,
    Writer,
    write_records,
)
from protocol.robot_types import MotorCommand, MotorMode, RobotState
from task_contract.episodes import TaskStream
from task_contract.history import ObsLayout
from task_contract.state import state_values
from task_contract.tasks import TaskSpec

log = logging.getLogger(__name__)

SERIAL_CHANNELS = (HOST_TO_FW, FW_TO_HOST)
CONTROL_TYPES = (FrameType.ENABLE, FrameType.DISABLE, FrameType.ESTOP, FrameType.ESTOP_CLEAR)


@dataclass(frozen=True)
class TimedFrame:
    """One decoded frame of a recording: its direction (channel), time, raw bytes and position."""

    channel: str
    t_ns: int
    frame: Frame
    order: int  # index of the record it completed (record order = causal order in lock-step)


@dataclass
class DecodedRecording:
    """Every frame of a recording per direction, with the decoders' drop counts."""

    path: str
    records: int
    complete: bool  # the file had its footer (False: cut off, e.g. the recorder was killed)
    tail_bytes: int  # bytes after the last complete record (ignored)
    frames: dict[str, list[TimedFrame]]
    dropped: dict[str, dict[str, int]]  # channel -> decoder drop reason -> count
    other_channels: dict[str, int]  # non-serial channels -> record count
    t_first_ns: int | None
    t_last_ns: int | None

    def of(self, channel: str, *types: FrameType) -> list[TimedFrame]:
        out = self.frames.get(channel, [])
        return [f for f in out if f.frame.type in types] if types else list(out)


def read_records(path: str | os.PathLike[str]) -> tuple[list[Record], Reader]:
    """All complete records of a file and the reader (its `complete`/`tail_bytes`)."""
    reader = Reader(path)
    try:
        records = list(reader)
    except FileNotFoundError:
        raise RecordingError(f"no such recording: {path}") from None
    return records, reader


def decode_records(records: Iterable[Record]) -> tuple[dict[str, list[TimedFrame]], dict[str, FrameDecoder], Counter]:
    decoders: dict[str, FrameDecoder] = {}
    frames: dict[str, list[TimedFrame]] = {c: [] for c in SERIAL_CHANNELS}
    other: Counter = Counter()
    for order, rec in enumerate(records):
        if rec.channel not in SERIAL_CHANNELS:
            other[rec.channel] += 1
            continue
        dec = decoders.setdefault(rec.channel, FrameDecoder())
        for fr in dec.feed(rec.data):
            frames[rec.channel].append(TimedFrame(rec.channel, rec.t_ns, fr, order))
    return frames, decoders, other


def decode_recording(path: str | os.PathLike[str]) -> DecodedRecording:
    """Read and decode a serial recording (complete or cut off)."""
    records, reader = read_records(path)
    frames, decoders, other = decode_records(records)
    times = [r.t_ns for r in records]
    return DecodedRecording(
        path=str(path),
        records=len(records),
        complete=reader.complete,
        tail_bytes=reader.tail_bytes,
        frames=frames,
        dropped={c: {k: v for k, v in d.dropped.items() if v} for c, d in decoders.items()},
        other_channels=dict(other),
        t_first_ns=min(times) if times else None,
        t_last_ns=max(times) if times else None,
    )


# ---------------------------------------------------------------------------- editing


def cut(src: str | os.PathLike[str], dst: str | os.PathLike[str], start_s: float | None = None,
        end_s: float | None = None, relative: bool = True) -> int:
    """Copy the records with start <= t <= end into `dst`; times relative to the first record.

    Serial bytes are cut at record boundaries, so a frame split across two records at the cut is
    lost at the decoder (counted as a drop there), never mangled into a wrong frame.
    Returns the number of records written.
    """
    records, reader = read_records(src)
    base = records[0].t_ns if (records and relative) else 0
    lo = None if start_s is None else base + int(round(start_s * 1e9))
    hi = None if end_s is None else base + int(round(end_s * 1e9))
    kept = (r for r in records if (lo is None or r.t_ns >= lo) and (hi is None or r.t_ns <= hi))
    return write_records(dst, kept, reader.channels, reader.metadata)


def merge(sources: list[str | os.PathLike[str]], dst: str | os.PathLike[str], prefixes: list[str] | None = None) -> int:
    """Merge recordings into one, ordered by time (stable: ties keep file, then record order).

    `prefixes` (one per source) are prepended to channel names, e.g. "robot0/", so two robots'
    serial channels stay apart. Without prefixes, same-named channels are interleaved by time.
    """
    if prefixes is not None and len(prefixes) != len(sources):
        raise ValueError(f"{len(prefixes)} prefixes for {len(sources)} recordings")
    keyed: list[tuple[int, int, int, Record]] = []
    channels: dict[str, ChannelInfo] = {}
    for i, src in enumerate(sources):
        records, reader = read_records(src)
        p = prefixes[i] if prefixes else ""
        keyed.extend((r.t_ns, i, j, Record(p + r.channel, r.t_ns, r.data)) for j, r in enumerate(records))
        for name, info in reader.channels.items():
            channels.setdefault(p + name, info)
    keyed.sort(key=lambda k: k[:3])  # epoch times: two robots' recordings line up by wall clock
    return write_records(dst, (k[3] for k in keyed), channels)


# ---------------------------------------------------------------------------- steps


@dataclass
class RecordedSteps:
    """The physics steps a recording shows: states[k] --commands[k]--> states[k+1].

    `applied[k]` is False where the firmware was not ENABLED at states[k] (it then applied zero
    torque, whatever the host sent). `t_ns[k]` is the record time of states[k].
    """

    states: list[RobotState]
    commands: list[MotorCommand]
    applied: np.ndarray
    t_ns: np.ndarray

    def __len__(self) -> int:
        return len(self.commands)


def recorded_steps(rec: DecodedRecording) -> RecordedSteps:
    """Pair each physics step with the command in force during it.

    A step is two consecutive STATE frames whose firmware clocks (t_us) differ; a STATE with the
    same t_us as the one before is an answer to ENABLE/DISABLE/... without stepping (lock-step)
    and only updates the mode. The command in force is the last COMMAND recorded before the
    later STATE (in lock-step: the COMMAND it answered; in real time: the latest one received
    before that tick). Steps before any COMMAND use the zero command.
    """
    commands = [(f.order, unpack_command(f.frame.payload)) for f in rec.of(HOST_TO_FW, FrameType.COMMAND)]
    ticks: list[RobotState] = []  # one per firmware tick (the last STATE of that tick: its latest mode)
    times: list[int] = []
    out_c: list[MotorCommand] = []
    ci = -1
    for tf in rec.of(FW_TO_HOST, FrameType.STATE):
        s = unpack_state(tf.frame.payload)
        while ci + 1 < len(commands) and commands[ci + 1][0] <= tf.order:
            ci += 1
        if ticks and s.t_us == ticks[-1].t_us:
            ticks[-1], times[-1] = s, tf.t_ns
            continue
        if ticks:
            out_c.append(commands[ci][1] if ci >= 0 else MotorCommand())
        ticks.append(s)
        times.append(tf.t_ns)
    out_s = ticks
    applied = [s.mode == MotorMode.ENABLED for s in ticks[:-1]]
    return RecordedSteps(out_s, out_c, np.array(applied, bool), np.array(times, np.int64))


def host_frames(rec: DecodedRecording) -> list[TimedFrame]:
    """The host's frames (what onboard sent), in order."""
    return rec.of(HOST_TO_FW)


def iter_serial(path: str | os.PathLike[str]) -> Iterator[TimedFrame]:
    """Frames of both directions in record order (for quick scripts)."""
    rec = decode_recording(path)
    merged = rec.of(HOST_TO_FW) + rec.of(FW_TO_HOST)
    merged.sort(key=lambda f: f.order)
    yield from merged


# ---------------------------------------------------------------------------- decoded JSON copy


def _frame_fields(frame: Frame) -> dict[str, object]:
    """A frame's payload as JSON-ready fields (arrays as lists; control frames carry none)."""
    if frame.type == FrameType.STATE:
        obj: object = unpack_state(frame.payload)
    elif frame.type == FrameType.COMMAND:
        obj = unpack_command(frame.payload)
    elif frame.type == FrameType.FAULT:
        obj = unpack_fault(frame.payload)
    elif frame.type == FrameType.HEARTBEAT:
        return {"t_us": unpack_heartbeat(frame.payload)}
    else:
        return {}
    return {f.name: (v.tolist() if isinstance(v, np.ndarray) else int(v))
            for f in dataclasses.fields(obj) for v in [getattr(obj, f.name)]}  # type: ignore[arg-type]


def _json_schema_of(name: str, sample: dict[str, object]) -> Schema:
    """JSON Schema of a decoded frame's message, from a sample: its fields have fixed types/sizes."""
    props: dict[str, object] = {"seq": {"type": "integer", "description": "frame sequence number (mod 65536)"}}
    for key, value in sample.items():
        props[key] = ({"type": "array", "items": {"type": "number"}, "minItems": len(value), "maxItems": len(value)}
                      if isinstance(value, list) else {"type": "integer"})
    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": name, "type": "object",
           "properties": props, "required": list(props)}
    return Schema(name, "jsonschema", json.dumps(doc, allow_nan=False).encode())


def to_json_recording(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> dict[str, int]:
    """Write the decoded frames of a serial recording as JSON messages with JSON Schemas (one
    topic per direction and frame type, e.g. `serial/fw_to_host/STATE`, schema
    `h2o_robot.serial.STATE`), the times of the records that completed them. Why: raw serial
    bytes are the truth for debugging the wire, but a viewer (Foxglove, the mcap CLI) can only
    plot fields it can decode. Returns messages written per topic."""
    rec = decode_recording(src)
    frames = sorted(rec.of(HOST_TO_FW) + rec.of(FW_TO_HOST), key=lambda f: (f.order, f.t_ns))
    counts: Counter = Counter()
    schemas: dict[str, Schema] = {}
    with Writer(dst, clock=CLOCK_UNIX) as writer:
        for tf in frames:
            topic = f"{tf.channel}/{tf.frame.type.name}"
            body = _frame_fields(tf.frame)
            if topic not in schemas:
                schemas[topic] = _json_schema_of(f"h2o_robot.serial.{tf.frame.type.name}", body)
            data = json.dumps({"seq": tf.frame.seq, **body}, allow_nan=False, separators=(",", ":")).encode()
            writer.write(topic, tf.t_ns, data, encoding=ENCODING_JSON, schema=schemas[topic])
            counts[topic] += 1
    return dict(counts)


__all__ = [
    "CONTROL_TYPES", "DecodedRecording", "FW_TO_HOST", "HOST_TO_FW", "RecordedSteps", "RecordingError",
    "SERIAL_CHANNELS", "TimedFrame", "cut", "decode_recording", "host_frames", "iter_serial", "merge",
    "read_records", "recorded_steps", "command_to_action", "transitions", "UnsupportedTaskError",
    "to_json_recording",
]


# ---------------------------------------------------------------------------- transitions


class UnsupportedTaskError(ValueError):
    """No inverse command -> action mapping is known for this task (kept for callers; every task
    of the contract has one)."""


def command_to_action(task: TaskSpec, cmd: MotorCommand) -> np.ndarray:
    """Invert the task's action_to_command (the action that produced `cmd`, in [-1, 1])."""
    return task.command_to_action(cmd)


def transitions(steps: RecordedSteps, task_name: str, command: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """D4RL arrays (observations, actions, rewards, next_observations, terminals, timeouts).

    The task's episodes over the recording (task_contract.episodes.TaskStream, the robot's rules):
    only steps the firmware applied (mode ENABLED) are kept; an episode starts at the first
    applied step, after a gap (the step before ends as a timeout), after a termination and after
    the task's length; the recording's end is a timeout. `task_name` may carry observation options
    ("stand_still:action_history=2"). The task's command (turn, locomotion) is not on the serial
    line: `command`, else the task's default_command, is used for every row.
    """
    layout = ObsLayout.of(task_name)
    task = layout.task
    stream = TaskStream(layout, command)
    cols: dict[str, list] = {k: [] for k in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")}
    prev_k = None
    obs = None
    for k in range(len(steps)):
        if not steps.applied[k]:
            continue
        if prev_k is not None and k != prev_k + 1:
            stream.stop()
            if cols["timeouts"] and not cols["terminals"][-1]:
                cols["timeouts"][-1] = True
        if not stream.active:  # after the task's length or a termination the robot went on: a hand-over
            obs = stream.start(state_values(steps.states[k]), handover=prev_k is not None and k == prev_k + 1)
        act = task.command_to_action(steps.commands[k])
        res = stream.step(act, state_values(steps.states[k + 1]))
        for key, value in (("observations", obs), ("actions", act), ("rewards", res.reward),
                           ("next_observations", res.obs), ("terminals", res.terminated),
                           ("timeouts", res.truncated)):
            cols[key].append(value)
        if res.terminated or res.truncated:
            stream.stop()
        obs = res.obs
        prev_k = k
    if cols["timeouts"] and not cols["terminals"][-1]:
        cols["timeouts"][-1] = True
    dims = {"observations": layout.dim, "next_observations": layout.dim, "actions": task.act_dim}
    out: dict[str, np.ndarray] = {}
    for key, values in cols.items():
        if key in dims:
            out[key] = np.asarray(values, np.float32).reshape(-1, dims[key])
        elif key == "rewards":
            out[key] = np.asarray(values, np.float32)
        else:
            out[key] = np.asarray(values, bool)
    return out
