"""Data sets that need no download, and seeded mini-batching.

- `synthetic_images`: class templates (smooth random patterns) shifted by up to one
  pixel and buried in Gaussian noise; generated from a seed, no files.
- `digits`: the 8x8 handwritten digits (1797 images) that scikit-learn ships inside
  its package (``pip install pnref[data]``); read from the installed package, never
  downloaded.

Every data set is a `Dataset` of float64 images ``(N, 1, H, W)`` standardized with
the training split's mean and standard deviation, and int64 labels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["Dataset", "synthetic_images", "digits", "load_dataset", "iterate_minibatches"]


@dataclass(frozen=True)
class Dataset:
    """A train/test split.

    Attributes
    ----------
    x_train, x_test : ndarray, shape (N, C, H, W), float64
    y_train, y_test : ndarray, shape (N,), int64
    num_classes : int
    name : str
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Shape of one input, without the batch axis."""
        return tuple(self.x_train.shape[1:])


def _split_and_standardize(images, labels, test_fraction, rng, num_classes, name) -> Dataset:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = rng.permutation(len(labels))
    n_test = int(round(test_fraction * len(labels)))
    test, train = order[:n_test], order[n_test:]
    mean = images[train].mean()
    std = images[train].std()
    scaled = (images - mean) / std
    return Dataset(
        scaled[train], labels[train].astype(np.int64), scaled[test],
        labels[test].astype(np.int64), num_classes, name,
    )


def _smooth(pattern: np.ndarray) -> np.ndarray:
    """Average each pixel with its 4 neighbours (periodic), twice."""
    for _ in range(2):
        pattern = (pattern + np.roll(pattern, 1, -1) + np.roll(pattern, -1, -1)
                   + np.roll(pattern, 1, -2) + np.roll(pattern, -1, -2)) / 5.0
    return pattern


def synthetic_images(
    n_samples: int = 1000,
    *,
    num_classes: int = 4,
    size: int = 8,
    noise: float = 0.8,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Noisy shifted class templates: a small image classification task from a seed.

    Parameters
    ----------
    n_samples : int
        Images in total (train + test).
    num_classes : int
    size : int
        Images are ``(1, size, size)``.
    noise : float
        Standard deviation of the additive Gaussian noise (templates have unit std).
    test_fraction : float
    seed : int

    Equations
    ---------
    x = roll(template[label], shift) + noise * e,   shift in {-1, 0, 1}^2,  e ~ Normal(0, I)
    """
    if n_samples < 2 or num_classes < 2 or size < 2:
        raise ValueError(
            f"n_samples, num_classes and size must be >= 2, got {n_samples}, {num_classes}, {size}"
        )
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    templates = _smooth(rng.normal(size=(num_classes, size, size)))
    templates = (templates - templates.mean(axis=(1, 2), keepdims=True)) / templates.std(
        axis=(1, 2), keepdims=True
    )
    labels = rng.integers(0, num_classes, size=n_samples)
    shifts = rng.integers(-1, 2, size=(n_samples, 2))
    images = np.empty((n_samples, 1, size, size))
    for i, (label, (dy, dx)) in enumerate(zip(labels, shifts, strict=True)):
        images[i, 0] = np.roll(templates[label], (dy, dx), axis=(0, 1))
    images += noise * rng.normal(size=images.shape)
    return _split_and_standardize(images, labels, test_fraction, rng, num_classes, "synthetic")


def digits(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits, as (N, 1, 8, 8) images.

    Raises
    ------
    ImportError
        If scikit-learn is not installed (``pip install pnref[data]``).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - exercised only without scikit-learn
        raise ImportError(
            "the digits data set needs scikit-learn: pip install 'pnref[data]'"
        ) from exc
    bunch = load_digits()  # reads a file inside the installed package; no network
    images = bunch.images.astype(np.float64)[:, None, :, :]
    rng = np.random.default_rng(seed)
    return _split_and_standardize(images, bunch.target, test_fraction, rng, 10, "digits")


def load_dataset(name: str, *, seed: int = 0) -> Dataset:
    """``"synthetic"`` or ``"digits"`` by name."""
    if name == "synthetic":
        return synthetic_images(seed=seed)
    if name == "digits":
        return digits(seed=seed)
    raise ValueError(f"dataset must be 'synthetic' or 'digits', got {name!r}")


def iterate_minibatches(
    x: np.ndarray, y: np.ndarray, batch_size: int, *, rng: np.random.Generator | None = None,
    drop_last: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Mini-batches of ``(x, y)``, shuffled by ``rng`` when given.

    With ``drop_last`` the final incomplete batch is skipped (so batch norm never sees a
    batch smaller than ``batch_size``).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    order = rng.permutation(len(x)) if rng is not None else np.arange(len(x))
    stop = len(x) - len(x) % batch_size if drop_last else len(x)
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]
