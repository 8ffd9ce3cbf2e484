"""A run's result: canonical totals, per-operation rows, optional events (design.md §4)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uvmlab.errors import TraceFileError
from uvmlab.results.schema import EXTRA, TOTAL_KEYS, TOTALS
from uvmlab.units import fmt_bytes, fmt_ns

RESULT_VERSION = 1


@dataclass
class Result:
    workload: str
    totals: dict[str, int]
    ops: list[dict[str, Any]]
    source: str = "model"  # "model" or "gpu"
    gpu: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    profile: str = ""
    gpu_memory_bytes: int = 0
    fatal: dict[str, Any] | None = None
    wall_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    events: Any = None  # pandas.DataFrame when the run recorded events

    # --- views ----------------------------------------------------------------------------
    def canonical(self) -> dict[str, int]:
        """The totals keyed by the canonical names only (``uvmlab run --json``)."""
        return {k: self.totals[k] for k in TOTAL_KEYS if k in self.totals}

    def to_pandas(self):
        """Per-operation rows as a DataFrame (one row per IR operation)."""
        import pandas as pd

        return pd.DataFrame(self.ops)

    def totals_series(self):
        import pandas as pd

        return pd.Series(self.totals, name=self.workload)

    def summary(self) -> str:
        """A short human-readable summary."""
        t = self.totals
        lines = [f"{self.workload} ({self.source}, {self.gpu}): {fmt_ns(t.get('time_ns', 0))}"]
        lines.append(f"  GPU faults {t.get('gpu_faults', 0):,} in {t.get('fault_batches', 0):,} "
                     f"batches, {t.get('replays', 0):,} replays; CPU faults "
                     f"{t.get('cpu_faults', 0):,}")
        lines.append(f"  HtoD {fmt_bytes(t.get('bytes_htod', 0))} (fault "
                     f"{fmt_bytes(t.get('bytes_htod_fault', 0))}, prefetch "
                     f"{fmt_bytes(t.get('bytes_htod_prefetch', 0))}, user "
                     f"{fmt_bytes(t.get('bytes_htod_user', 0))}); DtoH "
                     f"{fmt_bytes(t.get('bytes_dtoh', 0))} (eviction "
                     f"{fmt_bytes(t.get('bytes_dtoh_eviction', 0))})")
        lines.append(f"  evictions {t.get('evictions', 0):,}; thrashing "
                     f"{t.get('thrashing_events', 0):,} (throttles {t.get('throttles', 0):,}, "
                     f"pins {t.get('pins', 0):,}); remote maps {t.get('remote_maps', 0):,}")
        if self.fatal:
            lines.append(f"  FATAL at op {self.fatal['op']}: {self.fatal['reason']}")
        return "\n".join(lines)

    # --- files ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": "uvmlab-result", "version": RESULT_VERSION, "workload": self.workload,
                "source": self.source, "gpu": self.gpu, "params": self.params,
                "profile": self.profile, "gpu_memory_bytes": self.gpu_memory_bytes,
                "fatal": self.fatal, "wall_s": self.wall_s, "meta": self.meta,
                "totals": self.totals, "ops": self.ops}

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str = "result") -> Result:
        if not isinstance(d, dict) or d.get("format") != "uvmlab-result":
            raise TraceFileError(f"{where}: not a uvmlab result file")
        if d.get("version") != RESULT_VERSION:
            raise TraceFileError(f"{where}: result format version {d.get('version')} "
                                 f"(this uvmlab reads {RESULT_VERSION})")
        try:
            return cls(workload=str(d["workload"]), totals={k: int(v) for k, v in
                                                            d["totals"].items()},
                       ops=list(d["ops"]), source=d.get("source", "model"), gpu=d.get("gpu", ""),
                       params=dict(d.get("params", {})), profile=d.get("profile", ""),
                       gpu_memory_bytes=int(d.get("gpu_memory_bytes", 0)), fatal=d.get("fatal"),
                       wall_s=float(d.get("wall_s", 0.0)), meta=dict(d.get("meta", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise TraceFileError(f"{where}: malformed result ({e})") from None

    def save(self, path: str | Path) -> None:
        """Write as JSON, atomically (temp file + rename)."""
        write_atomic(Path(path), json.dumps(self.to_dict(), indent=1).encode())

    @classmethod
    def load(cls, path: str | Path) -> Result:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as e:
            raise TraceFileError(f"{p}: cannot read ({e.strerror})") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise TraceFileError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(d, where=str(p))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["Result", "write_atomic", "TOTALS", "EXTRA"]
