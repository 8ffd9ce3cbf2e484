"""The real-GPU backend (docs/validation.md): run workloads on an NVIDIA GPU with managed memory.

- ``executor.execute(workload)``: runs the IR on the GPU and returns a ``RealRunResult`` whose
  ``totals`` use the canonical names of ``uvmlab.core.counters``;
- ``suite``: the validation suite (runs without a GPU to build the workloads);
- ``calibrate``: micro-benchmarks that fit a ``CostProfile``;
- ``plan`` and the parsing half of ``cupti_capture``: pure functions, importable without a GPU.

Nothing here imports CuPy, CUPTI or the CUDA bindings at import time; every GPU entry point
raises ``GpuUnavailableError`` with a one-line reason when they or the GPU are missing.
"""
