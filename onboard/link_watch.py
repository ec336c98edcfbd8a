"""Brings the serial link back after a port failure, so one stall does not end the robot's run.

Why: the link goes to ERROR when a read or write fails (a write blocked past `write_stall_s` on an
overloaded host, a USB-serial adapter that re-enumerated). Before this watcher nothing reopened
it: the firmware's states stayed stale, the safety FSM held DAMPING, and even an operator's clear
could not bring the robot back (seen in a loaded lock-step demo). The watcher is the hardware
manager's error path in ros2_control terms: ERROR -> reopen (configure) -> activate, retried with
a doubling back-off, on its own thread, never on the control loop's.

Safety is unchanged: the FSM left STAND/POLICY for DAMPING on the stale state before any of this,
and what follows once states are fresh again is the FSM's choice (`safety.link_recover_s`, or an
operator's clear). A link the e-stop made INACTIVE is never re-activated here: only a link this
watcher reopened and whose ENABLE was not confirmed is activated again, and not while the FSM is
in ESTOP.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from firmware_bridge.link import LinkError, LinkState, SerialLink

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often the lifecycle is looked at while the link is healthy


class LinkWatch:
    """A daemon thread that recovers `link` from ERROR (see the module docstring).

    `enable()`: whether the motors may be enabled on reactivation (the FSM's armed flag);
    `estopped()`: True while the FSM is in ESTOP (then nothing is activated).
    """

    def __init__(self, link: SerialLink, enable: Callable[[], bool], estopped: Callable[[], bool]) -> None:
        self.link, self.enable, self.estopped = link, enable, estopped
        self.attempts = 0  # recovery attempts (reopen or re-activate), successful or not
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "LinkWatch":
        if self.link.config.recover_s <= 0:
            log.info("serial link recovery off (link.recover_s = 0): a port failure ends the link")
            return self
        self._thread = threading.Thread(target=self._run, name="link-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        cfg = self.link.config
        wait = cfg.recover_s
        reopened = False  # this watcher reopened the port and its ENABLE is not yet confirmed
        while not self._stop.is_set():
            state = self.link.lifecycle
            if state is LinkState.ERROR or (reopened and state is LinkState.INACTIVE):
                if self._stop.wait(wait):
                    return
                if self.estopped() and state is LinkState.INACTIVE:
                    continue  # an e-stop came in meanwhile: its clear re-activates the link
                self.attempts += 1
                try:
                    if state is LinkState.ERROR:
                        reopened = True
                        ok = self.link.recover(enable=self.enable())
                    else:
                        ok = self.link.activate(enable=self.enable())
                except LinkError as exc:  # the lifecycle moved under us (closing): look again
                    log.debug("link recovery: %s", exc)
                    ok = False
                if ok:
                    reopened, wait = False, cfg.recover_s
                    log.info("serial link active again after %d attempt(s)", self.attempts)
                else:
                    wait = min(2 * wait, cfg.recover_max_s)
                    log.warning("serial link still down (%s); next try in %.2f s",
                                self.link.lifecycle.value, wait)
                continue
            if state is LinkState.FINALIZED:
                return
            if state is LinkState.ACTIVE:
                reopened = False
            self._stop.wait(POLL_S)
