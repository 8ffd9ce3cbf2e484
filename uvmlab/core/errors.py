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


class PolicyEjectedError(UvmlabError):
    """A policy was ejected during a run and the caller asked for that to be an error (strict)."""

    exit_code = 4


class PolicyEjectedWarning(UserWarning):
    """A policy was ejected during a run: the driver's default decided from then on, so the
    run's numbers are not the policy's alone. One warning per ejection (hook, reason, when)."""


def ejection_message(e: dict) -> str:
    """One line for an ejection record (``Result.meta["policy_ejected"]`` entries)."""
    when = e.get("time_ns")
    at = f" at {when / 1e6:.3f} ms simulated" if isinstance(when, int | float) else ""
    return (
        f"policy {e.get('policy', '?')} ejected{at} in hook {e.get('hook', '?')}: {e.get('reason', '?')}; "
        "the driver's default decided from then on"
    )
