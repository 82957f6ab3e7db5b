r"""The fast path of the normalization blocks: same signatures as `pnref.blocks_ref`.

``norm_pn_act``, ``norm_pn_act_vjp``, ``norm_act`` and ``norm_act_vjp`` validate their
arguments, lay the data out as a C-contiguous 3-d array, and run the fused kernels of
`pnref.kernels._fused`. The per-channel proxy moments and their VJP (O(C n) work,
independent of the data size) come from `pnref.moments.proxy_moments` and
`pnref.moments.proxy_moments_vjp`, exactly as in the reference, except for the
default ``method="quantile"``, which runs the same estimator as a small Numba kernel
(`pnref.kernels._quantile`) to keep the per-call overhead low.

Layouts: channels on axis 1 (channels-first) or on the last axis (channels-last) are
used in place (a copy only if the array is not C-contiguous or needs a dtype change);
a channel axis in the middle (``2 <= axis < ndim - 1``) is moved to the end (one copy).
Inputs the kernels do not cover are handed to the reference
(`pnref.blocks_ref`): fewer than two dimensions, ``axis == 0``, or an empty array.

Dtypes: computation in float64; the kernels read float32 or float64 data (float16 data
is read as float32) and results come back in the widest floating dtype of the
arguments, the convention of ``docs/architecture.md``.
"""

from __future__ import annotations

import numbers
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import ArrayLike

from pnref import blocks_ref
from pnref._validation import (
    as_float_array,
    check_eps,
    check_out,
    normalize_axis,
    per_channel,
    result_dtype,
    write_out,
)
from pnref.activations import Activation
from pnref.kernels._activation_rows import ACTIVATION_CODES
from pnref.kernels._fused import fused_backward, fused_forward
from pnref.kernels._quantile import _EDGE_RATIO, _SHORT_STEP, quantile_moments
from pnref.moments import proxy_moments, proxy_moments_vjp
from pnref.moments.quantile import DEFAULT_N as QUANTILE_DEFAULT_N
from pnref.moments.quantile import points as quantile_points
from pnref.pn_act import resolve_activation

__all__ = [
    "KERNEL_ACTIVATIONS",
    "SavedActForward",
    "SavedForward",
    "norm_act",
    "norm_act_saving",
    "norm_act_vjp",
    "norm_act_vjp_saved",
    "norm_pn_act",
    "norm_pn_act_saving",
    "norm_pn_act_vjp",
    "norm_pn_act_vjp_saved",
]

#: Activations the kernels implement (every activation of `pnref.activations`).
KERNEL_ACTIVATIONS: tuple[str, ...] = tuple(ACTIVATION_CODES)

_NORMS = ("bn", "ln", "in", "gn")
# Below this many elements a call runs on one thread: starting threads costs tens of
# microseconds (milliseconds when the cores are busy), more than it saves on ~1e5 values.
# Results do not depend on it (they are the same for any thread count).
_PARALLEL_MIN_ELEMENTS = 1 << 17
# Batch norm, channels-last: each unit takes this many adjacent channels so that its
# reads are runs of contiguous memory instead of one element per row.
_BN_CHANNELS_LAST_BLOCK = 16


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class _Plan:
    """How one call maps onto the kernels: layout, units and statistics groups."""

    shape: tuple[int, ...]
    channel_axis: int
    channels: int
    channels_last: bool
    moved: bool  # channel axis in the middle, moved to the end
    unit_samples: int
    unit_channels: int
    channels_per_stat: int

    def to_3d(self, arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """``arr`` (shape ``self.shape``) as the C-contiguous 3-d array the kernels read."""
        if self.moved:
            arr = np.moveaxis(arr, self.channel_axis, -1)
        batch = self.shape[0]
        if self.channels_last:
            shape3 = (batch, -1, self.channels)
        else:
            shape3 = (batch, self.channels, -1)
        arr3 = np.ascontiguousarray(arr.reshape(shape3), dtype=dtype)
        # Numba compiles read-only arrays separately: hand it a writable copy instead.
        return arr3 if arr3.flags.writeable else arr3.copy()

    def view_3d(self, arr: np.ndarray, dtype: np.dtype) -> np.ndarray | None:
        """``arr`` as the 3-d array of `to_3d` *without copying* (for the kernels to write
        into), or None when ``arr`` has another dtype or a layout that would need a copy."""
        if arr.dtype != dtype or not arr.flags.writeable:
            return None
        if self.moved:
            arr = np.moveaxis(arr, self.channel_axis, -1)
        shape3 = ((self.shape[0], -1, self.channels) if self.channels_last
                  else (self.shape[0], self.channels, -1))
        arr3 = arr.reshape(shape3)  # a view when the layout allows, else a copy
        if not (arr3.flags.c_contiguous and np.shares_memory(arr3, arr)):
            return None
        return arr3

    def from_3d(self, arr3: np.ndarray) -> np.ndarray:
        """Inverse of `to_3d` (a view)."""
        if self.moved:
            moved_shape = tuple(np.delete(np.array(self.shape), self.channel_axis)) + (
                self.channels,
            )
            return np.moveaxis(arr3.reshape(moved_shape), -1, self.channel_axis)
        return arr3.reshape(self.shape)

    @property
    def sample_blocks(self) -> int:
        return self.shape[0] // self.unit_samples


def _check_norm(norm, groups, channels: int) -> int | None:
    """Validate ``norm`` / ``groups`` as `pnref.blocks_ref` does; return the group count
    (``None`` for batch norm)."""
    if not isinstance(norm, str) or norm not in _NORMS:
        raise ValueError(f"norm must be one of {', '.join(map(repr, _NORMS))}, got {norm!r}")
    if norm != "gn":
        if groups is not None:
            raise ValueError(
                f"groups is only used by norm='gn', got groups={groups!r} with norm={norm!r} "
                "('ln' is 'gn' with one group, 'in' is 'gn' with one group per channel)"
            )
        return {"bn": None, "ln": 1, "in": channels}[norm]
    if groups is None:
        raise ValueError(
            "groups is required for norm='gn' (a positive divisor of the channel count)"
        )
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral):
        raise TypeError(f"groups must be an int, got {type(groups).__name__}")
    if groups < 1 or channels % groups != 0:
        raise ValueError(
            f"groups={groups} must be a positive divisor of the channel count {channels}"
        )
    return int(groups)


