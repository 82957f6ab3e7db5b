"""The paper's power plots: where the power of the normalized pre-activations goes with depth.

A random ReLU network at initialization (Labatie et al. 2021, Figure 2, top row): at every layer
the normalized pre-activation ``y`` is split into a channel-wise constant part, the variability of
the instance means and the variation within each instance (`power_decomposition`), each as a
share of the total power, for each norm in `NORMS`.

The network, channels-last throughout (``(N, H, W, C)``)::

    x^0            Gaussian-noise images, N(0, 1) i.i.d., ``input_channels`` channels
    pre^l  = conv3x3_circular(x^(l-1), W^l)       He-normal W^l (standardized first for "+WS")
    y^l    = Norm(pre^l)                          no affine inside the norm
    x^l    = relu(gamma^l * y^l + beta^l)         or PN-Act(y^l; gamma^l, beta^l) for "+PN"

with per-channel ``gamma ~ Normal(1, 0.2^2)`` and ``beta ~ Normal(0, 0.2^2)``. One draw of the
inputs, weights, gammas and betas is shared by every norm, so the panels differ only by the norm.
"""

from __future__ import annotations

import csv
import numbers
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from pnref._progress import ProgressBar
from pnref._validation import as_float_array, check_eps, normalize_axis
from pnref.norms import batch_norm, group_norm, instance_norm, layer_norm, weight_standardization
from pnref.pn_act import act, pn_act

__all__ = [
    "NORMS",
    "PART_NAMES",
    "PowerSettings",
    "PowerParts",
    "PowerResult",
    "RandomNetwork",
    "circular_conv3x3",
    "power_decomposition",
    "draw_network",
    "normalized_preactivations",
    "run_power_experiment",
    "write_csv",
    "last_layer_table",
    "plot_power",
    "run_and_save",
]

#: The norms compared, in panel order. "+PN" replaces the ReLU by PN-Act; "+WS" standardizes the
#: convolution weights before use.
NORMS: tuple[str, ...] = ("BN", "IN", "LN", "GN", "LN+PN", "GN+PN", "LN+WS")

#: Column names of the three parts, in stacking order (bottom to top).
PART_NAMES: tuple[str, ...] = ("channel_constant", "instance_mean_variability", "within_instance")

_PART_LABELS = (
    "channel-wise constant",
    "instance-mean variability",
    "within-instance variation",
)


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


