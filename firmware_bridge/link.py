"""Host side of the serial link to the motor firmware (or the virtual robot behind a pty).

Why this shape: the control loop must never block or unwind on the serial line. So one reader
thread owns `read` (decodes frames, keeps the latest RobotState with its arrival time), one
writer thread owns `write`, and the loop only swaps references and puts encoded frames into a
bounded queue: every send returns a `WriteStatus`, never raises. Optionally (`direct_write`),
on a tty/pty with nothing queued, the sending thread writes the frame itself with one
non-blocking write(2) (a partial write queues the rest, so order is kept). pyserial's
`serial_for_url` makes one code path serve /dev/ttyUSB0, a pty path, socket://host:port and
loop://.

Lifecycle (modelled on ros2_control's hardware component):
    UNCONFIGURED --configure()--> INACTIVE (port open, states readable, no commands)
    INACTIVE --activate()--> ACTIVE (ENABLE sent and confirmed; commands accepted)
    ACTIVE --deactivate()--> INACTIVE (DISABLE sent)
    any --close()--> FINALIZED;  a read/write failure --> ERROR (close() and build a new link)
E-stop (and its clear) may be sent in any state with an open port.

Round-trip time: the frame protocol (v1) has no field echoing a host seq, so the link measures
two things it can: `heartbeat_rtt` (the host's HEARTBEAT clock value echoed back by the firmware,
which the virtual robot does) and `command_to_state` (time from queueing a COMMAND to the first
STATE received after it; in lock-step this is the exact round trip).

Usage:
    link = SerialLink(SerialLinkConfig(url="/tmp/ttyRobot"))
    link.configure(); link.activate()
    status = link.send_command(MotorCommand.torque(tau))   # WriteStatus.OK
    sample = link.latest_state()                            # StateSample(state, age_s, seq, ...)
    link.close()
"""

from __future__ import annotations

import collections
import enum
import errno
import fcntl
import logging
import os
import queue
import select
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import serial

from protocol.frames import (
    FaultReport,
    Frame,
    FrameDecoder,
    FrameError,
    FrameType,
    SEQ_MODULO,
    SeqTracker,
    encode_control,
    encode_frame,
    encode_heartbeat,
    pack_command,
    unpack_fault,
    unpack_heartbeat,
    unpack_state,
)
from protocol.robot_types import MotorCommand, MotorMode, RobotState

from firmware_bridge.recorder import FW_TO_HOST, HOST_TO_FW
from protocol.config_cli import help_field

log = logging.getLogger(__name__)

# Linux TIOCGSERIAL/TIOCSSERIAL and the ASYNC_LOW_LATENCY flag (what `setserial low_latency` sets).
TIOCGSERIAL = 0x541E
TIOCSSERIAL = 0x541F
ASYNC_LOW_LATENCY = 1 << 13
SERIAL_STRUCT_FLAGS_OFFSET = 16  # struct serial_struct: int type, line; uint port; int irq, flags
RTT_WINDOW = 4096  # samples kept for percentiles
MAX_PENDING_HEARTBEATS = 32
# A STATE up to this many seqs behind the newest is a late one (dropped as stale); a bigger
# step back is the firmware restarting its numbering (accepted; SeqTracker counts a reset).
REORDER_WINDOW = 64
READ_CHUNK = 65536


class ByteRecorder(Protocol):
    """recorder.SerialByteRecorder: queues bytes for a background writer, never blocks."""

    def record_ns(self, channel: str, t_ns: int, data: bytes) -> None: ...


class LinkState(enum.Enum):
    UNCONFIGURED = "unconfigured"
    INACTIVE = "inactive"
    ACTIVE = "active"
    ERROR = "error"
    FINALIZED = "finalized"


class WriteStatus(enum.Enum):
    """What happened to a send. Only OK means the frame was queued for the wire."""

    OK = "ok"
    QUEUE_FULL = "queue_full"  # the writer is behind (port stalled): frame dropped, counted
    NOT_ACTIVE = "not_active"  # COMMAND outside ACTIVE
    NOT_OPEN = "not_open"  # port not configured, closed, or in ERROR
    INVALID = "invalid"  # non-finite command values; never put on the wire


