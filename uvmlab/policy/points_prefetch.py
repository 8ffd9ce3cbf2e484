"""The prefetch decision point: ``uvm_perf_prefetch_get_hint_va_block`` with gpu_ext's two
prefetch hooks in its bitmap-tree walk (uvm_perf_prefetch.c). Part of ``Guard``."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from uvmlab.core.sizes import BLOCK_SHIFT
from uvmlab.driver.perf import prefetch as pf
from uvmlab.policy import base, decisions
from uvmlab.policy.bitmap_tree import BitmapTree, compute_mask
from uvmlab.policy.context import PrefetchContext
from uvmlab.policy.views import ro

CPU = 0


@njit(cache=True)
def _nodes(leaf, level_count, leaf_count, cs, offset, m_first, m_outer):
    """The nodes from ``leaf`` to the root: [s, e) in tree leaves, populated count, and the
    node in block pages with the driver's clamp."""
    s_out = np.empty(level_count, np.int64)
    e_out = np.empty(level_count, np.int64)
    c_out = np.empty(level_count, np.int64)
    f_out = np.empty(level_count, np.int64)
    o_out = np.empty(level_count, np.int64)
    for k in range(level_count):
        size = 1 << k
        s = leaf - (leaf & (size - 1))
        e = min(s + size, leaf_count)
        s_out[k] = s
        e_out[k] = e
        c_out[k] = cs[e] - cs[s]
        f = s + m_first
        o = e + m_first
        f_out[k] = offset if f < offset else max(f - offset, m_first)
        o_out[k] = offset if o < offset else min(o - offset, m_outer)
    return s_out, e_out, c_out, f_out, o_out


class PrefetchPoints:
    """``prefetch_hint``: the prefetch hooks inside the tree walk."""

    def prefetch_hint(
        self: Any,
        drv: Any,
        block: int,
        dest: int,
        faulted: np.ndarray,
        resident: np.ndarray,
        thrashing: np.ndarray,
        cpu_readable: np.ndarray | None,
    ) -> np.ndarray | None:
        """``uvm_perf_prefetch_get_hint_va_block`` with the prefetch hooks in its tree walk;
        None: no live prefetch decision here, the driver's own hint."""
        if self.drv is not drv:
            self._attach_driver(drv)
        if self._pf_rows is not None:  # a prefetch_batch row for this block (points_batch)
            out = self._batch_prefetch(drv, block, dest, faulted, thrashing)
            if out is not None:
                return out
        if "prefetch_before_compute" not in self._by_hook:
            return None  # the driver's own hint
        va, pp = drv.va, drv.prefetch_params
        n = len(faulted)
        if not pp.enable:
            return np.zeros(n, dtype=bool)
        count = pf.update_prefetch_info(
            va.prefetch_last_proc, va.prefetch_fault_migrations, block, dest, int(np.count_nonzero(faulted))
        )
        lo = block << BLOCK_SHIFT
        threshold = pp.threshold
        if pf.first_touch_shortcut_applies(
            int(np.count_nonzero(va.residency[lo : lo + n])), dest, int(va.preferred[lo]) - 1
        ):
            out = ~faulted & ~thrashing  # the whole block, no tree, no hook (uvm_perf_prefetch.c)
            if dest == CPU and cpu_readable is not None:
                out &= ~cpu_readable
        else:
            tree = BitmapTree(
                faulted,
                resident,
                thrashing,
                block_first_page_va=lo,
                big=pp.big_page_pages,
                m_first=0,
                m_outer=n,
            )
            req: list = []
            ctx = PrefetchContext(
                req,
                block=block,
                block_first_page=lo,
                n_pages=n,
                dest=dest,
                faulted=ro(faulted),
                resident=ro(resident),
                thrashing=ro(thrashing),
                populated=ro(tree.populated(n)),
                cs=ro(tree.cs),
                tree_offset=tree.offset,
                leaf_count=tree.leaf_count,
                level_count=tree.level_count,
                alloc=self.allocs[int(self.view.alloc_index(block))],
                now_ns=int(drv.now_ns),
            )
            gpu = dest if dest != CPU else 1

            def region_for(page: int, leaf: int, stock: tuple[int, int] | None) -> tuple[int, int] | None:
                ctx._update(page_index=page, level=-1)
                got = self._call("prefetch_before_compute", ctx, req)
                if got is None:
                    return stock
                slot, d, checked = got
                try:
                    code = None if isinstance(d, list | tuple) else decisions.as_opt_int(d)
                    if code is None and d is None or code == base.DEFAULT:
                        self._apply(checked, gpu)
                        return stock
                    if code == base.ENTER_LOOP:
                        if "prefetch_on_tree_iter" not in slot.fns:
                            raise decisions.Bad("returned ENTER_LOOP but has no prefetch_on_tree_iter")
                        self._apply(checked, gpu)
                        return self._tree_loop(ctx, req, tree, leaf, stock, gpu)
                    if code is not None:
                        raise decisions.Bad(f"returned {code}: not DEFAULT, ENTER_LOOP or a region")
                    f, o = decisions.as_region(d, n)
                except decisions.Bad as e:
                    self._eject(slot, "prefetch_before_compute", str(e))
                    return stock
                self._apply(checked, gpu)
                return f, o

            out = compute_mask(
                tree,
                faulted,
                thrashing,
                threshold=threshold,
                region_for=region_for,
                dest_is_cpu=dest == CPU,
                cpu_resident_readable=cpu_readable,
            )
        if not pf.hint_allowed(count, pp.min_faults):
            return np.zeros(n, dtype=bool)
        return out

    def _tree_loop(
        self: Any,
        ctx: PrefetchContext,
        req: list,
        tree: BitmapTree,
        leaf: int,
        stock: tuple[int, int] | None,
        gpu: int,
    ) -> tuple[int, int] | None:
        """ENTER_LOOP: on_tree_iter per node, leaf to root; the last selection wins. A failure
        inside the walk gives this page the driver's region."""
        sel = None
        ns, ne, cnt, sf, so = (
            a.tolist()
            for a in _nodes(
                leaf, tree.level_count, tree.leaf_count, tree.cs, tree.offset, tree.m_first, tree.m_outer
            )
        )
        region = base.Region
        for k in range(tree.level_count):
            s, e = ns[k], ne[k]
            ctx._update(
                level=k, node=region(s, e), size=e - s, counter=cnt[k], subregion=region(sf[k], so[k])
            )
            got = self._call("prefetch_on_tree_iter", ctx, req)
            if got is None:
                return stock
            slot, d, checked = got
            try:
                if decisions.as_flag(d):
                    sel = (s, e)
            except decisions.Bad as e:
                self._eject(slot, "prefetch_on_tree_iter", str(e))
                return stock
            self._apply(checked, gpu)
        return None if sel is None else tree.to_block(*sel)
