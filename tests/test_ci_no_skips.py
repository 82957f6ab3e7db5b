"""Under CI a skipped test fails the run (tests/conftest.py); locally it stays a skip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py").read_text()

SKIPPING_TESTS = '''
import pytest

def test_needs_a_missing_extra():
    pytest.importorskip("no_such_package_pnref", reason="needs pnref[nothing]")

def test_runs():
    assert 1 + 1 == 2
'''

SKIPPING_MODULE = '''
import pytest

pytest.importorskip("no_such_package_pnref", reason="needs pnref[nothing]")

def test_never_collected():
    pass
'''


def _run_pytest(folder: Path, ci: str | None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HYPOTHESIS_PROFILE": "dev"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        # --continue-on-collection-errors: run the tests of the other module as well, so that
        # one run shows both kinds of skip (a real CI run stops at the collection error).
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--continue-on-collection-errors", str(folder)],
        capture_output=True, text=True, env=env, cwd=folder, check=False,
    )


def _project(tmp_path: Path) -> Path:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_skip_in_test.py").write_text(SKIPPING_TESTS)
    (tmp_path / "test_skip_in_module.py").write_text(SKIPPING_MODULE)
    return tmp_path


def test_a_skip_fails_under_ci(tmp_path):
    # A skip inside a test and a whole module skipped at import both fail the run.
    done = _run_pytest(_project(tmp_path), ci="true")
    assert done.returncode == 1, done.stdout
    summary = done.stdout.strip().splitlines()[-1]
    assert "1 failed, 1 passed, 1 error" in summary and "skipped" not in summary, summary
    assert done.stdout.count("no test may be skipped") >= 2


def test_a_skip_stays_a_skip_locally(tmp_path):
    done = _run_pytest(_project(tmp_path), ci=None)
    assert done.returncode == 0, done.stdout
    assert "1 passed, 2 skipped" in done.stdout