class LinkError(RuntimeError):
    """The port could not be opened or a lifecycle step was called in the wrong state."""


@dataclass
class SerialLinkConfig:
    url: str = help_field("/tmp/ttyRobot", "/dev/ttyUSB0, a pty path, socket://host:port, loop://")
    baudrate: int = help_field(1_000_000, "ignored by ptys and sockets")
    open_timeout_s: float = help_field(2.0, "keep retrying the open this long (the device may appear late)")
    read_poll_s: float = help_field(0.05, "reader wakes at least this often (bounds shutdown time)")
    write_queue_frames: int = help_field(64, "frames waiting for the writer; beyond that sends are dropped")
    state_queue_size: int = help_field(0, "> 0: also put every state in `link.states` (oldest dropped)")
    activate_timeout_s: float = help_field(1.0, "wait this long for a STATE in ENABLED after ENABLE")
    low_latency: bool = help_field(True, "best effort ASYNC_LOW_LATENCY on a real tty (see docs)")
    direct_write: bool = help_field(False,
                                    "tty/pty: the sender itself writes when nothing is queued (no hand-off; read at "
                                    "each send). Off by default: a slightly shorter round trip but a costlier send "
                                    "for the caller (the woken reader can preempt the sender inside write(2)); "
                                    "figures: docs/bench/firmware_bridge.md.")
    write_stall_s: float = help_field(0.5, "a write blocked this long (peer not reading) -> ERROR state")
    # After an ERROR the robot program reopens the port (SerialLink.recover; onboard.link_watch).
    recover_s: float = help_field(0.1, "first reopen this long after a port failure, then doubling (0: never)")
    recover_max_s: float = help_field(2.0, "longest wait between two reopen attempts")


@dataclass
class StateSample:
    """The latest state, when it arrived (host monotonic clock) and its frame seq."""

    state: RobotState
    received_s: float
    seq: int
    index: int  # how many STATEs the link had received, this one included

    @property
    def age_s(self) -> float:
        return time.monotonic() - self.received_s


@dataclass
class LinkCounters:
    bytes_in: int = 0
    bytes_out: int = 0
    frames_out: dict[str, int] = field(default_factory=dict)
    frames_in: dict[str, int] = field(default_factory=dict)
    bad_frames: dict[str, int] = field(default_factory=dict)  # decoder drop reasons
    seq_lost: int = 0  # firmware frames missing, from sequence gaps
    seq_resets: int = 0  # firmware restarted its numbering
    duplicate_frames: int = 0  # a STATE with the same seq as the previous STATE: dropped
    stale_frames: int = 0  # a STATE older than the newest (arrived late, overtaken): dropped
    write_errors: int = 0
    recoveries: int = 0  # times recover() reopened the port after an ERROR
    writes_dropped_queue_full: int = 0
    writes_rejected_invalid: int = 0
    states_dropped_queue_full: int = 0
    callback_errors: int = 0
    faults_received: int = 0


def _percentiles(samples: collections.deque[float]) -> dict[str, float]:
    if not samples:
        return {"count": 0}
    arr = np.fromiter(samples, dtype=np.float64)
    return {
        "count": int(arr.size),
        "p50_ms": float(np.percentile(arr, 50) * 1e3),
        "p99_ms": float(np.percentile(arr, 99) * 1e3),
        "max_ms": float(arr.max() * 1e3),
    }


def _has_fileno(ser: serial.SerialBase) -> bool:
    """socket:// has a selectable handle; loop:// and others raise from fileno()."""
    try:
        return isinstance(ser.fileno(), int)
    except Exception:  # noqa: BLE001 - pyserial raises various types for "no handle"
        return False


