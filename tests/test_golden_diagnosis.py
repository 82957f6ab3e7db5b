"""The catalogue of deviations and the diagnosis that names them.

The deviant model with every switch off must reproduce the bundled suite (so a deviation's
answer differs from the reference only by the mistake); a few switches are checked against
numbers derived by hand; and for every catalogue id, a "port with that one mistake" (the
deviant answer on a case the mistake fails) must be diagnosed with that id first (or tied).
"""

from __future__ import annotations

import numpy as np
import pytest

from pnref.golden import bundled_suite_dir
from pnref.golden.compare import compare
from pnref.golden.deviant_model import Knobs, model_outputs, quantile_points
from pnref.golden.deviations import CATALOGUE, DEVIATIONS, applicable, combine, deviant_outputs
from pnref.golden.diagnosis import diagnose, rank_key
from pnref.golden.format import read_case_file, read_manifest
from pnref.golden.ops import OPS
from pnref.golden.tolerances import Tolerance

#: The ids issue 12 asks for, spelled exactly so.
ISSUE_IDS = {
    "quantile-offset-eps", "proxy-points-n", "unbiased-proxy-variance", "unbiased-norm-variance",
    "eps-outside-sqrt", "pn-eps-value", "no-moments-gradient", "tildes-ignored",
    "activation-twice", "one-pass-variance", "per-group-affine", "channel-axis",
    "running-var-bias", "momentum-convention", "zero-parameter-gradients",
    "relu-derivative-at-zero", "gelu-approximation",
}


@pytest.fixture(scope="module")
def suite():
    """Every bundled case as (entry, arrays, inputs, cotangents, tolerances)."""
    directory = bundled_suite_dir()
    cases = []
    for entry in read_manifest(directory)["cases"]:
        arrays = read_case_file(directory / entry["file"])
        inputs = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("input.")}
        cotangents = {k.split(".", 1)[1]: v for k, v in arrays.items()
                      if k.startswith("cotangent.")}
        tolerances = {k: Tolerance.from_json(v) for k, v in entry["tolerances"].items()}
        cases.append((entry, arrays, inputs, cotangents, tolerances))
    return cases


def _rms(cotangents):
    if not cotangents:
        return 0.0
    flat = np.concatenate([c.astype(np.float64).ravel() for c in cotangents.values()])
    return float(np.sqrt(np.mean(flat**2))) if flat.size else 0.0


def _worst(returned, arrays, tolerances, cotangents):
    return max(compare(k, returned[k], arrays[k], t, _rms(cotangents)).tolerance_ratio
               for k, t in tolerances.items())


def test_catalogue_has_the_issue_ids_and_well_formed_entries():
    ids = [d.id for d in CATALOGUE]
    assert len(ids) == len(set(ids))
    assert ISSUE_IDS <= set(ids)
    for deviation in CATALOGUE:
        assert deviation.description and "\n" not in deviation.description
        assert deviation.ops and deviation.ops <= set(OPS)
        assert deviation.variants


def test_model_without_mistakes_reproduces_every_bundled_case(suite):
    for entry, arrays, inputs, cotangents, tolerances in suite:
        outputs = model_outputs(entry["op"], inputs, entry["attrs"], cotangents, Knobs())
        # the model is float64 like the reference; what is left is rounding, far inside the
        # case's tolerance (observed at most 0.07 of it; 0.25 leaves a margin)
        assert _worst(outputs, arrays, tolerances, cotangents) < 0.25, entry["id"]


def test_tutorial_layer_norm_numbers():
    # shared/conventions.md: on [1, 0, 0, 0] PyTorch's LayerNorm gives 1.732 (= 0.75 /
    # sqrt(0.1875), biased variance) and the tutorial's (x - mean) / (unbiased std + eps)
    # gives 1.5 (= 0.75 / sqrt(0.25)); eps = 1e-12 changes neither beyond 1e-11
    inputs = {"x": np.array([[1.0, 0.0, 0.0, 0.0]])}
    attrs = {"axis": 1, "eps": 1e-12}
    reference = OPS["layer_norm"].forward(inputs, attrs)["y"]
    tutorial = deviant_outputs("layer_norm", inputs, attrs, None,
                               DEVIATIONS["unbiased-std-plus-eps"].variants[0])["expected.y"]
    assert reference[0, 0] == pytest.approx(0.75 / np.sqrt(0.1875), rel=1e-11)
    assert tutorial[0, 0] == pytest.approx(1.5, rel=1e-11)


def test_official_points_and_eps_offset():
    from pnref.moments.quantile import points

    # the same formula (2 i + 1 - n) / n vs 2 (i + 1/2) / n - 1: rounding only
    np.testing.assert_allclose(quantile_points(200), points(200), rtol=0, atol=1e-14)
    shifted = quantile_points(200, 1e-5)
    # the offset-eps port's first point is the 5e-8 quantile, about -5.33
    assert shifted[0] == pytest.approx(-5.3267, abs=1e-3)


def test_running_update_deviations_by_hand():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2))
    inputs = {"x": x, "running_mean": np.zeros(2), "running_var": np.ones(2)}
    attrs = {"axis": 1, "momentum": 0.1, "momentum_convention": "torch"}
    batch_var = x.var(axis=0)
    bias = deviant_outputs("batch_norm_running_update", inputs, attrs, None,
                           DEVIATIONS["running-var-bias"].variants[0])
    # torch convention with the biased variance: 0.9 * 1 + 0.1 * var (exact to rounding)
    np.testing.assert_allclose(bias["expected.new_running_var"], 0.9 + 0.1 * batch_var,
                               rtol=1e-14)
    flipped = deviant_outputs("batch_norm_running_update", inputs, attrs, None,
                              DEVIATIONS["momentum-convention"].variants[0])
    np.testing.assert_allclose(flipped["expected.new_running_mean"], 0.9 * x.mean(axis=0),
                               rtol=1e-14)


