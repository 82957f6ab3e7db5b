"""Hypothesis properties of the normalization ops (invariances and identities between them).

Hypothesis draws the layout (rank 2 to 5, channels-first or -last, N, C, spatial sizes, the
number of groups) and a seed; the data are standard normal from that seed. Each group in the
test is found by this file's own reshaping (channel axis split in place into (G, K)), never by
the library's layout helper.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import pnref


@st.composite
def layouts(draw):
    """(x, groups, axis): a random standard-normal input and a divisor of its channel count."""
    rank = draw(st.integers(2, 5))
    channels = draw(st.sampled_from([1, 2, 3, 4, 6]))
    groups = draw(st.sampled_from([g for g in range(1, channels + 1) if channels % g == 0]))
    batch = draw(st.integers(1, 3))
    spatial = draw(st.lists(st.integers(1, 4), min_size=rank - 2, max_size=rank - 2))
    channels_last = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    shape = (batch, *spatial, channels) if channels_last else (batch, channels, *spatial)
    x = np.random.default_rng(seed).standard_normal(shape)
    return x, groups, (-1 if channels_last else 1)


def split_groups(a, groups, axis):
    """View ``a`` as (N, G, rest): each [n, g] row is one group's values."""
    moved = np.moveaxis(a, axis, 1)
    return moved.reshape(moved.shape[0], groups, -1)


@settings(max_examples=40)
@given(
    layouts(),
    st.floats(0.1, 10.0),
    st.floats(1e-3, 1.0),
    st.integers(0, 2**32 - 1),
)
def test_group_shift_and_scale_leave_output_unchanged(case, scale, eps, seed):
    # y(a x + b_group; eps a^2) = y(x; eps) for a > 0 and any per-group shift b: the mean
    # absorbs b and the standard deviation (with eps scaled by a^2) absorbs a.
    x, groups, axis = case
    shifts = np.random.default_rng(seed).uniform(-100, 100, (x.shape[0], groups, 1))
    moved = np.moveaxis(x, axis, 1)
    transformed = (scale * split_groups(x, groups, axis) + shifts).reshape(moved.shape)
    transformed = np.moveaxis(transformed, 1, axis)
    expected = pnref.group_norm(x, groups, eps=eps, axis=axis)
    actual = pnref.group_norm(transformed, groups, eps=eps * scale**2, axis=axis)
    # Rounding the transformed input costs up to ulp(|b| + a |x|) ~ 1.1e-16 * 150 absolute,
    # divided by a * sqrt(var + eps) >= 0.1 * sqrt(1e-3): ~5e-12; 1e-9 leaves room for the
    # statistics' own rounding. A wrong mean or variance breaks this by O(1).
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-9)


@settings(max_examples=30)
@given(layouts(), st.floats(1e-6, 1.0))
def test_one_group_is_layer_norm_and_c_groups_is_instance_norm(case, eps):
    x, _groups, axis = case
    gamma = np.linspace(-1, 2, x.shape[axis])
    beta = np.linspace(0.5, -0.5, x.shape[axis])
    np.testing.assert_array_equal(
        pnref.group_norm(x, 1, gamma, beta, eps=eps, axis=axis),
        pnref.layer_norm(x, gamma, beta, eps=eps, axis=axis),
    )
    np.testing.assert_array_equal(
        pnref.group_norm(x, x.shape[axis], gamma, beta, eps=eps, axis=axis),
        pnref.instance_norm(x, gamma, beta, eps=eps, axis=axis),
    )


@settings(max_examples=30)
@given(layouts(), st.floats(1e-6, 1.0))
def test_batch_norm_on_a_batch_of_one_is_instance_norm(case, eps):
    x, _groups, axis = case
    single = x[:1]
    # Same statistics over the same values; only the reduction's summation order may differ:
    # a few ulps of O(1) outputs.
    np.testing.assert_allclose(
        pnref.batch_norm(single, eps=eps, axis=axis),
        pnref.instance_norm(single, eps=eps, axis=axis),
        rtol=0,
        atol=1e-14,
    )


@settings(max_examples=40)
@given(layouts(), st.floats(1e-6, 1.0))
def test_each_group_has_mean_zero_and_shrunk_variance(case, eps):
    x, groups, axis = case
    y_groups = split_groups(pnref.group_norm(x, groups, eps=eps, axis=axis), groups, axis)
    x_groups = split_groups(x, groups, axis)
    var = x_groups.var(axis=-1)
    # At most 4 * 6 * 4^3 = 1536 values of size O(1) per group: their mean rounds at ~1e-16 *
    # sqrt(M) scale; 1e-13 is safely above that.
    np.testing.assert_allclose(y_groups.mean(axis=-1), 0.0, rtol=0, atol=1e-13)
    # var(y) = var / (var + eps), from both sides' rounding (~1e-15 relative); single-value
    # groups have 0 on both sides.
    np.testing.assert_allclose(y_groups.var(axis=-1), var / (var + eps), rtol=1e-12, atol=1e-15)


@settings(max_examples=40)
@given(layouts(), st.floats(1e-6, 1.0), st.integers(0, 2**32 - 1))
def test_input_gradient_of_each_group_sums_to_zero(case, eps, seed):
    # sum_i dx_i = inv_std * (sum g - M mean(g) - sum(xhat) mean(g xhat)) = 0 since
    # sum(xhat) = 0; this holds with the per-channel gamma too.
    x, groups, axis = case
    rng = np.random.default_rng(seed)
    channels = x.shape[axis]
    gamma = rng.standard_normal(channels)
    dy = rng.standard_normal(x.shape)
    dx, _dgamma, _dbeta = pnref.group_norm_vjp(dy, x, groups, gamma, eps=eps, axis=axis)
    sums = split_groups(dx, groups, axis).sum(axis=-1)
    # Bound from rounding: each dx_i is a difference of terms of size up to
    # inv_std * max|g| (g = gamma * dy), so its error is a few ulps of that, and a sum of M such
    # values errs by at most ~M of them. The small groups (2 values) make dx itself tiny by
    # cancellation, so the bound is on the terms' scale, not on |dx|. 1e-13 >> 1e-16 * few.
    g = split_groups(dy * gamma.reshape([-1 if a == axis % x.ndim else 1
                                          for a in range(x.ndim)]), groups, axis)
    inv_std = 1 / np.sqrt(split_groups(x, groups, axis).var(axis=-1) + eps)
    bound = 1e-13 * inv_std * g.shape[-1] * np.abs(g).max(axis=-1)
    assert np.all(np.abs(sums) <= bound)


@settings(max_examples=30)
@given(layouts(), st.floats(1e-6, 1.0), st.integers(0, 2**32 - 1))
def test_batch_norm_gradient_sums_to_zero_per_channel(case, eps, seed):
    x, _groups, axis = case
    rng = np.random.default_rng(seed)
    dy = rng.standard_normal(x.shape)
    dx = pnref.batch_norm_vjp(dy, x, eps=eps, axis=axis)[0]
    per_channel = np.moveaxis(dx, axis, 0).reshape(x.shape[axis], -1)
    # Same bound as for groups above, with the channel's statistics over batch and space.
    inv_std = 1 / np.sqrt(np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1).var(axis=1) + eps)
    g = np.moveaxis(dy, axis, 0).reshape(x.shape[axis], -1)
    bound = 1e-13 * inv_std * g.shape[1] * np.abs(g).max(axis=1)
    assert np.all(np.abs(per_channel.sum(axis=1)) <= bound)
