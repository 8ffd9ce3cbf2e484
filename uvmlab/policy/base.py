"""The policy interface: one method per decision point of the modeled driver (docs/policies.md).

The hook names and return codes follow gpu_ext's struct_ops for nvidia-uvm
(eunomia-bpf/gpu_ext, arXiv 2512.12615) and the project's own replay hook ``decide_replay``
(docs/policies.md). Nothing here is copied from gpu_ext or NVIDIA code.

A policy is a Python object. The driver calls a hook with a read-only *context* (see
``uvmlab.policy.context``) and the hook returns a *decision*; the guard (``uvmlab.policy.guard``)
validates every decision before the driver applies it. A hook never gets a live driver object
and cannot change driver state except through what it returns or records on its context
(``ctx.move_head``, ``ctx.move_tail``, ``ctx.migrate``), which the guard checks first — the
"request, then the driver validates" style of gpu_ext's hardened Gen-3 interface.

=================  =======================  =========================================================
family             hook                     decision
=================  =======================  =========================================================
prefetch           ``prefetch_before_compute``  ``DEFAULT`` (0 / None): the driver's bitmap tree;
                                            a ``Region`` (or ``(first, outer)``): BYPASS with that
                                            region; ``ENTER_LOOP`` (2): walk the tree and call
                                            ``prefetch_on_tree_iter`` per node
prefetch           ``prefetch_on_tree_iter``    true: select this subregion (a later, larger
                                            selection overwrites an earlier one); false: skip it
eviction           ``chunk_activate``       ignored (requests on the context are applied)
eviction           ``chunk_used``           ``DEFAULT`` (0): the driver's move to the tail (LRU);
                                            ``BYPASS`` (1): keep my order
eviction           ``eviction_prepare``     None, a victim chunk id (evicted next), or requests
                                            ``[(chunk, "head" | "tail"), ...]``
replay             ``decide_replay``        ``REPLAY_NOW`` (1), ``REPLAY_DEFAULT`` (0),
                                            ``REPLAY_DEFER`` (-1: replay when the bottom half ends)
thrashing          ``thrashing_hint``       None / ``KEEP``: the detector's hints; one kind
                                            (``HINT_NONE``, ``HINT_THROTTLE``, ``HINT_PIN``) for
                                            every page, or one per page (``KEEP`` keeps that page's)
prefetch           ``prefetch_batch``       once per GPU fault batch, a row per VA block: None, a
                                            bool mask ``[blocks, 512]`` of pages to prefetch, or
                                            ``(mask, rows)`` (only the blocks ``rows`` marks)
thrashing          ``thrashing_batch``      once per GPU fault batch: None or hint kinds
                                            ``[blocks, 512]`` (``KEEP`` keeps the detector's)
eviction           ``chunk_used_batch``     after a GPU fault batch, its blocks' chunks: ignored
                                            (list moves recorded on the context are applied)
=================  =======================  =========================================================

The batch forms keep the compiled fault path (points_batch, docs/policies.md "Batch hooks");
the per-page ``prefetch_*`` and per-block ``thrashing_hint`` send every block to the reference
path.

Any hook may also record cross-block migrations with ``ctx.migrate(first_page, n_pages)`` (gpu_ext's
``bpf_gpu_migrate_range``): the guard validates them and the driver runs them as UVM_MIGRATE to
the GPU once the current fault batch is serviced, so a prefetch policy can reach past its 2 MiB
VA block.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import numba

from uvmlab.core.errors import PolicyError

# the hint kinds, re-exported for policies (one set: uvmlab.driver.perf.thrashing)
from uvmlab.driver.perf.thrashing_state import HINT_NONE as HINT_NONE
from uvmlab.driver.perf.thrashing_state import HINT_PIN as HINT_PIN
from uvmlab.driver.perf.thrashing_state import HINT_THROTTLE as HINT_THROTTLE

# prefetch_before_compute / chunk_used return codes (gpu_ext the module parameters)
DEFAULT = 0
BYPASS = 1
ENTER_LOOP = 2

# decide_replay (docs/policies.md: 1 = replay now, 0 = the driver's policy, -1 = defer)
REPLAY_NOW = 1
REPLAY_DEFAULT = 0
REPLAY_DEFER = -1

# thrashing hints (uvm_perf_thrashing_hint_type_t); KEEP leaves the detector's hint
KEEP = -1

#: hook name -> family; a composition may hold at most one policy per family
HOOKS: dict[str, str] = {
    "prefetch_before_compute": "prefetch",
    "prefetch_on_tree_iter": "prefetch",
    "chunk_activate": "eviction",
    "chunk_used": "eviction",
    "eviction_prepare": "eviction",
    "decide_replay": "replay",
    "thrashing_hint": "thrashing",
    "prefetch_batch": "prefetch",
    "thrashing_batch": "thrashing",
    "chunk_used_batch": "eviction",
}
FAMILIES = ("prefetch", "eviction", "replay", "thrashing")

#: compiled kernels a policy may give (docs/policies.md, "Compiled policies"): attribute ->
#: (family, the Python hook it stands for). In the run's own process the guard calls the kernel
#: from compiled code and not that hook; under ``--isolate`` the hook is called instead.
KERNELS: dict[str, tuple[str, str]] = {
    "prefetch_kernel": ("prefetch", "prefetch_batch"),
    "thrashing_kernel": ("thrashing", "thrashing_batch"),
    "victim_kernel": ("eviction", "eviction_prepare"),
    "replay_kernel": ("replay", "decide_replay"),
}


class Region(NamedTuple):
    """Block-local pages ``[first, outer)`` (``uvm_va_block_region_t``)."""

    first: int
    outer: int


class Policy:
    """Base class of a policy. Override the hooks you need; the others keep the driver's default.

    Class attributes a policy may set:

    * ``name`` — the name ``--policy`` uses (built-ins) and tables show;
    * ``params`` — the policy's own parameters and their defaults (``{"threshold": 51}``); each
      becomes an attribute (``self.threshold``) and can be set from the CLI
      (``--policy 'tree(threshold=30)'``) or as keyword arguments;
    * ``module_params`` — driver module parameters the policy needs
      (``{"uvm_perf_fault_replay_policy": 0}``), applied to the run;
    * ``needs_future`` — the policy reads the trace's future (``ctx.next_use``): only an offline
      bound such as Belady may, no real driver can;
    * ``jit`` — names of static methods to compile with ``numba.njit`` when the policy is built
      (their first call compiles; the guard does not count a hook's first call against its time
      budget);
    * ``prefetch_kernel``, ``thrashing_kernel``, ``victim_kernel``, ``replay_kernel`` —
      ``numba.njit`` functions of the signatures in ``uvmlab.driver.compiled.policy_calls``,
      called instead of ``prefetch_batch`` / ``thrashing_batch`` / ``eviction_prepare`` /
      ``decide_replay`` (the first three from compiled code), with the array
      :meth:`kernel_state` returns (docs/policies.md, "Compiled policies").

    ``start(info)`` is called once before the run with a :class:`~uvmlab.policy.context.RunInfo`;
    reset per-run state there so that one instance can run several workloads.
    """

    name: ClassVar[str] = ""
    params: dict[str, Any] = {}  # the declaration; an instance holds its own values
    module_params: ClassVar[dict[str, Any]] = {}
    needs_future: ClassVar[bool] = False
    jit: ClassVar[tuple[str, ...]] = ()
    prefetch_kernel: Any = None
    thrashing_kernel: Any = None
    victim_kernel: Any = None
    replay_kernel: Any = None
    _jitted: ClassVar[dict[str, Any]]  # set on a class when its ``jit`` functions are compiled

    def __init__(self, **params: Any) -> None:
        declared = type(self).params
        values = dict(declared)
        for k in declared:
            if callable(getattr(type(self), k, None)):
                raise PolicyError(f"policy {self.label!r}: parameter {k!r} has the name of a method")
        for k, v in params.items():
            if k not in declared:
                known = ", ".join(declared) or "none"
                raise PolicyError(f"policy {self.label!r} has no parameter {k!r} (its parameters: {known})")
            values[k] = _convert(self.label, k, v, declared[k])
        self.params = values  # instance dict shadows the class-level declaration
        for k, v in values.items():
            setattr(self, k, v)
        cls = type(self)
        if cls.jit and "_jitted" not in cls.__dict__:
            compiled = {}
            for fname in cls.jit:
                fn = cls.__dict__.get(fname)
                fn = fn.__func__ if isinstance(fn, staticmethod) else None
                if fn is None:
                    raise PolicyError(
                        f"policy {self.label!r}: jit names {fname!r}, which is not "
                        "a static method of the policy"
                    )
                compiled[fname] = numba.njit(cache=True)(fn)  # compiles at its first call
            cls._jitted = compiled  # once per class, so every instance shares the compilation
        for fname, fn in cls.__dict__.get("_jitted", {}).items():
            setattr(self, fname, fn)

    @property
    def label(self) -> str:
        """The name shown in tables and ejection records."""
        base = type(self).name or type(self).__name__
        own = getattr(self, "params", None)
        if isinstance(own, dict):
            changed = {k: v for k, v in own.items() if type(self).params.get(k) != v}
            if changed:
                return base + "(" + ",".join(f"{k}={v}" for k, v in changed.items()) + ")"
        return base

    def start(self, info: Any) -> None:  # noqa: B027 - optional hook, empty on purpose
        """Called once before the run (reset per-run state here)."""

    def warm(self) -> None:  # noqa: B027 - optional, empty on purpose
        """Called once when the policy is loaded in an ``--isolate`` process, before the process
        loses the right to open files: compile (or load from numba's cache) the policy's
        compiled kernels here, on arrays of the types its hooks will pass them (the contexts'
        arrays are read-only). In the run's own process kernels compile at their first call."""

    def kernel_state(self) -> Any:
        """The int64 array the policy's compiled kernels receive as ``state`` (its parameters,
        its memory across calls); called once per run, after :meth:`start`."""
        return ()


def implemented_kernels(policy: object) -> list[str]:
    """The compiled kernels a policy object gives (``KERNELS``; None: none)."""
    # looked up without binding (a numba dispatcher held by a class binds to its instances as a
    # method): the instance's own attributes, then its classes' (``inspect.getattr_static``'s
    # answer for a plain object, at a tenth of its cost: it ran ~70 times a simulate)
    own = getattr(policy, "__dict__", {})
    mro = type(policy).__mro__
    out = []
    for k in KERNELS:
        v = own.get(k) if k in own else next((c.__dict__[k] for c in mro if k in c.__dict__), None)
        if v is not None:
            out.append(k)
    return out


def implemented_hooks(policy: object) -> list[str]:
    """The hooks a policy object overrides (methods of :class:`Policy` itself do not count)."""
    out = []
    for hook in HOOKS:
        fn = getattr(policy, hook, None)
        if fn is None or not callable(fn):
            continue
        base = getattr(Policy, hook, None)
        if base is not None and getattr(fn, "__func__", None) is base:
            continue
        out.append(hook)
    return out


def families(policy: object, hooks: list[str] | None = None, kernels: list[str] | None = None) -> list[str]:
    """The families a policy decides; ``hooks`` / ``kernels``: its ``implemented_hooks`` /
    ``implemented_kernels`` where the caller has them already."""
    if hooks is None:
        hooks = implemented_hooks(policy)
    if kernels is None:
        kernels = implemented_kernels(policy)
    fams = {HOOKS[h] for h in hooks} | {KERNELS[k][0] for k in kernels}
    return sorted(fams, key=FAMILIES.index)


def summary(cls_or_obj: object) -> str:
    """First line of a policy's docstring."""
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def _convert(policy: str, key: str, value: Any, default: Any) -> Any:
    """Give a parameter the type of its default (values from the CLI arrive as strings)."""
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                v = value.strip().lower()
                if v in ("1", "true", "yes", "on"):
                    return True
                if v in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(str(value).replace("_", "")) if isinstance(value, str) else int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, str):
            return str(value)
    except (TypeError, ValueError):
        raise PolicyError(
            f"policy {policy!r}: parameter {key}={value!r} is not a {type(default).__name__}"
        ) from None
    return value
