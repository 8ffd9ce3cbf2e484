"""Policy specs as text: ``NAME``, ``NAME(k=v,...)``, ``path/file.py[:Class]``, joined by ``+``.

Parsing only, with no import of any policy, so that both the loader and an isolated policy's
process (``uvmlab.policy.isolate``) read a spec the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from uvmlab.core.errors import PolicyError

#: the driver's own behaviour, no hooks: one name, "default"; "none" and "driver" read the same
DEFAULT_POLICY = "default"
NO_POLICY = (DEFAULT_POLICY, "none", "driver")
ITEM = re.compile(r"^\s*(?P<name>[^()]+?)\s*(?:\((?P<args>.*)\))?\s*$", re.S)
MAX_SPEC = 4096  #: characters in one spec: far beyond any real composition


def split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses."""
    if len(text) > MAX_SPEC:
        raise PolicyError(f"policy spec of {len(text)} characters (at most {MAX_SPEC})")
    out: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [s.strip() for s in out if s.strip()]


def parse_args(text: str, where: str) -> dict[str, str]:
    args: dict[str, str] = {}
    for part in split_top(text, ","):
        if "=" not in part:
            raise PolicyError(f"policy {where}: parameter {part!r} is not key=value")
        k, v = part.split("=", 1)
        args[k.strip()] = v.strip()
    return args


def looks_like_path(name: str) -> bool:
    return name.split(":")[0].endswith(".py") or "/" in name or "\\" in name


def spec_items(spec: str, params: Mapping[str, Mapping[str, Any]] | None = None) -> list[tuple[str, dict]]:
    """The items of a composition, each with its ``-P`` overrides; ``default`` items dropped."""
    params = params or {}
    out = []
    for item in split_top(spec, "+"):
        m = ITEM.match(item)
        name = m.group("name").strip().lower() if m else item
        if name in NO_POLICY:
            continue
        keys: tuple[str, ...]
        if looks_like_path(name):  # -P takes the file's stem: settle.py -> settle.KEY=V
            keys = (name, Path(name.split(".py")[0]).name, name.rsplit(":", 1)[-1])
        else:
            keys = (name.replace("_", "-"), name)
        out.append((item, dict(next((params[k] for k in keys if k in params), {}))))
    return out
