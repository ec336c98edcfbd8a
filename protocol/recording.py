"""Recordings of streams (robot<->learner messages, raw serial bytes) as MCAP files.

Why MCAP: an open, documented container (mcap.dev) with readers in C++, Go, Rust, TypeScript and
Python and viewers (Foxglove, the `mcap` CLI), built for timestamped multi-channel robot logs, so
a recording can be opened by tools we did not write. We write it *unchunked*: each record goes to
the file as it is written, so a process killed with SIGKILL loses at most the record in flight
(a chunked file loses the whole open chunk). The reader here scans records itself and stops at the
first incomplete or invalid one, so a file without footer/summary (a crash) reads back every
complete record; files with chunks written by other tools are read too. `recover()` rewrites such
a file complete (summary, footer), so any MCAP tool opens it.

What foreign tools see:
- Times: log_time = publish_time = nanoseconds since the Unix epoch. Writers are told which clock
  their t_ns comes from (`clock`): `unix` (already epoch time; copies of recordings),
  `monotonic` (time.monotonic_ns(), moved to the epoch by the offset read when the file opens:
  exact wall-clock times) or `elapsed` (a clock counting from the recording's start: simulated
  firmware time, ns since a t0, dataset steps; the first record is placed at the wall time it was
  written, intervals are the source's). Metadata record `clock` says which, with the offset, so
  the source's own times are t_ns - offset_ns.
- Schemas: every channel has one, named for what it holds. `msgpack` channels (protocol.messages)
  carry a JSON Schema (`jsonschema`) of the decoded message maps; arrays inside are maps
  {dtype, shape, data: raw little-endian bytes}. `cobs-frames` channels hold raw serial bytes
  exactly as read/written (corruption included), which no schema language describes: their schema
  (encoding `text`) says in words how to decode them; `python -m firmware_bridge.hil
  foxglove` writes a decoded copy (JSON messages with JSON Schemas) for plotting.

Each record here: channel name, t_ns (log_time, epoch ns), data bytes. A channel's message
encoding (e.g. "msgpack" for protocol.messages, "cobs-frames" for raw serial bytes) and schema
are set when the channel is first written.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import struct
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, NamedTuple

from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, Message, Metadata, Schema as McapSchema
from mcap.stream_reader import breakup_chunk
from mcap.writer import CompressionType, Writer as McapWriter

logger = logging.getLogger(__name__)

MCAP_MAGIC = b"\x89MCAP0\r\n"
PROFILE = "h2o-robot"
ENCODING_MSGPACK = "msgpack"  # protocol.messages bytes
ENCODING_SERIAL = "cobs-frames"  # raw serial bytes as read/written (protocol.frames on the wire)
ENCODING_JSON = "json"  # UTF-8 JSON objects (decoded, human-facing copies)
CLOCK_UNIX = "unix"  # t_ns is already nanoseconds since the Unix epoch
CLOCK_MONOTONIC = "monotonic"  # t_ns is time.monotonic_ns(): shifted to the epoch exactly
CLOCK_ELAPSED = "elapsed"  # t_ns counts from the recording's start: first record = wall time then
CLOCKS = (CLOCK_UNIX, CLOCK_MONOTONIC, CLOCK_ELAPSED)
CLOCK_METADATA = "clock"  # metadata record: {"clock": one of CLOCKS, "offset_ns": epoch - source}
_RECORD_PREFIX = struct.Struct("<BQ")  # opcode, content length
_MESSAGE_HEAD = struct.Struct("<HIQQ")  # channel id, sequence, log_time, publish_time
_EPOCH_2001_NS = 978_307_200 * 10**9  # a CLOCK_UNIX time before this is a clock since boot


class RecordingError(ValueError):
    """The file is not an MCAP recording (bad magic) or a record is malformed beyond repair."""


class Record(NamedTuple):
    channel: str
    t_ns: int
    data: bytes


@dataclass(frozen=True)
class Schema:
    """An MCAP schema: `name` says what a channel holds, `encoding` how `data` describes it."""

    name: str
    encoding: str
    data: bytes


@dataclass(frozen=True)
class ChannelInfo:
    """What a channel is: its message encoding and schema (None: a foreign file without one)."""

    encoding: str
    schema: Schema | None


SERIAL_SCHEMA = Schema(
    name="h2o_robot.serial.RawBytes",
    encoding="text",
    data=(
        b"Raw bytes of one direction of the robot's serial line, exactly as read or written "
        b"(corrupt bytes included; a message may hold part of a frame or several frames). "
        b"The stream is COBS-encoded frames, each ended by one 0x00 byte; a decoded frame is "
        b"version, type, seq, payload length, payload, CRC-16 (layout and frame types: "
        b"docs/protocol.md, protocol/frames.py). Decode with protocol.frames.FrameDecoder, or "
        b"write a decoded JSON copy with `python -m firmware_bridge.hil foxglove`."
    ),
)


def _kind_schema(kind: Any) -> dict[str, Any]:
    """JSON Schema of one wire field kind (protocol.wire_fields), as msgpack decodes it."""
    from protocol import wire_fields as wf

    described = {"description": kind.describe()}
    if isinstance(kind, wf.Bool):
        return {"type": "boolean", **described}
    if isinstance(kind, wf.Int):
        return {"type": "integer", **described}
    if isinstance(kind, wf.Float):
        return {"type": "number", **described}
    if isinstance(kind, wf.Str):
        return {"type": "string", **described}
    if isinstance(kind, wf.StrList):
        return {"type": "array", "items": {"type": "string"}, **described}
    if isinstance(kind, wf.Map):
        return {"type": "object", **described}
    if isinstance(kind, wf.Array):
        return {
            "type": "object",
            "required": ["dtype", "shape", "data"],
            "properties": {
                "dtype": {"const": kind.dtype},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "data": {"description": "raw little-endian bytes (msgpack bin), row-major"},
            },
            **described,
        }
    return described  # Bytes (msgpack bin) and any kind added later: described in words


def messages_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the decoded protocol.messages maps, one branch per type."""
    from protocol.messages import ENVELOPE_KEYS, MESSAGE_TYPES, SCHEMA_VERSION

    branches = []
    for name, cls in MESSAGE_TYPES.items():
        props: dict[str, Any] = {"v": {"const": SCHEMA_VERSION}, "type": {"const": name}}
        props.update({f.name: _kind_schema(f.metadata["kind"]) for f in fields(cls)})
        branches.append({"title": name, "type": "object", "properties": props,
                         "required": list(props), "additionalProperties": False})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"h2o-robot protocol message (schema version {SCHEMA_VERSION})",
        "description": "One msgpack map per message; docs/protocol.md says who sends what when.",
        "type": "object",
        "required": list(ENVELOPE_KEYS),
        "oneOf": branches,
    }


