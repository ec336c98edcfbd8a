"""What a failed ZMQ handshake means, in words a person can act on (both sides use it).

Why: a robot with the wrong keys, or in plaintext against the CURVE learner, is dropped inside
libzmq before any message arrives; without a socket monitor both sides just wait ("no robots" on
the learner, endless retries on the robot). `HandshakeWatch` reads a socket's monitor events and
logs, at most once per period and kind, what happened and what to do.
"""

from __future__ import annotations

import logging
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
          | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class HandshakeWatch:
    """Monitor one socket for handshake failures; `check()` is non-blocking."""

    def __init__(self, sock: zmq.Socket, hints: dict[str, str], log: logging.Logger,
                 every_s: float = 30.0) -> None:
        self.hints = hints  # "auth" / "protocol" -> what the operator should check
        self.log = log
        self.every_s = every_s
        self.failures: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self._sock = sock
        self._mon: zmq.Socket | None = sock.get_monitor_socket(EVENTS)

    def check(self) -> int:
        """Read pending events; returns how many handshakes failed since the last call."""
        n = 0
        while self._mon is not None and self._mon.poll(0):
            try:
                event = recv_monitor_message(self._mon, zmq.NOBLOCK)
            except zmq.ZMQError:
                break
            kind = "auth" if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH else "protocol"
            self.failures[kind] = self.failures.get(kind, 0) + 1
            n += 1
            now = time.monotonic()
            if now - self._last.get(kind, -1e9) >= self.every_s:
                self._last[kind] = now
                self.log.error("handshake refused (%s, %d so far, on %s): %s", kind,
                               self.failures[kind], event.get("endpoint", b"").decode(errors="replace"),
                               self.hints[kind])
        return n

    def close(self) -> None:
        if self._mon is not None:
            try:
                self._sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self._mon.close(linger=0)
            self._mon = None
