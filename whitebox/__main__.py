"""``python -m whitebox``: the command line of :mod:`whitebox.cli`."""

from .cli import main

raise SystemExit(main())
