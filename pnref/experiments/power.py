"""The paper's power plots: where the power of the normalized pre-activations goes with depth.

A random ReLU network at initialization (Labatie et al. 2021, Figure 2, top row): at every layer
the normalized pre-activation ``y`` is split into a channel-wise constant part, the variability of
the instance means and the variation within each instance (`power_decomposition`), each as a
share of the total power, for each norm in `NORMS`, averaged over several runs, each with fresh
weights and inputs.

The network, channels-last throughout (``(N, H, W, C)``)::

    x^0            input images (`draw_inputs`): random crops of scikit-learn's two sample
                   photographs standardized per channel, the 8x8 digits upscaled, or
                   Gaussian noise N(0, 1) i.i.d.
    pre^l  = conv3x3_circular(x^(l-1), W^l)       He-normal W^l (standardized first for "+WS")
    y^l    = Norm(pre^l)                          no affine inside the norm
    x^l    = relu(gamma^l * y^l + beta^l)         or PN-Act(y^l; gamma^l, beta^l) for "+PN"

with per-channel ``gamma ~ Normal(1, 0.2^2)`` and ``beta ~ Normal(0, 0.2^2)`` and no biases.
Within a run, one draw of the inputs, weights, gammas and betas is shared by every norm, so the
panels differ only by the norm; every run draws afresh.
"""

from __future__ import annotations

import csv
import functools
import io
import numbers
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from pnref._outputs import check_output_file, require_extra, write_atomic
from pnref._progress import ProgressBar
from pnref._validation import as_float_array, check_eps, normalize_axis
from pnref.norms import batch_norm, group_norm, instance_norm, layer_norm, weight_standardization
from pnref.pn_act import act, pn_act

__all__ = [
    "NORMS",
    "INPUT_KINDS",
    "PART_NAMES",
    "PowerInterrupted",
    "PowerSettings",
    "PowerParts",
    "PowerResult",
    "RandomNetwork",
    "circular_conv3x3",
    "photo_crops",
    "upscaled_digits",
    "draw_inputs",
    "power_decomposition",
    "draw_network",
    "normalized_preactivations",
    "run_power_experiment",
    "csv_text",
    "write_csv",
    "last_layer_table",
    "plot_power",
    "run_and_save",
]

#: The norms compared, in panel order. "+PN" replaces the ReLU by PN-Act; "+WS" standardizes the
#: convolution weights before use.
NORMS: tuple[str, ...] = ("BN", "IN", "LN", "GN", "LN+PN", "GN+PN", "LN+WS")

