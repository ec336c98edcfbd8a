"""The robot's side of the learner link: stream transitions, heartbeat, receive policies.

Runs on its own thread beside the control loop; the loop only calls `offer(batch)` (a
non-blocking put on a bounded queue: full -> refused and counted by the recorder). Everything
that may wait (fsync, sockets, reconnect back-off) happens here.

Delivery (at-least-once): each batch gets sequence numbers of this run's stream, is appended to
the disk spool (fsync'd) and then sent; the learner's cumulative ACK deletes it from the spool.
After a reconnect (or a restart of this process: the spool is re-read) every unacknowledged
batch is sent again; the learner dedups on (robot, stream, seq). At most `max_inflight` batches
are unacknowledged on the wire (credit, zguide fileio3); the rest waits in the spool.

Trial reports (TRIAL_REPORT) are acknowledged data too: `post()` hands them to this thread, which
numbers them on the process's report stream (`<stream_id>.trials`, seq from 0), appends them to a
second spool (`<spool_dir>/reports/`, fsync'd) and sends every unacknowledged one after each
WELCOME (and again when no ACK comes for `resend_after_s`); the learner's cumulative ACK on the
report stream deletes them. So a trial that ends while the learner is away, or just before this
process is restarted, still reaches the learner, once (it records each (robot, stream, seq) once).
POLICY_RESULT, HEARTBEAT and ERROR go through a small in-memory outbox and may be lost with the
link: the learner asks again for what it needs (it re-sends a POLICY whose result it has not seen
and the robot answers from `_policy_outcomes`; heartbeats repeat).

Liveness (zguide ppworker): any inbound message resets `liveness`; each heartbeat interval with
nothing inbound decrements it; at zero the socket is closed with linger 0 and a fresh one is
opened after an exponential back-off. The session starts with HELLO; nothing else is sent before
WELCOME(accepted). A POLICY is decoded (sha256 checked by the decoder), handed to the policy
loader, and answered with POLICY_RESULT when the loader is done.

Security: CURVE by default (our key pair, the learner's public key: only the learner can send us
POLICY); plain text only on loopback and only when asked.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import zmq
import zmq.auth

from onboard.policy import LOGP_CLIP, PolicyCandidate
from onboard.spool import Spool
from protocol.endpoints import is_loopback
from protocol.handshake import HandshakeWatch
from protocol.config_cli import help_field
from protocol.messages import (
    Ack,
    Error,
    Heartbeat,
    Hello,
    Message,
    MessageDecoder,
    Policy,
    PolicyResult,
    ProtocolError,
    Transitions,
    TrialReport,
    Welcome,
    encode,
    error_for,
)

log = logging.getLogger(__name__)

MAX_DECLARED_STREAMS = 256  # = protocol Limits.max_map_len: what one HELLO may carry
REPORT_SPOOL_SUBDIR = "reports"  # the trial reports' spool, inside spool_dir
REPORT_STREAM_SUFFIX = ".trials"  # report stream id = transitions stream id (<= 57 chars) + this
REPORT_SPOOL_BYTES = 16 * 1024 * 1024  # a report is ~1 kB: thousands of trials


class LinkConfigError(ValueError):
    """The learner link is configured in a way that would be unsafe or cannot work."""


@dataclass
class StreamerConfig:
    """Where the learner is, how we prove who we are, and the link's timing."""

    endpoint: str = help_field("tcp://127.0.0.1:5555", "the learner's ROUTER")
    robot_id: str = help_field("robot0", "this robot's name in HELLO and in its stream ids")
    plaintext: bool = help_field(False, "no CURVE: only allowed for a loopback endpoint")
    client_secret_key_file: str = help_field("", "our key pair (zmq.auth .key_secret file)")
    server_public_key_file: str = help_field("", "the learner's public key (.key file)")
    spool_dir: str = help_field("runs/spool", "unacknowledged transitions on disk (survive a restart)")
    spool_max_mb: float = help_field(256.0, "a full spool refuses new transitions (counted) until acks free it")
    queue_batches: int = help_field(64, "batches waiting between the loop and this thread")
    max_inflight: int = help_field(8, "unacknowledged batches on the wire")
    heartbeat_interval_s: float = help_field(0.5, "HEARTBEAT period; also the liveness tick")
    liveness: int = help_field(4, "missed heartbeat intervals before the socket is reset")
    reconnect_initial_s: float = help_field(0.25, "first back-off before reopening the socket")
    reconnect_max_s: float = help_field(8.0, "back-off doubles up to this")
    poll_ms: int = help_field(10, "how often the thread wakes to drain the loop's queue")
    resend_after_s: float = help_field(5.0, "no ACK progress this long with batches in flight -> resend them")

    def __post_init__(self) -> None:
        if self.plaintext and not is_loopback(self.endpoint):
            raise LinkConfigError(f"plaintext is only allowed on loopback, not {self.endpoint!r}")
        if not self.plaintext and not (self.client_secret_key_file and self.server_public_key_file):
            raise LinkConfigError("CURVE needs client_secret_key_file and server_public_key_file (or plaintext on loopback)")


