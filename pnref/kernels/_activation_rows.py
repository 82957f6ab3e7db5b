"""Activations and their slopes over a contiguous row of float64 values (Numba).

The choice of activation is one branch per row, taken outside the loop, so every loop
body is straight-line code that LLVM can vectorise without ``fastmath``. Two styles:

* `forward_row` and `backward_row` do a channels-first row's whole
  per-element work in one loop per activation (normalize, affine, activation, and the
  output or the backward terms): no intermediate buffers.
* `activate_row` and `activate_row_with_slope` apply the activation to a
  buffer of pre-activations (the channels-last path, whose coefficients change along
  the row).

Each formula is the one `pnref.activations` uses (same branches, same stable forms):

========== ====================================== =========================================
name       f(z)                                   f'(z) (left derivative at a kink)
========== ====================================== =========================================
identity   z                                      1
relu       max(z, 0)                              1 if z > 0 else 0
leaky_relu z if z > 0 else alpha z                1 if z > 0 else alpha
elu        z if z > 0 else alpha expm1(z)         1 if z > 0 else alpha exp(z)
gelu       z Phi(z)                               Phi(z) + z pdf(z)
gelu_tanh  z sigmoid(2u), u = c (z + k z^3)       p + 2 z u' p q, p, q = sigmoid(+-2u)
silu       z sigmoid(z)                           p (1 + z q), p, q = sigmoid(+-z)
softplus   max(z, 0) + log1p(exp(-|z|))           sigmoid(z)
tanh       tanh(z)                                4 e / (1 + e)^2, e = exp(-2|z|)
sigmoid    sigmoid(z)                             sigmoid(z) sigmoid(-z)
========== ====================================== =========================================

NaN in ``z`` gives NaN in ``f`` and in ``f'`` for every activation (as in
`pnref.activations`): piecewise formulas test ``z <= 0`` first so NaN falls through.
"""

from __future__ import annotations

import math

from numba import njit

__all__ = [
    "ACTIVATION_CODES",
    "LANES",
    "activate_row",
    "activate_row_with_slope",
    "backward_row",
    "forward_row",
]

IDENTITY, RELU, LEAKY_RELU, ELU, GELU, GELU_TANH, SILU, SOFTPLUS, TANH, SIGMOID = range(10)

#: Activation name -> the integer code the kernels branch on.
ACTIVATION_CODES: dict[str, int] = {
    "identity": IDENTITY,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "elu": ELU,
    "gelu": GELU,
    "gelu_tanh": GELU_TANH,
    "silu": SILU,
    "softplus": SOFTPLUS,
    "tanh": TANH,
    "sigmoid": SIGMOID,
}

_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_CUBIC = 0.044715
# z * (a factor that vanishes at -inf) uses max(z, -_BIG) so z = -inf gives 0, not NaN.
_BIG = 1.0e100

_JIT = {"cache": True, "error_model": "numpy", "fastmath": False}


@njit(**_JIT)
def _sigmoid(z: float) -> float:
    """1 / (1 + exp(-z)) without overflow: exp is only taken of -|z|."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(**_JIT)
def _normal_cdf(z: float) -> float:
    """Phi(z) = erfc(-z / sqrt 2) / 2: no cancellation in the left tail."""
    return 0.5 * math.erfc(-z * _INV_SQRT_2)


@njit(**_JIT)
def _gelu_tanh_inner(z: float) -> tuple[float, float]:
    """(u, u') of gelu_tanh; z clipped to 1e6 in u, where sigmoid(2u) is already 0 or 1."""
    zc = min(max(z, -1.0e6), 1.0e6)
    u = _SQRT_2_OVER_PI * (zc + _GELU_TANH_CUBIC * zc * zc * zc)
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_CUBIC * zc * zc)
    return u, du


