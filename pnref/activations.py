"""Activation functions with their first and second derivatives, evaluated stably.

``activation(name, **params)`` returns a frozen `Activation` holding

* ``f(z)``, ``df(z)``, ``d2f(z)``: the function and its derivatives, vectorised over arrays;
* ``kinks`` / ``jumps``: the points where ``df`` is discontinuous and the size of each jump
  ``f'(k+) - f'(k-)``;
* ``has_exact``: whether `pnref.moments.exact` has closed-form proxy moments for it.

Conventions (docs/architecture.md, "The activation contract"):

* At a kink ``df`` returns the **left** derivative (what PyTorch's relu / leaky_relu / elu
  backward return at 0) and ``d2f`` the left second derivative (0 for relu).
* Every evaluation is done in float64 and returned in the input's floating dtype.
* NaN propagates: a NaN input gives NaN in ``f``, ``df`` and ``d2f``.
* No evaluation overflows or warns for any finite input: the exponentials are only ever taken
  of non-positive arguments (``expit`` / ``log1p(exp(-|z|))`` forms), and ``gelu_tanh``
  clips its cubic before it could overflow (the result is saturated there anyway).

This module depends on NumPy and SciPy only; it must not import `pnref.moments`
(which imports it).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.special import erfcx, expit, ndtr

from pnref._validation import as_float_array

__all__ = ["ACTIVATIONS", "Activation", "activation"]

# Names with closed-form proxy moments in pnref.moments.exact (kept equal to exact.SUPPORTED;
# a test checks it).
_HAS_EXACT = frozenset({"identity", "relu", "leaky_relu", "elu", "gelu"})

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_HALF_PI = math.sqrt(0.5 * math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_GELU_TANH_CUBIC = 0.044715
# Products z * (a factor that vanishes as z -> +-inf) use z clipped to +-_BIG so that
# z = +-inf gives the limit instead of inf * 0 = NaN; the factors underflow to exactly 0 long
# before |z| = 1e100, so the clip changes no finite result.
_BIG = 1.0e100

ArrayFunction = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- helpers


def _vectorised(kernel: ArrayFunction) -> ArrayFunction:
    """Wrap a float64 kernel: validate, compute in float64, return in the input dtype."""

    def evaluate(z) -> np.ndarray:
        z_in = as_float_array(z, "z")
        z64 = z_in.astype(np.float64, copy=False)
        out = kernel(z64)
        out = np.where(np.isnan(z64), z64, out)  # NaN in -> NaN out, for every piece
        return out.astype(z_in.dtype, copy=False)

    evaluate.__name__ = kernel.__name__
    evaluate.__doc__ = kernel.__doc__
    return evaluate


def _normal_pdf(z: np.ndarray) -> np.ndarray:
    """phi(z) = exp(-z^2/2) / sqrt(2 pi), with z^2 formed exactly.

    z = hi + lo with hi on a 2^-20 grid, so hi^2/2 is exact for |hi| < 2^6 (and phi
    underflows long before that bound matters); z^2/2 = hi^2/2 + lo (hi + z)/2, where the
    second term is tiny and carries only its own rounding. Relative error about 2 ulp at
    every z instead of |z|^2 ulp.
    """
    hi = np.round(z * 1048576.0) / 1048576.0
    lo = z - hi
    with np.errstate(invalid="ignore"):  # inf - inf for z = +-inf; the result is 0 anyway
        tail = np.exp(-0.5 * lo * (hi + z))
    out = np.exp(-0.5 * hi * hi) * np.where(np.isfinite(z), tail, 1.0) * _INV_SQRT_2PI
    return out


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    """Phi(z), accurate to a few ulp also deep in the left tail.

    For z < -1, Phi(z) = phi(z) R(-z) with the Mills ratio R(x) = sqrt(pi/2) erfcx(x/sqrt 2)
    (scipy's ndtr goes through erfc there and loses ~1e-13 relative by z = -35).
    """
    x = np.clip(-z, 1.0, _BIG)  # only used where z < -1
    left = _normal_pdf(-x) * (_SQRT_HALF_PI * erfcx(x * _INV_SQRT_2))
    return np.where(z < -1.0, left, ndtr(z))


def _sigmoid_pair(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sigmoid(x), sigmoid(-x)), each computed directly so neither is 1 - (the other)."""
    return expit(x), expit(-x)


# --------------------------------------------------------------------------- kernels
# Each kernel takes a float64 array and returns a float64 array of the same shape.


def _identity_f(z):
    return z.copy()


def _ones(z):
    return np.ones_like(z)


def _zeros(z):
    return np.zeros_like(z)


def _relu_f(z):
    return np.maximum(z, 0.0)


def _relu_df(z):
    return np.where(z > 0.0, 1.0, 0.0)


def _make_leaky_relu(alpha: float):
    def leaky_relu_f(z):
        return np.where(z > 0.0, z, alpha * z)

    def leaky_relu_df(z):
        return np.where(z > 0.0, 1.0, alpha)

    return leaky_relu_f, leaky_relu_df, _zeros


def _make_elu(alpha: float):
    # alpha * expm1(z) for z <= 0; exp is only taken of min(z, 0) so nothing overflows.
    def elu_f(z):
        return np.where(z > 0.0, z, alpha * np.expm1(np.minimum(z, 0.0)))

    def elu_df(z):
        return np.where(z > 0.0, 1.0, alpha * np.exp(np.minimum(z, 0.0)))

    def elu_d2f(z):
        return np.where(z > 0.0, 0.0, alpha * np.exp(np.minimum(z, 0.0)))

    return elu_f, elu_df, elu_d2f


def _clip(z):
    return np.clip(z, -_BIG, _BIG)


def _gelu_f(z):
    return np.maximum(z, -_BIG) * _normal_cdf(z)


def _gelu_df(z):
    zc = _clip(z)
    return _normal_cdf(z) + zc * _normal_pdf(zc)


def _gelu_d2f(z):
    # d/dz [Phi + z phi] = phi + phi - z^2 phi
    zc = _clip(z)
    return _normal_pdf(zc) * (2.0 - zc * zc)


def _gelu_tanh_parts(z):
    """u, u', u'' and (p, q) = (sigmoid(2u), sigmoid(-2u)) for gelu_tanh.

    z is clipped to |z| <= 1e6 inside u only: there 2u exceeds 1e17, so p and q are
    exactly 0 or 1 in float64 and the clip changes nothing but avoids overflow in z^3.
    """
    zc = np.clip(z, -1.0e6, 1.0e6)
    u = _SQRT_2_OVER_PI * (zc + _GELU_TANH_CUBIC * zc**3)
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_CUBIC * zc * zc)
    d2u = _SQRT_2_OVER_PI * 6.0 * _GELU_TANH_CUBIC * zc
    p, q = _sigmoid_pair(2.0 * u)
    return u, du, d2u, p, q


