"""The one exception family for user-facing failures (docs/architecture.md).

The CLI turns every ``UvmlabError`` into a one-line message and a non-zero exit; anything else
is a bug and keeps its traceback.
"""


class UvmlabError(Exception):
    """Base class for every error a user can cause (bad input, bad parameter, missing GPU)."""

    exit_code = 2


class ParamError(UvmlabError):
    """An unknown module parameter, or a value outside its valid range."""


class WorkloadError(UvmlabError):
    """A workload that cannot exist: impossible size, touch outside its allocation, bad name."""


class TraceFileError(UvmlabError):
    """A workload or result file that is missing, truncated, corrupt or hostile."""


class PolicyError(UvmlabError):
    """A policy that cannot be loaded (the guard handles policies that misbehave at run time)."""


class GpuUnavailableError(UvmlabError):
    """The real-GPU backend was asked for, but no usable NVIDIA GPU / CUDA stack is present."""

    exit_code = 3


class RunInterrupted(KeyboardInterrupt):
    """The user stopped a run (Ctrl-C); ``result`` holds what was done up to then."""

    def __init__(self, result: object) -> None:
        super().__init__("interrupted")
        self.result = result