@njit(**_JIT)
def activate_row(z, a, length: int, code: int, alpha: float) -> None:
    """``a[i] = f(z[i])`` for ``i < length`` (``f`` chosen by ``code``).

    Equations
    ---------
    ``a_i = f(z_i)``, formulas in the module docstring.
    """
    if code == IDENTITY:
        for i in range(length):
            a[i] = z[i]
    elif code == RELU:
        for i in range(length):
            a[i] = 0.0 if z[i] <= 0.0 else z[i]  # NaN falls through to z
    elif code == LEAKY_RELU:
        for i in range(length):
            a[i] = alpha * z[i] if z[i] <= 0.0 else z[i]
    elif code == ELU:
        for i in range(length):
            a[i] = alpha * math.expm1(min(z[i], 0.0)) if z[i] <= 0.0 else z[i]
    elif code == GELU:
        for i in range(length):
            a[i] = max(z[i], -_BIG) * _normal_cdf(z[i])
    elif code == GELU_TANH:
        for i in range(length):
            u, _ = _gelu_tanh_inner(z[i])
            a[i] = max(z[i], -_BIG) * _sigmoid(2.0 * u)
    elif code == SILU:
        for i in range(length):
            a[i] = max(z[i], -_BIG) * _sigmoid(z[i])
    elif code == SOFTPLUS:
        for i in range(length):
            a[i] = max(z[i], 0.0) + math.log1p(math.exp(-abs(z[i])))
    elif code == TANH:
        for i in range(length):
            a[i] = math.tanh(z[i])
    else:  # SIGMOID
        for i in range(length):
            a[i] = _sigmoid(z[i])


@njit(**_JIT)
def activate_row_with_slope(z, a, da, length: int, code: int, alpha: float) -> None:
    """``a[i] = f(z[i])`` and ``da[i] = f'(z[i])`` for ``i < length``.

    Equations
    ---------
    ``a_i = f(z_i)``, ``da_i = f'(z_i)`` (left derivative at a kink).
    """
    if code == IDENTITY:
        for i in range(length):
            a[i] = z[i]
            da[i] = 1.0 if z[i] == z[i] else z[i]
    elif code == RELU:
        for i in range(length):
            a[i] = 0.0 if z[i] <= 0.0 else z[i]
            da[i] = 0.0 if z[i] <= 0.0 else (1.0 if z[i] > 0.0 else z[i])
    elif code == LEAKY_RELU:
        for i in range(length):
            a[i] = alpha * z[i] if z[i] <= 0.0 else z[i]
            da[i] = alpha if z[i] <= 0.0 else (1.0 if z[i] > 0.0 else z[i])
    elif code == ELU:
        for i in range(length):
            zneg = min(z[i], 0.0)
            a[i] = alpha * math.expm1(zneg) if z[i] <= 0.0 else z[i]
            da[i] = alpha * math.exp(zneg) if z[i] <= 0.0 else (1.0 if z[i] > 0.0 else z[i])
    elif code == GELU:
        for i in range(length):
            zc = min(max(z[i], -_BIG), _BIG)
            cdf = _normal_cdf(z[i])
            a[i] = zc * cdf
            da[i] = cdf + zc * math.exp(-0.5 * zc * zc) * _INV_SQRT_2PI
    elif code == GELU_TANH:
        for i in range(length):
            zc = min(max(z[i], -_BIG), _BIG)
            u, du = _gelu_tanh_inner(z[i])
            p = _sigmoid(2.0 * u)
            q = _sigmoid(-2.0 * u)
            a[i] = zc * p
            da[i] = p + zc * (2.0 * du * p * q)
    elif code == SILU:
        for i in range(length):
            zc = min(max(z[i], -_BIG), _BIG)
            p = _sigmoid(z[i])
            q = _sigmoid(-z[i])
            a[i] = zc * p
            da[i] = p * (1.0 + zc * q)
    elif code == SOFTPLUS:
        for i in range(length):
            a[i] = max(z[i], 0.0) + math.log1p(math.exp(-abs(z[i])))
            da[i] = _sigmoid(z[i])
    elif code == TANH:
        for i in range(length):
            a[i] = math.tanh(z[i])
            e = math.exp(-2.0 * abs(z[i]))
            da[i] = 4.0 * e / ((1.0 + e) * (1.0 + e))
    else:  # SIGMOID
        for i in range(length):
            p = _sigmoid(z[i])
            a[i] = p
            da[i] = p * _sigmoid(-z[i])