def default_schema(encoding: str) -> Schema | None:
    """The schema a channel of this message encoding gets when the writer is given none."""
    if encoding == ENCODING_MSGPACK:
        return Schema("h2o_robot.protocol.Message", "jsonschema",
                      json.dumps(messages_json_schema(), allow_nan=False).encode())
    if encoding == ENCODING_SERIAL:
        return SERIAL_SCHEMA
    return None


class Writer:
    """Append records to an MCAP file; `flush()` pushes them to the OS (and disk with fsync).

    `clock` names the clock of the t_ns given to `write` (see the module docstring); the file
    holds epoch times whatever it is. `metadata` records are written first (a copy passes the
    original's on; its `clock` record then stands for the writer's own).
    """

    def __init__(self, path: str | os.PathLike[str], default_encoding: str = ENCODING_MSGPACK,
                 clock: str = CLOCK_UNIX, metadata: dict[str, dict[str, str]] | None = None) -> None:
        if clock not in CLOCKS:
            raise ValueError(f"clock {clock!r} is not one of {CLOCKS}")
        self.path = Path(path)
        self.clock = clock
        self._offset_ns: int | None = {CLOCK_UNIX: 0, CLOCK_MONOTONIC: time.time_ns() - time.monotonic_ns()}.get(clock)
        self._file: BinaryIO = open(self.path, "wb")
        self._mcap = McapWriter(
            self._file,
            use_chunking=False,
            compression=CompressionType.NONE,
            use_summary_offsets=True,
        )
        self._mcap.start(profile=PROFILE, library="h2o-robot protocol.recording")
        for name, data in (metadata or {}).items():
            self._mcap.add_metadata(name, dict(data))
        self._clock_noted = CLOCK_METADATA in (metadata or {})
        self._channels: dict[str, int] = {}
        self._schemas: dict[Schema, int] = {}
        self._sequence = 0
        self._default_encoding = default_encoding
        self._warned_boot_clock = False
        self.closed = False

    def _epoch_ns(self, t_ns: int) -> int:
        if self._offset_ns is None:  # CLOCK_ELAPSED: anchored at the first record
            self._offset_ns = time.time_ns() - t_ns
        if not self._clock_noted:  # before the first message, so a cut-off file has it too
            self._clock_noted = True
            self._mcap.add_metadata(CLOCK_METADATA, {"clock": self.clock, "offset_ns": str(self._offset_ns)})
        t = t_ns + self._offset_ns
        if t < _EPOCH_2001_NS and not self._warned_boot_clock:
            self._warned_boot_clock = True
            logger.warning("%s: time %d ns is before 2001: a clock since boot written as clock=%r? "
                           "viewers will show 1970", self.path, t, self.clock)
        return t

    def write(self, channel: str, t_ns: int, data: bytes, encoding: str | None = None,
              schema: Schema | None = None) -> None:
        """Append one record. `encoding` and `schema` apply when `channel` is first seen (no
        `schema`: the encoding's default one)."""
        if self.closed:
            raise ValueError(f"recording {self.path} is closed")
        t = self._epoch_ns(int(t_ns))
        channel_id = self._channels.get(channel)
        if channel_id is None:
            encoding = encoding or self._default_encoding
            channel_id = self._mcap.register_channel(channel, encoding, schema_id=self._schema_id(schema or default_schema(encoding)))
            self._channels[channel] = channel_id
        self._mcap.add_message(channel_id, log_time=t, data=bytes(data), publish_time=t, sequence=self._sequence)
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF

    def _schema_id(self, schema: Schema | None) -> int:
        if schema is None:
            return 0
        if schema not in self._schemas:
            self._schemas[schema] = self._mcap.register_schema(schema.name, schema.encoding, schema.data)
        return self._schemas[schema]

    def flush(self, fsync: bool = False) -> None:
        """Hand buffered records to the OS (they then survive the process); fsync also survives power loss."""
        self._mcap.flush()
        if fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Write the summary and footer (a complete MCAP file) and close."""
        if self.closed:
            return
        self._mcap.finish()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self.closed = True

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Reader:
    """Iterate the records of an MCAP file, complete or cut off by a crash.

    After iteration: `complete` is True when the footer was reached; `stopped_at` is the byte
    offset where reading stopped and `tail_bytes` how many bytes after it were ignored (a partial
    last record, or garbage); `channels` maps each channel seen to its encoding and schema, and
    `metadata` holds the metadata records (name -> {key: value}).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.complete = False
        self.stopped_at = 0
        self.tail_bytes = 0
        self.channels: dict[str, ChannelInfo] = {}
        self.metadata: dict[str, dict[str, str]] = {}

    def __iter__(self) -> Iterator[Record]:
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            magic = f.read(len(MCAP_MAGIC))
            if magic != MCAP_MAGIC:
                if len(magic) < len(MCAP_MAGIC) and MCAP_MAGIC.startswith(magic):
                    self._stop(0, size)  # the crash came before the magic was complete
                    return
                raise RecordingError(f"{self.path} is not an MCAP file")
            yield from self._records(f, size)

    def _stop(self, offset: int, size: int) -> None:
        self.stopped_at = offset
        self.tail_bytes = size - offset
        if self.tail_bytes:
            logger.info("%s: ignored %d trailing bytes from offset %d (incomplete record)", self.path, self.tail_bytes, offset)

    def _records(self, f: BinaryIO, size: int) -> Iterator[Record]:
        topics: dict[int, str] = {}
        schemas: dict[int, Schema] = {}
        offset = len(MCAP_MAGIC)
        while True:
            if size - offset < _RECORD_PREFIX.size:
                self._stop(offset, size)
                return
            opcode, length = _RECORD_PREFIX.unpack(f.read(_RECORD_PREFIX.size))
            if opcode == 0 or length > size - offset - _RECORD_PREFIX.size:
                self._stop(offset, size)  # a cut-off record (or zero-filled tail): stop before it
                return
            content = f.read(length)
            offset += _RECORD_PREFIX.size + length
            if opcode == Opcode.MESSAGE:
                if length < _MESSAGE_HEAD.size:
                    self._stop(offset - length - _RECORD_PREFIX.size, size)
                    return
                channel_id, _seq, log_time, _publish = _MESSAGE_HEAD.unpack_from(content, 0)
                yield Record(topics.get(channel_id, f"#{channel_id}"), log_time, content[_MESSAGE_HEAD.size :])
            elif opcode in (Opcode.CHANNEL, Opcode.CHUNK, Opcode.SCHEMA, Opcode.METADATA):
                try:
                    records = list(self._parse(opcode, content, topics, schemas))
                except Exception as exc:  # noqa: BLE001 - a malformed record body (corruption, not truncation)
                    logger.warning("%s: malformed record at offset %d: %s", self.path, offset - length - _RECORD_PREFIX.size, exc)
                    self._stop(offset - length - _RECORD_PREFIX.size, size)
                    return
                yield from records
            elif opcode in (Opcode.DATA_END, Opcode.FOOTER):
                self.complete = True  # the summary section follows; no more data records
                self._stop(size, size)
                return

    def _parse(self, opcode: int, content: bytes, topics: dict[int, str], schemas: dict[int, Schema]) -> Iterator[Record]:
        """Channel, schema and metadata records update the reader; a chunk yields its messages."""
        stream = ReadDataStream(io.BytesIO(content))
        if opcode == Opcode.CHUNK:
            for record in breakup_chunk(Chunk.read(stream), validate_crc=True):
                if isinstance(record, Message):
                    yield Record(topics.get(record.channel_id, f"#{record.channel_id}"), record.log_time, record.data)
                else:
                    self._learn(record, topics, schemas)
        else:
            kind = {Opcode.CHANNEL: Channel, Opcode.SCHEMA: McapSchema, Opcode.METADATA: Metadata}[opcode]
            self._learn(kind.read(stream), topics, schemas)

    def _learn(self, record: object, topics: dict[int, str], schemas: dict[int, Schema]) -> None:
        if isinstance(record, McapSchema):
            schemas[record.id] = Schema(record.name, record.encoding, bytes(record.data))
        elif isinstance(record, Channel):
            topics[record.id] = record.topic
            self.channels.setdefault(record.topic, ChannelInfo(record.message_encoding, schemas.get(record.schema_id)))
        elif isinstance(record, Metadata):
            self.metadata[record.name] = dict(record.metadata)


