"""uvmlab: a faithful, programmable model of NVIDIA's UVM driver, and a real-GPU backend to check it."""

from uvmlab.api import simulate
from uvmlab.core.version import __version__

__all__ = ["__version__", "simulate"]
