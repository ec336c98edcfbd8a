"""A small host console for the motor firmware: enable, send a command, watch the state.

Why: bring-up of a board (or the virtual robot) needs a tool that is not the control loop: it
shows what the firmware reports and lets a person switch power and e-stop by hand. It uses the
same SerialLink as everything else, so what works here works in onboard/.

One-shot:     python -m firmware_bridge.console --device /tmp/ttyRobot --enable \\
                  --torque 0,0,1,0,0,1 --duration 2
Interactive:  python -m firmware_bridge.console --device /tmp/ttyRobot --interactive
              then: enable | disable | estop | clear | torque a,b,c,d,e,f | zero | state | wait s
                    | stats | quit  (also from a pipe: printf 'enable\\nwait 1\\nstate\\n' | ...)
While ENABLED the console re-sends the held command at --rate-hz, so the firmware watchdog stays fed.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

import numpy as np

from protocol.config_cli import ArgumentParser
from protocol.logs import setup_logging
from firmware_bridge.link import LinkState, SerialLink, SerialLinkConfig, StateSample
from protocol.robot_types import N_ACTUATORS, FaultFlags, MotorCommand, MotorMode

log = logging.getLogger(__name__)


class ConsoleInputError(ValueError):
    """A console argument or typed line could not be understood."""


def parse_torque(text: str) -> np.ndarray:
    try:
        values = np.array([float(v) for v in text.split(",")], dtype=np.float32)
    except ValueError as exc:
        raise ConsoleInputError(f"torque must be {N_ACTUATORS} comma-separated numbers: {text!r}") from exc
    if values.shape != (N_ACTUATORS,) or not np.all(np.isfinite(values)):
        raise ConsoleInputError(f"torque must be {N_ACTUATORS} finite comma-separated numbers: {text!r}")
    return values


def format_state(sample: StateSample | None) -> str:
    if sample is None:
        return "no state yet"
    s = sample.state
    flags = FaultFlags(s.faults)
    fault_text = "|".join(f.name for f in FaultFlags if f and f in flags) or "-"
    fmt = lambda a: np.array2string(np.asarray(a), precision=3, suppress_small=True, separator=",")  # noqa: E731
    return (
        f"t={s.t_us / 1e6:8.3f}s mode={MotorMode(s.mode).name:8s} faults={fault_text} "
        f"age={sample.age_s * 1e3:5.1f}ms pos={fmt(s.joint_pos)} vel={fmt(s.joint_vel)} "
        f"tau={fmt(s.joint_torque)} gyro={fmt(s.imu_gyro)}"
    )


class CommandPump:
    """Re-sends the held command at a fixed rate while the link is ACTIVE (feeds the watchdog)."""

    def __init__(self, link: SerialLink, rate_hz: float) -> None:
        self.link = link
        self.period_s = 1.0 / rate_hz
        self.command = MotorCommand()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="command-pump", daemon=True)

    def start(self) -> "CommandPump":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            if self.link.lifecycle == LinkState.ACTIVE:
                self.link.send_command(self.command)
            next_t += self.period_s
            self._stop.wait(max(0.0, next_t - time.monotonic()))


def run_line(line: str, link: SerialLink, pump: CommandPump) -> bool:
    """Execute one interactive line; False means quit."""
    words = line.strip().split(maxsplit=1)
    if not words:
        return True
    verb, arg = words[0].lower(), (words[1] if len(words) > 1 else "")
    if verb in ("quit", "exit", "q"):
        return False
    if verb == "enable":
        print("enabled" if link.activate() else "ENABLE not confirmed (e-stop latched? no firmware?)")
    elif verb == "disable":
        print(link.deactivate().value)
    elif verb == "estop":
        print(link.estop().value)
    elif verb == "clear":
        print(link.clear_estop().value)
    elif verb == "torque":
        pump.command = MotorCommand.torque(parse_torque(arg))
        print("holding torque", pump.command.tau_ff)
    elif verb == "zero":
        pump.command = MotorCommand()
        print("holding zero command")
    elif verb == "state":
        print(format_state(link.latest_state()))
    elif verb == "wait":  # for scripted sessions piped into stdin
        try:
            seconds = float(arg)
        except ValueError as exc:
            raise ConsoleInputError(f"wait takes seconds: {arg!r}") from exc
        time.sleep(min(max(seconds, 0.0), 60.0))
    elif verb == "stats":
        print(link.stats())
    else:
        print(f"unknown command {verb!r}; try: enable disable estop clear torque zero state wait stats quit")
    return True


def build_arg_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m firmware_bridge.console", description=__doc__.split("\n")[0],
                       example="python -m firmware_bridge.console --device /tmp/ttyRobot --enable --torque 0,0,0,0,0.5,0.5 "
                               "--duration 2\npython -m firmware_bridge.console --device /dev/ttyUSB0 --interactive")
    p.add_argument("--device", default="/tmp/ttyRobot", help="serial URL: /dev/ttyUSB0, pty path, socket://h:p")
    p.add_argument("--baudrate", type=int, default=1_000_000, help="baud rate (real UARTs only)")
    p.add_argument("--open-timeout-s", type=float, default=2.0, help="keep retrying the open this long")
    p.add_argument("--enable", action="store_true", help="enable the motors (one-shot mode)")
    p.add_argument("--clear-estop", action="store_true", help="clear a latched e-stop first")
    p.add_argument("--estop", action="store_true", help="latch the e-stop and exit")
    p.add_argument("--torque", default=None, help="feed-forward torques, 6 comma-separated N·m values")
    p.add_argument("--duration", type=float, default=2.0, help="seconds to command and watch (one-shot)")
    p.add_argument("--rate-hz", type=float, default=100.0, help="command re-send rate while enabled")
    p.add_argument("--watch-hz", type=float, default=5.0, help="state lines printed per second (0: none)")
    p.add_argument("--interactive", action="store_true", help="read commands from stdin")
    p.add_argument("--log-level", default="WARNING", help="logging level")
    return p


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # same clean exit as Ctrl-C: DISABLE, close
    setup_logging(args.log_level)
    try:
        torque = parse_torque(args.torque) if args.torque else None
    except ConsoleInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    link = SerialLink(SerialLinkConfig(url=args.device, baudrate=args.baudrate, open_timeout_s=args.open_timeout_s))
    try:
        link.configure()
    except Exception as exc:  # noqa: BLE001 - report any open failure as a CLI error
        print(f"error: {exc}", file=sys.stderr)
        return 1
    pump = CommandPump(link, args.rate_hz).start()
    try:
        if link.wait_for_state(timeout_s=2.0) is None:
            print("warning: no STATE from the firmware within 2 s", file=sys.stderr)
        if args.estop:
            link.estop()
            link.wait_for_state(timeout_s=1.0)
            print(format_state(link.latest_state()))
            return 0
        if args.clear_estop:
            link.clear_estop()
        if args.interactive:
            for line in sys.stdin:
                try:
                    if not run_line(line, link, pump):
                        break
                except ConsoleInputError as exc:
                    print(f"error: {exc}")
            return 0
        if torque is not None:
            pump.command = MotorCommand.torque(torque)
        if args.enable and not link.activate():
            print("error: ENABLE not confirmed by the firmware", file=sys.stderr)
            return 1
        end = time.monotonic() + args.duration
        watch_period = 1.0 / args.watch_hz if args.watch_hz > 0 else args.duration
        while time.monotonic() < end and link.lifecycle != LinkState.ERROR:
            time.sleep(min(watch_period, max(0.0, end - time.monotonic())))
            if args.watch_hz > 0:
                print(format_state(link.latest_state()), flush=True)
        print(format_state(link.latest_state()))
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        pump.stop()
        link.close()  # sends DISABLE if still active
        c = link.stats()["counters"]
        print(f"frames out {c.frames_out} in {c.frames_in} bad {c.bad_frames} lost {c.seq_lost}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
