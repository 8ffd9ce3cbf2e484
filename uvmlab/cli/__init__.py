"""The ``uvmlab`` command line (typer): one module per command group; ``app`` assembles them."""

from uvmlab.cli.app import app, main

__all__ = ["app", "main"]
