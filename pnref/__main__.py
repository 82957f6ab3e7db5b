"""``python -m pnref``: the command-line interface."""

from pnref.cli import main

raise SystemExit(main())
