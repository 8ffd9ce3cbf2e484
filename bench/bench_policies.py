"""What a policy costs in model wall time, as a ratio to the driver's default in the same run.

    python3 bench/bench_policies.py            # also bench/bench_model.py --only policies
    python3 bench/bench_policies.py --quick

Each configuration runs the same workloads; the figure is the CPU time of the thread that runs
``simulate`` on the built workload (on a machine shared with other work, wall time measures the
others as much as the model), best of ``repeat`` runs, the configurations taking turns, after a
warm-up run that loads the numba caches. Every policy here decides nothing (each hook returns
the driver's default), so every run gives the default's answer and the ratio is the hooks' own
cost:

* ``batch hooks (Python)`` — a Python policy on every hook in its batch-level form:
  ``prefetch_batch``, ``thrashing_batch`` and ``chunk_used_batch`` (once per fault batch),
  ``chunk_activate`` and ``eviction_prepare`` (once per allocation, per eviction) and
  ``decide_replay`` (once per batch); issue #17's goal: at most 2x the default;
* ``eviction hooks only (Python)`` — ``chunk_activate``, ``eviction_prepare`` and the per-use
  ``chunk_used`` (a call for every block of every batch that faults on it);
* ``compiled kernels`` — a compiled policy (docs/policies.md, "Compiled policies"): a
  ``prefetch_kernel`` and a ``thrashing_kernel`` that read every faulted page of the batch and
  decide nothing, a ``victim_kernel`` called at every eviction that keeps the driver's choice
  and a ``replay_kernel`` called after each batch that keeps the driver's replay policy, all
  four from inside the compiled fault loop: a compiled policy on every hook, the goal at most
  1.2x;
* ``batch hooks (Python calling numba)`` — ``prefetch_batch`` and ``thrashing_batch`` Python
  hooks whose work is a ``numba.njit`` kernel over the batch's arrays, plus ``decide_replay``;
* ``per-page hooks (Python)`` — the per-page / per-block forms (``prefetch_before_compute``,
  ``thrashing_hint``) and the eviction and replay hooks: the interpreted reference path;
* ``lru`` and ``tree`` — library policies (an eviction hook; the per-page prefetch tree walk).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from numba import njit

import uvmlab
from uvmlab.api import load_workload
from uvmlab.core.errors import PolicyError
from uvmlab.policy import Policy


class NoopReplay(Policy):
    name = "noop-replay"

    def decide_replay(self, ctx: Any) -> int:
        return 0


class NoopEviction(Policy):
    name = "noop-eviction"

    def chunk_activate(self, ctx: Any) -> None:
        return None

    def chunk_used(self, ctx: Any) -> int:
        return 0

    def eviction_prepare(self, ctx: Any) -> None:
        return None


class NoopBatchEviction(Policy):
    name = "noop-eviction-batch"

    def chunk_activate(self, ctx: Any) -> None:
        return None

    def chunk_used_batch(self, ctx: Any) -> None:
        return None

    def eviction_prepare(self, ctx: Any) -> None:
        return None


class NoopBatchPrefetch(Policy):
    name = "noop-prefetch-batch"

    def prefetch_batch(self, ctx: Any) -> None:
        return None


class NoopBatchThrashing(Policy):
    name = "noop-thrashing-batch"

    def thrashing_batch(self, ctx: Any) -> None:
        return None


@njit(cache=True)
def _count_faulted(faulted: np.ndarray) -> int:
    n = 0
    for i in range(faulted.shape[0]):
        for j in range(faulted.shape[1]):
            n += faulted[i, j]
    return n


class JitBatchPrefetch(Policy):
    """Reads every faulted page in compiled code, then leaves the driver's decision."""

    name = "jit-prefetch-batch"

    def prefetch_batch(self, ctx: Any) -> None:
        _count_faulted(ctx.faulted)
        return None


class JitBatchThrashing(Policy):
    name = "jit-thrashing-batch"

    def thrashing_batch(self, ctx: Any) -> None:
        _count_faulted(ctx.faulted)
        return None


@njit(cache=True)
def _prefetch_kernel(  # noqa: ARG001 (the kernel signature, policy_calls)
    gpu: int,
    now_ns: int,
    blocks: np.ndarray,
    n_pages: np.ndarray,
    alloc: np.ndarray,
    faulted: np.ndarray,
    state: np.ndarray,
    out: np.ndarray,
    rows: np.ndarray,
) -> int:
    _count_faulted(faulted)
    return 0


@njit(cache=True)
def _thrashing_kernel(  # noqa: ARG001 (the kernel signature, policy_calls)
    gpu: int,
    now_ns: int,
    blocks: np.ndarray,
    n_pages: np.ndarray,
    alloc: np.ndarray,
    faulted: np.ndarray,
    state: np.ndarray,
    kinds: np.ndarray,
) -> int:
    _count_faulted(faulted)
    return 0


@njit(cache=True)
def _victim_kernel(  # noqa: ARG001 (the kernel signature, policy_calls)
    gpu: int,
    now_ns: int,
    chunk_state: np.ndarray,
    owner: np.ndarray,
    list_of: np.ndarray,
    prev: np.ndarray,
    nxt: np.ndarray,
    list_count: np.ndarray,
    state: np.ndarray,
) -> int:
    return -1