@dataclass
class StreamerCounters:
    batches_spooled: int = 0
    batches_sent: int = 0
    batches_resent: int = 0
    rows_acked: int = 0
    reconnects: int = 0
    hello_refused: int = 0
    policies_received: int = 0
    bad_messages: dict[str, int] = field(default_factory=dict)
    send_dropped: int = 0  # outbound control messages dropped (queue full)
    rows_dropped_spool_full: int = 0  # transitions refused because the spool reached its bound
    handshake_failed: int = 0  # the learner refused the connection (keys, plaintext/CURVE)
    reports_spooled: int = 0  # trial reports written to the report spool
    reports_sent: int = 0  # trial report sends (resends included)
    reports_acked: int = 0  # trial reports the learner acknowledged (deleted from the spool)
    reports_dropped: int = 0  # trial reports refused (report queue or spool full; logged)


class Streamer:
    """See the module docstring. Start with `start()`, stop with `stop()`."""

    def __init__(
        self,
        cfg: StreamerConfig,
        hello: Callable[[], Hello],
        stats: Callable[[], dict[str, float]] = dict,
        policy_version: Callable[[], int] = lambda: -1,
        on_policy: Callable[[PolicyCandidate], None] | None = None,
        stream_id: str | None = None,
    ) -> None:
        self.cfg = cfg
        self._hello = hello
        self._stats = stats
        self._policy_version = policy_version
        self._on_policy = on_policy
        self.stream_id = stream_id or f"{cfg.robot_id}-{time.time_ns() // 1_000_000}"[:64]
        self.spool = Spool(cfg.spool_dir, max_bytes=int(cfg.spool_max_mb * 1024 * 1024))
        # Trial reports: acknowledged like transitions, in their own spool (a subfolder, which
        # the transitions spool does not read) and on their own stream.
        self.reports = Spool(os.path.join(cfg.spool_dir, REPORT_SPOOL_SUBDIR), max_bytes=REPORT_SPOOL_BYTES)
        self.report_stream_id = f"{self.stream_id[:64 - len(REPORT_STREAM_SUFFIX)]}{REPORT_STREAM_SUFFIX}"
        self._report_queue: queue.Queue[TrialReport] = queue.Queue(maxsize=256)
        self._next_report_seq = 0
        self._report_idx = 0  # index into reports.records of the next report to send
        self._last_report_ack = time.monotonic()
        self.counters = StreamerCounters()
        self.decoder = MessageDecoder()
        self._batches: queue.Queue[dict[str, np.ndarray]] = queue.Queue(maxsize=cfg.queue_batches)
        self._outbox: queue.Queue[Message] = queue.Queue(maxsize=64)
        self._next_seq = 0
        self._ctx = zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._handshakes: HandshakeWatch | None = None
        self._welcomed = False
        self._liveness = 0
        self._backoff_s = cfg.reconnect_initial_s
        self._reconnect_at = 0.0
        self._send_idx = 0  # index into spool.records of the next batch to send
        self._last_ack_progress = time.monotonic()
        self._hb_seq = 0
        self._declared: set[str] = set()  # streams the last HELLO declared
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._policy_outcomes: dict[int, tuple[bool, str] | None] = {}  # version -> outcome; None: validating
        self._outcomes_lock = threading.Lock()
        self._keys = self._load_keys() if not cfg.plaintext else None

    # ------------------------------------------------------------------ loop-facing API
    def offer(self, batch: dict[str, np.ndarray]) -> bool:
        """Non-blocking hand-off from the loop; False when the queue is full (caller counts)."""
        try:
            self._batches.put_nowait(batch)
            return True
        except queue.Full:
            return False

    def policy_result(self, version: int, accepted: bool, reason: str) -> None:
        """From the policy loader's thread: queue a POLICY_RESULT for the learner."""
        with self._outcomes_lock:  # the loader's thread writes, the streamer's thread reads
            self._policy_outcomes[version] = (accepted, reason)
            while len(self._policy_outcomes) > 32:
                self._policy_outcomes.pop(next(iter(self._policy_outcomes)))
        self._post(PolicyResult(version=version, accepted=accepted, reason=reason[:200], t_us=time.time_ns() // 1000))

    def post(self, m: Message) -> None:
        """From any thread: queue a message for the learner. A TRIAL_REPORT goes to the report
        spool (acknowledged delivery, see the module docstring); anything else to the outbox,
        dropped and counted in `send_dropped` when it is full."""
        if isinstance(m, TrialReport):
            try:
                self._report_queue.put_nowait(m)
            except queue.Full:
                self.counters.reports_dropped += 1
                log.error("trial report of v%d dropped: %d reports wait to be spooled", m.version,
                          self._report_queue.qsize())
            return
        self._post(m)

    @property
    def connected(self) -> bool:
        return self._welcomed and self._liveness > 0

    @property
    def link_state(self) -> str:
        """"up" (welcomed), "connecting" (socket open, no WELCOME yet) or "backoff" (no socket)."""
        if self._sock is None:
            return "backoff"
        return "up" if self.connected else "connecting"

    def status(self) -> dict[str, Any]:
        c = self.counters
        return {
            "connected": self.connected,
            "link": self.link_state,
            "stream_id": self.stream_id,
            "spool_rows": self.spool.pending_rows,
            "spool_batches": len(self.spool.records),
            "spool_rows_dropped": c.rows_dropped_spool_full,
            "queue_batches": self._batches.qsize(),
            "batches_sent": c.batches_sent,
            "batches_resent": c.batches_resent,
            "rows_acked": c.rows_acked,
            "reconnects": c.reconnects,
            "handshake_failed": c.handshake_failed,
            "bad_messages": dict(c.bad_messages),
            "reports_pending": len(self.reports.records) + self._report_queue.qsize(),
            "reports_sent": c.reports_sent,
            "reports_acked": c.reports_acked,
            "reports_dropped": c.reports_dropped,
        }

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="streamer", daemon=True)
        self._thread.start()

    def stop(self, drain_s: float = 0.0) -> None:
        """Stop the thread; with `drain_s`, first wait up to that long for the spool to empty."""
        deadline = time.monotonic() + drain_s
        # unfinished_tasks, not qsize: a batch this thread has taken off the queue but not yet
        # spooled is in neither the queue nor the spool (the drain used to end in that moment,
        # leaving the last batch of a stopping robot unsent until its next start)
        while drain_s > 0 and time.monotonic() < deadline and (
                self._batches.unfinished_tasks or self.spool.records or self._report_queue.unfinished_tasks
                or self.reports.records):
            time.sleep(0.02)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        try:
            self._connect()
            next_hb = time.monotonic()
            while not self._stop.is_set():
                self._spool_new_batches()  # also while disconnected: the spool is the buffer
                self._spool_new_reports()
                now = time.monotonic()
                if self._sock is None:
                    if now < self._reconnect_at:
                        self._stop.wait(self.cfg.poll_ms / 1000)
                        continue
                    self.counters.reconnects += 1
                    self._connect()
                    next_hb = now
                self._flush_outbox()
                self._send_reports()
                self._send_window()
                if now >= next_hb:
                    next_hb = now + self.cfg.heartbeat_interval_s
                    self._heartbeat_tick()
                if self._sock is not None:
                    self._poll(min(self.cfg.poll_ms, max(0, int((next_hb - time.monotonic()) * 1000))))
        except Exception:
            log.exception("streamer thread crashed")
        finally:
            try:
                self._spool_new_batches()  # batches handed over after the last pass: keep them on disk
                self._spool_new_reports()
            except Exception:
                log.exception("could not spool the last batches")
            self._close_socket()
            self.spool.close()
            self.reports.close()

    def _connect(self) -> None:
        s = self._ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 1000)
        s.setsockopt(zmq.RCVHWM, 1000)
        s.setsockopt(zmq.IMMEDIATE, 1)  # queue nothing on a half-open connection
        s.setsockopt(zmq.MAXMSGSIZE, 64 * 1024 * 1024)
        s.setsockopt_string(zmq.IDENTITY, f"{self.cfg.robot_id}.{os.getpid()}.{id(self):x}.{self.counters.reconnects}")
        if self._keys is not None:
            pub, sec, server = self._keys
            s.curve_publickey, s.curve_secretkey, s.curve_serverkey = pub, sec, server
        self._handshakes = HandshakeWatch(s, {
            "auth": "the learner does not know this robot's key: on the learner run python -m "
                    f"learner.service.keys authorise --public <{self.cfg.robot_id}>.key --dir "
                    "keys/authorized, or point client_secret_key_file at this robot's own key",
            "protocol": "plaintext against a CURVE learner (or the reverse), or "
                        f"server_public_key_file ({self.cfg.server_public_key_file or '-'}) is "
                        "not the learner's current public key: fix [learner] plaintext / keys"},
            log)
        s.connect(self.cfg.endpoint)
        self._sock = s
        self._welcomed = False
        self._liveness = self.cfg.liveness
        self._send_idx = 0  # resend everything unacknowledged on the new session
        self._report_idx = 0
        self._send(self._say_hello())
        log.info("learner link: connecting to %s (stream %s)", self.cfg.endpoint, self.stream_id)

    def declared_streams(self, limit: int = MAX_DECLARED_STREAMS) -> dict[str, int]:
        """stream -> first seq this robot still holds (the next one it will number, for our own
        stream with nothing spooled): our stream first, then the spool's oldest."""
        out = {self.stream_id: self._next_seq}
        for rec in self.spool.records:
            if rec.stream_id == self.stream_id:
                out[self.stream_id] = min(out[self.stream_id], rec.first_seq)
            elif rec.stream_id not in out and len(out) < limit:
                out[rec.stream_id] = rec.first_seq
        return out

    def _say_hello(self) -> Hello:
        """The app's HELLO with the streams this robot holds: a new stream starts where we say,
        and the learner records rows below that which it lacks as lost instead of awaiting them."""
        streams = self.declared_streams()
        self._declared = set(streams)
        gaps = {k: v for k, v in self.spool.gaps().items() if k in streams}
        return dataclasses.replace(self._hello(), streams=streams, gaps=gaps)

    def _close_socket(self) -> None:
        if self._handshakes is not None:
            self._handshakes.close()
            self._handshakes = None
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        self._welcomed = False

    def _load_keys(self) -> tuple[bytes, bytes, bytes]:
        try:
            pub, sec = zmq.auth.load_certificate(self.cfg.client_secret_key_file)
            server, _ = zmq.auth.load_certificate(self.cfg.server_public_key_file)
        except (OSError, ValueError) as e:
            raise LinkConfigError(
                f"cannot load CURVE keys: {e}. Make this robot's pair on it with python -m "
                f"learner.service.keys create --name {self.cfg.robot_id} --dir keys, authorise its "
                ".key on the learner, and copy the learner's keys/learner.key here "
                "(server_public_key_file)") from None
        if sec is None:
            raise LinkConfigError(f"{self.cfg.client_secret_key_file} holds no secret key")
        return pub, sec, server

    def _heartbeat_tick(self) -> None:
        if self._sock is None:
            return
        self._liveness -= 1
        if self._liveness <= 0:
            if self._welcomed:
                log.warning("learner link lost (no message for %d heartbeats)", self.cfg.liveness)
            self._close_socket()
            log.info("learner link: reconnecting in %.2f s", self._backoff_s)
            self._reconnect_at = time.monotonic() + self._backoff_s  # the thread keeps spooling
            self._backoff_s = min(self._backoff_s * 2, self.cfg.reconnect_max_s)
            return
        if self._welcomed:
            self._hb_seq += 1
            stats = {k: float(v) for k, v in self._stats().items() if isinstance(v, (int, float)) and np.isfinite(v)}
            self._send(Heartbeat(seq=self._hb_seq, t_us=time.time_ns() // 1000, policy_version=self._policy_version(), stats=stats))
        else:
            self._send(self._say_hello())  # the HELLO may have been lost (or refused): ask again

    def _spool_new_batches(self) -> None:
        while True:
            try:
                b = self._batches.get_nowait()
            except queue.Empty:
                return
            try:
                self._spool_batch(b)
            finally:
                self._batches.task_done()

    def _spool_batch(self, b: dict[str, np.ndarray]) -> None:
        """Number one batch of the loop's and append it to the spool (fsync) before it is sent."""
        n = int(b["obs"].shape[0])
        logp = b.get("logp")
        if logp is not None and np.isinf(logp).any():  # inf is refused on the wire: clip it
            b = {**b, "logp": np.clip(logp, -LOGP_CLIP, LOGP_CLIP).astype(np.float32)}
        msg = Transitions(stream_id=self.stream_id, first_seq=self._next_seq, **b)
        try:
            data = encode(msg)
        except ProtocolError as e:
            log.error("transition batch not encodable, dropped: %s", e)
            return
        if not self.spool.has_room(len(data)):
            self.counters.rows_dropped_spool_full += n  # before numbering: no hole in the stream
            if self.counters.rows_dropped_spool_full == n:
                log.error("spool full (%.0f MB): new transitions are dropped until the learner acks", self.cfg.spool_max_mb)
            return
        self.spool.append(self.stream_id, self._next_seq, self._next_seq + n - 1, data)
        self._next_seq += n
        self.counters.batches_spooled += 1

    def _spool_new_reports(self) -> None:
        """Number each queued trial report on this process's report stream and spool it (fsync)
        before it may be sent; a full spool refuses it before numbering (no hole)."""
        while True:
            try:
                m = self._report_queue.get_nowait()
            except queue.Empty:
                return
            try:
                self._spool_report(m)
            finally:
                self._report_queue.task_done()

    def _spool_report(self, m: TrialReport) -> None:
        """Number one trial report on the report stream and append it to the report spool (fsync)."""
        numbered = dataclasses.replace(m, stream_id=self.report_stream_id, seq=self._next_report_seq)
        try:
            data = encode(numbered)
        except ProtocolError as e:
            self.counters.reports_dropped += 1
            log.error("trial report of v%d not encodable, dropped: %s", m.version, e)
            return
        if not self.reports.has_room(len(data)):
            self.counters.reports_dropped += 1
            log.error("report spool full: trial report of v%d dropped", m.version)
            return
        self.reports.append(self.report_stream_id, self._next_report_seq, self._next_report_seq, data)
        self._next_report_seq += 1
        self.counters.reports_spooled += 1

    def _send_reports(self) -> None:
        """Every unacknowledged trial report once per session (after WELCOME), and all of them
        again when the learner has acknowledged none for `resend_after_s`."""
        if not self.connected:
            return
        recs = self.reports.records
        if self._report_idx > 0 and time.monotonic() - self._last_report_ack > self.cfg.resend_after_s:
            self._report_idx = 0
            self._last_report_ack = time.monotonic()
        while self._report_idx < len(recs):
            if not self._send_raw(self.reports.read(recs[self._report_idx])):
                return
            if self._report_idx == 0:
                self._last_report_ack = time.monotonic()
            self._report_idx += 1
            self.counters.reports_sent += 1

    def _send_window(self) -> None:
        if not self.connected:
            return
        recs = self.spool.records
        if self._send_idx > 0 and time.monotonic() - self._last_ack_progress > self.cfg.resend_after_s:
            self.counters.batches_resent += self._send_idx
            self._send_idx = 0  # acks stalled: send the window again
            self._last_ack_progress = time.monotonic()
        while self._send_idx < len(recs) and self._send_idx < self.cfg.max_inflight:
            if recs[self._send_idx].stream_id not in self._declared:  # past the HELLO's streams
                self._welcomed = False
                self._send(self._say_hello())
                return
            if not self._send_raw(self.spool.read(recs[self._send_idx])):
                return
            self._send_idx += 1
            self.counters.batches_sent += 1

    def _flush_outbox(self) -> None:
        while self._sock is not None:
            try:
                m = self._outbox.get_nowait()
            except queue.Empty:
                return
            self._send(m)

    def _post(self, m: Message) -> None:
        try:
            self._outbox.put_nowait(m)
        except queue.Full:
            self.counters.send_dropped += 1

    def _send(self, m: Message) -> bool:
        return self._send_raw(encode(m))

    def _send_raw(self, data: bytes) -> bool:
        if self._sock is None:
            return False
        try:
            self._sock.send(data, zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def _poll(self, timeout_ms: int) -> None:
        if self._sock is None:
            return
        if self._handshakes is not None:
            self.counters.handshake_failed += self._handshakes.check()
        if not self._sock.poll(timeout_ms, zmq.POLLIN):
            return
        for _ in range(100):  # bounded per wake-up
            try:
                data = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._liveness = self.cfg.liveness
            self._handle(data)

    def _handle(self, data: bytes) -> None:
        try:
            m = self.decoder.decode(data)
        except ProtocolError as e:
            self.counters.bad_messages[e.code] = self.counters.bad_messages.get(e.code, 0) + 1
            log.warning("bad message from learner (%s): %s", e.code, e)
            self._send(error_for(e))
            return
        if isinstance(m, Welcome):
            self._on_welcome(m)
        elif isinstance(m, Ack):
            self._on_ack(m.stream_id, m.acked_seq)
        elif isinstance(m, Policy):
            self._on_policy_msg(m)
        elif isinstance(m, Error):
            log.warning("learner error %s: %s%s", m.code, m.message, " (fatal: new session)" if m.fatal else "")
            if m.fatal:
                self._welcomed = False
                self._send(self._say_hello())
        # HEARTBEAT from the learner: liveness was already reset.

    def _on_welcome(self, m: Welcome) -> None:
        if not m.accepted:
            self.counters.hello_refused += 1
            log.error("learner refused HELLO: %s", m.reason)
            self._welcomed = False
            return
        if not self._welcomed:
            log.info("learner link up (%s), %d batch(es) to (re)send", self.cfg.endpoint, len(self.spool.records))
        self._welcomed = True
        self._backoff_s = self.cfg.reconnect_initial_s
        self._send_idx = 0
        self._report_idx = 0
        for stream, seq in m.acked.items():
            self._on_ack(stream, seq)

    def _on_ack(self, stream_id: str, acked_seq: int) -> None:
        if stream_id.endswith(REPORT_STREAM_SUFFIX):  # a report stream (transitions ids never end so)
            before = len(self.reports.records)
            self.reports.ack(stream_id, acked_seq)
            removed = before - len(self.reports.records)
            if removed:
                self.counters.reports_acked += removed
                self._report_idx = max(0, self._report_idx - removed)
                self._last_report_ack = time.monotonic()
            return
        before = len(self.spool.records)
        rows = self.spool.ack(stream_id, acked_seq)
        removed = before - len(self.spool.records)
        if removed:
            self.counters.rows_acked += rows
            self._send_idx = max(0, self._send_idx - removed)
            self._last_ack_progress = time.monotonic()

    def _on_policy_msg(self, m: Policy) -> None:
        self.counters.policies_received += 1
        with self._outcomes_lock:
            known = m.version in self._policy_outcomes
            done = self._policy_outcomes.get(m.version)
            if not known:
                self._policy_outcomes[m.version] = None
        if known:  # asked again (heartbeat pull): same answer, once known
            if done is not None:
                self._send(PolicyResult(version=m.version, accepted=done[0], reason=done[1][:200], t_us=time.time_ns() // 1000))
            return
        if self._on_policy is None:
            self.policy_result(m.version, False, "no_loader: this robot does not accept policies")
            return
        self._on_policy(PolicyCandidate(version=m.version, sha256=m.sha256, onnx_bytes=m.onnx, received_t=time.perf_counter()))
