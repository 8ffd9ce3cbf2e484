"""What each fault batch migrates, on the GPU (stored raw CUPTI records) and in the model
(fault_groups.group_migrations / model_group_migrations; validation_limits.md, fault groups)."""

from __future__ import annotations

import numpy as np

from uvmlab.api import simulate
from uvmlab.validation.fault_groups import PROBES, group_migrations, model_group_migrations
from uvmlab.validation.space import kernel_case

MiB = 1 << 20


def test_stored_groups_migrate_the_buffer_and_spread_with_the_launch():
    """Every host-to-device record of the kernel falls in one group (the groups' KiB add up to
    the 256 MiB buffer), and a group of a 65,536-thread stream spans more 2 MiB blocks and
    brings more than one of an 8,192-thread stream (H100, second session's records)."""
    d = PROBES / "fault-groups-h100-2026-12-07b" / "train-256m"
    few = group_migrations(d / "stream_r_256m_t8192.npz")
    many = group_migrations(d / "stream_r_256m_t65536.npz")
    assert few is not None and many is not None
    for g in (few, many):
        assert g["kib"].sum() * 1024 == 256 * MiB
        assert len(g["kib"]) == len(g["blocks"]) and (g["blocks"] >= 0).all()
        assert ((g["kib"] > 0) == (g["blocks"] > 0)).all()
    busy = lambda g: g["kib"] > 0  # noqa: E731
    assert np.median(many["blocks"][busy(many)]) > 1.5 * np.median(few["blocks"][busy(few)])
    assert np.median(many["kib"][busy(many)]) > 1.5 * np.median(few["kib"][busy(few)])
    # the random kernels' records were lost to CUPTI's queue: no groups, no statistics
    assert group_migrations(d / "random_r_256m_t8192.npz") is None


def test_model_group_migrations_add_up_to_the_kernels_migrations():
    w = kernel_case("k", "stream", 16 * MiB, threads=8192)
    r = simulate(w, gpu="h100", concurrency=8192, events=True)
    touch = next(o for o in r.ops if o["op"] == "kernel" and o.get("gpu_fault_groups"))
    g = model_group_migrations(r.events)
    assert len(g["kib"]) == touch["gpu_fault_groups"]
    assert g["kib"].sum() * 1024 == touch["bytes_htod"]
    assert (g["blocks"] <= 8).all() and g["blocks"].max() >= 1  # 16 MiB: 8 blocks
