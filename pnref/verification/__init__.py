"""Verifying an implementation against a golden suite: the tools users run.

- `pnref.verification.adapter`: the adapter protocol, the default adapter (pnref's own
  fast path) and ``--impl`` loading;
- `pnref.verification.worker`: adapter calls in a worker process with a per-call timeout;
- `pnref.verification.runner`: `verify_suite`, one verdict per case;
- `pnref.verification.overrides`: explicit tolerance overrides;
- `pnref.verification.report`: the table, the JSON report and JUnit XML;
- `pnref.verification.cli`: ``pnref golden generate`` and ``pnref golden verify``;
- `pnref.verification.pytest_plugin`: the pytest plugin (``--pnref-impl``).

The top layer: it imports `pnref.golden` (the suites) and nothing imports it but the
command line. Documented in ``docs/verification.md``.
"""

__all__: list[str] = []
