"""Golden test vectors: generate suites of cases and verify other implementations against them.

- `pnref.golden.cases` the case set, `pnref.golden.profiles` the conventions;
- `pnref.golden.generate` writes a suite, `pnref.golden.format` is its file format;
- `pnref.golden.tolerances` the tolerance policy;
- `pnref.golden.adapter` the adapter protocol and the default (pnref) adapter;
- `pnref.golden.verify` runs an adapter on a suite and reports.

The format is documented in ``docs/golden-format.md``, the verification tool in
``docs/verification.md``. This package is the top layer: nothing below imports it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUNDLED_SUITE", "bundled_suite_dir"]

#: Name of the suite committed inside the package.
BUNDLED_SUITE = "canonical"


def bundled_suite_dir() -> Path:
    """Directory of the canonical suite shipped with pnref (``pnref/data/golden/canonical``)."""
    return Path(__file__).resolve().parent.parent / "data" / "golden" / BUNDLED_SUITE
