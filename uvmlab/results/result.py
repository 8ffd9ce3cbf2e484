"""A run's result: canonical totals, per-operation rows, optional events (docs/results.md).

Files: ``save``/``load`` pick the format by suffix. ``.json`` (default) holds everything,
events as columns; ``.parquet`` holds the event stream as the Parquet table (what
``pandas.read_parquet`` returns) and everything else as JSON in the file's key-value metadata.
Both load back an equal Result (docs/results.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from uvmlab.core.counters import EXTRA, TOTAL_KEYS, TOTALS
from uvmlab.core.errors import TraceFileError, ejection_message
from uvmlab.core.units import fmt_bytes, fmt_ns
from uvmlab.core.version import __version__
from uvmlab.engine.sampling import Samples
from uvmlab.results.io import (
    events_from_columns,
    events_to_columns,
    read_result_parquet,
    write_atomic,
    write_result_parquet,
)

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
    op_wall_s: list[float] = field(default_factory=list)  # the model's wall time per operation
    events: Any = None  # pandas.DataFrame when the run recorded events
    samples: Any = None  # uvmlab.engine.sampling.Samples when the run was sampled
    uvmlab_version: str = __version__  # the uvmlab that made it ("" for files that predate it)

    @property
    def ejections(self) -> list[dict[str, Any]]:
        """Policies the guard ejected during the run: policy, hook, reason, time_ns each."""
        return list(self.meta.get("policy_ejected", []))

    def __eq__(self, other: object) -> bool:
        # field by field, events and samples by value (a DataFrame has no plain ==)
        if not isinstance(other, Result):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def fingerprint(self) -> str:
        """SHA-256 of everything but host wall-clock time: equal for the same seed and inputs
        on any engine (docs/architecture.md)."""
        d = self.to_dict()
        d.pop("wall_s", None)
        d.pop("op_wall_s", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    # --- views ----------------------------------------------------------------------------
    def canonical(self) -> dict[str, int]:
        """The totals keyed by the canonical names only (``uvmlab run --json``)."""
        return {k: self.totals[k] for k in TOTAL_KEYS if k in self.totals}

    def to_pandas(self) -> pd.DataFrame:
        """Per-operation rows as a DataFrame (one row per IR operation)."""
        return pd.DataFrame(self.ops)

    def totals_series(self) -> pd.Series:
        return pd.Series(self.totals, name=self.workload)

    def summary(self) -> str:
        """A short human-readable summary."""
        t = self.totals
        lines = [f"{self.workload} ({self.source}, {self.gpu}): {fmt_ns(t.get('time_ns', 0))}"]
        lines.append(
            f"  GPU faults {t.get('gpu_faults', 0):,} in {t.get('fault_batches', 0):,} "
            f"batches, {t.get('replays', 0):,} replays; CPU faults "
            f"{t.get('cpu_faults', 0):,}"
        )
        lines.append(
            f"  HtoD {fmt_bytes(t.get('bytes_htod', 0))} (fault "
            f"{fmt_bytes(t.get('bytes_htod_fault', 0))}, prefetch "
            f"{fmt_bytes(t.get('bytes_htod_prefetch', 0))}, user "
            f"{fmt_bytes(t.get('bytes_htod_user', 0))}); DtoH "
            f"{fmt_bytes(t.get('bytes_dtoh', 0))} (eviction "
            f"{fmt_bytes(t.get('bytes_dtoh_eviction', 0))})"
        )
        lines.append(
            f"  evictions {t.get('evictions', 0):,}; thrashing "
            f"{t.get('thrashing_events', 0):,} (throttles {t.get('throttles', 0):,}, "
            f"pins {t.get('pins', 0):,}); remote maps {t.get('remote_maps', 0):,}"
        )
        if self.fatal:
            lines.append(f"  FATAL at op {self.fatal['op']}: {self.fatal['reason']}")
        for e in self.ejections:
            lines.append(f"  WARNING: {ejection_message(e)}")
        return "\n".join(lines)

    # --- files ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "uvmlab-result",
            "version": RESULT_VERSION,
            "uvmlab_version": self.uvmlab_version,
            "workload": self.workload,
            "source": self.source,
            "gpu": self.gpu,
            "params": self.params,
            "profile": self.profile,
            "gpu_memory_bytes": self.gpu_memory_bytes,
            "fatal": self.fatal,
            "wall_s": self.wall_s,
            "op_wall_s": self.op_wall_s,
            "meta": self.meta,
            "ejections": self.ejections,
            "totals": self.totals,
            "ops": self.ops,
            **self._extras_dict(),
        }

    def _extras_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.events is not None:
            d["events"] = events_to_columns(self.events)
        if self.samples is not None:
            d["samples"] = self.samples.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str = "result") -> Result:
        if not isinstance(d, dict) or d.get("format") != "uvmlab-result":
            raise TraceFileError(f"{where}: not a uvmlab result file")
        if d.get("version") != RESULT_VERSION:
            raise TraceFileError(
                f"{where}: result format version {d.get('version')} (this uvmlab reads {RESULT_VERSION})"
            )
        try:
            events = samples = None
            if d.get("events") is not None:
                events = events_from_columns(d["events"])
            if d.get("samples") is not None:
                samples = Samples.from_dict(d["samples"])
            return cls(
                workload=str(d["workload"]),
                totals={k: int(v) for k, v in d["totals"].items()},
                ops=list(d["ops"]),
                source=d.get("source", "model"),
                gpu=d.get("gpu", ""),
                params=dict(d.get("params", {})),
                profile=d.get("profile", ""),
                gpu_memory_bytes=int(d.get("gpu_memory_bytes", 0)),
                fatal=d.get("fatal"),
                wall_s=float(d.get("wall_s", 0.0)),
                op_wall_s=[float(x) for x in d.get("op_wall_s", [])],
                meta=dict(d.get("meta", {})),
                events=events,
                samples=samples,
                uvmlab_version=str(d.get("uvmlab_version", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise TraceFileError(f"{where}: malformed result ({e})") from None

    def save(self, path: str | Path) -> None:
        """Write as JSON, or Parquet for a ``.parquet`` path, atomically (temp file + rename)."""
        p = Path(path)
        if p.suffix == ".parquet":
            self.to_parquet(p)
            return
        write_atomic(p, json.dumps(self.to_dict(), indent=1).encode() + b"\n", what="result", stdout=True)

    def to_parquet(self, path: str | Path) -> None:
        """One Parquet file: the event stream as the table (empty when no events were recorded),
        the rest of the result as JSON under the metadata key ``uvmlab.result``."""
        write_result_parquet(self.to_dict(), self.events, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> Result:
        p = Path(path)
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise TraceFileError(f"{p}: no such file") from None
        except OSError as e:
            raise TraceFileError(f"{p}: cannot read ({e.strerror or e})") from None
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
            raise TraceFileError(f"{p}: not a regular file")
        if p.suffix == ".parquet":
            return cls.from_dict(read_result_parquet(p), where=str(p))
        try:
            text = p.read_bytes().decode("utf-8")
        except OSError as e:
            raise TraceFileError(f"{p}: cannot read ({e.strerror or e})") from None
        except UnicodeDecodeError:
            raise TraceFileError(
                f"{p}: not a result file (not UTF-8 text; a workload is read by "
                "`uvmlab trace info` and run by `uvmlab run`)"
            ) from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise TraceFileError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
        except RecursionError:
            raise TraceFileError(f"{p}: JSON nested too deeply to be a result") from None
        if not isinstance(d, dict):
            raise TraceFileError(f"{p}: not a uvmlab result file")
        return cls.from_dict(d, where=str(p))


__all__ = ["Result", "write_atomic", "TOTALS", "EXTRA"]
