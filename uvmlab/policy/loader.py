"""Loading policies: built-in names, user files, parameters, composition.

A *policy spec* names one or more policies joined by ``+`` (one per family: prefetch, eviction,
replay, thrashing), each with optional parameters in parentheses::

    mru
    stride+lfu
    tree(threshold=30)+belady
    path/to/my_policy.py                 # the one Policy class defined in the file
    path/to/my_policy.py:MyPolicy(k=4)   # a named class, with a parameter

``default`` (or ``driver``) means no policy: the driver's own behaviour.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from uvmlab.core.errors import PolicyError
from uvmlab.policy import base
from uvmlab.policy.guard import Guard
from uvmlab.policy.isolate import DEFAULT_CPU_S, DEFAULT_MEMORY, IsolatedPolicy
from uvmlab.policy.library import REGISTRY
from uvmlab.policy.spec import DEFAULT_POLICY, NO_POLICY, parse_args, spec_items, split_top
from uvmlab.policy.spec import ITEM as _ITEM
from uvmlab.policy.spec import looks_like_path as _looks_like_path

__all__ = [
    "DEFAULT_POLICY",
    "NO_POLICY",
    "build_hooks",
    "builtin_policies",
    "load_policies",
    "load_policy",
    "parse_args",
    "parse_param_overrides",
    "split_top",
]


def builtin_policies() -> dict[str, type]:
    """Name -> class of every built-in policy."""
    return dict(REGISTRY)


def load_policy(item: str, params: Mapping[str, Any] | None = None) -> Any:
    """One policy object from ``NAME[(k=v,...)]`` or ``FILE.py[:Class][(k=v,...)]``."""
    m = _ITEM.match(item)
    if not m:
        raise PolicyError(f"cannot read policy {item!r}: expected NAME or NAME(key=value,...)")
    name = m.group("name")
    args = parse_args(m.group("args"), name) if m.group("args") else {}
    args.update(params or {})
    if _looks_like_path(name):
        cls = _load_file_class(name)
    else:
        reg = builtin_policies()
        key = name.strip().lower().replace("_", "-")
        if key not in reg:
            close = difflib.get_close_matches(key, list(reg), n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise PolicyError(
                f"unknown policy {name!r}{hint}; `uvmlab policy list` shows the "
                "built-ins, or give a path/to/file.py"
            )
        cls = reg[key]
    try:
        return cls(**args)
    except PolicyError:
        raise
    except BaseException as e:  # a user's __init__ may raise anything: one line, not a traceback
        if isinstance(e, KeyboardInterrupt):
            raise
        raise PolicyError(f"policy {name!r}: {type(e).__name__}: {' '.join(str(e).split())[:200]}") from None


def load_policies(spec: Any, params: Mapping[str, Mapping[str, Any]] | None = None) -> list[Any]:
    """Policy objects from a spec string, a policy object or class, or a list of those.

    ``params`` maps a policy name to parameter overrides (the CLI's ``-P name.key=value``).
    """
    params = params or {}
    if spec is None:
        return []
    if isinstance(spec, str):
        return [load_policy(item, extra) for item, extra in spec_items(spec, params)]
    if isinstance(spec, type):
        return [spec()]
    if isinstance(spec, list | tuple):
        return [p for s in spec for p in load_policies(s, params)]
    if (
        not base.implemented_hooks(spec)
        and not base.implemented_kernels(spec)
        and not getattr(spec, "module_params", None)
    ):
        raise PolicyError(f"{spec!r} implements none of the policy hooks ({', '.join(base.HOOKS)})")
    return [spec]


def build_hooks(
    policies: Any,
    *,
    budget_ms: float | None = None,
    hard_limit_s: float | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    isolate: bool = False,
    isolate_cpu_s: int = DEFAULT_CPU_S,
    isolate_memory: int = DEFAULT_MEMORY,
) -> Guard:
    """The guarded hooks object for ``simulate(..., policies=...)`` (a Guard is used as is).

    ``isolate``: each policy runs in a process of its own under limits (docs/security.md);
    policies must then be named by a spec string (a built-in name or a file), since a Python
    object cannot be moved to another process without running it here first."""
    if isinstance(policies, Guard):
        return policies
    hard = hard_limit_s if hard_limit_s is not None else max(10.0, 20 * (budget_ms or 50.0) / 1000)
    if isolate:
        specs = [policies] if isinstance(policies, str) else policies
        if not isinstance(specs, list | tuple) or not all(isinstance(s, str) for s in specs):
            raise PolicyError("--isolate needs policies named by spec (a built-in name or a file)")
        objs: list[Any] = []
        try:
            for s in specs:
                for item, extra in spec_items(s, params):
                    objs.append(
                        IsolatedPolicy(
                            item, extra, hard_limit_s=hard, cpu_s=isolate_cpu_s, memory=isolate_memory
                        )
                    )
            return Guard(objs, budget_ms=budget_ms or 50.0, hard_limit_s=hard)
        except BaseException:
            for o in objs:
                o.close()
            raise
    return Guard(load_policies(policies, params), budget_ms=budget_ms or 50.0, hard_limit_s=hard_limit_s)


def parse_param_overrides(assignments: Iterable[str]) -> dict[str, dict[str, str]]:
    """``["tree.threshold=30", ...]`` -> ``{"tree": {"threshold": "30"}}``."""
    out: dict[str, dict[str, str]] = {}
    for a in assignments:
        if "=" not in a or "." not in a.split("=", 1)[0]:
            raise PolicyError(f"policy parameter {a!r} is not POLICY.KEY=VALUE")
        lhs, v = a.split("=", 1)
        pol, key = lhs.rsplit(".", 1)
        out.setdefault(pol.strip().lower(), {})[key.strip()] = v.strip()
    return out


def _load_file_class(name: str) -> type:
    path_s, cls_name = name, ""
    if ".py:" in name:
        path_s, cls_name = name.rsplit(".py:", 1)
        path_s += ".py"
    path = Path(path_s.strip())
    cls_name = cls_name.strip()
    if not path.is_file():
        raise PolicyError(f"policy file {path} does not exist")
    modname = "uvmlab_user_policy_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    try:
        spec = importlib.util.spec_from_file_location(modname, path)
        if spec is None or spec.loader is None:
            raise PolicyError(f"cannot load policy file {path}")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        spec.loader.exec_module(mod)
    except PolicyError:
        raise
    except BaseException as e:  # a broken user file must not take the CLI down with a traceback
        if isinstance(e, KeyboardInterrupt):
            raise
        raise PolicyError(
            f"cannot load policy file {path}: {type(e).__name__}: {' '.join(str(e).split())}"
        ) from None
    if cls_name:
        cls = getattr(mod, cls_name, None)
        if not isinstance(cls, type):
            raise PolicyError(f"policy file {path} has no class {cls_name!r}")
        return cls
    found = [
        v
        for v in vars(mod).values()
        if isinstance(v, type)
        and v.__module__ == modname
        and (issubclass(v, base.Policy) or any(callable(getattr(v, h, None)) for h in base.HOOKS))
    ]
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise PolicyError(
            f"policy file {path} defines {len(found)} policy classes ({names}); name one as {path}:ClassName"
        )
    return found[0]
