"""The cost model (docs/model.md): what each driver action costs in simulated nanoseconds.

Constants live in a *profile* (``profiles/*.json``): measured on a real GPU by
``uvmlab calibrate`` or, for the built-in default, derived from probes of the real driver. Each
constant's provenance is stored beside it in the profile's ``sources`` table.

Model (all times in ns):

* the copies of one block operation from one source: ``copy_latency_ns`` once (the driver
  pushes a block's copies together and waits on its tracker once) plus ``b / bw`` for each
  contiguous run of ``b`` bytes, ``bw`` being ``htod_gbps`` or ``dtoh_gbps`` (GB/s == bytes/ns);
* one explicit migration (prefetch / UVM_MIGRATE) of ``b`` bytes in one VA block:
  ``migrate_block_ns + b / prefetch_{htod,dtoh}_gbps``;
* a replayable-fault bottom half: ``bottom_half_ns`` once, then per batch
  ``fault_batch_ns + gpu_faults * fault_ns + blocks * fault_block_ns + copies + replay_ns``;
* a CPU fault: ``cpu_fault_ns`` plus its copies (the CPU waits for them); a CPU fault on a page
  already resident on the CPU (a write collapsing read duplicates, a permission upgrade: nothing
  is copied, the other processors' mappings are revoked) costs ``cpu_fault_resident_ns`` instead;
* a GPU touch that hits: ``gpu_touch_ns`` (only when a kernel gives no compute time); a GPU touch
  to memory mapped remotely over PCIe: ``remote_touch_ns``; a CPU touch: ``cpu_touch_ns``;
* zeroing a fresh 2 MiB GPU chunk: ``chunk_zero_ns``; evicting one root chunk:
  ``evict_chunk_ns`` plus the copy of its resident pages; populating CPU pages on first touch
  (the kernel allocates and zeroes them): ``cpu_populate_ns_per_byte`` per byte;
* a CPU fault that migrates pages in: ``cpu_map_page_ns`` per page (the CPU PTEs are re-created
  page by page, ``vm_insert_page``);
* advice: ``advise_block_ns`` per VA block covered, plus ``read_dup_page_ns`` per resident page
  re-duplicated by SET_READ_MOSTLY; ``free``: ``free_block_ns`` per VA block.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path

from uvmlab.core.errors import UvmlabError
from uvmlab.core.files import read_regular


@dataclass(frozen=True)
class CostProfile:
    name: str = "h200-pcie5"
    gpu: str = "NVIDIA H200"
    htod_gbps: float = 25.0
    dtoh_gbps: float = 10.2
    copy_latency_ns: float = 5000.0
    prefetch_htod_gbps: float = 30.0
    prefetch_dtoh_gbps: float = 10.2
    migrate_block_ns: float = 0.0
    pinned_htod_gbps: float = 55.4
    pinned_dtoh_gbps: float = 55.3
    bottom_half_ns: float = 10000.0
    fault_batch_ns: float = 20000.0
    fault_ns: float = 1000.0
    fault_block_ns: float = 10000.0
    replay_ns: float = 10000.0
    cpu_fault_ns: float = 60000.0
    #: ns per CPU fault on a page already resident on the CPU: the trap, uvm_va_space_cpu_fault
    #: and block_cpu_fault_locked revoking the other processors' copies and mappings, no copy
    #: (uvm_va_block.c). A profile without it uses ``cpu_fault_ns`` (``from_dict``).
    cpu_fault_resident_ns: float = 60000.0
    cpu_touch_ns: float = 20.0
    gpu_touch_ns: float = 0.5
    remote_touch_ns: float = 1000.0
    chunk_zero_ns: float = 2000.0
    evict_chunk_ns: float = 10000.0
    cpu_populate_ns_per_byte: float = 0.0
    cpu_map_page_ns: float = 0.0
    advise_block_ns: float = 0.0
    read_dup_page_ns: float = 0.0
    free_block_ns: float = 0.0
    sources: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> CostProfile:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UvmlabError(f"cost profile has unknown keys: {', '.join(sorted(unknown))}")
        for k, v in d.items():
            if k not in ("name", "gpu", "sources") and (not isinstance(v, int | float) or v < 0):
                raise UvmlabError(f"cost profile: {k} must be a non-negative number, got {v!r}")
        if "cpu_fault_resident_ns" not in d and "cpu_fault_ns" in d:
            # profiles written before the CPU fault kinds were separated: one cost for both
            d = {**d, "cpu_fault_resident_ns": d["cpu_fault_ns"]}
        return cls(**d)


def builtin_profiles() -> list[str]:
    return sorted(
        p.name[:-5]
        for p in resources.files("uvmlab.timing").joinpath("profiles").iterdir()
        if p.name.endswith(".json")
    )


def profile_for_gpu(gpu: str, link: str = "pcie5") -> str:
    """The built-in profile of GPU ``gpu`` on host link ``link`` (``h100`` -> ``h100-pcie5``,
    ``gtx1080ti``, ``pcie3`` -> ``gtx1080ti-pcie3``), else the default."""
    name = f"{gpu}-{link}"
    return name if name in builtin_profiles() else DEFAULT_PROFILE


def load_profile(name_or_path: str | None = None) -> CostProfile:
    """A built-in profile by name (``h200-pcie5``), a JSON file, or the default when None."""
    if name_or_path is None:
        name_or_path = DEFAULT_PROFILE
    path = Path(name_or_path)
    if path.suffix == ".json" and path.exists():
        try:
            text = read_regular(path, UvmlabError, what="cost profile", max_bytes=16 << 20).decode("utf-8")
        except UnicodeDecodeError:
            raise UvmlabError(f"cost profile {name_or_path}: not UTF-8 text") from None
    else:
        res = resources.files("uvmlab.timing").joinpath("profiles", f"{name_or_path}.json")
        if not res.is_file():
            raise UvmlabError(f"no cost profile {name_or_path!r}; built-in: {', '.join(builtin_profiles())}")
        text = res.read_text()
    try:
        return CostProfile.from_dict(json.loads(text))
    except (json.JSONDecodeError, TypeError, ValueError, KeyError, AttributeError) as e:
        raise UvmlabError(f"cost profile {name_or_path}: not a valid profile ({e})") from None
    except RecursionError:  # absurdly nested JSON
        raise UvmlabError(f"cost profile {name_or_path}: not a valid profile (nested too deeply)") from None


DEFAULT_PROFILE = "h200-pcie5"