# --------------------------------------------------------------------------- fused rows
# (value, slope) of each activation at one point, inlined into the loops below; the
# same formulas as the buffer loops above.

_INLINE = {"inline": "always", **_JIT}


@njit(**_INLINE)
def _pair_identity(z, alpha):
    return z, (1.0 if z == z else z)


@njit(**_INLINE)
def _pair_relu(z, alpha):
    return (0.0 if z <= 0.0 else z), (0.0 if z <= 0.0 else (1.0 if z > 0.0 else z))


@njit(**_INLINE)
def _pair_leaky_relu(z, alpha):
    return ((alpha * z if z <= 0.0 else z),
            (alpha if z <= 0.0 else (1.0 if z > 0.0 else z)))


@njit(**_INLINE)
def _pair_elu(z, alpha):
    zneg = min(z, 0.0)
    return ((alpha * math.expm1(zneg) if z <= 0.0 else z),
            (alpha * math.exp(zneg) if z <= 0.0 else (1.0 if z > 0.0 else z)))


@njit(**_INLINE)
def _pair_gelu(z, alpha):
    zc = min(max(z, -_BIG), _BIG)
    cdf = _normal_cdf(z)
    return zc * cdf, cdf + zc * math.exp(-0.5 * zc * zc) * _INV_SQRT_2PI


@njit(**_INLINE)
def _pair_gelu_tanh(z, alpha):
    zc = min(max(z, -_BIG), _BIG)
    u, du = _gelu_tanh_inner(z)
    p = _sigmoid(2.0 * u)
    q = _sigmoid(-2.0 * u)
    return zc * p, p + zc * (2.0 * du * p * q)


@njit(**_INLINE)
def _pair_silu(z, alpha):
    zc = min(max(z, -_BIG), _BIG)
    p = _sigmoid(z)
    return zc * p, p * (1.0 + zc * _sigmoid(-z))


@njit(**_INLINE)
def _pair_softplus(z, alpha):
    return max(z, 0.0) + math.log1p(math.exp(-abs(z))), _sigmoid(z)


@njit(**_INLINE)
def _pair_tanh(z, alpha):
    e = math.exp(-2.0 * abs(z))
    return math.tanh(z), 4.0 * e / ((1.0 + e) * (1.0 + e))


@njit(**_INLINE)
def _pair_sigmoid(z, alpha):
    p = _sigmoid(z)
    return p, p * _sigmoid(-z)


@njit(**_INLINE)
def _forward_element(out, i, a, mu, rho):
    out[i] = (a - mu) * rho


@njit(**_JIT)
def forward_row(code, alpha, row, out, length, m, gr, b, mu, rho) -> None:
    """One channels-first row of the forward, in one loop.

    ``gr`` is the product ``g r`` of the channel's scale and inverse standard deviation
    (one multiplication per element fewer than ``g ((row_i - m) r)``).

    Equations
    ---------
    ``out_i = (f((row_i - m) gr + b) - mu) rho`` for ``i < length``.
    """
    if code == IDENTITY:
        for i in range(length):
            _forward_element(out, i, _pair_identity((row[i] - m) * gr + b, alpha)[0], mu, rho)
    elif code == RELU:
        for i in range(length):
            _forward_element(out, i, _pair_relu((row[i] - m) * gr + b, alpha)[0], mu, rho)
    elif code == LEAKY_RELU:
        for i in range(length):
            _forward_element(out, i, _pair_leaky_relu((row[i] - m) * gr + b, alpha)[0], mu,
                             rho)
    elif code == ELU:
        for i in range(length):
            _forward_element(out, i, _pair_elu((row[i] - m) * gr + b, alpha)[0], mu, rho)
    elif code == GELU:
        for i in range(length):
            _forward_element(out, i, _pair_gelu((row[i] - m) * gr + b, alpha)[0], mu, rho)
    elif code == GELU_TANH:
        for i in range(length):
            _forward_element(out, i, _pair_gelu_tanh((row[i] - m) * gr + b, alpha)[0], mu,
                             rho)
    elif code == SILU:
        for i in range(length):
            _forward_element(out, i, _pair_silu((row[i] - m) * gr + b, alpha)[0], mu, rho)
    elif code == SOFTPLUS:
        for i in range(length):
            _forward_element(out, i, _pair_softplus((row[i] - m) * gr + b, alpha)[0], mu,
                             rho)
    elif code == TANH:
        for i in range(length):
            _forward_element(out, i, _pair_tanh((row[i] - m) * gr + b, alpha)[0], mu, rho)
    else:  # SIGMOID
        for i in range(length):
            _forward_element(out, i, _pair_sigmoid((row[i] - m) * gr + b, alpha)[0], mu,
                             rho)


