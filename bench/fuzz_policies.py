"""Fuzz the guard with hostile policies: every one must be ejected, and the run must complete
with the driver's invariants holding.

A case is one policy file, written from a seed: a hook (each of the seven, and ``start``) that
at its k-th call raises an exception of some class (``Exception`` subclasses, ``KeyboardInterrupt``,
``SystemExit``, ``GeneratorExit``, a custom ``BaseException``), sleeps past the budget, loops,
swallows ``BaseException`` in a loop, returns a hostile value (2^70, NaN, an ``int`` subclass
that changes value on use, an object whose ``__int__`` raises, an endless iterator, deep
nesting), mutates what it was given, forges counters through the context, or changes signal
handlers. The run uses ``check_invariants=True``; a case passes when the result has
``policy_ejections >= 1`` and the ejection names the hook, and no invariant broke.

Behaviours that only an isolated policy can survive (a hook that swallows the watchdog, stops
its own process or replaces the signal handlers) run with ``isolate=True``; the rest run both
ways.

    python bench/fuzz_policies.py --cases 2000 --time-limit 900 --json
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzlib import arg_parser, run_parsed  # noqa: E402

try:
    from uvmlab.core.errors import UvmlabError
except ImportError:  # the layout before the one-way layers
    from uvmlab.errors import UvmlabError  # type: ignore[no-redef]

# hook -> a workload that calls it early and often, and its GPU memory
HOOKS = {
    "prefetch_before_compute": ("random:size=16MiB,seed=3", None),
    "prefetch_on_tree_iter": ("random:size=16MiB,seed=3", None),
    "chunk_activate": ("stream:size=24MiB,passes=2", "8MiB"),
    "chunk_used": ("stream:size=24MiB,passes=2", "8MiB"),
    "eviction_prepare": ("stream:size=24MiB,passes=2", "8MiB"),
    "decide_replay": ("random:size=16MiB,seed=3", None),
    "thrashing_hint": ("pingpong:size=8MiB,rounds=3", None),
    "start": ("stream:size=8MiB,passes=1", None),
}
# what a well-behaved hook of each kind returns (before it turns hostile)
BENIGN = {
    "prefetch_before_compute": "2 if 'prefetch_on_tree_iter' in HOOKED else 0",
    "prefetch_on_tree_iter": "False",
    "chunk_activate": "None",
    "chunk_used": "0",
    "eviction_prepare": "None",
    "decide_replay": "0",
    "thrashing_hint": "None",
    "start": "None",
}

RAISES = (
    "ValueError('bad')",
    "ZeroDivisionError()",
    "RecursionError()",
    "MemoryError()",
    "AttributeError('x')",
    "StopIteration()",
    "KeyboardInterrupt()",
    "SystemExit(3)",
    "SystemExit(0)",
    "GeneratorExit()",
    "Custom()",
    "HookTimeoutLike()",
)
VALUES = (
    "2**70",
    "-2**70",
    "float('nan')",
    "float('inf')",
    "'1'",
    "b'1'",
    "Evil()",
    "Shifty(0)",
    "Shifty(1)",
    "Shifty(-1)",
    "Shifty(2)",
    "BadLen()",
    "endless()",
    "nested(5000)",
    "[0] * 10**7",
    "np.int64(2**62)",
    "np.uint64(2**64 - 1)",
    "np.array([1, 2])",
    "(0, 2**70)",
    "(-1, 3)",
    "(0.0, 4.0)",
    "[(0, 'head')] * 100000",
    "[(Shifty(0), 'head')]",
    "[(0, 'sideways')]",
    "np.float64(1.0)",
    "True",
    "3",
    "-2",
    "object()",
    "lambda: 0",
    "type",
    "...",
    "{'a': 1}",
    "set()",
)
MUTATIONS = (
    "ctx.used[0] = 1",
    "ctx.faulted[0] = True",
    "ctx.block = -1",
    "object.__setattr__(ctx, 'block', 7)",
    "ctx._guard.ejections = -5",
    "ctx._guard.drv.counters['policy_ejections'] = -5",
    "ctx._guard.drv.va.residency[:] = 0",
    "ctx._req.append(('move', -5, 'head'))",
    "ctx._req.extend([('migrate', 0, 2**40)] * 3)",
    "ctx.migrate(2**62, 2**62)",
    "ctx.migrate(Shifty(0), 1)",
    "ctx.move_head(Shifty(0))",
    "ctx.move_tail(2**70)",
    "ctx.__class__ = int",
    "del ctx.block",
    "ctx._view.allocs = ()",
    "ctx.pages[0] = 1",
)
# writes to the hook's own snapshot that Python cannot forbid: harmless, so not ejected; the run
# must still complete with the invariants holding and the counters its own
HARMLESS = ("object.__setattr__(ctx, 'block', 7)",)
# need isolation: in-process these defeat the watchdog or the process itself
ISOLATE_ONLY = ("swallow", "sigign", "sigstop", "exit", "alarm", "fork", "files", "hog")


def policy_source(seed: int) -> tuple[str, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    hook = str(rng.choice(list(HOOKS)))
    kind = str(
        rng.choice(
            ["raise", "value", "mutate", "sleep", "loop", *ISOLATE_ONLY],
            p=[0.22, 0.3, 0.16, 0.06, 0.06] + [0.2 / len(ISOLATE_ONLY)] * len(ISOLATE_ONLY),
        )
    )
    if hook == "start" and kind in ("value", "mutate"):
        kind = "raise"
    at = 1 if hook == "start" else int(rng.choice([1, 1, 2, 5]))
    what = ""
    if kind == "raise":
        what = str(rng.choice(RAISES))
        bad = f"raise {what}"
    elif kind == "value":
        what = str(rng.choice(VALUES))
        if hook == "prefetch_on_tree_iter" and what in ("True", "3", "-2"):
            what = "2**70"
        if what in ("True", "3", "-2") and hook in ("chunk_activate",):
            what = "2**70"
        bad = f"return {what}"
    elif kind == "mutate":
        what = str(rng.choice(MUTATIONS))
        bad = f"{what}\n        return {BENIGN[hook]}"
    elif kind == "sleep":
        at = max(at, 2)  # a hook's first call is exempt from the budget (it may compile)
        bad = "time.sleep(3.0)\n        return " + BENIGN[hook]
    elif kind == "loop":
        bad = "while True:\n            pass"
    elif kind == "swallow":
        bad = (
            "while True:\n            try:\n                time.sleep(0.05)\n"
            "            except BaseException:\n                pass"
        )
    elif kind == "sigign":
        bad = (
            "import signal\n        for s in (signal.SIGINT, signal.SIGALRM, signal.SIGUSR2, "
            "signal.SIGTERM):\n            signal.signal(s, signal.SIG_IGN)\n"
            "        time.sleep(3.0)\n        return " + BENIGN[hook]
        )
    elif kind == "sigstop":
        bad = "import os, signal\n        os.kill(os.getpid(), signal.SIGSTOP)\n        return None"
    elif kind == "exit":
        bad = "import os\n        os._exit(0)"
    elif kind == "alarm":
        bad = (
            "import signal\n        signal.setitimer(signal.ITIMER_REAL, 0.001)\n"
            "        time.sleep(3.0)\n        return " + BENIGN[hook]
        )
    elif kind == "fork":
        bad = "import os\n        os.fork()\n        return " + BENIGN[hook]
    elif kind == "files":
        bad = "open('uvmlab-fuzz-policy-escape.txt', 'w').write('x')\n        return " + BENIGN[hook]
    else:  # hog
        bad = "x = bytearray(64 << 30)\n        return " + BENIGN[hook]
    hooked = [hook] + (
        ["prefetch_on_tree_iter"] if hook == "prefetch_before_compute" and rng.random() < 0.5 else []
    )
    if hook == "prefetch_on_tree_iter":
        hooked.append("prefetch_before_compute")
    methods = []
    for h in hooked:
        body = bad if h == hook else f"return {BENIGN[h]}"
        arg = "info" if h == "start" else "ctx"
        methods.append(f"""
    def {h}(self, {arg}):
        self.calls[{h!r}] = self.calls.get({h!r}, 0) + 1
        if self.calls[{h!r}] < {at}:
            return {BENIGN[h]}
        {body}
