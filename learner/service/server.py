"""The learner's network loop: one ROUTER socket, CURVE-authenticated, serving a fleet.

One thread owns the socket (ZMQ sockets are not thread-safe). Per poll round it drains up to
`MAX_DRAIN` inbound frames, handles each (HELLO -> WELCOME or refusal, TRANSITIONS -> ingest,
HEARTBEAT -> liveness and policy push, POLICY_RESULT -> record), then makes the store durable with
one fsync and sends the ACKs of that round. Bad frames are counted by reason and answered with
ERROR; nothing a client sends can raise out of `_handle`, and a reply that cannot be encoded is
logged and dropped (it never ends the loop).

A failed store write or fsync (disk full) cuts the round's records off again: the round's ACKs
are dropped and the robots resend. HELLO carries, per stream, the first row the robot still
holds; rows below it that the store does not hold can never arrive and are recorded as lost
(once, loudly), so no stream stays stuck behind a hole.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from learner.service import wire
from learner.service.evidence import RobotEvidence
from learner.service.ingest import Ingest
from learner.service.publisher import Publisher
from learner.service.sessions import HelloPolicy, SessionTable
from learner.service.store import RealStore, StoreError
from protocol.handshake import HandshakeWatch

STORE_ERROR_LOG_EVERY_S = 10.0
SHARED_KEY_WARN_EVERY_S = 30.0

log = logging.getLogger(__name__)

LEARNER_VERSION = "h2o-robot-learner/0.1"
MAX_DRAIN = 512  # frames handled per round before an fsync + ACKs (bounds ACK latency)
POLL_MS = 100


@dataclass
class LinkConfig:
    bind: str
    plaintext: bool = False
    server_secret_key: str = ""
    authorized_keys_dir: str = ""
    max_message_bytes: int = 16 * 1024 * 1024
    heartbeat_timeout_s: float = 3.0
    policy_resend_s: float = 2.0
    robot_id_from_key: bool = True  # HELLO's robot id must be the stem of its key file


class LearnerServer:
    """ROUTER loop: sessions, ingest, ACKs, policy push. `run()` until `stop()`."""

    def __init__(self, link: LinkConfig, store: RealStore, hello_policy: HelloPolicy,
                 publisher: Publisher, ingest: Ingest, context: zmq.Context | None = None,
                 evidence: RobotEvidence | None = None) -> None:
        self.link = link
        self.store = store
        self.hello_policy = hello_policy
        self.publisher = publisher
        self.ingest = ingest
        self.evidence = evidence  # robots' trial reports: what to push, the deployable policy
        self.context = context or zmq.Context.instance()
        self.sessions = SessionTable()
        self.counters: collections.Counter[str] = collections.Counter()
        self.policy_push_log: list[tuple[int, str, float]] = []  # (version, robot, unix time sent)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._hb_seq = 0
        self._key_owner: dict[str, str] = {}
        self._auth: ThreadAuthenticator | None = None
        self._sock: zmq.Socket | None = None
        self._wake: zmq.Socket | None = None
        self._handshakes: HandshakeWatch | None = None
        self.endpoint = ""
        self._store_error_logged = 0.0
        self._store_errors_unlogged = 0
        self._shared_warned: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle
    def start_socket(self) -> str:
        """Create the authenticator and bind the ROUTER; returns the bound endpoint."""
        sock = self.context.socket(zmq.ROUTER)
        sock.linger = 0
        sock.maxmsgsize = self.link.max_message_bytes
        sock.router_mandatory = True  # a send to a vanished peer raises instead of vanishing
        sock.sndhwm = 1000
        sock.rcvhwm = 10000
        if not self.link.plaintext:
            self._auth = ThreadAuthenticator(self.context, log=logging.getLogger(__name__ + ".zap"))
            self._auth.start()
            authorized = Path(self.link.authorized_keys_dir)
            if not authorized.is_dir():
                raise FileNotFoundError(
                    f"authorised keys directory not found: {authorized}. Make keys with python -m "
                    "learner.service.keys create --name learner --dir keys (and one per robot: "
                    "--name robot1), then python -m learner.service.keys authorise --public "
                    f"keys/robot1.key --dir {authorized}; or --plaintext on loopback only")
            if not Path(self.link.server_secret_key).is_file():
                raise FileNotFoundError(
                    f"learner secret key not found: {self.link.server_secret_key}. Make it with "
                    "python -m learner.service.keys create --name learner --dir keys (robots then "
                    "need the new keys/learner.key as server_public_key_file)")
            self._auth.configure_curve(domain="*", location=str(authorized))
            self._load_key_owners()
            public, secret = zmq.auth.load_certificate(self.link.server_secret_key)
            if secret is None:
                raise ValueError(f"{self.link.server_secret_key} holds no secret key")
            sock.curve_secretkey = secret
            sock.curve_publickey = public
            sock.curve_server = True
        self._handshakes = HandshakeWatch(sock, {
            "auth": "a client's public key is not in the authorised keys folder "
                    f"({self.link.authorized_keys_dir or '-'}): if it is one of your robots, run "
                    "python -m learner.service.keys authorise --public <robot>.key --dir "
                    f"{self.link.authorized_keys_dir or 'keys/authorized'} then restart the "
                    "learner, or check the robot uses its own key",
            "protocol": "a client speaks another security mechanism or holds a wrong learner key "
                        "(a plaintext robot against this CURVE learner, or the reverse, or a robot "
                        "whose server_public_key_file is not this learner's .key): fix the "
                        "robot's plaintext / key settings"}, log)
        sock.bind(self.link.bind)
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._wake = self.context.socket(zmq.PULL)
        self._wake.linger = 0
        wake_endpoint = f"inproc://h2o-publisher-wake-{id(self):x}"
        self._wake.bind(wake_endpoint)
        self.publisher.attach(self.context, wake_endpoint)
        self._sock = sock
        self._ready.set()
        log.info("listening on %s (%s)", self.endpoint, "PLAINTEXT" if self.link.plaintext
                 else "CURVE")
        return self.endpoint

    def reload_authorized_keys(self) -> None:
        """Re-read the authorised keys directory (a robot added while running)."""
        if self._auth is not None:
            self._auth.configure_curve(domain="*", location=self.link.authorized_keys_dir)
            self._load_key_owners()

    def _load_key_owners(self) -> None:
        """z85 public key -> robot id (the key file's stem, as `keys create --name` writes it)."""
        owners = {}
        for path in sorted(Path(self.link.authorized_keys_dir).glob("*.key")):
            try:
                public, _ = zmq.auth.load_certificate(str(path))
            except (ValueError, OSError):
                log.warning("unreadable key file %s ignored", path)
                continue
            owners[public.decode()] = path.stem
        self._key_owner = owners

    def stop(self) -> None:
        self._stop.set()

    def wait_ready(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    def close(self) -> None:
        if self._handshakes is not None:
            self._handshakes.close()
            self._handshakes = None
        for s in (self._sock, self._wake):
            if s is not None:
                s.close(linger=0)
        self._sock = self._wake = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        if self._sock is None:
            self.start_socket()
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(POLL_MS))
                if self._handshakes is not None:
                    self.counters["handshake_failed"] += self._handshakes.check()
                if self._wake in events:
                    while self._wake.poll(0):
                        self._wake.recv()
                    self._push_to_all()
                acks: dict[bytes, dict[str, int]] = {}
                drained = 0
                while drained < MAX_DRAIN and self._sock.poll(0):
                    parts = self._sock.recv_multipart(copy=False)
                    drained += 1
                    self._handle(parts, acks)
                if acks or self.ingest_pending():
                    self._sync_and_ack(acks)
        finally:
            try:
                self.store.sync()
            except StoreError:
                log.exception("final store sync failed")

    def ingest_pending(self) -> bool:
        return bool(getattr(self.ingest, "_pending", None))

    def _sync_and_ack(self, acks: dict[bytes, dict[str, int]]) -> None:
        try:
            self.store.sync()
        except StoreError as exc:  # the round's records are cut off: ACK none of them
            self._store_failed(exc)
            return
        self.ingest.commit()
        for identity, streams in acks.items():
            for stream_id, acked in streams.items():
                self._send(identity, wire.Ack(stream_id=stream_id, acked_seq=acked))

    def _store_failed(self, exc: StoreError) -> None:
        """Drop the round's pending rows; log the first failure and then one line per period."""
        self.ingest.rollback()
        self.counters["store_errors"] += 1
        now = time.monotonic()
        if now - self._store_error_logged >= STORE_ERROR_LOG_EVERY_S:
            more = (f" ({self._store_errors_unlogged} more since the last message)"
                    if self._store_errors_unlogged else "")
            log.error("store write failed: %s%s. Nothing of it was acknowledged; robots keep "
                      "their rows and resend. If the disk is full, free space in %s (the service "
                      "resumes by itself)", exc, more, self.store.directory)
            self._store_error_logged = now
            self._store_errors_unlogged = 0
        else:
            self._store_errors_unlogged += 1

    def _send(self, identity: bytes, msg) -> None:
        try:
            frame = wire.encode(msg)
        except Exception as exc:  # noqa: BLE001 - a reply we cannot encode must not end the loop
            self.counters["encode_failed"] += 1
            log.error("cannot encode %s for %r, not sent: %s", type(msg).__name__, identity, exc)
            return
        try:
            self._sock.send_multipart([identity, frame], zmq.NOBLOCK)
            self.counters[f"sent/{type(msg).__name__.lower()}"] += 1
        except zmq.ZMQError as exc:  # peer gone (router_mandatory) or its queue is full
            self.counters["send_failed"] += 1
            log.debug("send to %r failed: %s", identity, exc)

    def _reject(self, identity: bytes, reason: str, detail: str = "", fatal: bool = False) -> None:
        self.counters[f"rejected/{reason}"] += 1
        session = self.sessions.get(identity)
        if session is not None:  # a fleet: whose bad data it was, in the robot's own row
            session.rejected += 1
        self._send(identity, wire.Error(code=reason, message=detail[:200], fatal=fatal))

    # ------------------------------------------------------------------ handlers
    def _handle(self, parts: list, acks: dict[bytes, dict[str, int]]) -> None:
        self.counters["received"] += 1
        identity = bytes(parts[0].bytes)
        if len(parts) != 2:
            self._reject(identity, "frame_count", f"{len(parts) - 1} frames, expected 1")
            return
        frame = parts[1]
        failures = self.store.write_failures
        try:
            self._dispatch(identity, frame, acks)
        finally:
            if self.store.write_failures != failures:
                acks.clear()  # the store cut off everything appended this round

    def _dispatch(self, identity: bytes, frame, acks: dict[bytes, dict[str, int]]) -> None:
        try:
            msg = wire.decode(frame.bytes)
        except wire.WireError as exc:
            self._reject(identity, exc.reason, exc.detail)
            return
        except Exception as exc:  # a decoder bug must not take the service down
            log.exception("decoder raised on a frame")
            self._reject(identity, "decoder_error", type(exc).__name__)
            return
        try:
            if isinstance(msg, wire.Hello):
                self._on_hello(identity, msg, frame)
                self.counters["ok/hello"] += 1
                return
            session = self.sessions.get(identity)
            if session is None:
                if isinstance(msg, wire.Error):  # never answer an ERROR with an ERROR
                    self.counters["ok/error"] += 1
                    return
                # fatal: the robot starts a new session (e.g. after a learner restart)
                self._reject(identity, "no_session", "send HELLO first", fatal=True)
                return
            session.last_seen = time.monotonic()
            if self.sessions.by_robot.get(session.robot_id) is not session:
                self._warn_shared(session)
            if isinstance(msg, wire.Transitions):
                self._on_transitions(identity, session, msg, acks)
            elif isinstance(msg, wire.Heartbeat):
                session.policy_version = msg.policy_version
                session.stats = msg.stats
                if self.evidence is not None:
                    self.evidence.note_heartbeat(session.robot_id, msg.stats)
                self.counters["heartbeats"] += 1
                self._hb_seq += 1
                self._send(identity, wire.Heartbeat(seq=self._hb_seq, t_us=time.time_ns() // 1000,
                                                    policy_version=self.publisher.version))
                self._maybe_push(session)
            elif isinstance(msg, wire.PolicyResult):
                session.last_policy_result = ("accepted" if msg.accepted
                                              else f"rejected: {msg.reason}")
                if msg.accepted:
                    session.policy_version = max(session.policy_version, msg.version)
                else:  # do not push this version again; the next newer one will be offered
                    session.policy_rejected_version = max(session.policy_rejected_version,
                                                          msg.version)
                    if self.evidence is not None:
                        self.evidence.note_rejected(session.robot_id, msg.version)
                self.counters["policy_results"] += 1
                log.info("robot %r: policy v%d %s", session.robot_id, msg.version,
                         session.last_policy_result)
            elif isinstance(msg, wire.TrialReport):
                self._on_trial_report(identity, session, msg)
                self._maybe_push(session)
            elif isinstance(msg, wire.Error):
                log.warning("robot %r reports error %s: %s", session.robot_id, msg.code,
                            msg.message)
            else:  # a learner-side message type sent to the learner
                self._reject(identity, "unexpected_type", msg.TYPE)
                return
            self.counters[f"ok/{type(msg).__name__.lower()}"] += 1
        except wire.WireError as exc:
            self._reject(identity, exc.reason, exc.detail)
        except StoreError as exc:
            self._store_failed(exc)
            self._reject(identity, "store_error", "the learner cannot store rows now (disk full?);"
                                                  " keep them and resend")

    def _on_hello(self, identity: bytes, hello: wire.Hello, frame) -> None:
        reason = self.hello_policy.check(hello)
        if reason:
            self.counters["hello_refused"] += 1
            log.warning("refused robot %r: %s", hello.robot_id, reason)
            self._send(identity, wire.Welcome(accepted=False, reason=reason[:1000]))
            return
        try:
            curve_key = frame.get("User-Id") or ""
        except zmq.ZMQError:
            curve_key = ""
        if not self.link.plaintext and self.link.robot_id_from_key:
            owner = self._key_owner.get(curve_key, "")
            if owner != hello.robot_id:
                self.counters["hello_refused"] += 1
                reason = (f"key_mismatch: robot id {hello.robot_id!r} does not own this key "
                          f"(authorised as {owner or 'unknown'!r}); robots may only write their "
                          "own streams")
                log.warning("refused robot %r: %s", hello.robot_id, reason)
                self._send(identity, wire.Welcome(accepted=False, reason=reason))
                return
        try:
            self._resolve_declared(hello)
        except StoreError as exc:
            self._store_failed(exc)
            self._send(identity, wire.Welcome(accepted=False, reason=(
                "store_error: the learner cannot write its store now (disk full?); retry later")))
            return
        session = self.sessions.open(identity, hello, curve_key, self.link.heartbeat_timeout_s)
        if self.evidence is not None:
            self.evidence.note_hello(hello.robot_id)
        self.counters["hello_accepted"] += 1
        log.info("robot %r connected (policy v%d, sw %s)", hello.robot_id, hello.policy_version,
                 hello.software_version)
        latest = self.publisher.latest
        if hello.streams:
            acked = {s: self.store.acked_seq(hello.robot_id, s) for s in hello.streams}
        else:  # a client that declares nothing: its robot's streams, as many as a WELCOME holds
            acked = dict(list(self.store.acked_of(hello.robot_id).items())[-wire.DEFAULT_LIMITS.max_map_len:])
        self._send(identity, wire.Welcome(
            accepted=True, learner_version=LEARNER_VERSION,
            latest_policy_version=latest.version if latest else -1,
            heartbeat_interval_s=self.link.heartbeat_timeout_s / 4,
            acked=acked))
        self._maybe_push(session)

    def _warn_shared(self, session) -> None:
        """An older connection of a robot id keeps talking after a newer one said HELLO."""
        self.counters["robot_id_shared"] += 1
        now = time.monotonic()
        if now - self._shared_warned.get(session.robot_id, -1e9) < SHARED_KEY_WARN_EVERY_S:
            return
        self._shared_warned[session.robot_id] = now
        log.warning("robot %r: two live connections use this robot id (two processes sharing "
                    "one key?). Both are served, but each robot needs its own id and key: "
                    "python -m learner.service.keys create --name <id> --dir keys, then "
                    "authorise its .key", session.robot_id)

    def _resolve_declared(self, hello: wire.Hello) -> None:
        """Rows below the first row the robot still holds, and the gaps it declares above that,
        that the store does not hold, are gone for good: record them as lost (durably, once) so
        the stream moves on."""
        lost_any = False
        for stream, first_held in hello.streams.items():
            if first_held <= 0:
                continue
            before = self.store.next_seq(hello.robot_id, stream)
            lost = self.store.record_lost(hello.robot_id, stream, 0, first_held,
                                          "neither robot nor learner holds these rows")
            if lost:
                lost_any = True
                self.counters["rows_lost"] += lost
                log.error("robot %r stream %s: %d row(s) below %d are LOST (the learner's store "
                          "does not hold them: damaged segment or another run folder; the robot "
                          "has deleted them after an earlier ACK); recorded once, the stream "
                          "goes on from row %d", hello.robot_id, stream, lost, first_held,
                          first_held if before is None else self.store.next_seq(hello.robot_id,
                                                                               stream))
        for stream, flat in hello.gaps.items():
            for a, b in zip(flat[::2], flat[1::2]):
                lost = self.store.record_lost(hello.robot_id, stream, a, b,
                                              "the robot's spool lost these rows (a damaged record)")
                if lost:
                    lost_any = True
                    self.counters["rows_lost"] += lost
                    log.error("robot %r stream %s: %d row(s) in [%d, %d) are LOST (the robot's spool "
                              "skipped a damaged record before sending them); recorded once, the "
                              "stream goes on after them", hello.robot_id, stream, lost, a, b)
        if lost_any:
            self.store.sync()

    def _on_trial_report(self, identity: bytes, session, msg: wire.TrialReport) -> None:
        """Record a robot's trial report once and acknowledge it after trials.jsonl is durable.

        Acknowledged data must never be lost: the robot keeps a numbered report in its spool
        until this ACK, so the ACK goes out only after the fsync (a failed write sends none and
        the robot resends). Without an evidence keeper nothing is recorded and nothing ACKed."""
        session.trial_reports += 1
        if self.evidence is None:
            self.counters["trial_reports_unkept"] += 1
            return
        try:
            acked = self.evidence.receive(session.robot_id, msg)
        except OSError as exc:
            self.counters["trial_report_write_failed"] += 1
            log.error("robot %r: trial report of v%d not recorded (%s); not acknowledged, the "
                      "robot resends it", session.robot_id, msg.version, exc)
            return
        if acked is not None and acked >= 0:
            self._send(identity, wire.Ack(stream_id=msg.stream_id, acked_seq=acked))

    def _on_transitions(self, identity, session, batch: wire.Transitions, acks) -> None:
        try:
            result = self.ingest.ingest(session.robot_id, batch)
        except wire.WireError as exc:
            if exc.reason == "seq_gap":  # tell the robot where to resume
                acks.setdefault(identity, {})[batch.stream_id] = self.store.acked_seq(
                    session.robot_id, batch.stream_id)
            raise
        session.rows_received += result.stored
        session.rows_duplicate += result.duplicates
        self.counters["rows_stored"] += result.stored
        self.counters["rows_duplicate"] += result.duplicates
        acks.setdefault(identity, {})[batch.stream_id] = result.acked_seq
        if result.out_of_bounds:
            self.counters["rows_out_of_bounds"] += result.out_of_bounds
            b = self.ingest.bounds
            detail = (f"{result.out_of_bounds} row(s) of stream {batch.stream_id} from "
                      f"{batch.first_seq} exceed |obs|<={b.obs:g}, |rew|<={b.rew:g} or "
                      f"|act|<={b.act:g}: stored, not trained on; check the sensors and reward")
            log.warning("robot %r: %s", session.robot_id, detail)
            self._send(identity, wire.Error(code="out_of_bounds", message=detail[:200]))

    # ------------------------------------------------------------------ policy push
    def _maybe_push(self, session) -> None:
        latest = self.publisher.latest
        if self.evidence is not None:  # the robot's trials: hold, skip rolled-back, best first
            latest = self.evidence.offer(session, latest)
        if latest is None or session.policy_version >= latest.version or \
                session.policy_rejected_version == latest.version:
            return
        now = time.monotonic()
        if session.policy_sent_version == latest.version and \
                now - session.policy_sent_at < self.link.policy_resend_s:
            return
        session.policy_sent_version = latest.version
        session.policy_sent_at = now
        self._send(session.identity, wire.Policy(version=latest.version, sha256=latest.sha256,
                                                 onnx=latest.onnx, metadata=latest.metadata))
        log.info("policy v%d -> %r (was v%d)", latest.version, session.robot_id,
                 session.policy_version)
        if self.evidence is not None:
            self.evidence.note_sent(session.robot_id, latest)
        self.policy_push_log.append((latest.version, session.robot_id, time.time()))
        del self.policy_push_log[:-1000]

    def _push_to_all(self) -> None:
        for session in self.sessions:
            if session.link_state(self.link.heartbeat_timeout_s) == "up":
                self._maybe_push(session)

    # ------------------------------------------------------------------ status
    def snapshot(self) -> dict:
        """A plain-data view for the status line and metrics (read from another thread)."""
        robots = {}
        for s in self.sessions:
            robots[s.robot_id] = {"link": s.link_state(self.link.heartbeat_timeout_s),
                                  "policy_version": s.policy_version,
                                  "rows": s.rows_received, "duplicates": s.rows_duplicate,
                                  "stored_rows": self.store.rows_of(s.robot_id),
                                  "rejected": s.rejected, "trial_reports": s.trial_reports,
                                  "policy_result": s.last_policy_result,
                                  "stats": dict(s.stats)}
        return {"robots": robots, "counters": dict(self.counters),
                "store_rows": self.store.rows_total, "policy_version": self.publisher.version,
                "evidence": self.evidence.snapshot() if self.evidence is not None else {}}
