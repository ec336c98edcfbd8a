"""Dataclass configs in three layers: defaults in code < a TOML file < CLI flags.

Why one module: `learner/train.py`, `learner/serve.py` and `learner/demo.py` all describe their
settings as a dataclass whose fields carry their `--help` text; building the parser and merging
the layers the same way keeps their CLIs alike and `--help` always in step with the code.
(The robot side, `onboard/config.py`, keeps its own sectioned loader: it must not import learner.)
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
import typing
from dataclasses import field
from typing import Any


class ConfigError(ValueError):
    """A config value is unknown, out of range or inconsistent; the message names the field."""


def help_field(default: Any, help: str, **kw: Any) -> Any:  # noqa: A002 - mirrors argparse's name
    """A dataclass field with its --help text (and optional argparse `nargs`/`type` in metadata)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type,
                            flag_names: dict[str, str] | None = None) -> None:
    """One `--flag` per field (underscores -> dashes; `flag_names` renames some).

    Every flag defaults to None so an unset flag never overrides the TOML layer. bool fields get
    `--x/--no-x`; list fields take several values; dict fields take repeatable KEY=VALUE items.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = (flag_names or {}).get(f.name, "--" + f.name.replace("_", "-"))
        text, tp = f.metadata.get("help", ""), hints[f.name]
        if tp is bool:
            parser.add_argument(flag, dest=f.name, default=None, action=argparse.BooleanOptionalAction,
                                help=f"{text} (default {_default(f)})")
        elif tp is dict:
            parser.add_argument(flag, dest=f.name, default=None, action="append", metavar="KEY=VALUE",
                                help=f"{text}; repeatable, VALUE parsed as TOML")
        elif tp is list:
            parser.add_argument(flag, dest=f.name, default=None, nargs=f.metadata.get("nargs", "*"),
                                type=f.metadata.get("type", str), help=f"{text} (default {_default(f)})")
        else:
            parser.add_argument(flag, dest=f.name, default=None, type=tp, help=f"{text} (default {_default(f)})")


def parse_toml_value(text: str) -> Any:
    """A CLI value as TOML (`3`, `0.1`, `true`, `[1, 2]`); anything else stays a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def merge_layers(cls: type, toml_path: str | None, args: argparse.Namespace | None) -> dict[str, Any]:
    """Field values from the TOML file (unknown keys are an error), then from the CLI flags set."""
    values: dict[str, Any] = {}
    if toml_path:
        with open(toml_path, "rb") as fh:
            values.update(tomllib.load(fh))
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ConfigError(f"{toml_path}: unknown key(s) {unknown}; known: {sorted(hints)}")
    for name in (f.name for f in dataclasses.fields(cls)):
        v = getattr(args, name, None) if args is not None else None
        if v is None:
            continue
        if hints[name] is dict:
            table = dict(values.get(name, {}))
            for item in v:
                key, sep, raw = item.partition("=")
                if not sep:
                    raise ConfigError(f"{name}: expected KEY=VALUE, got {item!r}")
                table[key.strip()] = parse_toml_value(raw.strip())
            v = table
        values[name] = v
    return values


def load_config(cls: type, toml_path: str | None, args: argparse.Namespace | None):
    """Build `cls` from the three layers and run its `validate()` if it has one."""
    cfg = cls(**merge_layers(cls, toml_path, args))
    if hasattr(cfg, "validate"):
        checked = cfg.validate()
        return cfg if checked is None else checked
    return cfg


def parse_cli(cls: type, prog: str, description: str | None, argv: list[str] | None):
    """The command line of a program configured by one dataclass (the demo, the fleet): `--config
    file.toml` then one flag per field. Returns the validated config, or None after logging the
    error (to stderr before logging is set up; the caller exits 2), so each program does not
    repeat this."""
    import logging

    parser = argparse.ArgumentParser(allow_abbrev=False, prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help=f"TOML file of {cls.__name__} fields (CLI flags override it)")
    add_dataclass_arguments(parser, cls)
    args = parser.parse_args(argv)
    try:
        return load_config(cls, args.config, args)
    except (ConfigError, OSError, TypeError) as exc:
        logging.getLogger(prog).error("config error: %s", exc)
        return None
