"""Running a sweep: a local process pool (default) or a Ray cluster, resumable, bit-reproducible.

A sweep directory holds::

    sweep.json          the spec and its points in order (written first, atomically)
    points/<id>.json    one Result per finished point (written atomically by this process)
    log.jsonl           one line per point run here: host wall time, engine, errors
    report.html         the comparison report (``--report``)

Workers compute and return; only the process that runs the sweep writes files, so a point file
is either absent or complete, whatever kills the sweep (Ctrl-C, ``kill -9``, a dead node), and
a remote Ray worker needs no access to the directory. ``resume=True`` skips every point whose
file is there. A point file holds nothing that depends on the host or the engine — its
``wall_s`` is 0 and the host's wall time goes to ``log.jsonl`` — so the same point gives the
same bytes on a local pool or on Ray.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas  # noqa: F401  (now rather than while loading the first result: see top)

from uvmlab.api import check_run, load_workload, simulate
from uvmlab.core.errors import UvmlabError

# Imported here, not on first use: loading a point's result must not import modules (whose
# dataclasses run exec()) while a Ctrl-C may land — CPython 3.11 then exits by SIGINT even
# though the interrupt was handled.
from uvmlab.engine.sampling import (
    Samples,  # noqa: F401
    record_samples,
)
from uvmlab.lab.sweep.reaper import Reaper, descendants
from uvmlab.lab.sweep.spec import NO_POLICY_NAMES, Point, SweepSpec
from uvmlab.results.io import (
    events_from_columns,  # noqa: F401
    write_atomic,
)
from uvmlab.results.result import Result

SWEEP_FORMAT = "uvmlab-sweep"
SWEEP_VERSION = 1
ENGINES = ("local", "ray")


# --- one point (runs in a worker) -------------------------------------------------------------
def run_point(config: dict[str, Any], workload: Any, point_meta: dict[str, Any]) -> dict[str, Any]:
    """Run one point; returns ``{"id", "result"}`` (a Result dict) or ``{"id", "error"}``.

    Errors come back as text rather than exceptions so that one bad point does not stop the
    others; the point then has no file and a later ``--resume`` tries it again.
    """
    t0 = time.perf_counter()
    point_meta = dict(point_meta)
    run = point_meta.pop("run", None) or {}  # how to run (isolation, work bound), not what
    pid = point_meta["id"]
    try:
        pol = config["policies"]
        policies = None if not pol or pol.strip().lower() in NO_POLICY_NAMES else pol
        with record_samples(enabled=bool(config["samples"])) as rec:
            res = simulate(
                workload,
                gpu=config["gpu"],
                params=config["params"],
                profile=config["profile"],
                gpu_memory=config["gpu_memory"],
                events=bool(config["events"]),
                policies=policies,
                isolate=bool(run.get("isolate", False)),
                max_touches=run.get("max_touches"),
            )
        if config["samples"]:
            rec.attach(res)
        res.wall_s = 0.0  # host time is not part of the result (module docstring)
        res.op_wall_s = []
        res.meta = {**res.meta, "point": point_meta}
        return {"id": pid, "result": res.to_dict(), "wall_s": time.perf_counter() - t0}
    except UvmlabError as e:
        return {"id": pid, "error": " ".join(str(e).split()), "wall_s": time.perf_counter() - t0}
    except Exception:  # a model bug: keep its traceback for the log, go on with other points
        return {"id": pid, "error": traceback.format_exc(), "wall_s": time.perf_counter() - t0, "bug": True}


def _point_blob(result: dict[str, Any]) -> bytes:
    # the same serialisation as Result.save: a point file loads with Result.load
    return json.dumps(result, indent=1).encode()


# --- the sweep directory -----------------------------------------------------------------------
@dataclass
class SweepOutcome:
    directory: Path
    points: list[Point]
    results: dict[str, Result]  # by point id, the finished ones
    computed: list[str] = field(default_factory=list)  # ids computed by this call
    reused: list[str] = field(default_factory=list)  # ids found done on disk
    errors: dict[str, str] = field(default_factory=dict)  # id -> error text

    def ordered(self) -> list[Result]:
        """The finished results in the sweep's point order."""
        return [self.results[p.id] for p in self.points if p.id in self.results]

    def labels(self) -> list[str]:
        return [p.label for p in self.points if p.id in self.results]


def point_path(directory: Path, point_id: str) -> Path:
    return directory / "points" / f"{point_id}.json"


