"""Fuzz the ``uvmlab`` command line: generated argument lines must never end in a traceback.

Each case is one argument line, built from a seed out of the real commands and options and
values a user could type or paste: NaN and infinite numbers, overflowing and negative sizes,
specs longer than a file name may be, unknown keys, unicode and mathtext in names, result and
workload files swapped, deeply nested or corrupt JSON, directories, FIFOs, a character device
(``mknod`` in the fuzzer's own temporary directory, never the machine's), symlinks and paths
under a regular file as outputs. A line runs in a forked worker through ``uvmlab.cli.main``
with stdout and stderr captured at the descriptor level, inside a scratch directory; one line
in ``SUBPROCESS_EVERY`` runs as a real ``python -m uvmlab`` process instead, so that the exit
status and stderr checked are also the user's own (kind ``subprocess`` in the report).

Passing: exit 0; or a non-zero exit with exactly one line on stderr, ``uvmlab: error: ...``
(or click's usage line) — never a traceback, a hang, or a replaced device or FIFO.

    python bench/fuzz_cli.py --cases 10000 --time-limit 1200 --json
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzlib import arg_parser, run_parsed  # noqa: E402

WORKLOADS = (
    "stream",
    "random",
    "stride",
    "stencil",
    "gemm",
    "graph",
    "pingpong",
    "llm",
    "vecsearch",
    "train",
    "sparse",
    "nosuch",
)
KEYS = (
    "size",
    "seed",
    "passes",
    "touches",
    "stride",
    "iters",
    "row",
    "tile",
    "levels",
    "rounds",
    "layers",
    "tokens",
    "queries",
    "nprobe",
    "steps",
    "every",
    "bogus",
)
VALUES = (
    "1MiB",
    "4MiB",
    "2MiB",
    "0",
    "-1",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "1e-400",
    "0.5",
    "99999999999999999999999TiB",
    "1PiB",
    "2PiB",
    "16TiB",
    "1e30",
    "0x10",
    "1_000",
    "",
    " ",
    "é",
    "名",
    "$\\frac{1}{2}$",
    "9" * 400,
    "1" * 30,
    "2**70",
    "1,2",
    "=",
    "None",
    "true",
    "64KiB",
    "3",
    "7",
    "100000000000",
)
SMALL = (
    "stream:size=2MiB,passes=1",
    "random:size=2MiB",
    "pingpong:size=2MiB,rounds=1",
    "stride:size=2MiB",
    "gemm:size=2MiB",
)
MEM = (
    "50%",
    "150%",
    "nan%",
    "inf%",
    "-5%",
    "0%",
    "1e400%",
    "%",
    "16GiB",
    "0",
    "-1GiB",
    "4MiB",
    "1PiB",
    "2PiB",
    "abc",
    "1e-300%",
)
PARAMS = (
    "uvm_perf_prefetch_enable=0",
    "uvm_perf_prefetch_threshold=101",
    "uvm_perf_prefetch_threshold=nan",
    "uvm_perf_fault_batch_count=0",
    "uvm_perf_fault_batch_count=99999999999999999999",
    "nosuch=1",
    "noequals",
    "uvm_perf_thrashing_enable=2",
    "uvm_perf_prefetch_min_faults=-1",
    "=",
    "a=b=c",
)
POLICIES = (
    "mru",
    "lru",
    "tree(threshold=30)",
    "tree(threshold=nan)",
    "tree(threshold=1e400)",
    "tree(nosuch=1)",
    "mru+lru",
    "stride+lfu",
    "default",
    "none",
    "nosuch",
    "((",
    "a+",
    "pol.py",
    "pol.py:Nope",
    "missing.py",
    "tree(threshold=" + "9" * 400 + ")",
)
INPUTS = (
    "result.json",
    "work.uvmw",
    "nested.json",
    "corrupt.json",
    "empty.json",
    "fifo",
    "chardev",
    "dir",
    "missing.json",
    "link.json",
    "sweepdir",
    "result.parquet",
    "bad.parquet",
    "x" * 300 + ".json",
    "pol.py",
)
OUTPUTS = (
    "out.json",
    "out.parquet",
    "out.html",
    "out.png",
    "fifo",
    "chardev",
    "dir",
    "file.txt/sub.json",
    "link-out.json",
    "y" * 300 + ".json",
    "-",
    "new/deep/out.json",
    "out.svg",
    "out.uvmw",
)
DIRS = ("sweep-out", "dir", "file.txt", "fifo", "chardev", "link-dir")


def _spec(rng: np.random.Generator) -> str:
    r = rng.random()
    if r < 0.45:
        return str(rng.choice(SMALL))
    if r < 0.55:
        return str(
            rng.choice(
                ("work.uvmw", "result.json", "missing.uvmw", "fifo", "chardev", "dir", "z" * 300 + ".uvmw")
            )
        )
    name = str(rng.choice(WORKLOADS))
    kv = [f"{rng.choice(KEYS)}={rng.choice(VALUES)}" for _ in range(int(rng.integers(0, 3)))]
    if rng.random() < 0.5:
        kv.insert(0, "size=2MiB")
    return name + (":" + ",".join(kv) if kv else "") + ("," * 300 if rng.random() < 0.02 else "")


def make_line(seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    # a sweep line starts a process pool (seconds each): rarer than the rest
    commands = (
        "run",
        "run",
        "run",
        "trace-info",
        "trace-write",
        "policy-run",
        "policy-check",
        "compare",
        "report",
        "timeline",
        "export",
        "plot",
        "params",
        "workloads",
        "policy-list",
        "gpu",
        "junk",
    )
    c = "sweep" if rng.random() < 0.01 else str(rng.choice(commands))
    opt = lambda p: rng.random() < p  # noqa: E731
    if c == "run":
        a = ["run", _spec(rng)]
        if opt(0.3):
            a += ["--gpu-memory", str(rng.choice(MEM))]
        if opt(0.2):
            a += ["-p", str(rng.choice(PARAMS))]
        if opt(0.2):
            a += ["--policy", str(rng.choice(POLICIES))]
        if opt(0.4):
            a += ["--out", str(rng.choice(OUTPUTS))]
        if opt(0.15):
            a += ["--timeline", str(rng.choice(OUTPUTS))]
        if opt(0.15):
            a += ["--parquet", str(rng.choice(OUTPUTS))]
        if opt(0.1):
            a += ["--gpu", str(rng.choice(("h100", "h200", "a100", "", "H200")))]
        if opt(0.1):
            a += ["--profile", str(rng.choice(("nosuch", "result.json", "nested.json", "dir")))]
        if opt(0.1):
            a += ["--params-file", str(rng.choice(INPUTS))]
        if opt(0.3):
            a.append("--json")
        return a
    if c == "trace-info":
        return ["trace", "info", str(rng.choice(INPUTS))]
    if c == "trace-write":
        return ["trace", "write", _spec(rng), str(rng.choice(OUTPUTS))]
    if c == "policy-run":
        a = ["policy", "run", _spec(rng), "--policy", str(rng.choice(POLICIES))]
        if opt(0.3):
            a += ["--budget-ms", str(rng.choice(("nan", "inf", "-1", "0", "1e400", "5")))]
        if opt(0.3):
            a += ["-P", str(rng.choice(("tree.threshold=nan", "x", "tree.threshold=30", "a.b=")))]
        if opt(0.3):
            a += ["--out", str(rng.choice(OUTPUTS))]
        return a
    if c == "policy-check":
        return ["policy", "check", str(rng.choice(POLICIES))]
    if c == "compare":
        a = [
            "compare",
            _spec(rng),
            "--policies",
            ",".join(str(rng.choice(POLICIES)) for _ in range(int(rng.integers(1, 3)))),
        ]
        if opt(0.3):
            a += ["--plot", str(rng.choice(OUTPUTS))]
        if opt(0.3):
            a += ["--gpu-memory", str(rng.choice(MEM))]
        return a
    if c in ("report", "export"):
        a = [c] + [str(rng.choice(INPUTS)) for _ in range(int(rng.integers(1, 3)))]
        if opt(0.6):
            a += ["--out", str(rng.choice(OUTPUTS if c == "report" else DIRS))]
        if c == "report" and opt(0.2):
            a += ["--title", str(rng.choice(VALUES))]
        return a
    if c == "timeline":
        return ["timeline", str(rng.choice(INPUTS)), "--out", str(rng.choice(OUTPUTS))]
    if c == "plot":
        a = [
            "plot",
            str(rng.choice(("residency", "activity", "compare", "pie"))),
            str(rng.choice(INPUTS)),
            "--out",
            str(rng.choice(OUTPUTS)),
        ]
        if opt(0.3):
            a += ["--dpi", str(rng.choice(("nan", "0", "100", "99999", "-5")))]
        return a
    if c == "sweep":
        a = ["sweep", str(rng.choice(SMALL)), "--out", str(rng.choice(DIRS)), "-j", "1"]
        if opt(0.5):
            a += [
                "-p",
                str(
                    rng.choice(
                        (
                            "uvm_perf_prefetch_enable=0,1",
                            "uvm_perf_prefetch_threshold=1,nan,101",
                            "nosuch=1,2",
                            "uvm_perf_prefetch_enable=",
                        )
                    )
                ),
            ]
        if opt(0.5):
            a += ["--gpu-memory", ",".join(str(rng.choice(MEM)) for _ in range(2))]
        if opt(0.3):
            a += ["--policies", str(rng.choice(POLICIES))]
        if opt(0.2):
            a += ["--engine", str(rng.choice(("local", "nosuch")))]
        return a
    if c == "params":
        return ["params"] + (["--all"] if opt(0.5) else [])
    if c == "workloads":
        return ["workloads"]
    if c == "policy-list":
        return ["policy", "list"]
    if c == "gpu":
        return [str(rng.choice(("gpu", "calibrate", "validate"))), str(rng.choice(("run", "x")))]
    return [str(rng.choice(("--nosuch", "", "run", "-", "--", "é"))) for _ in range(2)]


_FIXTURES: Path | None = None


def fixtures(root: Path) -> None:
    """The scratch directory every line runs in: inputs of every kind, special files."""
    from uvmlab.api import load_workload, simulate
    from uvmlab.workload.fileformat import write_workload

    root.mkdir(parents=True, exist_ok=True)
    res = simulate("stream:size=2MiB,passes=1")
    res.save(root / "result.json")
    res.to_parquet(root / "result.parquet")
    write_workload(load_workload("stream:size=2MiB,passes=1"), root / "work.uvmw")
    nested = "[" * 100000 + "]" * 100000
    (root / "nested.json").write_text(nested)
    (root / "corrupt.json").write_text('{"workload": "x", "totals": {"time_ns": "nan"}')
    (root / "empty.json").write_text("")
    (root / "bad.parquet").write_bytes(b"PAR1" + os.urandom(100) + b"PAR1")
    (root / "file.txt").write_text("a regular file\n")
    (root / "dir").mkdir(exist_ok=True)
    (root / "pol.py").write_text(
        "from uvmlab.policy import Policy\n\n\nclass P(Policy):\n"
        "    def decide_replay(self, ctx):\n        return 0\n"
    )


def _prepare(root: Path) -> None:
    """Special files are re-made before each line: a line may (wrongly) have replaced them."""
    for name in ("fifo", "chardev", "link.json", "link-out.json", "link-dir"):
        p = root / name
        if p.is_symlink() or p.exists():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    (root / "file.txt").write_text("a regular file\n")  # a line may have replaced it (allowed)
    os.mkfifo(root / "fifo")
    try:  # the null device's numbers, in our own directory: never the machine's /dev/null
        os.mknod(root / "chardev", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        (root / "chardev").write_text("")  # not root: a plain file stands in
    os.symlink("result.json", root / "link.json")
    os.symlink("file.txt", root / "link-out.json")
    os.symlink("dir", root / "link-dir")


def _special_intact(root: Path) -> str | None:
    if not stat.S_ISFIFO(os.lstat(root / "fifo").st_mode):
        return "the FIFO was replaced"
    st = os.lstat(root / "chardev")
    if os.geteuid() == 0 and not stat.S_ISCHR(st.st_mode):
        return "the character device was replaced"
    if not (root / "link-out.json").is_symlink():
        return "the symlink was replaced"
    return None  # a regular file named as an output may be replaced: that is what it is for


def run_case(case: dict[str, Any]) -> tuple[str, str, str]:
    assert _FIXTURES is not None
    work = _FIXTURES.parent / f"w{os.getpid()}"
    if not work.exists():
        shutil.copytree(_FIXTURES, work, symlinks=True)
    _prepare(work)
    argv = make_line(case["seed"])
    kind = (
        argv[0]
        if argv
        and argv[0] in ("run", "trace", "policy", "compare", "report", "timeline", "export", "plot", "sweep")
        else "other"
    )
    # a sweep starts a process pool, which a (daemonic) fuzz worker may not: always a subprocess
    if case["seed"] % SUBPROCESS_EVERY == 0 or argv[:1] == ["sweep"]:
        kind += "+subprocess"
        code, err, escaped = _in_subprocess(argv, work)
    else:
        code, err, escaped = _in_process(argv, work)
    line = " ".join(json.dumps(a)[1:-1] for a in argv)[:200]
    if code == "hang":
        return "hang", f"the subprocess ran past {SUBPROCESS_TIMEOUT_S} s: {line}", kind
    if escaped is not None:
        from fuzzlib import crash_class

        return "crash", f"{crash_class(escaped)}: {line}", kind
    if "uvmlab: internal error:" in err:
        first = next(x for x in err.splitlines() if "internal error" in x)
        return "crash", f"{first.split(': ', 2)[2][:100]}: {line}", kind
    if "Traceback (most recent call last)" in err:
        last = [x for x in err.splitlines() if x.strip()][-1][:120]
        return "crash", f"traceback {last}: {line}", kind
    broken = _special_intact(work)
    if broken:
        return "bad", f"{broken}: {line}", kind
    rc = code if isinstance(code, int) else (0 if code is None else 1)
    if rc == 0:
        return "ok", "", kind
    if rc < 0:
        return "died", f"the subprocess was killed by signal {-rc}: {line}", kind
    lines = [x for x in err.splitlines() if x.strip()]
    if len(lines) != 1:
        return "bad", f"exit {rc} with {len(lines)} stderr lines: {line} :: {err[:200]!r}", kind
    return "clean", "", kind


#: one line in this many runs as a real ``python -m uvmlab`` process: its exit status and stderr
#: are the user's, not the in-process stand-in's (interpreter start, encodings, signals)
SUBPROCESS_EVERY = 25
SUBPROCESS_TIMEOUT_S = 50


def _in_subprocess(argv: list[str], work: Path) -> tuple[Any, str, BaseException | None]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvmlab", *argv],
        cwd=work,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # our own child's group: the line and what it started
        proc.communicate()
        return "hang", "", None
    return proc.returncode, err.decode("utf-8", "replace"), None


def _in_process(argv: list[str], work: Path) -> tuple[Any, str, BaseException | None]:
    """``uvmlab.cli.main`` in this (forked) process, stdout and stderr captured at the
    descriptor level, inside the scratch directory."""
    from uvmlab.cli import main

    out_f, err_f = work / ".stdout", work / ".stderr"
    saved = os.dup(1), os.dup(2)
    cwd = os.getcwd()
    code: Any = 0
    escaped: BaseException | None = None
    with open(out_f, "wb") as o, open(err_f, "wb") as e:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(o.fileno(), 1)
        os.dup2(e.fileno(), 2)
        try:
            os.chdir(work)
            sys.argv = ["uvmlab", *argv]
            try:
                main()
            except SystemExit as ex:
                code = ex.code
            except BaseException as ex:  # noqa: BLE001 - an escape is the finding
                escaped = ex
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            os.chdir(cwd)
    return code, err_f.read_bytes().decode("utf-8", "replace"), escaped


def cases(seed: int, n: int):
    for i in range(n):
        yield {"seed": seed * 1_000_003 + i}


def main(argv: list[str] | None = None) -> int:
    global _FIXTURES
    ap = arg_parser(__doc__.splitlines()[0], cases=10_000, time_limit=1200)
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="uvmlab-fuzz-cli-"))
    try:
        _FIXTURES = tmp / "fixtures"
        fixtures(_FIXTURES)
        rep = run_parsed("fuzz_cli", a, cases(a.seed, a.cases), run_case)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rep.print(a.json)
    return 1 if rep.failures else 0


if __name__ == "__main__":
    sys.exit(main())
