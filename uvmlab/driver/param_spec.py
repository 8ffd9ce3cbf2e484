"""One module parameter's declaration, default, valid range and load-time rule (``ParamSpec``),
and the rules the parameter table (``param_table_*``) shares; ``params`` holds the set."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
