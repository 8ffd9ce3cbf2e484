"""``python -m uvmlab`` is the ``uvmlab`` command."""

from uvmlab.cli import main

main()