@dataclass(frozen=True)
class PowerSettings:
    """Settings of the power-plot experiment (the defaults are the documented run).

    Parameters
    ----------
    width : int, default 128
        Channels C at every layer (the paper uses 1024; 128 keeps the run within minutes).
    depth : int, default 50
        Number of conv -> norm -> activation blocks.
    image_size : int, default 16
        Height and width of the square input images.
    inputs : int, default 64
        Number of input images; BN's batch and the sample for the expectations over x.
    input_channels : int, default 3
        Channels of the Gaussian-noise input images.
    groups : int, default 4
        Groups of GN and GN+PN (the official PN code's GN baseline uses 4); must divide ``width``.
    norm_eps : float, default 1e-5
        eps of every activation norm (BN, IN, LN, GN). Weight standardization keeps its own
        ``pnref.norms.WS_EPS`` (1e-10).
    pn_eps : float, default 0.03
        eps of PN-Act on the proxy variance (the official value).
    gamma_std, beta_std : float, default 0.2
        Standard deviations of gamma ~ Normal(1, gamma_std^2) and beta ~ Normal(0, beta_std^2).
    seed : int, default 0
        Seed of the one NumPy Generator that draws inputs, weights, gammas and betas.
    """

    width: int = 128
    depth: int = 50
    image_size: int = 16
    inputs: int = 64
    input_channels: int = 3
    groups: int = 4
    norm_eps: float = 1e-5
    pn_eps: float = 0.03
    gamma_std: float = 0.2
    beta_std: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("width", "depth", "image_size", "inputs", "input_channels", "groups"):
            _positive_int(getattr(self, name), name)
        if self.width % self.groups:
            raise ValueError(f"groups={self.groups} must divide width={self.width}")
        check_eps(self.norm_eps, "norm_eps")
        check_eps(self.pn_eps, "pn_eps")
        check_eps(self.gamma_std, "gamma_std")
        check_eps(self.beta_std, "beta_std")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise TypeError(f"seed must be an int, got {type(self.seed).__name__}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


def circular_conv3x3(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """3x3 convolution with periodic (circular) boundary conditions, channels-last.

    Parameters
    ----------
    x : ndarray, shape (N, H, W, C_in)
        Real floating input.
    weights : ndarray, shape (C_out, 3, 3, C_in)
        Kernel; ``weights[o, 1, 1, :]`` multiplies the centre pixel.

    Returns
    -------
    out : ndarray, shape (N, H, W, C_out), float64 or the widest dtype of the arguments

    Equations
    ---------
    Cross-correlation (the deep-learning "convolution"), indices modulo H and W:

        out[n, i, j, o] = sum over a, b in {-1, 0, 1} and c of
                          weights[o, a + 1, b + 1, c] * x[n, (i + a) % H, (j + b) % W, c]

    Computed as one matrix product of the 9 circularly shifted copies of ``x`` (im2col) with the
    kernel reshaped to ``(9 * C_in, C_out)``.
    """
    x = as_float_array(x, "x")
    weights = as_float_array(weights, "weights")
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, H, W, C_in), got shape {x.shape}")
    if weights.ndim != 4 or weights.shape[1:3] != (3, 3) or weights.shape[3] != x.shape[3]:
        raise ValueError(
            f"weights must have shape (C_out, 3, 3, {x.shape[3]}) to match x's "
            f"{x.shape[3]} channels, got shape {weights.shape}"
        )
    n, h, w, c_in = x.shape
    c_out = weights.shape[0]
    dtype = np.result_type(x.dtype, weights.dtype)
    wrapped = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="wrap")
    patches = np.empty((n, h, w, 3, 3, c_in), dtype=dtype)
    for a in range(3):
        for b in range(3):
            # wrapped[:, i + a, j + b] == x[:, (i + a - 1) % h, (j + b - 1) % w]
            patches[:, :, :, a, b, :] = wrapped[:, a : a + h, b : b + w, :]
    kernel = weights.reshape(c_out, 9 * c_in).T.astype(dtype, copy=False)
    return (patches.reshape(n * h * w, 9 * c_in) @ kernel).reshape(n, h, w, c_out)


@dataclass(frozen=True)
class PowerParts:
    """The three parts of the power of a normalized pre-activation, averaged over channels.

    ``total`` is computed directly as the mean of ``y**2``, not as the sum of the parts, so
    ``channel_constant + instance_mean_variability + within_instance == total`` is a check.
    """

    channel_constant: float
    instance_mean_variability: float
    within_instance: float
    total: float

    def shares(self) -> tuple[float, float, float]:
        """Each part divided by ``total`` (NaN for all three when ``total`` is 0)."""
        parts = (self.channel_constant, self.instance_mean_variability, self.within_instance)
        if self.total == 0:
            return (float("nan"),) * 3
        return tuple(p / self.total for p in parts)  # type: ignore[return-value]


