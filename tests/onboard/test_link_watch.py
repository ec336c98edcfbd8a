"""The robot program rides out a serial stall: the firmware process stops reading (SIGSTOP), the
loop's writes stall past write_stall_s, the link fails, the FSM goes to DAMPING on the stale
state; once the firmware runs again the link watch reopens the port and, with link_recover_s set,
the robot stands again by itself. Real pty, real virtual robot process, real control loop."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from firmware_bridge.link import LinkState
from onboard.safety import Mode

pytestmark = pytest.mark.timeout(150)


def test_loop_survives_a_stalled_port_and_stands_again(make_app, wait_for, firmware_process):
    proc, device = firmware_process

    def external_robot(cfg) -> None:
        cfg.link.url = device
        cfg.link.write_stall_s = 0.2
        cfg.link.recover_s = 0.05

    # overrun_burst: a shared test machine misses deadlines; that DAMPING cause is tested elsewhere
    app = make_app(lockstep=False, profile="", configure=external_robot, link_recover_s=0.3, recover_after_s=0.1,
                   overrun_burst=10**6)
    stop = threading.Event()
    loop = threading.Thread(target=app.run, args=(stop,), daemon=True)
    loop.start()
    try:
        assert wait_for(lambda: app.fsm.mode is Mode.STAND, 20)
        os.kill(proc.pid, signal.SIGSTOP)  # the firmware stops reading: the pty buffer fills
        try:
            assert wait_for(lambda: app.link.counters.write_errors >= 1, 60), "no write ever stalled"
            assert wait_for(lambda: app.fsm.mode is Mode.DAMPING, 10)
            time.sleep(0.5)  # stays down (and safe) while the firmware is stopped
            assert app.fsm.mode is Mode.DAMPING
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert wait_for(lambda: app.link.counters.recoveries >= 1 and app.link.lifecycle is LinkState.ACTIVE, 30)


        def stood_again() -> bool:  # DAMPING (stale) -> PASSIVE (link healthy) -> STAND, in that order
            steps = [(h["from"], h["to"]) for h in app.fsm.history]
            try:
                i = steps.index(("STAND", "DAMPING"))
                j = steps.index(("DAMPING", "PASSIVE"), i)
                return ("PASSIVE", "STAND") in steps[j:]
            except ValueError:
                return False

        assert wait_for(stood_again, 30), app.fsm.history
        assert "link" in next(h["reason"] for h in app.fsm.history if (h["from"], h["to"]) == ("DAMPING", "PASSIVE"))
        assert app.stats()["link"]["recoveries"] >= 1
    finally:
        stop.set()
        loop.join(10)
    assert not loop.is_alive()
