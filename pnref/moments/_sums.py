"""The evaluation points Z_i = m + s x_i of the quadrature, formed to a few ulp.

(The quantile and Monte Carlo estimators form their points in `pnref.moments._estimator`.)
"""

from __future__ import annotations

import numpy as np

from pnref.moments._special import two_prod

__all__: list[str] = []


def _steps(m: np.ndarray, s: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d = s x and Z = m + s x with Z correct to a few ulp of itself.

    Equations
    ---------
    With s x = p + e exactly (Dekker's two-product), Z = fl(fl(m + p) + e). Near the split
    point x = -m/s, m + p cancels (Sterbenz: exactly), and e carries the rounding of s x that a
    plain m + s x would leave in Z as an error of eps |m| (1e-11 at m = -4e4 against Z = 1).
    """
    d = s * x
    z = m + d
    # Only where m + s x can cancel: |m| > 2 s (|x| up to 40), and both factors small enough
    # for Dekker's product.
    m_b, s_b = np.broadcast_to(m, z.shape), np.broadcast_to(s, z.shape)
    x_b = np.broadcast_to(x, z.shape)
    exact = (np.abs(m_b) > 2.0 * np.abs(s_b)) & (np.abs(s_b) < 1.0e150) & (np.abs(x_b) < 1.0e150)
    if np.any(exact):
        p, e = two_prod(s_b[exact], x_b[exact])
        z[exact] = (m_b[exact] + p) + e
    return d, z
