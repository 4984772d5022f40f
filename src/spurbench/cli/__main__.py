"""``python -m spurbench.cli``."""

from spurbench.cli.app import main

main()