def power_decomposition(y: np.ndarray, *, axis: int = 1) -> PowerParts:
    """Split the power of ``y`` into channel-wise constant, instance-mean and within-instance parts.

    Parameters
    ----------
    y : ndarray, shape (N, ..., C, ...)
        Real floating array: inputs (instances x) on axis 0, channels on ``axis``, at least one
        spatial axis (the positions alpha). Statistics are in float64 (two-pass).
    axis : int, default 1
        Channel axis: 1 for channels-first, -1 for channels-last. Must not be 0.

    Returns
    -------
    PowerParts
        The three parts and the total, each averaged over channels.

    Equations
    ---------
    For channel c, with mu_c(x) and s2_c(x) the spatial mean and population variance of y in
    channel c for input x, and E_x, Var_x the population mean and variance over the N inputs:

        E_{x,alpha}[ y_c^2 ] = ( E_x mu_c(x) )^2      channel-wise constant part
                             + Var_x mu_c(x)           instance-mean variability
                             + E_x s2_c(x)             within-instance variation

    each averaged over the channels c. The identity is exact (law of total variance, twice).
    """
    y = as_float_array(y, "y")
    if y.ndim < 3:
        raise ValueError(
            f"y must have a batch axis, a channel axis and at least one spatial axis, "
            f"got shape {y.shape}"
        )
    channel_axis = normalize_axis(axis, y.ndim)
    if channel_axis == 0:
        raise ValueError("axis must not be 0: axis 0 holds the inputs")
    if y.shape[0] == 0:
        raise ValueError("y must hold at least one input (axis 0 has length 0)")
    values = np.moveaxis(y, channel_axis, 1).astype(np.float64, copy=False)
    values = values.reshape(values.shape[0], values.shape[1], -1)  # (N, C, positions)
    instance_mean = values.mean(axis=2)  # mu_c(x), (N, C)
    within = ((values - instance_mean[:, :, None]) ** 2).mean(axis=2)  # s2_c(x)
    channel_mean = instance_mean.mean(axis=0)  # E_x mu_c(x), (C,)
    mean_variability = ((instance_mean - channel_mean) ** 2).mean(axis=0)  # Var_x mu_c(x)
    total = (values**2).mean(axis=(0, 2))
    return PowerParts(
        channel_constant=float(np.mean(channel_mean**2)),
        instance_mean_variability=float(np.mean(mean_variability)),
        within_instance=float(np.mean(within.mean(axis=0))),
        total=float(np.mean(total)),
    )


@dataclass(frozen=True)
class RandomNetwork:
    """One draw of the random network: inputs and per-layer parameters (channels-last).

    Attributes
    ----------
    inputs : ndarray, shape (inputs, image_size, image_size, input_channels)
    weights : tuple of ndarray, each (width, 3, 3, C_in) with C_in the previous layer's width
    gammas, betas : ndarray, shape (depth, width)
    """

    inputs: np.ndarray
    weights: tuple[np.ndarray, ...]
    gammas: np.ndarray
    betas: np.ndarray


def draw_network(settings: PowerSettings) -> RandomNetwork:
    """Draw the inputs and parameters of the random network from ``settings.seed``.

    Equations
    ---------
    He-normal weights with fan-in 9 * C_in, and the paper's per-channel affine:

        W^l[o, a, b, c] ~ Normal(0, 2 / (9 * C_in)),
        gamma^l_c ~ Normal(1, gamma_std^2),   beta^l_c ~ Normal(0, beta_std^2)
    """
    rng = np.random.default_rng(settings.seed)
    s = settings
    inputs = rng.standard_normal((s.inputs, s.image_size, s.image_size, s.input_channels))
    weights = []
    c_in = s.input_channels
    for _ in range(s.depth):
        he_std = np.sqrt(2.0 / (9 * c_in))
        weights.append(he_std * rng.standard_normal((s.width, 3, 3, c_in)))
        c_in = s.width
    gammas = 1.0 + s.gamma_std * rng.standard_normal((s.depth, s.width))
    betas = s.beta_std * rng.standard_normal((s.depth, s.width))
    return RandomNetwork(inputs=inputs, weights=tuple(weights), gammas=gammas, betas=betas)


def _check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")
    return norm


def _normalize(norm: str, pre: np.ndarray, settings: PowerSettings) -> np.ndarray:
    base = norm.split("+")[0]
    eps = settings.norm_eps
    if base == "BN":
        return batch_norm(pre, eps=eps, axis=-1)
    if base == "IN":
        return instance_norm(pre, eps=eps, axis=-1)
    if base == "LN":
        return layer_norm(pre, eps=eps, axis=-1)
    return group_norm(pre, settings.groups, eps=eps, axis=-1)


