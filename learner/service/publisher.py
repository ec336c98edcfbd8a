"""The latest published policy, shared by the trainer (writer) and the network loop (reader).

Why "latest only": a robot that was offline does not need the policies it missed, only the newest;
so the publisher keeps one blob, and the network loop sends it to any robot whose reported
version (HELLO / HEARTBEAT) is older. A new publish also wakes the network loop through an inproc
socket so connected robots get it at once instead of at their next heartbeat.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq



@dataclass(frozen=True)
class PolicyBlob:
    """One exported policy as it goes on the wire."""

    version: int
    onnx: bytes
    sha256: str
    metadata: dict = field(default_factory=dict)
    published_unix: float = 0.0

    @classmethod
    def from_file(cls, path: str | Path, version: int, metadata: dict | None = None) -> "PolicyBlob":
        data = Path(path).read_bytes()
        return cls(version=version, onnx=data, sha256=hashlib.sha256(data).hexdigest(),
                   metadata=dict(metadata or {}), published_unix=time.time())


class Publisher:
    """Thread-safe holder of the latest PolicyBlob, with an optional wake-up for the server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: PolicyBlob | None = None
        self._context: zmq.Context | None = None
        self._wake_endpoint = ""
        self.published = 0

    def attach(self, context: zmq.Context, wake_endpoint: str) -> None:
        """Let `publish` wake the server bound on `wake_endpoint` (inproc, same context)."""
        self._context = context
        self._wake_endpoint = wake_endpoint

    def publish(self, blob: PolicyBlob) -> None:
        if blob.sha256 != hashlib.sha256(blob.onnx).hexdigest():
            raise ValueError(f"policy v{blob.version}: sha256 does not match its bytes")
        with self._lock:
            if self._latest is not None and blob.version <= self._latest.version:
                raise ValueError(f"policy v{blob.version} is not newer than "
                                 f"v{self._latest.version}")
            self._latest = blob
            self.published += 1
        if self._context is not None:
            wake = self._context.socket(zmq.PUSH)
            wake.linger = 0
            wake.sndhwm = 1
            try:
                wake.connect(self._wake_endpoint)
                wake.send(b"", zmq.NOBLOCK)
            except zmq.ZMQError:
                pass  # the server polls the version anyway; a lost wake-up only adds latency
            finally:
                wake.close()

    @property
    def latest(self) -> PolicyBlob | None:
        with self._lock:
            return self._latest

    @property
    def version(self) -> int:
        latest = self.latest
        return latest.version if latest else 0
