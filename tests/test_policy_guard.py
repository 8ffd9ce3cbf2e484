"""The guard: misbehaving policies are ejected, the driver's default takes over from that point,
the ejection is recorded, and the run completes with its invariants intact."""

import time

import numpy as np
import pytest
from helpers import MiB, cpu_filled, run_engine

from uvmlab import simulate
from uvmlab.core.errors import PolicyError
from uvmlab.policy import BYPASS, DEFAULT, HINT_PIN, HINT_THROTTLE, REPLAY_DEFER, REPLAY_NOW, Policy
from uvmlab.policy.guard import Guard
from uvmlab.policy.loader import build_hooks, load_policies, load_policy

KEYS = (
    "time_ns",
    "gpu_faults",
    "fault_batches",
    "replays",
    "bytes_htod",
    "bytes_htod_prefetch",
    "bytes_htod_user",
    "bytes_dtoh",
    "evictions",
    "cpu_faults",
    "throttles",
    "pins",
    "remote_maps",
)
SPEC = "llm:size=16MiB"  # a layer sweep: under 150 % it evicts on every token


def totals(r):
    return {k: r.totals[k] for k in KEYS}


class MruFor(Policy):
    """MRU for the first ``n`` chunk_used calls, then ``after`` (the driver default, or an
    error of some kind)."""

    name = "mru-for"
    params = {"n": 40, "after": "default"}

    def start(self, info):
        self.calls = 0

    def chunk_used(self, ctx):
        self.calls += 1
        if self.calls <= self.n:
            ctx.move_head(ctx.chunk)
            return BYPASS
        if self.after == "raise":
            raise RuntimeError("policy bug")
        if self.after == "slow":
            time.sleep(0.5)  # far over the budget below, which the 40 quick calls never near
            return DEFAULT
        if self.after == "bad-code":
            return 7
        if self.after == "bad-move":
            ctx.move_head(10**6)
            return BYPASS
        return DEFAULT


@pytest.mark.parametrize("after", ["raise", "slow", "bad-code", "bad-move"])
def test_ejected_policy_equals_the_default_from_that_point_on(after):
    ref = simulate(SPEC, gpu_memory="150%", policies=MruFor(n=40))
    assert ref.totals["policy_ejections"] == 0
    bad = simulate(
        # 200 ms per call: a loaded 2-core machine must not eject one of the 40 quick MRU calls
        SPEC,
        gpu_memory="150%",
        events=True,
        policies=build_hooks(MruFor(n=40, after=after), budget_ms=200),
    )
    assert bad.totals["policy_ejections"] == 1
    (e,) = bad.meta["policy_ejected"]
    assert e["hook"] == "chunk_used" and e["policy"].startswith("mru-for")
    assert {
        "raise": "RuntimeError",
        "slow": "budget",
        "bad-code": "expected 0",
        "bad-move": "does not exist",
    }[after] in e["reason"]
    ev = bad.events[bad.events.event == "PolicyEjected"]
    assert len(ev) == 1 and ev["cause"].iloc[0] == "chunk_used"
    assert totals(bad) == totals(ref)
    # and the prefix mattered: the policy's 40 decisions differ from the driver's
    assert totals(ref) != totals(simulate(SPEC, gpu_memory="150%"))


def test_a_policy_that_raises_at_once_equals_no_policy():
    class Broken(Policy):
        name = "broken"

        def chunk_activate(self, ctx):
            raise ValueError("nope")

        def eviction_prepare(self, ctx):
            return int(ctx.used[-1])

    r = simulate(SPEC, gpu_memory="150%", policies=Broken(), check_invariants=True)
    assert r.totals["policy_ejections"] == 1
    assert "ValueError: nope" in r.meta["policy_ejected"][0]["reason"]
    assert totals(r) == totals(simulate(SPEC, gpu_memory="150%"))


def test_a_hook_that_never_returns_is_stopped_by_the_watchdog():
    class Loops(Policy):
        name = "loops"

        def start(self, info):
            self.n = 0

        def chunk_used(self, ctx):
            self.n += 1
            if self.n == 5:
                while True:  # a policy bug: an unbounded loop
                    try:
                        self.n += 1
                    except Exception:  # even swallowing exceptions does not save it
                        self.n = 0
            return DEFAULT

    t0 = time.monotonic()
    r = simulate(
        SPEC,
        gpu_memory="150%",
        check_invariants=True,
        policies=Guard([Loops()], budget_ms=1, hard_limit_s=0.3),
    )
    assert time.monotonic() - t0 < 60
    (e,) = r.meta["policy_ejected"]
    assert e["hook"] == "chunk_used" and "hard time limit" in e["reason"]
    assert r.fatal is None
    assert totals(r) == totals(simulate(SPEC, gpu_memory="150%"))


