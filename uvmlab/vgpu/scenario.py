"""Scenario files: several tenants on one GPU, in TOML.

::

    name = "lc-be"                  # optional
    gpu = "h100"                    # the HAL's GPU (h100, h200)
    memory = "24GiB"                # GPU memory the model gives UVM (default: the GPU's free memory)
    mode = "shared"                 # partition | quota | shared
    scheduler = "best-effort"       # best-effort | equal-share | fixed-share
    timeslice = "2ms"               # optional; default: the vGPU type's (2 ms, 1 ms above 8 per GPU)
    context_switch = "25us"         # optional; GPU idle time per switch between tenants
    fault_service = "slice"         # optional; slice | shared | overlap (scheduler.py)
    fault_overlap = false           # optional; true: the same as fault_service = "overlap"
    policy = "tenant-priority:order=lc"   # optional, attached to every tenant (GPU-wide eviction)

    [[tenant]]
    name = "lc"
    workload = "llm:size=2GiB,layers=8,tokens=32"   # built-in spec or .uvmw file
    vgpu_type = "H100-40C"          # a vGPU instance of this type (created through mdev); or
    quota = "12GiB"                 # a framebuffer quota without vGPU (plain process / HAMi)
    share = 0.5                     # fixed-share fraction (default: 1 / the type's max instances)
    policy = "prefetch-always-max"  # this tenant's own policies (every hook)
    arrival = "0ms"                 # when it starts
    repeat = 1                      # run the workload this many times back to back
    host_gap = "0us"                # host time between two of its operations
    unit = 'tok(\\d+)'              # optional: ops whose names share this group form one unit
                                    # (e.g. one token); per-unit latency is reported

Modes: ``partition`` gives each tenant a framebuffer of its own (its vGPU type's, or its quota),
never shared, like a vGPU's carve-out or a MIG slice; ``quota`` shares one PMM but refuses a
tenant whose allocations exceed its quota (HAMi's out-of-memory at allocation); ``shared`` lets
UVM evict across tenants, which oversubscription forces.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uvmlab.core.errors import UvmlabError
from uvmlab.core.units import parse_size
from uvmlab.driver.hal import get_gpu
from uvmlab.vgpu.scheduler import FAULT_SERVICES, SchedulerMode, parse_mode

MODES = ("partition", "quota", "shared")
MAX_TENANTS = 64
MAX_REPEAT = 10_000
_TIME = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ns|us|µs|ms|s)?\s*$")
_TIME_UNIT = {"ns": 1.0, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, None: 1.0}
_TOP_KEYS = {
    "name",
    "gpu",
    "memory",
    "mode",
    "scheduler",
    "timeslice",
    "context_switch",
    "policy",
    "tenant",
    "fault_overlap",
    "fault_service",
}
_TENANT_KEYS = {
    "name",
    "workload",
    "vgpu_type",
    "quota",
    "share",
    "policy",
    "arrival",
    "repeat",
    "host_gap",
    "unit",
}


class ScenarioError(UvmlabError):
    """A scenario file that cannot be run: unreadable, bad TOML, a bad or missing field."""


@dataclass
class TenantSpec:
    name: str
    workload: str
    vgpu_type: str | None = None
    quota_bytes: int | None = None
    share: float | None = None
    policy: str | None = None
    arrival_ns: float = 0.0
    repeat: int = 1
    host_gap_ns: float = 0.0
    unit: str | None = None


@dataclass
class Scenario:
    name: str
    gpu: str = "h100"
    memory_bytes: int | None = None
    mode: str = "shared"
    scheduler: SchedulerMode = SchedulerMode.BEST_EFFORT
    timeslice_ns: float | None = None
    context_switch_ns: float | None = None
    policy: str | None = None
    fault_overlap: bool = False
    fault_service: str = "slice"
    tenants: list[TenantSpec] = field(default_factory=list)
    source: str = ""


def parse_time(value: Any, what: str) -> float:
    """``"2ms"``, ``"25us"``, ``"1.5s"`` or a number of ns -> ns."""
    if isinstance(value, bool):
        raise ScenarioError(f"{what}: expected a time, got {value!r}")
    if isinstance(value, int | float):
        ns = float(value)
    else:
        m = _TIME.match(str(value))
        if not m:
            raise ScenarioError(f"{what}: cannot read time {value!r} (try '2ms' or '25us')")
        ns = float(m.group(1)) * _TIME_UNIT[m.group(2)]
    if ns < 0 or ns > 3.6e15:
        raise ScenarioError(f"{what}: time {value!r} out of range")
    return ns


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read ({e.strerror or e})") from None
    if len(raw) > 1 << 20:
        raise ScenarioError(f"{p}: {len(raw)} bytes is too large for a scenario file")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ScenarioError(f"{p}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: not valid TOML ({e})") from None
    return scenario_from_dict(data, where=str(p), base=p.parent)


def scenario_from_dict(data: dict[str, Any], where: str = "scenario", base: Path | None = None) -> Scenario:
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_TOP_KEYS))})"
        )
    sc = Scenario(name=str(data.get("name") or Path(where).stem), source=where)
    sc.gpu = _str(data, "gpu", where, "h100")
    get_gpu(sc.gpu)  # a clear error for an unknown GPU
    if "memory" in data:
        sc.memory_bytes = parse_size(data["memory"], what=f"{where}: memory")
    sc.mode = _str(data, "mode", where, "shared").lower()
    if sc.mode not in MODES:
        raise ScenarioError(f"{where}: mode {sc.mode!r} is not one of {', '.join(MODES)}")
    sc.scheduler = parse_mode(_str(data, "scheduler", where, "best-effort"))
    if "timeslice" in data:
        sc.timeslice_ns = parse_time(data["timeslice"], f"{where}: timeslice")
        if sc.timeslice_ns < 1000:
            raise ScenarioError(f"{where}: a time slice under 1 µs is not a time slice")
    if "context_switch" in data:
        sc.context_switch_ns = parse_time(data["context_switch"], f"{where}: context_switch")
    sc.policy = data.get("policy") or None
    fo = data.get("fault_overlap", False)
    if not isinstance(fo, bool):
        raise ScenarioError(f"{where}: fault_overlap must be true or false, got {fo!r}")
    sc.fault_overlap = fo
    fs = data.get("fault_service", "slice")
    if fs not in FAULT_SERVICES:
        raise ScenarioError(f"{where}: fault_service must be one of {', '.join(FAULT_SERVICES)}, got {fs!r}")
    sc.fault_service = fs
    tenants = data.get("tenant")
    if not isinstance(tenants, list) or not tenants:
        raise ScenarioError(f"{where}: no tenants (add [[tenant]] tables)")
    if len(tenants) > MAX_TENANTS:
        raise ScenarioError(f"{where}: {len(tenants)} tenants; at most {MAX_TENANTS}")
    names: set[str] = set()
    for j, t in enumerate(tenants):
        sc.tenants.append(_tenant(t, f"{where}: tenant {j + 1}", base))
        if sc.tenants[-1].name in names:
            raise ScenarioError(f"{where}: two tenants are named {sc.tenants[-1].name!r}")
        names.add(sc.tenants[-1].name)
    if sc.mode in ("partition", "quota"):
        for t in sc.tenants:
            if t.vgpu_type is None and t.quota_bytes is None:
                raise ScenarioError(
                    f"{where}: mode {sc.mode} needs a vgpu_type or a quota for tenant {t.name!r}"
                )
    if sc.scheduler == SchedulerMode.FIXED_SHARE:
        for t in sc.tenants:
            if t.vgpu_type is None and t.share is None:
                raise ScenarioError(
                    f"{where}: fixed-share needs a vgpu_type or a share for tenant {t.name!r}"
                )
        total = sum(t.share or 0 for t in sc.tenants)
        if total > 1 + 1e-9:
            raise ScenarioError(f"{where}: fixed shares add up to {total:.2f} > 1")
    return sc


def _str(d: dict, key: str, where: str, default: str) -> str:
    v = d.get(key, default)
    if not isinstance(v, str):
        raise ScenarioError(f"{where}: {key} must be a string, got {v!r}")
    return v


def _tenant(t: Any, where: str, base: Path | None) -> TenantSpec:
    if not isinstance(t, dict):
        raise ScenarioError(f"{where}: must be a table")
    unknown = set(t) - _TENANT_KEYS
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_TENANT_KEYS))})"
        )
    for key in ("name", "workload"):
        if not isinstance(t.get(key), str) or not t[key].strip():
            raise ScenarioError(f"{where}: needs a {key} (a string)")
    name = t["name"].strip()
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
        raise ScenarioError(f"{where}: tenant name {name!r}: letters, digits, _ . - only")
    wl = t["workload"].strip()
    if base is not None and wl.endswith(".uvmw") and not Path(wl).is_absolute():
        wl = str(base / wl)
    spec = TenantSpec(name=name, workload=wl)
    if "vgpu_type" in t:
        spec.vgpu_type = _str(t, "vgpu_type", where, "")
    if "quota" in t:
        spec.quota_bytes = parse_size(t["quota"], what=f"{where}: quota")
        if spec.quota_bytes < 2 << 20:
            raise ScenarioError(f"{where}: quota below one 2 MiB root chunk")
    if "share" in t:
        share = t["share"]
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise ScenarioError(f"{where}: share must be a number in (0, 1], got {share!r}")
        spec.share = float(share)
    if t.get("policy"):
        spec.policy = _str(t, "policy", where, "")
    if "arrival" in t:
        spec.arrival_ns = parse_time(t["arrival"], f"{where}: arrival")
    if "host_gap" in t:
        spec.host_gap_ns = parse_time(t["host_gap"], f"{where}: host_gap")
    if "repeat" in t:
        r = t["repeat"]
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= MAX_REPEAT:
            raise ScenarioError(f"{where}: repeat must be an integer 1..{MAX_REPEAT}")
        spec.repeat = r
    if "unit" in t:
        spec.unit = _str(t, "unit", where, "")
        try:
            if re.compile(spec.unit).groups < 1:
                raise ScenarioError(f"{where}: unit {spec.unit!r} needs one (group)")
        except re.error as e:
            raise ScenarioError(f"{where}: unit {spec.unit!r} is not a regex ({e})") from None
    return spec
