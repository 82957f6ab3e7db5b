"""Process-level properties of the fast path, each checked in a fresh interpreter.

* ``import pnref`` compiles nothing (the kernels are imported lazily, and even once
  imported they compile only when first called).
* Results are bit-identical for 1 and 2 Numba threads (NUMBA_NUM_THREADS is read once,
  at Numba's start, hence one subprocess per thread count).
* ``pnref warmup`` compiles and caches every kernel and reports the time it took.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

_ENV = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}


def _run(code: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**_ENV, **env}, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_pnref_compiles_nothing():
    out = _run(
        "import sys, pnref\n"
        "print('pnref.kernels' in sys.modules)\n"
        "from pnref.kernels import _fused, _activation_rows, _quantile\n"
        "kernels = [_fused.fused_forward, _fused.fused_backward, _fused._fold_sum,\n"
        "           _activation_rows.activate_row, _activation_rows.forward_row,\n"
        "           _quantile.quantile_moments]\n"
        "print(sum(len(k.signatures) for k in kernels))\n"
    )
    imported, compiled = out.split("\n")[:2]
    assert imported == "False"  # the kernels load on the first backend="numba" call only
    assert compiled == "0"


_DETERMINISM_SCRIPT = """
import hashlib, numpy as np, numba, pnref
from pnref.kernels.fused_blocks import norm_pn_act_saving, norm_pn_act_vjp_saved
rng = np.random.default_rng(11)
digest = hashlib.sha256()
# The last two cases have 2**17 elements, enough to run on every thread (the threshold of
# pnref.kernels.fused_blocks), in units split among the threads.
for norm, groups, axis, dtype, shape in [
        ("gn", 3, 1, np.float32, (4, 6, 9, 7)), ("bn", None, -1, np.float64, (4, 9, 7, 40)),
        ("ln", None, 1, np.float64, (4, 6, 9, 7)), ("bn", None, 1, np.float32, (4, 6, 9, 7)),
        ("gn", 4, 1, np.float32, (8, 16, 32, 32)), ("bn", None, -1, np.float64, (8, 32, 32, 16))]:
    channels = shape[axis]
    x = (rng.normal(size=shape) * 3 + 1).astype(dtype)
    dout = rng.normal(size=shape).astype(dtype)
    params = [rng.normal(size=channels).astype(dtype) for _ in range(4)]
    kw = dict(norm=norm, groups=groups, axis=axis, activation="silu", backend="numba")
    results = [pnref.norm_pn_act(x, *params, **kw)]
    results += pnref.norm_pn_act_vjp(dout, x, *params, **kw)
    results += pnref.norm_act_vjp(dout, x, *params[:2], **kw)
    kw.pop("backend")
    out, saved = norm_pn_act_saving(x, *params, **kw)  # the training step's path
    results += [out, *norm_pn_act_vjp_saved(dout, saved)]
    for r in results:
        digest.update(np.ascontiguousarray(r).tobytes())
print(numba.get_num_threads(), digest.hexdigest())
"""


def test_results_are_bit_identical_for_one_and_two_threads():
    one = _run(_DETERMINISM_SCRIPT, NUMBA_NUM_THREADS="1").split()
    two = _run(_DETERMINISM_SCRIPT, NUMBA_NUM_THREADS="2").split()
    assert one[0] == "1" and two[0] == "2"  # the setting took effect
    assert one[1] == two[1]
    assert len(one[1]) == len(hashlib.sha256().hexdigest())


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_warmup_command_compiles_and_reports_time(jobs):
    """One process, or two compiling halves then a load in the calling process."""
    done = subprocess.run([sys.executable, "-m", "pnref", "warmup", "--jobs", jobs],
                          capture_output=True, text=True, env=_ENV, check=False)
    assert done.returncode == 0, done.stderr
    assert "compiled and cached every kernel in" in done.stdout
    for name in ("forward float32", "backward float32", "forward float64", "backward float64",
                 "quantile moments", "im2col float64", "max pool float64"):
        assert name in done.stdout
    assert ("load" in done.stdout) == (jobs == "2")
    seconds = float(done.stdout.rsplit(" in ", 1)[1].split(" s")[0])
    assert np.isfinite(seconds) and seconds >= 0.0


def test_warmup_rejects_a_bad_job_count():
    from pnref.kernels import warmup

    with pytest.raises(ValueError, match="jobs must be a positive int"):
        warmup(jobs=0)