def normalized_preactivations(
    network: RandomNetwork, norm: str, settings: PowerSettings
) -> Iterator[np.ndarray]:
    """Run the network with ``norm`` and yield ``y^l`` (norm output, before any affine) per layer.

    Parameters
    ----------
    network : RandomNetwork
        From `draw_network` with the same ``settings``.
    norm : str
        One of `NORMS`.
    settings : PowerSettings

    Yields
    ------
    y : ndarray, shape (inputs, image_size, image_size, width), for l = 1, ..., depth

    Equations
    ---------
        pre^l = conv3x3_circular(x^(l-1), W^l)      (W^l weight-standardized for "+WS")
        y^l   = Norm(pre^l)
        x^l   = relu(gamma^l * y^l + beta^l)         plain norms and "+WS"
        x^l   = PN-Act(y^l; gamma^l, beta^l, gamma~ = beta~ = 0, eps = pn_eps)   "+PN"
    """
    _check_norm(norm)
    x = network.inputs
    for layer, weights in enumerate(network.weights):
        if norm.endswith("+WS"):
            weights = weight_standardization(weights, axis=0)  # its own eps, WS_EPS
        y = _normalize(norm, circular_conv3x3(x, weights), settings)
        yield y
        gamma, beta = network.gammas[layer], network.betas[layer]
        if norm.endswith("+PN"):
            x = pn_act(y, gamma, beta, activation="relu", eps=settings.pn_eps, axis=-1)
        else:
            x = act(y, gamma, beta, activation="relu", axis=-1)


@dataclass(frozen=True)
class PowerResult:
    """The experiment's output.

    Attributes
    ----------
    settings : PowerSettings
    norms : tuple of str
    shares : ndarray, shape (len(norms), depth, 3)
        Shares of `PART_NAMES` at each layer (layer l is row l - 1).
    total_power : ndarray, shape (len(norms), depth)
        Mean of ``y**2`` over inputs, positions and channels.
    seconds : float
        Wall-clock time of the run.
    """

    settings: PowerSettings
    norms: tuple[str, ...]
    shares: np.ndarray
    total_power: np.ndarray
    seconds: float = field(default=0.0)

    def rows(self) -> Iterator[dict[str, object]]:
        """One dict per (norm, layer): the CSV rows."""
        for k, norm in enumerate(self.norms):
            for layer in range(self.shares.shape[1]):
                row: dict[str, object] = {"norm": norm, "layer": layer + 1}
                for name, value in zip(PART_NAMES, self.shares[k, layer], strict=True):
                    row[name] = float(value)
                row["total_power"] = float(self.total_power[k, layer])
                yield row


def run_power_experiment(
    settings: PowerSettings | None = None,
    norms: Sequence[str] = NORMS,
    *,
    progress: TextIO | None = None,
) -> PowerResult:
    """Run the random network once per norm and decompose ``y^l`` at every layer.

    Parameters
    ----------
    settings : PowerSettings, optional
        Defaults to ``PowerSettings()``.
    norms : sequence of str, optional
        Which norms to run, each one of `NORMS` (the default: all), no repeats.
    progress : text stream, optional
        Where to draw a progress bar (e.g. ``sys.stderr``); none when absent.

    Returns
    -------
    PowerResult
    """
    settings = PowerSettings() if settings is None else settings
    norms = tuple(_check_norm(n) for n in norms)
    if not norms:
        raise ValueError("norms must name at least one norm")
    if len(set(norms)) != len(norms):
        raise ValueError(f"norms must not repeat a norm, got {norms}")
    start = time.perf_counter()
    network = draw_network(settings)
    shares = np.empty((len(norms), settings.depth, 3))
    total_power = np.empty((len(norms), settings.depth))
    bar = ProgressBar(len(norms) * settings.depth, stream=progress, enabled=progress is not None)
    for k, norm in enumerate(norms):
        for layer, y in enumerate(normalized_preactivations(network, norm, settings)):
            parts = power_decomposition(y, axis=-1)
            shares[k, layer] = parts.shares()
            total_power[k, layer] = parts.total
            bar.update(1, f"{norm:<6} layer {layer + 1:<3}")
    bar.close()
    return PowerResult(
        settings=settings,
        norms=norms,
        shares=shares,
        total_power=total_power,
        seconds=time.perf_counter() - start,
    )


