"""The watchdog: stops an in-process hook that never returns, and tells a user's Ctrl-C apart
from a hook that raises ``KeyboardInterrupt`` itself.

Inside ``Guard.session()`` (main thread only: Python runs signal handlers there, between
bytecodes) a thread watches the call in progress; after the hard limit it interrupts the main
thread with SIGUSR2, whose handler raises ``HookTimeout`` in the hook. The session also installs
a SIGINT handler that marks a real Ctrl-C before raising ``KeyboardInterrupt``: the guard lets
that one through (the run stops, what was done is saved) and ejects a policy that raises the
exception on its own.

A hook can defeat both in its own process: catch ``HookTimeout`` and go on, block the signals,
or sit in code that never returns to the interpreter. After every call the guard checks that
the handlers are still the session's (``handlers_changed``), restores them and ejects a policy
that changed them; for the rest, ``--isolate`` (docs/security.md).
"""

from __future__ import annotations

import _signal
import _thread
import os
import signal
import threading
import time
from typing import Any

SIG = getattr(signal, "SIGUSR2", None)
_BLOCK = getattr(signal, "SIG_BLOCK", 0)
_get_ident = _thread.get_ident
_getsignal = _signal.getsignal
WATCHED = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None), SIG) if s is not None)


class HookTimeout(BaseException):
    """Raised inside a hook that ran past the hard limit. A BaseException so that a policy's
    ``except Exception`` does not swallow it."""


class CallState:
    """What the watchdog needs to know of the call in progress (written by the guard)."""

    __slots__ = ("in_call", "seq", "t0", "user_interrupt")

    def __init__(self) -> None:
        self.in_call = False
        self.seq = 0
        self.t0 = 0.0
        self.user_interrupt = False


class Watchdog:
    """Interrupts a hook that has run past ``hard_limit_s``; marks a user's Ctrl-C."""

    def __init__(self, state: CallState, hard_limit_s: float) -> None:
        self.state = state
        self.hard_limit_s = hard_limit_s
        self.poll_s = min(0.05, hard_limit_s / 4)
        self.armed = False  # watched by the process's poller (``_Poller``)
        self.old: dict[int, Any] = {}
        self.mine: dict[int, Any] = {}
        self.fired_seq = -1
        self.fired_at = 0.0
        self.mask: set[int] | None = None
        self._raw: dict[int, Any] = {}
        self._raw_items: tuple[tuple[int, Any], ...] = ()
        self._main = threading.main_thread().ident

    def start(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._install(signal.SIGINT, self._on_sigint)
        if SIG is not None and signal.getsignal(SIG) in (signal.SIG_DFL, None):
            self._install(SIG, self._on_timeout)  # else the program uses it: no watchdog
            _POLLER.arm(self)
            self.armed = True
        if hasattr(signal, "SIGTERM"):
            self.mine[signal.SIGTERM] = signal.getsignal(signal.SIGTERM)
        if hasattr(signal, "pthread_sigmask"):
            self.mask = set(_signal.pthread_sigmask(signal.SIG_BLOCK, []))
        # the raw values (``_signal``: no enum conversion) that handlers_changed compares after
        # every hook call, where ``signal.getsignal``'s conversion cost more than a no-op hook
        self._raw = {sig: _signal.getsignal(sig) for sig in self.mine}
        self._raw_items = tuple(self._raw.items())

    def _install(self, sig: int, handler: Any) -> None:
        self.old[sig] = signal.signal(sig, handler)
        self.mine[sig] = handler

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.state.user_interrupt = True
        raise KeyboardInterrupt

    def _on_timeout(self, signum: int, frame: Any) -> None:
        s = self.state
        # Runs in the main thread, so in_call is exact here: a late signal is ignored.
        if s.in_call and s.seq == self.fired_seq:
            raise HookTimeout

    def fired_for(self, seq: int) -> bool:
        return self.fired_seq == seq

    def check(self) -> None:
        """One look at the call in progress (the poller's thread, every ``poll_s``): past the
        hard limit, interrupt the main thread (once per call, again after another limit)."""
        s = self.state
        seq = s.seq
        now = time.perf_counter()
        if (
            s.in_call
            and now - s.t0 > self.hard_limit_s
            and (seq != self.fired_seq or now - self.fired_at > self.hard_limit_s)
        ):
            self.fired_seq = seq
            self.fired_at = now
            if SIG is not None:
                _thread.interrupt_main(SIG)

    def handlers_changed(self) -> str | None:
        """The first watched signal whose handler a hook replaced (now restored), or None."""
        if _get_ident() != self._main:
            return None
        for sig, raw in self._raw_items:
            now = _getsignal(sig)
            if now is not raw and now != raw:
                signal.signal(sig, self.mine[sig])
                return signal.Signals(sig).name
        mask = self.mask
        if mask is not None and _signal.pthread_sigmask(_BLOCK, ()) != mask:  # (a set already)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            return "the signal mask"
        return None

    def stop(self) -> None:
        if self.armed:
            _POLLER.disarm(self)  # returns once no look of this watchdog's can still fire
            self.armed = False
        if threading.current_thread() is threading.main_thread():
            for sig, old in self.old.items():
                signal.signal(sig, old)


class _Poller:
    """The one thread of a process that looks at the armed watchdog's call every ``poll_s``.

    A thread started and joined per session cost ~0.1-0.2 ms of every ``simulate`` with a
    policy (a few % of a short run's time: bench/bench_policies.py); this one is started at the
    first session and then waits, idle, between sessions. ``disarm`` and each look hold one
    lock, so after ``disarm`` returns the watchdog it took off fires no more."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.armed = threading.Event()
        self.dog: Watchdog | None = None
        self.thread: threading.Thread | None = None

    def arm(self, dog: Watchdog) -> None:
        with self.lock:
            self.dog = dog
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="uvmlab-policy-watchdog", daemon=True)
                self.thread.start()
            self.armed.set()

    def disarm(self, dog: Watchdog) -> None:
        with self.lock:
            if self.dog is dog:
                self.dog = None
                self.armed.clear()

    def _run(self) -> None:
        while True:
            self.armed.wait()
            with self.lock:
                dog = self.dog
                if dog is None:
                    continue
                dog.check()
                poll = dog.poll_s
            time.sleep(poll)


_POLLER = _Poller()


def _poller_of_a_child() -> None:
    """A process forked while a session was armed (or the lock held) gets a poller of its own."""
    global _POLLER
    _POLLER = _Poller()


os.register_at_fork(after_in_child=_poller_of_a_child)
