"""Endpoint checks both sides share: is a ZMQ endpoint on this machine only?

Why one function: plaintext (no CURVE) is allowed only on loopback, and the robot and the learner
must agree on what loopback is. Host names are not resolved: `127.attacker.example` is a name,
not an address, so it is not loopback; `localhost` is the one name accepted.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlparse


def is_loopback(endpoint: str) -> bool:
    """True for ipc:// and inproc://, and for tcp:// to a loopback address or `localhost`."""
    url = urlparse(endpoint)
    if url.scheme in ("ipc", "inproc"):
        return True
    host = (url.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