def _plan(x: np.ndarray, axis: int, norm, groups) -> _Plan | None:
    """The kernel plan for ``x``, or ``None`` when the reference must handle the call."""
    if x.ndim < 2:
        return None
    channel_axis = normalize_axis(axis, x.ndim)
    channels = x.shape[channel_axis]
    group_count = _check_norm(norm, groups, channels)
    if channel_axis == 0 or x.size == 0:
        return None
    channels_last = channel_axis != 1
    moved = channels_last and channel_axis != x.ndim - 1
    if group_count is None:  # batch norm: all samples, channels on their own
        block = _BN_CHANNELS_LAST_BLOCK if channels_last else 1
        unit_samples, unit_channels, per_stat = x.shape[0], min(block, channels), 1
    else:
        per_group = channels // group_count
        unit_samples, unit_channels, per_stat = 1, per_group, per_group
    return _Plan(x.shape, channel_axis, channels, channels_last, moved, unit_samples,
                 unit_channels, per_stat)


def _kernel_dtype(dtype: np.dtype) -> np.dtype:
    """float64 results are computed from float64 data; anything narrower from float32."""
    return np.dtype(np.float64) if dtype.itemsize >= 8 else np.dtype(np.float32)


def _activation_code(phi: Activation) -> tuple[int, float]:
    code = ACTIVATION_CODES.get(phi.name)
    if code is None:
        raise ValueError(
            f"activation {phi.name!r} has no Numba kernel; supported: "
            f"{', '.join(KERNEL_ACTIVATIONS)} (or use backend='numpy')"
        )
    return code, float(phi.params.get("alpha", 0.0))


def _f64(p: np.ndarray | None, default: float, channels: int) -> np.ndarray:
    """A fresh writable float64 copy (what the kernels were compiled for)."""
    if p is None:
        return np.full(channels, default)
    return np.array(p, dtype=np.float64)


# --------------------------------------------------------------------------- shared runs


#: The worker threads of `_run_units` (the calling thread runs one range itself), made
#: on first use and replaced by a larger pool if more threads are asked for.
_POOL: ThreadPoolExecutor | None = None
_POOL_WORKERS = 0


def _thread_count(elements: int, units: int) -> int:
    """Threads for one kernel call: Numba's setting (``NUMBA_NUM_THREADS``,
    ``numba.set_num_threads``), one for small inputs, at most one per unit."""
    if elements < _PARALLEL_MIN_ELEMENTS:
        return 1
    return max(1, min(numba.get_num_threads(), units))


