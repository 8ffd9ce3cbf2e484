"""What the command says besides its results: warnings, progress notes, the first-run compile.

* Log lines go through ``logging`` (logger ``uvmlab``) to stderr as ``uvmlab: ...``; ``-q``
  keeps warnings and errors only, ``-v`` adds debug lines.
* Every policy ejection is one ``uvmlab: warning: ...`` line (policy, hook, reason, simulated
  time), also with ``-q``, once per ejection even when a run reports it twice; ``--strict``
  makes the command exit with code 4 after its outputs are written.
* The model's compiled paths (numba, cached on disk) take tens of seconds to compile on the first
  run after an install or upgrade: :func:`compile_model` runs a tiny workload first and, when
  that takes more than a moment, says what it is doing and how long it took.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterable
from typing import Any

from uvmlab.api import simulate
from uvmlab.core.errors import PolicyEjectedWarning, ejection_message
from uvmlab.driver.compiled import fast_service
from uvmlab.engine import fault_loop

log = logging.getLogger("uvmlab")


class _State:
    strict = False
    quiet = False
    compiled = False
    ejections: list[str] = []


state = _State()


def setup(verbose: int = 0, quiet: bool = False, strict: bool = False) -> None:
    """Configure logging and the warning display for one command."""
    state.quiet, state.strict = quiet, strict
    state.ejections = []
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    log.setLevel(level)
    if not any(getattr(h, "_uvmlab", False) for h in log.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("uvmlab: %(message)s"))
        h._uvmlab = True  # type: ignore[attr-defined]
        log.addHandler(h)
        log.propagate = False
    warnings.showwarning = _show_warning
    warnings.simplefilter("always", PolicyEjectedWarning)


def _show_warning(
    message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    text = " ".join(str(message).split())
    if issubclass(category, PolicyEjectedWarning):
        if text in state.ejections:
            return
        state.ejections.append(text)
    log.warning("warning: %s", text)


def warn_ejections(results: Iterable[Any]) -> None:
    """Ejections of results made elsewhere (sweep workers): one warning line each."""
    for r in results:
        for e in getattr(r, "ejections", []):
            warnings.warn(PolicyEjectedWarning(f"{r.workload}: {ejection_message(e)}"), stacklevel=2)


def exit_code() -> int:
    """4 when ``--strict`` and a policy was ejected (after saying so), else 0."""
    if state.strict and state.ejections:
        print(f"uvmlab: error: {len(state.ejections)} policy ejection(s) under --strict", file=sys.stderr)
        return 4
    return 0


def cache_filled() -> bool:
    """Whether numba's on-disk cache holds the compiled fault path that :func:`compile_model`'s
    warm-up runs (best effort: numba keeps one index file per compiled function, beside its
    module or under ``NUMBA_CACHE_DIR``). Only those functions: one the warm-up never calls (a
    policy hook's path) would never be cached by it, and the note would come back every run."""
    try:
        fns = (fast_service.service_blocks, fast_service.cpu_touches, fault_loop.run_loop)
        return all(os.path.exists(f._cache._cache_file._index_path) for f in fns)
    except (AttributeError, OSError):  # another numba: say nothing rather than guess wrong
        return True


def compile_model() -> None:
    """Compile (or load from numba's cache) the model's compiled paths, saying so when slow."""
    if state.compiled:
        return
    state.compiled = True
    t0 = time.monotonic()
    filled = cache_filled()
    if not filled:
        log.info(
            "compiling the model's fast paths with numba: the first run after installing or "
            "upgrading uvmlab takes about 3 min (2 CPU cores); later runs load them from the cache"
        )
    note = threading.Timer(2.0, lambda: log.info("loading the model's compiled code from numba's cache ..."))
    note.daemon = True
    if filled and sys.stderr.isatty():  # like the progress bars: a note for a person watching
        note.start()
    try:
        # GPU faults with eviction, then CPU faults: the compiled paths every run takes; then
        # kernels after one that did not fault, whose first step runs in Python (engine/gpu.py)
        simulate("random:size=8MiB,seed=1", gpu="h200", gpu_memory="50%")
        simulate("pingpong:size=4MiB,rounds=1", gpu="h200")
        simulate("train:size=4MiB", gpu="h200")
    finally:
        note.cancel()
    if not filled:
        log.info("compiled in %.0f s; cached for the next runs", time.monotonic() - t0)


def compile_policy_kernels() -> None:
    """Compile (or load from numba's cache) the fault service's versions for compiled policy
    kernels, before the first run with one; a note when it takes more than 2 s (the first such
    run after installing: ~25 s on 2 CPU cores)."""
    t0 = time.monotonic()
    note = threading.Timer(
        2.0,
        lambda: log.info(
            "compiling the fault service for compiled policies with numba (the first run with one "
            "after installing uvmlab, ~25 s; later runs load it from the cache) ..."
        ),
    )
    note.daemon = True
    note.start()
    try:
        # a compiled victim kernel and a compiled prefetch kernel, under eviction
        simulate("llm:size=8MiB,tokens=2", gpu="h200", gpu_memory="150%", policies="recent+forward")
    finally:
        note.cancel()
    if time.monotonic() - t0 > 2.0:
        log.info("compiled in %.0f s; cached for the next runs", time.monotonic() - t0)
