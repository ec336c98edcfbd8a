"""CURVE key pairs for the robot <-> learner link.

Why a module: keys are generated at run time on the machine that uses them (never committed), and
the learner authorises robots by the public-key files in one directory. `zmq.auth` writes the
standard ZeroMQ certificate files (`<name>.key` public, `<name>.key_secret` secret).

    python -m learner.service.keys create --name robot1 --dir keys/
    python -m learner.service.keys authorise --public keys/robot1.key --dir keys/authorized/

A secret key file is created readable by its owner only (0600, from the first byte: never
world-readable, not even for an instant) in a folder this command creates 0700. `create` refuses
to replace an existing pair unless `--force`: a new learner key breaks every robot that stored the
old public key, a new robot key must be authorised again.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from protocol.atomic_file import fsync_dir, write_atomic
from protocol.config_cli import ArgumentParser
from protocol.logs import setup_logging

log = logging.getLogger(__name__)


class KeyError_(ValueError):
    """A key file is missing or unreadable."""


@dataclass(frozen=True)
class KeyPair:
    """A loaded CURVE key pair (z85 bytes); `secret` is None for a public-only certificate."""

    public: bytes
    secret: bytes | None


CERT_BANNER = ("#   ZeroMQ CURVE {kind} certificate, made by python -m learner.service.keys\n"
               "#   {note}\n\n")


def _cert_text(kind: str, note: str, public: bytes, secret: bytes | None) -> str:
    """The zmq.auth certificate format (`zmq.auth.load_certificate` reads it)."""
    lines = [CERT_BANNER.format(kind=kind, note=note), "metadata\n", "curve\n",
             f'    public-key = "{public.decode()}"\n']
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"\n')
    return "".join(lines)


def _write_new(path: Path, text: str, mode: int, force: bool) -> None:
    """Create `path` with `mode` from the start (O_EXCL unless force: then replace it with the one
    atomic writer, whose temp file is 0600 from its first byte); durable either way."""
    if force:
        write_atomic(path, text, mode)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(path.parent)


def create_keypair(name: str, key_dir: str | os.PathLike, force: bool = False) -> tuple[Path, Path]:
    """Create `<dir>/<name>.key` (0644) and `<dir>/<name>.key_secret` (0600 from creation);
    returns (public, secret) paths. Raises FileExistsError if either exists and not `force`."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad key name {name!r}: use a plain file stem such as 'robot1'")
    key_dir = Path(key_dir)
    if not key_dir.exists():
        key_dir.mkdir(parents=True, mode=0o700)
        os.chmod(key_dir, 0o700)  # mkdir's mode is filtered by the umask
    public, secret = key_dir / f"{name}.key", key_dir / f"{name}.key_secret"
    existing = [str(p) for p in (public, secret) if p.exists()]
    if existing and not force:
        raise FileExistsError(
            f"{' and '.join(existing)} already exist(s); not replaced: every robot that stored this "
            f"public key (or the learner that authorised it) would need the new one. Use --force "
            "to replace the pair, then copy the new public key where the old one went")
    pub, sec = zmq.curve_keypair()
    _write_new(secret, _cert_text("**Secret**", "DO NOT PROVIDE THIS FILE TO OTHER USERS", pub, sec),
               0o600, force)
    _write_new(public, _cert_text("Public", "the public half: copy it where it is needed", pub,
                                  None), 0o644, force)
    return public, secret


def load_keypair(path: str | os.PathLike) -> KeyPair:
    """Load a certificate file (public or `_secret`); raise KeyError_ with the path if unusable."""
    path = Path(path)
    if not path.is_file():
        raise KeyError_(f"key file not found: {path}")
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (ValueError, OSError) as exc:
        raise KeyError_(f"cannot read key file {path}: {exc}") from exc
    return KeyPair(public=public, secret=secret)


def authorise(public_key_file: str | os.PathLike, authorized_dir: str | os.PathLike) -> Path:
    """Copy a robot's public key into the learner's authorised-keys directory."""
    src = Path(public_key_file)
    load_keypair(src)  # validates the file
    dst_dir = Path(authorized_dir)
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / src.name
    write_atomic(dst, src.read_bytes())  # the learner never reads half a key file
    return dst


def ensure_demo_keys(key_dir: str | os.PathLike, robot_names: list[str]) -> dict[str, Path]:
    """Create (if missing) a `learner` pair and one pair per robot, and authorise the robots.

    Returns paths: 'learner_secret', 'learner_public', 'authorized', and '<robot>_secret'.
    """
    key_dir = Path(key_dir)
    out: dict[str, Path] = {}
    for name in ["learner", *robot_names]:
        secret = key_dir / f"{name}.key_secret"
        if not secret.exists():
            create_keypair(name, key_dir)
        out[f"{name}_secret"] = secret
        out[f"{name}_public"] = key_dir / f"{name}.key"
    authorized = key_dir / "authorized"
    for name in robot_names:
        authorise(key_dir / f"{name}.key", authorized)
    out["authorized"] = authorized
    return out


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m learner.service.keys", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_create = sub.add_parser("create", help="create a CURVE key pair", allow_abbrev=False)
    p_create.add_argument("--name", required=True, help="file stem, e.g. robot1 or learner")
    p_create.add_argument("--dir", default="keys", help="directory to write the pair into")
    p_create.add_argument("--force", action="store_true",
                          help="replace an existing pair (robots holding the old key must be updated)")
    p_auth = sub.add_parser("authorise", help="authorise a robot's public key on the learner", allow_abbrev=False)
    p_auth.add_argument("--public", required=True, help="the robot's <name>.key file")
    p_auth.add_argument("--dir", default="keys/authorized", help="learner's authorised-keys dir")
    args = parser.parse_args(argv)
    setup_logging("INFO")
    try:
        if args.cmd == "create":
            public, secret = create_keypair(args.name, args.dir, force=args.force)
            print(f"public: {public}\nsecret: {secret}")
        else:
            print(f"authorised: {authorise(args.public, args.dir)}")
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
