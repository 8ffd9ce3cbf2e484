"""The model's compiled (numba) paths, and the one moment they are first needed.

numba compiles a function at its first call (or loads it from its on-disk cache). A front end
that wants to announce the first-run compile registers a callback with :func:`on_first_use`;
the engine calls :func:`first_use` when it is about to run a workload it has accepted, so bad
input is refused before any compiling, and commands that never simulate never compile.

A run with a compiled policy (docs/policies.md, "Compiled policies") takes versions of the fault
service specialised for policy kernels, compiled the first time such a run comes: the policy
guard calls :func:`first_kernels` when it has kernels to pass, and a front end registers its
announcement with :func:`on_first_kernels`.
"""

from __future__ import annotations

from collections.abc import Callable

_before_first_use: Callable[[], None] | None = None
_before_first_kernels: Callable[[], None] | None = None


def on_first_use(fn: Callable[[], None] | None) -> None:
    """Call ``fn`` (once) before the first simulation of this process; None forgets it."""
    global _before_first_use
    _before_first_use = fn


def first_use() -> None:
    """Run the registered callback, once; the engine calls this before every simulation."""
    global _before_first_use
    fn, _before_first_use = _before_first_use, None  # cleared first: fn itself simulates
    if fn is not None:
        fn()


def on_first_kernels(fn: Callable[[], None] | None) -> None:
    """Call ``fn`` (once) before the first run of this process with compiled policy kernels."""
    global _before_first_kernels
    _before_first_kernels = fn


def first_kernels() -> None:
    """Run the callback of :func:`on_first_kernels`, once; the policy guard calls this when it
    bundles kernels for the compiled code."""
    global _before_first_kernels
    fn, _before_first_kernels = _before_first_kernels, None  # cleared first: fn itself simulates
    if fn is not None:
        fn()
