r"""Fused Numba kernels: norm -> affine -> activation -> proxy normalization.

One forward and one backward kernel serve every block of `pnref.kernels`:
group norm (so layer and instance norm), training-mode batch norm, PN-Act and the plain
affine + activation step (which is PN-Act with proxy mean 0 and inverse proxy std 1).

Data layout
-----------
The caller hands a C-contiguous 3-d view ``x3``: ``(N, C, S)`` channels-first or
``(N, S, C)`` channels-last, ``S`` the product of the spatial sizes.

Units of work
-------------
The work is split into independent *units*: a block of ``unit_samples`` samples times a
block of ``unit_channels`` channels. Inside a unit, every run of ``channels_per_stat``
channels shares one mean and one variance (a *statistics group*).

========================= ============== =============== ===================
norm                      unit_samples   unit_channels   channels_per_stat
========================= ============== =============== ===================
group norm, G groups      1              C / G           C / G
batch norm                N              1 or a block    1
========================= ============== =============== ===================

Units share no statistics. The two drivers run a range of units and release the GIL;
the caller (`pnref.kernels.fused_blocks`) splits the units into contiguous ranges, one
per thread. Every sum inside a unit is accumulated by one thread in a fixed order, and
the per-channel gradient sums each unit produces go to its own row of a partial-sum
array that the caller reduces in a fixed order: the results are bit-identical for any
number of threads. (Threads from Python rather than Numba's ``prange``: a
``parallel=True`` kernel took three times as long to compile, for the same loop.)

Numerics
--------
``fastmath`` is off and ``error_model="numpy"`` (0/0 is NaN, no exception). All
arithmetic is float64 whatever the data dtype. The statistics are those of the corrected
two-pass algorithm, in one pass when that is provably as accurate: the deviations
``d = x - K`` from a shift ``K`` (the mean of the unit's first 64 values) are summed with
their squares, and ``var = (sum d^2 - (sum d)^2 / count) / count``,
``mean = K + sum d / count``. The formula is exact for any ``K``; its rounding error is
that of the two-pass algorithm (where ``K`` is the computed mean) times
``1 + (mean - K)^2 / var``, so the result is kept when ``(mean - K)^2 <= var`` (at most
twice the two-pass error) and otherwise a second pass sums the deviations from the
mean just found, as the two-pass algorithm does (also for NaN or inf data, whose mean is
then the plain sum's). Channels-first units do this; channels-last units make the two
passes (a per-channel shift would need a pass of its own there). A unit is small enough
to stay in cache, so a second pass costs no memory traffic.

Equations
---------
Forward, for statistics group ``t`` of channel ``c``:

.. math::
    \hat x = (x - m_t)\, r_t, \quad r_t = (v_t + \epsilon_n)^{-1/2}, \quad
    a = \phi(\gamma_c \hat x + \beta_c), \quad \mathrm{out} = (a - \mu_c)\, \rho_c

with ``mu_c`` the proxy mean and ``rho_c`` the inverse proxy std (0 and 1 for the plain
block). Backward, with ``t = dout * rho_c * phi'(gamma_c xhat + beta_c)``:

.. math::
    d\beta_c = \textstyle\sum t, \quad d\gamma_c = \sum t \hat x, \quad
    dx = r_t\big(\gamma_c t - \overline{\gamma t} - \hat x\, \overline{\gamma t \hat x}\big)

(bars: means over the statistics group), plus the two sums the proxy-moment path needs,
``sum dout`` and ``sum dout * (a - mu_c)``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pnref.kernels._activation_rows import (
    LANES,
    activate_row,
    activate_row_with_slope,
    backward_row,
    forward_row,
)

__all__ = ["fused_backward", "fused_forward"]

_JIT = {"cache": True, "error_model": "numpy", "fastmath": False}
# The two drivers release the GIL: the caller runs disjoint ranges of units on threads.
_DRIVER = {"nogil": True, **_JIT}
_TINY = float(np.finfo(np.float64).tiny)


# --------------------------------------------------------------------------- reductions
# Without fastmath LLVM may not reorder a floating-point sum, so a plain ``total += v``
# loop runs at one addition per add-latency. The kernels instead accumulate rows into a
# float64 buffer element by element (independent lanes, vectorised) and finish with
# ``_fold_sum``, a pairwise tree built from elementwise loops: vectorised, in a fixed
# order, and more accurate than a serial sum (error growth log2(length), not length).


@njit(**_JIT)
def _fold_sum(buffer, length: int) -> float:
    """Pairwise sum of ``buffer[:length]`` (overwritten): fold the tail onto the head.

    Folding stops at 16 values, which are then added in order: the short folds would
    cost more in loop set-up than they save.
    """
    while length > 16:
        half = length // 2
        keep = length - half
        head = buffer[:half]  # two views: LLVM then sees two arrays and vectorises
        tail = buffer[keep:keep + half]
        for i in range(half):
            head[i] += tail[i]
        length = keep
    total = 0.0
    for i in range(length):
        total += buffer[i]
    return total


@njit(**_JIT)
def _accumulate_row(buffer, row, length: int) -> None:
    """``buffer[i] += row[i]`` (float64 accumulation of any data dtype)."""
    for i in range(length):
        buffer[i] += row[i]


@njit(**_JIT)
def _accumulate_rows(buffer, rows, length: int) -> None:
    """``buffer[i] += sum over r of rows[r, i]``, four rows at a time (fewer buffer passes)."""
    count = rows.shape[0]
    body = count - count % 4
    for r in range(0, body, 4):
        for i in range(length):
            # Each value widened first: a float32 + float32 sum would round in float32.
            v0, v1 = np.float64(rows[r, i]), np.float64(rows[r + 1, i])
            v2, v3 = np.float64(rows[r + 2, i]), np.float64(rows[r + 3, i])
            buffer[i] += (v0 + v1) + (v2 + v3)
    for r in range(body, count):
        for i in range(length):
            buffer[i] += rows[r, i]


@njit(**_JIT)
def _accumulate_centered_rows(deviation, squares, rows, center: float, length: int) -> None:
    """``deviation[i] += sum_r d`` and ``squares[i] += sum_r d^2``, ``d = rows[r, i] - center``."""
    count = rows.shape[0]
    body = count - count % 4
    for r in range(0, body, 4):
        for i in range(length):
            d0 = rows[r, i] - center
            d1 = rows[r + 1, i] - center
            d2 = rows[r + 2, i] - center
            d3 = rows[r + 3, i] - center
            deviation[i] += (d0 + d1) + (d2 + d3)
            squares[i] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
    for r in range(body, count):
        for i in range(length):
            d0 = rows[r, i] - center
            deviation[i] += d0
            squares[i] += d0 * d0


# --------------------------------------------------------------------------- units


@njit(**_JIT)
def _unit_bounds(unit, channel_blocks, unit_samples, unit_channels, channels):
    """(sample block, n0, n1, c0, c1) of a unit: samples [n0, n1), channels [c0, c1)."""
    sample_block = unit // channel_blocks
    c0 = (unit - sample_block * channel_blocks) * unit_channels
    n0 = sample_block * unit_samples
    return sample_block, n0, n0 + unit_samples, c0, min(c0 + unit_channels, channels)


@njit(**_JIT)
def _rescued_rstd(group, mean: float, count: int, norm_eps: float, rstd: float) -> float:
    """``1 / sqrt(var + norm_eps)`` of ``group`` when squaring its deviations left float64's range.

    Deviations above about 1e154 overflow the sum of squares (``rstd`` 0 or NaN) and, with
    ``norm_eps = 0``, deviations below about 1e-154 underflow it (``rstd`` inf or digits lost).
    Only then (the ``rstd`` passed in is returned unchanged otherwise) the deviations are
    divided by a power of two near their largest magnitude, which is exact, before squaring:
    ``var + eps = scale^2 (mean((d / scale)^2) + eps / scale^2)``. The same rescue as
    ``pnref.norms.core`` applies, so both backends agree there. NaN or inf data keep their
    NaN (no rescue when the largest deviation is not finite).
    """
    if math.isfinite(rstd) and rstd > 0.0 and (norm_eps > 0.0 or 1.0 / (rstd * rstd) >= _TINY):
        return rstd
    largest = 0.0
    for a in range(group.shape[0]):
        for b in range(group.shape[1]):
            for c in range(group.shape[2]):
                d = abs(group[a, b, c] - mean)
                if not d <= largest:  # also takes NaN, which then stops the rescue
                    largest = d
    if not (math.isfinite(largest) and largest > 0.0):
        return rstd
    scale = math.ldexp(1.0, math.frexp(largest)[1])
    squares = 0.0
    for a in range(group.shape[0]):
        for b in range(group.shape[1]):
            for c in range(group.shape[2]):
                d = (group[a, b, c] - mean) / scale
                squares += d * d
    return 1.0 / (scale * math.sqrt(squares / count + (norm_eps / scale) / scale))


#: How many of a unit's first values estimate its shift (`_shift_estimate`).
SHIFT_SAMPLE = 64


@njit(**_JIT)
def _shift_estimate(row, length: int) -> float:
    """Mean of the first ``min(length, SHIFT_SAMPLE)`` values of ``row`` (float64)."""
    count = min(length, SHIFT_SAMPLE)
    total = 0.0
    for i in range(count):
        total += row[i]
    return total / count


@njit(**_JIT)
def _centered_sums(x3, n0, n1, c0, c1, center: float, positions: int, scratch_a, scratch_b):
    """``(sum d, sum d^2)`` over a channels-first unit, ``d = x - center``: rows added into
    the float64 scratch rows ``scratch_a``, ``scratch_b`` (length S), then folded pairwise."""
    scratch_a[:positions] = 0.0
    scratch_b[:positions] = 0.0
    for n in range(n0, n1):
        _accumulate_centered_rows(scratch_a, scratch_b, x3[n, c0:c1], center, positions)
    return _fold_sum(scratch_a, positions), _fold_sum(scratch_b, positions)


@njit(**_JIT)
def _unit_statistics(x3, channels_last, n0, n1, c0, c1, channels_per_stat, norm_eps,
                     channel_mean, channel_rstd, scratch_a, scratch_b):
    """Mean and inverse std of each statistics group of a unit (module docstring).

    Writes, for each channel ``j`` of the unit (``c0 + j``), the mean and
    ``1 / sqrt(var + norm_eps)`` of its statistics group; returns the group size.
    Channels-first units are one statistics group (``c1 - c0 == channels_per_stat``);
    their rows are accumulated into the float64 scratch rows ``scratch_a``,
    ``scratch_b`` (length S) and folded pairwise. Channels-last units keep one
    accumulator per channel (lanes along the contiguous channel axis).
    """
    width = c1 - c0
    k = channels_per_stat
    positions = x3.shape[1] if channels_last else x3.shape[2]
    count = (n1 - n0) * k * positions

    if not channels_last:
        # One pass around a shift (the mean of the unit's first values); a second pass
        # around the mean only when the shift is too far from it (module docstring).
        shift = _shift_estimate(x3[n0, c0], positions)
        d_total, q_total = _centered_sums(x3, n0, n1, c0, c1, shift, positions, scratch_a,
                                          scratch_b)
        offset = d_total / count
        var = (q_total - d_total * d_total / count) / count
        mean = shift + offset
        if not offset * offset <= var:  # also NaN and inf data
            if not math.isfinite(mean):  # non-finite data: the plain mean, as NumPy's
                scratch_a[:positions] = 0.0
                for n in range(n0, n1):
                    _accumulate_rows(scratch_a, x3[n, c0:c1], positions)
                mean = _fold_sum(scratch_a, positions) / count
            # Pass 2 around the mean: the corrected sum of squared deviations.
            d_total, q_total = _centered_sums(x3, n0, n1, c0, c1, mean, positions, scratch_a,
                                              scratch_b)
            var = (q_total - d_total * d_total / count) / count
        if var < 0.0:  # only by rounding; NaN passes through
            var = 0.0
        rstd = 1.0 / math.sqrt(var + norm_eps)
        rstd = _rescued_rstd(x3[n0:n1, c0:c1], mean, count, norm_eps, rstd)
        channel_mean[:width] = mean
        channel_rstd[:width] = rstd
        return count

    # Channels-last. Pass 1: per-channel sums, then one mean per statistics group.
    sums = np.zeros(width)
    for n in range(n0, n1):
        for s in range(positions):
            _accumulate_row(sums, x3[n, s, c0:c1], width)
    for first in range(0, width, k):
        total = 0.0
        for j in range(first, first + k):
            total += sums[j]
        for j in range(first, first + k):
            channel_mean[j] = total / count

    # Pass 2: per-channel sums of deviations and squared deviations.
    deviation = np.zeros(width)
    squares = np.zeros(width)
    for n in range(n0, n1):
        for s in range(positions):
            for j in range(width):
                d = x3[n, s, c0 + j] - channel_mean[j]
                deviation[j] += d
                squares[j] += d * d
    for first in range(0, width, k):
        d_total = 0.0
        q_total = 0.0
        for j in range(first, first + k):
            d_total += deviation[j]
            q_total += squares[j]
        var = (q_total - d_total * d_total / count) / count
        if var < 0.0:  # only by rounding; NaN passes through
            var = 0.0
        rstd = 1.0 / math.sqrt(var + norm_eps)
        rstd = _rescued_rstd(x3[n0:n1, :, c0 + first:c0 + first + k], channel_mean[first],
                             count, norm_eps, rstd)
        for j in range(first, first + k):
            channel_rstd[j] = rstd
    return count


@njit(**_JIT)
def _unit_count(x3, channels_last, unit_samples, unit_channels):
    """Number of units: sample blocks times channel blocks."""
    channels = x3.shape[2] if channels_last else x3.shape[1]
    channel_blocks = (channels + unit_channels - 1) // unit_channels
    return (x3.shape[0] // unit_samples) * channel_blocks, channel_blocks, channels


# --------------------------------------------------------------------------- forward


@njit(**_DRIVER)
def fused_forward(x3, channels_last, unit_samples, unit_channels, channels_per_stat, norm_eps,
                  gamma, beta, proxy_mean, proxy_inv_std, act_code, act_alpha, out3,
                  unit_mean, unit_rstd, first_unit, last_unit):
    """Forward of norm -> affine -> activation -> proxy normalization, into ``out3``.

    Runs the units ``first_unit <= unit < last_unit`` (the caller splits the units among
    threads; units share nothing, so any split gives the same bits).

    Parameters
    ----------
    x3, out3 : ndarray (N, C, S) or (N, S, C), C-contiguous, same dtype (float32/64)
    channels_last : bool
    unit_samples, unit_channels, channels_per_stat : int
        The units of work and statistics groups (module docstring).
    norm_eps : float
    gamma, beta, proxy_mean, proxy_inv_std : float64 ndarray (C,)
    act_code : int, act_alpha : float
        Activation (``ACTIVATION_CODES``) and its parameter.
    unit_mean, unit_rstd : float64 ndarray (N // unit_samples, C)
        Outputs: the mean and inverse standard deviation of each channel's statistics
        group, per sample block (what `fused_backward` can reuse instead of recomputing).
    first_unit, last_unit : int
        The range of units to run.

    Equations
    ---------
    ``out = (phi((x - m_t) (gamma_c r_t) + beta_c) - mu_c) rho_c`` (module docstring).
    """
    _, channel_blocks, channels = _unit_count(x3, channels_last, unit_samples, unit_channels)
    positions = x3.shape[1] if channels_last else x3.shape[2]
    row_length = unit_channels if channels_last else positions
    # Scratch, allocated once for the range of units.
    rows = np.empty((2, row_length))
    pre, activated = rows[0], rows[1]
    scale = np.empty(unit_channels)  # gamma_c r_t of each channel of a unit
    for unit in range(first_unit, last_unit):
        block, n0, n1, c0, c1 = _unit_bounds(unit, channel_blocks, unit_samples, unit_channels,
                                             channels)
        width = c1 - c0
        mean, rstd = unit_mean[block, c0:c1], unit_rstd[block, c0:c1]
        _unit_statistics(x3, channels_last, n0, n1, c0, c1, channels_per_stat, norm_eps,
                         mean, rstd, pre, activated)
        for j in range(width):
            scale[j] = gamma[c0 + j] * rstd[j]
        # Pass 3: pre-activations into a buffer, activation, proxy normalization.
        if channels_last:
            for n in range(n0, n1):
                for s in range(positions):
                    for j in range(width):
                        pre[j] = (x3[n, s, c0 + j] - mean[j]) * scale[j] + beta[c0 + j]
                    activate_row(pre, activated, width, act_code, act_alpha)
                    for j in range(width):
                        out3[n, s, c0 + j] = (activated[j] - proxy_mean[c0 + j]) \
                            * proxy_inv_std[c0 + j]
        else:
            for n in range(n0, n1):
                for c in range(c0, c1):
                    forward_row(act_code, act_alpha, x3[n, c], out3[n, c], positions,
                                mean[c - c0], scale[c - c0], beta[c], proxy_mean[c],
                                proxy_inv_std[c])


# --------------------------------------------------------------------------- backward


@njit(**_DRIVER)
def fused_backward(dout3, x3, channels_last, unit_samples, unit_channels, channels_per_stat,
                   norm_eps, gamma, beta, proxy_mean, proxy_inv_std, act_code, act_alpha,
                   dx3, sum_dout, sum_dout_centered, sum_t, sum_t_xhat, unit_mean, unit_rstd,
                   saved_statistics, first_unit, last_unit):
    """Backward of `fused_forward`: ``dx3`` and per-unit partial channel sums.

    The statistics come from the forward (``saved_statistics``: ``unit_mean`` and
    ``unit_rstd`` as `fused_forward` wrote them) or are recomputed from ``x3`` into those
    arrays, by the same code, so both give the same bits. Pass 3 computes ``phi'`` once
    per element, accumulates the channel sums and keeps ``gamma_c t`` in a float64 scratch
    the size of the unit; pass 4 writes ``dx`` from it, recomputing only ``xhat`` (cheaper
    than storing it). Runs the units ``first_unit <= unit < last_unit``.

    Parameters
    ----------
    dout3, x3, dx3 : ndarray, same layout and dtype as for `fused_forward`
    sum_dout, sum_dout_centered, sum_t, sum_t_xhat : float64 ndarray (N // unit_samples, C)
        Outputs: row ``b`` holds sample block ``b``'s sums of ``dout``,
        ``dout * (a - mu_c)``, ``t`` and ``t * xhat`` per channel; the caller sums the
        rows in order.
    unit_mean, unit_rstd : float64 ndarray (N // unit_samples, C)
        The statistics (read if ``saved_statistics``, else written).
    saved_statistics : bool
    first_unit, last_unit : int

    Equations
    ---------
    ``t = dout rho_c phi'(p)``, ``p = (x - m_t) (gamma_c r_t) + beta_c``;
    ``dx = r_t (gamma_c t - mean_t(gamma t) - xhat mean_t(gamma t xhat))``, evaluated as
    ``r_t ((gamma_c t - mean_t(gamma t)) - (x - m_t) (r_t mean_t(gamma t xhat)))``.
    The per-element sums leave out the channel constants: ``sum dout phi'`` and
    ``sum dout phi' (x - m_t)`` are multiplied by ``rho_c`` and ``rho_c r_t`` once per
    unit.
    """
    _, channel_blocks, channels = _unit_count(x3, channels_last, unit_samples, unit_channels)
    positions = x3.shape[1] if channels_last else x3.shape[2]
    k = channels_per_stat
    row_length = unit_channels if channels_last else positions
    # Scratch, allocated once for the range of units.
    per_channel = np.empty((8, unit_channels))
    rows = np.empty((6, row_length))
    deviation, pre, activated, slope, term_t, term_tx = (rows[0], rows[1], rows[2], rows[3],
                                                         rows[4], rows[5])
    # gamma_c t for every element of a unit, in the unit's own (n, row, i) order.
    scaled_t_all = np.empty((unit_samples * (positions if channels_last else unit_channels),
                             row_length))
    lanes = np.empty((4, LANES))
    for unit in range(first_unit, last_unit):
        block, n0, n1, c0, c1 = _unit_bounds(unit, channel_blocks, unit_samples,
                                             unit_channels, channels)
        width = c1 - c0
        per_channel[:, :] = 0.0
        s_dout, s_centered, s_t, s_tx = (per_channel[0, :width], per_channel[1, :width],
                                         per_channel[2, :width], per_channel[3, :width])
        mean_gt, mean_gtx = per_channel[4, :width], per_channel[5, :width]
        scale, scaled_rho = per_channel[6, :width], per_channel[7, :width]
        mean, rstd = unit_mean[block, c0:c1], unit_rstd[block, c0:c1]
        count = (n1 - n0) * k * positions
        if not saved_statistics:
            _unit_statistics(x3, channels_last, n0, n1, c0, c1, k, norm_eps, mean, rstd,
                             term_t, term_tx)
        for j in range(width):
            scale[j] = gamma[c0 + j] * rstd[j]  # gamma_c r_t
            scaled_rho[j] = gamma[c0 + j] * proxy_inv_std[c0 + j]  # gamma_c rho_c
        scaled_t = scaled_t_all[:(n1 - n0) * (positions if channels_last else width)]

        # Pass 3: phi' once per element; channel sums of dout, dout (a - mu), and (rho
        # and rho r left out until the end of the unit) of t and t xhat.
        if channels_last:
            for n in range(n0, n1):
                for s in range(positions):
                    for j in range(width):
                        deviation[j] = x3[n, s, c0 + j] - mean[j]
                        pre[j] = deviation[j] * scale[j] + beta[c0 + j]
                    activate_row_with_slope(pre, activated, slope, width, act_code, act_alpha)
                    saved = scaled_t[(n - n0) * positions + s]
                    for j in range(width):
                        d = dout3[n, s, c0 + j]
                        t = d * slope[j]
                        saved[j] = scaled_rho[j] * t
                        s_dout[j] += d
                        s_centered[j] += d * (activated[j] - proxy_mean[c0 + j])
                        s_t[j] += t
                        s_tx[j] += t * deviation[j]
        else:
            for n in range(n0, n1):
                for j in range(width):
                    c = c0 + j
                    lanes[:, :] = 0.0
                    backward_row(act_code, act_alpha, x3[n, c], dout3[n, c], positions,
                                 mean[j], scale[j], beta[c], proxy_mean[c], scaled_rho[j],
                                 scaled_t[(n - n0) * width + j], lanes[0], lanes[1], lanes[2],
                                 lanes[3])
                    s_dout[j] += _fold_sum(lanes[0], LANES)
                    s_centered[j] += _fold_sum(lanes[1], LANES)
                    s_t[j] += _fold_sum(lanes[2], LANES)
                    s_tx[j] += _fold_sum(lanes[3], LANES)
        for j in range(width):
            s_t[j] *= proxy_inv_std[c0 + j]
            s_tx[j] *= proxy_inv_std[c0 + j] * rstd[j]

        # Group means of gamma t and gamma t xhat (the norm's backward).
        for first in range(0, width, k):
            total = 0.0
            total_x = 0.0
            for j in range(first, first + k):
                total += gamma[c0 + j] * s_t[j]
                total_x += gamma[c0 + j] * s_tx[j]
            for j in range(first, first + k):
                mean_gt[j] = total / count
                mean_gtx[j] = total_x / count

        # Pass 4: dx = r ((gamma t - mean(gamma t)) - (x - m) (r mean(gamma t xhat))).
        for j in range(width):
            mean_gtx[j] *= rstd[j]
        if channels_last:
            for n in range(n0, n1):
                for s in range(positions):
                    saved = scaled_t[(n - n0) * positions + s]
                    for j in range(width):
                        e = x3[n, s, c0 + j] - mean[j]
                        dx3[n, s, c0 + j] = rstd[j] * ((saved[j] - mean_gt[j]) - e * mean_gtx[j])
        else:
            for n in range(n0, n1):
                for j in range(width):
                    m, r, mg, rmgx = mean[j], rstd[j], mean_gt[j], mean_gtx[j]
                    row = x3[n, c0 + j]
                    dx_row = dx3[n, c0 + j]
                    saved = scaled_t[(n - n0) * width + j]
                    for i in range(positions):
                        dx_row[i] = r * ((saved[i] - mg) - (row[i] - m) * rmgx)

        for j in range(width):
            sum_dout[block, c0 + j] = s_dout[j]
            sum_dout_centered[block, c0 + j] = s_centered[j]
            sum_t[block, c0 + j] = s_t[j]
            sum_t_xhat[block, c0 + j] = s_tx[j]