def _run_units(kernel, arguments: tuple, units: int, threads: int) -> None:
    """``kernel(*arguments, first_unit, last_unit)`` over ``[0, units)``, split into
    ``threads`` contiguous ranges run at once (the kernels release the GIL).

    Units share nothing and each writes only its own outputs, so the results do not
    depend on the split: they are bit-identical for any thread count.
    """
    if threads <= 1:
        kernel(*arguments, 0, units)
        return
    global _POOL, _POOL_WORKERS
    if _POOL is None or _POOL_WORKERS < threads - 1:
        if _POOL is not None:
            _POOL.shutdown(wait=False)
        _POOL = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="pnref-kernel")
        _POOL_WORKERS = threads - 1
    bounds = [units * i // threads for i in range(threads + 1)]
    futures = [_POOL.submit(kernel, *arguments, bounds[i], bounds[i + 1])
               for i in range(1, threads)]
    kernel(*arguments, bounds[0], bounds[1])  # the first range on the calling thread
    for future in futures:
        future.result()


def _unit_total(plan: _Plan) -> int:
    """Number of units of work of ``plan`` (sample blocks x channel blocks)."""
    channel_blocks = -(-plan.channels // plan.unit_channels)
    return plan.sample_blocks * channel_blocks


def _run_forward(x, plan: _Plan, norm_eps, gamma64, beta64, proxy_mean, inv_std, phi,
                 out_dtype, out=None) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The forward's output and its statistics (mean, inverse std per sample block and
    channel), which `_run_backward` can reuse.

    ``out`` (checked by `check_out`, or None): the kernels write into it directly when
    its layout is the kernels' own and it shares no memory with ``x`` (or is ``x``
    itself: each element is read before it is written, at the same place); otherwise
    into a new array, copied into ``out`` at the end. The same bits either way.
    """
    kernel_dtype = _kernel_dtype(out_dtype)
    x3 = plan.to_3d(x, kernel_dtype)
    # Straight into out: when out is x, a layout view_3d accepts is also to_3d's, so the
    # kernels then read and write the same array, in place.
    out3 = None
    if out is not None and (out is x or not np.may_share_memory(out, x)):
        out3 = plan.view_3d(out, kernel_dtype)
    direct = out3 is not None
    if out3 is None:
        out3 = np.empty_like(x3)
    statistics = np.empty((2, plan.sample_blocks, plan.channels))
    code, alpha = _activation_code(phi)
    units = _unit_total(plan)
    _run_units(fused_forward,
               (x3, plan.channels_last, plan.unit_samples, plan.unit_channels,
                plan.channels_per_stat, norm_eps, gamma64, beta64, proxy_mean, inv_std,
                code, alpha, out3, statistics[0], statistics[1]),
               units, _thread_count(x3.size, units))
    statistics_pair = (statistics[0], statistics[1])
    if direct:
        return out, statistics_pair
    return write_out(plan.from_3d(out3).astype(out_dtype, copy=False), out), statistics_pair


def _run_backward(dout, x, plan: _Plan, norm_eps, gamma64, beta64, proxy_mean, inv_std, phi,
                  out_dtype, statistics: tuple[np.ndarray, np.ndarray] | None = None):
    """dx and the four channel sums (sum dout, sum dout (a - mu), sum t, sum t xhat).

    ``statistics``: what `_run_forward` returned for the same ``x`` and plan (then the
    kernel does not recompute them), or ``None``.
    """
    kernel_dtype = _kernel_dtype(out_dtype)
    x3 = plan.to_3d(x, kernel_dtype)
    dout3 = plan.to_3d(dout, kernel_dtype)
    dx3 = np.empty_like(x3)
    partials = np.empty((4, plan.sample_blocks, plan.channels))
    saved = statistics is not None
    if statistics is None:
        statistics = (np.empty((plan.sample_blocks, plan.channels)),
                      np.empty((plan.sample_blocks, plan.channels)))
    code, alpha = _activation_code(phi)
    units = _unit_total(plan)
    _run_units(fused_backward,
               (dout3, x3, plan.channels_last, plan.unit_samples, plan.unit_channels,
                plan.channels_per_stat, norm_eps, gamma64, beta64, proxy_mean, inv_std,
                code, alpha, dx3, partials[0], partials[1], partials[2], partials[3],
                statistics[0], statistics[1], saved),
               units, _thread_count(x3.size, units))
    # Fixed-order reduction over the sample blocks: independent of the thread count.
    sums = partials.sum(axis=1)
    return plan.from_3d(dx3).astype(out_dtype, copy=False), sums


def _check_cotangent(dout, x: np.ndarray) -> np.ndarray:
    dout = as_float_array(dout, "dout")
    if dout.shape != x.shape:
        raise ValueError(f"dout must have the shape of x {x.shape}, got {dout.shape}")
    return dout


# --------------------------------------------------------------------------- norm -> PN-Act


def _refine_edge_channels(phi: Activation, m: np.ndarray, s: np.ndarray, n: int,
                          moments: np.ndarray, maybe_edge: np.ndarray) -> None:
    """Recompute, with the NumPy estimator, the channels where the kernel is less accurate.

    The kernel has not the four edge refinements of `pnref.moments._estimator` (see
    `pnref.kernels._quantile`); the channels that need them are recognised cheaply and
    handed to the reference, so the fast path returns the reference's values there:
    tanh and sigmoid with 64 |m| < s (scaled by 1/2 for sigmoid), ELU whose steps are all
    short (s max|u| <= 1/8), and any channel where f' fades over the points
    (64 |d(mean)/dm| < |f'(m)|), among finite m and s. In a training step these are rare;
    elsewhere the kernel's values stand (they agree with the reference to rounding).

    The kernel already marks a superset of those channels (``maybe_edge``, the same tests
    with a margin where its f'(m) may round differently from ``phi.df``); they are checked
    here, the others are not looked at.
    """
    candidates = np.flatnonzero(maybe_edge)
    if not candidates.size:
        return
    from pnref.moments import quantile

    m, s = m[candidates], s[candidates]
    scale = 0.5 if phi.name == "sigmoid" else 1.0
    edge = np.zeros(m.shape, dtype=bool)
    if phi.name in ("tanh", "sigmoid"):
        edge |= _EDGE_RATIO * np.abs(scale * m) < scale * s
    if phi.name == "elu":
        edge |= s * np.max(np.abs(quantile.points(n))) <= _SHORT_STEP
    with np.errstate(invalid="ignore", over="ignore"):
        edge |= _EDGE_RATIO * np.abs(moments[2, candidates]) < np.abs(phi.df(m))
    chosen = edge & np.isfinite(m) & np.isfinite(s)
    rows = candidates[chosen]
    if rows.size:
        values = quantile.moments_with_derivatives(phi, m[chosen], s[chosen], n=n)
        for k, value in enumerate(values):
            moments[k, rows] = value


@dataclass(frozen=True)
class _PNSetup:
    """Everything a PN-block call needs once its arguments are validated."""

    plan: _Plan
    norm_eps: float
    params: tuple  # the validated (gamma, beta, gamma_tilde, beta_tilde), None if absent
    phi: Activation
    gamma64: np.ndarray
    beta64: np.ndarray
    gamma_tilde64: np.ndarray | float  # 0.0 when absent
    beta_tilde64: np.ndarray | float
    proxy_mean: np.ndarray
    inv_std: np.ndarray
    quantile: tuple | None  # (sigma, the 6 x C moments and derivatives) for "quantile"


def _pn_setup(x, gamma, beta, gamma_tilde, beta_tilde, norm, groups, norm_eps, activation,
              eps, method, n, axis):
    """Validate; return ``x`` and its `_PNSetup`, or ``None`` for the reference."""
    x = as_float_array(x, "x")
    norm_eps = check_eps(norm_eps, "norm_eps")
    eps = check_eps(eps, "eps", positive=True)
    plan = _plan(x, axis, norm, groups)
    if plan is None:
        return x, None
    if gamma is None or beta is None:
        raise TypeError(
            "gamma and beta are required by norm_pn_act (arrays of shape (C,)); "
            "only gamma_tilde and beta_tilde may be None"
        )
    channels = plan.channels
    params = [per_channel(p, channels, name) for p, name in (
        (gamma, "gamma"), (beta, "beta"), (gamma_tilde, "gamma_tilde"),
        (beta_tilde, "beta_tilde"))]
    phi = resolve_activation(activation)
    _activation_code(phi)
    gamma64, beta64 = _f64(params[0], 1.0, channels), _f64(params[1], 0.0, channels)
    gamma_tilde64 = 0.0 if params[2] is None else _f64(params[2], 0.0, channels)
    beta_tilde64 = 0.0 if params[3] is None else _f64(params[3], 0.0, channels)
    if method == "quantile":
        # m and sigma exactly as pnref.moments.reduce_parameters forms them.
        m = beta64 + gamma64 * beta_tilde64
        sigma = gamma64 * (1.0 + gamma_tilde64)
        code, alpha = _activation_code(phi)
        moments = np.empty((6, channels))
        maybe_edge = np.empty(channels, dtype=np.bool_)
        points = np.array(quantile_points(QUANTILE_DEFAULT_N if n is None else n))
        s = np.abs(sigma)
        quantile_moments(points, m, s, code, alpha, moments, maybe_edge)
        if maybe_edge.any():
            _refine_edge_channels(phi, m, s, points.shape[0], moments, maybe_edge)
        # rows of a fresh float64 (6, C) array: a copy and a new array, both writable
        proxy_mean = moments[0].copy()
        inv_std = 1.0 / np.sqrt(moments[1] + eps)
        quantile = (sigma, moments)
    else:
        proxy_mean, proxy_var = proxy_moments(
            activation=phi, gamma=gamma64, beta=beta64, gamma_tilde=gamma_tilde64,
            beta_tilde=beta_tilde64, method=method, n=n,
        )
        quantile = None
        # Fresh writable float64 copies (np.array copies; broadcast views are read-only).
        proxy_mean = np.array(np.broadcast_to(proxy_mean, (channels,)), dtype=np.float64)
        proxy_var = np.asarray(proxy_var, dtype=np.float64)
        inv_std = np.array(np.broadcast_to(1.0 / np.sqrt(proxy_var + eps), (channels,)),
                           dtype=np.float64)
    return x, _PNSetup(plan, norm_eps, tuple(params), phi, gamma64, beta64, gamma_tilde64,
                       beta_tilde64, proxy_mean, inv_std, quantile)


def _moments_vjp(dproxy_mean, dproxy_var, phi, gamma64, beta64, gamma_tilde64, beta_tilde64,
                 method, n, quantile):
    """(dgamma, dbeta, dgamma_tilde, dbeta_tilde) through the proxy moments."""
    if quantile is None:
        return proxy_moments_vjp(
            dproxy_mean, dproxy_var, activation=phi, gamma=gamma64, beta=beta64,
            gamma_tilde=gamma_tilde64, beta_tilde=beta_tilde64, method=method, n=n,
        )
    # The chain rule of pnref.moments.proxy_moments_vjp, with sign(0) = 0.
    sigma, (_, _, dmean_dm, dmean_ds, dvar_dm, dvar_ds) = quantile
    grad_m = dproxy_mean * dmean_dm + dproxy_var * dvar_dm
    grad_sigma = np.sign(sigma) * (dproxy_mean * dmean_ds + dproxy_var * dvar_ds)
    grad_gamma = grad_sigma * (1.0 + gamma_tilde64) + grad_m * beta_tilde64
    return grad_gamma, grad_m, grad_sigma * gamma64, grad_m * gamma64


def norm_pn_act(
    x: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    gamma_tilde: ArrayLike | None = None,
    beta_tilde: ArrayLike | None = None,
    *,
    norm: str = "gn",
    groups: int | None = None,
    norm_eps: float = 1e-5,
    activation: str | Activation = "relu",
    eps: float = 0.03,
    method: str = "quantile",
    n: int | None = None,
    axis: int = 1,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""Fused norm (no affine) -> PN-Act; same contract as `pnref.blocks_ref.norm_pn_act`.

    Parameters
    ----------
    x : ndarray, shape (N, ..., C, ...)
        Batch on axis 0, channels on ``axis``, 0 to any number of spatial axes.
    gamma, beta, gamma_tilde, beta_tilde : ndarray (C,)
        PN-Act parameters; the tilde ones may be ``None`` (zeros, not learned).
    norm, groups, norm_eps, activation, eps, method, n, axis, out
        As for `pnref.blocks_ref.norm_pn_act`; the kernels write into ``out`` directly
        when its layout allows.

    Returns
    -------
    ndarray
        Shape of ``x``, widest floating dtype of the arguments (``out`` when given).

    Equations
    ---------
    .. math::
        \hat x = (x - m_t)(v_t + \epsilon_n)^{-1/2}, \qquad
        \mathrm{out} = \big(\phi(\gamma_c \hat x + \beta_c) - \mu_c\big)
                       (\sigma^2_c + \epsilon)^{-1/2}

    with :math:`m_t, v_t` the two-pass mean and biased variance of the statistics group.
    """
    x, setup = _pn_setup(x, gamma, beta, gamma_tilde, beta_tilde, norm, groups, norm_eps,
                         activation, eps, method, n, axis)
    if setup is None:
        return blocks_ref.norm_pn_act(
            x, gamma, beta, gamma_tilde, beta_tilde, norm=norm, groups=groups,
            norm_eps=norm_eps, activation=activation, eps=eps, method=method, n=n, axis=axis,
            out=out)
    dtype = result_dtype(x, *setup.params)
    out = check_out(out, x.shape, dtype)
    return _run_forward(x, setup.plan, setup.norm_eps, setup.gamma64, setup.beta64,
                        setup.proxy_mean, setup.inv_std, setup.phi, dtype, out)[0]


def norm_pn_act_vjp(
    dout: ArrayLike,
    x: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    gamma_tilde: ArrayLike | None = None,
    beta_tilde: ArrayLike | None = None,
    *,
    norm: str = "gn",
    groups: int | None = None,
    norm_eps: float = 1e-5,
    activation: str | Activation = "relu",
    eps: float = 0.03,
    method: str = "quantile",
    n: int | None = None,
    axis: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""Fused VJP of `norm_pn_act`: ``(dx, dgamma, dbeta, dgamma_tilde, dbeta_tilde)``.

    ``None`` for an absent ``gamma_tilde`` / ``beta_tilde``. The norm statistics are
    recomputed from ``x``; the proxy-moment path goes through
    `pnref.moments.proxy_moments_vjp`.

    Equations
    ---------
    With :math:`t = \mathrm{dout}\,\rho_c\,\phi'(\gamma_c \hat x + \beta_c)`,
    :math:`\rho_c = (\sigma^2_c + \epsilon)^{-1/2}` and :math:`a = \phi(\cdot)`:

    .. math::
        \bar\mu_c = -\rho_c \textstyle\sum \mathrm{dout}, \qquad
        \bar{\sigma^2_c} = -\tfrac12 \rho_c^3 \sum \mathrm{dout}\,(a - \mu_c)

        d\gamma_c = \textstyle\sum t\,\hat x + (\text{moments}), \qquad
        d\beta_c = \sum t + (\text{moments})

        dx = r_t\big(\gamma_c t - \mathrm{mean}_t(\gamma t)
             - \hat x\, \mathrm{mean}_t(\gamma t \hat x)\big)

    where "(moments)" is what ``proxy_moments_vjp`` returns for
    :math:`(\bar\mu, \bar{\sigma^2})`, which also gives :math:`d\tilde\gamma, d\tilde\beta`.
    """
    x, setup = _pn_setup(x, gamma, beta, gamma_tilde, beta_tilde, norm, groups, norm_eps,
                         activation, eps, method, n, axis)
    if setup is None:
        return blocks_ref.norm_pn_act_vjp(
            dout, x, gamma, beta, gamma_tilde, beta_tilde, norm=norm, groups=groups,
            norm_eps=norm_eps, activation=activation, eps=eps, method=method, n=n, axis=axis)
    return _pn_vjp(dout, x, setup, method, n)


def _pn_vjp(
    dout: ArrayLike, x: np.ndarray, setup: _PNSetup, method: str, n: int | None,
    statistics: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The body of `norm_pn_act_vjp` once ``x`` is validated and ``setup`` built
    (``statistics``: the forward's, or ``None`` to recompute them)."""
    dout = _check_cotangent(dout, x)
    out_dtype = result_dtype(dout, x, *setup.params)
    inv_std = setup.inv_std
    dx, (sum_dout, sum_centered, sum_t, sum_t_xhat) = _run_backward(
        dout, x, setup.plan, setup.norm_eps, setup.gamma64, setup.beta64, setup.proxy_mean,
        inv_std, setup.phi, out_dtype, statistics)
    dproxy_mean = -inv_std * sum_dout
    dproxy_var = -0.5 * inv_std**3 * sum_centered
    dgamma_m, dbeta_m, dgamma_tilde, dbeta_tilde = _moments_vjp(
        dproxy_mean, dproxy_var, setup.phi, setup.gamma64, setup.beta64, setup.gamma_tilde64,
        setup.beta_tilde64, method, n, setup.quantile)

    def cast(g, present=True):
        return None if not present else np.asarray(g, dtype=np.float64).astype(out_dtype)

    _, _, gamma_tilde, beta_tilde = setup.params
    return (dx, cast(sum_t_xhat + dgamma_m), cast(sum_t + dbeta_m),
            cast(dgamma_tilde, gamma_tilde is not None), cast(dbeta_tilde, beta_tilde is not None))


@dataclass(frozen=True)
class SavedForward:
    """What `norm_pn_act_saving` keeps for `norm_pn_act_vjp_saved`: the validated input,
    the validated set-up (plan, proxy moments and their derivatives), ``method``, ``n``,
    and the norm statistics of the forward (mean and inverse std per sample block and
    channel, float64), which the backward kernel then reads instead of recomputing."""

    x: np.ndarray
    setup: _PNSetup
    method: str
    n: int | None
    statistics: tuple[np.ndarray, np.ndarray] | None = None


def norm_pn_act_saving(
    x: ArrayLike, gamma: ArrayLike, beta: ArrayLike, gamma_tilde: ArrayLike | None = None,
    beta_tilde: ArrayLike | None = None, *, norm: str = "gn", groups: int | None = None,
    norm_eps: float = 1e-5, activation: str | Activation = "relu", eps: float = 0.03,
    method: str = "quantile", n: int | None = None, axis: int = 1,
) -> tuple[np.ndarray, SavedForward | None]:
    """`norm_pn_act` that also returns what its VJP needs (``None`` for reference inputs).

    A training step calls the forward and then the VJP with the same arguments; handing
    the saved set-up to `norm_pn_act_vjp_saved` validates the arguments and computes the
    proxy moments (with their derivatives) once instead of twice, and the backward kernel
    reads the norm statistics the forward computed instead of making its two passes over
    ``x`` again. The results are those of `norm_pn_act` and `norm_pn_act_vjp`, bit for
    bit (the same code computes the statistics either way).
    """
    x, setup = _pn_setup(x, gamma, beta, gamma_tilde, beta_tilde, norm, groups, norm_eps,
                         activation, eps, method, n, axis)
    if setup is None:
        out = blocks_ref.norm_pn_act(
            x, gamma, beta, gamma_tilde, beta_tilde, norm=norm, groups=groups,
            norm_eps=norm_eps, activation=activation, eps=eps, method=method, n=n, axis=axis)
        return out, None
    out, statistics = _run_forward(x, setup.plan, setup.norm_eps, setup.gamma64,
                                   setup.beta64, setup.proxy_mean, setup.inv_std, setup.phi,
                                   result_dtype(x, *setup.params))
    return out, SavedForward(x, setup, method, n, statistics)


def norm_pn_act_vjp_saved(
    dout: ArrayLike, saved: SavedForward,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """`norm_pn_act_vjp` from the `SavedForward` of `norm_pn_act_saving` (same results)."""
    return _pn_vjp(dout, saved.x, saved.setup, saved.method, saved.n, saved.statistics)


# --------------------------------------------------------------------------- norm -> act


@dataclass(frozen=True)
class _ActSetup:
    """Everything a plain-block call needs once its arguments are validated."""

    plan: _Plan
    norm_eps: float
    gamma: np.ndarray | None  # as validated (None: absent)
    beta: np.ndarray | None
    phi: Activation
    gamma64: np.ndarray  # ones when absent
    beta64: np.ndarray  # zeros when absent

    def run_forward(self, x, out_dtype, out=None):
        """The fused forward with proxy mean 0 and inverse proxy std 1: the output and the
        norm statistics (which `run_backward` can reuse); ``out`` as for `_run_forward`."""
        channels = self.plan.channels
        return _run_forward(x, self.plan, self.norm_eps, self.gamma64, self.beta64,
                            np.zeros(channels), np.ones(channels), self.phi, out_dtype, out)

    def run_backward(self, dout, x, out_dtype, statistics=None):
        """The fused backward; the proxy-moment sums it also returns go unused."""
        channels = self.plan.channels
        return _run_backward(dout, x, self.plan, self.norm_eps, self.gamma64, self.beta64,
                             np.zeros(channels), np.ones(channels), self.phi, out_dtype,
                             statistics)

    def vjp(self, dout, x, statistics=None):
        """``(dx, dgamma, dbeta)`` of the validated block (``statistics``: the forward's)."""
        dout = _check_cotangent(dout, x)
        out_dtype = result_dtype(dout, x, self.gamma, self.beta)
        dx, (_, _, sum_t, sum_t_xhat) = self.run_backward(dout, x, out_dtype, statistics)
        dgamma = None if self.gamma is None else sum_t_xhat.astype(out_dtype)
        dbeta = None if self.beta is None else sum_t.astype(out_dtype)
        return dx, dgamma, dbeta


def _act_setup(x, gamma, beta, norm, groups, norm_eps, activation, axis):
    """Validate; return ``x`` and its `_ActSetup`, or ``None`` for the reference."""
    x = as_float_array(x, "x")
    norm_eps = check_eps(norm_eps, "norm_eps")
    plan = _plan(x, axis, norm, groups)
    if plan is None:
        return x, None
    channels = plan.channels
    gamma = per_channel(gamma, channels, "gamma")
    beta = per_channel(beta, channels, "beta")
    phi = resolve_activation(activation)
    _activation_code(phi)
    return x, _ActSetup(plan, norm_eps, gamma, beta, phi, _f64(gamma, 1.0, channels),
                        _f64(beta, 0.0, channels))


def norm_act(
    x: ArrayLike,
    gamma: ArrayLike | None = None,
    beta: ArrayLike | None = None,
    *,
    norm: str = "gn",
    groups: int | None = None,
    norm_eps: float = 1e-5,
    activation: str | Activation = "relu",
    axis: int = 1,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""Fused norm with affine -> activation; same contract as `pnref.blocks_ref.norm_act`.

    Parameters
    ----------
    x : ndarray, shape (N, ..., C, ...)
    gamma, beta : ndarray (C,) or None
        The norm's affine; ``None`` means 1 and 0.
    norm, groups, norm_eps, activation, axis, out
        As for `pnref.blocks_ref.norm_act` (and ``out`` as for `norm_pn_act`).

    Returns
    -------
    ndarray
        Shape of ``x``, widest floating dtype of the arguments (``out`` when given).

    Equations
    ---------
    .. math:: \mathrm{out} = \phi(\gamma_c \hat x + \beta_c), \qquad
              \hat x = (x - m_t)(v_t + \epsilon_n)^{-1/2}
    """
    x, setup = _act_setup(x, gamma, beta, norm, groups, norm_eps, activation, axis)
    if setup is None:
        return blocks_ref.norm_act(x, gamma, beta, norm=norm, groups=groups,
                                   norm_eps=norm_eps, activation=activation, axis=axis,
                                   out=out)
    dtype = result_dtype(x, setup.gamma, setup.beta)
    return setup.run_forward(x, dtype, check_out(out, x.shape, dtype))[0]


def norm_act_vjp(
    dout: ArrayLike,
    x: ArrayLike,
    gamma: ArrayLike | None = None,
    beta: ArrayLike | None = None,
    *,
    norm: str = "gn",
    groups: int | None = None,
    norm_eps: float = 1e-5,
    activation: str | Activation = "relu",
    axis: int = 1,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""Fused VJP of `norm_act`: ``(dx, dgamma, dbeta)``, ``None`` for absent ones.

    Equations
    ---------
    With :math:`t = \mathrm{dout}\,\phi'(\gamma_c \hat x + \beta_c)`:

    .. math::
        d\gamma_c = \textstyle\sum t\,\hat x, \quad d\beta_c = \sum t, \quad
        dx = r_t\big(\gamma_c t - \mathrm{mean}_t(\gamma t)
             - \hat x\, \mathrm{mean}_t(\gamma t \hat x)\big)
    """
    x, setup = _act_setup(x, gamma, beta, norm, groups, norm_eps, activation, axis)
    if setup is None:
        return blocks_ref.norm_act_vjp(dout, x, gamma, beta, norm=norm, groups=groups,
                                       norm_eps=norm_eps, activation=activation, axis=axis)
    return setup.vjp(dout, x)


@dataclass(frozen=True)
class SavedActForward:
    """What `norm_act_saving` keeps for `norm_act_vjp_saved`: the validated input and
    set-up, and the forward's norm statistics (read by the backward kernel)."""

    x: np.ndarray
    setup: _ActSetup
    statistics: tuple[np.ndarray, np.ndarray]


def norm_act_saving(
    x: ArrayLike, gamma: ArrayLike | None = None, beta: ArrayLike | None = None, *,
    norm: str = "gn", groups: int | None = None, norm_eps: float = 1e-5,
    activation: str | Activation = "relu", axis: int = 1,
) -> tuple[np.ndarray, SavedActForward | None]:
    """`norm_act` that also returns what its VJP needs (``None`` for reference inputs).

    As `norm_pn_act_saving` for the plain block: `norm_act_vjp_saved` then validates
    nothing again and its backward kernel reads the forward's norm statistics. The
    results are those of `norm_act` and `norm_act_vjp`, bit for bit.
    """
    x, setup = _act_setup(x, gamma, beta, norm, groups, norm_eps, activation, axis)
    if setup is None:
        return blocks_ref.norm_act(x, gamma, beta, norm=norm, groups=groups,
                                   norm_eps=norm_eps, activation=activation, axis=axis), None
    out, statistics = setup.run_forward(x, result_dtype(x, setup.gamma, setup.beta))
    return out, SavedActForward(x, setup, statistics)


def norm_act_vjp_saved(
    dout: ArrayLike, saved: SavedActForward,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """`norm_act_vjp` from the `SavedActForward` of `norm_act_saving` (same results)."""
    return saved.setup.vjp(dout, saved.x, saved.statistics)