def read_all(path: str | os.PathLike[str]) -> list[Record]:
    """Every complete record of a recording, in file order."""
    return list(Reader(path))


def write_records(dst: str | os.PathLike[str], records: Iterable[Record], channels: dict[str, ChannelInfo],
                  metadata: dict[str, dict[str, str]] | None = None) -> int:
    """Write epoch-timed records (read from recordings) into a new complete file, each channel
    with its encoding and schema from `channels` (looked up as each record is written, so a
    Reader's live `channels` works while it streams); returns the number written."""
    n = 0
    with Writer(dst, clock=CLOCK_UNIX, metadata=metadata) as writer:
        for rec in records:
            info = channels.get(rec.channel)
            writer.write(rec.channel, rec.t_ns, rec.data, encoding=info.encoding if info else ENCODING_SERIAL,
                         schema=info.schema if info else None)
            n += 1
    return n


def recover(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> tuple[Reader, int]:
    """Copy every complete record of `src` (e.g. cut short by a crash) into a complete MCAP file
    `dst` (summary, footer: every MCAP tool opens it), channels with their encodings and schemas,
    metadata kept. Returns the reader (`complete`: whether `src` had its footer, `tail_bytes`:
    bytes of `src` that held no complete record) and the number of records written."""
    reader = Reader(src)
    records = iter(reader)
    first = next(records, None)  # metadata (the source's clock) precedes the first message
    n = write_records(dst, itertools.chain([first] if first is not None else [], records), reader.channels, reader.metadata)
    return reader, n
