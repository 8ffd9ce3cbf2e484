"""Parameter / policy / GPU-memory sweeps on a local process pool or a Ray cluster."""

from uvmlab.lab.sweep.runner import SweepOutcome, load_sweep, run_sweep
from uvmlab.lab.sweep.spec import Point, SweepSpec

__all__ = ["Point", "SweepOutcome", "SweepSpec", "load_sweep", "run_sweep"]
