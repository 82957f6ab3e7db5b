"""Golden test vectors: the suites of cases that implementations are verified against.

- `pnref.golden.cases` the case set, `pnref.golden.profiles` the conventions;
- `pnref.golden.ops` the ops and their float64 reference;
- `pnref.golden.generate` writes a suite, `pnref.golden.format` is its file format (with the
  manifest's digest), `pnref.golden.suite` reads one back (`load_suite`);
- `pnref.golden.tolerances` the tolerance policy, `pnref.golden.compare` applies it.

Running an implementation on a suite (``pnref golden verify``, the pytest plugin) is the job
of `pnref.verification`, the layer above. The format is documented in
``docs/golden-format.md``, the verification tool in ``docs/verification.md``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUNDLED_SUITE", "bundled_suite_dir", "load_suite", "GoldenCase", "Suite"]

#: Name of the suite committed inside the package.
BUNDLED_SUITE = "canonical"


def bundled_suite_dir() -> Path:
    """Directory of the canonical suite shipped with pnref (``pnref/data/golden/canonical``)."""
    return Path(__file__).resolve().parent.parent / "data" / "golden" / BUNDLED_SUITE


def __getattr__(name: str):
    # load_suite and its classes pull in the math core: imported on first use, so that
    # ``import pnref.golden`` (and ``pnref --help``) stays light
    if name in ("load_suite", "GoldenCase", "Suite"):
        from pnref.golden import suite

        return getattr(suite, name)
    raise AttributeError(f"module 'pnref.golden' has no attribute {name!r}")
