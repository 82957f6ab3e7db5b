"""Time the fused Numba block against the NumPy reference, PyTorch (eager and compiled), JAX
and the memory floor.

    python benchmarks/bench_kernels.py               # every case, medians of repeated calls
    python benchmarks/bench_kernels.py --threads 1   # Numba and torch on one thread each
    python benchmarks/bench_kernels.py --skip-dram   # leave out the 128 MiB case
    python benchmarks/bench_kernels.py --skip-numpy  # leave out the (slow) NumPy reference
    python benchmarks/bench_kernels.py --dtype float64   # everyone's arithmetic in float64

Case: group norm (8 groups, no affine) -> PN-Act (ReLU, quantile proxy moments, n = 200,
eps = 0.03), float32, channels-first; at (32, 64, 32, 32) (8 MiB, fits a 32 MiB L3), at the
DRAM-bound (32, 64, 128, 128) (128 MiB, four times that L3), and at a training-sized
(8, 32, 8, 8), where per-call overhead dominates. (Sizes are for float32; ``--dtype
float64`` doubles them. The fused kernels compute in float64 whatever the data's dtype;
torch.compile and JAX compute in the data's dtype, so float64 data compares equal
arithmetic.)

Rows:

1. ``numba``: ``pnref.norm_pn_act(..., backend="numba")``; forward + backward as a training
   step runs it (``pnref.autograd_ops``): ``norm_pn_act_saving`` then ``norm_pn_act_vjp_saved``,
   whose backward reads the forward's norm statistics, as torch's and JAX's backward read
   their forward's saved tensors.
   ``numba, public VJP``: forward + backward as ``pnref.norm_pn_act`` then
   ``pnref.norm_pn_act_vjp`` (which validates again and recomputes the statistics).
   ``numba, forward into out=``: the forward writing into an existing array
   (``out=``), without the allocation and first touch of a new one.
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
   The forward is compared like with like: into an existing array against ``copyto``, and
   returning a new array against ``x.copy()``.

A row whose package is missing (or whose compiler fails) is skipped with the reason printed.
"forward + backward" is one forward call plus one VJP call. The rows are timed in
interleaved rounds (`interleaved_times`): in each round every row runs once untimed and
three times timed, the order rotating from round to round, so that a slow spell of a
shared machine falls on every row alike; each row's figure is the median over rounds, and
the head-to-head ratios are the medians over rounds of the ratio within a round
(`paired_ratio`). JAX runs after the others, in its own rounds (its worker threads keep
spinning after a call and would add to the others' process CPU time); the NumPy reference,
minutes per call on the large case, runs a few single calls at the end. Times are
wall-clock and process CPU time (``time.process_time``: on a busy machine it leaves out
the time spent waiting for a core; it adds up every thread of the process).
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


def interleaved_times(calls: dict[str, Callable[[], object]], rounds: int, block: int = 3,
                      settle: bool = True) -> dict[str, tuple[list[float], list[float]]]:
    """Wall-clock and process-CPU seconds of every call, one figure per call and round.

    Each call runs twice first (compilation, caches). Then, in every round, each call in
    turn (the order rotating by one from round to round) runs once untimed and ``block``
    times timed, and the round's figure is the median of those ``block``. A slow spell of
    a shared machine then falls on every row alike instead of on whichever row was
    running, and the per-round ratios (`paired_ratio`) compare calls made seconds apart;
    the untimed call and the short block let each row find its own steady state (caches,
    the allocator's free memory) after the other rows ran, as in a loop of one operation.
    ``settle=False`` leaves out the untimed call (a single slow row has nothing to settle
    from).
    """
    names = list(calls)
    for name in names:
        calls[name]()
        calls[name]()
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in names}
    for k in range(rounds):
        for name in names[k % len(names):] + names[:k % len(names)]:
            if settle:
                calls[name]()
            wall, cpu = [], []
            for _ in range(block):
                start, start_cpu = time.perf_counter(), time.process_time()
                calls[name]()
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
            times[name][0].append(statistics.median(wall))
            times[name][1].append(statistics.median(cpu))
    return times


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of ``numerator / denominator`` (times from the same round)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def make_inputs(shape: tuple[int, ...], seed: int = 0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    channels = shape[1]
    x = rng.normal(size=shape).astype(dtype)
    dout = rng.normal(size=shape).astype(dtype)
    params = [(rng.normal(size=channels) * 0.1 + (1.0 if i == 0 else 0.0)).astype(dtype)
              for i in range(4)]
    return x, dout, params


_PNREF_OPTIONS = {"norm": "gn", "groups": GROUPS, "activation": "relu", "eps": EPS,
                  "method": "quantile", "n": N_POINTS, "norm_eps": NORM_EPS}


def pnref_forward_into(x, params):
    """The fused forward writing into an existing array (``out=``), the kernels' own
    cost: what the ``copyto`` floor measures for a copy."""
    out = np.empty_like(x)
    out.fill(0.0)  # pages touched once, here
    return lambda: pnref.norm_pn_act(x, *params, **_PNREF_OPTIONS, backend="numba", out=out)


def pnref_calls(x, dout, params, backend: str, *, saving: bool = False):
    """(forward, forward + backward) calls of pnref; with ``saving``, the backward reads
    the forward's statistics (the training-step path)."""
    kw = {**_PNREF_OPTIONS, "backend": backend}

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

    return forward, (forward_backward_saving if saving else forward_backward)


def _official_points(dtype) -> np.ndarray:
    """The official quantile points, in float64 then rounded (see /work/shared/README.md)."""
    from scipy.special import erfinv

    i = np.arange(N_POINTS)
    return (np.sqrt(2.0) * erfinv(2.0 * (i + 0.5) / N_POINTS - 1.0)).astype(dtype)


def torch_calls(x, dout, params, *, compiled: bool):
    """Eager PyTorch, or ``torch.compile`` (inductor, CPU) of the same function."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return "torch is not installed (pip install 'pnref[torch]')"

    points = torch.from_numpy(_official_points(x.dtype))
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

    return forward, forward_backward


def jax_calls(x, dout, params):
    """JAX ``jit`` of the same block (forward; forward and ``jax.vjp`` in one jitted call)."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return "jax is not installed (pip install jax)"

    if x.dtype == np.float64:  # else JAX computes float64 data in float32
        jax.config.update("jax_enable_x64", True)
    points = jnp.asarray(_official_points(x.dtype))

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

    return forward, forward_backward


def floor_calls(x, *, new_array: bool = False):
    """One copy of x (the forward's floor; the forward + backward floor is 2.5 of them):
    into an existing array (``copyto``), or into a new one (``x.copy()``)."""
    if new_array:
        return x.copy
    destination = np.empty_like(x)
    return lambda: np.copyto(destination, x)


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


#: Rows compared head to head with the fused kernels (paired per-round ratios).
PEERS = ("torch eager (CPU)", "torch.compile (inductor)", "jax jit (CPU)")
FLOORS = ("memory floor (copyto)", "floor, new array (copy)")
FAST = "numba (fused kernels)"
INTO = "numba, forward into out="


def run_case(shape: tuple[int, ...], rounds: int, reference_repeats: int,
             skip_numpy: bool = False, dtype=np.float32) -> None:
    """Time every row on one case, interleaved, and print wall-clock and CPU-time tables."""
    x, dout, params = make_inputs(shape, dtype=dtype)
    skipped: dict[str, str] = {}
    pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        FAST: pnref_calls(x, dout, params, "numba", saving=True),
        "numba, public VJP": pnref_calls(x, dout, params, "numba"),
    }
    for name, made in (("torch eager (CPU)", torch_calls(x, dout, params, compiled=False)),
                       ("torch.compile (inductor)", torch_calls(x, dout, params, compiled=True))):
        if isinstance(made, str):
            skipped[name] = made
        else:
            pairs[name] = made
    copies = {FLOORS[0]: floor_calls(x), FLOORS[1]: floor_calls(x, new_array=True)}

    calls: dict[str, Callable[[], object]] = {}
    for name, (forward, forward_backward) in pairs.items():
        calls[name + "|fwd"] = forward
        calls[name + "|f+b"] = forward_backward
    calls[INTO + "|fwd"] = pnref_forward_into(x, params)
    calls.update(copies)
    times = interleaved_times(calls, rounds)
    # JAX last, in its own rounds: XLA's worker threads keep spinning for a while after a
    # call, and the process CPU time of whatever ran next would include their spinning.
    made = jax_calls(x, dout, params)
    if isinstance(made, str):
        skipped["jax jit (CPU)"] = made
    else:
        times.update(interleaved_times({"jax jit (CPU)|fwd": made[0],
                                        "jax jit (CPU)|f+b": made[1]}, rounds))
    if not skip_numpy:  # minutes per call on the large case: a few calls, not interleaved
        forward, forward_backward = pnref_calls(x, dout, params, "numpy")
        times.update(interleaved_times({"numpy (reference)|fwd": forward}, reference_repeats,
                                       block=1, settle=False))
        times.update(interleaved_times({"numpy (reference)|f+b": forward_backward},
                                       reference_repeats, block=1, settle=False))

    def row(name: str, clock: int) -> tuple[list[float], list[float] | None]:
        """(forward, forward + backward) times of a row; a floor's f+b is 2.5 copies;
        the forward into ``out=`` has no f+b."""
        if name in copies:
            return times[name][clock], [2.5 * t for t in times[name][clock]]
        if name == INTO:
            return times[name + "|fwd"][clock], None
        return times[name + "|fwd"][clock], times[name + "|f+b"][clock]

    names = [FAST, INTO, "numba, public VJP", "numpy (reference)", *PEERS, *FLOORS]
    if skip_numpy:
        skipped["numpy (reference)"] = "--skip-numpy"
    print(f"\nx {shape} {x.dtype} ({x.nbytes / 2**20:.0f} MiB), GN {GROUPS} groups, ReLU, "
          f"PN quantile n={N_POINTS}; {rounds} interleaved rounds; "
          f"load average after: {load_average()}")
    for clock, label in ((0, "wall-clock"), (1, "process CPU time")):
        fast_fwd, fast_fb = row(FAST, clock)
        print(f"{label:<26}{'forward ms':>12}{'fwd+bwd ms':>12}{'fwd / numba':>13}"
              f"{'f+b / numba':>13}")
        for name in names:
            if name in skipped:
                print(f"{name:<26}  skipped: {skipped[name]}")
                continue
            fwd, fb = row(name, clock)
            med_fwd = statistics.median(fwd)
            if fb is None:
                print(f"{name:<26}{med_fwd * 1e3:>12.3f}{'-':>12}"
                      f"{med_fwd / statistics.median(fast_fwd):>13.2f}{'-':>13}")
                continue
            med_fb = statistics.median(fb)
            print(f"{name:<26}{med_fwd * 1e3:>12.3f}{med_fb * 1e3:>12.3f}"
                  f"{med_fwd / statistics.median(fast_fwd):>13.2f}"
                  f"{med_fb / statistics.median(fast_fb):>13.2f}")
        print("  paired ratios (median over rounds of the ratio within a round):")
        for floor in FLOORS:
            floor_fwd, floor_fb = row(floor, clock)
            print(f"  numba / {floor}: forward {paired_ratio(fast_fwd, floor_fwd):.2f}x, "
                  f"forward + backward {paired_ratio(fast_fb, floor_fb):.2f}x")
        into_fwd = row(INTO, clock)[0]
        print(f"  like with like: {INTO} / {FLOORS[0]}: forward "
              f"{paired_ratio(into_fwd, row(FLOORS[0], clock)[0]):.2f}x; numba (a new array) "
              f"/ {FLOORS[1]}: forward {paired_ratio(fast_fwd, row(FLOORS[1], clock)[0]):.2f}x")
        for peer in PEERS:
            if peer not in skipped:
                peer_fwd, peer_fb = row(peer, clock)
                print(f"  {peer} / numba: forward {paired_ratio(peer_fwd, fast_fwd):.2f}x, "
                      f"forward + backward {paired_ratio(peer_fb, fast_fb):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21,
                        help="interleaved rounds (timed calls of every row) per median")
    parser.add_argument("--skip-dram", action="store_true",
                        help=f"leave out the DRAM-bound case {DRAM_SHAPE}")
    parser.add_argument("--skip-numpy", action="store_true",
                        help="leave out the NumPy reference rows (minutes on the 128 MiB case)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for Numba and torch (default: their defaults, all cores)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="data dtype (default float32; the kernels compute in float64 "
                             "either way, torch.compile and JAX in the data's dtype)")
    args = parser.parse_args()
    dtype = np.dtype(args.dtype)
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
    run_case((32, 64, 32, 32), args.repeats, max(3, args.repeats // 4), args.skip_numpy, dtype)
    if not args.skip_dram:
        run_case(DRAM_SHAPE, max(5, args.repeats // 3), 3, args.skip_numpy, dtype)
    run_case((8, 32, 8, 8), args.repeats * 5, args.repeats, args.skip_numpy, dtype)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
