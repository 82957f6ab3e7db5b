"""Shared test configuration.

Hypothesis runs derandomized under the ``ci`` profile (selected by HYPOTHESIS_PROFILE=ci,
which .ci/run sets) so a CI failure is reproducible; locally the ``dev`` profile
explores new examples on each run.

Under CI (the environment variable ``CI`` set and not ``0``/``false``, as ``.ci/run`` runs it)
a skipped test is a failure: CI installs every extra the tests use, so a skip there means a
test that never runs (a missing extra, a data file not built) and would hide a regression.
Locally a test that needs a missing extra still skips, with the extra named in its reason.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "dev", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def copy_golden_cases(directory, case_ids, *, seal=True):
    """Copy the bundled suite's cases ``case_ids`` into ``directory`` as a suite of their own.

    The subset's manifest is sealed (a new, legitimately derived suite) unless ``seal`` is
    False. Returns the manifest. Tests may damage the copy; the bundled files are never
    touched.
    """
    import shutil

    from pnref.golden import bundled_suite_dir
    from pnref.golden.format import read_manifest, seal_manifest, write_manifest

    manifest = read_manifest(bundled_suite_dir())
    manifest["cases"] = [c for c in manifest["cases"] if c["id"] in case_ids]
    assert sorted(c["id"] for c in manifest["cases"]) == sorted(case_ids)
    for case in manifest["cases"]:
        shutil.copy(bundled_suite_dir() / case["file"], directory / case["file"])
    write_manifest(directory, seal_manifest(manifest) if seal else manifest)
    return manifest


def default_sigint() -> None:
    """``preexec_fn`` of a subprocess that a test interrupts with SIGINT: Ctrl-C's default
    action restored in the child. A shell starts background jobs with SIGINT ignored, and
    an ignored signal stays ignored across exec (Python then installs no KeyboardInterrupt
    handler): without this, such a test would pass or fail by how the suite was launched."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def skips_are_failures() -> bool:
    """True under CI: the ``CI`` environment variable is set to anything but ``0``/``false``."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _fail_if_skipped(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Turn a skip report into a failure that says why the test could not be skipped."""
    if skips_are_failures() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"skipped under CI ({reason}); CI must install every extra the tests use "
            "(.ci/run), so no test may be skipped there"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_if_skipped(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_if_skipped(outcome.get_result())