def _gelu_tanh_f(z):
    # z (1 + tanh u) / 2 == z sigmoid(2u); the sigmoid form does not cancel for z << 0.
    _, _, _, p, _ = _gelu_tanh_parts(z)
    return np.maximum(z, -_BIG) * p


def _gelu_tanh_df(z):
    # f = z g, g = p = sigmoid(2u), g' = 2 u' p q
    _, du, _, p, q = _gelu_tanh_parts(z)
    return p + _clip(z) * (2.0 * du * p * q)


def _gelu_tanh_d2f(z):
    # f'' = 2 g' + z g'', g'' = 2 p q [u'' + 2 u'^2 (q - p)], and q - p = -tanh(u)
    # (evaluated as tanh: q - p loses its relative accuracy for small u)
    u, du, d2u, p, q = _gelu_tanh_parts(z)
    pq = p * q
    g1 = 2.0 * du * pq
    g2 = 2.0 * pq * (d2u - 2.0 * du * du * np.tanh(u))
    return 2.0 * g1 + _clip(z) * g2


def _silu_f(z):
    return np.maximum(z, -_BIG) * expit(z)


def _silu_df(z):
    # sigma(z) (1 + z sigma(-z))
    p, q = _sigmoid_pair(z)
    return p * (1.0 + _clip(z) * q)


def _silu_d2f(z):
    # sigma(z) sigma(-z) (2 + z (sigma(-z) - sigma(z))), sigma(-z) - sigma(z) = -tanh(z/2)
    p, q = _sigmoid_pair(z)
    return p * q * (2.0 - _clip(z) * np.tanh(0.5 * z))


