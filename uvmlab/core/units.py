"""Human units: sizes ("8GiB", "512 MiB", "4k") in, bytes out; bytes and nanoseconds back to text."""

from __future__ import annotations

import re

from uvmlab.core.errors import WorkloadError

_SUFFIX = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1000,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1000**2,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1000**3,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tb": 1000**4,
    "tib": 1 << 40,
}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")
MAX_SIZE = 1 << 50  # 1 PiB: anything above is a typo, not a workload


def parse_size(text: str | int, *, what: str = "size") -> int:
    """Parse a size such as ``"8GiB"``, ``"1.5 GB"``, ``"4k"`` or ``4096`` into bytes."""
    if isinstance(text, bool):
        raise WorkloadError(f"{what}: expected a size like '8GiB', got {text!r}")
    if isinstance(text, int):
        value = text
    else:
        m = _SIZE_RE.match(str(text))
        if not m or m.group(2).lower() not in _SUFFIX:
            raise WorkloadError(f"{what}: cannot read {text!r} as a size (try e.g. '8GiB', '512MiB')")
        value = int(float(m.group(1)) * _SUFFIX[m.group(2).lower()])
    if value <= 0:
        raise WorkloadError(f"{what}: must be positive, got {text!r}")
    if value > MAX_SIZE:
        raise WorkloadError(f"{what}: {text!r} is larger than 1 PiB")
    return value


def fmt_bytes(n: float) -> str:
    """Bytes as a short human string: 0 B, 4.0 KiB, 2.0 GiB."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def fmt_ns(ns: float) -> str:
    """Nanoseconds as a short human string: 850 ns, 12.3 µs, 4.56 ms, 1.23 s."""
    ns = float(ns)
    if abs(ns) < 1e3:
        return f"{ns:.0f} ns"
    if abs(ns) < 1e6:
        return f"{ns / 1e3:.1f} µs"
    if abs(ns) < 1e9:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"