def default_directory(spec: SweepSpec) -> Path:
    """``sweeps/<workload>-<hash of the spec>``: the same command finds the same directory."""
    return Path("sweeps") / f"{spec.name}-{spec.digest()}"


def _load_done(directory: Path, point: Point) -> Result | None:
    p = point_path(directory, point.id)
    if not p.exists():
        return None
    try:
        r = Result.load(p)
    except UvmlabError:
        return None  # cannot happen with atomic writes; recompute rather than trust it
    got = r.meta.get("point", {}) if isinstance(r.meta, dict) else {}
    return r if isinstance(got, dict) and got.get("id") == point.id else None


def load_sweep(directory: str | Path) -> tuple[SweepSpec, list[Point], dict[str, Result]]:
    """A sweep directory's spec, points and finished results."""
    d = Path(directory)
    manifest = d / "sweep.json"
    try:
        m = json.loads(manifest.read_text())
    except FileNotFoundError:
        raise UvmlabError(f"{d}: not a sweep directory (no sweep.json)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise UvmlabError(f"{manifest}: cannot read ({e})") from None
    if not isinstance(m, dict) or m.get("format") != SWEEP_FORMAT:
        raise UvmlabError(f"{manifest}: not a uvmlab sweep manifest")
    spec = SweepSpec.from_dict(m["spec"])
    points = [Point(p["config"], p["label"], p.get("axes", {})) for p in m["points"]]
    done = {}
    for p in points:
        r = _load_done(d, p)
        if r is not None:
            done[p.id] = r
    return spec, points, done


def _write_manifest(directory: Path, spec: SweepSpec, points: list[Point]) -> None:
    m = {
        "format": SWEEP_FORMAT,
        "version": SWEEP_VERSION,
        "spec": spec.to_dict(),
        "points": [{"id": p.id, "label": p.label, "axes": p.axes, "config": p.config} for p in points],
    }
    write_atomic(directory / "sweep.json", json.dumps(m, indent=1).encode())


def _prepare(directory: Path, spec: SweepSpec, points: list[Point], resume: bool) -> None:
    manifest = directory / "sweep.json"
    if manifest.exists() and not resume:
        raise UvmlabError(
            f"{directory} already holds a sweep: add --resume to finish it, or "
            f"choose another directory with --out"
        )
    if not manifest.exists() and directory.exists() and any(directory.iterdir()):
        raise UvmlabError(f"{directory} is not empty and holds no sweep; choose another --out")
    (directory / "points").mkdir(parents=True, exist_ok=True)
    for tmp in (directory / "points").glob(".*.tmp"):
        tmp.unlink(missing_ok=True)  # left by a kill in the middle of a write
    _write_manifest(directory, spec, points)


# --- running -------------------------------------------------------------------------------
def run_sweep(
    spec: SweepSpec,
    directory: str | Path | None = None,
    *,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    resume: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    isolate: bool = False,
    max_touches: int | None = None,
) -> SweepOutcome:
    """Run every point of ``spec`` not already done in ``directory``.

    ``progress(done, total, label)`` is called once at the start and after each point. On
    KeyboardInterrupt the workers are stopped, finished points stay on disk, and the
    interrupt propagates.
    """
    if engine not in ENGINES:
        raise UvmlabError(f"unknown sweep engine {engine!r} (choose from {', '.join(ENGINES)})")
    d = Path(directory) if directory is not None else default_directory(spec)
    points = spec.points()
    workload_obj = _check_workload(spec, points)
    _check_points(points, workload_obj, max_touches)  # every point, before the first one runs
    _prepare(d, spec, points, resume)
    out = SweepOutcome(d, points, {})
    todo = []
    for p in points:
        r = _load_done(d, p) if resume else None
        if r is not None:
            out.results[p.id] = r
            out.reused.append(p.id)
        else:
            todo.append(p)
    total = len(points)
    if progress is not None:
        progress(len(out.results), total, "")
    if not todo:
        return out
    by_id = {p.id: p for p in todo}
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    runner = _run_local if engine == "local" else _run_ray
    log = (d / "log.jsonl").open("a")
    run = {"isolate": isolate, "max_touches": max_touches}
    results = runner(spec, todo, workload_obj, n_workers, address, run)
    try:
        for res in results:
            p = by_id[res["id"]]
            entry = {
                "id": p.id,
                "label": p.label,
                "engine": engine,
                "wall_s": round(float(res.get("wall_s", 0.0)), 6),
            }
            if "error" in res:
                out.errors[p.id] = res["error"]
                entry["error"] = res["error"]
            else:
                write_atomic(point_path(d, p.id), _point_blob(res["result"]))
                out.results[p.id] = Result.from_dict(res["result"], where=p.id)
                out.computed.append(p.id)
            log.write(json.dumps(entry) + "\n")
            log.flush()
            if progress is not None:
                progress(len(out.results), total, p.label)
    finally:
        results.close()  # stops the workers now if we leave early (Ctrl-C, an error)
        log.close()
    return out


def _check_workload(spec: SweepSpec, points: list[Point]) -> Any:
    """Load the workload once here, so a bad spec fails before any worker starts; what the
    workers get: the spec string (cheap to send), or the loaded trace for a file."""
    w = load_workload(spec.workload)
    return w if points and points[0].config["workload_sha256"] else spec.workload


def _check_points(points: list[Point], workload: Any, max_touches: int | None) -> None:
    """What each point will ask of ``simulate``, checked now: a bad value in the last point of
    a long sweep fails in a second, not after the others ran."""
    for p in points:
        c = p.config
        pol = c["policies"]
        try:
            check_run(
                workload,
                gpu=c["gpu"],
                params=c["params"],
                profile=c["profile"],
                gpu_memory=c["gpu_memory"],
                policies=None if not pol or pol.strip().lower() in NO_POLICY_NAMES else pol,
                max_touches=max_touches,
            )
        except UvmlabError as e:
            raise UvmlabError(f"sweep point {p.label}: {' '.join(str(e).split())}") from None


def _tasks(points: list[Point], workload: Any, run: dict[str, Any]) -> Iterator[tuple[dict, Any, dict]]:
    for p in points:
        yield (
            p.config,
            workload,
            {
                "id": p.id,
                "label": p.label,
                "axes": p.axes,
                "policies": p.config["policies"],
                "gpu_memory": p.config["gpu_memory"],
                "run": run,
            },
        )


# local process pool
def _worker_init(parent: int) -> None:
    # Ctrl-C reaches the whole process group: only the parent handles it (and stops us)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:  # the parent was killed (kill -9): do not linger as an orphan
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _pool_task(args: tuple[dict, Any, dict]) -> dict[str, Any]:
    return run_point(*args)


def _run_local(
    spec: SweepSpec, todo: list[Point], workload: Any, workers: int, address: str | None, run: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    if address:
        raise UvmlabError("--address is for --engine ray")
    # spawn, not fork: workers start clean (no copied threads or locks), as they would on
    # any platform; the numba kernels load from their on-disk cache
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(workers, initializer=_worker_init, initargs=(os.getpid(),))
    try:
        yield from pool.imap_unordered(_pool_task, _tasks(todo, workload, run), chunksize=1)
        pool.close()
        pool.join()
    finally:
        pool.terminate()  # on Ctrl-C or an error: stop the workers now, finished files stay


# Ray
def _run_ray(
    spec: SweepSpec, todo: list[Point], workload: Any, workers: int, address: str | None, run: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    try:
        import ray  # optional dependency (the ray extra), imported only for --engine ray
    except ImportError:
        raise UvmlabError("--engine ray needs Ray: pip install 'uvmlab[ray]'") from None
    started = not ray.is_initialized()
    reaper = None
    if started:
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "warning"}
        if address:
            kw["address"] = address
        else:
            kw["num_cpus"] = workers  # a local Ray instance sized like the local pool
            # the local instance started here ends with the sweep, even one killed with SIGKILL
            reaper = Reaper(os.getpid(), exclude={p for p, _ in descendants(os.getpid())})
        try:
            ray.init(**kw)
        except ConnectionError as e:
            raise UvmlabError(f"cannot reach the Ray cluster at {address}: {e}") from None
        except BaseException:
            if reaper is not None:
                reaper.close()
            raise
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_point)
        wl_ref = ray.put(workload)  # once, not once per task (a trace can be large)
        tasks = _tasks(todo, workload, run)
        pending = {remote.remote(cfg, wl_ref, meta): meta["id"] for cfg, _, meta in tasks}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    pending.pop(ref)
                    yield ray.get(ref)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
    finally:
        if started:
            ray.shutdown()
        if reaper is not None:
            reaper.close()
