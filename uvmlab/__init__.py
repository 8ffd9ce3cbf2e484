"""uvmlab: a faithful, programmable model of NVIDIA's UVM driver, and a real-GPU backend to check it."""

__version__ = "0.1.0"
