"""One training step (forward + backward) of the small CNN at batch 32: pnref against PyTorch.

    python benchmarks/bench_training.py [--norm gn+pn] [--image-size 8] [--widths 16 32]

Times the gradient step of `pnref.nn.train` (``value_and_grad_of_params``) of the softmax
cross-entropy of :class:`pnref.nn.CNN`
(NumPy blocks, and the Numba blocks), and, when PyTorch is installed, the same network
written with ``torch.nn.functional`` on the CPU (GroupNorm / LayerNorm without affine
followed by a PN-Act written in torch from the same 200 quantiles). Both sides run on one
thread (BLAS limited through threadpoolctl when installed, ``numba.set_num_threads(1)``,
``torch.set_num_threads(1)``),
in float64. The contenders are timed in interleaved rounds (one step of each per round, so a
shared machine's changing load hits all of them alike); prints the median of ``--repeats``
rounds after ``--warmup`` steps of each, and the ratio pnref / PyTorch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numba
import numpy as np
from scipy.special import erfinv

from pnref.nn import CNN, softmax_cross_entropy
from pnref.nn.flat_params import value_and_grad_of_params
from pnref.nn.train import single_threaded_blas


def _interleaved_medians(steps: dict, warmup: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Median wall-clock and CPU seconds of each step, in interleaved rounds.

    One call of each step per round: on a shared machine the load drifts during a run, and
    interleaving exposes every contender to the same drift. Every contender runs on the
    calling thread alone, so its CPU time (``time.thread_time``) leaves out the time spent
    waiting for a core, which the wall-clock time of a busy machine includes.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start, start_cpu = time.perf_counter(), time.thread_time()
            step()
            times[name].append((time.perf_counter() - start, time.thread_time() - start_cpu))
    return {name: (statistics.median(t[0] for t in values),
                   statistics.median(t[1] for t in values))
            for name, values in times.items()}


def pnref_step(model: CNN, params, state, x, y):
    def loss(p):
        return softmax_cross_entropy(model.apply(p, state, x, training=True)[0], y)

    value_and_grad = value_and_grad_of_params(loss)  # what pnref.nn.train uses
    return lambda: value_and_grad(params)


def torch_step(params, x, y, norm: str, groups: int, widths):  # pragma: no cover - optional
    import torch
    import torch.nn.functional as F

    kind = norm.split("+")[0]
    pn = norm.endswith("+pn")
    quantiles = torch.tensor(
        np.sqrt(2.0) * erfinv(2.0 * (np.arange(200) + 0.5) / 200 - 1.0), dtype=torch.float64)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tx = torch.tensor(x)
    ty = torch.tensor(y)

    def norm_act(h, prefix):
        g = 1 if kind == "ln" else groups
        h = F.group_norm(h, g, eps=1e-5)
        gamma, beta = tp[f"{prefix}.gamma"], tp[f"{prefix}.beta"]
        z = F.relu(gamma[:, None, None] * h + beta[:, None, None])
        if not pn:
            return z
        proxy = (1 + tp[f"{prefix}.gamma_tilde"])[:, None] * quantiles + tp[
            f"{prefix}.beta_tilde"][:, None]
        zp = F.relu(gamma[:, None] * proxy + beta[:, None])
        mean = zp.mean(dim=1)
        var = zp.var(dim=1, unbiased=False)
        return (z - mean[:, None, None]) / torch.sqrt(var[:, None, None] + 0.03)

    def step():
        h = tx
        for s in range(len(widths)):
            if s > 0:
                h = F.max_pool2d(h, 2)
            h = F.conv2d(h, tp[f"stage{s}.conv.weight"], padding=1)
            h = norm_act(h, f"stage{s}.norm")
        logits = h.mean(dim=(2, 3)) @ tp["head.weight"] + tp["head.bias"]
        loss = F.cross_entropy(logits, ty)
        grads = torch.autograd.grad(loss, list(tp.values()))
        return loss, grads

    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--norm", default="gn+pn", choices=("gn+pn", "ln+pn", "gn", "ln"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=8)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)

    numba.set_num_threads(1)  # the Numba kernels' prange loops: one thread, like the others
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size, 1, args.image_size, args.image_size))
    y = rng.integers(0, 10, size=args.batch_size)
    steps = {}
    for backend in ("numpy", "numba"):
        model = CNN(in_channels=1, num_classes=10, widths=tuple(args.widths), norm=args.norm,
                    backend=backend)
        params, state = model.init(np.random.default_rng(1))
        steps[f"pnref ({backend} blocks)"] = step = pnref_step(model, params, state, x, y)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(1)
        reference_step = torch_step(params, x, y, args.norm, 4, args.widths)
        steps["PyTorch CPU (float64, 1 thread)"] = reference_step
    with single_threaded_blas():
        results = _interleaved_medians(steps, args.warmup, args.repeats)
        if torch is not None:
            # sanity check: both compute the same loss and gradients
            loss, grads = step()
            torch_loss, torch_grads = reference_step()
            worst = max(
                float(np.max(np.abs(grads[k] - g.numpy())) / np.max(np.abs(g.numpy())))
                for k, g in zip(params, torch_grads, strict=True)
            )
            print(f"loss pnref {loss:.12f}, PyTorch {float(torch_loss.detach()):.12f}; "
                  f"largest relative gradient difference {worst:.1e}")

    print(f"one training step, CNN widths {args.widths}, norm {args.norm}, batch "
          f"{args.batch_size}, {args.image_size}x{args.image_size} images, float64, one thread; "
          f"median of {args.repeats} interleaved rounds; load average {os.getloadavg()[0]:.1f}")
    print(f"  {'':34s} {'wall ms':>9s} {'CPU ms':>9s}")
    for name, (seconds, cpu_seconds) in results.items():
        print(f"  {name:34s} {1e3 * seconds:9.2f} {1e3 * cpu_seconds:9.2f}")
    if torch is None:
        print("  PyTorch is not installed (pip install 'pnref[torch]'): no ratio")
    else:
        reference, reference_cpu = results["PyTorch CPU (float64, 1 thread)"]
        for name, (seconds, cpu_seconds) in results.items():
            if name.startswith("pnref"):
                print(f"  ratio {name} / PyTorch: wall {seconds / reference:.2f}, "
                      f"CPU {cpu_seconds / reference_cpu:.2f}")


if __name__ == "__main__":
    main()
