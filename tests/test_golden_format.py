"""The golden file format (reproducible .npz, checksums, manifest checks); the tolerance policy."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from pnref.golden.format import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    SuiteFormatError,
    array_sha256,
    read_case_file,
    read_manifest,
    seal_manifest,
    write_case_file,
    write_manifest,
)
from pnref.golden.tolerances import (
    EXACT_MOMENTS_FLOOR,
    Tolerance,
    montecarlo_tolerance,
    tolerance_for,
)


def _arrays(rng):
    return {
        "input.x": rng.standard_normal((2, 3, 4)).astype(np.float16),
        "expected.y": rng.standard_normal((2, 3, 4)),
        "input.gamma": rng.standard_normal(3).astype(np.float32),
    }


def test_case_file_round_trips_bit_for_bit(tmp_path):
    arrays = _arrays(np.random.default_rng(0))
    write_case_file(tmp_path / "a.npz", arrays)
    back = read_case_file(tmp_path / "a.npz")
    assert sorted(back) == sorted(arrays)
    for key, value in arrays.items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape
        assert array_sha256(back[key]) == array_sha256(value)


def test_case_file_bytes_are_reproducible(tmp_path):
    # Same arrays written twice (and in another insertion order): identical bytes, so a
    # regenerated suite is byte-identical on one platform.
    arrays = _arrays(np.random.default_rng(1))
    write_case_file(tmp_path / "a.npz", arrays)
    write_case_file(tmp_path / "b.npz", dict(reversed(list(arrays.items()))))
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_sha256_is_of_little_endian_c_order_bytes():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    expected = hashlib.sha256(a.astype("<f8").tobytes()).hexdigest()
    assert array_sha256(a) == expected
    assert array_sha256(a.astype(">f8")) == expected  # byte order does not change the digest
    assert array_sha256(np.asfortranarray(a)) == expected  # nor the memory layout
    changed = a.copy()
    changed[1, 2] = np.nextafter(changed[1, 2], np.inf)  # one ulp changes it
    assert array_sha256(changed) != expected


def test_corrupted_case_file_is_a_format_error(tmp_path):
    write_case_file(tmp_path / "a.npz", _arrays(np.random.default_rng(2)))
    raw = bytearray((tmp_path / "a.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "a.npz").write_bytes(bytes(raw))
    with pytest.raises(SuiteFormatError, match="a.npz"):
        read_case_file(tmp_path / "a.npz")
    with pytest.raises(SuiteFormatError, match="missing"):
        read_case_file(tmp_path / "absent.npz")


def test_pickled_object_arrays_are_refused(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(SuiteFormatError, match="obj.npz"):
        read_case_file(tmp_path / "obj.npz")
    with pytest.raises(TypeError, match="object"):
        write_case_file(tmp_path / "w.npz", {"x": np.array([None], dtype=object)})


def test_manifest_checks(tmp_path):
    with pytest.raises(SuiteFormatError, match="no manifest.json"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(SuiteFormatError, match="not valid JSON"):
        read_manifest(tmp_path)
    write_manifest(tmp_path, {"format": "pnref-golden", "schema_version": SCHEMA_VERSION + 1,
                              "cases": []})
    with pytest.raises(SuiteFormatError, match="schema_version"):
        read_manifest(tmp_path)
    write_manifest(tmp_path, {"format": "other", "schema_version": SCHEMA_VERSION, "cases": []})
    with pytest.raises(SuiteFormatError, match="not a pnref-golden manifest"):
        read_manifest(tmp_path)
    good = {"format": "pnref-golden", "schema_version": SCHEMA_VERSION, "cases": []}
    write_manifest(tmp_path, good)
    with pytest.raises(SuiteFormatError, match="no sha256 digest"):
        read_manifest(tmp_path)  # an unsealed manifest could have been edited unnoticed
    assert read_manifest(tmp_path, check=False) == good
    write_manifest(tmp_path, seal_manifest(dict(good)))
    assert read_manifest(tmp_path)["cases"] == []
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["digest"]["algorithm"] == "sha256"


def test_tolerance_scales_with_mantissa_and_condition():
    f16, f32, f64 = (tolerance_for("output", d) for d in ("float16", "float32", "float64"))
    # 16 x machine epsilon of the dtype: 2**-23, 2**-52
    assert f32.rtol == 16 * 2.0**-23 and f64.rtol == 16 * 2.0**-52
    # float16: float32 statistics (16 x 2**-23 x condition) plus four float16 roundings of
    # eps/2 each (2 x 2**-10), the latter not amplified by the condition
    assert f16.rtol == 16 * 2.0**-23 + 2 * 2.0**-10
    assert tolerance_for("output", "float16", condition=10.0).rtol == pytest.approx(
        10 * 16 * 2.0**-23 + 2 * 2.0**-10, rel=1e-15)
    assert "float16" in f16.reason and "float32 statistics" in f16.reason
    assert tolerance_for("output", "float32", condition=10.0).rtol == 10 * f32.rtol
    assert tolerance_for("input_grad", "float32").metric == "relative_l2"
    assert tolerance_for("param_grad", "float64").rtol == 64 * 2.0**-52
    for tol in (f16, f32, f64):
        assert tol.reason  # every tolerance carries its reason


def test_quantile_cases_use_at_least_float32_unit_and_exact_cases_a_floor():
    quantile64 = tolerance_for("output", "float64", method="quantile")
    assert quantile64.rtol == tolerance_for("output", "float32").rtol
    assert "float32" in quantile64.reason
    # the float32 unit applies to PN-Act's own conditioning only, float64's to the rest
    split = tolerance_for("output", "float64", method="quantile", condition=1000.0,
                          moments_condition=10.0)
    assert split.rtol == pytest.approx(16 * (2.0**-52 * 1000 + 2.0**-23 * 10), rel=1e-15)
    with pytest.raises(ValueError, match="moments_condition"):
        tolerance_for("output", "float64", method="quantile", condition=2.0,
                      moments_condition=3.0)
    exact64 = tolerance_for("statistics", "float64", method="exact")
    assert exact64.rtol == EXACT_MOMENTS_FLOOR and "1e-12" in exact64.reason
    mc = montecarlo_tolerance("statistics", 1e-3, 100_000)
    # 6 standard errors of 1e-3, absolute (false alarm odds ~2e-9 per element): one product.
    assert mc.atol == 6 * 1e-3 and mc.rtol == 0.0


def test_tolerance_arguments_are_checked():
    with pytest.raises(ValueError, match="kind"):
        tolerance_for("gradient", "float32")
    with pytest.raises(ValueError, match="condition"):
        tolerance_for("output", "float32", condition=0.5)
    with pytest.raises(TypeError, match="floating"):
        tolerance_for("output", "int32")
    with pytest.raises(ValueError, match="kind/metric"):
        Tolerance.from_json({"kind": "output", "metric": "relative_l2", "rtol": 1, "atol": 0})
    with pytest.raises(ValueError, match="finite"):
        Tolerance.from_json({"kind": "output", "metric": "elementwise", "rtol": -1, "atol": 0})
