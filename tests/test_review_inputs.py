"""Review regressions: bad inputs get an error that names the argument."""

from __future__ import annotations

import numpy as np
import pytest

import pnref


def test_running_update_rejects_negative_running_var():
    # batch_norm_eval rejected it; the update silently blended it into a negative variance
    x = np.random.default_rng(0).standard_normal((4, 3, 2))
    with pytest.raises(ValueError, match="running_var"):
        pnref.batch_norm_running_update(x, np.zeros(3), -np.ones(3), momentum=0.1)
    with pytest.raises(ValueError, match="running_var"):
        pnref.batch_norm_eval(x, np.zeros(3), -np.ones(3))


@pytest.mark.parametrize("where", ["gamma", "beta", "gamma_tilde", "beta_tilde"])
def test_exact_moments_name_the_infinite_parameter(where):
    params = {"gamma": np.ones(2), "beta": np.zeros(2), "gamma_tilde": np.zeros(2),
              "beta_tilde": np.full(2, 0.5)}
    params[where] = np.array([np.inf, 1.0])
    with np.errstate(invalid="ignore"), pytest.raises(ValueError, match=where):
        pnref.proxy_moments("relu", **params, method="exact")
    with np.errstate(invalid="ignore"), pytest.raises(ValueError, match=where):
        pnref.proxy_moments_vjp(1.0, 1.0, "relu", **params, method="exact")


def test_exact_moments_nan_still_propagates():
    mean, var = pnref.proxy_moments("relu", np.array([1.0, np.nan]), np.zeros(2), method="exact")
    assert np.isnan(mean[1]) and np.isnan(var[1]) and np.isfinite(mean[0])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_blocks_exact_infinite_parameter_named(backend):
    x = np.random.default_rng(1).standard_normal((2, 2, 3))
    with np.errstate(invalid="ignore"), pytest.raises(ValueError, match="beta"):
        pnref.norm_pn_act(x, np.ones(2), np.array([np.inf, 0.0]), norm="ln", method="exact",
                          backend=backend)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_masked_array_is_rejected_not_unmasked(backend):
    # np.asarray silently drops a mask: the masked value would enter the statistics
    x = np.ma.masked_array(np.ones((2, 4, 3)), mask=np.zeros((2, 4, 3), bool))
    with pytest.raises(TypeError, match="x must be a plain ndarray, got a masked array"):
        pnref.norm_act(x, norm="ln", backend=backend)
    with pytest.raises(TypeError, match="x must be a plain ndarray"):
        pnref.layer_norm(x)
    with pytest.raises(TypeError, match="gamma"):
        pnref.proxy_moments("relu", np.ma.masked_array([1.0]), np.zeros(1))
