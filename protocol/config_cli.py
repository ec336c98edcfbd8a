"""Dataclass configs for every program: defaults in code < a TOML file < command-line flags.

Why one module (standard library only, so the robot can import it): the robot program, the
virtual robot, the learner service, `learner.train`, the demo and the fleet all describe their
settings as dataclasses whose fields carry their `--help` text in metadata (`help_field`).
Building the parser and merging the layers in one place keeps their command lines alike:
- a flat config (the learner's programs): one `--field-name` per field;
- a sectioned config (the robot program, the virtual robot): a field whose type is itself a
  dataclass is a section: a `[section]` table in TOML and `--section.field-name` flags;
- booleans are `--x` / `--no-x` (`--x true|false` is accepted too, for scripts);
- flags are spelled with dashes; the underscore spelling of the same name is accepted as well;
- no abbreviations (`allow_abbrev=False`: `--run.rate` is an error, not `--run.rate-hz`);
- every option's --help shows its default, every program's --help an example (`ArgumentParser`,
  which the programs without a config dataclass use too; tests/docs/test_cli_help.py);
- an unknown TOML key or section, or a value of the wrong type, is a `ConfigError` naming it.
Help comes from field metadata, never from the source (which a robot install may not ship).
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
import typing
from typing import Any

BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


class ConfigError(ValueError):
    """A config value is unknown, out of range or inconsistent; the message names the field."""


def help_field(default: Any = dataclasses.MISSING, help: str = "", *,  # argparse's name
               factory: Any = dataclasses.MISSING, **meta: Any) -> Any:
    """A dataclass field with its --help text (and optional argparse `nargs`/`type` in `meta`).

    A list or dict default is copied per instance; `factory` builds a default (a section)."""
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata={"help": help, **meta})
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **meta})
    return dataclasses.field(default=default, metadata={"help": help, **meta})


def field_help(cls: type) -> dict[str, str]:
    """Field name -> its help text (metadata; empty where a field has none)."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _optional_inner(tp: Any) -> Any:
    """T for `T | None`, else None."""
    args = typing.get_args(tp)
    if type(None) in args and len(args) == 2:
        return next(a for a in args if a is not type(None))
    return None


def coerce(value: Any, tp: Any, where: str) -> Any:
    """`value` (from TOML, or a CLI string) as type `tp`; ConfigError naming `where` if it is not one."""
    inner = _optional_inner(tp)
    if inner is not None:
        return None if value is None else coerce(value, inner, where)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in BOOL_WORDS:
            return BOOL_WORDS[value.lower()]
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is tuple and args:
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, (list, tuple)):
            return tuple(coerce(v, args[0], where) for v in items)
    elif origin is list or tp is list:
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, (list, tuple)):
            return [coerce(v, args[0], where) for v in items] if args else list(items)
    else:
        return value
    raise ConfigError(f"{where} = {value!r}: expected {getattr(tp, '__name__', tp)}")


