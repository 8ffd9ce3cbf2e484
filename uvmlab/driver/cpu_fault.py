"""CPU faults on managed memory (uvm_va_space_cpu_fault → block_cpu_fault_locked; the CPU fault path of
uvm_va_block.c).

A CPU fault services exactly one page (plus what the prefetcher adds, with the CPU's 64 KiB
big page), synchronously: the faulting thread waits for the copy. A THROTTLE hint makes the
thread sleep for the nap (``usleep_range(nap, 1.5 × nap)``; the model sleeps 1.25 × nap, the
middle of that range) and retry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from uvmlab.core.sizes import PAGE_SIZE
from uvmlab.driver import tools
from uvmlab.driver import va_block as vb
from uvmlab.driver.fatal import ContextFatal
from uvmlab.driver.perf.thrashing_state import HINT_PIN, HINT_THROTTLE
from uvmlab.driver.va_space import BLOCK_SHIFT, CPU
from uvmlab.workload.ir import Access, AllocKind

if TYPE_CHECKING:
    from uvmlab.driver.uvm import UvmDriver

MAX_THROTTLE_RETRIES = 10_000  # a thread throttled this often is a model bug, not a workload


def cpu_fault(drv: UvmDriver, page: int, access: int) -> float:
    """Service one CPU fault on global ``page``; return the simulated ns the thread waited."""
    va = drv.va
    block = page >> BLOCK_SHIFT
    alloc = int(va.block_alloc[block])
    if alloc < 0 or not va.alloc_live[alloc]:
        raise ContextFatal("invalid address (SIGSEGV)", CPU, page)
    if va.alloc_kind[alloc] == AllocKind.DEVICE:
        raise ContextFatal("CPU access to device memory (SIGBUS)", CPU, page)
    # CPU writes are serviced as ATOMIC_STRONG (the CPU fault path of uvm_va_block.c step 1)
    acc = Access.ATOMIC if access >= Access.WRITE else Access.READ
    c = drv.counters
    c["cpu_faults"] += 1
    drv.log.add(
        drv.now_ns,
        tools.CPU_FAULT,
        CPU,
        page * PAGE_SIZE,
        PAGE_SIZE,
        "write" if acc >= Access.WRITE else "read",
    )
    waited = 0.0
    lo, hi = va.block_range(block)
    local = page - lo
    for _ in range(MAX_THROTTLE_RETRIES):
        hint = drv.thrashing.get_hint(
            block,
            local,
            CPU,
            drv.now_ns + int(waited),
            preferred=int(va.preferred[page]) - 1,
            closest=va.closest_resident(int(va.residency[page]), CPU),
        )
        if drv.hooks is not None:
            hint = drv.hooks.thrashing_hints(
                drv, block, CPU, np.array([local]), np.array([page]), [hint], drv.now_ns + int(waited)
            )[0]
        if hint.kind != HINT_THROTTLE:
            break
        nap = max(0, hint.end_ns - (drv.now_ns + int(waited)))
        drv.log.add(drv.now_ns + int(waited), tools.THROTTLING_START, CPU, page * PAGE_SIZE)
        waited += 1.25 * nap + 1000  # usleep_range(nap, 1.5 nap) and the retry
        drv.log.add(drv.now_ns + int(waited), tools.THROTTLING_END, CPU, page * PAGE_SIZE)
    drv.now_ns += int(waited)
    dest, dup = vb.select_residency(drv, page, CPU, int(acc), hint)
    n = hi - lo
    mask = np.zeros(n, dtype=bool)
    mask[local] = True
    access_arr = np.zeros(n, dtype=np.uint8)
    access_arr[local] = acc
    pin = np.zeros(n, dtype=bool)
    if hint.kind == HINT_PIN:
        pin[local] = True
    # a page already on the CPU copies nothing: the fault only revokes the other copies
    prof = drv.profile
    drv.charge(prof.cpu_fault_resident_ns if va.residency[page] & 1 else prof.cpu_fault_ns)
    vb.service_locked(
        drv, block, CPU, {dest: mask}, access_arr, np.full(n, dup, dtype=bool) & mask, pin, cause="fault"
    )
    return waited + drv.take_work()
