"""The ``uvmlab`` command: the app, its command groups (one module each), and ``main``.

Every user-facing failure is a ``UvmlabError``: ``main`` prints it as one line on stderr and
exits non-zero. Anything else is a bug: one ``internal error`` line and exit code 70
(``UVMLAB_TRACEBACK=1`` shows its traceback).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

import uvmlab.cli.notices as notices
from uvmlab.cli.common import err
from uvmlab.cli.gaia import register as register_gaia
from uvmlab.cli.gpu import register as register_gpu
from uvmlab.cli.hmm import register as register_hmm
from uvmlab.cli.ioctl import register as register_ioctl
from uvmlab.cli.model import register as register_model
from uvmlab.cli.policy import register as register_policy
from uvmlab.cli.results import register as register_results
from uvmlab.cli.sweep import register as register_sweep
from uvmlab.cli.traces import register as register_traces
from uvmlab.cli.vgpu import register as register_vgpu
from uvmlab.core.errors import UvmlabError
from uvmlab.core.version import __version__
from uvmlab.driver import compiled

app = typer.Typer(
    add_completion=True,
    rich_markup_mode=None,  # help text is plain: "[params]" and "[gpu]" must print as written
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="uvmlab: a faithful, programmable model of NVIDIA's UVM driver.",
)


def _print_version(value: bool) -> None:
    if value:
        print(f"uvmlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More detail on stderr.")] = 0,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Only warnings and errors on stderr (no notes, no progress)."),
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Exit with code 4 when a policy is ejected (after writing the outputs)."
        ),
    ] = False,
) -> None:
    """uvmlab: a faithful, programmable model of NVIDIA's UVM driver."""
    notices.setup(verbose, quiet, strict)
    # The first simulation of a run compiles the model (~40 s on a fresh install): announced
    # when a command reaches it, after its input was accepted, so bad input and commands that
    # never simulate (validate --capture without a GPU, --help) answer at once.
    if not ctx.resilient_parsing:
        compiled.on_first_use(notices.compile_model)
        compiled.on_first_kernels(notices.compile_policy_kernels)


for _register in (
    register_model,
    register_traces,
    register_policy,
    register_results,
    register_sweep,
    register_gpu,
    register_vgpu,
    register_ioctl,
    register_gaia,
    register_hmm,
):
    _register(app)


def main() -> None:
    try:
        rc = app(standalone_mode=False)  # click returns the code of a typer.Exit here
        if isinstance(rc, int) and rc:
            sys.exit(rc)
        if notices.exit_code():
            sys.exit(notices.exit_code())
    except UvmlabError as e:
        print(f"uvmlab: error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("uvmlab: interrupted")
        sys.exit(130)
    except (typer.Exit, SystemExit) as e:
        sys.exit(getattr(e, "exit_code", getattr(e, "code", 0)))
    except MemoryError:
        print("uvmlab: error: out of memory (a smaller workload, or --gpu-memory, may fit)", file=sys.stderr)
        sys.exit(2)
    except Exception as e:  # usage errors from click (typer ships its own copy of click)
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            print(f"uvmlab: error: {' '.join(e.format_message().split())} (see --help)", file=sys.stderr)
            sys.exit(e.exit_code)
        if type(e).__name__ == "Abort":
            sys.exit(1)
        # A bug: still one line, never a traceback at the user (docs/security.md); the
        # fuzzers count these lines as crashes. UVMLAB_TRACEBACK=1 shows the traceback.
        if os.environ.get("UVMLAB_TRACEBACK"):
            raise
        msg = " ".join(str(e).split())[:300]
        print(
            f"uvmlab: internal error: {type(e).__name__}: {msg} (a bug: please report it)",
            file=sys.stderr,
        )
        sys.exit(70)


if __name__ == "__main__":
    main()
