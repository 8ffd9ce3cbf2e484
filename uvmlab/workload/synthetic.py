"""The synthetic workload library: small, seeded generators of classic GPU memory patterns.

``make_workload("random:size=2GiB,seed=1")`` builds one from a spec string; ``WORKLOADS`` maps
each name to its ``Generator``; ``describe()`` lists them for the CLI. This module is the
registry and the spec parser; the generators live in ``patterns.py`` (the classic patterns) and
``rodinia.py`` (shaped like published benchmarks).

Conventions shared by every generator:

- ``size`` is the workload's total footprint (all allocations together, approximately) in
  human units, so "size=1.5x GPU memory" means what it says; ``seed`` picks the random choices.
  Default sizes are small so a demo run in the model is quick.
- The CPU initialises the data it would load from disk, GPU kernels follow, a ``sync`` separates
  kernels from later CPU work, as a CUDA program would need.
- Touches are page-runs wherever the pattern is regular and index arrays only where it is not,
  so 10^9 streamed touches cost a few kilobytes. Compute time comes from the builder's per-touch
  default, tuned per generator where the kernel is compute-bound.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvmlab.core.errors import WorkloadError
from uvmlab.workload import patterns, rodinia
from uvmlab.workload.genutil import did_you_mean, parse_int
from uvmlab.workload.ir import Workload


@dataclass(frozen=True)
class Generator:
    """A registered generator: call it with keyword parameters (strings are parsed)."""

    name: str
    fn: Callable[..., Workload]
    summary: str
    params: dict[str, object]  # parameter -> default, in signature order

    def __call__(self, **kwargs: object) -> Workload:
        for key in kwargs:
            if key not in self.params:
                hint = did_you_mean(key, self.params)
                raise WorkloadError(
                    f"workload {self.name!r} has no parameter {key!r}{hint}; "
                    f"valid keys: {', '.join(self.params)}"
                )
        args = {k: self._convert(k, v) for k, v in kwargs.items()}
        try:
            return self.fn(**args)
        except WorkloadError as e:
            raise WorkloadError(f"workload {self.name!r}: {e}") from None

    def _convert(self, key: str, value: object) -> object:
        if isinstance(self.params[key], str):  # a size: the generator parses it, units and all
            return value
        if isinstance(value, str):
            value = parse_int(value, f"workload {self.name!r}: {key}")
        if type(value) is not int:
            raise WorkloadError(f"workload {self.name!r}: {key} must be an integer, got {value!r}")
        return value


WORKLOADS: dict[str, Generator] = {}


def _register(fn: Callable[..., Workload]) -> Callable[..., Workload]:
    sig = inspect.signature(fn)
    params = {k: p.default for k, p in sig.parameters.items()}
    assert "size" in params and "seed" in params, f"{fn.__name__} must take size and seed"
    summary = (fn.__doc__ or "").strip().splitlines()[0].replace("``", "")
    WORKLOADS[fn.__name__] = Generator(fn.__name__, fn, summary, params)
    return fn


# --- spec strings ------------------------------------------------------------------------------


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``NAME:key=value,...`` into the name and its raw string parameters."""
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    if not name:
        raise WorkloadError(f"empty workload spec {spec!r}; known: {', '.join(WORKLOADS)}")
    params: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not eq or not key or not value:
            raise WorkloadError(f"workload spec {spec!r}: expected key=value, got {item!r}")
        if key in params:
            raise WorkloadError(f"workload spec {spec!r}: {key!r} is given twice")
        params[key] = value
    return name, params


def get_generator(name: str) -> Generator:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise WorkloadError(
            f"unknown workload {name!r}{did_you_mean(name, WORKLOADS)}; "
            f"known workloads: {', '.join(WORKLOADS)}"
        ) from None


def make_workload(spec: str) -> Workload:
    """Build a workload from a spec such as ``"random:size=2GiB,seed=1"``."""
    name, params = parse_spec(spec)
    return get_generator(name)(**params)


def describe() -> list[dict[str, Any]]:
    """One entry per generator: ``name``, one-line ``description`` (also as ``summary``, the
    key uvmlab/cli/main.py reads), ``params`` with defaults (``None`` means "derived from the other
    parameters"; the generator's docstring says how)."""
    return [
        {"name": g.name, "description": g.summary, "summary": g.summary, "params": dict(g.params)}
        for g in WORKLOADS.values()
    ]


# The classic patterns first, then the generators shaped like published benchmarks (UVMSmart's
# Rodinia set): this order is the order ``describe()`` lists them in.
for _fn in (*patterns.GENERATORS, *rodinia.GENERATORS):
    _register(_fn)
