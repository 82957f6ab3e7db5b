"""The verification engine: comparisons, error capture (bad files, bad adapters), CLI and report."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pnref.cli import main
from pnref.golden import bundled_suite_dir
from pnref.golden.adapter import PnrefAdapter, load_adapter
from pnref.golden.format import (
    SuiteFormatError,
    read_case_file,
    read_manifest,
    write_case_file,
    write_manifest,
)
from pnref.golden.tolerances import tolerance_for
from pnref.golden.verify import compare, verify_suite

SMALL = ("group_norm.torch.g4.f32", "pn_act.official.relu.f64", "proxy_moments.official.relu.f32")


@pytest.fixture
def small_suite(tmp_path):
    """A three-case copy of the bundled suite that tests may damage."""
    manifest = read_manifest(bundled_suite_dir())
    manifest["cases"] = [c for c in manifest["cases"] if c["id"] in SMALL]
    assert [c["id"] for c in manifest["cases"]] == sorted(SMALL, key=[
        c["id"] for c in read_manifest(bundled_suite_dir())["cases"]].index)
    for case in manifest["cases"]:
        shutil.copy(bundled_suite_dir() / case["file"], tmp_path / case["file"])
    write_manifest(tmp_path, manifest)
    return tmp_path


def _by_id(report):
    return {case.case_id: case for case in report.cases}


def test_default_adapter_passes_the_bundled_suite(tmp_path, capsys):
    report_path = tmp_path / "report.json"
    assert main(["golden", "verify", "--report", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "total:" in out and "pn_act" in out
    report = json.loads(report_path.read_text())
    cases = len(read_manifest(bundled_suite_dir())["cases"])
    assert report["summary"] == {"cases": cases, "passed": cases, "failed": 0}
    assert {row["op"] for row in report["by_op_profile"]} >= {
        "batch_norm", "group_norm", "layer_norm", "instance_norm", "proxy_moments", "pn_act",
        "norm_pn_act", "norm_act", "weight_standardization"}
    # every case really compared something: at least one check each, all within tolerance
    for case in report["cases"]:
        assert case["checks"] and all(check["tolerance_ratio"] <= 1 for check in case["checks"])


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
    actual[2, 3] = expected[2, 3] + 0.5 * allowed
    assert compare("expected.y", actual, expected, tol).passed
    actual[2, 3] = np.nan
    nan_check = compare("expected.y", actual, expected, tol)
    assert not nan_check.passed and nan_check.tolerance_ratio == np.inf


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

    defects = {
        "raised ZeroDivisionError: boom": raises,
        "with shape (2, 3, 3, 4), expected": lambda r: {"out": r["out"][..., :4]},
        "with dtype float32, expected float64": lambda r: {"out": r["out"].astype(np.float32)},
        "expected a mapping": lambda r: r["out"],
        "returned no 'out'": lambda r: {"output": r["out"]},
    }
    for message, defect in defects.items():
        report = verify_suite(small_suite, _Wrapped(defect))
        cases = _by_id(report)
        bad = cases["pn_act.official.relu.f64"]
        assert not bad.passed
        assert any(message in error for error in bad.errors), (message, bad.errors)
        # the other cases are unaffected
        assert cases["group_norm.torch.g4.f32"].passed
        assert cases["proxy_moments.official.relu.f32"].passed


def test_damaged_files_become_failed_cases(small_suite):
    gn = small_suite / "group_norm.torch.g4.f32.npz"
    arrays = read_case_file(gn)
    # 1. an edited value in a valid file: checksum mismatch
    edited = dict(arrays)
    edited["expected.y"] = edited["expected.y"].copy()
    edited["expected.y"][0, 0, 0, 0] += 1.0
    write_case_file(gn, edited)
    report = _by_id(verify_suite(small_suite, PnrefAdapter()))
    assert any("checksum mismatch for array 'expected.y'" in e
               for e in report["group_norm.torch.g4.f32"].errors)
    # 2. a missing array
    write_case_file(gn, {k: v for k, v in arrays.items() if k != "cotangent.y"})
    report = _by_id(verify_suite(small_suite, PnrefAdapter()))
    assert any("'cotangent.y' is missing" in e for e in report["group_norm.torch.g4.f32"].errors)
    # 3. a corrupted file
    raw = bytearray((small_suite / "pn_act.official.relu.f64.npz").read_bytes())
    raw[100:140] = b"\0" * 40
    (small_suite / "pn_act.official.relu.f64.npz").write_bytes(bytes(raw))
    report = _by_id(verify_suite(small_suite, PnrefAdapter()))
    assert not report["pn_act.official.relu.f64"].passed
    assert report["pn_act.official.relu.f64"].errors
    assert report["proxy_moments.official.relu.f32"].passed


def test_malformed_manifest_entries_fail_alone(small_suite):
    manifest = read_manifest(small_suite)
    manifest["cases"][0]["op"] = "no_such_op"
    del manifest["cases"][1]["tolerances"]
    manifest["cases"].append("not an object")
    write_manifest(small_suite, manifest)
    report = verify_suite(small_suite, PnrefAdapter())
    assert report.failed == 3 and report.passed == 1
    assert all(any("malformed" in e for e in c.errors) for c in report.failures())


def test_cli_exit_status_and_report_for_failures(small_suite, tmp_path, capsys):
    (small_suite / "proxy_moments.official.relu.f32.npz").unlink()
    report_path = tmp_path / "r.json"
    assert main(["golden", "verify", "--suite", str(small_suite), "--report",
                 str(report_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL proxy_moments.official.relu.f32" in out and "is missing" in out
    report = json.loads(report_path.read_text())
    assert report["summary"] == {"cases": 3, "passed": 2, "failed": 1}
    assert main(["golden", "verify", "--suite", str(tmp_path / "nowhere")]) == 2
    assert main(["golden", "verify", "--impl", "pnref.golden.adapter:Nothing"]) == 2
    assert main(["golden", "verify", "--impl", "no_colon"]) == 2
    assert "cannot load" in capsys.readouterr().err


def test_load_adapter_accepts_classes_and_instances():
    assert load_adapter("pnref.golden.adapter:PnrefAdapter").name == "pnref"
    with pytest.raises(ValueError, match="MODULE:OBJECT"):
        load_adapter("pnref.golden.adapter")
    with pytest.raises(ValueError, match="not a golden adapter"):
        load_adapter("pnref.golden.format:SCHEMA_VERSION")
    with pytest.raises(SuiteFormatError):
        verify_suite(bundled_suite_dir().parent, PnrefAdapter())


def test_demo_runs_the_golden_verification_then_the_gradient_check(capsys):
    from pnref.demo import run_demo

    assert run_demo() == 0
    out = capsys.readouterr().out
    cases = len(read_manifest(bundled_suite_dir())["cases"])
    assert f"pnref golden verify: suite 'canonical' ({cases} cases)" in out
    assert f"total: {cases} cases, {cases} passed, 0 failed" in out
    assert out.index("total:") < out.index("backward vs central differences")
    assert main(["check-gradients"]) == 0
    assert "all checks passed" in capsys.readouterr().out
