"""The policy process of ``--isolate`` (docs/security.md): load one policy, then answer hook calls.

Started by ``uvmlab.policy.isolate`` as ``python -m uvmlab.policy.isolate_child FD`` with only
the socket FD open, in its own session, under resource limits. It loads the policy from the
text the run sent (it needs no access to the policy's file), then closes the door behind it:
no new descriptors (RLIMIT_NOFILE at the highest one open). Each call gets a snapshot of the
hook's context; what the snapshot does not hold (``ctx.used``, ``ctx.owner(...)``,
``ctx.next_use(...)``) is asked of the run, which answers with copies. Requests recorded on the
context (``move_head``, ``migrate``) go back with the decision, for the guard to check.
"""

from __future__ import annotations

import os
import pwd
import resource
import sys
import types
from multiprocessing.connection import Connection
from typing import Any

from uvmlab.policy import base, loader
from uvmlab.policy.context import AllocInfo, RunInfo
from uvmlab.policy.wire import MAX_MESSAGE, WireError, decode, encode

_REGIONS = ("max_region", "node", "subregion")
NOBODY = 65534  #: the unprivileged user a policy process started as root becomes (if unnamed)


class _Snapshot:
    """A hook context in the policy's process: the values the run sent, requests kept locally,
    and the rest asked of the run."""

    def __init__(self, link: _Link, attrs: dict[str, Any], lazy: dict[str, str]) -> None:
        d = self.__dict__
        d["_link"], d["_lazy"], d["_req"], d["_cache"] = link, lazy, [], {}
        for k, v in attrs.items():
            if k in _REGIONS and isinstance(v, list):
                v = base.Region(*v)
            elif isinstance(v, dict) and "__alloc__" in v:
                v = AllocInfo(**v["__alloc__"])
            d[k] = v

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a hook context is read-only (tried to set {name!r})")

    def __delattr__(self, name: str) -> None:  # as an in-process context: deleting is writing
        raise AttributeError(f"a hook context is read-only (tried to delete {name!r})")

    def __getattr__(self, name: str) -> Any:
        kind = self._lazy.get(name)
        if kind is None:
            raise AttributeError(f"a hook context has no attribute {name!r}")
        if kind == "method":
            return lambda *args: self._link.ask(name, list(args))
        cache = self._cache
        if name not in cache:
            cache[name] = self._link.ask(name, None)
        return cache[name]

    def migrate(self, first_page: int, n_pages: int) -> None:
        self._req.append(["migrate", first_page, n_pages])

    def move_head(self, chunk: int) -> None:
        self._req.append(["move", chunk, "head"])

    def move_tail(self, chunk: int) -> None:
        self._req.append(["move", chunk, "tail"])


class _Link:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def send(self, msg: dict[str, Any]) -> None:
        self.conn.send_bytes(encode(msg))

    def recv(self) -> dict[str, Any]:
        return decode(self.conn.recv_bytes(MAX_MESSAGE))

    def ask(self, name: str, args: list | None) -> Any:
        self.send({"t": "query", "name": name, "args": args})
        reply = self.recv()
        if reply.get("t") != "answer":
            raise RuntimeError("the run did not answer the query")
        if "error" in reply:
            raise AttributeError(str(reply["error"]))
        return reply.get("value")


def _load(msg: dict[str, Any]) -> Any:
    item, params, source = msg["item"], msg.get("params") or {}, msg.get("source")
    if source is None:
        return loader.load_policy(item, params)
    m = loader._ITEM.match(item)
    name = m.group("name") if m else item
    args = loader.parse_args(m.group("args"), name) if m and m.group("args") else {}
    args.update(params)
    path, cls_name = source["path"], source.get("cls", "")
    mod = types.ModuleType(source["module"])
    mod.__file__ = path
    sys.modules[mod.__name__] = mod
    exec(compile(source["text"], path, "exec"), mod.__dict__)  # the policy's own code, isolated
    if cls_name:
        cls = getattr(mod, cls_name, None)
        if not isinstance(cls, type):
            raise base.PolicyError(f"policy file {path} has no class {cls_name!r}")
    else:
        found = [
            v
            for v in vars(mod).values()
            if isinstance(v, type)
            and v.__module__ == mod.__name__
            and (issubclass(v, base.Policy) or any(callable(getattr(v, h, None)) for h in base.HOOKS))
        ]
        if len(found) != 1:
            names = ", ".join(c.__name__ for c in found) or "none"
            raise base.PolicyError(
                f"policy file {path} defines {len(found)} policy classes "
                f"({names}); name one as {path}:ClassName"
            )
        cls = found[0]
    return cls(**args)


