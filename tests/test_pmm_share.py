"""Several VA spaces over one PMM: owner ids, their VA spaces and tenants."""

from __future__ import annotations

import numpy as np

from uvmlab.driver.hal import get_gpu
from uvmlab.driver.instance import create_driver
from uvmlab.driver.params import Params
from uvmlab.driver.pmm_share import PmmShare
from uvmlab.timing.cost_model import load_profile
from uvmlab.workload.builder import WorkloadBuilder

MiB = 1 << 20


def _drv(share, tenant, size):
    b = WorkloadBuilder(tenant)
    b.alloc("buf", size)
    w = b.build()
    return create_driver(
        w.allocs,
        gpu=get_gpu("h100"),
        params=Params.from_overrides({}),
        profile=load_profile(None),
        share=share,
        tenant=tenant,
    )


def test_owner_ids_map_back_to_their_va_space_and_tenant():
    share = PmmShare(64 * MiB, ("a", "b"))
    a, b = _drv(share, "a", 8 * MiB), _drv(share, "b", 8 * MiB)
    assert a.pmm[0] is b.pmm[0] is share.pmm
    assert a.owner_base == 0 < b.owner_base == a.va.n_blocks
    assert a.fast is None and b.fast is None  # the compiled path is off on a shared PMM
    for drv in (a, b):
        for blk in (1, drv.va.n_blocks - 1):
            assert share.space_of(drv.owner_base + blk) == (drv, blk)
    owners = np.array([-1, a.owner_base + 1, b.owner_base + 2, b.owner_base])
    assert share.tenant_of(owners) == ["", "a", "b", "b"]
    assert share.tenant_of(int(b.owner_base + 1)) == "b"
    assert share.tenants == ("a", "b")


def test_one_va_space_alone_keeps_its_own_pmm():
    d = _drv(None, "", 8 * MiB)
    assert d.share is None and d.owner_base == 0 and d.fast is not None