#: Accumulator lanes of `backward_row`: independent running sums, so that no addition waits
#: for the previous one. LLVM unrolls the loop over a block of LANES elements and keeps it
#: scalar; 64 lanes are vectorised but were not faster (docs/performance.md).
LANES = 16


@njit(**_INLINE)
def _lane_element(k, i, deviation, pair, d, grho, mu, scaled_t, s_dout, s_centered, s_t,
                  s_tx):
    a, da = pair
    t = d * da
    scaled_t[i] = grho * t
    s_dout[k] += d
    s_centered[k] += d * (a - mu)
    s_t[k] += t
    s_tx[k] += t * deviation


@njit(**_JIT)
def backward_row(code, alpha, row, drow, length, m, gr, b, mu, grho, scaled_t, s_dout,
                 s_centered, s_t, s_tx) -> None:
    """Per-element backward terms of one channels-first row, summed into lanes, in float64.

    With the deviation ``e = row - m``, ``a, a' = f, f'(e gr + b)`` (``gr = g r``) and
    ``t = drow a'``: writes ``scaled_t = grho t`` (``grho = g rho``) and adds element ``i``
    of ``drow``, ``drow (a - mu)``, ``t`` and ``t e`` to lane ``i mod LANES`` of
    ``s_dout``, ``s_centered``, ``s_t``, ``s_tx`` (float64 arrays of length LANES, which
    the caller zeroes and finally folds in a fixed order). The channel constants ``rho``
    and ``rho r`` are left out of the sums (the caller multiplies them in once). Elements
    go to their lanes in increasing ``i``: the sums do not depend on anything but the data.

    Equations
    ---------
    ``t_i = drow_i f'(e_i gr + b)``, ``e_i = row_i - m``.
    """
    body = length - length % LANES
    if code == IDENTITY:
        for start in range(0, body, LANES):
            for k in range(LANES):
                i = start + k
                e = row[i] - m
                _lane_element(k, i, e, _pair_identity(e * gr + b, alpha), drow[i], grho, mu,
                              scaled_t, s_dout, s_centered, s_t, s_tx)
        for i in range(body, length):
            e = row[i] - m
            _lane_element(i - body, i, e, _pair_identity(e * gr + b, alpha), drow[i], grho, mu,
                          scaled_t, s_dout, s_centered, s_t, s_tx)
    elif code == RELU:
        for start in range(0, body, LANES):
            for k in range(LANES):
                i = start + k
                e = row[i] - m
                _lane_element(k, i, e, _pair_relu(e * gr + b, alpha), drow[i], grho, mu,
                              scaled_t, s_dout, s_centered, s_t, s_tx)
        for i in range(body, length):
            e = row[i] - m
            _lane_element(i - body, i, e, _pair_relu(e * gr + b, alpha), drow[i], grho, mu,
                          scaled_t, s_dout, s_centered, s_t, s_tx)
    elif code == LEAKY_RELU:
        for start in range(0, body, LANES):
            for k in range(LANES):
                i = start + k
                e = row[i] - m
                _lane_element(k, i, e, _pair_leaky_relu(e * gr + b, alpha), drow[i], grho, mu,
                              scaled_t, s_dout, s_centered, s_t, s_tx)
        for i in range(body, length):
            e = row[i] - m
            _lane_element(i - body, i, e, _pair_leaky_relu(e * gr + b, alpha), drow[i], grho, mu,
                          scaled_t, s_dout, s_centered, s_t, s_tx)
    elif code == ELU:
        for start in range(0, body, LANES):
            for k in range(LANES):
                i = start + k
                e = row[i] - m
                _lane_element(k, i, e, _pair_elu(e * gr + b, alpha), drow[i], grho, mu,
                              scaled_t, s_dout, s_centered, s_t, s_tx)
        for i in range(body, length):
            e = row[i] - m
            _lane_element(i - body, i, e, _pair_elu(e * gr + b, alpha), drow[i], grho, mu,
                          scaled_t, s_dout, s_centered, s_t, s_tx)
    elif code == GELU:
        for start in range(0, body, LANES):
            for k in range(LANES):
                i = start + k
                e = row[i] - m
                _lane_element(k, i, e, _pair_gelu(e * gr + b, alpha), drow[i], grho, mu,
                              scaled_t, s_dout, s_centered, s_t, s_tx)
        for i in range(body, length):
            e = row[i] - m
            _lane_element(i - body, i, e, _pair_gelu(e * gr + b, alpha), drow[i], grho, mu,
                          scaled_t, s_dout, s_centered, s_t, s_tx)
    elif code == GELU_TANH:
        for start in range(0, body, LANES):
            for k in range(LANES):
                i = start + k
                e = row[i] - m
                _lane_element(k, i, e, _pair_gelu_tanh(e * gr + b, alpha), drow[i], grho, mu,
                              scaled_t, s_dout, s_centered, s_t, s_tx)
        for i in range(body, length):
            e = row[i] - m
            _lane_element(i - body, i, e, _pair_gelu_tanh(e * gr + b, alpha), drow[i], grho, mu,
                          scaled_t, s_dout, s_centered, s_t, s_tx)
    elif code == SILU:
        for start in range(0, body, LANES):
            for k in range(LANES):
                i = start + k
                e = row[i] - m
                _lane_element(k, i, e, _pair_silu(e * gr + b, alpha), drow[i], grho, mu,
                              scaled_t, s_dout, s_centered, s_t, s_tx)
        for i in range(body, length):
            e = row[i] - m
            _lane_element(i - body, i, e, _pair_silu(e * gr + b, alpha), drow[i], grho, mu,
                          scaled_t, s_dout, s_centered, s_t, s_tx)
    elif code == SOFTPLUS:
        for start in range(0, body, LANES):
            for k in range(LANES):
                i = start + k
                e = row[i] - m
                _lane_element(k, i, e, _pair_softplus(e * gr + b, alpha), drow[i], grho, mu,
                              scaled_t, s_dout, s_centered, s_t, s_tx)
        for i in range(body, length):
            e = row[i] - m
            _lane_element(i - body, i, e, _pair_softplus(e * gr + b, alpha), drow[i], grho, mu,
                          scaled_t, s_dout, s_centered, s_t, s_tx)
    elif code == TANH:
        for start in range(0, body, LANES):
            for k in range(LANES):
                i = start + k
                e = row[i] - m
                _lane_element(k, i, e, _pair_tanh(e * gr + b, alpha), drow[i], grho, mu,
                              scaled_t, s_dout, s_centered, s_t, s_tx)
        for i in range(body, length):
            e = row[i] - m
            _lane_element(i - body, i, e, _pair_tanh(e * gr + b, alpha), drow[i], grho, mu,
                          scaled_t, s_dout, s_centered, s_t, s_tx)
    else:  # SIGMOID
        for start in range(0, body, LANES):
            for k in range(LANES):
                i = start + k
                e = row[i] - m
                _lane_element(k, i, e, _pair_sigmoid(e * gr + b, alpha), drow[i], grho, mu,
                              scaled_t, s_dout, s_centered, s_t, s_tx)
        for i in range(body, length):
            e = row[i] - m
            _lane_element(i - body, i, e, _pair_sigmoid(e * gr + b, alpha), drow[i], grho, mu,
                          scaled_t, s_dout, s_centered, s_t, s_tx)