def _softplus_f(z):
    # log(1 + e^z) = max(z, 0) + log1p(e^-|z|)
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def _softplus_df(z):
    return expit(z)


def _sigmoid_df(z):
    p, q = _sigmoid_pair(z)
    return p * q


def _sigmoid_d2f(z):
    # sigma'' = sigma(z) sigma(-z) (sigma(-z) - sigma(z)) = -sigma(z) sigma(-z) tanh(z/2);
    # the tanh form keeps full relative accuracy near z = 0, where q - p cancels.
    p, q = _sigmoid_pair(z)
    return -p * q * np.tanh(0.5 * z)


def _tanh_f(z):
    return np.tanh(z)


def _sech_squared(z):
    # sech^2 z = 4 e^{-2|z|} / (1 + e^{-2|z|})^2: no overflow, no 1 - tanh^2 cancellation.
    e = np.exp(-2.0 * np.abs(_clip(z)))
    return 4.0 * e / (1.0 + e) ** 2


def _tanh_df(z):
    return _sech_squared(z)


def _tanh_d2f(z):
    return -2.0 * np.tanh(z) * _sech_squared(z)


# --------------------------------------------------------------------------- registry


# name -> (default parameters, builder(params) -> (f, df, d2f, kinks, jumps))
def _build_identity(params):
    return _identity_f, _ones, _zeros, (), ()


def _build_relu(params):
    return _relu_f, _relu_df, _zeros, (0.0,), (1.0,)


def _build_leaky_relu(params):
    alpha = params["alpha"]
    f, df, d2f = _make_leaky_relu(alpha)
    jump = 1.0 - alpha
    return f, df, d2f, ((0.0,) if jump != 0.0 else ()), ((jump,) if jump != 0.0 else ())


def _build_elu(params):
    alpha = params["alpha"]
    f, df, d2f = _make_elu(alpha)
    jump = 1.0 - alpha  # f'(0+) = 1, f'(0-) = alpha
    return f, df, d2f, ((0.0,) if jump != 0.0 else ()), ((jump,) if jump != 0.0 else ())


def _build_gelu(params):
    return _gelu_f, _gelu_df, _gelu_d2f, (), ()


def _build_gelu_tanh(params):
    return _gelu_tanh_f, _gelu_tanh_df, _gelu_tanh_d2f, (), ()


def _build_silu(params):
    return _silu_f, _silu_df, _silu_d2f, (), ()


def _build_softplus(params):
    return _softplus_f, _softplus_df, _sigmoid_df, (), ()


def _build_tanh(params):
    return _tanh_f, _tanh_df, _tanh_d2f, (), ()


def _build_sigmoid(params):
    return expit, _sigmoid_df, _sigmoid_d2f, (), ()


_REGISTRY: dict[str, tuple[dict[str, float], Callable]] = {
    "identity": ({}, _build_identity),
    "relu": ({}, _build_relu),
    "leaky_relu": ({"alpha": 0.01}, _build_leaky_relu),
    "elu": ({"alpha": 1.0}, _build_elu),
    "gelu": ({}, _build_gelu),
    "gelu_tanh": ({}, _build_gelu_tanh),
    "silu": ({}, _build_silu),
    "softplus": ({}, _build_softplus),
    "tanh": ({}, _build_tanh),
    "sigmoid": ({}, _build_sigmoid),
}

#: The activation names `activation` knows, in a fixed order.
ACTIVATIONS: tuple[str, ...] = tuple(_REGISTRY)

_ALIASES = {"swish": "silu"}


