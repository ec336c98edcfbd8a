"""A minimal learner endpoint (ROUTER) for onboard tests, benchmarks and demos without the learner.

Why it exists: the robot side must be testable end to end (real sockets, real CURVE) before and
independently of learner/serve.py. It speaks the protocol's learner half just enough: WELCOME
to HELLO, stores TRANSITIONS rows keyed by (stream, seq) (so duplicates are visible), answers
with cumulative ACKs, echoes heartbeats, pushes POLICY on request and records POLICY_RESULTs.
Not a product: no persistence, no auth list beyond the CURVE server key.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from protocol.messages import (
    Ack,
    Heartbeat,
    Hello,
    Policy,
    PolicyResult,
    ProtocolError,
    Transitions,
    Welcome,
    decode,
    encode,
)


@dataclass
class DevLearnerLog:
    rows: dict[tuple[str, int], tuple] = field(default_factory=dict)  # (stream, seq) -> (obs row, source)
    duplicates: int = 0  # rows received again (at-least-once resends)
    hellos: int = 0
    heartbeats: list[Heartbeat] = field(default_factory=list)
    policy_results: list[PolicyResult] = field(default_factory=list)
    policy_result_t: dict[int, float] = field(default_factory=dict)  # version -> perf_counter at receipt
    bad: int = 0


class DevLearner:
    """ROUTER on `endpoint`; CURVE when `server_secret_key_file` is given. Thread-based."""

    def __init__(self, endpoint: str, server_secret_key_file: str = "", client_keys_dir: str = "", ack: bool = True) -> None:
        self.endpoint = endpoint
        self.ack = ack
        self.log = DevLearnerLog()
        self._ctx = zmq.Context()
        self._auth: ThreadAuthenticator | None = None
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        if server_secret_key_file:
            self._auth = ThreadAuthenticator(self._ctx)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=client_keys_dir)
            pub, sec = zmq.auth.load_certificate(server_secret_key_file)
            self._sock.curve_secretkey, self._sock.curve_publickey, self._sock.curve_server = sec, pub, True
        self._sock.bind(endpoint)
        self._peer: bytes | None = None
        self._outbox: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dev-learner", daemon=True)
        self._thread.start()

    def push_policy(self, version: int, onnx_bytes: bytes, sha256: str | None = None) -> None:
        msg = Policy.from_onnx(version, onnx_bytes)
        if sha256 is not None:
            msg.sha256 = sha256
        with self._lock:
            self._outbox.append(encode(msg, validate=sha256 is None))

    def rows_of(self, stream: str) -> list[int]:
        return sorted(seq for (s, seq) in self.log.rows if s == stream)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._sock.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()

    def _run(self) -> None:
        highest: dict[str, int] = {}
        while not self._stop.is_set():
            with self._lock:
                out, self._outbox = self._outbox, []
            for data in out:
                if self._peer is not None:
                    self._sock.send_multipart([self._peer, data])
            if not self._sock.poll(20):
                continue
            peer, data = self._sock.recv_multipart()
            self._peer = peer
            try:
                m = decode(data)
            except ProtocolError:
                self.log.bad += 1
                continue
            reply = None
            if isinstance(m, Hello):
                self.log.hellos += 1
                reply = Welcome(accepted=True, acked=dict(highest), heartbeat_interval_s=0.5)
            elif isinstance(m, Transitions):
                for i in range(m.n_rows):
                    key = (m.stream_id, m.first_seq + i)
                    if key in self.log.rows:
                        self.log.duplicates += 1
                    self.log.rows[key] = (m.obs[i].copy(), int(m.source[i]), int(m.policy_version[i]))
                seqs = self.rows_of(m.stream_id)
                contiguous = -1
                for s in seqs:  # cumulative ack: the highest seq with every earlier one stored
                    if s != contiguous + 1:
                        break
                    contiguous = s
                highest[m.stream_id] = contiguous
                if self.ack:
                    reply = Ack(stream_id=m.stream_id, acked_seq=contiguous)
            elif isinstance(m, Heartbeat):
                self.log.heartbeats.append(m)
                del self.log.heartbeats[:-50]
                reply = Heartbeat(seq=m.seq, t_us=time.time_ns() // 1000)
            elif isinstance(m, PolicyResult):
                self.log.policy_results.append(m)
                self.log.policy_result_t[m.version] = time.perf_counter()
            if reply is not None:
                self._sock.send_multipart([peer, encode(reply)])
