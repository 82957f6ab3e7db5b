"""``pnref demo``: the golden verification of the bundled suite, then a gradient self-check.

`run_demo` (what ``make demo`` runs) first verifies pnref's default implementation (its
fast path) against the golden suite bundled with the package and prints that table
(``pnref golden verify``, see ``docs/verification.md``), then runs the gradient check below
(also available alone as ``pnref check-gradients``; `pnref.gradient_check`): every op
with a VJP against central differences in float64, one row per op with its worst error.

It returns 0 when everything passes and 1 otherwise.
"""

from __future__ import annotations

from pnref.gradient_check import run_gradient_check

__all__ = ["run_demo", "run_gradient_check"]


def run_demo() -> int:
    """Golden verification of the bundled suite, then `run_gradient_check`.

    Returns
    -------
    int
        0 when every golden case and every gradient check passes, 1 otherwise.
    """
    from pnref.verification.cli import run_verify

    golden_status = run_verify()
    print()
    return max(golden_status, run_gradient_check())
