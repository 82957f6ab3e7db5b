"""Time the fused Numba block against the NumPy reference, PyTorch eager and the memory floor.

    python benchmarks/bench_kernels.py               # both cases, medians of repeated calls
    python benchmarks/bench_kernels.py --repeats 41  # more repeats for a noisy machine
    python benchmarks/bench_kernels.py --threads 1   # Numba and torch on one thread each

Case: group norm (8 groups, no affine) -> PN-Act (ReLU, quantile proxy moments, n = 200,
eps = 0.03), float32, channels-first; once at (32, 64, 32, 32) and once at a
training-sized (8, 32, 8, 8), where per-call overhead dominates.

Rows:

1. ``numba``: ``pnref.norm_pn_act(..., backend="numba")`` and ``norm_pn_act_vjp``.
2. ``numpy``: the reference (``backend="numpy"``).
3. ``torch``: PyTorch on the CPU, eager, as a user would write it:
   ``F.group_norm`` + affine + ``relu`` + the proxy moments as torch ops; forward under
   ``torch.no_grad()``, forward + backward with autograd. Skipped if torch is missing.
4. ``floor``: ``numpy.copyto`` of an array the size of x: one read and one write, the
   forward's minimum memory traffic. The forward + backward floor is 2.5 copies (forward:
   read x, write out; backward: read x and dout, write dx).

"forward + backward" is one forward call plus one VJP call (the VJP recomputes what it
needs from x). Each time is the median of ``--repeats`` calls after two warm-up calls.
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


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    function()
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_inputs(shape: tuple[int, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    channels = shape[1]
    x = rng.normal(size=shape).astype(np.float32)
    dout = rng.normal(size=shape).astype(np.float32)
    params = [(rng.normal(size=channels) * 0.1 + (1.0 if i == 0 else 0.0)).astype(np.float32)
              for i in range(4)]
    return x, dout, params


def pnref_timings(x, dout, params, backend: str, repeats: int) -> tuple[float, float]:
    kw = {"norm": "gn", "groups": GROUPS, "activation": "relu", "eps": EPS,
          "method": "quantile", "n": N_POINTS, "norm_eps": NORM_EPS, "backend": backend}

    def forward():
        return pnref.norm_pn_act(x, *params, **kw)

    def forward_backward():
        pnref.norm_pn_act(x, *params, **kw)
        return pnref.norm_pn_act_vjp(dout, x, *params, **kw)

    return median_seconds(forward, repeats), median_seconds(forward_backward, repeats)


def torch_timings(x, dout, params, repeats: int) -> tuple[float, float] | None:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    from scipy.special import erfinv

    # The official quantile points, in float64 then rounded (see /work/shared/README.md).
    i = np.arange(N_POINTS)
    points = torch.from_numpy((np.sqrt(2.0) * erfinv(2.0 * (i + 0.5) / N_POINTS - 1.0))
                              .astype(np.float32))
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


def floor_timings(x, repeats: int) -> tuple[float, float]:
    destination = np.empty_like(x)
    copy = median_seconds(lambda: np.copyto(destination, x), repeats)
    return copy, 2.5 * copy


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def run_case(shape: tuple[int, ...], repeats: int) -> None:
    x, dout, params = make_inputs(shape)
    rows: dict[str, tuple[float, float] | None] = {}
    rows["numba (fused kernels)"] = pnref_timings(x, dout, params, "numba", repeats)
    rows["numpy (reference)"] = pnref_timings(x, dout, params, "numpy", max(3, repeats // 4))
    rows["torch eager (CPU)"] = torch_timings(x, dout, params, repeats)
    rows["memory floor (copyto)"] = floor_timings(x, repeats)

    fast_fwd, fast_fb = rows["numba (fused kernels)"]
    print(f"\nx {shape} float32, GN {GROUPS} groups, ReLU, PN quantile n={N_POINTS}; "
          f"load average before: {load_average()}")
    print(f"{'row':<24}{'forward ms':>12}{'fwd+bwd ms':>12}{'fwd / numba':>13}"
          f"{'f+b / numba':>13}")
    for name, timing in rows.items():
        if timing is None:
            print(f"{name:<24}  skipped: torch is not installed")
            continue
        fwd, fb = timing
        print(f"{name:<24}{fwd * 1e3:>12.3f}{fb * 1e3:>12.3f}{fwd / fast_fwd:>13.2f}"
              f"{fb / fast_fb:>13.2f}")
    floor_fwd, floor_fb = rows["memory floor (copyto)"]
    print(f"numba / floor: forward {fast_fwd / floor_fwd:.2f}x (target <= 2.5), "
          f"forward + backward {fast_fb / floor_fb:.2f}x (target <= 3)")
    if rows["torch eager (CPU)"] is not None:
        print(f"torch / numba, forward + backward: "
              f"{rows['torch eager (CPU)'][1] / fast_fb:.1f}x (target >= 15)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21, help="timed calls per median")
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

    warmup()
    print(f"kernel warm-up (compile or load from cache): {time.perf_counter() - start:.2f} s")
    run_case((32, 64, 32, 32), args.repeats)
    run_case((8, 32, 8, 8), args.repeats * 5)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