def _victims(suite, variant, deviation, limit):
    """Up to ``limit`` cases that ``variant`` fails, with its rounded answer on them."""
    found = []
    for entry, arrays, inputs, cotangents, tolerances in suite:
        if variant not in applicable(deviation, entry["op"]):
            continue
        outputs = deviant_outputs(entry["op"], inputs, entry["attrs"], cotangents, variant)
        if outputs is None:
            continue
        with np.errstate(all="ignore"):
            returned = {k: outputs[k].astype(entry["dtype"]) for k in tolerances}
        if _worst(returned, arrays, tolerances, cotangents) > 1.0:
            found.append((entry, inputs, cotangents, tolerances, returned))
            if len(found) == limit:
                break
    return found


@pytest.mark.parametrize("deviation", CATALOGUE, ids=lambda d: d.id)
def test_a_port_with_one_mistake_is_diagnosed_by_its_id(suite, deviation):
    tried = 0
    for variant in deviation.variants:
        for entry, inputs, cotangents, tolerances, returned in _victims(suite, variant,
                                                                         deviation, 1):
            tried += 1
            found = diagnose(entry["op"], inputs, entry["attrs"], cotangents, returned,
                             tolerances)
            ids = [f["id"] for f in found]
            assert deviation.id in ids, (entry["id"], variant.label, found[:3])
            best = found[0]["err_over_tol"]
            mine = found[ids.index(deviation.id)]["err_over_tol"]
            # named first, or tied with the first (two mistakes with the same effect on
            # this case, see rank_key)
            assert rank_key(mine) <= rank_key(best), (entry["id"], found[:3])
            assert set(found[0]) == {"id", "description", "err_over_tol"}
    assert tried, f"no bundled case fails with {deviation.id}"


def test_a_correct_output_and_an_unknown_mistake_are_not_diagnosed(suite):
    entry, arrays, inputs, cotangents, tolerances = next(
        c for c in suite if c[0]["id"] == "pn_act.official.relu.f32")
    expected = {k: arrays[k].astype(np.float32) for k in tolerances}
    assert diagnose("pn_act", inputs, entry["attrs"], cotangents, expected, tolerances) == []
    # an unknown mistake: outputs scaled by 1.003 and gradients reversed
    unknown = {k: (1.003 * v if k.startswith("expected.") else -v) for k, v in expected.items()}
    assert diagnose("pn_act", inputs, entry["attrs"], cotangents, unknown, tolerances) == []


def test_two_mistakes_are_diagnosed_as_a_pair(suite):
    entry, arrays, inputs, cotangents, tolerances = next(
        c for c in suite if c[0]["id"] == "pn_act.official.relu.f64")
    both = combine(DEVIATIONS["unbiased-proxy-variance"].variants[0],
                   DEVIATIONS["pn-eps-value"].variants[0])
    outputs = deviant_outputs("pn_act", inputs, entry["attrs"], cotangents, both)
    found = diagnose("pn_act", inputs, entry["attrs"], cotangents, outputs, tolerances)
    assert found and found[0]["id"] == "unbiased-proxy-variance+pn-eps-value", found[:3]
    assert found[0]["err_over_tol"] <= 1.0


def test_missing_arrays_are_judged_on_what_was_returned(suite):
    entry, arrays, inputs, cotangents, tolerances = next(
        c for c in suite if c[0]["id"] == "group_norm.official.g4.f32")
    outputs = deviant_outputs("group_norm", inputs, entry["attrs"], cotangents,
                              DEVIATIONS["eps-outside-sqrt"].variants[0])
    forward_only = {"expected.y": outputs["expected.y"].astype(np.float32)}
    found = diagnose("group_norm", inputs, entry["attrs"], cotangents, forward_only, tolerances)
    assert found and found[0]["id"] == "eps-outside-sqrt"
    with pytest.raises(ValueError, match="op must be one of"):
        diagnose("no_such_op", inputs, entry["attrs"], cotangents, forward_only, tolerances)


def test_mutant_adapters_carry_one_mistake_each():
    from pnref.adapters import mutants
    from pnref.verification.adapter import load_adapter
    from pnref.verification.runner import verify_suite

    assert sorted(mutants.MUTANTS.values()) == sorted(DEVIATIONS)
    adapter = load_adapter("pnref.adapters.mutants:TildesIgnored")
    report = verify_suite(bundled_suite_dir(), adapter, select="pn_act.official.relu.f32",
                          timeout=None)
    assert report.failed == 1  # the mistake shows where it applies
    # ... and the verifier's diagnosis (the runner's hook into `diagnose`) names it
    assert report.cases[0].diagnosis[0]["id"] == "tildes-ignored"
    report = verify_suite(bundled_suite_dir(), adapter, select="group_norm.torch.g4.f32",
                          timeout=None)
    assert report.failed == 0  # and nowhere else: the reference answers there
    with pytest.raises(ValueError, match="deviation_id must be one of"):
        mutants.MutantAdapter("no-such-mistake")
