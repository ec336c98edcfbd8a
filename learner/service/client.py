"""A minimal robot-side link (DEALER) for the replay tool, tests and benchmarks.

Why here and not onboard's streamer: the replay tool must feed recorded transitions "as if a robot
were connected" from the workstation, without the onboard loop; and the service's tests need a
client they control frame by frame (fuzzing, bad keys, schema mismatch). The real robot uses
`onboard/streamer.py`, which speaks the same messages.
"""

from __future__ import annotations

import time
from pathlib import Path

import zmq
import zmq.auth

from learner.service import wire


class LinkClosed(RuntimeError):
    """No reply within the timeout (learner down, or this client was not authorised)."""


class RobotLinkClient:
    """DEALER socket to the learner, CURVE unless `server_public_key` is None."""

    def __init__(self, endpoint: str, robot_secret_key: str | Path | None = None,
                 server_public_key: str | Path | None = None,
                 context: zmq.Context | None = None) -> None:
        self.context = context or zmq.Context.instance()
        self.sock = self.context.socket(zmq.DEALER)
        self.sock.linger = 0
        if server_public_key is not None:
            if robot_secret_key is None:
                raise ValueError("CURVE needs this client's secret key file too")
            pub, sec = zmq.auth.load_certificate(str(robot_secret_key))
            server_pub, _ = zmq.auth.load_certificate(str(server_public_key))
            self.sock.curve_publickey = pub
            self.sock.curve_secretkey = sec
            self.sock.curve_serverkey = server_pub
        self.sock.connect(endpoint)

    def close(self) -> None:
        self.sock.close(linger=0)

    def send(self, msg) -> None:
        self.sock.send(wire.encode(msg))

    def send_raw(self, frame: bytes | list[bytes]) -> None:
        if isinstance(frame, list):
            self.sock.send_multipart(frame)
        else:
            self.sock.send(frame)

    def recv(self, timeout_s: float = 5.0):
        if not self.sock.poll(int(timeout_s * 1000)):
            raise LinkClosed(f"no reply within {timeout_s} s")
        return wire.decode_reply(self.sock.recv())

    def recv_until(self, kind: type, timeout_s: float = 5.0, keep: list | None = None):
        """Receive until a message of `kind` arrives; others go to `keep` if given."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkClosed(f"no {kind.__name__} within {timeout_s} s")
            msg = self.recv(left)
            if isinstance(msg, kind):
                return msg
            if keep is not None:
                keep.append(msg)

    def hello(self, hello: wire.Hello, timeout_s: float = 5.0) -> wire.Welcome:
        self.send(hello)
        return self.recv_until(wire.Welcome, timeout_s)