@njit(cache=True)
def _replay_kernel(  # noqa: ARG001 (the kernel signature, policy_calls)
    gpu: int,
    batch: int,
    faults: int,
    unique: int,
    duplicates: int,
    throttled: int,
    pending: int,
    default_policy: int,
    replays: int,
    now_ns: int,
    state: np.ndarray,
) -> int:
    return 0


class KernelReplay(Policy):
    name = "kernel-replay"
    replay_kernel = _replay_kernel


class KernelPrefetch(Policy):
    """A compiled prefetch kernel that reads every faulted page and decides nothing."""

    name = "kernel-prefetch"
    prefetch_kernel = _prefetch_kernel


class KernelThrashing(Policy):
    name = "kernel-thrashing"
    thrashing_kernel = _thrashing_kernel


class KernelVictim(Policy):
    """A compiled victim choice that keeps the driver's (called at every eviction)."""

    name = "kernel-victim"
    victim_kernel = _victim_kernel


class NoopPerPagePrefetch(Policy):
    name = "noop-prefetch-per-page"

    def prefetch_before_compute(self, ctx: Any) -> int:
        return 0


class NoopPerBlockThrashing(Policy):
    name = "noop-thrashing-per-block"

    def thrashing_hint(self, ctx: Any) -> None:
        return None


CONFIGS: dict[str, Any] = {
    "default": None,
    "batch hooks (Python)": lambda: [
        NoopBatchPrefetch(),
        NoopBatchEviction(),
        NoopReplay(),
        NoopBatchThrashing(),
    ],
    "compiled kernels": lambda: [KernelPrefetch(), KernelThrashing(), KernelVictim(), KernelReplay()],
    "batch hooks (Python calling numba)": lambda: [JitBatchPrefetch(), NoopReplay(), JitBatchThrashing()],
    "eviction hooks only (Python)": lambda: [NoopEviction()],
    "per-page hooks (Python)": lambda: [
        NoopPerPagePrefetch(),
        NoopEviction(),
        NoopReplay(),
        NoopPerBlockThrashing(),
    ],
    "lru": lambda: "lru",
    "tree": lambda: "tree",
}


def _run(spec: str, mem: str | None, make: Any) -> tuple[float, dict]:
    w = load_workload(spec)
    pol = make() if make is not None else None
    t = time.thread_time()
    r = uvmlab.simulate(w, gpu_memory=mem, policies=pol)
    cpu = time.thread_time() - t
    if r.meta.get("policy_ejected"):
        raise SystemExit(f"bench policy ejected: {r.meta['policy_ejected']}")
    return cpu, dict(r.totals)


SLOW = ("per-page hooks (Python)", "tree")  # the reference path: timed once


def bench(quick: bool, repeat: int = 3) -> tuple[list[tuple[str, str, str]], dict[str, float]]:
    """Rows (scenario, figure, ratio) and figures: each configuration's best wall time over the
    default's, per workload, all measured here; the configurations take turns, so that a
    change in the machine's load falls on all of them."""
    cases = (
        [("random:size=16MiB", None), ("llm:size=16MiB,tokens=2", "150%")]
        if quick
        else [("random:size=512MiB", None), ("llm:size=128MiB,tokens=4", "150%")]
    )
    rows: list[tuple[str, str, str]] = []
    nums: dict[str, float] = {}
    for spec, mem in cases:
        where = spec + (f" @{mem}" if mem else "")
        small = spec.replace(spec.split(":", 1)[1].split(",")[0], "size=4MiB")
        labels = []
        for label, make in CONFIGS.items():
            try:
                _run(small, mem, make)  # warm: numba caches, policy kernels
            except PolicyError as e:  # a hook form this version of uvmlab does not have
                rows.append((f"policies {where}: {label}", "-", f"not available: {str(e)[:60]}"))
                continue
            labels.append(label)
        runs: dict[str, list[tuple[float, dict]]] = {label: [] for label in labels}
        for rep in range(repeat):
            for label in labels:
                if rep == 0 or label not in SLOW:
                    runs[label].append(_run(spec, mem, CONFIGS[label]))
        base_s, base_totals = min(runs["default"], key=lambda r: r[0])
        for label in labels:
            s, totals = min(runs[label], key=lambda r: r[0])
            same = "" if totals == base_totals else "; DIFFERENT answer"
            ratio = s / base_s
            key = (
                "policy_ratio_"
                + spec.split(":")[0]
                + "_"
                + label.replace(" (", "_").rstrip(")").replace(" ", "_")
            )
            nums[key] = ratio
            rows.append(
                (
                    f"policies {where}: {label}",
                    f"{s * 1e3:,.1f} ms",
                    "1.00 (baseline)" if label == "default" else f"{ratio:.2f}x the default{same}",
                )
            )
    return rows, nums


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rows, _ = bench(args.quick)
    width = max(len(a) for a, _, _ in rows)
    for name, fig, ratio in rows:
        print(f"{name:<{width}}  {fig:>12}  {ratio}")


if __name__ == "__main__":
    main()