def _describe(p: Any) -> dict[str, Any]:
    label = p.label if isinstance(p, base.Policy) else (getattr(p, "name", "") or type(p).__name__)
    mp = dict(getattr(p, "module_params", None) or {})
    return {
        "t": "loaded",
        "label": str(label),
        "hooks": base.implemented_hooks(p),
        "module_params": mp,
        "needs_future": bool(getattr(p, "needs_future", False)),
        "start": callable(getattr(p, "start", None)),
    }


def _close_the_door(conn: Connection) -> Connection:
    """No descriptor can be opened from here on: files, sockets and pipes all need one. The
    socket becomes descriptor 0, every other one is closed and RLIMIT_NOFILE is 1. Started as
    root, the process then becomes the unprivileged ``nobody``, so that RLIMIT_NPROC, which
    does not hold root, stops it from starting processes (and the file system treats it as a
    stranger)."""
    uid = gid = NOBODY
    if os.geteuid() == 0:
        try:  # looked up while files can still be opened
            pw = pwd.getpwnam("nobody")
            uid, gid = pw.pw_uid, pw.pw_gid
        except KeyError:
            pass
    fd = conn.fileno()
    if fd != 0:
        os.dup2(fd, 0, inheritable=False)
    conn._handle = None  # type: ignore[attr-defined]  # the descriptor is 0 now; do not close it twice
    os.closerange(1, 1 << 16)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1, 1))
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    return Connection(0)


def _started_a_process() -> bool:
    """Whether the policy's process has a child (one it started despite the limits): a hook
    that does is ejected, and the run kills the process group with the policy's process."""
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return False
    return True


def _run_info(d: dict[str, Any]) -> RunInfo:
    d = dict(d)
    d["allocs"] = tuple(AllocInfo(**a) for a in d.get("allocs", ()))
    d["tenants"] = tuple(d.get("tenants", ()))
    return RunInfo(**d)


def _no_cache_writes() -> None:
    """This process may write no file (RLIMIT_FSIZE 0, isolate.py): numba loads what its
    on-disk cache holds and compiles the rest in memory, instead of failing to save it."""
    from numba.core import caching

    def skip(self: Any, sig: Any, data: Any) -> None:  # noqa: ARG001 (Cache.save_overload's signature)
        return None

    caching.Cache.save_overload = skip


def serve(fd: int) -> None:
    conn = Connection(fd)
    link = _Link(conn)
    try:
        _no_cache_writes()
        policy = _load(link.recv())
        warm = getattr(policy, "warm", None)
        if callable(warm):
            warm()  # compiles the policy's numba kernels while files can still be opened
        reply = _describe(policy)
    except BaseException as e:  # noqa: BLE001 - every failure is reported, then we leave
        reply = {
            "t": "error",
            "msg": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}",
            "policy_error": isinstance(e, base.PolicyError),
        }
        link.send(reply)
        return
    link.send(reply)
    conn = _close_the_door(conn)
    link = _Link(conn)
    while True:
        try:
            msg = link.recv()
        except (EOFError, OSError, WireError):
            return
        if msg["t"] == "bye":
            return
        hook = str(msg.get("hook"))
        try:
            if hook == "start":
                arg: Any = _run_info(msg["info"])
                req: list = []
            else:
                arg = _Snapshot(link, msg.get("attrs") or {}, msg.get("lazy") or {})
                req = arg._req
            value = getattr(policy, hook)(arg)
            out: dict[str, Any] = {"t": "ret", "value": value, "req": req}
            if _started_a_process():
                out = {"t": "raised", "type": "process", "msg": "the hook started a process"}
            data = encode(out)
        except BaseException as e:  # noqa: BLE001 - what a hook throws goes back to the guard
            if isinstance(e, WireError):
                out = {
                    "t": "raised",
                    "type": "unsendable",
                    "msg": f"returned or recorded something that cannot leave its process ({e})",
                }
            else:
                out = {"t": "raised", "type": type(e).__name__, "msg": " ".join(str(e).split())[:200]}
            data = encode(out)
        conn.send_bytes(data)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