def try_low_latency(ser: serial.Serial) -> bool:
    """Set ASYNC_LOW_LATENCY on a real serial tty (FTDI: 16 ms -> 1 ms latency). Best effort."""
    fd = getattr(ser, "fd", None)
    if fd is None:
        return False
    try:
        buf = bytearray(fcntl.ioctl(fd, TIOCGSERIAL, bytes(64)))
        (flags,) = struct.unpack_from("<i", buf, SERIAL_STRUCT_FLAGS_OFFSET)
        if flags & ASYNC_LOW_LATENCY:
            return True
        struct.pack_into("<i", buf, SERIAL_STRUCT_FLAGS_OFFSET, flags | ASYNC_LOW_LATENCY)
        fcntl.ioctl(fd, TIOCSSERIAL, bytes(buf))
        return True
    except OSError as exc:  # ptys and sockets have no serial_struct; non-root may be refused
        log.debug("low-latency mode not set on %s: %s", ser.port, exc)
        return False


class SerialLink:
    """One serial link to one firmware. Thread-safe sends; the reader thread owns decoding."""

    def __init__(
        self,
        config: SerialLinkConfig | None = None,
        on_state: Callable[[StateSample], None] | None = None,
        recorder: "ByteRecorder | None" = None,
    ) -> None:
        self.config = config or SerialLinkConfig()
        self.on_state = on_state  # called on the reader thread: keep it short
        self.recorder = recorder  # raw bytes both ways, host monotonic clock; must not block
        self.lifecycle = LinkState.UNCONFIGURED
        self.error: BaseException | None = None
        self.counters = LinkCounters()
        self.states: queue.Queue[StateSample] | None = (
            queue.Queue(self.config.state_queue_size) if self.config.state_queue_size > 0 else None
        )
        self.last_fault: FaultReport | None = None
        self.low_latency_set = False
        self._serial: serial.SerialBase | None = None
        self._decoder = FrameDecoder()
        self._seq_in = SeqTracker()
        self._last_state_seq: int | None = None
        self._seq_out = 0
        self._send_lock = threading.Lock()
        self._write_queue: queue.Queue[bytes | None] = queue.Queue(self.config.write_queue_frames)
        self._queued = 0  # frames queued or being written by the writer thread (under _send_lock)
        self._direct_fd: int | None = None
        self._latest: StateSample | None = None
        self._state_cond = threading.Condition()
        self._n_states = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pending_heartbeats: collections.OrderedDict[int, float] = collections.OrderedDict()
        self._command_sent_s: float | None = None
        self._heartbeat_rtt: collections.deque[float] = collections.deque(maxlen=RTT_WINDOW)
        self._command_to_state: collections.deque[float] = collections.deque(maxlen=RTT_WINDOW)

    # ------------------------------------------------------------------ lifecycle
    def configure(self) -> None:
        """Open the port and start reading. States become readable; commands are not allowed."""
        if self.lifecycle != LinkState.UNCONFIGURED:
            raise LinkError(f"configure() in state {self.lifecycle.value}")
        self._serial = self._open()
        if self.config.low_latency:
            self.low_latency_set = try_low_latency(self._serial)
        fd = getattr(self._serial, "fd", None)
        if isinstance(fd, int):
            self._direct_fd = fd  # used while config.direct_write (read at each send)
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._read_loop, name="serial-reader", daemon=True),
            threading.Thread(target=self._write_loop, name="serial-writer", daemon=True),
        ]
        for t in self._threads:
            t.start()
        self.lifecycle = LinkState.INACTIVE
        log.info("link configured on %s", self.config.url)

    def activate(self, enable: bool = True) -> bool:
        """Send ENABLE and wait for a STATE reporting ENABLED. False (still INACTIVE) if none came.

        enable=False: allow commands but leave the motors off (a robot that must be armed first:
        its loop sends ENABLE when the safety FSM first stands it): sends DISABLE, which the
        firmware answers with a STATE, and waits for that.
        """
        if self.lifecycle not in (LinkState.INACTIVE, LinkState.ACTIVE):
            raise LinkError(f"activate() in state {self.lifecycle.value}")
        index = self._n_states
        if not enable:
            sent = self._send_control(FrameType.DISABLE) == WriteStatus.OK
            timeout_s = self.config.activate_timeout_s
            if not sent or self.wait_for_state(lambda s: True, timeout_s=timeout_s, after_index=index) is None:
                log.warning("activate: no STATE within %.2f s", self.config.activate_timeout_s)
                return False
            self.lifecycle = LinkState.ACTIVE
            return True
        if self._send_control(FrameType.ENABLE) != WriteStatus.OK:
            return False
        sample = self.wait_for_state(
            lambda s: s.state.mode == MotorMode.ENABLED,
            timeout_s=self.config.activate_timeout_s,
            after_index=index,
        )
        if sample is None:
            log.warning("activate: no ENABLED state within %.2f s", self.config.activate_timeout_s)
            return False
        self.lifecycle = LinkState.ACTIVE
        return True

    def deactivate(self) -> WriteStatus:
        """Send DISABLE; commands are refused from here on."""
        if self.lifecycle == LinkState.ACTIVE:
            self.lifecycle = LinkState.INACTIVE
        return self._send_control(FrameType.DISABLE)

    def recover(self, enable: bool = True) -> bool:
        """ERROR -> port reopened -> ACTIVE again (ros2_control's on_error, then configure and activate).

        Why: a port failure is often transient (a write that stalled past `write_stall_s` while the
        host was overloaded, a USB-serial adapter that re-enumerated), and without this one stall
        ended the robot program's link for good: states stayed stale and DAMPING could never be
        left. The safety FSM has already gone to DAMPING on the stale state when this runs; once
        states are fresh again, its `link_recover_s` (or an operator's clear) decides what follows.

        True when the link is ACTIVE again; False when the port cannot be reopened (still ERROR)
        or the firmware did not confirm (INACTIVE: call `activate` again). The caller retries
        with back-off. `enable` as for `activate`.
        """
        if self.lifecycle is not LinkState.ERROR:
            raise LinkError(f"recover() in state {self.lifecycle.value}")
        self._shutdown()  # the failed threads have stopped; join them and close the port
        with self._send_lock:
            while True:  # frames queued before the failure belong to a stream that was cut
                try:
                    self._write_queue.get_nowait()
                except queue.Empty:
                    break
            self._queued = 0
        self._decoder = FrameDecoder()  # a partial frame from before the failure is garbage
        self.lifecycle = LinkState.UNCONFIGURED
        try:
            self.configure()
        except LinkError as exc:
            self.lifecycle, self.error = LinkState.ERROR, exc
            log.warning("link recovery: %s", exc)
            return False
        self.counters.recoveries += 1
        log.warning("link recovered: %s reopened after %s (recovery %d)", self.config.url,
                    type(self.error).__name__ if self.error else "an error", self.counters.recoveries)
        self.error = None
        return self.activate(enable=enable)

    def close(self) -> None:
        """DISABLE if active, let the writer drain (bounded), stop threads, close the port."""
        if self.lifecycle == LinkState.FINALIZED:
            return
        if self.lifecycle == LinkState.ACTIVE:
            self.deactivate()
        self._shutdown()
        self.lifecycle = LinkState.FINALIZED
        with self._state_cond:
            self._state_cond.notify_all()

    def _shutdown(self) -> None:
        """Stop the reader and writer (the writer after what is queued, bounded) and close the port."""
        self._stop.set()
        with self._send_lock:
            self._direct_fd = None  # from here every write goes through (and drains in) the queue
        writer_alive = any(t.name == "serial-writer" and t.is_alive() for t in self._threads)
        try:  # wake the writer after what is queued; a stalled writer fails within write_stall_s
            if writer_alive:
                self._write_queue.put(None, timeout=self.config.write_stall_s + 0.5)
        except queue.Full:
            log.warning("closing %s: writer did not drain; pending frames dropped", self.config.url)
        ser = self._serial
        for t in self._threads:
            if t.name == "serial-reader" and ser is not None and hasattr(ser, "cancel_read"):
                try:
                    ser.cancel_read()
                except Exception:  # noqa: BLE001 - best effort wake-up only
                    pass
            t.join(timeout=2.0)
        if ser is not None:
            try:
                ser.close()
            except Exception as exc:  # noqa: BLE001
                log.debug("closing port: %s", exc)
        self._serial, self._threads = None, []

    def __enter__(self) -> "SerialLink":
        if self.lifecycle == LinkState.UNCONFIGURED:
            self.configure()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sends (never raise)
    def send_command(self, cmd: MotorCommand) -> WriteStatus:
        if self.lifecycle != LinkState.ACTIVE:
            return WriteStatus.NOT_OPEN if self.lifecycle != LinkState.INACTIVE else WriteStatus.NOT_ACTIVE
        try:
            payload = pack_command(cmd)  # also checks each field holds one value per actuator
            finite = bool(np.isfinite(np.frombuffer(payload, dtype="<f4")).all())
        except (TypeError, ValueError):
            finite = False
        if not finite:
            self.counters.writes_rejected_invalid += 1
            return WriteStatus.INVALID
        status = self._enqueue(FrameType.COMMAND, lambda seq: encode_frame(FrameType.COMMAND, seq, payload))
        if status == WriteStatus.OK and self._command_sent_s is None:
            self._command_sent_s = time.monotonic()
        return status

    def enable(self) -> WriteStatus:
        """Raw ENABLE (activate() is the lifecycle way: it also waits for confirmation)."""
        return self._send_control(FrameType.ENABLE)

    def disable(self) -> WriteStatus:
        return self._send_control(FrameType.DISABLE)

    def estop(self) -> WriteStatus:
        """Latch the firmware e-stop. Allowed in any state with an open port."""
        if self.lifecycle == LinkState.ACTIVE:
            self.lifecycle = LinkState.INACTIVE
        return self._send_control(FrameType.ESTOP)

    def clear_estop(self) -> WriteStatus:
        return self._send_control(FrameType.ESTOP_CLEAR)

    def send_heartbeat(self) -> WriteStatus:
        """HEARTBEAT with the host clock (µs); an echo of it yields a round-trip sample."""
        t_us = time.monotonic_ns() // 1000
        with self._send_lock:  # registered before it can be written: the echo may beat us back
            self._pending_heartbeats[t_us] = time.monotonic()
            while len(self._pending_heartbeats) > MAX_PENDING_HEARTBEATS:
                self._pending_heartbeats.popitem(last=False)
        status = self._enqueue(FrameType.HEARTBEAT, lambda seq: encode_heartbeat(t_us, seq))
        if status != WriteStatus.OK:
            with self._send_lock:
                self._pending_heartbeats.pop(t_us, None)
        return status

    def send_raw(self, data: bytes) -> WriteStatus:
        """Queue bytes as they are (tests, fault experiments). Not counted as a frame."""
        if self.lifecycle in (LinkState.UNCONFIGURED, LinkState.ERROR, LinkState.FINALIZED):
            return WriteStatus.NOT_OPEN
        with self._send_lock:
            try:
                self._write_queue.put_nowait(bytes(data))
            except queue.Full:
                self.counters.writes_dropped_queue_full += 1
                return WriteStatus.QUEUE_FULL
            self._queued += 1
        return WriteStatus.OK

    def _write_direct(self, data: bytes) -> bytes:
        """One non-blocking write(2) from the caller's thread; returns what is left to queue."""
        try:
            n = os.write(self._direct_fd, data)
        except (BlockingIOError, InterruptedError):
            return data
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EINTR):
                return data
            return data  # let the writer thread meet the error and report it (ERROR state)
        self.counters.bytes_out += n
        if self.recorder is not None and n:
            self.recorder.record_ns(HOST_TO_FW, time.monotonic_ns(), data[:n])
        return data[n:]

    def _send_control(self, frame_type: FrameType) -> WriteStatus:
        return self._enqueue(frame_type, lambda seq: encode_control(frame_type, seq))

    def _enqueue(self, frame_type: FrameType, encode: Callable[[int], bytes]) -> WriteStatus:
        if self.lifecycle in (LinkState.UNCONFIGURED, LinkState.ERROR, LinkState.FINALIZED):
            return WriteStatus.NOT_OPEN
        with self._send_lock:  # seq order == wire order
            if self._write_queue.full():
                self.counters.writes_dropped_queue_full += 1
                return WriteStatus.QUEUE_FULL
            data = encode(self._seq_out)
            self._seq_out = (self._seq_out + 1) & 0xFFFF
            if self._queued == 0 and self._direct_fd is not None and self.config.direct_write:
                data = self._write_direct(data)
            if data:
                self._queued += 1
                self._write_queue.put_nowait(data)
            name = frame_type.name
            self.counters.frames_out[name] = self.counters.frames_out.get(name, 0) + 1
        return WriteStatus.OK

    # ------------------------------------------------------------------ reads
    def latest_state(self) -> StateSample | None:
        """The newest STATE (or None before the first). Check `.age_s` before trusting it."""
        return self._latest

    def wait_for_state(
        self,
        predicate: Callable[[StateSample], bool] = lambda s: True,
        timeout_s: float = 1.0,
        after_index: int | None = None,
    ) -> StateSample | None:
        """Block (not for the control loop) until a STATE newer than `after_index` matches."""
        deadline = time.monotonic() + timeout_s
        after = self._n_states if after_index is None else after_index
        with self._state_cond:
            while True:
                sample = self._latest
                if sample is not None and sample.index > after and predicate(sample):
                    return sample
                if sample is not None and sample.index > after:
                    after = sample.index
                left = deadline - time.monotonic()
                if left <= 0 or self.lifecycle in (LinkState.FINALIZED, LinkState.ERROR):
                    return None
                self._state_cond.wait(left)

    @property
    def states_received(self) -> int:
        return self._n_states

    def stats(self) -> dict[str, object]:
        """Counters and round-trip percentiles, as plain data (for logs and heartbeats)."""
        c = self.counters
        c.bad_frames = {k: v for k, v in self._decoder.dropped.items() if v}
        c.seq_lost, c.seq_resets = self._seq_in.lost, self._seq_in.resets
        return {
            "lifecycle": self.lifecycle.value,
            "counters": c,
            "heartbeat_rtt": _percentiles(self._heartbeat_rtt),
            "command_to_state": _percentiles(self._command_to_state),
        }

    def round_trip_samples(self) -> tuple[list[float], list[float]]:
        """(heartbeat RTTs, command->state latencies), seconds, most recent RTT_WINDOW each."""
        return list(self._heartbeat_rtt), list(self._command_to_state)

    # ------------------------------------------------------------------ threads
    def _open(self) -> serial.SerialBase:
        deadline = time.monotonic() + self.config.open_timeout_s
        while True:
            try:
                ser = serial.serial_for_url(
                    self.config.url,
                    baudrate=self.config.baudrate,
                    timeout=self.config.read_poll_s,
                    write_timeout=self.config.write_stall_s,  # only the writer thread waits
                )
                ser.reset_input_buffer()  # drop whatever piled up before we listened
                return ser
            except (serial.SerialException, OSError, ValueError) as exc:
                if time.monotonic() >= deadline:
                    raise LinkError(f"cannot open {self.config.url!r}: {exc}") from exc
                time.sleep(0.05)

    def _fail(self, where: str, exc: BaseException) -> None:
        if self._stop.is_set():
            return
        self.error = exc
        self.lifecycle = LinkState.ERROR
        log.error("serial %s failed on %s: %s", where, self.config.url, exc)
        self._stop.set()
        with self._state_cond:
            self._state_cond.notify_all()

    def _read_loop(self) -> None:
        ser = self._serial
        assert ser is not None
        fd = getattr(ser, "fd", None)
        if isinstance(fd, int):
            read = self._read_fd
        elif _has_fileno(ser):
            ser.timeout = 0  # we wait in select; pyserial's read then returns what is there
            read = self._read_selectable
        else:
            read = self._read_pyserial
        while not self._stop.is_set():
            try:
                data = read(ser)
            except Exception as exc:  # noqa: BLE001 - any port failure -> ERROR state, not a crash
                self._fail("read", exc)
                return
            if not data:
                continue
            now = time.monotonic()
            self.counters.bytes_in += len(data)
            if self.recorder is not None:
                self.recorder.record_ns(FW_TO_HOST, int(now * 1e9), data)
            for frame in self._decoder.feed(data):
                self._handle(frame, now)

    def _read_pyserial(self, ser: serial.SerialBase) -> bytes:
        """loop:// and other URL handlers without a file handle: pyserial's read and timeout."""
        return ser.read(max(1, ser.in_waiting))

    def _read_selectable(self, ser: serial.SerialBase) -> bytes:
        """socket:// (and handlers with fileno()): select, then take everything available.

        pyserial's socket `in_waiting` says only 0 or 1, so its usual read pattern would fetch
        one byte per call; with timeout 0, `read(n)` returns all that is buffered instead.
        """
        ready, _, _ = select.select([ser.fileno()], [], [], self.config.read_poll_s)
        if not ready:
            return b""
        return ser.read(READ_CHUNK)

    def _read_fd(self, ser: serial.SerialBase) -> bytes:
        """tty/pty: one select + one read(2) of everything available (a whole STATE at once)."""
        ready, _, _ = select.select([ser.fd], [], [], self.config.read_poll_s)
        if not ready:
            return b""
        try:
            data = os.read(ser.fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return b""
        if not data:  # readable but empty: the other end is gone (as pyserial reports it)
            raise serial.SerialException("device reports readiness to read but returned no data")
        return data

    def _state_in_order(self, seq: int) -> bool:
        """False for a duplicated or late (overtaken) STATE, which must not replace a newer one.

        Compared with the previous STATE only, so a sender that numbers other frame types apart
        (e.g. a replayer's live heartbeat echoes) does not make good STATEs look stale.
        """
        last = self._last_state_seq
        if last is not None:
            back = (last - seq) % SEQ_MODULO
            if back == 0:
                self.counters.duplicate_frames += 1
                return False
            if back < REORDER_WINDOW:
                self.counters.stale_frames += 1
                return False
        self._last_state_seq = seq
        return True

    def _handle(self, frame: Frame, now: float) -> None:
        name = frame.type.name
        frames_in = self.counters.frames_in
        frames_in[name] = frames_in.get(name, 0) + 1
        if frame.type == FrameType.STATE and not self._state_in_order(frame.seq):
            return  # not used, so not in the gap accounting either (a late one counts as lost)
        if frame.type in (FrameType.STATE, FrameType.HEARTBEAT, FrameType.FAULT):
            self._seq_in.update(frame.seq)  # gap/reset accounting over the firmware's frames
        if frame.type == FrameType.STATE:
            try:
                state = unpack_state(frame.payload)
            except FrameError:
                return  # unreachable: the decoder checked the length; counted as frames_in
            sample = StateSample(state, now, frame.seq, self._n_states + 1)
            sent = self._command_sent_s
            if sent is not None:
                self._command_sent_s = None
                self._command_to_state.append(now - sent)
            with self._state_cond:
                self._latest = sample
                self._n_states = sample.index
                self._state_cond.notify_all()
            if self.states is not None:
                try:
                    self.states.put_nowait(sample)
                except queue.Full:
                    self.counters.states_dropped_queue_full += 1
                    try:
                        self.states.get_nowait()
                        self.states.put_nowait(sample)
                    except (queue.Empty, queue.Full):
                        pass
            if self.on_state is not None:
                try:
                    self.on_state(sample)
                except Exception:  # a bad callback must not kill the reader
                    self.counters.callback_errors += 1
                    log.exception("on_state callback failed")
        elif frame.type == FrameType.HEARTBEAT:
            t_us = unpack_heartbeat(frame.payload)
            with self._send_lock:
                sent = self._pending_heartbeats.pop(t_us, None)
            if sent is not None:
                self._heartbeat_rtt.append(now - sent)
        elif frame.type == FrameType.FAULT:
            self.counters.faults_received += 1
            self.last_fault = unpack_fault(frame.payload)
            log.warning("firmware fault: flags=0x%x detail=%d", self.last_fault.faults, self.last_fault.detail)
        # Host-bound types only; anything else (e.g. our own frames on loop://) is just counted.

    def _write_loop(self) -> None:
        ser = self._serial
        assert ser is not None
        while True:
            data = self._write_queue.get()
            if data is None:
                return
            written = 0
            try:
                ser.write(data)
                written = len(data)
                if self.recorder is not None:
                    self.recorder.record_ns(HOST_TO_FW, time.monotonic_ns(), data)
            except Exception as exc:  # noqa: BLE001
                self.counters.write_errors += 1
                self._fail("write", exc)
                return
            finally:
                with self._send_lock:  # shared with the senders' direct writes
                    self._queued -= 1
                    self.counters.bytes_out += written
