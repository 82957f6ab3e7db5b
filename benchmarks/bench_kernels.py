"""Time the fused Numba block against the NumPy reference, PyTorch (eager and compiled), JAX
and the memory floor.

    python benchmarks/bench_kernels.py               # every case, medians of repeated calls
    python benchmarks/bench_kernels.py --threads 1   # Numba and torch on one thread each
    python benchmarks/bench_kernels.py --skip-dram   # leave out the 128 MiB case
    python benchmarks/bench_kernels.py --skip-numpy  # leave out the (slow) NumPy reference

Case: group norm (8 groups, no affine) -> PN-Act (ReLU, quantile proxy moments, n = 200,
eps = 0.03), float32, channels-first; at (32, 64, 32, 32) (8 MiB, fits a 32 MiB L3), at the
DRAM-bound (32, 64, 128, 128) (128 MiB, four times that L3), and at a training-sized
(8, 32, 8, 8), where per-call overhead dominates.

Rows:

1. ``numba``: ``pnref.norm_pn_act(..., backend="numba")``; forward + backward as a training
   step runs it (``pnref.autograd_ops``): ``norm_pn_act_saving`` then ``norm_pn_act_vjp_saved``,
   whose backward reads the forward's norm statistics, as torch's and JAX's backward read
   their forward's saved tensors.
   ``numba, public VJP``: forward + backward as ``pnref.norm_pn_act`` then
   ``pnref.norm_pn_act_vjp`` (which validates again and recomputes the statistics).
2. ``numpy``: the reference (``backend="numpy"``).
3. ``torch eager``: PyTorch on the CPU as a user would write it: ``F.group_norm`` + affine +
   ``relu`` + the proxy moments as torch ops; forward under ``torch.no_grad()``, forward +
   backward with autograd.
4. ``torch.compile``: the same function through ``torch.compile`` (inductor, CPU).
5. ``jax jit``: the same block in ``jax.numpy``, forward jitted, and forward + ``jax.vjp`` in
   one jitted call.
6. ``floor``: ``numpy.copyto`` of an array the size of x into an existing array: one read
   and one write, the forward's minimum memory traffic. The forward + backward floor is 2.5
   copies (forward: read x, write out; backward: read x and dout, write dx). The targets are
   judged on it. ``floor, new array`` is ``x.copy()``: the same traffic plus what any
   function returning a fresh array pays (the allocation, and the kernel's zeroing of the
   new pages, which dominates for arrays larger than malloc's 32 MiB mmap threshold).

A row whose package is missing (or whose compiler fails) is skipped with the reason printed.
"forward + backward" is one forward call plus one VJP call (the VJP recomputes what it
needs from x). Each time is the median of ``--repeats`` calls after two warm-up calls, as
wall-clock time and as process CPU time (``time.process_time``: on a busy machine it leaves
out the time spent waiting for a core; it adds up every thread of the process, e.g. JAX's).
Never part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

import pnref

GROUPS = 8
N_POINTS = 200
EPS = 0.03
NORM_EPS = 1e-5
#: 128 MiB of float32: four times the 32 MiB L3 of the reference machine, so every pass over
#: x, dout, out and dx goes to DRAM.
DRAM_SHAPE = (32, 64, 128, 128)


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    """Median wall-clock seconds of ``repeats`` calls after two warm-up calls; the median
    process CPU seconds of the same calls go to ``CPU_MEDIANS`` (see `run_case`)."""
    function()
    function()
    times, cpu_times = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - start_cpu)
    CPU_MEDIANS.append(statistics.median(cpu_times))
    return statistics.median(times)


#: The CPU-time medians of the latest `median_seconds` calls, in call order.
CPU_MEDIANS: list[float] = []


def make_inputs(shape: tuple[int, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    channels = shape[1]
    x = rng.normal(size=shape).astype(np.float32)
    dout = rng.normal(size=shape).astype(np.float32)
    params = [(rng.normal(size=channels) * 0.1 + (1.0 if i == 0 else 0.0)).astype(np.float32)
              for i in range(4)]
    return x, dout, params


def pnref_timings(x, dout, params, backend: str, repeats: int, *,
                  saving: bool = False) -> tuple[float, float]:
    """The public calls; with ``saving``, forward + backward through the saving path."""
    kw = {"norm": "gn", "groups": GROUPS, "activation": "relu", "eps": EPS,
          "method": "quantile", "n": N_POINTS, "norm_eps": NORM_EPS, "backend": backend}

    def forward():
        return pnref.norm_pn_act(x, *params, **kw)

    def forward_backward():
        pnref.norm_pn_act(x, *params, **kw)
        return pnref.norm_pn_act_vjp(dout, x, *params, **kw)

    def forward_backward_saving():
        from pnref.kernels.fused_blocks import norm_pn_act_saving, norm_pn_act_vjp_saved

        fast_kw = {k: v for k, v in kw.items() if k != "backend"}
        _, saved = norm_pn_act_saving(x, *params, **fast_kw)
        return norm_pn_act_vjp_saved(dout, saved)

    return median_seconds(forward, repeats), median_seconds(
        forward_backward_saving if saving else forward_backward, repeats)


def _official_points(dtype) -> np.ndarray:
    """The official quantile points, in float64 then rounded (see /work/shared/README.md)."""
    from scipy.special import erfinv

    i = np.arange(N_POINTS)
    return (np.sqrt(2.0) * erfinv(2.0 * (i + 0.5) / N_POINTS - 1.0)).astype(dtype)


def torch_timings(x, dout, params, repeats: int, *, compiled: bool) -> tuple[float, float] | str:
    """Eager PyTorch, or ``torch.compile`` (inductor, CPU) of the same function."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return "torch is not installed (pip install 'pnref[torch]')"

    points = torch.from_numpy(_official_points(np.float32))
    xt = torch.from_numpy(x)
    doutt = torch.from_numpy(dout)
    leaves = [torch.from_numpy(p.copy()) for p in params]

    def block(x_in, gamma, beta, gamma_tilde, beta_tilde):
        channel = (1, -1, 1, 1)
        y = F.group_norm(x_in, GROUPS, eps=NORM_EPS)
        activated = torch.relu(gamma.view(channel) * y + beta.view(channel))
        proxy_y = (1.0 + gamma_tilde)[:, None] * points[None, :] + beta_tilde[:, None]
        proxy = torch.relu(gamma[:, None] * proxy_y + beta[:, None])
        mean = proxy.mean(dim=1)
        var = proxy.var(dim=1, unbiased=False)
        return (activated - mean.view(channel)) * torch.rsqrt(var + EPS).view(channel)

    if compiled:
        try:
            torch._dynamo.reset()
            block = torch.compile(block, backend="inductor", dynamic=False)
            with torch.no_grad():  # compile here, so that a failure is reported as a skip
                block(xt, *leaves)
        except Exception as error:  # noqa: BLE001 - any compiler failure skips the row
            return f"torch.compile failed: {type(error).__name__}: {error}"[:200]

    def forward():
        with torch.no_grad():
            return block(xt, *leaves)

    def forward_backward():
        x_leaf = xt.detach().requires_grad_(True)
        p_leaves = [p.detach().requires_grad_(True) for p in leaves]
        out = block(x_leaf, *p_leaves)
        out.backward(doutt)
        return x_leaf.grad

    return median_seconds(forward, repeats), median_seconds(forward_backward, repeats)


