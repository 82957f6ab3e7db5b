"""pnref: the numerical reference for Proxy Normalization.

Layers, lowest first (nothing imports upwards):
math core in NumPy (norms, activations, proxy moments, PN-Act) -> Numba kernels ->
autograd primitives -> nn / training -> experiments, golden vectors and the CLI.
"""

from pnref._version import __version__
from pnref.activations import Activation, activation
from pnref.blocks import norm_act, norm_act_vjp, norm_pn_act, norm_pn_act_vjp
from pnref.moments import proxy_moments, proxy_moments_vjp
from pnref.norms import (
    batch_norm,
    batch_norm_eval,
    batch_norm_eval_vjp,
    batch_norm_running_update,
    batch_norm_vjp,
    group_norm,
    group_norm_vjp,
    grouped_norm,
    grouped_norm_vjp,
    instance_norm,
    instance_norm_vjp,
    layer_norm,
    layer_norm_vjp,
    mean_and_variance,
    normalize,
    normalize_vjp,
    normalize_vjp_from_stats,
    weight_standardization,
    weight_standardization_vjp,
)
from pnref.pn_act import act, act_vjp, pn_act, pn_act_vjp

__all__ = ["__version__", "Activation", "activation", "proxy_moments", "proxy_moments_vjp"]

__all__ += [  # pnref.norms
    "batch_norm",
    "batch_norm_vjp",
    "batch_norm_running_update",
    "batch_norm_eval",
    "batch_norm_eval_vjp",
    "instance_norm",
    "instance_norm_vjp",
    "group_norm",
    "group_norm_vjp",
    "layer_norm",
    "layer_norm_vjp",
    "weight_standardization",
    "weight_standardization_vjp",
    "normalize",
    "normalize_vjp",
    "normalize_vjp_from_stats",
    "mean_and_variance",
    "grouped_norm",
    "grouped_norm_vjp",
]

__all__ += ["pn_act", "pn_act_vjp", "act", "act_vjp"]  # pnref.pn_act
__all__ += ["norm_pn_act", "norm_pn_act_vjp", "norm_act", "norm_act_vjp"]  # pnref.blocks
