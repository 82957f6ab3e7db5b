"""Convention profiles: the settings a golden case is generated under, recorded in the case.

A profile is a named set of conventions (layout, eps values, moment estimator, running
statistics momentum, affine shape). ``official``, ``torch`` and ``exact`` are the three the
issue names; the others are the normalization conventions of ``shared/conventions.md`` where
they differ from those. The attributes an adapter receives always spell the conventions out
(``axis``, ``eps``, ``momentum`` ...), so an adapter never needs to know profile names.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["PROFILES", "profile_conventions"]

#: ONNX attributes are float32: its eps 1e-5 is this double.
_ONNX_EPS = float(np.float32(1e-5))

PROFILES: dict[str, dict[str, Any]] = {
    "official": {
        "description": "the authors' TF1 code: channels-last, PN eps 0.03, quantile estimator "
        "n = 200, norm eps 1e-3, GN with 4 groups or LN",
        "layout": "channels_last",
        "axis": -1,
        "norm_eps": 1e-3,
        "pn_eps": 0.03,
        "method": "quantile",
        "n": 200,
        "groups": 4,
    },
    "torch": {
        "description": "PyTorch: channels-first, norm eps 1e-5, BN momentum 0.1 weighting the "
        "batch, unbiased running variance; PN as in the official code",
        "layout": "channels_first",
        "axis": 1,
        "norm_eps": 1e-5,
        "pn_eps": 0.03,
        "method": "quantile",
        "n": 200,
        "momentum": 0.1,
        "momentum_convention": "torch",
    },
    "exact": {
        "description": "the mathematical definition: exact proxy moments (closed forms, or "
        "quadrature where there are none), judged by the mpmath oracle; channels-first",
        "layout": "channels_first",
        "axis": 1,
        "norm_eps": 1e-5,
        "pn_eps": 0.03,
        "method": "exact",
        "n": None,
    },
    "keras": {
        "description": "Keras 3: channels-last, eps 1e-3, BN momentum 0.99 weighting the old "
        "value, biased moving variance",
        "layout": "channels_last",
        "axis": -1,
        "norm_eps": 1e-3,
        "momentum": 0.99,
        "momentum_convention": "tf",
    },
    "tf_fused": {
        "description": "TensorFlow's fused batch-norm kernel (FusedBatchNormV3: TF1, tf.keras 2 "
        "with fused=True): channels-last, eps 1e-3, momentum 0.99 weighting the old value, "
        "unbiased (M - 1) batch variance fed to the moving variance",
        "layout": "channels_last",
        "axis": -1,
        "norm_eps": 1e-3,
        "momentum": 0.99,
        "momentum_convention": "tf_fused",
    },
    "flax": {
        "description": "Flax: channels-last, LayerNorm/GroupNorm eps 1e-6, BN momentum 0.99 "
        "TF-style, biased running variance",
        "layout": "channels_last",
        "axis": -1,
        "norm_eps": 1e-6,
        "momentum": 0.99,
        "momentum_convention": "tf",
    },
    "onnx18": {
        "description": "ONNX GroupNormalization-18: scale and bias per group, shape (G); "
        "eps 1e-5 as a float32 attribute",
        "layout": "channels_first",
        "axis": 1,
        "norm_eps": _ONNX_EPS,
        "affine": "per_group",
    },
    "onnx21": {
        "description": "ONNX GroupNormalization-21: scale and bias per channel, shape (C); "
        "eps 1e-5 as a float32 attribute",
        "layout": "channels_first",
        "axis": 1,
        "norm_eps": _ONNX_EPS,
        "affine": "per_channel",
    },
    "onnx15": {
        "description": "ONNX BatchNormalization-15: momentum 0.9 weighting the old value, "
        "population running variance",
        "layout": "channels_first",
        "axis": 1,
        "norm_eps": _ONNX_EPS,
        "momentum": 0.9,
        "momentum_convention": "tf",
    },
}


def profile_conventions(name: str) -> dict[str, Any]:
    """A copy of a profile's conventions (its settings without the description).

    Raises
    ------
    ValueError
        If ``name`` is not a known profile.
    """
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {name!r}")
    return {k: v for k, v in PROFILES[name].items() if k != "description"}