def jax_timings(x, dout, params, repeats: int) -> tuple[float, float] | str:
    """JAX ``jit`` of the same block (forward; forward and ``jax.vjp`` in one jitted call)."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return "jax is not installed (pip install jax)"

    points = jnp.asarray(_official_points(np.float32))

    def block(x_in, gamma, beta, gamma_tilde, beta_tilde):
        n, c = x_in.shape[:2]
        grouped = x_in.reshape(n, GROUPS, -1)
        mean = grouped.mean(axis=2, keepdims=True)
        var = ((grouped - mean) ** 2).mean(axis=2, keepdims=True)
        y = ((grouped - mean) * jax.lax.rsqrt(var + NORM_EPS)).reshape(x_in.shape)
        channel = (1, c, 1, 1)
        activated = jax.nn.relu(gamma.reshape(channel) * y + beta.reshape(channel))
        proxy_y = (1.0 + gamma_tilde)[:, None] * points[None, :] + beta_tilde[:, None]
        proxy = jax.nn.relu(gamma[:, None] * proxy_y + beta[:, None])
        proxy_mean = proxy.mean(axis=1)
        proxy_var = ((proxy - proxy_mean[:, None]) ** 2).mean(axis=1)
        return (activated - proxy_mean.reshape(channel)) * jax.lax.rsqrt(
            proxy_var + EPS).reshape(channel)

    forward_jit = jax.jit(block)

    @jax.jit
    def forward_backward_jit(x_in, cotangent, *block_params):
        out, pullback = jax.vjp(block, x_in, *block_params)
        return out, pullback(cotangent)

    xj, doutj = jnp.asarray(x), jnp.asarray(dout)
    pj = [jnp.asarray(p) for p in params]

    def forward():
        return forward_jit(xj, *pj).block_until_ready()

    def forward_backward():
        return jax.block_until_ready(forward_backward_jit(xj, doutj, *pj))

    return median_seconds(forward, repeats), median_seconds(forward_backward, repeats)


def floor_timings(x, repeats: int, *, new_array: bool = False) -> tuple[float, float]:
    """One copy of x (the forward's floor) and 2.5 of them (forward + backward): into an
    existing array (``copyto``), or into a new one (``x.copy()``)."""
    if new_array:
        copy = median_seconds(x.copy, repeats)
    else:
        destination = np.empty_like(x)
        copy = median_seconds(lambda: np.copyto(destination, x), repeats)
    return copy, 2.5 * copy


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def run_case(shape: tuple[int, ...], repeats: int, reference_repeats: int,
             skip_numpy: bool = False) -> None:
    """Time every row on one case and print wall-clock and CPU-time tables."""
    x, dout, params = make_inputs(shape)
    rows: dict[str, tuple[float, float] | str] = {}
    cpu_rows: dict[str, tuple[float, float]] = {}

    def timed(name, timing):
        rows[name] = timing
        if not isinstance(timing, str):
            cpu_rows[name] = (CPU_MEDIANS[-2], CPU_MEDIANS[-1])

    timed("numba (fused kernels)", pnref_timings(x, dout, params, "numba", repeats,
                                                 saving=True))
    timed("numba, public VJP", pnref_timings(x, dout, params, "numba", repeats))
    if skip_numpy:
        rows["numpy (reference)"] = "--skip-numpy"
    else:
        timed("numpy (reference)", pnref_timings(x, dout, params, "numpy", reference_repeats))
    timed("torch eager (CPU)", torch_timings(x, dout, params, repeats, compiled=False))
    timed("torch.compile (inductor)", torch_timings(x, dout, params, repeats, compiled=True))
    timed("jax jit (CPU)", jax_timings(x, dout, params, repeats))
    timed("memory floor (copyto)", floor_timings(x, repeats))
    # floor_timings measured one copy: its fwd+bwd CPU figure is 2.5 copies as well.
    cpu_rows["memory floor (copyto)"] = (CPU_MEDIANS[-1], 2.5 * CPU_MEDIANS[-1])
    timed("floor, new array (copy)", floor_timings(x, repeats, new_array=True))
    cpu_rows["floor, new array (copy)"] = (CPU_MEDIANS[-1], 2.5 * CPU_MEDIANS[-1])

    print(f"\nx {shape} float32 ({x.nbytes / 2**20:.0f} MiB), GN {GROUPS} groups, ReLU, "
          f"PN quantile n={N_POINTS}; load average before: {load_average()}")
    for label, table in (("wall-clock", rows), ("process CPU time", cpu_rows)):
        fast_fwd, fast_fb = table["numba (fused kernels)"]
        print(f"{label:<26}{'forward ms':>12}{'fwd+bwd ms':>12}{'fwd / numba':>13}"
              f"{'f+b / numba':>13}")
        for name, timing in rows.items():
            if isinstance(timing, str):
                print(f"{name:<26}  skipped: {timing}")
                continue
            fwd, fb = table[name]
            print(f"{name:<26}{fwd * 1e3:>12.3f}{fb * 1e3:>12.3f}{fwd / fast_fwd:>13.2f}"
                  f"{fb / fast_fb:>13.2f}")
        for floor in ("memory floor (copyto)", "floor, new array (copy)"):
            floor_fwd, floor_fb = table[floor]
            print(f"  numba / {floor}: forward {fast_fwd / floor_fwd:.2f}x, "
                  f"forward + backward {fast_fb / floor_fb:.2f}x")
        for peer in ("torch eager (CPU)", "torch.compile (inductor)", "jax jit (CPU)"):
            if peer in table:
                print(f"  {peer} / numba: forward {table[peer][0] / fast_fwd:.2f}x, "
                      f"forward + backward {table[peer][1] / fast_fb:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21, help="timed calls per median")
    parser.add_argument("--skip-dram", action="store_true",
                        help=f"leave out the DRAM-bound case {DRAM_SHAPE}")
    parser.add_argument("--skip-numpy", action="store_true",
                        help="leave out the NumPy reference rows (minutes on the 128 MiB case)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for Numba and torch (default: their defaults, all cores)")
    args = parser.parse_args()
    import numba

    if args.threads is not None:
        numba.set_num_threads(args.threads)

    try:
        import torch

        if args.threads is not None:
            torch.set_num_threads(args.threads)
        torch_note = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        torch_note = "torch not installed"
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"numpy {np.__version__}, numba {numba.__version__} "
          f"({numba.get_num_threads()} threads), {torch_note}")
    start = time.perf_counter()
    from pnref.kernels import warmup

    warmup(jobs=1)
    print(f"kernel warm-up (compile or load from cache): {time.perf_counter() - start:.2f} s")
    run_case((32, 64, 32, 32), args.repeats, max(3, args.repeats // 4), args.skip_numpy)
    if not args.skip_dram:
        run_case(DRAM_SHAPE, max(5, args.repeats // 3), 3, args.skip_numpy)
    run_case((8, 32, 8, 8), args.repeats * 5, args.repeats, args.skip_numpy)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
