"""``out=`` of the forward blocks: the same bits as a new array, written where asked.

`pnref.norm_pn_act` and `pnref.norm_act` accept ``out`` as NumPy's functions do. The Numba
kernels write into it directly when its layout is theirs (a C-contiguous array of the
result's dtype that shares no memory with ``x``, or ``x`` itself), and through a new array
otherwise; either way the result must equal the call without ``out`` to the last bit.
"""

from __future__ import annotations

import numpy as np
import pytest

import pnref

BACKENDS = ("numpy", "numba")

# (norm, groups, axis, shape, dtype): channels-first group norm (the kernels' direct
# path), channels-last batch norm (a moved axis: written through a new array), float64 and
# float32.
LAYOUTS = [
    ("gn", 2, 1, (3, 4, 5, 6), np.float32),
    ("gn", 2, 1, (3, 4, 7), np.float64),
    ("bn", None, -1, (6, 5, 4), np.float64),
    ("ln", None, 1, (2, 3, 4, 4), np.float32),
]


def _inputs(shape, dtype, axis, seed=0):
    rng = np.random.default_rng(seed)
    channels = shape[axis]
    x = (rng.normal(size=shape) * 2.0 + 0.5).astype(dtype)
    params = [(rng.normal(size=channels) * 0.3 + (1.0 if k == 0 else 0.0)).astype(dtype)
              for k in range(4)]
    return x, params


def _blocks(norm, groups, axis, backend):
    """(name, call(x, params, **extra)) of both forward blocks with these settings."""
    common = {"norm": norm, "groups": groups, "axis": axis, "backend": backend}

    def pn(x, params, **extra):
        return pnref.norm_pn_act(x, *params, activation="relu", **common, **extra)

    def plain(x, params, **extra):
        return pnref.norm_act(x, params[0], params[1], activation="silu", **common, **extra)

    return [("norm_pn_act", pn), ("norm_act", plain)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("norm", "groups", "axis", "shape", "dtype"), LAYOUTS)
def test_out_holds_the_same_bits_as_a_new_array(backend, norm, groups, axis, shape, dtype):
    x, params = _inputs(shape, dtype, axis)
    for name, call in _blocks(norm, groups, axis, backend):
        want = call(x, params)
        out = np.full(shape, np.nan, dtype=dtype)
        got = call(x, params, out=out)
        assert got is out, name
        np.testing.assert_array_equal(out, want, err_msg=name)
        # a strided out (every other entry of a bigger buffer): through a new array
        buffer = np.full(shape[:-1] + (2 * shape[-1],), np.nan, dtype=dtype)
        strided = buffer[..., ::2]
        assert call(x, params, out=strided) is strided
        np.testing.assert_array_equal(strided, want, err_msg=name)
        assert np.isnan(buffer[..., 1::2]).all(), name  # nothing written between


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("norm", "groups", "axis", "shape", "dtype"), LAYOUTS)
def test_out_may_be_x_or_overlap_it(backend, norm, groups, axis, shape, dtype):
    x, params = _inputs(shape, dtype, axis, seed=1)
    for name, call in _blocks(norm, groups, axis, backend):
        want = call(x, params)
        in_place = x.copy()
        assert call(in_place, params, out=in_place) is in_place
        np.testing.assert_array_equal(in_place, want, err_msg=f"{name}, out is x")
        # out a shifted window of the buffer that holds x: every value of x must be read
        # before any is overwritten
        flat = np.concatenate([x.ravel(), np.zeros(7, dtype=dtype)])
        source = flat[:x.size].reshape(shape)
        target = flat[7:].reshape(shape)
        call(source, params, out=target)
        np.testing.assert_array_equal(target, want, err_msg=f"{name}, overlapping out")


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_out_is_rejected_with_its_name(backend):
    x, params = _inputs((2, 4, 5), np.float32, 1)
    call = _blocks("gn", 2, 1, backend)[0][1]
    with pytest.raises(ValueError, match=r"out must have the result's shape \(2, 4, 5\)"):
        call(x, params, out=np.empty((2, 4, 6), dtype=np.float32))
    with pytest.raises(TypeError, match="out must have the result's dtype float32"):
        call(x, params, out=np.empty((2, 4, 5)))  # float64: would hide a float32 result
    read_only = np.empty((2, 4, 5), dtype=np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writable"):
        call(x, params, out=read_only)
    with pytest.raises(TypeError, match="out must be a NumPy ndarray or None, got list"):
        call(x, params, out=[[0.0]])


def test_numba_kernels_write_straight_into_a_contiguous_out(monkeypatch):
    """No output array of x's size is allocated when out has the kernels' layout (what
    saves the allocation and first touch of a new array), and one is without out."""
    x, params = _inputs((2, 4, 5), np.float32, 1)
    call = _blocks("gn", 2, 1, "numba")[0][1]
    call(x, params)  # compiled and warmed before counting
    allocated = []
    real_empty_like = np.empty_like

    def counting_empty_like(a, *args, **kwargs):
        allocated.append(np.size(a))
        return real_empty_like(a, *args, **kwargs)

    monkeypatch.setattr(np, "empty_like", counting_empty_like)
    call(x, params, out=np.empty_like(x))
    assert allocated == [x.size]  # the test's own out, and nothing else of that size
    allocated.clear()
    call(x, params)
    assert allocated == [x.size]  # the kernels' output array
