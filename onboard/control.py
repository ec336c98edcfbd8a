"""The operator's control channel on the robot computer, and its command line.

    python -m onboard.control status
    python -m onboard.control arm | disarm | stand | policy | damp | estop | clear
    python -m onboard.control rollback | pin 7 | pin controller | unpin
    python -m onboard.control --config configs/onboard.toml status   # the endpoint of that config

Why: a person standing at the robot must be able to act on the running program (arm it before
the motors may be enabled, stand, e-stop, clear a latched DAMPING, roll back or pin a policy)
without restarting it or reaching into Python. The channel is a ZMQ REP socket on a Unix socket
(`ipc://path`, file mode 0600: only the robot program's user) or on a loopback TCP port; never
a network address (a command that enables motors must come from the robot computer itself).

Requests and replies are JSON maps: {"cmd": "pin", "arg": "7"} -> {"ok": true, "message": ...,
"mode": "POLICY", "armed": true, "policy_version": 7, "why": ""}. Commands are applied by the
policy supervisor on the loop thread at the next tick boundary (onboard/supervisor.py) and
answered on the tick after, so the reply shows what the command led to.

The channel's thread also watches why the robot is not moving (`Explainer`) and logs it when
the reason changes and every `explain_every_s` while it holds: not armed, waiting for upright
(tilt), no state from the firmware, a firmware fault by name, a latched DAMPING or ESTOP.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import zmq

if __package__ in (None, ""):  # `python onboard/control.py`: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from onboard.safety import Mode, tilt_from_quat
from protocol import strict_json
from protocol.endpoints import is_loopback
from protocol.robot_types import FaultFlags, MotorMode
from protocol.config_cli import ArgumentParser, help_field

if TYPE_CHECKING:
    from onboard.loop import ControlLoop
    from onboard.supervisor import PolicySupervisor

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "ipc://runs/onboard_control.sock"  # what configs/onboard*.toml use
COMMANDS = ("status", "arm", "disarm", "stand", "policy", "damp", "estop", "clear", "rollback", "pin", "unpin")
HELP = {
    "status": "mode, armed, why not moving, policy versions, trial, learner link",
    "arm": "allow the motors to be enabled (the robot stands once upright)",
    "disarm": "no motors until the next arm (a standing robot lands softly: DAMPING)",
    "stand": "the controller holds the robot; the policy waits for 'policy'",
    "policy": "let the policy drive again after 'stand'",
    "damp": "DAMPING now (motors damp only)",
    "estop": "firmware ESTOP (latched; disarms)",
    "clear": "leave DAMPING / ESTOP for PASSIVE",
    "rollback": "end the running trial, or drop the trusted version for the one before it",
    "pin": "VERSION|controller: this version drives; new ones are held until unpin",
    "unpin": "trials resume (a version held meanwhile is tried now)",
}


@dataclass
class ControlConfig:
    """The operator's control channel (python -m onboard.control --help)."""

    endpoint: str = help_field("",
                               "ipc://<path> (Unix socket, mode 0600) or tcp://127.0.0.1:<port>; empty: no channel "
                               "(the configs set ipc://runs/onboard_control.sock)")
    explain_every_s: float = help_field(30.0,
                                        "repeat the \"not moving: why\" line this often while it holds (logged at once "
                                        "on a change)")
    reply_timeout_s: float = help_field(2.0,
                                        "a command the loop has not taken within this long is answered as not applied")

    def __post_init__(self) -> None:
        check_endpoint(self.endpoint)


def check_endpoint(endpoint: str) -> None:
    """Only a Unix socket or a loopback port: the channel enables motors."""
    if not endpoint or endpoint.startswith("ipc://"):
        return
    if endpoint.startswith("tcp://") and is_loopback(endpoint):
        return
    raise ValueError(f"control endpoint {endpoint!r}: use ipc://<path> or tcp://127.0.0.1:<port> (never a network address)")