#: The input images: crops of the two photographs, the digits upscaled, Gaussian noise.
INPUT_KINDS: tuple[str, ...] = ("photos", "digits", "noise")

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
        Channels of the Gaussian-noise input images (the photographs have 3, the digits 1).
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
        Seed of the experiment; run r draws its inputs, weights, gammas and betas from
        ``numpy.random.default_rng([seed, r])``.
    input_kind : str, default "photos"
        One of `INPUT_KINDS` (`draw_inputs`); "photos" and "digits" need scikit-learn.
    runs : int, default 3
        Runs averaged, each with fresh inputs and weights.
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
    input_kind: str = "photos"
    runs: int = 3

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(
                f"input_kind must be one of {', '.join(INPUT_KINDS)}; got {self.input_kind!r}")
        for name in ("width", "depth", "image_size", "inputs", "input_channels", "groups",
                     "runs"):
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
    inputs : ndarray, shape (inputs, image_size, image_size, C_0)
    weights : tuple of ndarray, each (width, 3, 3, C_in) with C_in the previous layer's width
        (C_0 = 3 for the photographs, 1 for the digits, ``input_channels`` for noise)
    gammas, betas : ndarray, shape (depth, width)
    """

    inputs: np.ndarray
    weights: tuple[np.ndarray, ...]
    gammas: np.ndarray
    betas: np.ndarray


@functools.lru_cache(maxsize=1)
def _standardized_photos() -> tuple[np.ndarray, ...]:
    """scikit-learn's two sample photographs, float64, each channel standardized.

    The mean and standard deviation of each colour channel are taken over every pixel of both
    photographs (two-pass), so crops keep their differences in brightness and colour.
    """
    from sklearn.datasets import load_sample_images  # files inside the package, no network

    photos = [np.asarray(image, dtype=np.float64) for image in load_sample_images().images]
    pixels = np.concatenate([photo.reshape(-1, 3) for photo in photos])
    mean = pixels.mean(axis=0)
    std = np.sqrt(((pixels - mean) ** 2).mean(axis=0))
    return tuple((photo - mean) / std for photo in photos)


def photo_crops(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """``count`` random square crops of the two photographs, shape (count, size, size, 3).

    Each crop picks one of the two photographs (427 x 640 pixels, "china" and "flower") with
    equal probability and a uniformly random top-left corner; pixels are standardized per
    channel over both photographs (`_standardized_photos`). Needs scikit-learn.
    """
    photos = _standardized_photos()
    crops = np.empty((count, size, size, 3))
    for k in range(count):
        photo = photos[rng.integers(len(photos))]
        if size > min(photo.shape[:2]):
            raise ValueError(f"image_size={size} exceeds the photographs' {photo.shape[:2]}")
        top = rng.integers(photo.shape[0] - size + 1)
        left = rng.integers(photo.shape[1] - size + 1)
        crops[k] = photo[top : top + size, left : left + size]
    return crops


@functools.lru_cache(maxsize=1)
def _standardized_digits() -> np.ndarray:
    """The 1797 8x8 digits, float64, standardized with the mean and std of all their pixels."""
    from sklearn.datasets import load_digits  # a file inside the package, no network

    images = load_digits().images.astype(np.float64)
    mean = images.mean()
    return (images - mean) / np.sqrt(((images - mean) ** 2).mean())


def upscaled_digits(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """``count`` distinct random digits upscaled, shape (count, size, size, 1).

    Nearest-neighbour upscaling: output pixel (i, j) is digit pixel (8 i // size, 8 j // size),
    so ``size = 16`` repeats every pixel 2 x 2. Standardized over all digits' pixels. Needs
    scikit-learn.
    """
    digits = _standardized_digits()
    if count > len(digits):
        raise ValueError(f"inputs={count} exceeds the {len(digits)} digits")
    chosen = digits[rng.choice(len(digits), size=count, replace=False)]
    index = np.arange(size) * 8 // size
    return chosen[:, index][:, :, index][..., None]


def draw_inputs(settings: PowerSettings, rng: np.random.Generator) -> np.ndarray:
    """The input images x^0 of one run, shape (inputs, image_size, image_size, channels).

    ``settings.input_kind`` chooses: "photos" (`photo_crops`, 3 channels), "digits"
    (`upscaled_digits`, 1 channel) or "noise" (N(0, 1) i.i.d., ``input_channels`` channels).
    """
    s = settings
    if s.input_kind == "photos":
        return photo_crops(rng, s.inputs, s.image_size)
    if s.input_kind == "digits":
        return upscaled_digits(rng, s.inputs, s.image_size)
    return rng.standard_normal((s.inputs, s.image_size, s.image_size, s.input_channels))


def draw_network(settings: PowerSettings, run: int = 0) -> RandomNetwork:
    """Draw the inputs and parameters of run ``run`` from ``default_rng([settings.seed, run])``.

    Equations
    ---------
    He-normal weights with fan-in 9 * C_in, no biases, and the paper's per-channel affine:

        W^l[o, a, b, c] ~ Normal(0, 2 / (9 * C_in)),
        gamma^l_c ~ Normal(1, gamma_std^2),   beta^l_c ~ Normal(0, beta_std^2)
    """
    rng = np.random.default_rng([settings.seed, run])
    s = settings
    inputs = draw_inputs(s, rng)
    weights = []
    c_in = inputs.shape[-1]
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
    shares : ndarray, shape (len(norms), runs, depth, 3)
        Shares of `PART_NAMES` at each layer (layer l is index l - 1), per run.
    total_power : ndarray, shape (len(norms), runs, depth)
        Mean of ``y**2`` over inputs, positions and channels.
    seconds : float
        Wall-clock time of the run.
    done : ndarray of bool, shape (len(norms), runs, depth), optional
        Which layers were computed: all of them, unless the run was interrupted (then the
        others hold NaN).
    """

    settings: PowerSettings
    norms: tuple[str, ...]
    shares: np.ndarray
    total_power: np.ndarray
    seconds: float = field(default=0.0)
    done: np.ndarray | None = None

    @property
    def complete(self) -> bool:
        """Every norm, run and layer was computed."""
        return self.done is None or bool(self.done.all())

    def mean_shares(self) -> np.ndarray:
        """Shares averaged over the runs, shape (len(norms), depth, 3)."""
        return self.shares.mean(axis=1)

    def rows(self) -> Iterator[dict[str, object]]:
        """One dict per (norm, run, layer) computed: the CSV rows."""
        for k, norm in enumerate(self.norms):
            for run in range(self.shares.shape[1]):
                for layer in range(self.shares.shape[2]):
                    if self.done is not None and not self.done[k, run, layer]:
                        continue
                    row: dict[str, object] = {"input": self.settings.input_kind, "norm": norm,
                                              "run": run, "layer": layer + 1}
                    for name, value in zip(PART_NAMES, self.shares[k, run, layer], strict=True):
                        row[name] = float(value)
                    row["total_power"] = float(self.total_power[k, run, layer])
                    yield row


class PowerInterrupted(KeyboardInterrupt):
    """Ctrl-C during `run_power_experiment`; ``partial`` holds the layers done."""

    def __init__(self, partial: PowerResult) -> None:
        super().__init__()  # the CLI then prints "pnref: interrupted"
        self.partial = partial


def run_power_experiment(
    settings: PowerSettings | None = None,
    norms: Sequence[str] = NORMS,
    *,
    progress: TextIO | None = None,
) -> PowerResult:
    """Run the random network ``settings.runs`` times per norm and decompose ``y^l`` per layer.

    Parameters
    ----------
    settings : PowerSettings, optional
        Defaults to ``PowerSettings()``.
    norms : sequence of str, optional
        Which norms to run, each one of `NORMS` (the default: all), no repeats.
    progress : text stream, optional
        Where to draw a progress bar over runs x norms x layers, with elapsed time and ETA
        (e.g. ``sys.stderr``); none when absent.

    Returns
    -------
    PowerResult

    Raises
    ------
    PowerInterrupted
        On Ctrl-C, carrying the layers done (a `KeyboardInterrupt`).
    """
    settings = PowerSettings() if settings is None else settings
    norms = tuple(_check_norm(n) for n in norms)
    if not norms:
        raise ValueError("norms must name at least one norm")
    if len(set(norms)) != len(norms):
        raise ValueError(f"norms must not repeat a norm, got {norms}")
    start = time.perf_counter()
    shape = (len(norms), settings.runs, settings.depth)
    shares = np.full((*shape, 3), np.nan)
    total_power = np.full(shape, np.nan)
    done = np.zeros(shape, dtype=bool)
    bar = ProgressBar(done.size, "power", stream=progress, enabled=progress is not None)

    def result() -> PowerResult:
        return PowerResult(settings=settings, norms=norms, shares=shares,
                           total_power=total_power, seconds=time.perf_counter() - start,
                           done=done)

    try:
        for run in range(settings.runs):
            network = draw_network(settings, run)
            for k, norm in enumerate(norms):
                for layer, y in enumerate(normalized_preactivations(network, norm, settings)):
                    parts = power_decomposition(y, axis=-1)
                    shares[k, run, layer] = parts.shares()
                    total_power[k, run, layer] = parts.total
                    done[k, run, layer] = True
                    bar.update(1, f"run {run + 1}/{settings.runs} {norm:<6} layer {layer + 1:<3}")
    except KeyboardInterrupt:
        bar.close()
        raise PowerInterrupted(result()) from None
    bar.close()
    return result()


def csv_text(result: PowerResult) -> str:
    """The CSV: header ``input,norm,run,layer,<parts>,total_power``, one line per layer done."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=["input", "norm", "run", "layer", *PART_NAMES, "total_power"])
    writer.writeheader()
    for row in result.rows():
        writer.writerow({k: (f"{v:.9g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def write_csv(result: PowerResult, path: str | Path) -> Path:
    """Write every share per norm, run and layer as CSV (`csv_text`), atomically."""
    return write_atomic(path, csv_text(result))


def last_layer_table(result: PowerResult) -> str:
    """A Markdown table of each norm's shares (in percent) at the last layer, mean +- std over runs.

    The standard deviation is the population one over the runs (0 for a single run).
    """
    lines = [
        "| norm | " + " | ".join(f"{label} (%)" for label in _PART_LABELS) + " |",
        "|---|---:|---:|---:|",
    ]
    for norm, shares in zip(result.norms, result.shares[:, :, -1], strict=True):
        mean, spread = 100 * shares.mean(axis=0), 100 * shares.std(axis=0)
        lines.append(f"| {norm} | " + " | ".join(
            f"{m:.3g} +- {d:.2g}" for m, d in zip(mean, spread, strict=True)) + " |")
    return "\n".join(lines)


def _panel_title(norm: str, last: np.ndarray) -> str:
    """``norm``, then the last layer's three shares by name, mean +- std over runs (percent)."""
    mean, spread = 100 * last.mean(axis=0), 100 * last.std(axis=0)
    named = [f"{name} {m:.1f} ± {d:.1f}" for name, m, d in
             zip(("channel constant", "instance-mean var.", "within-instance"), mean, spread,
                 strict=True)]
    return "\n".join([f"{norm}: last layer (%)", *named])


def plot_power(result: PowerResult, path: str | Path) -> Path:
    """Save a PNG with one panel per norm: the three shares stacked against depth.

    The stacked areas are the means over the runs; a thin black line per run traces that run's
    two boundaries between the parts, so the spread between runs shows. Each panel's title
    names the last layer's three shares, mean +- std over the runs, in percent (a part too
    thin to see in the stack still shows there). Written atomically.

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
    fig = Figure(figsize=(3.4 * columns, 3.7 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False, sharey=True).ravel()
    layers = np.arange(1, result.shares.shape[2] + 1)
    colors = ("#d62728", "#1f77b4", "#bcbd22")
    for ax, norm, shares in zip(axes, result.norms, result.shares, strict=False):
        ax.stackplot(layers, shares.mean(axis=0).T, colors=colors, labels=_PART_LABELS,
                     alpha=0.9)
        for run_shares in shares:  # (depth, 3): each run's boundaries between the parts
            bounds = np.cumsum(run_shares, axis=1)
            ax.plot(layers, bounds[:, 0], color="black", lw=0.5, alpha=0.6)
            ax.plot(layers, bounds[:, 1], color="black", lw=0.5, alpha=0.6)
        ax.set_title(_panel_title(norm, shares[:, -1]), fontsize=8.5)
        ax.set_xlim(layers[0], layers[-1])
        ax.set_ylim(0, 1)
        ax.set_xlabel("layer")
    for ax in axes[::columns]:
        ax.set_ylabel("share of power")
    legend_ax = axes[panels]
    legend_ax.axis("off")
    handles, labels = axes[0].get_legend_handles_labels()
    handles, labels = handles[: len(_PART_LABELS)], labels[: len(_PART_LABELS)]
    # Listed top to bottom in the order the parts are stacked on screen.
    legend_ax.legend(handles[::-1], labels[::-1], loc="center", frameon=False,
                     title="mean over runs;\nthin lines: each run", fontsize=9)
    for ax in axes[panels + 1 :]:
        ax.axis("off")
    s = result.settings
    inputs = {"photos": "crops of the 2 sample photos", "digits": "upscaled digits",
              "noise": "Gaussian noise"}[s.input_kind]
    fig.suptitle(
        f"Power of the normalized pre-activations: {s.inputs} inputs ({inputs}, "
        f"{s.image_size}x{s.image_size}), width {s.width}, depth {s.depth}, "
        f"{s.runs} run{'s' if s.runs > 1 else ''}, seed {s.seed}"
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return write_atomic(path, buffer.getvalue())


COMMAND = "experiment power"


def run_and_save(
    settings: PowerSettings,
    norms: Sequence[str] | None,
    csv_path: str | Path,
    figure_path: str | Path | None,
    *,
    stream: TextIO | None = None,
) -> PowerResult:
    """What ``pnref experiment power`` does: check, run, write the CSV and figure, print the time.

    Before any work: matplotlib (unless ``figure_path`` is None) and scikit-learn (for the
    photographs and the digits) must be installed, and both outputs writable (`CommandError`
    otherwise). ``norms=None`` runs all of `NORMS`. Progress and the elapsed time go to
    ``stream`` (default ``sys.stderr``). On Ctrl-C the CSV gets the layers done, then the
    `PowerInterrupted` goes on.
    """
    stream = sys.stderr if stream is None else stream
    norms = NORMS if norms is None else tuple(norms)
    if figure_path is not None:
        require_extra("matplotlib", "plot", COMMAND)
    if settings.input_kind in ("photos", "digits"):
        require_extra("sklearn", "data", COMMAND)
    csv_path = check_output_file(csv_path, option="--csv")
    if figure_path is not None:
        figure_path = check_output_file(figure_path, option="--figure")
    print(f"power experiment: {asdict(settings)}", file=stream)
    try:
        result = run_power_experiment(settings, norms, progress=stream)
    except PowerInterrupted as interrupt:
        partial = interrupt.partial
        assert partial.done is not None
        print(f"interrupted: wrote the {int(partial.done.sum())} of {partial.done.size} "
              f"(norm, run, layer) done to {write_csv(partial, csv_path)}", file=stream)
        raise
    print(f"shares at the last layer (layer {settings.depth}), mean +- std over "
          f"{settings.runs} runs:", file=stream)
    print(last_layer_table(result), file=stream)
    print(f"wrote {write_csv(result, csv_path)}", file=stream)
    if figure_path is not None:
        print(f"wrote {plot_power(result, figure_path)}", file=stream)
    print(f"power experiment finished in {result.seconds:.1f} s", file=stream)
    return result
