"""The layout of the state ``fault_loop.run_loop`` shares with Python (``kernel_loop.KernelLoop``):
named cells of a few int64 and float64 arrays, so that one compiled call takes and returns the
whole state of a kernel run without a Python object."""

from __future__ import annotations

END, TICK, MID_BATCH, STUCK, HOOK = range(5)
# where a HOOK stop resumes (``K_RESUME``): nothing pending; the sorted batch's service (Python
# calls ``begin_batch`` first where a Python batch hook is live); the batch's replay decision, which
# Python takes (``after_batch``); the decision in ``K_DECISION``, applied
R_NONE, R_SERVICE, R_AFTER, R_APPLY = range(4)
# which policy call of the loop was running (``K_PHASE``), for a compiled kernel that raises
PH_NONE, PH_DECIDE, PH_SERVICE, PH_REPLAY = range(4)
D_PYTHON = 1 << 4  # ``K_DECIDED``: the ``decided`` rows passed in are this batch's (begin_batch)
TICK_BATCHES = 1024  # batches fetched between returns to Python (~0.1-0.5 s)

# constants of a call (int64 array ``ip``)
(
    I_CONC,
    I_TPB,
    I_N_UTLB,
    I_BURST,
    I_INTERVAL,
    I_ROUNDS,
    I_CAPACITY,
    I_BATCH_COUNT,
    I_MAX_BATCHES,
    I_MAX_THROTTLE,
    I_POLICY,
    I_COALESCE,
    I_PUT_RATIO,
    I_GPU,
    I_REMOTE,
    I_MAX_IDLE,
    I_MAX_TICK,
    # policies (driver/hooks.py): a Python hook is live (HOOK stops at every batch); the
    # compiled service stops for allocations / for chunk use (their Python hooks)
    I_PYTHON_HOOKS,
    I_STOP_ALLOC,
    I_STOP_USED,
    # a Python batch hook (``prefetch_batch``, ``thrashing_batch``) is live: the HOOK stop
    # before each batch's service is for ``begin_batch``; without one, no stop there
    I_BEGIN_HOOKS,
) = range(21)
N_IP = 21
# constants (float64 array ``fp``)
F_NS_PER_TOUCH, F_REMOTE_TOUCH_NS, F_BOTTOM_HALF_NS, F_FAULT_BATCH_NS, F_FAULT_NS, F_REPLAY_NS = range(6)
N_FP = 6
# the run's state, in and out (int64 array ``ks``)
(
    K_POS,
    K_LEN,
    K_BASE,
    K_SEG_I,
    K_OFF,
    K_SKIP,
    K_MISSED,
    K_COMPLETED,
    K_PROGRESS,
    K_STEPS,
    K_TOUCHES,
    K_IDLE,
    K_BUF_N,
    K_OVERFLOWS,
    K_CACHED_PUT,
    K_NOW_NS,
    # a bottom half handed back mid-batch (MID_BATCH)
    K_BH_START_NS,
    K_BH_BATCHES,
    K_BH_REPLAYS,
    K_MID_K,
    K_MID_FETCHED,
    K_MID_COALESCED,
    K_MID_DUPLICATES,
    K_MID_N,
    K_MID_NB,
    K_BEFORE,  # progress at the start of the iteration (the idle check)
    K_BUF_H,  # the buffer's first entry: the loop takes entries from the head without moving
    # the rest (FaultBuffer moves them: they are back at index 0 when a call returns)
    # policies: where a HOOK stop resumes (R_*), the batch's replay decision, the bottom
    # half's deferred replay and throttled batches, the block whose chunk was allocated for it
    # (NEED_CHUNK, -1: none), the batch was throttled, which kernels decided the batch (bits
    # policy_calls.PREFETCH / THRASHING, D_PYTHON), the policy call running (PH_*)
    K_RESUME,
    K_DECISION,
    K_DEFERRED,
    K_BH_THROTTLED,
    K_FRESH,
    K_THROTTLED,
    K_DECIDED,
    K_PHASE,
    K_MID_STATUS,  # MID_BATCH: why the block stopped the service (state.SLOW, NEED_CHUNK ...)
    # the simulated ns (int) from which a residency sample is due (engine/sampling.Sampler): an
    # iteration that starts at or after it returns TICK for Python to take it, where the
    # Python loop samples (Engine.service_timers at each iteration's start)
    K_NEXT_SAMPLE,
) = range(37)
N_KS = 37
# (float64 array ``kf``)
F_CLOCK, F_WORK, F_BH_START_WORK = range(3)
N_KF = 3
# driver counters the loop adds to (int64 array ``bctr``), in this order
BH_COUNTERS = (
    "bottom_halves",
    "replays",
    "gpu_faults",
    "gpu_faults_notified",
    "fault_batches",
    "gpu_fault_groups",
    "gpu_faults_duplicate",
)
C_BH, C_REPLAYS, C_FAULTS, C_NOTIFIED, C_BATCHES, C_GROUPS, C_DUPLICATES = range(7)
# where a call's time goes (int64 array of CPU cycle counts, ``replay_step.cycles``), per phase:
# fetch from the buffer, coalesce and sort, block service, re-check of the stalled threads,
# issue of new touches (expand, scan, stall), report to the buffer, the whole call
P_FETCH, P_SORT, P_SERVICE, P_RECHECK, P_SCAN, P_REPORT, P_CALL = range(7)
PHASES = ("fetch", "coalesce + sort", "block service", "re-check", "scan + stall", "report", "call")
