"""The model-internal end of a context (not a user error)."""

from __future__ import annotations


class ContextFatal(Exception):
    """Raised inside the model when a fault ends the context (a fatal fault, out of memory).

    Not a user error: the engine catches it, records a FatalFault event and ends the workload.
    """

    def __init__(self, reason: str, processor: int, page: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.processor = processor
        self.page = page