def test_invalid_victim_is_ejected():
    for victim in (-1, 10**6, "3", 2.0):

        class Bad(Policy):
            name = "bad-victim"

            def eviction_prepare(self, ctx, v=victim):
                return v

        r = simulate(SPEC, gpu_memory="150%", policies=Bad())
        assert r.totals["policy_ejections"] == 1, victim
        assert totals(r) == totals(simulate(SPEC, gpu_memory="150%"))


def test_a_chunk_of_another_pma_client_is_not_an_evictable_victim():
    from uvmlab.workload.builder import WorkloadBuilder

    class Reserved(Policy):
        name = "reserved-victim"

        def eviction_prepare(self, ctx):
            listed = np.concatenate((ctx.used, ctx.unused))
            return int(np.setdiff1d(np.arange(ctx.n_root_chunks), listed)[0])

    b = WorkloadBuilder("dev")
    d = b.alloc("dev", "2MiB", kind="device")  # cudaMalloc: reserved, never evictable by UVM
    a = b.alloc("buf", "8MiB")
    b.cpu("init", [b.run(a, access="write")])
    b.kernel("all", [b.run(a), b.run(d)])
    eng = run_engine(b.build(), gpu_memory=8 * MiB, hooks=Guard([Reserved()]))
    assert eng.drv.counters["policy_ejections"] == 1
    assert "not evictable" in eng.drv.hooks.ejected[0]["reason"]
    assert eng.drv.counters["evictions"] > 0


def test_malformed_requests_are_ejected():
    class BadMigrate(Policy):
        name = "bad-migrate"

        def prefetch_before_compute(self, ctx):
            ctx.migrate(ctx.alloc.end_page - 10, 20)  # runs past the allocation
            return DEFAULT

    r = simulate("stream:size=8MiB,passes=1", policies=BadMigrate())
    assert r.totals["policy_ejections"] == 1
    assert "past its allocation" in r.meta["policy_ejected"][0]["reason"]
    assert r.totals["bytes_htod_user"] == 0

    class BadList(Policy):
        name = "bad-list"

        def eviction_prepare(self, ctx):
            return [(int(ctx.used[0]), "middle")]

    r = simulate(SPEC, gpu_memory="150%", policies=BadList())
    assert r.totals["policy_ejections"] == 1 and "head" in r.meta["policy_ejected"][0]["reason"]


def test_writing_to_a_context_array_is_ejected():
    class Scribbles(Policy):
        name = "scribbles"

        def prefetch_before_compute(self, ctx):
            ctx.faulted[:] = True  # read-only: raises
            return DEFAULT

    r = simulate("stream:size=8MiB,passes=1", policies=Scribbles(), check_invariants=True)
    assert r.totals["policy_ejections"] == 1
    assert "read-only" in r.meta["policy_ejected"][0]["reason"]


def test_replay_decisions_match_the_driver_policies_they_imitate():
    class Defer(Policy):
        name = "defer"

        def decide_replay(self, ctx):
            return REPLAY_DEFER

    class Now(Policy):
        name = "now"

        def decide_replay(self, ctx):
            return REPLAY_NOW

    spec = "random:size=16MiB,seed=2"
    once = simulate(spec, concurrency=1024, params={"uvm_perf_fault_replay_policy": 3})
    batch = simulate(spec, concurrency=1024, params={"uvm_perf_fault_replay_policy": 1})
    assert totals(simulate(spec, concurrency=1024, policies=Defer())) == totals(once)
    assert totals(simulate(spec, concurrency=1024, policies=Now())) == totals(batch)
    assert totals(simulate(spec, concurrency=1024, policies="replay-once")) == totals(once)
    r = simulate(spec, concurrency=1024, policies="replay-block")
    assert r.params["uvm_perf_fault_replay_policy"] == 0


def test_invalid_replay_decision_is_ejected():
    class Odd(Policy):
        name = "odd"

        def decide_replay(self, ctx):
            return 2

    r = simulate("random:size=8MiB", policies=Odd())
    assert r.totals["policy_ejections"] == 1
    assert totals(r) == totals(simulate("random:size=8MiB"))


def test_a_policy_that_throttles_forever_is_ejected_as_a_livelock():
    class Stall(Policy):
        name = "stall"

        def thrashing_hint(self, ctx):
            return HINT_THROTTLE

    eng = run_engine(_ping_pong(), hooks=Guard([Stall()], budget_ms=1000))
    assert eng.fatal is None
    (e,) = eng.drv.hooks.ejected
    assert "livelock" in e["reason"]


def test_pin_hint_maps_the_page_remotely():
    class PinGpu(Policy):
        name = "pin-gpu"

        def thrashing_hint(self, ctx):
            return np.full(len(ctx.pages), HINT_PIN if ctx.requester else -1)

    b, a = cpu_filled("2MiB")
    b.kernel("k", [b.run(a, 0, 8)])
    eng = run_engine(b.build(), hooks=Guard([PinGpu()]))
    c = eng.drv.counters
    assert c["pins"] == 8 and c["bytes_htod"] == 0  # pinned on the CPU, read over PCIe
    assert c["remote_maps"] >= 1


