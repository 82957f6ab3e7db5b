"""The im2col matrix of a "same"-padded 2-D correlation, written by one Numba loop.

NumPy can build it from a strided view of the padded input, but copying that 6-d view runs
innermost loops as short as the image width (4 to 8 values in the small networks), where
NumPy's per-loop overhead dominates; this kernel writes the matrix row by row without the
padded copy. It only moves values (no arithmetic), so it has no numerics of its own.
"""

from __future__ import annotations

from numba import njit

__all__ = ["im2col"]


@njit(cache=True, error_model="numpy", fastmath=False)
def im2col(x, kh: int, kw: int, columns) -> None:
    """Fill ``columns`` (C KH KW, N H W) with the zero-padded windows of ``x`` (N, C, H, W).

    Equations
    ---------
    ``columns[(c, a, b), (n, i, j)] = x[n, c, i + a - KH // 2, j + b - KW // 2]``, and 0 where
    that index falls outside the image.
    """
    n, c, h, w = x.shape
    ph = kh // 2
    pw = kw // 2
    for ci in range(c):
        for a in range(kh):
            for b in range(kw):
                row = columns[(ci * kh + a) * kw + b]
                j0 = max(0, pw - b)  # the valid output columns j: 0 <= j + b - pw < w
                j1 = min(w, w + pw - b)
                for ni in range(n):
                    for i in range(h):
                        base = (ni * h + i) * w
                        si = i + a - ph
                        if si < 0 or si >= h:
                            for j in range(w):
                                row[base + j] = 0.0
                            continue
                        source = x[ni, ci, si]
                        for j in range(j0):
                            row[base + j] = 0.0
                        for j in range(j0, j1):
                            row[base + j] = source[j + b - pw]
                        for j in range(j1, w):
                            row[base + j] = 0.0
