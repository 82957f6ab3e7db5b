"""Review regressions: a damaged golden suite must never verify as passing.

Each edit is sealed again (as a forger who recomputed the digest would), so that the checks
behind the digest are the ones tested: the case entries and the case files.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import copy_golden_cases

from pnref.cli import main
from pnref.golden.format import (
    SuiteFormatError,
    read_case_file,
    read_manifest,
    seal_manifest,
    write_case_file,
    write_manifest,
)
from pnref.verification.adapter import PnrefAdapter
from pnref.verification.runner import verify_suite

CASE = "group_norm.torch.g4.f32"


@pytest.fixture
def one_case_suite(tmp_path):
    """A one-case copy of the bundled suite (never the bundled files themselves)."""
    manifest = copy_golden_cases(tmp_path, [CASE])
    return tmp_path, manifest


def _only(report):
    assert len(report.cases) >= 1
    return report.cases[0]


def test_intact_copy_passes(one_case_suite):
    suite, _ = one_case_suite
    assert _only(verify_suite(suite, PnrefAdapter())).passed


def test_array_missing_from_manifest_stops_the_run(one_case_suite):
    # expected.y dropped from the manifest: its checksum could no longer be verified
    suite, manifest = one_case_suite
    del manifest["cases"][0]["arrays"]["expected.y"]
    write_manifest(suite, seal_manifest(manifest))
    with pytest.raises(SuiteFormatError, match="expected arrays .* and tolerances .* differ"):
        verify_suite(suite, PnrefAdapter())


def test_extra_array_in_case_file_is_an_error(one_case_suite):
    suite, manifest = one_case_suite
    path = suite / manifest["cases"][0]["file"]
    arrays = read_case_file(path)
    arrays["input.junk"] = np.ones(3)
    write_case_file(path, arrays)
    case = _only(verify_suite(suite, PnrefAdapter()))
    assert case.status == "error"
    assert any("input.junk" in e for e in case.messages)


def test_expected_array_without_tolerance_stops_the_run(one_case_suite):
    # a dropped tolerance used to leave expected.y silently unchecked
    suite, manifest = one_case_suite
    del manifest["cases"][0]["tolerances"]["expected.y"]
    write_manifest(suite, seal_manifest(manifest))
    with pytest.raises(SuiteFormatError, match="expected.y"):
        verify_suite(suite, PnrefAdapter())


def test_duplicate_case_id_stops_the_run(one_case_suite):
    suite, manifest = one_case_suite
    manifest["cases"].append(dict(manifest["cases"][0]))
    write_manifest(suite, seal_manifest(manifest))
    with pytest.raises(SuiteFormatError, match="more than once"):
        verify_suite(suite, PnrefAdapter())


def test_select_matching_nothing_is_not_success(one_case_suite, capsys):
    suite, _ = one_case_suite
    status = main(["golden", "verify", "--suite", str(suite), "--select", "no-such-case"])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("pnref: error: nothing to verify") and "--select" in err


def test_unsealed_manifest_is_refused(one_case_suite, capsys):
    suite, manifest = one_case_suite
    manifest.pop("digest")
    write_manifest(suite, manifest)
    assert main(["golden", "verify", "--suite", str(suite)]) == 2
    assert "has no sha256 digest" in capsys.readouterr().err
    assert "digest" not in read_manifest(suite, check=False)
