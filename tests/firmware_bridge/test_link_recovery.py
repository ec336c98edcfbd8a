"""The host link survives a port failure: a firmware that stops reading makes a write stall past
write_stall_s (a real one: the pty's buffer fills while the firmware process is stopped), the link
goes to ERROR, and `recover()` reopens the port and gets states again."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from firmware_bridge.link import LinkError, LinkState, SerialLink, SerialLinkConfig

pytestmark = pytest.mark.timeout(120)


def stall_until_error(link: SerialLink, proc: subprocess.Popen, limit_s: float = 20.0) -> None:
    """Stop the firmware process and write until the link fails (its writes block: real stall)."""
    os.kill(proc.pid, signal.SIGSTOP)
    deadline = time.monotonic() + limit_s
    while link.lifecycle is not LinkState.ERROR:
        assert time.monotonic() < deadline, "a stopped firmware never made a write stall"
        link.send_raw(b"\x00" * 1024)  # frame delimiters only: harmless to the firmware later
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGCONT)


def test_recover_reopens_the_port_after_a_write_stall(firmware_process):
    proc, device = firmware_process
    link = SerialLink(SerialLinkConfig(url=device, write_stall_s=0.2))
    try:
        link.configure()
        assert link.activate(enable=False)
        assert link.wait_for_state(timeout_s=5.0) is not None
        with pytest.raises(LinkError):
            link.recover()  # only from ERROR
        stall_until_error(link, proc)
        assert link.counters.write_errors >= 1 and link.error is not None
        before = link.states_received
        ok = False
        for _ in range(20):  # the caller's back-off loop (onboard.link_watch does this)
            ok = link.recover(enable=False) if link.lifecycle is LinkState.ERROR else link.activate(enable=False)
            if ok:
                break
            time.sleep(0.2)
        assert ok and link.lifecycle is LinkState.ACTIVE
        assert link.counters.recoveries >= 1 and link.error is None
        fresh = link.wait_for_state(timeout_s=5.0, after_index=before)
        assert fresh is not None  # the firmware's states reach the host again
    finally:
        link.close()
    assert link.lifecycle is LinkState.FINALIZED
