"""Fused Numba kernels for the normalization blocks (layer 2: below `pnref.blocks`).

The public functions mirror `pnref.blocks_ref` and agree with it to rounding
(``docs/performance.md``): `norm_pn_act`, `norm_pn_act_vjp`,
`norm_act`, `norm_act_vjp`. `warmup` compiles (or loads from the
on-disk cache) every kernel.

Importing this package imports Numba but compiles nothing: the kernels are compiled
lazily, on first call, for the dtype they meet (float32 or float64), and cached on disk
(``cache=True``), so later processes load them in milliseconds. Numba keys each cached
function on its own source file only: after editing ``_activation_rows.py`` or
``_fused.py``, delete this package's ``__pycache__`` so that no stale kernel is loaded.
"""

from pnref.kernels.fused_blocks import (
    KERNEL_ACTIVATIONS,
    norm_act,
    norm_act_vjp,
    norm_pn_act,
    norm_pn_act_vjp,
)
from pnref.kernels.warmup import warmup

__all__ = [
    "KERNEL_ACTIVATIONS",
    "norm_act",
    "norm_act_vjp",
    "norm_pn_act",
    "norm_pn_act_vjp",
    "warmup",
]
