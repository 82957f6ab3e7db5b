"""The power-plot experiment: circular convolution, the power decomposition, the tiny network.

Everything here runs on tiny networks (width <= 16, depth <= 6, images <= 8x8) in well under a
second each, and none of it needs matplotlib except the one figure test, which skips without it.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pnref.experiments.power import (
    NORMS,
    PART_NAMES,
    PowerSettings,
    circular_conv3x3,
    draw_network,
    normalized_preactivations,
    power_decomposition,
    run_power_experiment,
    write_csv,
)

TINY = PowerSettings(width=16, depth=6, image_size=8, inputs=8, groups=4, seed=3,
                     input_kind="noise", runs=1)


def _naive_circular_conv(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The defining sum, one output element at a time."""
    n, h, w, _ = x.shape
    out = np.zeros((n, h, w, weights.shape[0]))
    for i in range(h):
        for j in range(w):
            for a in (-1, 0, 1):
                for b in (-1, 0, 1):
                    pixel = x[:, (i + a) % h, (j + b) % w, :]
                    out[:, i, j, :] += pixel @ weights[:, a + 1, b + 1, :].T
    return out


@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (1, 1, 1, 2), (3, 2, 3, 1)])
def test_circular_conv_matches_defining_sum(shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    weights = rng.standard_normal((4, 3, 3, shape[3]))
    # float64 sums of at most 9 * 3 products of O(1) numbers: rounding ~1e-15.
    np.testing.assert_allclose(circular_conv3x3(x, weights), _naive_circular_conv(x, weights),
                               rtol=1e-12, atol=1e-12)


def test_circular_conv_commutes_with_circular_shifts():
    # Periodic boundaries make the convolution equivariant to any circular shift of the image,
    # including shifts that carry pixels across the border (zero padding would break this).
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 5, 3))
    weights = rng.standard_normal((4, 3, 3, 3))
    shifted_then_conv = circular_conv3x3(np.roll(x, (2, -3), axis=(1, 2)), weights)
    conv_then_shifted = np.roll(circular_conv3x3(x, weights), (2, -3), axis=(1, 2))
    # Same products summed in the same order per output element; rounding only.
    np.testing.assert_allclose(shifted_then_conv, conv_then_shifted, rtol=1e-13, atol=1e-13)


def test_circular_conv_rejects_bad_shapes_and_dtypes():
    x = np.zeros((1, 4, 4, 3))
    with pytest.raises(ValueError, match="weights"):
        circular_conv3x3(x, np.zeros((2, 3, 3, 5)))
    with pytest.raises(ValueError, match="x must have shape"):
        circular_conv3x3(np.zeros((4, 4, 3)), np.zeros((2, 3, 3, 3)))
    with pytest.raises(TypeError, match="x"):
        circular_conv3x3(np.zeros((1, 4, 4, 3), dtype=int), np.zeros((2, 3, 3, 3)))


def _naive_parts(y: np.ndarray) -> tuple[float, float, float, float]:
    """The three parts and total for channels-first y, one channel at a time with np.var."""
    constant, variability, within, total = [], [], [], []
    for c in range(y.shape[1]):
        per_input = y[:, c].reshape(y.shape[0], -1)
        means = per_input.mean(axis=1)
        constant.append(means.mean() ** 2)
        variability.append(np.var(means))
        within.append(np.var(per_input, axis=1).mean())
        total.append(np.mean(per_input**2))
    return tuple(float(np.mean(v)) for v in (constant, variability, within, total))


@pytest.mark.parametrize(
    ("shape", "axis"), [((5, 3, 4, 6), 1), ((7, 2, 9), 1), ((4, 6, 5, 3), -1), ((1, 2, 3), 1)]
)
def test_parts_add_up_to_total_and_match_definition(shape, axis):
    rng = np.random.default_rng(sum(shape))
    ndim, channel_axis = len(shape), axis % len(shape)
    # Per-channel and per-input offsets so that all three parts are present.
    channel_offsets = rng.standard_normal(shape[channel_axis]).reshape(
        [shape[channel_axis] if k == channel_axis else 1 for k in range(ndim)]
    )
    input_offsets = rng.standard_normal((shape[0],) + (1,) * (ndim - 1))
    y = 1.7 * rng.standard_normal(shape) + channel_offsets + input_offsets
    parts = power_decomposition(y, axis=axis)
    summed = parts.channel_constant + parts.instance_mean_variability + parts.within_instance
    # Exact identity; float64 two-pass sums over <= 300 values of size O(1): rounding ~1e-15.
    assert summed == pytest.approx(parts.total, rel=1e-12)
    assert sum(parts.shares()) == pytest.approx(1.0, rel=1e-12)
    expected = _naive_parts(np.moveaxis(y, axis, 1))
    got = (parts.channel_constant, parts.instance_mean_variability, parts.within_instance,
           parts.total)
    # Same quantities by a different summation order: rounding only.
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert all(p >= 0 for p in got)