def _ping_pong():
    # 64 KiB written in turn, the size of the calibration set's ping-pong: the default policy
    # throttles the GPU's faults on it
    b, a = cpu_filled("2MiB")
    for r in range(12):
        b.kernel(f"k{r}", [b.run(a, 0, 16, access="write")])
        b.cpu(f"c{r}", [b.run(a, 0, 16, access="write")])
    return b.build()


def test_pin_on_thrash_turns_throttles_into_pins():
    base = run_engine(_ping_pong()).drv.counters
    c = run_engine(_ping_pong(), hooks=Guard([load_policy("pin-on-thrash")])).drv.counters
    assert base["throttles"] > 0 and base["pins"] == 0
    assert c["policy_ejections"] == 0
    assert c["throttles"] == 0 and c["pins"] > 0
    assert c["time_ns"] < base["time_ns"]  # the docstring's claim, on ping-pong


def test_composition_one_policy_per_family():
    pols = load_policies("stride+lfu+replay-adaptive")
    assert [p.name for p in pols] == ["stride", "lfu", "replay-adaptive"]
    r = simulate(SPEC, gpu_memory="150%", policies="stride+lfu")
    assert r.meta["policies"] == ["stride", "lfu"]
    with pytest.raises(PolicyError, match="both decide eviction"):
        build_hooks("mru+lfu")
    with pytest.raises(PolicyError, match="module parameter"):
        build_hooks([load_policy("replay-once"), load_policy("pin-on-thrash"), _with_params("replay-block")])


def _with_params(name):
    p = load_policy(name)
    p.decide_replay = None  # a second replay policy that only sets the parameter
    return p


def test_policy_parameters():
    p = load_policy("tree(threshold=30)")
    assert p.threshold == 30 and p.label == "tree(threshold=30)"
    assert load_policies("tree", params={"tree": {"threshold": "70"}})[0].threshold == 70
    with pytest.raises(PolicyError, match="no parameter 'treshold'"):
        load_policy("tree(treshold=30)")
    with pytest.raises(PolicyError, match="not a int"):
        load_policy("tree(threshold=high)")
    with pytest.raises(PolicyError, match="did you mean"):
        load_policy("belday")


def test_policies_from_a_file(tmp_path):
    f = tmp_path / "my_policy.py"
    f.write_text(
        "from uvmlab.policy import Policy, BYPASS\n"
        "class KeepOrder(Policy):\n"
        "    '''FIFO, written by a user.'''\n"
        "    name = 'keep-order'\n"
        "    params = {'unused': 3}\n"
        "    def chunk_used(self, ctx):\n"
        "        return BYPASS\n"
    )
    (p,) = load_policies(f"{f}")
    assert p.name == "keep-order"
    (p,) = load_policies(f"{f}:KeepOrder(unused=5)")
    assert p.unused == 5
    assert totals(simulate(SPEC, gpu_memory="150%", policies=str(f))) == totals(
        simulate(SPEC, gpu_memory="150%", policies="fifo")
    )
    two = tmp_path / "two.py"
    two.write_text(f.read_text() + "class Other(KeepOrder):\n    pass\n")
    with pytest.raises(PolicyError, match="defines 2 policy classes"):
        load_policies(str(two))
    broken = tmp_path / "broken.py"
    broken.write_text("def oops(:\n")
    with pytest.raises(PolicyError, match="SyntaxError"):
        load_policies(str(broken))
    with pytest.raises(PolicyError, match="does not exist"):
        load_policies(str(tmp_path / "missing.py"))


def test_no_policy_costs_nothing_in_the_default_path():
    r = simulate(SPEC, gpu_memory="150%", policies="default")
    assert "policies" not in r.meta and r.totals["policy_ejections"] == 0


def test_replay_adaptive_decides_as_documented():
    from uvmlab.policy.context import ReplayContext

    p = load_policy("replay-adaptive")

    def ctx(faults, unique, duplicates, pending):
        return ReplayContext(
            [],
            gpu=1,
            batch=0,
            faults=faults,
            unique=unique,
            duplicates=duplicates,
            throttled=False,
            pending=pending,
            default_policy=2,
            replays=0,
            now_ns=0,
        )

    assert p.decide_replay(ctx(100, 40, 60, 500)) == REPLAY_NOW  # mostly duplicates
    assert p.decide_replay(ctx(20, 20, 0, 500)) == REPLAY_DEFER  # small, more waiting
    assert p.decide_replay(ctx(20, 20, 0, 0)) == DEFAULT  # small, nothing waiting
    assert p.decide_replay(ctx(256, 256, 10, 500)) == DEFAULT
    r = simulate("random:size=16MiB", concurrency=1024, policies=p, check_invariants=True)
    assert r.totals["policy_ejections"] == 0
    assert totals(simulate("random:size=16MiB", policies="replay-batch-flush")) == totals(
        simulate("random:size=16MiB")
    )
