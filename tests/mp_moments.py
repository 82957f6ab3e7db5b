"""An mpmath reference for the proxy moments, independent of pnref's code (tests and scripts).

``reference(name, alpha, m, s)`` returns (mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds)
of f(Z), Z = m + s X, X ~ Normal(0, 1), as mpmath numbers, by mpmath's adaptive quadrature in
x with every trap of docs/proxy-moments.md ("The oracle") handled:

- offsets: on the side of m (left for m < 0, right otherwise) the integrands are
  F = f - K and D = f' - K' with K, K' the limits of f, f' on that side, written in a form
  that keeps F, D to full relative precision (tanh z + 1 = 2 / (1 + e^(-2z)), elu z + alpha =
  alpha e^z, gelu' - 1 = z phi - Phi(-z), ...). Then mean = K + E F, var = E[(F - E F)^2]
  (two-pass), dmean_dm = K' + E D, dmean_ds = E[D X], dvar_dm = 2 E[(F - E F)(D - E D)],
  dvar_ds = 2 E[(F - E F)(D X - E[D X])] (Stein: E X = 0, so constants drop out);
- breakpoints at x = 0, at the split point c = -m/s, around c on the activation's scale 1/s,
  and at the tilted centres j s (j = 1, 2, 4) where e^(j s x) phi(x) has its mass (the
  exponential tails of the activations meet the Gaussian there);
- mpmath's quad tolerance is absolute: each integrand is divided by its own size (found by
  repeated low-precision passes) before the accurate pass;
- working precision 30 digits plus 2 per decade of s below 1 (f - mean is of size s |f'|, or
  s^2 |f''| at a critical point).
"""

from __future__ import annotations

import mpmath as mp

__all__ = ["reference", "reference_float", "NAMES"]

NAMES = ("identity", "relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "silu", "softplus",
         "tanh", "sigmoid")


def _sig(x):
    return 1 / (1 + mp.exp(-x))


def _parts(name: str, alpha, left: bool):
    """(K, F, K', D) for the side: F(z) = f(z) - K, D(z) = f'(z) - K'."""
    if name == "identity":
        return 0, (lambda z: z), 1, (lambda z: mp.mpf(0))
    if name == "relu":
        if left:
            return 0, (lambda z: z if z > 0 else mp.mpf(0)), 0, (
                lambda z: mp.mpf(1) if z > 0 else mp.mpf(0))
        return 0, (lambda z: z if z > 0 else mp.mpf(0)), 1, (
            lambda z: mp.mpf(0) if z > 0 else mp.mpf(-1))
    if name == "leaky_relu":
        f = lambda z: z if z > 0 else alpha * z  # noqa: E731
        if left:
            return 0, f, alpha, (lambda z: 1 - alpha if z > 0 else mp.mpf(0))
        return 0, f, 1, (lambda z: mp.mpf(0) if z > 0 else alpha - 1)
    if name == "elu":
        if left:
            return -alpha, (lambda z: z + alpha if z > 0 else alpha * mp.exp(z)), 0, (
                lambda z: mp.mpf(1) if z > 0 else alpha * mp.exp(z))
        return 0, (lambda z: z if z > 0 else alpha * mp.expm1(z)), 1, (
            lambda z: mp.mpf(0) if z > 0 else alpha * mp.exp(z) - 1)
    if name == "gelu":
        f = lambda z: z * mp.ncdf(z)  # noqa: E731
        if left:
            return 0, f, 0, (lambda z: mp.ncdf(z) + z * mp.npdf(z))
        return 0, f, 1, (lambda z: z * mp.npdf(z) - mp.ncdf(-z))
    if name == "gelu_tanh":
        k = mp.sqrt(2 / mp.pi)
        c3 = mp.mpf("0.044715")
        u = lambda z: k * (z + c3 * z**3)  # noqa: E731
        du = lambda z: k * (1 + 3 * c3 * z**2)  # noqa: E731
        f = lambda z: z * _sig(2 * u(z))  # noqa: E731
        if left:
            return 0, f, 0, (lambda z: _sig(2 * u(z)) * (1 + 2 * z * du(z) * _sig(-2 * u(z))))
        return 0, f, 1, (
            lambda z: _sig(-2 * u(z)) * (2 * z * du(z) * _sig(2 * u(z)) - 1))
    if name == "silu":
        f = lambda z: z * _sig(z)  # noqa: E731
        if left:
            return 0, f, 0, (lambda z: _sig(z) * (1 + z * _sig(-z)))
        return 0, f, 1, (lambda z: _sig(-z) * (z * _sig(z) - 1))
    if name == "softplus":
        f = lambda z: mp.log1p(mp.exp(z)) if z < 0 else z + mp.log1p(mp.exp(-z))  # noqa: E731
        if left:
            return 0, f, 0, _sig
        return 0, f, 1, (lambda z: -_sig(-z))
    if name == "tanh":
        d = lambda z: 4 / (mp.exp(z) + mp.exp(-z)) ** 2  # noqa: E731
        if left:
            return -1, (lambda z: 2 * _sig(2 * z)), 0, d
        return 1, (lambda z: -2 * _sig(-2 * z)), 0, d
    if name == "sigmoid":
        d = lambda z: _sig(z) * _sig(-z)  # noqa: E731
        if left:
            return 0, _sig, 0, d
        return 1, (lambda z: -_sig(-z)), 0, d
    raise ValueError(name)


