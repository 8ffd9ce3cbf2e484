"""uvmlab: a faithful, programmable model of NVIDIA's UVM driver, and a real-GPU backend to check it."""

__version__ = "0.1.0"


def simulate(*args, **kwargs):  # noqa: D103 - documented in uvmlab.api.simulate
    from uvmlab.api import simulate as _simulate

    return _simulate(*args, **kwargs)


simulate.__doc__ = "Run a workload through the modeled driver; see uvmlab.api.simulate."
