"""The learner service: `python learner/serve.py --config configs/serve.toml` (or -m learner.serve).

Robots connect over ZMQ (CURVE-authenticated ROUTER), stream transitions into a durable store,
and get newer policies as training produces them. See docs/service.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # `python learner/serve.py` from the project root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from learner.service.config import ConfigError, ServeConfig, add_arguments, load_config
from protocol.config_cli import ArgumentParser
from protocol.logs import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python learner/serve.py", description=__doc__,
                            example="python learner/serve.py --config configs/serve.toml --max-updates 20000")
    parser.add_argument("--config", help="TOML file of ServeConfig fields (CLI flags override it)")
    add_arguments(parser, ServeConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(ServeConfig, args.config, args)
    except (ConfigError, OSError, TypeError) as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    try:
        setup_logging(cfg.log_level)
    except ValueError as exc:  # a log-level typo is a config error, not a silent INFO
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    from learner.service.app import Service

    from learner.service.store import StoreError

    try:
        service = Service(cfg)
    except (OSError, ValueError, StoreError) as exc:
        logging.getLogger("learner.serve").error("cannot start: %s", exc)
        return 2
    service.install_signal_handlers()
    try:
        endpoint = service.start()
    except Exception as exc:  # noqa: BLE001 - bind/key errors: say so and stop cleanly
        logging.getLogger("learner.serve").error("cannot start: %s", exc)
        service.shutdown()
        return 2
    print(f"serving on {endpoint} (run folder {cfg.run_dir})", flush=True)
    try:
        service.wait()
    finally:
        service.shutdown()
    if service.failed:
        logging.getLogger("learner.serve").error("exiting with code 1: the %s thread died (see "
                                                 "the traceback above)", service.failed)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
