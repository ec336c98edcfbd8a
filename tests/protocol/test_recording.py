"""Recordings: round trip, files cut at every byte of the last record, a writer killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mcap.reader import make_reader
from mcap.writer import Writer as McapWriter

from protocol.recording import ENCODING_SERIAL, Reader, Record, RecordingError, Writer, read_all

REPO = Path(__file__).resolve().parents[2]


def sample_records(n: int) -> list[Record]:
    return [Record("serial" if i % 3 == 0 else "messages", 1_000 * i, bytes([i % 256]) * (i % 50)) for i in range(n)]


def test_round_trip_and_readable_by_the_mcap_library(tmp_path: Path) -> None:
    path = tmp_path / "rec.mcap"
    records = sample_records(40)
    with Writer(path) as writer:
        for r in records:
            writer.write(r.channel, r.t_ns, r.data, encoding=ENCODING_SERIAL if r.channel == "serial" else None)
    reader = Reader(path)
    assert list(reader) == records and reader.complete and reader.tail_bytes == 0
    with open(path, "rb") as f:  # the official reader sees the same, via the summary
        seen = [(c.topic, m.log_time, m.data, c.message_encoding) for _, c, m in make_reader(f).iter_messages()]
    assert [(t, ts, d) for t, ts, d, _ in seen] == [tuple(r) for r in records]
    assert {t: e for t, _, _, e in seen} == {"serial": "cobs-frames", "messages": "msgpack"}


def test_reads_chunked_files_from_other_writers(tmp_path: Path) -> None:
    path = tmp_path / "chunked.mcap"
    with open(path, "wb") as f:
        writer = McapWriter(f, chunk_size=200)
        writer.start()
        channel = writer.register_channel("cam", "raw", schema_id=0)
        for i in range(30):
            writer.add_message(channel, log_time=i, data=bytes([i]) * 20, publish_time=i)
        writer.finish()
    assert read_all(path) == [Record("cam", i, bytes([i]) * 20) for i in range(30)]


def test_truncated_at_every_offset_of_the_last_record(tmp_path: Path) -> None:
    path = tmp_path / "crash.mcap"
    records = sample_records(12)
    writer = Writer(path)
    for r in records[:-1]:
        writer.write(r.channel, r.t_ns, r.data)
    writer.flush()
    start = path.stat().st_size
    writer.write(records[-1].channel, records[-1].t_ns, records[-1].data)
    writer.flush()  # no close: no footer, no summary, as after kill -9
    full = path.read_bytes()
    assert len(full) > start
    cut = tmp_path / "cut.mcap"
    for end in range(start, len(full)):
        cut.write_bytes(full[:end])
        reader = Reader(cut)
        assert list(reader) == records[:-1], end
        assert not reader.complete and reader.tail_bytes == end - start
    cut.write_bytes(full)
    assert read_all(cut) == records


def test_truncated_inside_the_magic_and_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "tiny.mcap"
    path.write_bytes(b"\x89MC")
    assert read_all(path) == []
    path.write_bytes(b"not an mcap file")
    with pytest.raises(RecordingError):
        read_all(path)


def test_zero_filled_tail_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "zeros.mcap"
    writer = Writer(path)
    writer.write("a", 1, b"x")
    writer.flush()
    with open(path, "ab") as f:
        f.write(bytes(4096))  # what a filesystem can leave after power loss
    reader = Reader(path)
    assert list(reader) == [Record("a", 1, b"x")] and reader.tail_bytes == 4096


WRITER_SCRIPT = """
import sys
import time
from protocol.recording import Writer
writer = Writer(sys.argv[1])
i = 0
while True:
    writer.write("stream", i, i.to_bytes(4, "little") * 2000)
    if i % 3 == 0:
        writer.flush()
    if i == 20:
        print("ready", flush=True)
    if i > 20:
        time.sleep(0.001)  # keep the file small; the kill still lands between or inside writes
    i += 1
"""


@pytest.mark.timeout(30)
def test_writer_killed_with_sigkill_mid_write(tmp_path: Path) -> None:
    path = tmp_path / "killed.mcap"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    reader = Reader(path)
    records = list(reader)
    assert len(records) >= 20 and not reader.complete
    for i, record in enumerate(records):  # a gap-free prefix with intact contents
        assert record == Record("stream", i, i.to_bytes(4, "little") * 2000)
