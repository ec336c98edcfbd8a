"""Recordings of streams (robot<->learner messages, raw serial bytes) as MCAP files.

Why MCAP: an open, documented container (mcap.dev) with readers in C++, Go, Rust, TypeScript and
Python and viewers (Foxglove, the `mcap` CLI), built for timestamped multi-channel robot logs, so
a recording can be opened by tools we did not write. We write it *unchunked*: each record goes to
the file as it is written, so a process killed with SIGKILL loses at most the record in flight
(a chunked file loses the whole open chunk). The reader here scans records itself and stops at the
first incomplete or invalid one, so a file without footer/summary (a crash) reads back every
complete record; files with chunks written by other tools are read too.

Each record: channel name, t_ns (nanoseconds, the writer's clock: log_time = publish_time),
data bytes. A channel's message encoding (e.g. "msgpack" for protocol.messages, "cobs-frames"
for raw serial bytes) is set when the channel is first written.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from pathlib import Path
from typing import BinaryIO, Iterator, NamedTuple

from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, Message
from mcap.stream_reader import breakup_chunk
from mcap.writer import CompressionType, Writer as McapWriter

logger = logging.getLogger(__name__)

MCAP_MAGIC = b"\x89MCAP0\r\n"
PROFILE = "h2o-robot"
ENCODING_MSGPACK = "msgpack"  # protocol.messages bytes
ENCODING_SERIAL = "cobs-frames"  # raw serial bytes as read/written (protocol.frames on the wire)
_RECORD_PREFIX = struct.Struct("<BQ")  # opcode, content length
_MESSAGE_HEAD = struct.Struct("<HIQQ")  # channel id, sequence, log_time, publish_time


class RecordingError(ValueError):
    """The file is not an MCAP recording (bad magic) or a record is malformed beyond repair."""


class Record(NamedTuple):
    channel: str
    t_ns: int
    data: bytes


class Writer:
    """Append records to an MCAP file; `flush()` pushes them to the OS (and disk with fsync)."""

    def __init__(self, path: str | os.PathLike[str], default_encoding: str = ENCODING_MSGPACK) -> None:
        self.path = Path(path)
        self._file: BinaryIO = open(self.path, "wb")
        self._mcap = McapWriter(
            self._file,
            use_chunking=False,
            compression=CompressionType.NONE,
            use_summary_offsets=True,
        )
        self._mcap.start(profile=PROFILE, library="h2o-robot protocol.recording")
        self._channels: dict[str, int] = {}
        self._sequence = 0
        self._default_encoding = default_encoding
        self.closed = False

    def write(self, channel: str, t_ns: int, data: bytes, encoding: str | None = None) -> None:
        """Append one record. `encoding` applies when `channel` is first seen."""
        if self.closed:
            raise ValueError(f"recording {self.path} is closed")
        channel_id = self._channels.get(channel)
        if channel_id is None:
            channel_id = self._mcap.register_channel(channel, encoding or self._default_encoding, schema_id=0)
            self._channels[channel] = channel_id
        self._mcap.add_message(channel_id, log_time=int(t_ns), data=bytes(data), publish_time=int(t_ns), sequence=self._sequence)
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF

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
    last record, or garbage).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.complete = False
        self.stopped_at = 0
        self.tail_bytes = 0

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
            elif opcode in (Opcode.CHANNEL, Opcode.CHUNK):
                try:
                    if opcode == Opcode.CHANNEL:
                        channel = Channel.read(ReadDataStream(io.BytesIO(content)))
                        topics[channel.id] = channel.topic
                    else:
                        records = list(self._chunk_records(content, topics))
                except Exception as exc:  # a malformed record body (corruption, not truncation)
                    logger.warning("%s: malformed record at offset %d: %s", self.path, offset - length - _RECORD_PREFIX.size, exc)
                    self._stop(offset - length - _RECORD_PREFIX.size, size)
                    return
                if opcode == Opcode.CHUNK:
                    yield from records
            elif opcode in (Opcode.DATA_END, Opcode.FOOTER):
                self.complete = True  # the summary section follows; no more data records
                self._stop(size, size)
                return

    @staticmethod
    def _chunk_records(content: bytes, topics: dict[int, str]) -> Iterator[Record]:
        chunk = Chunk.read(ReadDataStream(io.BytesIO(content)))
        for record in breakup_chunk(chunk, validate_crc=True):
            if isinstance(record, Channel):
                topics[record.id] = record.topic
            elif isinstance(record, Message):
                yield Record(topics.get(record.channel_id, f"#{record.channel_id}"), record.log_time, record.data)


def read_all(path: str | os.PathLike[str]) -> list[Record]:
    """Every complete record of a recording, in file order."""
    return list(Reader(path))
