"""The verification engine: comparisons, error capture (bad files, bad adapters), CLI and report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import copy_golden_cases

from pnref.cli import main
from pnref.golden import bundled_suite_dir
from pnref.golden.compare import compare
from pnref.golden.format import (
    SuiteFormatError,
    read_case_file,
    read_manifest,
    seal_manifest,
    write_case_file,
    write_manifest,
)
from pnref.golden.tolerances import tolerance_for
from pnref.verification.adapter import AdapterLoadError, PnrefAdapter, load_adapter
from pnref.verification.runner import verify_suite

SMALL = ("group_norm.torch.g4.f32", "pn_act.official.relu.f64", "proxy_moments.official.relu.f32")


@pytest.fixture
def small_suite(tmp_path):
    """A three-case copy of the bundled suite that tests may damage."""
    suite = tmp_path / "suite"
    suite.mkdir()
    copy_golden_cases(suite, SMALL)
    return suite


def _by_id(report):
    return {case.case_id: case for case in report.cases}


def test_default_adapter_passes_the_bundled_suite(tmp_path, capsys):
    report_path = tmp_path / "report.json"
    assert main(["golden", "verify", "--report", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "total:" in out and "pn_act" in out
    report = json.loads(report_path.read_text())
    cases = len(read_manifest(bundled_suite_dir())["cases"])
    assert report["summary"] == {"cases": cases, "selected": cases, "passed": cases,
                                 "failed": 0, "unsupported": 0, "timeout": 0, "error": 0,
                                 "gradients_unsupported": 0}
    assert {row["op"] for row in report["by_op_profile"]} >= {
        "batch_norm", "group_norm", "layer_norm", "instance_norm", "proxy_moments", "pn_act",
        "norm_pn_act", "norm_act", "weight_standardization"}
    # every case really compared something: at least one array each, all within tolerance
    for case in report["cases"]:
        assert case["status"] == "passed"
        assert case["arrays"] and all(a["max_err_over_tol"] <= 1 for a in case["arrays"])
        assert all(a["tolerance"]["source"] == "suite" and a["tolerance"]["reason"]
                   for a in case["arrays"])


def test_compare_elementwise_catches_one_bad_element():
    rng = np.random.default_rng(3)
    expected = rng.standard_normal((4, 5))
    tol = tolerance_for("output", "float32")
    floor = np.sqrt(np.mean(expected**2))
    allowed = tol.rtol * (np.abs(expected[2, 3]) + floor)
    actual = expected.copy()
    actual[2, 3] += 2.0 * allowed
    check = compare("expected.y", actual, expected, tol)
    assert not check.passed
    assert check.worst_index == [2, 3]
    assert check.worst_actual == actual[2, 3] and check.worst_expected == expected[2, 3]
    # actual[2, 3] is expected[2, 3] + 2 allowed rounded to half an ulp of expected[2, 3]
    # (<= 2.2e-16) against 2 allowed ~ 7e-6: the ratio is 2 to ~3e-11 relative.
    assert check.tolerance_ratio == pytest.approx(2.0, rel=1e-10)
    assert check.max_abs_error == pytest.approx(2.0 * allowed, rel=1e-10)
    # one element of twenty off: the median ratio is that of the exact ones, 0
    assert check.median_ratio == 0.0
    actual[2, 3] = expected[2, 3] + 0.5 * allowed
    assert compare("expected.y", actual, expected, tol).passed
    actual[2, 3] = np.nan
    nan_check = compare("expected.y", actual, expected, tol)
    assert not nan_check.passed and nan_check.tolerance_ratio == np.inf


def test_compare_identical_infinities_are_equal_and_other_infinities_fail():
    expected = np.array([1.0, np.inf, -np.inf, np.nan, -2.0])
    tol = tolerance_for("output", "float32")
    same = compare("expected.y", expected.copy(), expected, tol)
    assert same.passed and same.tolerance_ratio == 0.0 and same.max_abs_error == 0.0
    for index, wrong in ((0, np.inf), (1, -np.inf), (2, np.inf), (1, 1e300), (4, np.nan)):
        actual = expected.copy()
        actual[index] = wrong
        check = compare("expected.y", actual, expected, tol)
        assert not check.passed and check.tolerance_ratio == np.inf, (index, wrong)
        assert check.worst_index == [index]
    grad_tol = tolerance_for("param_grad", "float32")
    assert compare("g", expected.copy(), expected, grad_tol).passed
    wrong_sign = expected.copy()
    wrong_sign[2] = np.inf
    assert not compare("g", wrong_sign, expected, grad_tol).passed


def test_compare_relative_l2_uses_the_norm_of_the_whole_gradient():
    rng = np.random.default_rng(4)
    expected = rng.standard_normal(50)
    tol = tolerance_for("param_grad", "float32")
    direction = rng.standard_normal(50)
    direction /= np.linalg.norm(direction)
    scale = tol.rtol * np.linalg.norm(expected)
    assert not compare("g", expected + 1.5 * scale * direction, expected, tol).passed
    assert compare("g", expected + 0.5 * scale * direction, expected, tol).passed
    check = compare("g", expected + 1.5 * scale * direction, expected, tol)
    # Each perturbed element is rounded to half an ulp of an O(1) value (~1e-16) against a
    # perturbation of norm 1.5 scale ~ 5e-4: the ratio is 1.5 rtol to ~1e-12 relative.
    assert check.rel_l2_error == pytest.approx(1.5 * tol.rtol, rel=1e-10)
    # the median elementwise error over the allowed norm's per-element share (allowed /
    # sqrt(50)) is below the L2 ratio: the RMS of the elementwise ratios equals it
    assert 0 < check.median_ratio < check.tolerance_ratio * np.sqrt(2)


class _Wrapped(PnrefAdapter):
    """The default adapter with one deliberate defect applied to some op."""

    def __init__(self, defect, op="pn_act"):
        super().__init__()
        self.defect, self.op = defect, op

    def forward(self, op, inputs, attrs):
        result = super().forward(op, inputs, attrs)
        return self.defect(result) if op == self.op else result


def test_adapter_defects_become_failed_cases_with_clear_messages(small_suite):
    def raises(result):
        raise ZeroDivisionError("boom")

    def exits(result):
        raise SystemExit(3)

    defects = {
        "raised ZeroDivisionError: boom": raises,
        "raised SystemExit: 3": exits,
        "with shape (2, 3, 3, 4), expected": lambda r: {"out": r["out"][..., :4]},
        "with dtype float32, expected float64": lambda r: {"out": r["out"].astype(np.float32)},
        "expected a mapping": lambda r: r["out"],
        "returned no 'out'": lambda r: {"output": r["out"]},
    }
    for message, defect in defects.items():
        report = verify_suite(small_suite, _Wrapped(defect))
        cases = _by_id(report)
        bad = cases["pn_act.official.relu.f64"]
        assert bad.status == "failed"
        assert any(message in error for error in bad.messages), (message, bad.messages)
        # the other cases are unaffected
        assert cases["group_norm.torch.g4.f32"].passed
        assert cases["proxy_moments.official.relu.f32"].passed


def test_damaged_files_are_errors_of_their_case_alone(small_suite):
    gn = small_suite / "group_norm.torch.g4.f32.npz"
    arrays = read_case_file(gn)
    # 1. an edited value in a valid file: checksum mismatch
    edited = dict(arrays)
    edited["expected.y"] = edited["expected.y"].copy()
    edited["expected.y"][0, 0, 0, 0] += 1.0
    write_case_file(gn, edited)
    report = _by_id(verify_suite(small_suite, PnrefAdapter()))
    assert report["group_norm.torch.g4.f32"].status == "error"
    assert any("checksum mismatch for array 'expected.y'" in e
               for e in report["group_norm.torch.g4.f32"].messages)
    # 2. a missing array
    write_case_file(gn, {k: v for k, v in arrays.items() if k != "cotangent.y"})
    report = _by_id(verify_suite(small_suite, PnrefAdapter()))
    assert any("'cotangent.y' is missing" in e
               for e in report["group_norm.torch.g4.f32"].messages)
    # 3. a corrupted file
    raw = bytearray((small_suite / "pn_act.official.relu.f64.npz").read_bytes())
    raw[100:140] = b"\0" * 40
    (small_suite / "pn_act.official.relu.f64.npz").write_bytes(bytes(raw))
    report = _by_id(verify_suite(small_suite, PnrefAdapter()))
    assert report["pn_act.official.relu.f64"].status == "error"
    assert report["pn_act.official.relu.f64"].messages
    assert report["proxy_moments.official.relu.f32"].passed


def test_malformed_manifest_entries_stop_the_run_naming_the_case(small_suite):
    # sealed after the edit (so the digest does not catch it first): the entry checks do
    manifest = read_manifest(small_suite)
    index = [c["id"] for c in manifest["cases"]].index("pn_act.official.relu.f64")
    manifest["cases"][index]["tolerances"].pop("expected.out")
    write_manifest(small_suite, seal_manifest(manifest))
    with pytest.raises(SuiteFormatError, match="pn_act.official.relu.f64.*differ"):
        verify_suite(small_suite, PnrefAdapter())
    manifest["cases"][1] = "not an object"
    write_manifest(small_suite, seal_manifest(manifest))
    with pytest.raises(SuiteFormatError, match="case #1 is not an object"):
        verify_suite(small_suite, PnrefAdapter())


def test_cli_exit_status_and_report_for_failures(small_suite, tmp_path, capsys):
    report_path = tmp_path / "r.json"
    bad = tmp_path / "bad.py"
    bad.write_text("from pnref.verification.adapter import PnrefAdapter\n\n"
                   "class Zeros(PnrefAdapter):\n"
                   "    def forward(self, op, inputs, attrs):\n"
                   "        out = super().forward(op, inputs, attrs)\n"
                   "        return {k: v * 0 for k, v in out.items()} if op == 'pn_act' else out\n")
    status = main(["golden", "verify", "--suite", str(small_suite), "--report", str(report_path),
                   "--impl", f"{bad}:Zeros", "-q", "--timeout", "0"])
    out = capsys.readouterr().out
    assert status == 1
    assert "FAIL pn_act.official.relu.f64" in out and "expected.out" in out
    report = json.loads(report_path.read_text())
    assert report["summary"]["failed"] == 1 and report["summary"]["passed"] == 2
    (small_suite / "proxy_moments.official.relu.f32.npz").unlink()
    assert main(["golden", "verify", "--suite", str(small_suite), "-q", "--timeout", "0"]) == 2
    err = capsys.readouterr().err
    assert "pnref: error: 1 case(s) could not be judged" in err and "is missing" in err


def test_load_adapter_accepts_classes_instances_and_the_old_module_name():
    assert load_adapter("pnref.verification.adapter:PnrefAdapter").name == "pnref"
    # the module's name before pnref.verification existed still loads
    assert load_adapter("pnref.golden.adapter:PnrefAdapter").name == "pnref"
    with pytest.raises(AdapterLoadError, match="MODULE:OBJECT"):
        load_adapter("pnref.verification.adapter")
    with pytest.raises(AdapterLoadError, match="not a golden adapter"):
        load_adapter("pnref.golden.format:SCHEMA_VERSION")
    with pytest.raises(SuiteFormatError):
        verify_suite(bundled_suite_dir().parent, PnrefAdapter())


def test_demo_runs_the_golden_verification_then_the_gradient_check(capsys):
    from pnref.demo import run_demo

    assert run_demo() == 0
    out = capsys.readouterr().out
    cases = len(read_manifest(bundled_suite_dir())["cases"])
    assert f"pnref golden verify: suite 'canonical' ({cases} cases)" in out
    assert f"total: {cases} cases, {cases} passed, 0 failed, 0 unsupported" in out
    assert out.index("total:") < out.index("backward vs central differences")
    assert main(["check-gradients"]) == 0
    assert "all checks passed" in capsys.readouterr().out
