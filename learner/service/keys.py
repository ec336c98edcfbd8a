"""CURVE key pairs for the robot <-> learner link.

Why a module: keys are generated at run time on the machine that uses them (never committed), and
the learner authorises robots by the public-key files in one directory. `zmq.auth` writes the
standard ZeroMQ certificate files (`<name>.key` public, `<name>.key_secret` secret).

    python -m learner.service.keys create --name robot1 --dir keys/
    python -m learner.service.keys authorise --public keys/robot1.key --dir keys/authorized/
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import zmq.auth

log = logging.getLogger(__name__)


class KeyError_(ValueError):
    """A key file is missing or unreadable."""


@dataclass(frozen=True)
class KeyPair:
    """A loaded CURVE key pair (z85 bytes); `secret` is None for a public-only certificate."""

    public: bytes
    secret: bytes | None


def create_keypair(name: str, key_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Create `<dir>/<name>.key` and `<dir>/<name>.key_secret`; returns (public, secret) paths.

    The secret file is made readable by the owner only.
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad key name {name!r}: use a plain file stem such as 'robot1'")
    key_dir = Path(key_dir)
    key_dir.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(key_dir), name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


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
    shutil.copyfile(src, dst)
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
    parser = argparse.ArgumentParser(prog="python -m learner.service.keys", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_create = sub.add_parser("create", help="create a CURVE key pair")
    p_create.add_argument("--name", required=True, help="file stem, e.g. robot1 or learner")
    p_create.add_argument("--dir", default="keys", help="directory to write the pair into")
    p_auth = sub.add_parser("authorise", help="authorise a robot's public key on the learner")
    p_auth.add_argument("--public", required=True, help="the robot's <name>.key file")
    p_auth.add_argument("--dir", default="keys/authorized", help="learner's authorised-keys dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        if args.cmd == "create":
            public, secret = create_keypair(args.name, args.dir)
            print(f"public: {public}\nsecret: {secret}")
        else:
            print(f"authorised: {authorise(args.public, args.dir)}")
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