def _check_alpha(name: str, alpha) -> float:
    """alpha must be a finite real; leaky_relu needs 0 <= alpha <= 1, elu alpha >= 0."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"{name}: alpha must be a real number, got {type(alpha).__name__}")
    alpha = float(alpha)
    if not math.isfinite(alpha):
        raise ValueError(f"{name}: alpha must be finite, got {alpha}")
    if name == "leaky_relu" and not 0.0 <= alpha <= 1.0:
        raise ValueError(f"leaky_relu: alpha must satisfy 0 <= alpha <= 1, got {alpha}")
    if name == "elu" and alpha < 0.0:
        raise ValueError(f"elu: alpha must be >= 0, got {alpha}")
    return alpha


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True, eq=False)
class Activation:
    """An activation function with its derivatives, kinks and jumps.

    Build it with `activation`; two instances are equal when their name and
    parameters are equal.

    Attributes
    ----------
    name : str
        Canonical name (one of `ACTIVATIONS`).
    params : dict
        Parameters with defaults filled in, e.g. ``{"alpha": 0.01}``.
    f, df, d2f : callable
        ``f(z)``, ``f'(z)``, ``f''(z)`` on a real floating array (computed in float64,
        returned in the input dtype). At a kink ``df`` is the left derivative.
    kinks : tuple of float
        Points where ``f'`` jumps.
    jumps : tuple of float
        ``f'(k+) - f'(k-)`` at each kink.
    has_exact : bool
        Whether `pnref.moments.exact` has closed-form proxy moments for it.
    """

    name: str
    params: dict = field(default_factory=dict)
    f: ArrayFunction = field(default=None, repr=False)
    df: ArrayFunction = field(default=None, repr=False)
    d2f: ArrayFunction = field(default=None, repr=False)
    kinks: tuple[float, ...] = ()
    jumps: tuple[float, ...] = ()
    has_exact: bool = False

    def _key(self) -> tuple:
        return (self.name, tuple(sorted(self.params.items())))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Activation):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in sorted(self.params.items()))
        return f"activation({self.name!r}{args})"


def activation(name: str | Activation, **params: float) -> Activation:
    """Look up an activation by name and return it with its derivatives.

    Parameters
    ----------
    name : str or Activation
        One of `ACTIVATIONS`, any case (``"swish"`` is accepted for ``"silu"``). An
        `Activation` is returned as is (no parameters may be given with it).
    **params
        ``alpha`` for ``leaky_relu`` (slope for z <= 0, default 0.01, 0 <= alpha <= 1)
        and ``elu`` (default 1, alpha >= 0). No other activation takes parameters.

    Returns
    -------
    Activation

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones) or an invalid parameter value.
    TypeError
        A parameter the activation does not take, or a parameter of the wrong type.

    Equations
    ---------
    With sigma(x) = 1 / (1 + exp(-x)) and Phi the standard normal cdf::

        identity(z)   = z
        relu(z)       = max(z, 0)
        leaky_relu(z) = z if z > 0 else alpha * z
        elu(z)        = z if z > 0 else alpha * (exp(z) - 1)
        gelu(z)       = z * Phi(z)
        gelu_tanh(z)  = z * sigma(2 u),   u = sqrt(2 / pi) * (z + 0.044715 z^3)
        silu(z)       = z * sigma(z)
        softplus(z)   = log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|))
        tanh(z)       = tanh(z)
        sigmoid(z)    = sigma(z)

    Examples
    --------
    >>> act = activation("leaky_relu", alpha=0.1)
    >>> act.kinks, act.jumps
    ((0.0,), (0.9,))
    """
    if isinstance(name, Activation):
        if params:
            raise TypeError(
                f"activation(): parameters {sorted(params)} cannot be given together with an "
                f"Activation instance ({name!r}); build a new one by name instead"
            )
        return name
    if not isinstance(name, str):
        raise TypeError(
            f"activation(): name must be a str or an Activation, got {type(name).__name__}"
        )
    lowered = name.strip().lower()  # names are case-insensitive: "ReLU" is "relu"
    canonical = _ALIASES.get(lowered, lowered)
    if canonical not in _REGISTRY:
        raise ValueError(
            f"unknown activation {name!r}; known activations: {', '.join(ACTIVATIONS)}"
        )
    defaults, builder = _REGISTRY[canonical]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        accepted = ", ".join(sorted(defaults)) if defaults else "no parameters"
        raise TypeError(
            f"activation {canonical!r} got unexpected parameter(s) {', '.join(unknown)}; "
            f"it accepts: {accepted}"
        )
    resolved = dict(defaults)
    resolved.update(params)
    if "alpha" in resolved:
        resolved["alpha"] = _check_alpha(canonical, resolved["alpha"])
    f, df, d2f, kinks, jumps = builder(resolved)
    return Activation(
        name=canonical,
        params=resolved,
        f=_vectorised(f),
        df=_vectorised(df),
        d2f=_vectorised(d2f),
        kinks=tuple(float(k) for k in kinks),
        jumps=tuple(float(j) for j in jumps),
        has_exact=canonical in _HAS_EXACT,
    )