def _integrate(g, points):
    """E g(X) with the absolute tolerance of mp.quad turned relative by rescaling."""
    scale = mp.mpf(1)
    dps = mp.mp.dps
    for _ in range(12):
        with mp.workdps(15):
            probe = mp.quad(lambda x, scale=scale: g(x) * mp.npdf(x) / scale, points)
        if probe == 0:
            return mp.mpf(0)
        if mp.mpf("1e-4") < abs(probe) < mp.mpf("1e4"):
            break
        scale *= abs(probe)
    mp.mp.dps = dps
    return scale * mp.quad(lambda x: g(x) * mp.npdf(x) / scale, points)


def reference(name: str, alpha, m, s, dps: int = 30):
    """The six moments (mpmath numbers) at (m, s) for activation ``name`` (alpha or None)."""
    with mp.workdps(dps + int(max(0.0, -2.0 * float(mp.log10(s)))) + 5):
        m = mp.mpf(m)
        s = mp.mpf(s)
        alpha = None if alpha is None else mp.mpf(str(alpha))
        left = m < 0
        k, fo, kd, do = _parts(name, alpha, left)
        c = -m / s
        pts = {mp.mpf(0), c}
        for w in (2, 10, 40):
            for p in (c - w / s, c + w / s):
                if abs(p) < 60 and abs(p - c) < 20:
                    pts.add(p)
        for j in (1, 2, 4):
            p = j * s if left else -j * s
            if abs(p) < abs(c) and abs(p) > 3:
                pts.add(p)
        for p in (-8, 8):
            pts.add(mp.mpf(p))
        points = [-mp.inf, *sorted(pts), mp.inf]

        def F(x):
            return fo(m + s * x)

        def D(x):
            return do(m + s * x)

        ef = _integrate(F, points)
        var = _integrate(lambda x: (F(x) - ef) ** 2, points)
        ed = _integrate(D, points)
        edx = _integrate(lambda x: D(x) * x, points)
        dvm = 2 * _integrate(lambda x: (F(x) - ef) * (D(x) - ed), points)
        dvs = 2 * _integrate(lambda x: (F(x) - ef) * (D(x) * x - edx), points)
        if kd != 0:  # Cov(f, f' X) = Cov(F, D X) + K' Cov(F, X)
            dvs += 2 * kd * _integrate(lambda x: (F(x) - ef) * x, points)
        return (k + ef, var, kd + ed, edx, dvm, dvs)


def reference_float(name, alpha, m, s):
    """`reference` rounded to float64."""
    return tuple(float(v) for v in reference(name, alpha, m, s))