""")
    src = textwrap.dedent("""\
        import time
        import numpy as np
        from uvmlab.policy import Policy

        HOOKED = {hooked!r}


        class Custom(BaseException):
            pass


        class HookTimeoutLike(BaseException):
            pass


        class Evil:
            def __int__(self):
                raise RuntimeError("no int")
            __index__ = __int__


        class Shifty(int):
            # passes an isinstance(int) check, then is something else on every use
            def __index__(self):
                return 10**9
            def __int__(self):
                return 10**9
            def __eq__(self, o):
                return True
            def __hash__(self):
                return 0


        class BadLen(list):
            def __len__(self):
                raise RuntimeError("no len")


        def endless():
            while True:
                yield (0, "head")


        def nested(n):
            x = []
            for _ in range(n):
                x = [x]
            return x


        class Hostile(Policy):
            name = "hostile"

            def __init__(self, **kw):
                super().__init__(**kw)
                self.calls = {{}}
        """).format(hooked=hooked) + "".join(textwrap.indent(m, "") for m in methods)
    return src, {
        "hook": hook,
        "kind": f"{kind}",
        "what": what,
        "at": at,
        "isolate": kind in ISOLATE_ONLY or bool(rng.random() < 0.3),
    }


def run_case(case: dict[str, Any]) -> tuple[str, str, str]:
    from uvmlab.api import simulate

    src, meta = policy_source(case["seed"])
    d = Path(tempfile.mkdtemp(prefix="uvmlab-fuzz-policy-"))
    path = d / "hostile.py"
    path.write_text(src)
    spec, mem = HOOKS[meta["hook"]]
    kind = f"{meta['kind']}{'/isolated' if meta['isolate'] else ''}"
    import inspect
    import os

    from uvmlab.policy.loader import build_hooks

    # a budget far above what a benign call takes on a loaded machine: only the hostile call
    # (a 3 s sleep, past the 2 s hard limit) may run over it
    hk: dict[str, Any] = {"hard_limit_s": 2.0, "budget_ms": 1000.0}
    if meta["isolate"]:
        if "isolate" not in inspect.signature(build_hooks).parameters:
            return "skipped", "no isolate in this tree", kind
        hk["isolate"] = True

    cwd = os.getcwd()
    os.chdir(d)
    try:
        hooks = build_hooks(str(path), **hk)
        res = simulate(spec, gpu_memory=mem, check_invariants=True, policies=hooks)
    except UvmlabError as e:
        return "bad", f"run refused: {type(e).__name__}: {e}", kind
    finally:
        os.chdir(cwd)
    if (d / "uvmlab-fuzz-policy-escape.txt").exists():
        return "bad", "the policy wrote a file", kind
    ej = res.meta.get("policy_ejected", [])
    if res.totals.get("policy_ejections", 0) < 1 or not ej:
        calls = hooks.stats.get(meta["hook"], {}).get("calls", 0)
        if calls < meta["at"]:  # the hostile call never came: the run ended first
            return "not-reached", "", kind
        if meta["what"] in HARMLESS or "Shifty" in meta["what"]:
            # coerced once to the plain value it stores (a valid one here): used as checked
            return "ok", "", kind
        return "bad", f"not ejected ({meta['hook']} {meta['kind']} {meta['what']})", kind
    if ej[0]["hook"] != meta["hook"]:
        return "bad", f"ejected in {ej[0]['hook']}, not {meta['hook']}: {ej[0]['reason']}", kind
    if res.totals["policy_ejections"] != len(ej):
        return "bad", "counters disagree with the ejection record", kind
    if res.fatal:
        return "bad", f"run ended fatally: {res.fatal}", kind
    return "ok", "", kind


def cases(seed: int, n: int):
    for i in range(n):
        yield {"seed": seed * 1_000_003 + i}


def warm() -> None:
    from uvmlab.api import simulate

    for spec, mem in set(HOOKS.values()):
        simulate(spec, gpu_memory=mem, check_invariants=True, policies="mru")


def main(argv: list[str] | None = None) -> int:
    ap = arg_parser(__doc__.splitlines()[0], cases=2000, time_limit=900)
    a = ap.parse_args(argv)
    warm()
    rep = run_parsed("fuzz_policies", a, cases(a.seed, a.cases), run_case)
    rep.print(a.json)
    return 1 if rep.failures else 0


if __name__ == "__main__":
    sys.exit(main())