# ---------------------------------------------------------------------------- why not moving
class Explainer:
    """Why the robot is not moving, in words an operator can act on ('' while it moves)."""

    def __init__(self, loop: ControlLoop, link, every_s: float = 30.0) -> None:
        self.loop = loop
        self.link = link
        self.every_s = every_s
        self.last = ""
        self._logged_at = -math.inf

    def reason(self) -> str:
        fsm = self.loop.fsm
        mode, cfg = fsm.mode, fsm.cfg
        last = fsm.history[-1]["reason"] if fsm.history else ""
        if mode is Mode.ESTOP:
            return f"ESTOP latched ({last}): python -m onboard.control clear, then arm"
        sample = self.link.latest_state()
        if sample is None:
            return f"no STATE from the firmware yet (serial link {self.link.lifecycle.value}): check cable, port and firmware"
        fault = _fault_names(sample.state.faults)
        if mode is Mode.DAMPING:
            if cfg.recover_after_s > 0 and last.startswith("tilt"):
                how = "recovers by itself once held upright" + ("" if fsm.armed else " and armed")
            else:
                how = "latched: python -m onboard.control clear"
            return f"DAMPING after {last or '?'}: {how}" + (f"; firmware fault {fault}" if fault else "")
        if mode is not Mode.PASSIVE:
            if mode is Mode.STAND and getattr(fsm, "_operator_hold_stand", False) and self.loop.policy is not None:
                return "the controller holds the robot after an operator stand: python -m onboard.control policy"
            return ""
        if fault:
            return f"firmware fault {fault} (motor mode {_motor_mode(sample.state.mode)})"
        if sample.age_s * 1e3 > cfg.stale_state_ms and not self.loop.opt.lockstep:
            return f"firmware state stale ({sample.age_s * 1e3:.0f} ms > {cfg.stale_state_ms:.0f} ms): serial link"
        if not fsm.armed:
            return "not armed: python -m onboard.control arm (the motors are enabled once the robot is upright)"
        tilt = tilt_from_quat(sample.state.imu_quat)
        if not tilt <= cfg.upright_rad:
            return f"waiting for upright: tilt {tilt:.2f} rad > {cfg.upright_rad:.2f} rad (hold the robot upright)"
        if not cfg.auto_stand:
            return "waiting for an operator stand (auto_stand is off): python -m onboard.control stand"
        return ""  # about to stand

    def maybe_log(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        why = self.reason()
        if why != self.last:
            if why:  # a fall the robot recovers from by itself is routine while a policy learns
                log.log(logging.INFO if "by itself" in why else logging.WARNING, "robot not moving: %s", why)
            elif self.last:
                log.info("robot moving again (%s)", self.loop.fsm.mode.value)
            self.last, self._logged_at = why, now
        elif why and now - self._logged_at >= self.every_s:
            log.warning("robot still not moving: %s", why)
            self._logged_at = now
        return why


def _fault_names(faults: int) -> str:
    names = [f.name for f in FaultFlags if f and faults & f and f is not FaultFlags.TORQUE_LIMITED]
    return "|".join(names)


def _motor_mode(mode: int) -> str:
    try:
        return MotorMode(mode).name
    except ValueError:
        return str(mode)


# ---------------------------------------------------------------------------- the server
class ControlServer:
    """REP socket on its own thread; commands go to the supervisor, `status` reads the app."""

    def __init__(self, cfg: ControlConfig, supervisor: PolicySupervisor, status: Callable[[], dict[str, Any]],
                 explainer: Explainer | None = None) -> None:
        self.cfg = cfg
        self.supervisor = supervisor
        self.status = status
        self.explainer = explainer
        self.commands = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.endpoint = ""
        self.error = ""

    def start(self) -> None:
        if not self.cfg.endpoint:
            return
        self._thread = threading.Thread(target=self._run, name="control", daemon=True)
        self._thread.start()
        self._ready.wait(5.0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _bind(self, ctx: zmq.Context) -> zmq.Socket:
        sock = ctx.socket(zmq.REP)
        sock.linger = 0
        sock.maxmsgsize = 64 * 1024
        ep = self.cfg.endpoint
        path = ep[len("ipc://"):] if ep.startswith("ipc://") else ""
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            old = os.umask(0o177)  # the socket file is created 0600: only this user may command the robot
            try:
                sock.bind(ep)
            finally:
                os.umask(old)
            os.chmod(path, 0o600)
        else:
            sock.bind(ep)
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return sock

    def _run(self) -> None:
        ctx = zmq.Context.instance()
        try:
            sock = self._bind(ctx)
        except (zmq.ZMQError, OSError) as e:
            self.error = f"cannot bind {self.cfg.endpoint}: {e}"
            log.error("operator control channel off: %s", self.error)
            self._ready.set()
            return
        log.info("operator control channel on %s (python -m onboard.control --endpoint %s status)",
                 self.endpoint, self.endpoint)
        self._ready.set()
        try:
            while not self._stop.is_set():
                if self.explainer is not None:
                    try:
                        self.explainer.maybe_log()
                    except Exception:  # a status helper must not end the channel
                        log.exception("explainer failed")
                if not sock.poll(100):
                    continue
                raw = sock.recv()
                try:
                    reply = self.handle(json.loads(raw))
                except (ValueError, TypeError, AttributeError) as e:
                    reply = {"ok": False, "message": f"bad request: {e}"}
                sock.send(strict_json.dumps(reply, default=_json_default).encode())
        finally:
            sock.close(linger=0)
            if self.cfg.endpoint.startswith("ipc://"):
                Path(self.cfg.endpoint[len("ipc://"):]).unlink(missing_ok=True)

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        name = str(req.get("cmd", "")).lower()
        arg = str(req.get("arg", ""))
        self.commands += 1
        if name == "status":
            reply = {"ok": True, **self.status()}
        else:
            log.info("operator: %s %s", name, arg)
            cmd = self.supervisor.submit(name, arg)
            if not cmd.done.wait(self.cfg.reply_timeout_s):
                return {"ok": False, "message": f"{name}: the loop did not take it within "
                                                f"{self.cfg.reply_timeout_s:.1f} s (is it running?); "
                                                "it is applied when the loop runs again"}
            reply = dict(cmd.reply)
        if self.explainer is not None:
            reply["why"] = self.explainer.reason()
        return reply


def _json_default(x: Any) -> Any:
    """Objects in replies (numpy values are made plain by strict_json already)."""
    if hasattr(x, "__dict__"):
        return vars(x)
    return str(x)


# ---------------------------------------------------------------------------- the client
def request(endpoint: str, cmd: str, arg: str = "", timeout_s: float = 5.0) -> dict[str, Any]:
    """One command to a running robot program; raises TimeoutError when nothing answers."""
    check_endpoint(endpoint)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    try:
        sock.connect(endpoint)
        sock.send(json.dumps({"cmd": cmd, "arg": arg}).encode())
        if not sock.poll(int(timeout_s * 1000)):
            raise TimeoutError(f"no answer from {endpoint} within {timeout_s:.0f} s (is the robot program running?)")
        return json.loads(sock.recv())
    finally:
        sock.close(linger=0)


def _endpoint_from_config(path: str) -> str:
    from onboard.config import load_toml

    return load_toml(path).control.endpoint


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m onboard.control",
                       description="Command a running robot program (onboard/run.py) over its local control channel.",
                       epilog="\n".join(f"  {k:9s} {v}" for k, v in HELP.items()),
                       example="python -m onboard.control status\n"
                               "python -m onboard.control pin 12 --config configs/onboard.toml")
    p.add_argument("cmd", choices=COMMANDS, metavar="COMMAND", help="one of: " + ", ".join(COMMANDS))
    p.add_argument("arg", nargs="?", default="", help="pin: the version (or 'controller')")
    p.add_argument("--endpoint", default="", help=f"the channel (default: the config's, else {DEFAULT_ENDPOINT})")
    p.add_argument("--config", default="", help="the robot program's TOML config: its [control] endpoint")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer")
    p.add_argument("--json", action="store_true", help="print the whole reply as JSON")
    args = p.parse_args(argv)
    if args.cmd == "pin" and not args.arg:
        p.error("pin needs a VERSION (or 'controller')")
    endpoint = args.endpoint or (_endpoint_from_config(args.config) if args.config else DEFAULT_ENDPOINT)
    try:
        reply = request(endpoint, args.cmd, args.arg, args.timeout)
    except (TimeoutError, ValueError, zmq.ZMQError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json or args.cmd == "status":
        print(strict_json.dumps(reply, indent=1, default=str))
    else:
        print(f"{'ok' if reply.get('ok') else 'REFUSED'}: {reply.get('message', '')} | mode {reply.get('mode', '?')}"
              f"{'' if reply.get('armed', True) else ' (not armed)'} | policy v{reply.get('policy_version', '?')}"
              + (f" | not moving: {reply['why']}" if reply.get("why") else ""))
    return 0 if reply.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
