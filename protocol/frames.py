"""Serial frame codec between the robot computer and the motor firmware.

Wire format (docs/protocol.md has it byte by byte):

    COBS( version u8 | type u8 | seq u16 | length u16 | payload[length] | crc32 u32 ) 0x00

All integers little-endian. The CRC-32 (protocol.crc) covers version..payload. Every frame type
has a fixed payload size, so a length that disagrees with the type is rejected too. A raw frame
is at most 254 bytes, so its COBS form is at most 255 bytes plus the delimiter.

`FrameDecoder.feed(chunk)` accepts arbitrary chunks of the byte stream, returns the good frames,
drops bad ones, counting them by reason, and resynchronises at the next 0x00. Its buffer never
holds more than one maximum-size encoded frame. It never raises on input bytes.
"""

from __future__ import annotations

import enum
import logging
import struct
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from protocol.cobs import CobsError, cobs_decode, cobs_encode
from protocol.crc import crc32
from protocol.robot_types import N_ACTUATORS, MotorCommand, RobotState

logger = logging.getLogger(__name__)

FRAME_PROTOCOL_VERSION = 1
DELIMITER = b"\x00"

HEADER = struct.Struct("<BBHH")  # version, type, seq, payload length
CRC = struct.Struct("<I")
HEADER_SIZE = HEADER.size  # 6
CRC_SIZE = CRC.size  # 4
MAX_RAW_FRAME = 254  # header + payload + crc; keeps COBS to a single block (1 byte overhead)
MAX_PAYLOAD = MAX_RAW_FRAME - HEADER_SIZE - CRC_SIZE  # 244
MAX_ENCODED_FRAME = MAX_RAW_FRAME + 1  # COBS form, without the 0x00 delimiter
MIN_RAW_FRAME = HEADER_SIZE + CRC_SIZE
SEQ_MODULO = 1 << 16


class FrameType(enum.IntEnum):
    """Frame types. Host = robot computer; firmware = motor controller board."""

    COMMAND = 0x01  # host -> firmware: MotorCommand (applied only while ENABLED)
    STATE = 0x02  # firmware -> host: RobotState, every control tick
    ENABLE = 0x03  # host -> firmware: power the motors (refused while ESTOP is latched)
    DISABLE = 0x04  # host -> firmware: unpower the motors
    ESTOP = 0x05  # host -> firmware: latch the emergency stop (motors off)
    ESTOP_CLEAR = 0x06  # host -> firmware: release the latch (mode becomes DISABLED)
    HEARTBEAT = 0x07  # both ways: sender clock; keeps the link alive when no COMMAND flows
    FAULT = 0x08  # firmware -> host: a fault was raised (sent at once, beside STATE.faults)


# Fixed little-endian payload layouts (no padding).
STATE_STRUCT = struct.Struct(f"<Q{N_ACTUATORS}f{N_ACTUATORS}f{N_ACTUATORS}f4f3f3fBI")
COMMAND_STRUCT = struct.Struct(f"<{5 * N_ACTUATORS}f")
HEARTBEAT_STRUCT = struct.Struct("<Q")  # sender clock, microseconds
FAULT_STRUCT = struct.Struct("<QII")  # t_us, FaultFlags bits, firmware-specific detail code

PAYLOAD_SIZE: dict[FrameType, int] = {
    FrameType.COMMAND: COMMAND_STRUCT.size,  # 120
    FrameType.STATE: STATE_STRUCT.size,  # 125
    FrameType.ENABLE: 0,
    FrameType.DISABLE: 0,
    FrameType.ESTOP: 0,
    FrameType.ESTOP_CLEAR: 0,
    FrameType.HEARTBEAT: HEARTBEAT_STRUCT.size,  # 8
    FrameType.FAULT: FAULT_STRUCT.size,  # 16
}
_PAYLOAD_SIZE_BY_CODE: dict[int, int] = {int(t): n for t, n in PAYLOAD_SIZE.items()}
_TYPE_BY_CODE: dict[int, FrameType] = {int(t): t for t in FrameType}


