"""The two-GPU capture set: its workloads run in the model with the peer traffic each is built
to show, and the real-GPU backend refuses them (it runs one GPU so far) instead of running every
kernel on one device. Their captures remain to be taken on a machine with two GPUs."""

import pytest

from uvmlab.api import simulate
from uvmlab.core.errors import WorkloadError
from uvmlab.cuda.plan import plan_workload
from uvmlab.validation.peers import PEERS, SIZE, peer_halo_stencil

MODEL = {name: simulate(build(), gpu="h100", check_invariants=True) for name, build in PEERS}


def test_every_workload_needs_two_gpus_and_the_backend_refuses_it():
    for name, build in PEERS:
        w = build()
        assert w.gpus == 2, name
        with pytest.raises(WorkloadError, match="runs one GPU so far"):
            plan_workload(w)


def test_peer_migrate_moves_the_buffer_both_ways():
    t = MODEL["peer_migrate"].totals
    assert t["bytes_gpu0_to_gpu1"] == SIZE and t["bytes_gpu1_to_gpu0"] == SIZE


def test_peer_accessed_by_never_migrates():
    r = MODEL["peer_accessed_by"]
    assert r.totals["bytes_dtod"] == 0 and r.ops[3]["gpu_faults"] == 0 and r.ops[4]["gpu_faults"] == 0


def test_peer_read_dup_copies_then_collapses():
    t = MODEL["peer_read_dup"].totals
    assert t["bytes_gpu0_to_gpu1"] == SIZE and t["read_duplicates"] == 2 * SIZE // 4096


def test_halo_exchange_moves_halo_rows_every_iteration():
    r = MODEL["peer_halo_stencil"]
    assert r.totals["bytes_dtod"] > 0
    # without a peer link (RTX 5090: no P2P) the same halos go through sysmem instead
    s = simulate(peer_halo_stencil(), gpu="rtx5090").totals
    assert s["bytes_dtod"] == 0 and s["bytes_dtoh"] > 0
