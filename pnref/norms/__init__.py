"""Normalization ops (batch, instance, group, layer norm; weight standardization) and their VJPs.

Modules, one job each:

- `pnref.norms.core`: the one core, ``normalize`` over reduction axes (no affine) and
  ``grouped_norm`` in the ``(N, G, C // G, L)`` layout with a per-channel affine, each with
  its VJP;
- `pnref.norms.ops`: batch/instance/group/layer norm as choices of groups and axes;
- `pnref.norms.batch_running`: batch norm's running-statistics update and evaluation mode;
- `pnref.norms.weight_standardization`: weight standardization.

The derivations are in ``docs/normalization.md``.
"""

from pnref.norms.batch_running import (
    batch_norm_eval,
    batch_norm_eval_vjp,
    batch_norm_running_update,
)
from pnref.norms.core import (
    grouped_norm,
    grouped_norm_vjp,
    mean_and_variance,
    normalize,
    normalize_vjp,
    normalize_vjp_from_stats,
)
from pnref.norms.ops import (
    batch_norm,
    batch_norm_vjp,
    group_norm,
    group_norm_vjp,
    instance_norm,
    instance_norm_vjp,
    layer_norm,
    layer_norm_vjp,
)
from pnref.norms.weight_standardization import (
    WS_EPS,
    weight_standardization,
    weight_standardization_saving,
    weight_standardization_vjp,
    weight_standardization_vjp_saved,
)

__all__ = [
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
    "weight_standardization_saving",
    "weight_standardization_vjp",
    "weight_standardization_vjp_saved",
    "WS_EPS",
    "normalize",
    "normalize_vjp",
    "normalize_vjp_from_stats",
    "mean_and_variance",
    "grouped_norm",
    "grouped_norm_vjp",
]