def write_csv(result: PowerResult, path: str | Path) -> Path:
    """Write every share per norm and layer as CSV (header ``norm,layer,<parts>,total_power``)."""
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["norm", "layer", *PART_NAMES, "total_power"])
        writer.writeheader()
        for row in result.rows():
            writer.writerow(
                {k: (f"{v:.9g}" if isinstance(v, float) else v) for k, v in row.items()}
            )
    return path


def last_layer_table(result: PowerResult) -> str:
    """A Markdown table of each norm's shares (in percent) at the last layer."""
    lines = [
        "| norm | " + " | ".join(f"{label} (%)" for label in _PART_LABELS) + " |",
        "|---|---:|---:|---:|",
    ]
    for norm, shares in zip(result.norms, result.shares[:, -1], strict=True):
        lines.append(f"| {norm} | " + " | ".join(f"{100 * v:.3g}" for v in shares) + " |")
    return "\n".join(lines)


def plot_power(result: PowerResult, path: str | Path) -> Path:
    """Save a PNG with one panel per norm: the three shares stacked against depth.

    Each panel's title gives the last layer's shares in percent, in `PART_NAMES` order
    (a part too thin to see in the stack still shows there).

    Needs matplotlib (``pip install 'pnref[plot]'``); raises ImportError naming it otherwise.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the power figure needs matplotlib: pip install 'pnref[plot]' (or pass --no-figure)"
        ) from exc
    path = Path(path)
    panels = len(result.norms)
    columns = min(4, panels + 1)
    rows = -(-(panels + 1) // columns)  # one spare cell for the legend
    fig = Figure(figsize=(3.2 * columns, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False, sharey=True).ravel()
    layers = np.arange(1, result.shares.shape[1] + 1)
    colors = ("#d62728", "#1f77b4", "#bcbd22")
    for ax, norm, shares in zip(axes, result.norms, result.shares, strict=False):
        ax.stackplot(layers, shares.T, colors=colors, labels=_PART_LABELS, alpha=0.9)
        last = " / ".join(f"{100 * share:.1f}" for share in shares[-1])
        ax.set_title(f"{norm}\nlast layer: {last} %", fontsize=10)
        ax.set_xlim(layers[0], layers[-1])
        ax.set_ylim(0, 1)
        ax.set_xlabel("layer")
    for ax in axes[::columns]:
        ax.set_ylabel("share of power")
    legend_ax = axes[panels]
    legend_ax.axis("off")
    handles, labels = axes[0].get_legend_handles_labels()
    # Listed top to bottom in the order the parts are stacked on screen.
    legend_ax.legend(handles[::-1], labels[::-1], loc="center", frameon=False)
    for ax in axes[panels + 1 :]:
        ax.axis("off")
    s = result.settings
    fig.suptitle(
        f"Power of the normalized pre-activations: width {s.width}, depth {s.depth}, "
        f"{s.image_size}x{s.image_size}, {s.inputs} inputs, seed {s.seed}"
    )
    fig.savefig(path, dpi=110)
    return path


def run_and_save(
    settings: PowerSettings,
    norms: Sequence[str] | None,
    csv_path: str | Path,
    figure_path: str | Path | None,
    *,
    stream: TextIO | None = None,
) -> PowerResult:
    """What ``pnref experiment power`` does: run, write the CSV and figure, print the time.

    ``norms=None`` runs all of `NORMS`; ``figure_path=None`` skips the figure (and the need
    for matplotlib). Progress and the elapsed time go to ``stream`` (default ``sys.stderr``).
    """
    stream = sys.stderr if stream is None else stream
    norms = NORMS if norms is None else tuple(norms)
    if figure_path is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "the power figure needs matplotlib: pip install 'pnref[plot]' "
                "(or pass --no-figure to write the CSV only)"
            ) from exc
    print(f"power experiment: {asdict(settings)}", file=stream)
    result = run_power_experiment(settings, norms, progress=stream)
    print(f"shares at the last layer (layer {settings.depth}):", file=stream)
    print(last_layer_table(result), file=stream)
    print(f"wrote {write_csv(result, csv_path)}", file=stream)
    if figure_path is not None:
        print(f"wrote {plot_power(result, figure_path)}", file=stream)
    print(f"power experiment finished in {result.seconds:.1f} s", file=stream)
    return result
