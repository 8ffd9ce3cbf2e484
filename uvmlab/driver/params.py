"""Module parameters of nvidia-uvm 580 (uvm.c and uvm_perf_*.c module_param declarations).

Every parameter that ``nvidia-uvm.ko`` declares with ``module_param`` in the 580 branch (tag
580.142, ``kernel-open/nvidia-uvm/``) is listed here with its source default, the range of values
the driver uses *as given*, and what the driver does at load time with a value outside that range.
The set is exactly the 53 names that ``/sys/module/nvidia_uvm/parameters`` reported for driver
580.159.04 on the project's H200 and H100 (``uvmlab/validation/data/probes/``); every default equals the
value reported there.

The model is stricter than the driver: the driver silently clamps or replaces a bad value (and
prints a line to the kernel log), so a sweep that sets ``uvm_perf_prefetch_threshold=150`` on a
real machine would quietly run with 51. Here such a value raises :class:`ParamError` that states
the valid range and what the real driver would have used, so that no experiment reports results
for a setting that never took effect.

``modeled=True`` marks the parameters the model reads (the ``uvm_perf_*`` tunables and
``uvm_global_oversubscription``); the rest are debug, channel-placement or platform switches that
are listed for completeness, so that a parameter set read from a real machine round-trips.

Values are typed as the model sees them: ``int`` (the C ``int``/``uint``/``ulong``
parameters, with the C type's range), ``bool`` (``uvm_disable_hmm``) and ``str`` (``charp``).
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uvmlab.core.errors import ParamError
from uvmlab.core.sizes import PAGE_SIZE

ParamValue = int | bool | str | None

#: ``uvm_perf_fault_replay_policy`` values (``uvm_perf_fault_replay_policy_t``,
#: uvm_gpu_replayable_faults.h). 2 (BATCH_FLUSH) is the default.
REPLAY_POLICY_NAMES: dict[int, str] = {0: "BLOCK", 1: "BATCH", 2: "BATCH_FLUSH", 3: "ONCE"}

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
UINT_MAX = 2**32 - 1
ULONG_MAX = 2**64 - 1
_C_RANGE: dict[str, tuple[int, int]] = {
    "int": (INT_MIN, INT_MAX),
    "uint": (0, UINT_MAX),
    "ulong": (0, ULONG_MAX),
}

# CPU chunk sizes the driver supports on x86-64 with 4 KiB pages: 2 MiB | 64 KiB | PAGE_SIZE
# (UVM_CPU_CHUNK_SIZES, uvm_pmm_sysmem.h).
_CPU_CHUNK_SIZES = (2 << 20) | (64 << 10) | 4096
_PAGE_SIZE = PAGE_SIZE


@dataclass(frozen=True)
class ParamSpec:
    """One module parameter: its declaration, default, valid range and load-time rule.

    ``lo``/``hi`` bound integer parameters (inclusive); ``choices`` lists the accepted values where
    the set is small. ``check`` is an extra rule (power of two, bit mask) that returns a problem
    description or ``None``. ``driver_value`` maps a value outside the valid range (but inside the
    C type) to what the real driver would use instead; ``None`` where the driver leaves it as is.
    """

    name: str
    default: ParamValue
    type: type
    c_type: str  # as declared in module_param: int, uint, ulong, bool, charp
    source: str  # driver file (kernel-open/nvidia-uvm/) that declares it
    meaning: str
    clamp: str  # the driver's load-time rule, as text
    modeled: bool = False
    lo: int | None = None
    hi: int | None = None
    choices: tuple[ParamValue, ...] | None = None
    check: Callable[[Any], str | None] | None = None
    driver_value: Callable[[Any], ParamValue] | None = None
    range_note: str = ""
    range_desc: str = ""  # replaces the computed range text where a rule is not a plain range
    nullable: bool = False  # a charp whose default is NULL ("(null)" in sysfs)
    writable: bool = False  # S_IWUSR: may be changed at run time through sysfs

    # -- text -------------------------------------------------------------------------------
    def range_text(self) -> str:
        """The valid range as a short human string (``1..100``, ``>= 1``, ``one of {0, 1}``)."""
        if self.range_desc:
            text = self.range_desc
        elif self.choices is not None:
            text = "one of {" + ", ".join(_fmt_choice(c) for c in self.choices) + "}"
        elif self.type is bool:
            text = "true/false"
        elif self.type is str:
            text = "any string"
        else:
            c_lo, c_hi = _C_RANGE[self.c_type]
            lo = c_lo if self.lo is None else self.lo
            hi = c_hi if self.hi is None else self.hi
            if (lo, hi) == (c_lo, c_hi):
                text = f"any {self.c_type} ({c_lo}..{c_hi})"
            elif hi == c_hi:
                text = f">= {lo}"
            else:
                text = f"{lo}..{hi}"
        return f"{text} ({self.range_note})" if self.range_note else text

    def sysfs_default(self) -> str:
        """The default as ``/sys/module/nvidia_uvm/parameters/<name>`` prints it."""
        return to_sysfs_string(self.default)

    # -- validation -------------------------------------------------------------------------
    def validate(self, value: Any) -> ParamValue:
        """Return ``value`` if the model accepts it for this parameter; raise ParamError if not."""
        if value is None:
            if self.nullable:
                return None
            raise ParamError(f"{self.name}: a value is required (valid: {self.range_text()})")
        if self.type is bool:
            # Python's bool is an int: accept 0/1 as the kernel's kstrtobool does ("0"/"1").
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ParamError(f"{self.name}: expected true/false, got {value!r}")
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParamError(
                    f"{self.name}: expected an integer, got {type(value).__name__} {value!r} "
                    f"(valid: {self.range_text()})"
                )
            c_lo, c_hi = _C_RANGE[self.c_type]
            if not c_lo <= value <= c_hi:
                raise ParamError(
                    f"{self.name}={value} is out of range: valid {self.range_text()}. It does not "
                    f"fit the parameter's C type ({self.c_type}), so the real driver would refuse "
                    f"to load (the kernel rejects the value with 'Invalid argument')"
                )
            below = self.lo is not None and value < self.lo
            above = self.hi is not None and value > self.hi
            problem = None
            if below or above or (self.choices is not None and value not in self.choices):
                problem = "out of range"
            elif self.check is not None:
                problem = self.check(value)
            if problem is not None:
                raise ParamError(self._invalid_message(value, problem))
            return value
        # str (charp)
        if not isinstance(value, str):
            raise ParamError(
                f"{self.name}: expected a string, got {type(value).__name__} {value!r} "
                f"(valid: {self.range_text()})"
            )
        if self.choices is not None and value not in self.choices:
            raise ParamError(self._invalid_message(value, "not a valid choice"))
        return value

    def _invalid_message(self, value: Any, problem: str) -> str:
        shown = repr(value) if isinstance(value, str) else str(value)
        msg = f"{self.name}={shown} is {problem}; valid: {self.range_text()}."
        if self.driver_value is None:
            return msg + f" Real driver ({self.source}): {self.clamp}."
        used = _fmt_choice(self.driver_value(value))
        return msg + f" The real driver would use {used} instead ({self.source}: {self.clamp})."

    def parse(self, text: str) -> ParamValue:
        """Parse a value written as on the kernel command line or in sysfs, then validate it."""
        raw = text.strip()
        if self.type is int:
            try:
                # Module parameters are parsed with base 0 (kstrtoint/kstrtouint): 0x.. is hex.
                value: ParamValue = int(raw, 0)
            except ValueError:
                raise ParamError(
                    f"{self.name}: {text!r} is not an integer (valid: {self.range_text()})"
                ) from None
        elif self.type is bool:
            low = raw.lower()
            if low in _TRUE:
                value = True
            elif low in _FALSE:
                value = False
            else:
                raise ParamError(f"{self.name}: {text!r} is not a boolean (use Y/N, true/false, 1/0)")
        else:
            value = None if (self.nullable and raw == "(null)") else raw
        return self.validate(value)


_TRUE = {"y", "yes", "t", "true", "1", "on"}
_FALSE = {"n", "no", "f", "false", "0", "off"}


def _fmt_choice(value: ParamValue) -> str:
    if value is None:
        return "unset"
    return repr(value) if isinstance(value, str) else str(value)


def to_sysfs_string(value: ParamValue) -> str:
    """A value as the kernel prints it in sysfs: ints in decimal, bools Y/N, NULL charp (null)."""
    if value is None:
        return "(null)"
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


# ---- load-time rules that are more than a range ------------------------------------------------


def _pow2_check(v: int) -> str | None:
    return None if v & (v - 1) == 0 else "not a power of two"


def _gpfifo_entries_driver_value(v: int) -> int:
    # uvm_channel.c (channel_manager_init_conf): clamp to [32, 1M], then a non-power-of-two
    # result falls back to the default 1024.
    c = min(max(v, 32), 1024 * 1024)
    return c if c & (c - 1) == 0 else 1024


def _cpu_chunk_sizes_check(v: int) -> str | None:
    if v & ~_CPU_CHUNK_SIZES:
        return "not a subset of the supported sizes 2 MiB | 64 KiB | 4 KiB (0x211000)"
    if not v & _PAGE_SIZE:
        return "missing PAGE_SIZE (4 KiB, bit 0x1000)"
    return None


def _cpu_chunk_sizes_driver_value(v: int) -> int:
    # uvm_pmm_sysmem.c (uvm_pmm_sysmem_init): AND with the supported sizes; if nothing is left or
    # PAGE_SIZE is missing, use all supported sizes.
    m = v & _CPU_CHUNK_SIZES
    return m if m and m & _PAGE_SIZE else _CPU_CHUNK_SIZES


def _default(d: ParamValue) -> Callable[[Any], ParamValue]:
    return lambda _v: d


def _clamp(lo: int, hi: int) -> Callable[[Any], ParamValue]:
    return lambda v: min(max(v, lo), hi)


# Text of the rule shared by uvm_perf_thrashing.c's INIT_THRASHING_PARAMETER_* macros.
_THRASH_RULE = (
    "out-of-range values are replaced by the default {} at module load; only checked when "
    "uvm_perf_thrashing_enable=1"
)

_LOC_RULE = "'sys', 'vid' or 'auto'; anything else falls back to 'auto' with a warning"
# uvm_channel.c's is_string_valid_location() ignores its argument and always tests
# uvm_channel_gpfifo_loc, so the driver judges gpput_loc and pushbuffer_loc by gpfifo_loc's value.
_LOC_RULE_QUIRK = (
    _LOC_RULE + "; but validity is judged by uvm_channel_gpfifo_loc's value, not this one, "
    "since is_string_valid_location() ignores its argument"
)


def _specs() -> list[ParamSpec]:
    S = ParamSpec
    return [
        # ---- replayable faults: uvm_gpu_replayable_faults.c --------------------------------
        S(
            "uvm_perf_fault_batch_count",
            256,
            int,
            "uint",
            "uvm_gpu_replayable_faults.c",
            "max fault-buffer entries fetched and serviced per batch",
            "max(v, 1), then min(v, fault-buffer capacity of the GPU) at GPU init",
            modeled=True,
            lo=1,
            driver_value=_clamp(1, UINT_MAX),
            range_note="the GPU's fault-buffer capacity caps it",
        ),
        S(
            "uvm_perf_fault_coalesce",
            1,
            int,
            "uint",
            "uvm_gpu_replayable_faults.c",
            "merge duplicate faults (same page, same access) at fetch time; 0 = off",
            "not validated; 0 = off, any other value = on",
            modeled=True,
        ),
        S(
            "uvm_perf_fault_max_batches_per_service",
            20,
            int,
            "uint",
            "uvm_gpu_replayable_faults.c",
            "fault batches serviced per bottom-half run before it yields",
            "not validated; 0 makes the bottom half stop before its first batch, so no replayable "
            "fault is ever serviced",
            modeled=True,
            lo=1,
        ),
        S(
            "uvm_perf_fault_max_throttle_per_service",
            5,
            int,
            "uint",
            "uvm_gpu_replayable_faults.c",
            "batches containing throttled (thrashing) faults per bottom-half run",
            "not validated; 0 makes the bottom half stop before its first batch, so no replayable "
            "fault is ever serviced",
            modeled=True,
            lo=1,
        ),
        S(
            "uvm_perf_fault_replay_policy",
            2,
            int,
            "uint",
            "uvm_gpu_replayable_faults.c",
            "when faults are replayed: 0 BLOCK, 1 BATCH, 2 BATCH_FLUSH, 3 ONCE",
            "values >= 4 are replaced by 2 = BATCH_FLUSH at GPU init",
            modeled=True,
            choices=(0, 1, 2, 3),
            driver_value=_default(2),
        ),
        S(
            "uvm_perf_fault_replay_update_put_ratio",
            50,
            int,
            "uint",
            "uvm_gpu_replayable_faults.c",
            "% of duplicate faults in a batch above which the flush re-reads PUT (UPDATE_PUT)",
            "min(v, 100) at GPU init",
            modeled=True,
            lo=0,
            hi=100,
            driver_value=_clamp(0, 100),
        ),
        S(
            "uvm_perf_reenable_prefetch_faults_lapse_msec",
            1000,
            int,
            "uint",
            "uvm_gpu_replayable_faults.c",
            "ms after which disabled HW prefetch faults are re-enabled; 0 = never disable them",
            "not validated",
            modeled=True,
        ),
        # ---- prefetch: uvm_perf_prefetch.c -------------------------------------------------
        S(
            "uvm_perf_prefetch_enable",
            1,
            int,
            "uint",
            "uvm_perf_prefetch.c",
            "enable the bitmap-tree prefetcher; 0 = off",
            "not validated; 0 = off, any other value = on",
            modeled=True,
        ),
        S(
            "uvm_perf_prefetch_threshold",
            51,
            int,
            "uint",
            "uvm_perf_prefetch.c",
            "% of a subregion that must be resident (or faulting) to prefetch the rest",
            "values > 100 are replaced by 51 at module load, 0 is accepted; only checked when "
            "prefetch is enabled",
            modeled=True,
            lo=0,
            hi=100,
            driver_value=_default(51),
        ),
        S(
            "uvm_perf_prefetch_min_faults",
            1,
            int,
            "uint",
            "uvm_perf_prefetch.c",
            "faults a VA block needs before prefetching is considered",
            "values outside [1, 20] are replaced by 1 at module load",
            modeled=True,
            lo=1,
            hi=20,
            driver_value=_default(1),
        ),
        # ---- thrashing: uvm_perf_thrashing.c -----------------------------------------------
        S(
            "uvm_perf_thrashing_enable",
            1,
            int,
            "uint",
            "uvm_perf_thrashing.c",
            "enable thrashing detection and mitigation",
            "values other than 0 and 1 are replaced by 1 at module load",
            modeled=True,
            choices=(0, 1),
            driver_value=_default(1),
        ),
        S(
            "uvm_perf_thrashing_threshold",
            3,
            int,
            "uint",
            "uvm_perf_thrashing.c",
            "consecutive thrashing events on a page before mitigation starts (3-bit counter)",
            _THRASH_RULE.format(3),
            modeled=True,
            lo=1,
            hi=7,
            driver_value=_default(3),
        ),
        S(
            "uvm_perf_thrashing_pin_threshold",
            10,
            int,
            "uint",
            "uvm_perf_thrashing.c",
            "consecutive throttles before the page is pinned and mapped remotely (8-bit counter)",
            _THRASH_RULE.format(10),
            modeled=True,
            lo=1,
            hi=255,
            driver_value=_default(10),
        ),
        S(
            "uvm_perf_thrashing_lapse_usec",
            500,
            int,
            "uint",
            "uvm_perf_thrashing.c",
            "µs: two events on a page closer than this count as thrashing",
            _THRASH_RULE.format(500) + "; the default is 800x larger on simulated GPUs only",
            modeled=True,
            lo=1,
            driver_value=_default(500),
        ),
        S(
            "uvm_perf_thrashing_nap",
            1,
            int,
            "uint",
            "uvm_perf_thrashing.c",
            "throttle nap, in multiples of the lapse",
            _THRASH_RULE.format(1),
            modeled=True,
            lo=1,
            hi=100,
            driver_value=_default(1),
        ),
        S(
            "uvm_perf_thrashing_epoch",
            2000,
            int,
            "uint",
            "uvm_perf_thrashing.c",
            "time without thrashing after which a block's thrashing state is reset, in lapses",
            _THRASH_RULE.format(2000),
            modeled=True,
            lo=1,
            driver_value=_default(2000),
        ),
        S(
            "uvm_perf_thrashing_pin",
            300,
            int,
            "uint",
            "uvm_perf_thrashing.c",
            "how long a thrashing page stays pinned, in multiples of the lapse; 0 = forever",
            "any uint is accepted (0 = pinned forever); the default is 10 on simulated GPUs only",
            modeled=True,
            lo=0,
        ),
        S(
            "uvm_perf_thrashing_max_resets",
            4,
            int,
            "uint",
            "uvm_perf_thrashing.c",
            "epoch resets allowed per block; after that its thrashing history is kept",
            "any uint is accepted",
            modeled=True,
            lo=0,
        ),
        S(
            "uvm_perf_map_remote_on_native_atomics_fault",
            0,
            int,
            "uint",
            "uvm_perf_thrashing.c",
            "map remotely instead of migrating on atomics a link supports natively (read in uvm_va_block.c)",
            "not validated; 0 = off, any other value = on",
            modeled=True,
        ),
        # ---- eviction, access counters, migration, PMM --------------------------------------
        S(
            "uvm_perf_map_remote_on_eviction",
            1,
            int,
            "int",
            "uvm_va_block.c",
            "after eviction, map the GPU to the evicted pages in sysmem (needs access-counter migrations on)",
            "not validated; nonzero = on, but it has no effect unless the VA space has "
            "access-counter migrations enabled",
            modeled=True,
        ),
        S(
            "uvm_perf_access_counter_migration_enable",
            -1,
            int,
            "int",
            "uvm_gpu_access_counters.c",
            "access-counter-triggered migrations: < 0 platform default (on only with ATS), 0 off, > 0 on",
            "not validated; any int (< 0 = platform default)",
            modeled=True,
        ),
        S(
            "uvm_perf_access_counter_batch_count",
            256,
            int,
            "uint",
            "uvm_gpu_access_counters.c",
            "access-counter notifications fetched and serviced per batch",
            "max(v, 1), then min(v, notification-buffer capacity of the GPU) at GPU init",
            modeled=True,
            lo=1,
            driver_value=_clamp(1, UINT_MAX),
            range_note="the GPU's notification-buffer capacity caps it",
        ),
        S(
            "uvm_perf_access_counter_threshold",
            256,
            int,
            "uint",
            "uvm_gpu_access_counters.c",
            "remote accesses to a region before the GPU sends a notification",
            "clamped to [1, 65535] at module load",
            modeled=True,
            lo=1,
            hi=65535,
            driver_value=_clamp(1, 65535),
        ),
        S(
            "uvm_perf_migrate_cpu_preunmap_enable",
            1,
            int,
            "int",
            "uvm_migrate.c",
            "UVM_MIGRATE to the CPU unmaps a group of blocks up front (only with fast links)",
            "not validated; 0 = off, any other value = on",
            modeled=True,
        ),
        S(
            "uvm_perf_migrate_cpu_preunmap_block_order",
            2,
            int,
            "uint",
            "uvm_migrate.c",
            "pre-unmap group size = 2 MiB << order",
            "values > 10 are replaced by 2 at module load",
            modeled=True,
            lo=0,
            hi=10,
            driver_value=_default(2),
        ),
        S(
            "uvm_perf_pma_batch_nonpinned_order",
            6,
            int,
            "uint",
            "uvm_pmm_gpu.c",
            "root chunks requested from PMA per call = 1 << order (64 x 2 MiB = 128 MiB)",
            "not validated; the driver computes 1 << order in a 32-bit int, which overflows above 30",
            modeled=True,
            lo=0,
            hi=30,
        ),
        S(
            "uvm_global_oversubscription",
            1,
            int,
            "int",
            "uvm_pmm_gpu.c",
            "allocate UVM memory unpinned in PMA so that eviction (and PMA-initiated eviction) is possible",
            "not validated; 0 = off, any other value = on (only on GPUs that support eviction)",
            modeled=True,
        ),
        # ---- not modeled: platform, channels, debug -----------------------------------------
        S(
            "uvm_ats_mode",
            1,
            int,
            "int",
            "uvm_ats.c",
            "0 disables ATS; any other value is ignored; no effect without platform ATS",
            "not validated",
        ),
        S(
            "uvm_block_cpu_to_cpu_copy_with_ce",
            0,
            int,
            "int",
            "uvm_va_block.c",
            "use GPU copy engines for CPU-to-CPU migrations",
            "not validated; nonzero = on",
            writable=True,
        ),
        S(
            "uvm_channel_gpfifo_loc",
            "auto",
            str,
            "charp",
            "uvm_channel.c",
            "location of channel GPFIFOs: auto, sys or vid",
            _LOC_RULE,
            choices=("auto", "sys", "vid"),
            driver_value=_default("auto"),
        ),
        S(
            "uvm_channel_gpput_loc",
            "auto",
            str,
            "charp",
            "uvm_channel.c",
            "location of channel GPPUT: auto, sys or vid",
            _LOC_RULE_QUIRK,
            choices=("auto", "sys", "vid"),
            driver_value=_default("auto"),
        ),
        S(
            "uvm_channel_num_gpfifo_entries",
            1024,
            int,
            "uint",
            "uvm_channel.c",
            "GPFIFO entries per channel (power of two)",
            "clamped to [32, 1048576]; a result that is not a power of two becomes 1024",
            lo=32,
            hi=1024 * 1024,
            check=_pow2_check,
            range_desc="a power of two in 32..1048576",
            driver_value=_gpfifo_entries_driver_value,
        ),
        S(
            "uvm_channel_pushbuffer_loc",
            "auto",
            str,
            "charp",
            "uvm_channel.c",
            "location of the channel pushbuffer: auto, sys or vid",
            _LOC_RULE_QUIRK,
            choices=("auto", "sys", "vid"),
            driver_value=_default("auto"),
        ),
        S(
            "uvm_conf_computing_channel_iv_rotation_limit",
            2**31,
            int,
            "ulong",
            "uvm_conf_computing.c",
            "Confidential Computing: remaining encryptions before a channel's IV is rotated",
            "values outside [2342, 0xfffffffe] are replaced by the default 2^31 at GPU init",
            lo=2342,
            hi=0xFFFFFFFE,
            driver_value=_default(2**31),
        ),
        S(
            "uvm_cpu_chunk_allocation_sizes",
            _CPU_CHUNK_SIZES,
            int,
            "uint",
            "uvm_pmm_sysmem.c",
            "OR of the CPU chunk sizes UVM may allocate (0x211000 = 2 MiB | 64 KiB | 4 KiB)",
            "ANDed with the supported sizes; if the result is 0 or lacks PAGE_SIZE, all supported "
            "sizes are used",
            lo=0,
            check=_cpu_chunk_sizes_check,
            range_desc="bit mask: a subset of 0x211000 that includes 0x1000",
            driver_value=_cpu_chunk_sizes_driver_value,
            writable=True,
        ),
        S(
            "uvm_debug_enable_push_acquire_info",
            0,
            int,
            "uint",
            "uvm_push.c",
            "track push acquire information (debug)",
            "not validated",
            writable=True,
        ),
        S(
            "uvm_debug_enable_push_desc",
            0,
            int,
            "uint",
            "uvm_push.c",
            "track push descriptions (debug; default 1 on debug/develop builds)",
            "not validated",
            writable=True,
        ),
        S(
            "uvm_debug_prints",
            0,
            int,
            "int",
            "uvm_common.c",
            "enable UVM debug prints (default 1 on debug/develop builds)",
            "not validated",
            writable=True,
        ),
        S(
            "uvm_disable_hmm",
            False,
            bool,
            "bool",
            "uvm_hmm.c",
            "force-disable HMM (default false on x86-64, true on other CPUs)",
            "kernel bool: Y/N, 1/0",
        ),
        S(
            "uvm_downgrade_force_membar_sys",
            1,
            int,
            "uint",
            "uvm_hal.c",
            "force all TLB-invalidation downgrades to use MEMBAR_SYS",
            "not validated",
            writable=True,
        ),
        S(
            "uvm_enable_builtin_tests",
            0,
            int,
            "int",
            "uvm_common.c",
            "allow user space to run the driver's built-in tests (a security risk)",
            "not validated",
        ),
        S(
            "uvm_enable_debug_procfs",
            0,
            int,
            "int",
            "uvm_procfs.c",
            "extra debug entries in /proc/driver/nvidia-uvm (default 1 on debug/develop builds)",
            "not validated",
        ),
        S(
            "uvm_enable_va_space_mm",
            1,
            int,
            "int",
            "uvm_va_space_mm.c",
            "associate VA spaces with the process mm via mmu_notifiers (needed for ATS and HMM)",
            "not validated",
        ),
        S(
            "uvm_exp_gpu_cache_peermem",
            0,
            int,
            "uint",
            "uvm_va_block.c",
            "experimental: cache GPU mappings of peer memory",
            "not validated",
        ),
        S(
            "uvm_exp_gpu_cache_sysmem",
            0,
            int,
            "uint",
            "uvm_va_block.c",
            "experimental: cache GPU mappings of system memory",
            "not validated",
        ),
        S(
            "uvm_fault_force_sysmem",
            0,
            int,
            "int",
            "uvm_va_block.c",
            "back faulted pages with sysmem (honoured only with built-in tests enabled)",
            "not validated",
            writable=True,
        ),
        S(
            "uvm_force_prefetch_fault_support",
            0,
            int,
            "uint",
            "uvm_pascal.c",
            "enable HW prefetch faults on Pascal (no effect on later GPUs)",
            "not validated",
        ),
        S(
            "uvm_leak_checker",
            0,
            int,
            "int",
            "uvm_kvmalloc.c",
            "kvmalloc leak checking: 0 off, 1 byte counts, >= 2 per-allocation origins",
            "not validated",
        ),
        S(
            "uvm_page_table_location",
            None,
            str,
            "charp",
            "uvm_mmu.c",
            "location of UVM page tables: vid or sys; unset = driver default",
            "anything other than 'vid' or 'sys' is ignored with a warning, keeping the default",
            choices=("vid", "sys"),
            driver_value=_default(None),
            nullable=True,
            range_note="or unset",
        ),
        S(
            "uvm_peer_copy",
            "phys",
            str,
            "charp",
            "uvm_gpu.c",
            "addressing mode of peer copies on Ampere+: phys or virt",
            "anything other than 'virt' is treated as 'phys', with a warning",
            choices=("phys", "virt"),
            driver_value=_default("phys"),
        ),
        S(
            "uvm_release_asserts",
            1,
            int,
            "int",
            "uvm_common.c",
            "evaluate asserts that are compiled into release builds",
            "not validated",
            writable=True,
        ),
        S(
            "uvm_release_asserts_dump_stack",
            0,
            int,
            "int",
            "uvm_common.c",
            "dump_stack() on a failed release assert",
            "not validated",
            writable=True,
        ),
        S(
            "uvm_release_asserts_set_global_error",
            0,
            int,
            "int",
            "uvm_common.c",
            "set the global UVM fatal error on a failed release assert",
            "not validated",
            writable=True,
        ),
    ]


#: Every module parameter of nvidia-uvm 580, keyed by name, in alphabetical order (as in sysfs).
PARAM_SPECS: dict[str, ParamSpec] = {s.name: s for s in sorted(_specs(), key=lambda s: s.name)}

#: Names of the parameters the model reads.
MODELED_PARAMS: tuple[str, ...] = tuple(n for n, s in PARAM_SPECS.items() if s.modeled)

_DEFAULTS: dict[str, ParamValue] = {n: s.default for n, s in PARAM_SPECS.items()}


class UnknownParamError(ParamError, AttributeError):
    """An unknown parameter name. Also an AttributeError, so ``getattr(p, name, d)`` works."""


def _unknown(name: str) -> UnknownParamError:
    names = list(PARAM_SPECS)
    key = name.strip().lower()
    # A name given without its prefix ("fault_batch_count") should find the full name first.
    suffix = [n for n in names if n.endswith("_" + key)] if key else []
    close = suffix + [m for m in difflib.get_close_matches(key, names, n=3, cutoff=0.6) if m not in suffix]
    close = close[:3]
    if len(close) > 1:
        hint = f"; did you mean {', '.join(close[:-1])} or {close[-1]}?"
    else:
        hint = f"; did you mean {close[0]}?" if close else ""
    return UnknownParamError(
        f"unknown nvidia-uvm module parameter {name!r}{hint} ('uvmlab params' lists all {len(names)})"
    )


def get_spec(name: str) -> ParamSpec:
    """The spec of one parameter; ParamError (naming close matches) if there is none."""
    try:
        return PARAM_SPECS[name]
    except KeyError:
        raise _unknown(name) from None


def check_param(name: str, value: Any) -> ParamValue:
    """Validate one (name, value); return the value as stored, or raise ParamError."""
    return get_spec(name).validate(value)


class Params(Mapping[str, ParamValue]):
    """An immutable set of all nvidia-uvm module parameters, validated.

    ``Params()`` / ``Params.defaults()`` is the driver's default configuration (equal to what the
    H200 probe read from sysfs). Read a value as ``p["uvm_perf_fault_batch_count"]`` or
    ``p.uvm_perf_fault_batch_count``; derive a changed set with ``p.replace(name=value, ...)``.
    Equal parameter sets compare and hash equal, so they can key caches and sweep tables.
    """

    __slots__ = ("_values",)
    _values: dict[str, ParamValue]

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        values = dict(_DEFAULTS)
        for name, value in (overrides or {}).items():
            values[name] = check_param(name, value)
        object.__setattr__(self, "_values", values)

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def defaults(cls) -> Params:
        """The 580.142 source defaults (== the probe's sysfs values)."""
        return cls()

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any]) -> Params:
        """Defaults with ``overrides`` applied; values must already have the right type."""
        return cls(overrides)

    @classmethod
    def from_assignments(cls, assignments: list[str] | tuple[str, ...]) -> Params:
        """Defaults with CLI-style ``name=value`` strings applied (``--param name=value``)."""
        return cls(dict(parse_param_assignment(a) for a in assignments))

    @classmethod
    def from_sysfs(cls, values: Mapping[str, str], *, strict: bool = True) -> Params:
        """Parameters as read from ``/sys/module/nvidia_uvm/parameters`` (strings).

        With ``strict`` (the default) an unknown name raises; otherwise names this driver
        version does not have (e.g. 595's ``uvm_perf_lapse_vote_threshold``) are skipped.
        """
        parsed: dict[str, ParamValue] = {}
        for name, text in values.items():
            if name not in PARAM_SPECS and not strict:
                continue
            parsed[name] = get_spec(name).parse(str(text))
        return cls(parsed)

    @classmethod
    def from_toml(cls, path: str | Path) -> Params:
        """Read parameters from a TOML file: a ``[params]`` table, or top-level keys."""
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ParamError(f"{p}: parameter file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ParamError(f"{p}: cannot read parameter file ({e})") from None
        except tomllib.TOMLDecodeError as e:
            raise ParamError(f"{p}: not valid TOML ({e})") from None
        if "params" in data:
            table = data["params"]
            if not isinstance(table, dict):
                raise ParamError(f"{p}: 'params' must be a table ([params])")
        else:
            table = data
        overrides: dict[str, Any] = {}
        for name, value in table.items():
            if isinstance(value, dict | list):
                raise ParamError(f"{p}: {name!r} must be a plain value, not a table or array")
            overrides[name] = value
        try:
            return cls(overrides)
        except ParamError as e:
            raise type(e)(f"{p}: {e}") from None

    def replace(self, **overrides: Any) -> Params:
        """A copy with some parameters changed (validated)."""
        merged = dict(self._values)
        for name, value in overrides.items():
            merged[name] = check_param(name, value)
        return Params(merged)

    # -- export -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, ParamValue]:
        """All 53 values as a plain dict (a copy)."""
        return dict(self._values)

    def changed(self) -> dict[str, ParamValue]:
        """Only the values that differ from the driver defaults."""
        return {n: v for n, v in self._values.items() if v != _DEFAULTS[n]}

    def to_sysfs(self) -> dict[str, str]:
        """Values as sysfs would print them (to compare with a real machine's parameters)."""
        return {n: to_sysfs_string(v) for n, v in self._values.items()}

    def to_toml(self, *, only_changed: bool = False) -> str:
        """A ``[params]`` table that :meth:`from_toml` reads back to an equal Params.

        TOML has no null, so an unset charp (``uvm_page_table_location``) is left out, which
        reads back as its default (unset).
        """
        items = self.changed() if only_changed else self._values
        lines = ["[params]"]
        for name, value in items.items():
            if value is None:
                continue
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, str):
                text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            else:
                text = str(value)
            lines.append(f"{name} = {text}")
        return "\n".join(lines) + "\n"

    # -- Mapping protocol and attribute access ---------------------------------------------
    def __getitem__(self, name: str) -> ParamValue:
        try:
            return self._values[name]
        except KeyError:
            raise _unknown(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails; private names must not recurse into _values.
        # Typed Any: each parameter's own type is its spec's (validated when the set is built).
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Params is immutable; use p.replace(name=value)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Params is immutable")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._values))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Params):
            return self._values == other._values
        return NotImplemented if not isinstance(other, Mapping) else dict(self) == dict(other)

    def __hash__(self) -> int:
        return hash(tuple(self._values.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling (process pools, Ray) must not go through the blocked __setattr__.
        return (Params, (self.changed(),))

    def __repr__(self) -> str:
        ch = self.changed()
        if not ch:
            return "Params(defaults)"
        return "Params(" + ", ".join(f"{n}={v!r}" for n, v in ch.items()) + ")"


def parse_param_assignment(text: str) -> tuple[str, ParamValue]:
    """Parse one CLI ``--param name=value`` into (name, typed and validated value)."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ParamError(f"--param expects name=value, got {text!r}")
    spec = get_spec(name)
    if not raw.strip() and spec.type is not str:
        raise ParamError(f"{name}: no value given in {text!r} (valid: {spec.range_text()})")
    return name, spec.parse(raw)


def describe(*, modeled_only: bool = False) -> list[tuple[str, str, str, str]]:
    """Rows (name, default, valid range, meaning) for the ``uvmlab params`` table."""
    return [
        (s.name, s.sysfs_default(), s.range_text(), s.meaning)
        for s in PARAM_SPECS.values()
        if s.modeled or not modeled_only
    ]