@given(
    shape=st.tuples(st.integers(1, 5), st.integers(1, 4), st.integers(1, 6), st.integers(1, 3)),
    offset=st.floats(-50, 50),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_parts_add_up_for_any_offset_and_scale(shape, offset, scale, seed):
    rng = np.random.default_rng(seed)
    y = offset + scale * rng.standard_normal(shape)
    parts = power_decomposition(y, axis=1)
    summed = parts.channel_constant + parts.instance_mean_variability + parts.within_instance
    # Two-pass statistics: each part is accurate to ~1e-15 of the total even when an offset of up
    # to 5e4 times the spread dominates (the parts are non-negative, so no cancellation).
    assert summed == pytest.approx(parts.total, rel=1e-11)
    assert min(parts.channel_constant, parts.instance_mean_variability,
               parts.within_instance) >= 0


def test_decomposition_separates_known_parts():
    # y = a_c + b_{x,c} + e with known constant a, input offsets b (mean 0 over x per channel by
    # construction) and zero-spatial-mean variation e: each part is recovered exactly.
    rng = np.random.default_rng(5)
    n, c, size = 4, 3, 6
    a = np.array([1.0, -2.0, 0.5])
    b = rng.standard_normal((n, c))
    b -= b.mean(axis=0)
    e = rng.standard_normal((n, c, size))
    e -= e.mean(axis=2, keepdims=True)
    y = a[None, :, None] + b[:, :, None] + e
    parts = power_decomposition(y, axis=1)
    # Exact construction; float64 rounding only.
    assert parts.channel_constant == pytest.approx(np.mean(a**2), rel=1e-12)
    assert parts.instance_mean_variability == pytest.approx(np.mean(b**2), rel=1e-12)
    assert parts.within_instance == pytest.approx(np.mean(e**2), rel=1e-12)


def test_decomposition_rejects_bad_input():
    with pytest.raises(ValueError, match="spatial"):
        power_decomposition(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="axis must not be 0"):
        power_decomposition(np.zeros((3, 4, 5)), axis=0)
    with pytest.raises(TypeError, match="y"):
        power_decomposition(np.zeros((3, 4, 5), dtype=np.int64))


def test_zero_power_gives_nan_shares():
    shares = power_decomposition(np.zeros((2, 3, 4))).shares()
    assert all(np.isnan(s) for s in shares)


@pytest.fixture(scope="module")
def tiny_result():
    return run_power_experiment(TINY)


def test_batch_norm_has_no_channel_constant_part(tiny_result):
    bn = tiny_result.mean_shares()[tiny_result.norms.index("BN")]
    # BN subtracts the mean over inputs and positions, so E_x mu_c = 0 up to float64 rounding
    # (~1e-16); its square, the channel-wise constant part, is ~1e-32, far below 1e-20.
    assert np.all(bn[:, 0] < 1e-20)
    assert np.all(bn[:, 2] > 0.5)  # the rest is there, not lost: within-instance dominates


def test_instance_norm_has_no_instance_mean_part(tiny_result):
    instance = tiny_result.mean_shares()[tiny_result.norms.index("IN")]
    # IN makes every mu_c(x) = 0 up to rounding: both mean-based parts are ~1e-32.
    assert np.all(instance[:, 0] < 1e-20)
    assert np.all(instance[:, 1] < 1e-20)
    # What is left is the within-instance variance var / (var + eps), a share of exactly 1.
    np.testing.assert_allclose(instance[:, 2], 1.0, rtol=1e-12)


def test_every_layer_shares_sum_to_one(tiny_result):
    assert tiny_result.shares.shape == (len(NORMS), TINY.runs, TINY.depth, 3)
    assert np.all(tiny_result.shares >= 0)
    # Shares of an exact three-term identity: rounding only.
    np.testing.assert_allclose(tiny_result.shares.sum(axis=-1), 1.0, rtol=1e-12)
    # Every norm here standardizes over at least a channel or group: total power ~1
    # (var / (var + eps) with eps = 1e-5, and layer-wide norms spread it unevenly over channels).
    np.testing.assert_allclose(tiny_result.total_power, 1.0, rtol=1e-3)


def test_layer_norm_collapse_and_proxy_norm_fix(tiny_result):
    # The paper's qualitative claim on a fixed draw: LN's channel-wise constant share at the last
    # layer is large and PN removes most of it. Deterministic (seeded); margins are wide.
    last = {norm: tiny_result.mean_shares()[k, -1] for k, norm in enumerate(tiny_result.norms)}
    assert last["LN"][0] > 0.2
    assert last["LN+PN"][0] < 0.25 * last["LN"][0]
    assert last["GN+PN"][0] < 0.25 * last["GN"][0]


def test_norms_share_one_draw_and_first_layer_inputs():
    # Every norm sees the same first convolution output, so at layer 1 LN and LN+PN agree exactly.
    network = draw_network(TINY)
    first_ln = next(normalized_preactivations(network, "LN", TINY))
    first_pn = next(normalized_preactivations(network, "LN+PN", TINY))
    np.testing.assert_array_equal(first_ln, first_pn)
    assert network.weights[0].shape == (TINY.width, 3, 3, TINY.input_channels)
    # He-normal: variance 2 / fan_in; 16 * 9 * 16 = 2304 draws give ~3 % sampling error, allow 15 %.
    assert np.var(network.weights[1]) == pytest.approx(2 / (9 * TINY.width), rel=0.15)


def test_csv_has_every_share_per_norm_and_layer(tmp_path, tiny_result):
    path = write_csv(tiny_result, tmp_path / "power.csv")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["input", "norm", "run", "layer", *PART_NAMES, "total_power"]
    assert len(rows) == len(NORMS) * TINY.runs * TINY.depth
    for row in rows:
        k, layer = tiny_result.norms.index(row["norm"]), int(row["layer"]) - 1
        written = [float(row[name]) for name in PART_NAMES]
        # Written with 9 significant digits.
        np.testing.assert_allclose(written, tiny_result.shares[k, int(row["run"]), layer],
                                   rtol=1e-8, atol=1e-30)
        assert row["input"] == "noise"


def test_last_layer_table_lists_percentages(tiny_result):
    from pnref.experiments.power import last_layer_table

    lines = last_layer_table(tiny_result).splitlines()
    assert len(lines) == 2 + len(NORMS)
    in_row = lines[2 + tiny_result.norms.index("IN")].split("|")
    assert in_row[1].strip() == "IN"
    # IN's within-instance share is 1 up to rounding: printed as 100 with 3 significant digits,
    # and one run has no spread.
    assert in_row[4].strip() == "100 +- 0"


def test_settings_and_norm_names_are_validated():
    with pytest.raises(ValueError, match="groups=3 must divide width=16"):
        PowerSettings(width=16, groups=3)
    with pytest.raises(ValueError, match="depth"):
        PowerSettings(depth=0)
    with pytest.raises(TypeError, match="width"):
        PowerSettings(width=2.5)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        PowerSettings(seed=-1)
    with pytest.raises(ValueError, match="norm must be one of"):
        run_power_experiment(TINY, norms=("BN", "XN"))
    with pytest.raises(ValueError, match="repeat"):
        run_power_experiment(TINY, norms=("BN", "BN"))


def test_cli_writes_csv_without_matplotlib(tmp_path, capsys):
    from pnref.cli import main

    out = tmp_path / "p.csv"
    code = main(["experiment", "power", "--width", "8", "--depth", "2", "--image-size", "4",
                 "--inputs", "3", "--groups", "2", "--norms", "BN,LN+PN", "--csv", str(out),
                 "--no-figure", "--input", "noise", "--runs", "1"])
    assert code == 0
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["norm"], r["layer"]) for r in rows] == [
        ("BN", "1"), ("BN", "2"), ("LN+PN", "1"), ("LN+PN", "2")
    ]
    err = capsys.readouterr().err
    assert "finished in" in err
    assert "| LN+PN |" in err  # the last-layer table


def test_figure_is_a_png(tmp_path, tiny_result):
    pytest.importorskip("matplotlib", reason="matplotlib (pnref[plot]) not installed")
    from pnref.experiments.power import plot_power

    path = plot_power(tiny_result, tmp_path / "power.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_help_states_the_real_defaults():
    # The CLI passes only the options given, so PowerSettings holds the defaults; the help text
    # repeats them and must not drift.
    import argparse
    import re

    from pnref.cli import build_parser

    parser = build_parser()
    experiment = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    power = next(
        a for a in experiment.choices["experiment"]._actions
        if isinstance(a, argparse._SubParsersAction)
    ).choices["power"]
    stated = {
        action.dest: int(match.group(1))
        for action in power._actions
        if action.help and (match := re.search(r"\(default (\d+)\)", action.help))
    }
    defaults = PowerSettings()
    assert stated == {name: getattr(defaults, name) for name in stated}
    assert set(stated) == {"width", "depth", "image_size", "inputs", "groups", "seed", "runs"}
