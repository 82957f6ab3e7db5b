"""Both backends agree where squaring the deviations leaves float64's range.

Groups whose deviations exceed about 1e154 overflow a plain sum of squares (the output
silently became 0, or NaN), and with norm_eps = 0 deviations below about 1e-154 underflow
it (inf). The NumPy reference and the Numba kernels both rescale such groups by an exact
power of two (pnref.norms.core, pnref.kernels._fused._rescued_rstd); the results must
agree to issue 5's float64 bound, 1e-13 relative L2, forward and backward.
"""

import numpy as np
import pytest

import pnref


def _relative_l2(got, want):
    # Scaled by the largest magnitude first: at 1e-200 or 1e200 the plain norm itself
    # under- or overflows.
    scale = np.abs(want).max()
    return np.linalg.norm((got - want) / scale) / np.linalg.norm(want / scale)


@pytest.mark.parametrize("magnitude, norm_eps", [(1e160, 1e-5), (1e200, 1e-5), (1e-200, 0.0)])
@pytest.mark.parametrize("norm, groups", [("gn", 4), ("bn", None)])
@pytest.mark.parametrize("axis", [1, -1])
def test_numba_matches_numpy_out_of_range(magnitude, norm_eps, norm, groups, axis):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 8, 3, 3)) * magnitude
    if axis == -1:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    gamma, beta = rng.standard_normal(8), rng.standard_normal(8)
    dout = rng.standard_normal(x.shape)  # random cotangent
    kwargs = dict(norm=norm, groups=groups, norm_eps=norm_eps, axis=axis)
    reference = pnref.norm_pn_act(x, gamma, beta, backend="numpy", **kwargs)
    fast = pnref.norm_pn_act(x, gamma, beta, backend="numba", **kwargs)
    assert np.all(np.isfinite(reference)) and np.abs(reference).max() > 0.1
    assert _relative_l2(fast, reference) <= 1e-13
    grads_reference = pnref.norm_pn_act_vjp(dout, x, gamma, beta, backend="numpy", **kwargs)
    grads_fast = pnref.norm_pn_act_vjp(dout, x, gamma, beta, backend="numba", **kwargs)
    for got, want in zip(grads_fast, grads_reference, strict=True):
        if want is None:
            assert got is None
            continue
        assert np.all(np.isfinite(want))
        assert _relative_l2(got, want) <= 1e-13