class FrameError(ValueError):
    """A frame or payload cannot be encoded or decoded; `code` names the reason (counter key)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Frame(NamedTuple):
    """One decoded frame: CRC, version, type and length already checked."""

    type: FrameType
    seq: int
    payload: bytes


@dataclass(frozen=True)
class FaultReport:
    """FAULT payload: the firmware clock, the FaultFlags raised, and a firmware detail code."""

    t_us: int
    faults: int
    detail: int


# ---------------------------------------------------------------------------- frame level


def encode_frame(frame_type: int, seq: int, payload: bytes = b"") -> bytes:
    """Build one wire frame (COBS-encoded, 0x00-terminated). seq is taken modulo 2**16."""
    expected = _PAYLOAD_SIZE_BY_CODE.get(int(frame_type))
    if expected is None:
        raise FrameError("unknown_type", f"unknown frame type {frame_type!r}")
    if len(payload) != expected:
        raise FrameError(
            "bad_length", f"{FrameType(frame_type).name} payload must be {expected} bytes, got {len(payload)}"
        )
    body = HEADER.pack(FRAME_PROTOCOL_VERSION, int(frame_type), seq % SEQ_MODULO, len(payload)) + payload
    return cobs_encode(body + CRC.pack(crc32(body))) + DELIMITER


def decode_frame(encoded: bytes) -> Frame:
    """Check and decode one COBS frame (without its delimiter). Raises FrameError with a reason."""
    if len(encoded) > MAX_ENCODED_FRAME:
        raise FrameError("oversized", f"frame of {len(encoded)} bytes exceeds {MAX_ENCODED_FRAME}")
    try:
        raw = cobs_decode(encoded)
    except CobsError as exc:
        raise FrameError("cobs", str(exc)) from None
    if len(raw) < MIN_RAW_FRAME:
        raise FrameError("short", f"frame of {len(raw)} bytes is shorter than header + crc")
    body = raw[:-CRC_SIZE]
    if crc32(body) != CRC.unpack_from(raw, len(body))[0]:
        raise FrameError("crc", "CRC mismatch")
    version, type_code, seq, length = HEADER.unpack_from(raw, 0)
    if version != FRAME_PROTOCOL_VERSION:
        raise FrameError("bad_version", f"frame protocol version {version}, expected {FRAME_PROTOCOL_VERSION}")
    frame_type = _TYPE_BY_CODE.get(type_code)
    if frame_type is None:
        raise FrameError("unknown_type", f"unknown frame type 0x{type_code:02x}")
    if length != len(body) - HEADER_SIZE or length != _PAYLOAD_SIZE_BY_CODE[type_code]:
        raise FrameError(
            "bad_length", f"{frame_type.name} header says {length} payload bytes, frame has {len(body) - HEADER_SIZE}"
        )
    return Frame(frame_type, seq, body[HEADER_SIZE:])


DROP_REASONS: tuple[str, ...] = ("cobs", "short", "crc", "bad_version", "unknown_type", "bad_length", "oversized")


class FrameDecoder:
    """Streaming decoder: feed it whatever the serial port returned, get the good frames back.

    Bad frames are dropped and counted in `dropped[reason]` (reasons: DROP_REASONS); after a bad
    frame, or garbage, decoding resumes at the next 0x00. Memory is bounded: a run of bytes longer
    than a maximum frame without a delimiter is counted once as `oversized` and discarded up to
    the next 0x00. Empty frames (two delimiters in a row) are ignored: senders may emit a leading
    0x00 to flush a partial frame at the receiver.
    """

    def __init__(self) -> None:
        self._partial = b""
        self._discarding = False  # inside an oversized run; drop until the next delimiter
        self.frames_ok = 0
        self.bytes_in = 0
        self.dropped: dict[str, int] = {reason: 0 for reason in DROP_REASONS}

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def buffered(self) -> int:
        """Bytes held waiting for a delimiter (never more than MAX_ENCODED_FRAME)."""
        return len(self._partial)

    def reset(self) -> None:
        """Forget a partial frame (after reopening the port); counters are kept."""
        self._partial = b""
        self._discarding = False

    def feed(self, chunk: bytes) -> list[Frame]:
        """Consume a chunk of the byte stream; return the complete good frames it finished."""
        if not chunk:
            return []
        chunk = bytes(chunk)
        self.bytes_in += len(chunk)
        if chunk.find(0) < 0:  # fast path: no delimiter, only grow the partial frame
            self._keep_tail(self._partial + chunk if not self._discarding else b"")
            return []
        parts = (self._partial + chunk).split(DELIMITER)
        self._partial = b""
        tail = parts.pop()
        frames: list[Frame] = []
        for index, part in enumerate(parts):
            if index == 0 and self._discarding:
                self._discarding = False  # this part is the end of an oversized run
                continue
            if not part:
                continue
            try:
                frames.append(decode_frame(part))
            except FrameError as exc:
                self.dropped[exc.code] += 1
                logger.debug("dropped frame: %s", exc)
        self._keep_tail(tail)
        self.frames_ok += len(frames)
        return frames

    def _keep_tail(self, tail: bytes) -> None:
        if self._discarding:
            return
        if len(tail) > MAX_ENCODED_FRAME:
            self.dropped["oversized"] += 1
            self._partial = b""
            self._discarding = True
        else:
            self._partial = tail


# ---------------------------------------------------------------------------- payloads


def pack_state(state: RobotState) -> bytes:
    """RobotState -> 125-byte STATE payload."""
    values = np.concatenate(
        [
            np.asarray(state.joint_pos, np.float32).reshape(N_ACTUATORS),
            np.asarray(state.joint_vel, np.float32).reshape(N_ACTUATORS),
            np.asarray(state.joint_torque, np.float32).reshape(N_ACTUATORS),
            np.asarray(state.imu_quat, np.float32).reshape(4),
            np.asarray(state.imu_gyro, np.float32).reshape(3),
            np.asarray(state.imu_acc, np.float32).reshape(3),
        ]
    )
    return (
        struct.pack("<Q", int(state.t_us))
        + values.astype("<f4", copy=False).tobytes()
        + struct.pack("<BI", int(state.mode), int(state.faults))
    )


_STATE_FLOATS = 3 * N_ACTUATORS + 4 + 3 + 3  # 28


def unpack_state(payload: bytes) -> RobotState:
    """125-byte STATE payload -> RobotState (float32 arrays, each its own copy)."""
    if len(payload) != STATE_STRUCT.size:
        raise FrameError("bad_length", f"STATE payload must be {STATE_STRUCT.size} bytes, got {len(payload)}")
    t_us = struct.unpack_from("<Q", payload, 0)[0]
    values = np.frombuffer(payload, dtype="<f4", count=_STATE_FLOATS, offset=8).astype(np.float32)
    mode, faults = struct.unpack_from("<BI", payload, 8 + 4 * _STATE_FLOATS)
    n = N_ACTUATORS
    return RobotState(
        t_us=t_us,
        joint_pos=values[0:n],
        joint_vel=values[n : 2 * n],
        joint_torque=values[2 * n : 3 * n],
        imu_quat=values[3 * n : 3 * n + 4],
        imu_gyro=values[3 * n + 4 : 3 * n + 7],
        imu_acc=values[3 * n + 7 : 3 * n + 10],
        mode=mode,
        faults=faults,
    )


def pack_command(cmd: MotorCommand) -> bytes:
    """MotorCommand -> 120-byte COMMAND payload (q_des, qd_des, kp, kd, tau_ff; 6 float32 each)."""
    values = np.concatenate(
        [np.asarray(a, np.float32).reshape(N_ACTUATORS) for a in (cmd.q_des, cmd.qd_des, cmd.kp, cmd.kd, cmd.tau_ff)]
    )
    return values.astype("<f4", copy=False).tobytes()


def unpack_command(payload: bytes) -> MotorCommand:
    """120-byte COMMAND payload -> MotorCommand. Values are not range-checked (the firmware does)."""
    if len(payload) != COMMAND_STRUCT.size:
        raise FrameError("bad_length", f"COMMAND payload must be {COMMAND_STRUCT.size} bytes, got {len(payload)}")
    values = np.frombuffer(payload, dtype="<f4").astype(np.float32)
    n = N_ACTUATORS
    return MotorCommand(
        q_des=values[0:n], qd_des=values[n : 2 * n], kp=values[2 * n : 3 * n], kd=values[3 * n : 4 * n], tau_ff=values[4 * n :]
    )


def pack_heartbeat(t_us: int) -> bytes:
    return HEARTBEAT_STRUCT.pack(int(t_us))


def unpack_heartbeat(payload: bytes) -> int:
    if len(payload) != HEARTBEAT_STRUCT.size:
        raise FrameError("bad_length", f"HEARTBEAT payload must be {HEARTBEAT_STRUCT.size} bytes, got {len(payload)}")
    return HEARTBEAT_STRUCT.unpack(payload)[0]


def pack_fault(report: FaultReport) -> bytes:
    return FAULT_STRUCT.pack(int(report.t_us), int(report.faults), int(report.detail))


def unpack_fault(payload: bytes) -> FaultReport:
    if len(payload) != FAULT_STRUCT.size:
        raise FrameError("bad_length", f"FAULT payload must be {FAULT_STRUCT.size} bytes, got {len(payload)}")
    return FaultReport(*FAULT_STRUCT.unpack(payload))


# ---------------------------------------------------------------------------- whole frames


def encode_state(state: RobotState, seq: int) -> bytes:
    return encode_frame(FrameType.STATE, seq, pack_state(state))


def decode_state(payload: bytes) -> RobotState:
    return unpack_state(payload)


def encode_command(cmd: MotorCommand, seq: int) -> bytes:
    return encode_frame(FrameType.COMMAND, seq, pack_command(cmd))


def decode_command(payload: bytes) -> MotorCommand:
    return unpack_command(payload)


def encode_heartbeat(t_us: int, seq: int) -> bytes:
    return encode_frame(FrameType.HEARTBEAT, seq, pack_heartbeat(t_us))


def encode_fault(report: FaultReport, seq: int) -> bytes:
    return encode_frame(FrameType.FAULT, seq, pack_fault(report))


def encode_control(frame_type: FrameType, seq: int) -> bytes:
    """ENABLE, DISABLE, ESTOP or ESTOP_CLEAR (empty payload)."""
    if PAYLOAD_SIZE.get(FrameType(frame_type)) != 0:
        raise FrameError("bad_length", f"{FrameType(frame_type).name} is not a payload-less control frame")
    return encode_frame(frame_type, seq)


class SeqTracker:
    """Counts frames lost between consecutive sequence numbers of one sender (mod 2**16).

    Each sender numbers its frames 0, 1, 2, ... across all types; a jump of k means k-1 frames were
    lost (or dropped as corrupt). A repeated or backwards seq (sender restart) is counted as a reset.
    """

    def __init__(self) -> None:
        self.last: int | None = None
        self.lost = 0
        self.resets = 0

    def update(self, seq: int) -> int:
        """Record `seq`; return how many frames were missing just before it."""
        if self.last is None:
            self.last = seq
            return 0
        gap = (seq - self.last) % SEQ_MODULO
        self.last = seq
        if gap == 0 or gap > SEQ_MODULO // 2:
            self.resets += 1
            return 0
        self.lost += gap - 1
        return gap - 1
