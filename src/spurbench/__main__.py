"""``python -m spurbench``: the same as the ``spurbench`` command."""

from spurbench.cli.app import main

main()
