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
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from uvmlab.core.errors import ParamError
from uvmlab.core.files import read_regular
from uvmlab.driver.param_spec import REPLAY_POLICY_NAMES as REPLAY_POLICY_NAMES
from uvmlab.driver.param_spec import ParamSpec, ParamValue, to_sysfs_string
from uvmlab.driver.param_table_perf import perf_specs
from uvmlab.driver.param_table_platform import platform_specs

#: Every module parameter of nvidia-uvm 580, keyed by name, in alphabetical order (as in sysfs).
PARAM_SPECS: dict[str, ParamSpec] = {
    s.name: s for s in sorted(perf_specs() + platform_specs(), key=lambda s: s.name)
}

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
            data = tomllib.loads(
                read_regular(p, ParamError, what="parameter file", max_bytes=1 << 20).decode("utf-8")
            )
        except UnicodeDecodeError as e:
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
