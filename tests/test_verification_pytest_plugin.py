"""The pytest plugin, run as a user runs it: pytest in a subprocess, JUnit XML read back.

The inner run's skips (an unsupported case) and expected failures are the plugin's output
under test; this outer test asserts them and skips nothing itself.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace

import pytest

from pnref.verification.pytest_plugin import _GoldenSession, read_xfail_file

ADAPTERS = Path(__file__).resolve().parent / "data" / "verification_adapters.py"
GN, PN = "group_norm.torch.g4.f32", "pn_act.official.relu.f64"
PN32, PM = "pn_act.official.relu.f32", "proxy_moments.official.relu.f32"


def test_plugin_is_registered_as_a_pytest11_entry_point():
    plugins = {e.name: e.value for e in entry_points(group="pytest11")}
    assert plugins.get("pnref") == "pnref.verification.pytest_plugin"


def test_plugin_run_gives_one_testcase_per_selected_case(tmp_path):
    xfail = tmp_path / "xfail.txt"
    xfail.write_text(f"# known problems\n{GN} our group norm rounds twice\n"
                     f"{PN} fixed last week  # stale: it passes now\n")
    junit = tmp_path / "junit.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA",
         "--pnref-impl", f"{ADAPTERS}:Mixed", "--pnref-select", "group_norm.torch.g4.f32",
         "--pnref-select", "pn_act.official.relu.f[36]?", "--pnref-select", PM,
         "--pnref-xfail", str(xfail), "--junitxml", str(junit)],
        cwd=tmp_path, capture_output=True, text=True, check=False)
    # exit 1: the strict xfail entry that passes (PN) fails the run
    assert done.returncode == 1, done.stdout + done.stderr
    testcases = {t.get("name"): t for t in ET.parse(junit).getroot().iter("testcase")}
    assert sorted(testcases) == sorted([GN, PN, PN32, PM])  # one per selected case
    # unsupported: a skip with the adapter's reason
    assert "unsupported by the implementation: supports() answered False" in \
        testcases[PM].find("skipped").get("message")
    # listed and failing: an expected failure (pytest writes it as a skip of type xfail)
    assert testcases[GN].find("skipped").get("type") == "pytest.xfail"
    # listed and passing: strict, a failure that says so
    assert "XPASS(strict)" in testcases[PN].find("failure").get("message")
    # passing, with the figure in its properties
    properties = {p.get("name"): p.get("value")
                  for p in testcases[PN32].iter("property")}
    assert properties["status"] == "passed"
    assert 0 <= float(properties["worst_err_over_tol"]) <= 1
    assert "XFAIL pnref-golden::group_norm.torch.g4.f32" in done.stdout


def test_plugin_is_inert_without_its_options_and_refuses_stale_xfail_entries(tmp_path):
    def config(**options):
        values = {"pnref_impl": f"{ADAPTERS}:Reference", "pnref_suite": None,
                  "pnref_select": [GN], "pnref_exclude": [], "pnref_xfail": None,
                  "pnref_timeout": None, **options}
        return SimpleNamespace(getoption=lambda name, default=None: values.get(name, default))

    xfail = tmp_path / "xfail.txt"
    xfail.write_text(f"{GN} rounds twice\nno_such.case.f32 removed long ago\n")
    with pytest.raises(pytest.UsageError, match="not in the suite .*no_such.case.f32"):
        _GoldenSession(config(pnref_xfail=str(xfail)))
    xfail.write_text(f"{GN}\n")
    with pytest.raises(pytest.UsageError, match="needs a reason"):
        read_xfail_file(xfail)
    with pytest.raises(pytest.UsageError, match="no golden case matches"):
        _GoldenSession(config(pnref_select=["nothing*"]))
    # this very test session runs with the plugin loaded and no --pnref-impl: no golden items
    from pnref.verification import pytest_plugin

    registered = SimpleNamespace(pluginmanager=SimpleNamespace(register=pytest.fail))
    assert pytest_plugin.pytest_configure(SimpleNamespace(
        getoption=lambda name, default=None: [] if "select" in name or "exclude" in name
        else None, **vars(registered))) is None