def parse_toml_value(text: str) -> Any:
    """A CLI value as TOML (`3`, `0.1`, `true`, `[1, 2]`); anything else stays a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# ---------------------------------------------------------------------------- parsers
def _shows_default(value: Any) -> bool:
    """Whether a default is a value worth printing (0 is; None, False and empty are not)."""
    if value is None or value is False or value is argparse.SUPPRESS:
        return False
    return not (isinstance(value, (str, list, tuple, dict)) and not value)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written (their examples keep their lines); an option's help
    ends with "(default X)" where it has a default and does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or not _shows_default(action.default) or "default" in text.lower():
            return text
        return f"{text} (default %(default)r)" if text else "(default %(default)r)"


class ArgumentParser(argparse.ArgumentParser):
    """Every program's parser: no abbreviations, defaults shown (`HelpFormatter`), and `example`
    (a command line, or several on their own lines) printed after the options as "example:".
    A subcommand made by `add_subparsers().add_parser(...)` is one too (argparse builds it with
    the parent's class), so it takes `example=` as well."""

    def __init__(self, *args: Any, example: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        if example:
            lines = "\n".join("  " + line for line in example.strip().splitlines())
            epilog = kwargs.get("epilog")
            kwargs["epilog"] = f"{epilog}\n\nexample:\n{lines}" if epilog else f"example:\n{lines}"
        super().__init__(*args, **kwargs)


# ---------------------------------------------------------------------------- flags
class _BoolFlag(argparse.Action):
    """`--x` (true), `--x true|false` and `--no-x` (false)."""

    def __init__(self, option_strings, dest, **kw):
        negatives = [s[:2] + "no-" + s[2:] for s in option_strings]
        super().__init__(option_strings + negatives, dest, nargs="?", metavar="BOOL", **kw)
        self._negatives = set(negatives)

    def __call__(self, parser, namespace, value, option_string=None):
        if option_string in self._negatives:
            if value is not None:
                parser.error(f"{option_string} takes no value")
            setattr(namespace, self.dest, False)
            return
        if value is None:
            setattr(namespace, self.dest, True)
        elif value.lower() in BOOL_WORDS:
            setattr(namespace, self.dest, BOOL_WORDS[value.lower()])
        else:
            parser.error(f"{option_string}: expected true or false, got {value!r}")


def _spellings(prefix: str, name: str, rename: dict[str, str] | None) -> list[str]:
    if rename and name in rename:
        return [rename[name]]
    dashed = "--" + prefix + name.replace("_", "-")
    underscored = "--" + prefix + name
    return [dashed] if dashed == underscored else [dashed, underscored]


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type,
                            flag_names: dict[str, str] | None = None, *, _prefix: str = "") -> None:
    """One flag per field of `cls`, and per field of each section (a dataclass-typed field).

    Every flag defaults to None so an unset flag never overrides the TOML layer; its dest is the
    dotted path ("run.lockstep"). bool fields get `--x/--no-x`; list fields take several values;
    dict fields take repeatable KEY=VALUE items (VALUE parsed as TOML); `flag_names` renames some
    top-level flags.
    """
    hints = _hints(cls)
    group = parser.add_argument_group(_prefix[:-1]) if _prefix else parser
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if _is_section(tp):
            add_dataclass_arguments(parser, tp, _prefix=_prefix + f.name + ".")
            continue
        flags = _spellings(_prefix, f.name, None if _prefix else flag_names)
        dest = _prefix + f.name
        text = (f.metadata.get("help") or f.name.replace("_", " ")).replace("%", "%%")
        shown = f"{text} (default {_default(f)!r})"
        if tp is bool:
            group.add_argument(*flags, dest=dest, default=None, action=_BoolFlag, help=shown)
        elif tp is dict:
            group.add_argument(*flags, dest=dest, default=None, action="append", metavar="KEY=VALUE",
                               help=f"{text}; repeatable, VALUE parsed as TOML")
        elif tp is list:
            group.add_argument(*flags, dest=dest, default=None, nargs=f.metadata.get("nargs", "*"),
                               type=f.metadata.get("type", str), help=shown)
        else:
            group.add_argument(*flags, dest=dest, default=None, metavar=f.metadata.get("metavar", "V"),
                               help=shown)


# ---------------------------------------------------------------------------- layers
def read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config {path!r}: {exc}") from None


def _cli_values(cls: type, args: argparse.Namespace | None, prefix: str = "") -> dict[str, Any]:
    """The flags set on the command line, as a nested dict like a TOML document."""
    out: dict[str, Any] = {}
    if args is None:
        return out
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp, dest = hints[f.name], prefix + f.name
        if _is_section(tp):
            sub = _cli_values(tp, args, dest + ".")
            if sub:
                out[f.name] = sub
            continue
        v = getattr(args, dest, None)
        if v is None:
            continue
        if tp is dict:
            table: dict[str, Any] = {}
            for item in v:
                key, sep, raw = item.partition("=")
                if not sep:
                    raise ConfigError(f"{dest}: expected KEY=VALUE, got {item!r}")
                table[key.strip()] = parse_toml_value(raw.strip())
            v = {"__merge__": table}
        out[f.name] = v
    return out


def build(cls: type, values: dict[str, Any], base: Any = None, where: str = "") -> Any:
    """An instance of `cls` from `base` (or the defaults) updated by `values` (a TOML-like dict).

    Unknown keys are a ConfigError listing the known ones; each value is checked against its
    field's type; the dataclass's own checks (`__post_init__`) run again on the result."""
    hints = _hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {unknown}; known: {sorted(hints)}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        old = getattr(base, f.name) if base is not None else _default(f)
        if f.name not in values:
            kwargs[f.name] = old
            continue
        v, tp, here = values[f.name], hints[f.name], f"{where}.{f.name}" if where else f.name
        if _is_section(tp):
            if not isinstance(v, dict):
                raise ConfigError(f"{here} = {v!r}: must be a [{here}] table")
            kwargs[f.name] = build(tp, v, old, here)
        elif tp is dict:
            if isinstance(v, dict) and "__merge__" in v:
                kwargs[f.name] = {**(old or {}), **v["__merge__"]}
            elif isinstance(v, dict):
                kwargs[f.name] = dict(v)
            else:
                raise ConfigError(f"{here}: must be a table")
        else:
            kwargs[f.name] = coerce(v, tp, here)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


def merge_layers(cls: type, toml_path: str | None, args: argparse.Namespace | None) -> dict[str, Any]:
    """Field values from the TOML file (unknown keys are an error), then from the CLI flags set
    (a flat config's values, for callers that post-process them before building)."""
    values: dict[str, Any] = read_toml(toml_path) if toml_path else {}
    hints = _hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ConfigError(f"{toml_path}: unknown key(s) {unknown}; known: {sorted(hints)}")
    for name, v in _cli_values(cls, args).items():
        if isinstance(v, dict) and "__merge__" in v:
            v = {**values.get(name, {}), **v["__merge__"]}
        elif hints[name] is not dict and not _is_section(hints[name]):
            v = coerce(v, hints[name], name)
        values[name] = v
    return values


def load_cli(cls: type, args: argparse.Namespace | None, base: Any = None) -> Any:
    """`base` (or the defaults) updated by the flags set on the command line."""
    return build(cls, _cli_values(cls, args), base)


def load_config(cls: type, toml_path: str | None, args: argparse.Namespace | None):
    """Build `cls` from the three layers and run its `validate()` if it has one."""
    base = None
    if toml_path:
        try:
            base = build(cls, read_toml(toml_path))
        except ConfigError as exc:
            raise ConfigError(exc if str(exc).startswith("cannot read") else f"{toml_path}: {exc}") from None
    cfg = load_cli(cls, args, base)
    if hasattr(cfg, "validate"):
        checked = cfg.validate()
        return cfg if checked is None else checked
    return cfg


def make_parser(cls: type, prog: str, description: str | None,
                config_help: str | None = None, example: str | None = None) -> argparse.ArgumentParser:
    """`--config file.toml`, then one flag per field (and per field of each section); `example`
    is shown after the options."""
    parser = ArgumentParser(prog=prog, description=description, example=example)
    parser.add_argument("--config", default="", help=config_help or f"TOML file of {cls.__name__} fields "
                        "(CLI flags override it)")
    add_dataclass_arguments(parser, cls)
    return parser


def parse_cli(cls: type, prog: str, description: str | None, argv: list[str] | None,
              example: str | None = None):
    """The command line of a program configured by one dataclass (the demo, the fleet). Returns
    the validated config, or None after logging the error (the caller exits 2)."""
    import logging

    args = make_parser(cls, prog, description, example=example).parse_args(argv)
    try:
        return load_config(cls, args.config, args)
    except (ConfigError, OSError, TypeError) as exc:
        logging.getLogger(prog).error("config error: %s", exc)
        return None
