"""Perf events (uvm_perf_events.c): the driver notifies, the heuristics listen.

The driver emits an event at each point a heuristic may care about; perf modules register a
callback per event type, the way ``uvm_perf_register_event_callback`` does. The thrashing
detector listens to MIGRATION, REVOCATION and BLOCK_DESTROY; a study module can register its
own callbacks on any driver (``drv.perf_events.register(MIGRATION, fn)``) without touching the
driver's code. Callbacks must not change driver state (policies that decide things go through
``uvmlab.policy``).
"""

from __future__ import annotations

from collections.abc import Callable

# Event types (UVM_PERF_EVENT_*). Keyword arguments each one is notified with:
BLOCK_DESTROY = "block_destroy"  # block
MIGRATION = "migration"  # block, pages (block-local), dst, cause, now_ns, transfer_copy, read_dup_enabled
REVOCATION = "revocation"  # block, pages (block-local), processor, now_ns
FAULT = "fault"  # block, pages (block-local), processor, now_ns — a serviced fault's pages

EVENT_TYPES = (BLOCK_DESTROY, MIGRATION, REVOCATION, FAULT)


class PerfEvents:
    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable[..., None]]] = {t: [] for t in EVENT_TYPES}

    def register(self, event: str, callback: Callable[..., None]) -> None:
        if event not in self._callbacks:
            raise ValueError(f"unknown perf event {event!r}; one of {', '.join(EVENT_TYPES)}")
        self._callbacks[event].append(callback)

    def unregister(self, event: str, callback: Callable[..., None]) -> None:
        self._callbacks[event].remove(callback)

    def listeners(self, event: str) -> tuple[Callable[..., None], ...]:
        return tuple(self._callbacks[event])

    def has_listeners(self, event: str) -> bool:
        return bool(self._callbacks[event])

    def notify(self, event: str, **kwargs: object) -> None:
        for cb in self._callbacks[event]:
            cb(**kwargs)
