"""Test accuracy against batch size for each norm: the small-batch experiment.

Each norm in `pnref.nn.NORMS` x each batch size x each seed trains the small CNN on the
8x8 digits (or the synthetic images) for a fixed number of epochs, with the learning rate
scaled linearly with the batch size (``lr = base_lr * batch_size / 64``: the same number of
epochs and the same expected total update for every batch size). The train/test split is
fixed; the seed changes the initialization and the shuffling.

Outputs: a CSV with one row per run, a Markdown table (mean +- standard deviation over the
seeds) and, when matplotlib is installed, a PNG plot of test accuracy against batch size per
norm with the seeds' spread shown as a band (min to max) around the mean.
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pnref._progress import ProgressBar
from pnref.nn import NORMS, TrainConfig, load_dataset, train

__all__ = [
    "BatchSizeSettings",
    "run_batch_size_experiment",
    "summarize",
    "markdown_table",
    "write_csv",
    "write_markdown",
    "plot_accuracy",
    "run_and_save",
]

CSV_FIELDS = (
    "norm", "batch_size", "seed", "lr", "epochs", "steps", "test_accuracy", "test_loss",
    "train_accuracy", "train_loss", "diverged", "seconds",
)


@dataclass(frozen=True)
class BatchSizeSettings:
    """What the experiment runs.

    Attributes
    ----------
    norms : tuple of str
    batch_sizes : tuple of int
    seeds : tuple of int
    epochs : int
    base_lr : float
        Learning rate at batch size 64; scaled linearly with the batch size.
    widths : tuple of int
        Channels of the CNN's stages.
    dataset : str
        ``"digits"`` (needs scikit-learn) or ``"synthetic"``.
    """

    norms: tuple[str, ...] = NORMS
    batch_sizes: tuple[int, ...] = (2, 4, 16, 64)
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 4
    base_lr: float = 0.2
    widths: tuple[int, ...] = (16, 32)
    dataset: str = "digits"
    extra_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [n for n in self.norms if n not in NORMS]
        if unknown:
            raise ValueError(f"norms contains unknown names {unknown}; known: {NORMS}")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ValueError(f"batch_sizes must be positive ints, got {self.batch_sizes}")
        if not self.seeds:
            raise ValueError("seeds must not be empty")

    def lr_for(self, batch_size: int) -> float:
        """Linear scaling rule: ``base_lr * batch_size / 64``."""
        return self.base_lr * batch_size / 64


def run_batch_size_experiment(settings: BatchSizeSettings, *, progress: bool = True) -> list[dict]:
    """Train every (norm, batch size, seed); one result row per run (see ``CSV_FIELDS``)."""
    data = load_dataset(settings.dataset)
    runs = [(n, b, s) for n in settings.norms for b in settings.batch_sizes
            for s in settings.seeds]
    bar = ProgressBar(len(runs), "batch-size experiment", enabled=progress)
    rows = []
    for norm, batch_size, seed in runs:
        config = TrainConfig(
            model="cnn", norm=norm, batch_size=batch_size, epochs=settings.epochs, seed=seed,
            lr=settings.lr_for(batch_size),
            model_options={"widths": settings.widths, **settings.extra_options},
        )
        result = train(config, data, progress=False)
        rows.append({
            "norm": norm, "batch_size": batch_size, "seed": seed, "lr": config.lr,
            "epochs": settings.epochs, "steps": result["steps"],
            "test_accuracy": result["test_accuracy"], "test_loss": result["test_loss"],
            "train_accuracy": result["train_accuracy"], "train_loss": result["train_loss"],
            "diverged": result["diverged"], "seconds": round(result["seconds"], 3),
        })
        bar.update(1, f"{norm} b{batch_size} s{seed}: {result['test_accuracy']:.3f}")
    bar.close()
    return rows


def summarize(rows: list[dict]) -> dict[tuple[str, int], np.ndarray]:
    """Test accuracies over the seeds, keyed by (norm, batch size), in first-seen order."""
    out: dict[tuple[str, int], list[float]] = {}
    for row in rows:
        out.setdefault((row["norm"], int(row["batch_size"])), []).append(
            float(row["test_accuracy"]))
    return {k: np.array(v) for k, v in out.items()}


def write_csv(rows: list[dict], path: str | Path) -> None:
    """One line per run, columns ``CSV_FIELDS``."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(rows: list[dict]) -> str:
    """Norms as rows, batch sizes as columns: mean +- std of test accuracy (%) over seeds."""
    acc = summarize(rows)
    norms = list(dict.fromkeys(n for n, _ in acc))
    sizes = sorted({b for _, b in acc})
    lines = ["| norm | " + " | ".join(f"batch {b}" for b in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for norm in norms:
        cells = []
        for b in sizes:
            a = acc.get((norm, b))
            cells.append("" if a is None else f"{100 * a.mean():.1f} +- {100 * a.std():.1f}")
        lines.append(f"| {norm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(rows: list[dict], path: str | Path, *, header: str = "") -> None:
    """The table of `markdown_table`, after ``header``."""
    Path(path).write_text(header + markdown_table(rows))


def plot_accuracy(rows: list[dict], path: str | Path) -> None:
    """Test accuracy against batch size (log scale), a line per norm, seeds as a min-max band.

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install 'pnref[plot]'``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("the plot needs matplotlib: pip install 'pnref[plot]'") from exc
    acc = summarize(rows)
    norms = list(dict.fromkeys(n for n, _ in acc))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for norm in norms:
        sizes = sorted(b for n, b in acc if n == norm)
        values = [acc[(norm, b)] for b in sizes]
        mean = np.array([100 * v.mean() for v in values])
        low = np.array([100 * v.min() for v in values])
        high = np.array([100 * v.max() for v in values])
        style = "--" if "+" in norm else "-"
        (line,) = ax.plot(sizes, mean, style, marker="o", label=norm)
        ax.fill_between(sizes, low, high, color=line.get_color(), alpha=0.15)
    ax.set_xscale("log", base=2)
    all_sizes = sorted({b for _, b in acc})
    ax.set_xticks(all_sizes, [str(b) for b in all_sizes])
    ax.minorticks_off()
    ax.set_xlabel("batch size")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Small CNN on 8x8 digits: mean over seeds, band = min to max")
    ax.grid(True, alpha=0.3)
    ax.legend(ncol=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_and_save(settings: BatchSizeSettings, out_dir: str | Path, *, plot: bool = True,
                 progress: bool = True) -> list[dict]:
    """Run, then write ``batch_size.csv``, ``batch_size.md`` and ``batch_size.png``.

    Prints the table and the wall-clock time it took.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = run_batch_size_experiment(settings, progress=progress)
    elapsed = time.perf_counter() - start
    write_csv(rows, out / "batch_size.csv")
    header = (
        f"Test accuracy (%) of the small CNN on {settings.dataset}, mean +- std over seeds "
        f"{list(settings.seeds)}; {settings.epochs} epochs, lr = {settings.base_lr} * B / 64, "
        f"{elapsed:.0f} s in all.\n\n"
    )
    write_markdown(rows, out / "batch_size.md", header=header)
    if plot:
        plot_accuracy(rows, out / "batch_size.png")
    sys.stdout.write(markdown_table(rows))
    sys.stdout.write(f"wrote {out / 'batch_size.csv'}, {out / 'batch_size.md'}"
                     + (f", {out / 'batch_size.png'}" if plot else "") + "\n")
    sys.stdout.write(f"batch-size experiment took {elapsed:.1f} s ({len(rows)} runs)\n")
    return rows
