"""``--isolate``: each policy runs in a process of its own, under limits (docs/security.md).

An ``IsolatedPolicy`` stands in for the policy inside the run. The guard calls its hooks as it
calls an in-process policy's; each call sends a snapshot of the hook's context to the policy's
process and waits for the decision, answering the questions the policy asks on the way (the
eviction lists, ``owner``, ``next_use``) with copies. Nothing that crosses is a live object:
messages are JSON (``uvmlab.policy.wire``), never pickle.

The policy's process is started with no inherited descriptors but its socket, in a session of
its own (a Ctrl-C at the terminal reaches the run, not the policy), with limits on CPU time,
address space, file size, core dumps and, for a user other than root, processes; it dies with
the run (PR_SET_PDEATHSIG). A hook that does not answer within the hard limit has its process
killed (SIGKILL), whatever it does to its signals; one that dies, raises, or sends what the wire
cannot carry is ejected like any failing hook.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import weakref
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from uvmlab.core.errors import PolicyError
from uvmlab.policy import base
from uvmlab.policy.spec import ITEM, looks_like_path
from uvmlab.policy.watchdog import HookTimeout
from uvmlab.policy.wire import MAX_MESSAGE, WireError, decode, encode

DEFAULT_CPU_S = 3600  #: CPU seconds a policy process may use over the whole run
DEFAULT_MEMORY = 4 << 30  #: address space of a policy process (bytes)
START_TIMEOUT_S = 120.0  #: importing numpy and numba on a loaded machine takes a while
MAX_QUERIES = 100_000  #: questions one hook call may ask the run
_LOCAL = frozenset({"migrate", "move_head", "move_tail"})


class HookRaised(Exception):
    """A hook in a policy process failed; ``kind`` names what it raised."""

    def __init__(self, kind: str, msg: str) -> None:
        super().__init__(msg)
        self.kind = kind


def _limits(cpu_s: int, memory: int) -> None:  # runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if os.geteuid() != 0:  # root is not held by RLIMIT_NPROC; see docs/security.md
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _kill(proc: subprocess.Popen, conn: Connection | None) -> None:
    # the whole process group (its own session): a process the policy started goes with it;
    # only while the policy's process is not yet reaped, so that its id is still ours
    if proc.returncode is None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(5)
    if conn is not None:
        with contextlib.suppress(OSError):
            conn.close()


def _file_source(name: str) -> dict[str, Any] | None:
    """The text of a policy file, read here so that the policy's process needs no file access."""
    m = ITEM.match(name)
    item = m.group("name") if m else name
    if not looks_like_path(item):
        return None
    path_s, cls = item, ""
    if ".py:" in item:
        path_s, cls = item.rsplit(".py:", 1)
        path_s += ".py"
    path = Path(path_s.strip())
    if not path.is_file():
        raise PolicyError(f"policy file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyError(f"cannot read policy file {path}: {e}") from None
    module = "uvmlab_user_policy_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    return {"path": str(path), "cls": cls.strip(), "text": text, "module": module}


def _lazy_names(cls: type) -> dict[str, str]:
    """The public properties and methods of a context class: asked of the run on use."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        for k, v in vars(klass).items():
            if k.startswith("_") or k in _LOCAL:
                continue
            if isinstance(v, property):
                out[k] = "property"
            elif callable(v) and not isinstance(v, type):
                out[k] = "method"
    return out


def _snapshot(ctx: Any) -> dict[str, Any]:
    """The public attribute values of a context (copies already: contexts hold no live state)."""
    out: dict[str, Any] = {}
    for klass in type(ctx).__mro__:
        for k in getattr(klass, "__slots__", ()):
            if k.startswith("_") or k in out:
                continue
            v = getattr(ctx, k, None)
            if dataclasses.is_dataclass(v) and not isinstance(v, type):
                v = {"__alloc__": dataclasses.asdict(v)}
            out[k] = v
    return out


class IsolatedPolicy:
    """One policy in its own process; quacks like the policy for the guard."""

    isolated = True

    def __init__(
        self,
        item: str,
        params: dict[str, Any] | None = None,
        *,
        hard_limit_s: float = 10.0,
        cpu_s: int = DEFAULT_CPU_S,
        memory: int = DEFAULT_MEMORY,
    ) -> None:
        self.item = item
        self.hard_limit_s = hard_limit_s
        self.calls = 0
        self.round_trip_s = 0.0
        source = _file_source(item)
        parent, child = socket.socketpair()
        env = {
            k: v
            for k, v in os.environ.items()
            if k in ("PATH", "PYTHONPATH", "HOME", "LANG", "LC_ALL", "NUMBA_CACHE_DIR")
        }
        env.update(
            OMP_NUM_THREADS="1",
            OPENBLAS_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            NUMBA_NUM_THREADS="1",
            PYTHONDONTWRITEBYTECODE="1",
        )
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvmlab.policy.isolate_child", str(child.fileno())],
                pass_fds=(child.fileno(),),
                close_fds=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
                preexec_fn=lambda: _limits(cpu_s, memory),
            )  # noqa: PLW1509
        except OSError as e:
            parent.close()
            raise PolicyError(f"cannot start a process for policy {item!r}: {e}") from None
        finally:
            child.close()
        self.conn = Connection(os.dup(parent.fileno()))
        parent.close()
        self._finalizer = weakref.finalize(self, _kill, self.proc, self.conn)
        try:
            self._send({"t": "load", "item": item, "params": dict(params or {}), "source": source})
            reply = self._recv(START_TIMEOUT_S)
        except (HookRaised, TimeoutError, WireError) as e:
            self.close()
            raise PolicyError(f"policy {item!r} did not start in its process: {e}") from None
        if reply.get("t") != "loaded":
            self.close()
            msg = str(reply.get("msg", "no answer"))
            raise PolicyError(msg if reply.get("policy_error") else f"cannot load policy {item!r}: {msg}")
        self.name = self.label = str(reply.get("label") or item)
        self.module_params = dict(reply.get("module_params") or {})
        self.needs_future = bool(reply.get("needs_future"))
        self.hooks = [h for h in reply.get("hooks", []) if h in base.HOOKS]
        for h in self.hooks:
            setattr(self, h, self._bind(h))
        if reply.get("start"):
            self.start = self._bind("start")

    def __repr__(self) -> str:
        return f"IsolatedPolicy({self.item!r}, pid={self.proc.pid})"

    def _bind(self, hook: str) -> Any:
        def call(ctx: Any) -> Any:
            return self.call(hook, ctx)

        call.__name__ = hook
        return call

    # ---- the wire -------------------------------------------------------------------------
    def _send(self, msg: dict[str, Any]) -> None:
        try:
            self.conn.send_bytes(encode(msg))
        except (OSError, ValueError) as e:
            raise HookRaised("died", f"its process is gone ({self._exit()}): {e}") from None

    def _recv(self, timeout: float) -> dict[str, Any]:
        if not self.conn.poll(max(0.0, timeout)):
            self.close()
            raise TimeoutError(f"no answer within {timeout:g} s; its process was killed")
        try:
            return decode(self.conn.recv_bytes(MAX_MESSAGE))
        except (EOFError, OSError) as e:
            raise HookRaised("died", f"its process ended ({self._exit()})") from e

    def _exit(self) -> str:
        try:
            code = self.proc.wait(0.5)
        except subprocess.TimeoutExpired:
            return "still running"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    # ---- a hook call ----------------------------------------------------------------------
    def call(self, hook: str, ctx: Any) -> Any:
        """Run ``hook`` in the policy's process. Raises HookRaised on any failure and the
        guard's HookTimeout when the hard limit passes (the process is killed first)."""
        t0 = time.perf_counter()
        deadline = t0 + self.hard_limit_s
        if hook == "start":
            msg = {"t": "call", "hook": hook, "info": dataclasses.asdict(ctx)}
        else:
            msg = {"t": "call", "hook": hook, "attrs": _snapshot(ctx), "lazy": _lazy_names(type(ctx))}
        try:
            self._send(msg)
            for _ in range(MAX_QUERIES + 1):
                try:
                    reply = self._recv(deadline - time.perf_counter())
                except TimeoutError:
                    raise HookTimeout from None
                t = reply["t"]
                if t == "query":
                    self._answer(ctx, reply)
                    continue
                if t == "raised":
                    raise HookRaised(str(reply.get("type", "?"))[:60], str(reply.get("msg", "")))
                if t != "ret":
                    raise HookRaised("protocol", f"sent a message of type {t[:40]!r}")
                self._requests(ctx, reply.get("req"))
                return reply.get("value")
            raise HookRaised("protocol", f"asked more than {MAX_QUERIES} questions in one call")
        except WireError as e:
            self.close()
            raise HookRaised("protocol", str(e)) from None
        except BaseException:
            if self.proc.poll() is None and not isinstance(sys.exc_info()[1], HookRaised):
                self.close()  # interrupted mid-call (a timeout, a Ctrl-C): the process goes
            raise
        finally:
            self.calls += 1
            self.round_trip_s += time.perf_counter() - t0

    def _answer(self, ctx: Any, q: dict[str, Any]) -> None:
        name, args = q.get("name"), q.get("args")
        kinds = _lazy_names(type(ctx))
        if not isinstance(name, str) or name not in kinds:
            self._send({"t": "answer", "error": f"a hook context has no attribute {name!r}"})
            return
        try:
            if kinds[name] == "method":
                if not isinstance(args, list) or len(args) > 4:
                    raise TypeError(f"{name}() takes a few arguments")
                value = getattr(ctx, name)(*args)
            else:
                value = getattr(ctx, name)
            data = encode({"t": "answer", "value": value})
        except Exception as e:  # a bad question is the policy's failure, told to the policy
            data = encode({"t": "answer", "error": f"{type(e).__name__}: {str(e)[:200]}"})
        try:
            self.conn.send_bytes(data)
        except (OSError, ValueError) as e:
            raise HookRaised("died", f"its process is gone ({self._exit()})") from e

    @staticmethod
    def _requests(ctx: Any, req: Any) -> None:
        if not req:
            return
        out = getattr(ctx, "_req", None)
        if not isinstance(req, list) or out is None:
            raise HookRaised("protocol", "sent requests that are not a list")
        for r in req:
            if not (isinstance(r, list) and len(r) == 3 and r[0] in ("move", "migrate")):
                raise HookRaised("protocol", f"sent a malformed request {str(r)[:60]}")
            out.append(tuple(r))

    def close(self) -> None:
        """End the policy's process (SIGKILL if it does not leave at once)."""
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(OSError, ValueError):
                    self.conn.send_bytes(encode({"t": "bye"}))
        finally:
            self._finalizer.detach()
            _kill(self.proc, self.conn)  # every time: an interrupted earlier close may have missed it
