"""Hard inputs and the edge cases of shared/conventions.md, checked against independent references.

The references here are written directly from the definitions (population variance, eps inside
the square root) in NumPy long double (80-bit extended on x86-64: 64-bit significand) or in
mpmath, never by calling the library.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import pnref
from pnref.norms import mean_and_variance, normalize

LONG = np.longdouble


def reference_norm(x, groups, gamma=None, beta=None, *, eps, axis=1, over_batch=False):
    """Long-double norm from the definition: split the channel axis into (G, K) in place."""
    x = np.asarray(x, dtype=LONG)
    axis = axis % x.ndim
    channels = x.shape[axis]
    xs = x.reshape(x.shape[:axis] + (groups, channels // groups) + x.shape[axis + 1 :])
    kept = {axis} if over_batch else {0, axis}
    reduce_axes = tuple(a for a in range(xs.ndim) if a not in kept)
    mean = xs.mean(axis=reduce_axes, keepdims=True)
    var = ((xs - mean) ** 2).mean(axis=reduce_axes, keepdims=True)
    y = ((xs - mean) / np.sqrt(var + LONG(eps))).reshape(x.shape)
    bshape = [1] * x.ndim
    bshape[axis] = channels
    if gamma is not None:
        y = y * np.asarray(gamma, dtype=LONG).reshape(bshape)
    if beta is not None:
        y = y + np.asarray(beta, dtype=LONG).reshape(bshape)
    return y


def _all_ops(channels):
    """(name, library forward, reference forward) for the four activation norms."""
    groups = 2 if channels % 2 == 0 else 1
    cases = [
        ("batch_norm", pnref.batch_norm, lambda x, **k: reference_norm(
            x, channels, over_batch=True, **k)),
        ("instance_norm", pnref.instance_norm, lambda x, **k: reference_norm(x, channels, **k)),
        ("group_norm", lambda x, *a, **k: pnref.group_norm(x, groups, *a, **k),
         lambda x, **k: reference_norm(x, groups, **k)),
        ("layer_norm", pnref.layer_norm, lambda x, **k: reference_norm(x, 1, **k)),
    ]
    return [pytest.param(*case, id=case[0]) for case in cases]


def _relative_error(actual, expected):
    expected = np.asarray(expected, dtype=LONG)
    return float(np.max(np.abs(np.asarray(actual, dtype=LONG) - expected)) / np.max(
        np.abs(expected)))


# --------------------------------------------------------------------------------------------
# Cancellation: groups far from zero with a tiny spread
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, forward, reference", _all_ops(4))
def test_offset_1e4_spread_1e3_against_long_double(name, forward, reference):
    # Values 1e4 + 1e-3 z. A plain float64 two-pass is off by 4e-10 here (measured against
    # mpmath): the mean of values near 1e4 is rounded by up to ulp(1e4) / 2 = 9e-13, ~1e-9 of
    # the spread. The shifted two-pass keeps every deviation exact (Sterbenz): measured 1.3e-16.
    # The long-double reference (11 more bits, plain two-pass) is itself off by ~1e-13
    # (measured 9e-14), so we hold 1e-12, tighter than the 1e-10 and still 400 times
    # below what the plain two-pass gives.
    rng = np.random.default_rng(1)
    x = 1e4 + 1e-3 * rng.standard_normal((3, 4, 5, 5))
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    y = forward(x, gamma, beta, eps=1e-12)
    assert _relative_error(y, reference(x, gamma=gamma, beta=beta, eps=1e-12)) <= 1e-12


def test_offset_1e4_spread_1e3_against_mpmath():
    # One layer-norm group checked at 40 digits: an oracle independent of long double.
    rng = np.random.default_rng(2)
    x = 1e4 + 1e-3 * rng.standard_normal((1, 3, 4))
    eps = 1e-8
    y = pnref.layer_norm(x, eps=eps)
    with mpmath.workdps(40):
        values = [mpmath.mpf(float(v)) for v in x.ravel()]
        mean = mpmath.fsum(values) / len(values)
        var = mpmath.fsum((v - mean) ** 2 for v in values) / len(values)
        expected = [float((v - mean) / mpmath.sqrt(var + mpmath.mpf(eps))) for v in values]
    # The bound is 1e-10; the oracle is exact to 40 digits and the measured error is
    # ~1e-16, so 1e-14 (a few dozen ulps) is held. A plain two-pass gives ~4e-10.
    assert _relative_error(y.ravel(), expected) <= 1e-14


def test_offset_gradient_against_long_double():
    # The VJP on the same hard input, against its formula evaluated in long double from
    # long-double statistics: the float64 code must not lose the digits a naive mean loses
    # (plain float64 two-pass: 1.5e-10; ours: 1e-16). The long-double reference is itself off
    # by ~3e-14 (plain two-pass in 64-bit significands), hence 1e-12.
    rng = np.random.default_rng(3)
    x = 1e4 + 1e-3 * rng.standard_normal((2, 4, 6))
    gamma = rng.standard_normal(4)
    dy = rng.standard_normal(x.shape)
    dx, _dgamma, _dbeta = pnref.group_norm_vjp(dy, x, 2, gamma, eps=1e-12)
    xs = x.astype(LONG).reshape(2, 2, 2, 6)
    mean = xs.mean(axis=(2, 3), keepdims=True)
    inv_std = 1 / np.sqrt(((xs - mean) ** 2).mean(axis=(2, 3), keepdims=True) + LONG(1e-12))
    xhat = (xs - mean) * inv_std
    g = (dy.astype(LONG) * gamma.astype(LONG).reshape(1, 4, 1)).reshape(xs.shape)
    expected = inv_std * (g - g.mean(axis=(2, 3), keepdims=True)
                          - xhat * (g * xhat).mean(axis=(2, 3), keepdims=True))
    assert _relative_error(dx, expected.reshape(x.shape)) <= 1e-12


def test_two_value_groups_gradient_against_long_double():
    # Groups of two values: the exact x-gradient is O(eps / var) times the cotangent, reached by
    # cancelling O(1) terms. The hand VJP stays within 1e-11 of the long-double evaluation
    # (measured 3e-13; 1e-16 rounding amplified by the ~1e3 cancellation, with margin).
    rng = np.random.default_rng(22)
    x = rng.standard_normal((3, 4))
    dy = rng.standard_normal((3, 4))
    dx = pnref.group_norm_vjp(dy, x, 2, eps=1e-5)[0]
    xs = x.astype(LONG).reshape(3, 2, 2)
    g = dy.astype(LONG).reshape(3, 2, 2)
    mean = xs.mean(-1, keepdims=True)
    inv_std = 1 / np.sqrt(((xs - mean) ** 2).mean(-1, keepdims=True) + LONG(1e-5))
    xhat = (xs - mean) * inv_std
    expected = inv_std * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    assert _relative_error(dx, expected.reshape(3, 4)) <= 1e-11


def test_row_40000_to_40003():
    # Deviations from the mean 40001.5 are exactly -1.5, -0.5, 0.5, 1.5; population variance
    # (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25. One-pass E[x^2] - E[x]^2 loses ~9 digits here.
    x = np.array([[40000.0, 40001.0, 40002.0, 40003.0]])
    eps = 1e-5
    expected = np.array([[-1.5, -0.5, 0.5, 1.5]]) / math.sqrt(1.25 + eps)
    # The statistics are exact, so only the final division and square root round: 2 ulps.
    np.testing.assert_allclose(pnref.layer_norm(x, eps=eps), expected, rtol=4.5e-16, atol=0)


def test_layer_norm_1_0_0_0_is_sqrt_3():
    # [1, 0, 0, 0]: mean 1/4, deviations 3/4 and -1/4 (x3), population variance
    # (9/16 + 3/16) / 4 = 3/16, so y_0 = (3/4) / sqrt(3/16) = 3 / sqrt(3) = sqrt(3) = 1.7320508.
    # (A tutorial dividing by the unbiased std plus eps outside gets (3/4) / sqrt(1/4) = 1.5.)
    x = np.array([[1.0, 0.0, 0.0, 0.0]])
    y0 = pnref.layer_norm(x, eps=0.0)
    np.testing.assert_allclose(y0[0], [math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3),
                                       -1 / math.sqrt(3)], rtol=4.5e-16)  # 2 ulps of rounding
    # With PyTorch's default eps 1e-5 the value still reads 1.732 to three decimals:
    # 0.75 / sqrt(0.1875 + 1e-5) = 1.7320046.
    y = pnref.layer_norm(x, eps=1e-5)
    assert round(float(y[0, 0]), 3) == 1.732
    assert y[0, 0] == pytest.approx(0.75 / math.sqrt(0.1875 + 1e-5), rel=4.5e-16)


# --------------------------------------------------------------------------------------------
# Constant groups and the value of eps
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1234.0, 0.1, -3e-7])
@pytest.mark.parametrize("name, forward, reference", _all_ops(4))
def test_constant_groups_give_beta_exactly(value, name, forward, reference):
    # A constant group has deviations exactly 0 (the shift is one of its own values), so
    # y = gamma * 0 + beta = beta exactly; a one-pass variance would return garbage for 1234.0
    # and a plain mean of 0.1 repeated is not always exactly 0.1 (26 of the sizes 1..39 miss).
    rng = np.random.default_rng(4)
    x = np.full((3, 4, 3, 3), value)
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    y = forward(x, gamma, beta, eps=1e-5)
    np.testing.assert_array_equal(y, np.broadcast_to(beta.reshape(1, 4, 1, 1), x.shape))


def test_constant_group_gradient_is_finite_and_exact():
    # On a constant group xhat = 0 and inv_std = 1 / sqrt(eps), so the VJP reduces to
    # dx = (gamma * dy - mean(gamma * dy)) / sqrt(eps) per group; dgamma = 0; dbeta = sum(dy).
    rng = np.random.default_rng(5)
    x = np.full((2, 4, 5), 1234.0)
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    dy = rng.standard_normal(x.shape)
    dx, dgamma, dbeta = pnref.group_norm_vjp(dy, x, 2, gamma, beta, eps=1e-5)
    g = (dy * gamma.reshape(1, 4, 1)).reshape(2, 2, 10)
    expected = ((g - g.mean(-1, keepdims=True)) / math.sqrt(1e-5)).reshape(x.shape)
    np.testing.assert_allclose(dx, expected, rtol=1e-14, atol=1e-13)  # summation order only
    np.testing.assert_array_equal(dgamma, np.zeros(4))
    # dbeta: the same 10 values per channel summed in another order: rounding only
    np.testing.assert_allclose(dbeta, dy.sum(axis=(0, 2)), rtol=1e-14)


@pytest.mark.parametrize("name, forward, reference", _all_ops(4))
def test_eps_zero_on_constant_input_gives_nan_with_warning(name, forward, reference):
    # Documented: eps = 0 and variance 0 give inv_std = 1 / 0 = inf and xhat = 0 * inf = NaN
    # (NumPy's arithmetic and its RuntimeWarnings); nothing is silently replaced.
    x = np.full((2, 4, 3), 7.0)
    with pytest.warns(RuntimeWarning):
        y = forward(x, eps=0.0)
    assert np.all(np.isnan(y))


def test_eps_zero_on_varied_input_is_exact_standardization():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 4, 5))
    y = pnref.instance_norm(x, eps=0.0)
    # With eps = 0 each group has variance exactly 1 up to rounding (~M ulps).
    np.testing.assert_allclose(y.var(axis=2), 1.0, rtol=1e-14)


@pytest.mark.parametrize("eps", [0.5, 1e-12])
@pytest.mark.parametrize("name, forward, reference", _all_ops(4))
def test_large_and_tiny_eps_against_long_double(eps, name, forward, reference):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 4)) * 0.3 + 2.0
    y = forward(x, eps=eps)
    # Well-conditioned O(1) data: agreement to a few ulps; 1e-14 allows summation order.
    assert _relative_error(y, reference(x, eps=eps)) <= 1e-14


def test_large_eps_shrinks_the_variance_as_predicted():
    # Each group's output variance is var / (var + eps): here with eps = 0.5.
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 4, 6))
    y = pnref.group_norm(x, 2, eps=0.5)
    group_var = x.reshape(2, 2, 12).var(axis=-1)
    np.testing.assert_allclose(y.reshape(2, 2, 12).var(axis=-1), group_var / (group_var + 0.5),
                               rtol=1e-13)  # rounding of two variances of 12 values


def test_tiny_eps_on_constant_group_stays_finite():
    x = np.full((1, 2, 3), 5.0)
    beta = np.array([0.25, -1.0])
    np.testing.assert_array_equal(pnref.instance_norm(x, None, beta, eps=1e-12),
                                  np.broadcast_to(beta.reshape(1, 2, 1), x.shape))


# --------------------------------------------------------------------------------------------
# Shapes, dtypes and layouts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, forward, reference", _all_ops(4))
@pytest.mark.parametrize("shape", [(0, 4), (0, 4, 3, 3), (0, 3, 3, 4)])
def test_empty_batch_returns_empty(name, forward, reference, shape):
    axis = -1 if shape[-1] == 4 and len(shape) > 2 else 1
    for dtype in (np.float32, np.float64):
        x = np.zeros(shape, dtype=dtype)
        y = forward(x, np.ones(4), np.zeros(4, dtype=dtype), eps=1e-5, axis=axis)
        assert y.shape == shape and y.dtype == np.float64
        y = forward(x, eps=1e-5, axis=axis)
        assert y.shape == shape and y.dtype == dtype


@pytest.mark.parametrize("op", ["batch_norm", "instance_norm", "layer_norm"])
def test_empty_batch_vjp(op):
    x = np.zeros((0, 4, 2))
    dx, dgamma, dbeta = getattr(pnref, op + "_vjp")(x, x, np.ones(4), np.ones(4))
    assert dx.shape == x.shape
    # Sums over an empty batch are 0.
    np.testing.assert_array_equal(dgamma, np.zeros(4))
    np.testing.assert_array_equal(dbeta, np.zeros(4))


def test_rank_two_input():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((5, 4))
    beta = rng.standard_normal(4)
    # Layer norm of (N, C) normalizes each row over its C values, as the transformer LN does.
    # Both references use NumPy's plain two-pass statistics against the library's shifted
    # two-pass on O(1) data: a few ulp apart, hence rtol 1e-14 / atol 1e-15 below.
    expected = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(pnref.layer_norm(x), expected, rtol=1e-14, atol=1e-15)
    # Batch norm of (N, C) normalizes each column over the batch.
    expected = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    np.testing.assert_allclose(pnref.batch_norm(x), expected, rtol=1e-14, atol=1e-15)
    # Instance norm of (N, C): one value per group, deviation 0, so y = beta exactly.
    np.testing.assert_array_equal(pnref.instance_norm(x, None, beta),
                                  np.broadcast_to(beta, x.shape))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_low_precision_statistics_in_float64_and_output_in_input_dtype(dtype):
    rng = np.random.default_rng(10)
    x = (rng.standard_normal((4, 4, 8, 8)) * 100 + 3e4).astype(dtype)
    y = pnref.group_norm(x, 2, eps=1e-5)
    assert y.dtype == dtype
    # Sums of these values (~3e4 each, 512 per group) overflow float16 (max 65504); computed in
    # float64 and rounded once, each output is the correctly rounded float64 value, except
    # where a float64 result sits within its own error of a rounding boundary: 1 ulp.
    expected = pnref.group_norm(x.astype(np.float64), 2, eps=1e-5)
    ulp = np.spacing(np.abs(expected).astype(dtype)).astype(np.float64)
    assert np.all(np.abs(y.astype(np.float64) - expected) <= ulp)
    assert np.all(np.isfinite(y))


def test_float16_eps_is_not_cast_to_float16():
    # eps = 1e-8 underflows to 0 in float16; it is kept in float64, so a constant float16 group
    # still gives beta (not NaN).
    x = np.full((2, 3, 4), 1.5, dtype=np.float16)
    beta = np.array([1.0, 2.0, 3.0], dtype=np.float16)
    assert np.float16(1e-8) == 0
    np.testing.assert_array_equal(pnref.instance_norm(x, None, beta, eps=1e-8),
                                  np.broadcast_to(beta.reshape(1, 3, 1), x.shape))


def test_output_dtype_is_widest_argument():
    x32 = np.ones((2, 4, 3), dtype=np.float32)
    assert pnref.layer_norm(x32).dtype == np.float32
    assert pnref.layer_norm(x32, np.ones(4)).dtype == np.float64
    dx, dgamma, _ = pnref.layer_norm_vjp(x32, x32, np.ones(4, dtype=np.float32))
    assert dx.dtype == dgamma.dtype == np.float32


@pytest.mark.parametrize("name, forward, reference", _all_ops(4))
def test_transposed_view_equals_contiguous_copy(name, forward, reference):
    rng = np.random.default_rng(11)
    base = rng.standard_normal((5, 6, 4, 3))
    view = base.transpose(1, 2, 3, 0)  # shape (6, 4, 3, 5), channels on axis 1, non-contiguous
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(forward(view, eps=1e-5), forward(view.copy(), eps=1e-5))
    # And a strided slice.
    sliced = base[::2, :4, ::-1]
    np.testing.assert_array_equal(forward(sliced, eps=1e-5, axis=1),
                                  forward(np.ascontiguousarray(sliced), eps=1e-5, axis=1))


def test_channels_last_equals_channels_first():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 6, 3, 2))
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    last = np.moveaxis(x, 1, -1)
    for groups in (1, 2, 3, 6):
        np.testing.assert_array_equal(
            np.moveaxis(pnref.group_norm(last, groups, gamma, beta, axis=-1), -1, 1),
            pnref.group_norm(x, groups, gamma, beta, axis=1),
        )


def test_nan_stays_in_its_group():
    x = np.arange(24.0).reshape(2, 4, 3)
    x[0, 1, 2] = np.nan
    y = pnref.group_norm(x, 2)
    assert np.all(np.isnan(y[0, :2])) and np.all(np.isfinite(y[0, 2:])) and np.all(
        np.isfinite(y[1]))


def test_core_statistics_are_float64_and_exact_on_a_simple_case():
    x = np.array([[1.0, 2.0, 3.0, 6.0]], dtype=np.float32)
    mean, var = mean_and_variance(x, 1)
    # mean 3, deviations -2, -1, 0, 3, population variance (4 + 1 + 0 + 9) / 4 = 3.5.
    assert mean.dtype == np.float64 and mean[0, 0] == 3.0 and var[0, 0] == 3.5
    xhat, mean2, inv_std = normalize(x, 1, 0.5)
    assert inv_std[0, 0] == 0.5  # 1 / sqrt(3.5 + 0.5)
    np.testing.assert_array_equal(xhat, [[-1.0, -0.5, 0.0, 1.5]])


# --------------------------------------------------------------------------------------------
# Batch norm: running statistics and evaluation mode
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [1, -1])
def test_running_update_torch_convention(axis):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, 3, 5)) * 2 + 1
    if axis == -1:
        x = np.moveaxis(x, 1, -1)
    old_mean, old_var = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    new_mean, new_var = pnref.batch_norm_running_update(
        x, old_mean, old_var, momentum=0.1, convention="torch", axis=axis)
    values = np.moveaxis(x, axis, 0).reshape(3, -1)  # each channel's 20 values
    # The library forms the unbiased variance as var * M / (M - 1) from its shifted two-pass
    # statistics, NumPy divides its plain two-pass sum by M - 1: a few ulp, hence rtol 1e-14.
    np.testing.assert_allclose(new_mean, 0.9 * old_mean + 0.1 * values.mean(1), rtol=1e-14)
    np.testing.assert_allclose(new_var, 0.9 * old_var + 0.1 * values.var(1, ddof=1), rtol=1e-14)


def test_running_update_tf_convention():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((4, 3, 2, 2))
    old_mean, old_var = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    new_mean, new_var = pnref.batch_norm_running_update(
        x, old_mean, old_var, momentum=0.99, convention="tf")
    values = np.moveaxis(x, 1, 0).reshape(3, -1)
    # 1 - 0.99 = 0.010000000000000009 vs the literal 0.01, and the statistics' rounding as
    # above: a few ulp.
    np.testing.assert_allclose(new_mean, 0.99 * old_mean + 0.01 * values.mean(1), rtol=1e-14)
    np.testing.assert_allclose(new_var, 0.99 * old_var + 0.01 * values.var(1), rtol=1e-14)


def test_running_update_tf_fused_convention():
    # TensorFlow's fused kernel: the "tf" momentum rule with the unbiased batch variance.
    rng = np.random.default_rng(16)
    x = rng.standard_normal((4, 2, 2, 3)) * 1.5 - 0.5  # channels-last, M = 16 per channel
    old_mean, old_var = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    new_mean, new_var = pnref.batch_norm_running_update(
        x, old_mean, old_var, momentum=0.9, convention="tf_fused", axis=-1)
    values = x.reshape(-1, 3)
    # As for the "tf" test: 1 - 0.9 and the statistics' rounding are a few ulp.
    np.testing.assert_allclose(new_mean, 0.9 * old_mean + 0.1 * values.mean(0), rtol=1e-14)
    np.testing.assert_allclose(new_var, 0.9 * old_var + 0.1 * values.var(0, ddof=1),
                               rtol=1e-14)
    with pytest.raises(ValueError, match="single value per channel"):
        pnref.batch_norm_running_update(np.ones((1, 3)), np.zeros(3), np.ones(3),
                                        momentum=0.9, convention="tf_fused")


def test_running_update_reproduces_tensorflow_measurement():
    # Measured with tensorflow-cpu 2.21 (docs/conventions.md, "Running statistics"):
    # tf.raw_ops.FusedBatchNormV3(is_training=True, exponential_avg_factor=0.1) on this
    # float32 NHWC batch (M = 36 values per channel) and Keras 3 BatchNormalization
    # (momentum 0.9) on the same batch. TF computes in float32: 2e-6 relative covers its
    # rounding (float32 eps 1.2e-7 times a few operations over 36 values).
    x = np.random.default_rng(0).normal(size=(4, 3, 3, 2)).astype(np.float32)
    old_mean = np.array([0.5, -1.0], np.float32)
    old_var = np.array([2.0, 0.25], np.float32)
    fused = pnref.batch_norm_running_update(x.astype(np.float64), old_mean, old_var,
                                            momentum=0.9, convention="tf_fused", axis=-1)
    keras = pnref.batch_norm_running_update(x.astype(np.float64), old_mean, old_var,
                                            momentum=0.9, convention="tf", axis=-1)
    np.testing.assert_allclose(fused[0], [0.4511399, -0.8833211], rtol=2e-6)
    np.testing.assert_allclose(fused[1], [1.8952417, 0.30878863], rtol=2e-6)
    np.testing.assert_allclose(keras[1], [1.8925961, 0.30646116], rtol=2e-6)


def test_running_update_single_value_per_channel():
    x = np.array([[1.0, 2.0, 3.0]])  # N = 1, no spatial axis: one value per channel
    with pytest.raises(ValueError, match="single value per channel"):
        pnref.batch_norm_running_update(x, np.zeros(3), np.ones(3), momentum=0.1)
    # Under "tf" the biased variance of one value is 0: new_var = 0.9 * 1 + 0.1 * 0.
    new_mean, new_var = pnref.batch_norm_running_update(
        x, np.zeros(3), np.ones(3), momentum=0.9, convention="tf")
    # 1 - 0.9 is 0.09999999999999998, one ulp from the literal 0.1: rtol 1e-15 (~4 ulp).
    np.testing.assert_allclose(new_mean, 0.1 * x[0], rtol=1e-15)
    np.testing.assert_allclose(new_var, np.full(3, 0.9), rtol=1e-15)


def test_running_update_errors():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="no value per channel"):
        pnref.batch_norm_running_update(np.ones((0, 3)), np.zeros(3), np.ones(3), momentum=0.1)
    with pytest.raises(ValueError, match="convention"):
        pnref.batch_norm_running_update(x, np.zeros(3), np.ones(3), momentum=0.1,
                                        convention="keras")
    with pytest.raises(ValueError, match="momentum"):
        pnref.batch_norm_running_update(x, np.zeros(3), np.ones(3), momentum=1.5)
    with pytest.raises(ValueError, match="running_var"):
        pnref.batch_norm_running_update(x, np.zeros(3), np.ones(4), momentum=0.1)


def test_eval_with_batch_statistics_equals_training_forward():
    # Evaluation mode with the batch's own biased statistics is the training-mode formula.
    rng = np.random.default_rng(15)
    x = rng.standard_normal((4, 3, 5))
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    mean, var = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
    # NumPy's plain statistics against the library's shifted two-pass on 20 O(1) values per
    # channel: they differ by rounding only (~1e-16), amplified by |gamma| ~ 1-2.
    np.testing.assert_allclose(pnref.batch_norm_eval(x, mean, var, gamma, beta),
                               pnref.batch_norm(x, gamma, beta), rtol=1e-13, atol=1e-14)


def test_eval_rejects_negative_running_var():
    with pytest.raises(ValueError, match="running_var"):
        pnref.batch_norm_eval(np.ones((2, 3)), np.zeros(3), np.array([1.0, -1.0, 1.0]))


# --------------------------------------------------------------------------------------------
# Weight standardization
# --------------------------------------------------------------------------------------------


def test_weight_standardization_filters():
    rng = np.random.default_rng(16)
    w = rng.standard_normal((8, 3, 3, 3)) * math.sqrt(2 / 27)  # He-initialized filters
    w_hat = pnref.weight_standardization(w)
    rows = w_hat.reshape(8, -1)
    var = w.reshape(8, -1).var(1)
    np.testing.assert_allclose(rows.mean(1), 0.0, atol=1e-15)  # 27 O(1) values: rounding only
    # Variance var / (var + 1e-10): within 1e-8 of 1 for var ~ 0.07 (the documented choice).
    # rtol 1e-14: two variances of 27 O(1) values computed in different orders, a few ulp.
    np.testing.assert_allclose(rows.var(1), var / (var + pnref.norms.WS_EPS), rtol=1e-14)
    # Channels-last weight (kh, kw, C_in, C_out) with axis=-1 gives the same filters, up to
    # the summation order of the other layout's reduction (a few ulp).
    w_last = np.transpose(w, (2, 3, 1, 0))
    np.testing.assert_allclose(
        np.transpose(pnref.weight_standardization(w_last, axis=-1), (3, 2, 0, 1)), w_hat,
        rtol=1e-14, atol=1e-15)


def test_weight_standardization_constant_filter_is_zero():
    w = np.zeros((2, 5))
    w[1] = 0.3
    np.testing.assert_array_equal(pnref.weight_standardization(w), np.zeros((2, 5)))


# --------------------------------------------------------------------------------------------
# Bad input: clear errors naming the argument
# --------------------------------------------------------------------------------------------

X = np.ones((2, 4, 3))


@pytest.mark.parametrize("call, error, match", [
    (lambda: pnref.group_norm(X, 3), ValueError, "groups=3"),
    (lambda: pnref.group_norm(X, 0), ValueError, "groups=0"),
    (lambda: pnref.group_norm(X, 2.0), TypeError, "groups"),
    (lambda: pnref.layer_norm(X, axis=3), ValueError, "axis=3"),
    (lambda: pnref.layer_norm(X, axis=-4), ValueError, "axis=-4"),
    (lambda: pnref.layer_norm(X, axis=0), ValueError, "batch axis"),
    (lambda: pnref.batch_norm(X, np.ones(3)), ValueError, "gamma"),
    (lambda: pnref.batch_norm(X, None, np.ones((4, 1))), ValueError, "beta"),
    (lambda: pnref.instance_norm(np.ones((2, 4), dtype=int)), TypeError, "x"),
    (lambda: pnref.instance_norm(np.ones((2, 4), dtype=complex)), TypeError, "x"),
    (lambda: pnref.instance_norm(np.ones(4)), ValueError, "at least 2 dimensions"),
    (lambda: pnref.instance_norm(X, eps=-1e-5), ValueError, "eps"),
    (lambda: pnref.group_norm(X, 2, eps=-1.0), ValueError, "eps"),
    (lambda: pnref.batch_norm(X, eps=float("nan")), ValueError, "eps"),
    (lambda: pnref.layer_norm_vjp(np.ones((2, 4)), X), ValueError, "dy"),
    (lambda: pnref.weight_standardization(np.ones(3)), ValueError, "w"),
    (lambda: pnref.weight_standardization(np.ones((2, 3)), eps=-1.0), ValueError, "eps"),
    (lambda: pnref.weight_standardization_vjp(np.ones((3, 2)), np.ones((2, 3))), ValueError,
     "dw_hat"),
    (lambda: pnref.batch_norm_eval(X, np.zeros(4), np.ones(4), eps=-1.0), ValueError, "eps"),
    (lambda: pnref.batch_norm_eval(X, np.zeros(2), np.ones(4)), ValueError, "running_mean"),
    (lambda: normalize(X, (1, 2), -1.0), ValueError, "eps"),
    (lambda: normalize(np.ones((2, 3), dtype=int), 1, 0.1), TypeError, "x"),
    (lambda: normalize(X, 3, 0.1), ValueError, "axes=3"),
])
def test_bad_input_raises_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
