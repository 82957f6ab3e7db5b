"""The pytest plugin: one test per golden case, so any CI that runs pytest verifies a port.

Registered through the ``pytest11`` entry point ``pnref``; inert unless ``--pnref-impl`` is
given::

    pytest --pnref-impl my_port.adapter:Adapter [--pnref-suite DIR]
           [--pnref-select GLOB ...] [--pnref-exclude GLOB ...] [--pnref-xfail FILE]
           [--pnref-timeout SECONDS] [--junitxml report.xml]

- one test per selected case, named by the case id (node id ``pnref-golden::<case id>``);
- a case the adapter does not support is a skip with the adapter's reason;
- a failed or timed-out case fails with the same evidence as ``pnref golden verify``;
- each test records ``worst_err_over_tol`` and ``status`` with ``record_property``, so
  ``--junitxml`` carries the figures;
- ``--pnref-xfail FILE`` lists expected failures, one per line ``<case id> <reason>`` (``#``
  starts a comment). They are strict: a listed case that passes fails the run
  (``XPASS(strict)``), and a listed id that is not in the suite is a usage error, so stale
  entries cannot pile up.

The adapter runs in a worker process, as with ``pnref golden verify``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

__all__ = ["read_xfail_file"]

_OPTIONS = ("pnref_suite", "pnref_select", "pnref_exclude", "pnref_xfail", "pnref_timeout")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pnref", "pnref golden verification (docs/verification.md)")
    group.addoption("--pnref-impl", metavar="MODULE:OBJECT", default=None,
                    help="verify this adapter on a golden suite, one test per case")
    group.addoption("--pnref-suite", metavar="DIR", default=None,
                    help="suite directory (default: pnref's bundled canonical suite)")
    group.addoption("--pnref-select", metavar="GLOB", action="append", default=[],
                    help="only cases whose id matches this glob (repeatable)")
    group.addoption("--pnref-exclude", metavar="GLOB", action="append", default=[],
                    help="drop cases whose id matches this glob (repeatable)")
    group.addoption("--pnref-xfail", metavar="FILE", default=None,
                    help="expected failures: lines '<case id> <reason>' (strict)")
    group.addoption("--pnref-timeout", metavar="SECONDS", type=float, default=None,
                    help="limit on each adapter call (default 300)")


def read_xfail_file(path: str | Path) -> dict[str, str]:
    """Case id to reason, from a ``--pnref-xfail`` file.

    Raises
    ------
    pytest.UsageError
        If the file is unreadable or a line has no reason.
    """
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise pytest.UsageError(f"--pnref-xfail {path}: {exc}") from None
    entries = {}
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        case_id, _, reason = text.partition(" ")
        if not reason.strip():
            raise pytest.UsageError(f"--pnref-xfail {path}, line {number}: '{case_id}' needs a "
                                    "reason after the case id")
        entries[case_id] = reason.strip()
    return entries


class GoldenCaseFailure(Exception):
    """A golden case did not pass; carries its `CaseResult`."""

    def __init__(self, result: Any) -> None:
        super().__init__(result.case_id)
        self.result = result


class GoldenItem(pytest.Item):
    """One golden case as a test."""

    def __init__(self, *, case: Any, golden: _GoldenSession, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case, self.golden = case, golden

    def runtest(self) -> None:
        from pnref.verification.runner import run_case

        result = run_case(self.case, self.golden.runner,
                          supports=self.golden.runner.info["supports"],
                          diagnose=self.golden.diagnose)
        worst = result.worst_ratio
        self.user_properties.append(("worst_err_over_tol", "-" if worst is None
                                     else f"{worst:.6g}"))
        self.user_properties.append(("status", result.status))
        if result.status == "unsupported":
            pytest.skip(f"unsupported by the implementation: {result.unsupported_reason}")
        if result.status != "passed":
            raise GoldenCaseFailure(result)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, GoldenCaseFailure):
            from pnref.verification.report import describe_failure

            return "\n".join(describe_failure(excinfo.value.result))
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"golden case {self.case.id}"


class _GoldenSession:
    """The suite, the worker and the xfail list of one pytest session."""

    def __init__(self, config: pytest.Config) -> None:
        from pnref.golden.format import SuiteFormatError
        from pnref.golden.suite import load_suite

        self.config = config
        self.impl = config.getoption("pnref_impl")
        try:
            self.suite = load_suite(config.getoption("pnref_suite"),
                                    select=config.getoption("pnref_select"),
                                    exclude=config.getoption("pnref_exclude"))
            every_id = {c.id for c in load_suite(config.getoption("pnref_suite")).cases}
        except SuiteFormatError as exc:
            raise pytest.UsageError(f"pnref: {exc}") from None
        if not self.suite.cases:
            raise pytest.UsageError("pnref: no golden case matches --pnref-select/--pnref-exclude")
        xfail = config.getoption("pnref_xfail")
        self.xfail = read_xfail_file(xfail) if xfail else {}
        stale = sorted(set(self.xfail) - every_id)
        if stale:
            raise pytest.UsageError(f"--pnref-xfail {xfail} lists case ids that are not in the "
                                    f"suite (remove them): {', '.join(stale)}")
        self.runner = None
        self.diagnose = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        from pnref.verification.adapter import AdapterLoadError
        from pnref.verification.runner import diagnoser
        from pnref.verification.worker import DEFAULT_TIMEOUT, WorkerRunner

        timeout = config.getoption("pnref_timeout") or DEFAULT_TIMEOUT
        self.runner = WorkerRunner(self.impl, timeout)
        try:
            self.runner.start()
        except AdapterLoadError as exc:
            raise pytest.UsageError(f"pnref: {exc}") from None
        self.diagnose = diagnoser()
        for case in self.suite.cases:
            item = GoldenItem.from_parent(session, name=case.id,
                                          nodeid=f"pnref-golden::{case.id}", case=case,
                                          golden=self)
            if case.id in self.xfail:
                item.add_marker(pytest.mark.xfail(reason=self.xfail[case.id], strict=True,
                                                  raises=GoldenCaseFailure))
            items.append(item)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.runner is not None:
            self.runner.close()


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("pnref_impl", default=None):
        given = [f"--{o.replace('_', '-')}" for o in _OPTIONS
                 if config.getoption(o, default=None)]
        if given:
            raise pytest.UsageError(f"{', '.join(given)} need(s) --pnref-impl")
        return
    config.pluginmanager.register(_GoldenSession(config), "pnref-golden-session")
