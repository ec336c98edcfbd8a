"""Run the onboard control loop: `python onboard/run.py --help` or `python -m onboard.run --help`.

Examples:
    # against a virtual robot started in this process (demo; imports mujoco), learner on loopback
    python onboard/run.py --run.virtual_robot moderate --learner.plaintext true
    # the real robot, settings from a file, one override
    python -m onboard.run --config configs/onboard.toml --link.url /dev/ttyUSB0
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

if __package__ in (None, ""):  # `python onboard/run.py`: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from firmware_bridge.link import LinkError
from onboard.config import ConfigError, config_from_args
from onboard.streamer import LinkConfigError
from protocol.logs import setup_logging

log = logging.getLogger("onboard.run")


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = config_from_args(argv)
    except (ConfigError, LinkConfigError) as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    try:
        setup_logging(cfg.run.log_level)
    except ValueError as e:  # a log-level typo is a config error, not a silent INFO
        print(f"config error: {e}", file=sys.stderr)
        return 2
    from onboard.app import OnboardApp

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        app = OnboardApp(cfg)
    except (LinkConfigError, ValueError, KeyError) as e:
        log.error("cannot start: %s", e)
        return 2
    try:
        try:
            app.start()
        except LinkError as e:  # the usual first-day problem: say what to check, no traceback
            log.error("cannot open the serial link: %s. Check that the firmware is connected and powered, "
                      "that the device path in --link.url (or [link] url in the config) is right (ls /dev/serial/by-id/), "
                      "and that this user may open it (add it to the 'dialout' group, or a udev rule)", e)
            return 2
        if cfg.run.duration_s > 0:
            timer = threading.Timer(cfg.run.duration_s, stop.set)
            timer.daemon = True
            timer.start()
        app.run(stop)
    except Exception as e:
        log.exception("onboard stopped on an error: %s", e)
        return 1
    finally:
        app.close(drain_s=cfg.run.drain_s)
    s = app.status.collect()
    print(f"ticks {s['ticks']} missed {s['missed_deadlines']} mode {s['mode']} policy v{s['policy_version']}"
          f" transitions {s.get('transitions', {}).get('recorded', 0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
