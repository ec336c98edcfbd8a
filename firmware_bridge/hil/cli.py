"""The HIL harness on the command line: `python -m firmware_bridge.hil --help`.

Subcommands (each has --help):
    list DIR                          recordings under DIR: size, records, time span, complete?
    inspect FILE [--json]             channels, counts, time span, frame stats, modes, control frames
    recover FILE OUT                  a recording cut short (crash, power loss) -> a complete MCAP file
    foxglove FILE OUT                 decoded frames as JSON messages with JSON Schemas (for viewers)
    cut FILE OUT --start S --end S    keep records in [start, end] s (relative to the first record)
    merge OUT FILE... [--prefix P]    merge by time (prefixes keep two robots' channels apart)
    export FILE OUT.hdf5 --task T     STATE/COMMAND steps -> D4RL transitions (obs, reward: task_contract)
    tap URL OUT [--device L]          record what a host sees of a serial device (pty in the middle)
    replay FILE [--device L] [--out OUT] [--timed] [--compare]
                                      serve the recording's firmware side to a host (e.g. onboard/run.py)
    compare ORIGINAL REPLAYED         host command streams: identical, or where and how they diverge
    gap FILE --profile P [--profile Q] [--horizon N] [--plot PNG]
                                      open-loop drift of the model from the recording, per signal

A replay session against the unchanged onboard program:
    python -m firmware_bridge.hil replay run.mcap --device /tmp/ttyReplay --out replayed.mcap --compare &
    python -m onboard.run --link.url /tmp/ttyReplay --run.lockstep true --run.stream false
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from protocol.logs import setup_logging
from firmware_bridge.hil.recordings import (
    CONTROL_TYPES,
    HOST_TO_FW,
    RecordingError,
    cut,
    decode_recording,
    merge,
    read_records,
    recorded_steps,
    to_json_recording,
)
from protocol import strict_json
from protocol.config_cli import ArgumentParser
from protocol.install import install_hint
from protocol.recording import CLOCK_METADATA, recover

log = logging.getLogger(__name__)


def _stop_event() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


def inspect_recording(path: str) -> dict[str, object]:
    """Everything `inspect` prints, as plain data."""
    from firmware_bridge.hil.summary import summarise

    records, reader = read_records(path)
    rec = decode_recording(path)
    steps = recorded_steps(rec)
    modes: dict[str, int] = {}
    from protocol.robot_types import MotorMode

    for s in steps.states:
        name = MotorMode(s.mode).name if s.mode in MotorMode._value2member_map_ else str(s.mode)
        modes[name] = modes.get(name, 0) + 1
    times = [r.t_ns for r in records]
    t0 = min(times) if times else 0
    return {
        "path": path,
        "size_bytes": Path(path).stat().st_size,
        "records": len(records),
        "complete": reader.complete,
        "tail_bytes_ignored": reader.tail_bytes,
        "start_utc": datetime.fromtimestamp(t0 / 1e9, timezone.utc).isoformat() if times else None,
        "clock": reader.metadata.get(CLOCK_METADATA, {}).get("clock"),
        "duration_s": (max(times) - t0) / 1e9 if times else 0.0,
        "t0_s": t0 / 1e9,
        "channels": {ch: asdict(s) for ch, s in summarise(path).items()},
        "physics_steps": len(steps),
        "steps_applied": int(steps.applied.sum()),
        "tick_modes": modes,
        "control_frames": [((f.t_ns - t0) / 1e9, f.frame.type.name) for f in rec.of(HOST_TO_FW, *CONTROL_TYPES)],
    }


# ---------------------------------------------------------------------------- subcommands


def cmd_list(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    files = sorted(root.rglob("*.mcap")) if root.is_dir() else []
    if not files:
        print(f"no recordings under {root}")
        return 0 if root.is_dir() else 2
    print(f"{'file':<50}{'bytes':>10}{'records':>9}{'span s':>9}  complete")
    for f in files:
        try:
            records, reader = read_records(f)
        except RecordingError as exc:
            print(f"{str(f):<50}  unreadable: {exc}")
            continue
        span = (records[-1].t_ns - records[0].t_ns) / 1e9 if records else 0.0
        print(f"{str(f):<50}{f.stat().st_size:>10}{len(records):>9}{span:>9.3f}  {'yes' if reader.complete else 'no (cut off)'}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    info = inspect_recording(args.file)
    if args.json:
        print(strict_json.dumps(info, indent=2))
        return 0
    print(f"{info['path']}: {info['records']} records, {info['size_bytes']} bytes, {info['duration_s']:.3f} s "
          f"from {info['start_utc']} (clock {info['clock']}), "
          f"{'complete' if info['complete'] else 'cut off (' + str(info['tail_bytes_ignored']) + ' trailing bytes ignored; `recover` it)'}")
    t0 = info["t0_s"]
    for ch, s in info["channels"].items():
        print(f"  {ch}: {s['chunks']} chunks, {s['bytes']} bytes, t {s['first_t_s'] - t0:.3f}..{s['last_t_s'] - t0:.3f} s, "
              f"frames {s['frames']}, dropped {s['dropped']}, seq lost {s['seq_lost']}")
    print(f"  physics steps {info['physics_steps']} (applied {info['steps_applied']}), tick modes {info['tick_modes']}")
    print(f"  control frames: {info['control_frames'][:20]}{' ...' if len(info['control_frames']) > 20 else ''}")
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    reader, n = recover(args.file, args.out)
    lost = "nothing lost" if reader.complete else f"{reader.tail_bytes} trailing bytes held no complete record"
    print(f"wrote {n} records to {args.out} ({'the source was complete' if reader.complete else 'the source was cut off'}; {lost})")
    return 0


def cmd_foxglove(args: argparse.Namespace) -> int:
    counts = to_json_recording(args.file, args.out)
    print(f"wrote {sum(counts.values())} decoded frames to {args.out}: " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
    return 0


def cmd_cut(args: argparse.Namespace) -> int:
    n = cut(args.file, args.out, args.start, args.end, relative=not args.absolute)
    print(f"wrote {n} records to {args.out}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    prefixes = args.prefix or None
    n = merge(args.files, args.out, prefixes)
    print(f"wrote {n} records to {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import numpy as np

    from firmware_bridge.hil.recordings import transitions
    from sim_models.datasets import save_d4rl

    steps = recorded_steps(decode_recording(args.file))
    command = np.array([float(x) for x in args.command.split(",")], np.float32) if args.command else None
    data = transitions(steps, args.task, command)
    if len(data["rewards"]) == 0:
        print(f"error: {args.file} has no applied steps to export", file=sys.stderr)
        return 1
    save_d4rl(args.out, data, {"task": args.task, "source": "recording", "recording": str(args.file),
                               "behaviour": "recorded", "command": None if command is None else command.tolist()})
    print(f"wrote {len(data['rewards'])} transitions ({int(data['terminals'].sum())} terminal, "
          f"{int(data['timeouts'].sum())} timeouts) to {args.out}")
    return 0


def cmd_tap(args: argparse.Namespace) -> int:
    from firmware_bridge.hil.tap import SerialTap

    stop = _stop_event()
    with SerialTap(args.url, args.out, drop_repeated_states=args.lockstep, link_path=args.device or None) as tap:
        print(tap.device, flush=True)
        stop.wait()
    print(f"tap: {tap.counters}", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from firmware_bridge.hil.compare import compare_host_streams
    from firmware_bridge.hil.replayer import SensorReplayer

    if args.compare and not args.out:
        print("error: --compare needs --out (the replayed host stream is compared from it)", file=sys.stderr)
        return 2
    stop = _stop_event()
    replayer = SensorReplayer(args.file, lockstep=not args.timed, record_path=args.out or None,
                              link_path=args.device or None, speed=args.speed).start()
    print(replayer.device, flush=True)
    try:
        while not stop.is_set() and not replayer.done.wait(0.1):
            pass
        if replayer.done.is_set():
            stop.wait(args.linger_s)  # let the host finish its last tick (and DISABLE) before comparing
    finally:
        replayer.stop()
    print(f"replay: {replayer.counters}", file=sys.stderr)
    if args.compare:
        diff = compare_host_streams(args.file, args.out)
        print(diff.report())
        return 0 if diff.identical else 1
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from firmware_bridge.hil.compare import compare_host_streams

    diff = compare_host_streams(args.original, args.replayed)
    print(strict_json.dumps(asdict(diff), indent=1) if args.json else diff.report())
    return 0 if diff.identical else 1


def cmd_gap(args: argparse.Namespace) -> int:
    from sim_models.gap_report import GapConfig, gap_report, plot_gap  # imports mujoco

    steps = recorded_steps(decode_recording(args.file))
    reports = []
    for profile in args.profile or ["nominal"]:
        cfg = GapConfig(profile=profile, variant=args.variant, horizon_steps=args.horizon, stride_steps=args.stride,
                        seed=args.seed)
        rep = gap_report(steps.states, steps.commands, cfg, applied=steps.applied)
        reports.append(rep)
        print(rep.table())
    if args.plot:
        print(f"plot: {plot_gap(reports, args.plot)}")
    if args.json:
        Path(args.json).write_text(strict_json.dumps([strict_json.loads(r.to_json()) for r in reports], indent=1))
        print(f"json: {args.json}")
    return 0


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m firmware_bridge.hil",
                       description="Hardware-in-the-loop harness: inspect, edit, replay and compare serial recordings.",
                       example="python -m firmware_bridge.hil inspect runs/robot.mcap\n"
                               "python -m firmware_bridge.hil replay run.mcap --device /tmp/ttyReplay --out replayed.mcap "
                               "--compare")
    p.add_argument("--log-level", default="WARNING", help="logging level")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="list the recordings under a folder", allow_abbrev=False)
    s.add_argument("dir", nargs="?", default="runs", help="folder searched recursively for *.mcap")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("inspect", help="channels, counts, time span, frame stats of a recording", allow_abbrev=False)
    s.add_argument("file", help="MCAP recording")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(func=cmd_inspect)

    for name, func, summary, description in (
        ("recover", cmd_recover, "rewrite a recording cut short by a crash as a complete MCAP file",
         "Copy every complete record of FILE (a recording whose writer was killed: no summary or footer, maybe "
         "a partial last record) into OUT, a complete MCAP file that any MCAP tool opens; channels keep their "
         "encodings and schemas. Example: recover runs/x/serial.mcap runs/x/serial.recovered.mcap"),
        ("foxglove", cmd_foxglove, "decoded frames as JSON messages with JSON Schemas",
         "Write the serial frames of FILE, decoded, as JSON messages (one topic per direction and frame type, "
         "e.g. serial/fw_to_host/STATE) with JSON Schemas, so Foxglove or the mcap CLI can show and plot their "
         "fields. Example: foxglove run.mcap run.json.mcap"),
    ):
        s = sub.add_parser(name, help=summary, description=description, allow_abbrev=False)
        s.add_argument("file", help="MCAP recording (complete or cut off by a crash)")
        s.add_argument("out", help="output recording (a complete MCAP file)")
        s.set_defaults(func=func)

    s = sub.add_parser("cut", help="keep the records of a time range", allow_abbrev=False)
    s.add_argument("file", help="MCAP recording")
    s.add_argument("out", help="output recording")
    s.add_argument("--start", type=float, default=None, help="first time kept, s (default: the start)")
    s.add_argument("--end", type=float, default=None, help="last time kept, s (default: the end)")
    s.add_argument("--absolute", action="store_true", help="times are Unix epoch seconds (the file's times), not relative to the first record")
    s.set_defaults(func=cmd_cut)

    s = sub.add_parser("merge", help="merge recordings by time", allow_abbrev=False)
    s.add_argument("out", help="output recording")
    s.add_argument("files", nargs="+", help="recordings to merge")
    s.add_argument("--prefix", action="append", help="channel prefix per input, in order (repeat once per file)")
    s.set_defaults(func=cmd_merge)

    s = sub.add_parser("export", help="recorded steps -> D4RL HDF5 transitions for a task", allow_abbrev=False)
    s.add_argument("file", help="MCAP recording")
    s.add_argument("out", help="output .hdf5")
    s.add_argument("--task", default="stand_still", help="task id, options allowed, e.g. stand_still:action_history=2 (task_contract: observation, reward, termination)")
    s.add_argument("--command", default="", help="task command, comma separated (turn, locomotion); default: the task's")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("tap", help="record a host's view of a serial device through a pty in the middle", allow_abbrev=False)
    s.add_argument("url", help="the firmware's device or pyserial URL (a virtual robot pty, /dev/ttyUSB0)")
    s.add_argument("out", help="output recording")
    s.add_argument("--device", default="/tmp/ttyTap", help="symlink to the pty the host opens ('' for none)")
    s.add_argument("--lockstep", action="store_true", help="drop repeated STATEs (lock-step: one STATE per COMMAND)")
    s.set_defaults(func=cmd_tap)

    s = sub.add_parser("replay", help="serve a recording's firmware side to a host", allow_abbrev=False)
    s.add_argument("file", help="MCAP recording (ideally made with `tap`, the host's view)")
    s.add_argument("--device", default="/tmp/ttyReplay", help="symlink to the replay pty ('' for none)")
    s.add_argument("--out", default="", help="record what the host sends (and what was played) here")
    s.add_argument("--timed", action="store_true", help="play at the recorded times instead of one STATE per COMMAND")
    s.add_argument("--speed", type=float, default=1.0, help="timed replay speed factor")
    s.add_argument("--compare", action="store_true", help="when done, compare the host's commands with the original")
    s.add_argument("--linger-s", type=float, default=0.5, help="after the last STATE, wait this long for the host")
    s.set_defaults(func=cmd_replay)

    s = sub.add_parser("compare", help="compare the host command streams of two recordings", allow_abbrev=False)
    s.add_argument("original", help="the original recording")
    s.add_argument("replayed", help="the replayed run's recording")
    s.add_argument("--json", action="store_true", help="print the full diff as JSON")
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("gap", help="sim-to-real gap: open-loop replay of the commands in the model", allow_abbrev=False)
    s.add_argument("file", help="MCAP recording")
    s.add_argument("--profile", action="append", help="model profile (name or TOML); repeat to compare")
    s.add_argument("--variant", default="legs_locked", choices=("legs_locked", "full"), help="model variant")
    s.add_argument("--horizon", type=int, default=50, help="open-loop window, control steps")
    s.add_argument("--stride", type=int, default=0, help="window spacing, steps (0: the horizon)")
    s.add_argument("--seed", type=int, default=0, help="model noise seed")
    s.add_argument("--plot", default="", help="write the PNG here")
    s.add_argument("--json", default="", help="write the reports as JSON here")
    s.set_defaults(func=cmd_gap)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return args.func(args)
    except ModuleNotFoundError as exc:  # `gap` (MuJoCo) and `export` (h5py) on a robot install
        print(f"error: {args.command} {install_hint('sim', [exc.name or str(exc)])}", file=sys.stderr)
        return 2
    except (RecordingError, FileNotFoundError, ValueError, KeyError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
