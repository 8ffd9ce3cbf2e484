"""The wire format between the run and an isolated policy process (docs/security.md).

Plain JSON in length-prefixed frames, never pickle: a message from the policy's process is data
the run parses, not code it runs. numpy arrays travel as ``{"__nd__": [dtype, shape, base64]}``
with an allowlist of dtypes and come out read-only; anything else that JSON cannot say is an
error on the side that sends it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

MAX_MESSAGE = 64 << 20  #: bytes a message may have (a hook's decision or a context snapshot)
_DTYPES = frozenset({"|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f8"})


class WireError(Exception):
    """A message that cannot be encoded or decoded."""


def _default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        a = np.ascontiguousarray(o)
        if a.dtype.str not in _DTYPES or a.ndim > 2:
            raise WireError(f"cannot send an array of {a.dtype} with {a.ndim} dimensions")
        return {"__nd__": [a.dtype.str, list(a.shape), base64.b64encode(a.tobytes()).decode()]}
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, tuple | set | frozenset):
        return list(o)
    raise WireError(f"cannot send a {type(o).__name__}")


def _hook(d: dict[str, Any]) -> Any:
    nd = d.get("__nd__")
    if nd is None:
        return d
    if not (
        isinstance(nd, list)
        and len(nd) == 3
        and nd[0] in _DTYPES
        and isinstance(nd[1], list)
        and len(nd[1]) <= 2
        and all(type(n) is int and n >= 0 for n in nd[1])
        and isinstance(nd[2], str)
    ):
        raise WireError("malformed array")
    raw = base64.b64decode(nd[2], validate=True)
    dt = np.dtype(nd[0])
    if len(raw) != int(np.prod(nd[1], dtype=np.int64)) * dt.itemsize:
        raise WireError("array size does not match its shape")
    a = np.frombuffer(raw, dtype=dt).reshape(nd[1])
    a.flags.writeable = False
    return a


def encode(msg: dict[str, Any]) -> bytes:
    try:
        data = json.dumps(msg, default=_default, allow_nan=True, check_circular=True).encode(
            "utf-8", "surrogatepass"
        )
    except (TypeError, ValueError, RecursionError, OverflowError) as e:
        raise WireError(f"cannot encode: {type(e).__name__}: {e}") from None
    if len(data) > MAX_MESSAGE:
        raise WireError(f"message of {len(data)} bytes is over the {MAX_MESSAGE >> 20} MiB limit")
    return data


def decode(data: bytes) -> dict[str, Any]:
    try:
        msg = json.loads(data.decode("utf-8", "surrogatepass"), object_hook=_hook)
    except (ValueError, RecursionError, TypeError) as e:  # JSON, base64, nesting
        raise WireError(f"cannot decode: {type(e).__name__}: {str(e)[:120]}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("t"), str):
        raise WireError("a message is a JSON object with a type 't'")
    return msg
