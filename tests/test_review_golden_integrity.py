"""Review regressions: a damaged golden suite must never verify as passing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from pnref.cli import main
from pnref.golden import bundled_suite_dir
from pnref.golden.adapter import PnrefAdapter
from pnref.golden.format import read_case_file, read_manifest, write_case_file, write_manifest
from pnref.golden.verify import verify_suite

CASE = "group_norm.torch.g4.f32"


@pytest.fixture
def one_case_suite(tmp_path):
    """A one-case copy of the bundled suite (never the bundled files themselves)."""
    manifest = read_manifest(bundled_suite_dir())
    manifest["cases"] = [c for c in manifest["cases"] if c["id"] == CASE]
    assert len(manifest["cases"]) == 1
    shutil.copy(bundled_suite_dir() / manifest["cases"][0]["file"], tmp_path)
    write_manifest(tmp_path, manifest)
    return tmp_path, manifest


def _only(report):
    assert len(report.cases) >= 1
    return report.cases[0]


def test_intact_copy_passes(one_case_suite):
    suite, _ = one_case_suite
    assert _only(verify_suite(suite, PnrefAdapter())).passed


def test_array_missing_from_manifest_fails(one_case_suite):
    # expected.y dropped from the manifest: its checksum could no longer be verified
    suite, manifest = one_case_suite
    del manifest["cases"][0]["arrays"]["expected.y"]
    write_manifest(suite, manifest)
    case = _only(verify_suite(suite, PnrefAdapter()))
    assert not case.passed
    assert any("expected.y" in e and "does not list" in e for e in case.errors)


def test_extra_array_in_case_file_fails(one_case_suite):
    suite, manifest = one_case_suite
    path = suite / manifest["cases"][0]["file"]
    arrays = read_case_file(path)
    arrays["input.junk"] = np.ones(3)
    write_case_file(path, arrays)
    case = _only(verify_suite(suite, PnrefAdapter()))
    assert not case.passed
    assert any("input.junk" in e for e in case.errors)


def test_expected_array_without_tolerance_fails(one_case_suite):
    # a dropped tolerance used to leave expected.y silently unchecked
    suite, manifest = one_case_suite
    del manifest["cases"][0]["tolerances"]["expected.y"]
    write_manifest(suite, manifest)
    case = _only(verify_suite(suite, PnrefAdapter()))
    assert not case.passed
    assert any("tolerance" in e and "expected.y" in e for e in case.errors)


def test_duplicate_case_id_fails(one_case_suite):
    suite, manifest = one_case_suite
    manifest["cases"].append(dict(manifest["cases"][0]))
    write_manifest(suite, manifest)
    report = verify_suite(suite, PnrefAdapter())
    assert report.failed == 1
    assert any("more than once" in e for c in report.cases for e in c.errors)


def test_select_matching_nothing_is_not_success(one_case_suite, capsys):
    suite, _ = one_case_suite
    status = main(["golden", "verify", "--suite", str(suite), "--select", "no-such-case"])
    assert status == 2
    assert "--select" in capsys.readouterr().err
