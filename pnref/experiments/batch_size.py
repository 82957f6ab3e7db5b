"""Test accuracy against batch size for each norm: the small-batch experiment.

Each norm in `pnref.nn.NORMS` x each batch size x each seed trains the small CNN on the
8x8 digits (or the synthetic images) for a fixed number of epochs, with the learning rate
scaled linearly with the batch size (``lr = base_lr * batch_size / 64``: the same number of
epochs and the same expected total update for every batch size). The train/test split is
fixed; the seed changes the initialization and the shuffling.

The runs are independent, so the sweep hands them to any `concurrent.futures.Executor`: a
`ProcessPoolExecutor` on the machine's cores (``--jobs``), or a Dask cluster's executor
(``distributed.Client(...).get_executor()``) across machines. Every run limits itself to one
BLAS / OpenMP / Numba thread (`one_thread_per_run`), so the results do not depend on where or
next to what a run is executed: they are bit-identical to the serial sweep.

Outputs: a CSV with one row per run, appended (and flushed to disk) as each run finishes, so an
interrupted sweep keeps every finished run and ``resume=True`` continues it; a Markdown table
(mean +- standard deviation over the seeds) and, when matplotlib is installed, a PNG with the
test accuracy against batch size per norm and, zoomed, each norm's accuracy relative to BN's.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from pnref._outputs import (
    CommandError,
    check_output_dir,
    check_output_file,
    require_extra,
    write_atomic,
)
from pnref._progress import ProgressBar
from pnref.nn import NORMS, Dataset, TrainConfig, load_dataset, train

__all__ = [
    "BatchSizeSettings",
    "CSV_FIELDS",
    "RunKey",
    "planned_runs",
    "train_one_run",
    "one_thread_per_run",
    "limit_worker_threads",
    "process_pool",
    "run_batch_size_experiment",
    "read_csv_rows",
    "summarize",
    "markdown_table",
    "csv_text",
    "write_csv",
    "write_markdown",
    "plot_accuracy",
    "run_and_save",
]

#: Columns of the CSV, one row per run.
CSV_FIELDS = (
    "norm", "batch_size", "seed", "dataset", "epochs", "widths", "lr", "steps",
    "test_accuracy", "test_loss", "train_accuracy", "train_loss", "diverged", "seconds",
)

#: The columns that identify a run's settings: a resumed CSV must agree on them.
_SETTING_FIELDS = ("dataset", "epochs", "widths", "lr")

#: Names of the three output files inside ``out_dir``.
CSV_NAME, MARKDOWN_NAME, FIGURE_NAME = "batch_size.csv", "batch_size.md", "batch_size.png"

#: (norm, batch size, seed): one training run.
RunKey = tuple[str, int, int]

COMMAND = "experiment batch-size"


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
    backend : str
        ``"numba"`` (default: the fused kernels, several times faster) or ``"numpy"`` (the
        reference blocks) for the norm blocks; they agree to rounding (docs/performance.md).
    """

    norms: tuple[str, ...] = NORMS
    batch_sizes: tuple[int, ...] = (2, 4, 16, 64)
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 4
    base_lr: float = 0.2
    widths: tuple[int, ...] = (16, 32)
    dataset: str = "digits"
    backend: str = "numba"
    extra_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [n for n in self.norms if n not in NORMS]
        if unknown:
            raise ValueError(f"norms contains unknown names {unknown}; known: {NORMS}")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ValueError(f"batch_sizes must be positive ints, got {self.batch_sizes}")
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        if self.backend not in ("numpy", "numba"):
            raise ValueError(f"backend must be 'numpy' or 'numba', got {self.backend!r}")

    def lr_for(self, batch_size: int) -> float:
        """Linear scaling rule: ``base_lr * batch_size / 64``."""
        return self.base_lr * batch_size / 64


def planned_runs(settings: BatchSizeSettings) -> list[RunKey]:
    """Every (norm, batch size, seed) of the sweep, in the order of the table and the CSV."""
    return [(n, b, s) for n in settings.norms for b in settings.batch_sizes
            for s in settings.seeds]


# --- one run, wherever it executes ------------------------------------------------------------

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "NUMBA_NUM_THREADS", "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


@contextlib.contextmanager
def one_thread_per_run() -> Iterator[None]:
    """Run the enclosed code with one BLAS/OpenMP thread (threadpoolctl) and one Numba thread.

    Two runs on two cores then use two threads in all, not two times the core count
    (oversubscription makes every step several times slower on a busy machine). The Numba
    kernels give bit-identical results for any thread count, and a matrix product on one
    thread is deterministic, so this changes the speed only.
    """
    import numba

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with pnref[data]
        limiter: contextlib.AbstractContextManager = contextlib.nullcontext()
    else:
        limiter = threadpool_limits(limits=1)
    previous = numba.get_num_threads()
    with limiter:
        numba.set_num_threads(1)
        try:
            yield
        finally:
            numba.set_num_threads(previous)


def limit_worker_threads() -> None:
    """Initializer of the sweep's worker processes: one thread each, Ctrl-C left to the parent.

    Sets the thread-count variables of the common BLAS/OpenMP/Numba runtimes to 1 (for any
    library loaded later in the worker) and ignores SIGINT: a Ctrl-C at the terminal reaches
    the whole process group, and the parent, not each worker, decides what to keep.
    """
    for name in _THREAD_VARIABLES:
        os.environ[name] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@functools.lru_cache(maxsize=2)
def _dataset(name: str) -> Dataset:
    """The data set, loaded once per process (each worker loads its own copy)."""
    return load_dataset(name)


def train_one_run(settings: BatchSizeSettings, key: RunKey) -> dict:
    """Train one (norm, batch size, seed) of the sweep and return its CSV row.

    A module-level function of picklable arguments, so that any executor (a process pool,
    a Dask cluster) can run it; it loads the data set itself, once per process.
    """
    norm, batch_size, seed = key
    config = TrainConfig(
        model="cnn", norm=norm, batch_size=batch_size, epochs=settings.epochs, seed=seed,
        lr=settings.lr_for(batch_size),
        model_options={"widths": settings.widths, "backend": settings.backend,
                       **settings.extra_options},
    )
    with one_thread_per_run():
        result = train(config, _dataset(settings.dataset), progress=False)
    return {
        "norm": norm, "batch_size": batch_size, "seed": seed, "dataset": settings.dataset,
        "epochs": settings.epochs, "widths": " ".join(str(w) for w in settings.widths),
        "lr": config.lr, "steps": result["steps"],
        "test_accuracy": result["test_accuracy"], "test_loss": result["test_loss"],
        "train_accuracy": result["train_accuracy"], "train_loss": result["train_loss"],
        "diverged": bool(result["diverged"]), "seconds": round(result["seconds"], 3),
    }


def process_pool(jobs: int) -> ProcessPoolExecutor:
    """A pool of ``jobs`` fresh worker processes (spawned, one thread each, SIGINT ignored)."""
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=limit_worker_threads)


def _stop_process_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now (used on Ctrl-C)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join()


# --- the CSV, row by row ----------------------------------------------------------------------

def _csv_line(row: dict) -> str:
    buffer = io.StringIO()
    csv.DictWriter(buffer, fieldnames=CSV_FIELDS).writerow(row)
    return buffer.getvalue()


def csv_text(rows: Iterable[dict]) -> str:
    """The CSV (header and one line per row) as text; floats as their shortest repr."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(rows: list[dict], path: str | Path) -> None:
    """One line per run, columns ``CSV_FIELDS``, written atomically."""
    write_atomic(path, csv_text(rows))


_PARSERS = {"batch_size": int, "seed": int, "epochs": int, "steps": int, "lr": float,
            "test_accuracy": float, "test_loss": float, "train_accuracy": float,
            "train_loss": float, "seconds": float}


def _parse_float(text: str) -> float:
    return float(text) if text else float("nan")


def read_csv_rows(path: str | Path) -> list[dict]:
    """The rows of a sweep's CSV, typed as `train_one_run` returns them.

    Floats were written as their shortest repr, so they read back to the same floats.

    Raises
    ------
    CommandError
        If the file is not a CSV of this experiment (missing columns, unreadable values).
    """
    path = Path(path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in CSV_FIELDS if name not in (reader.fieldnames or ())]
        if missing:
            raise CommandError(f"{path} is not a batch-size CSV: no column {', '.join(missing)}")
        rows = []
        for line, raw in enumerate(reader, start=2):
            try:
                row: dict = {name: raw[name] for name in CSV_FIELDS}
                for name, parse in _PARSERS.items():
                    row[name] = _parse_float(raw[name]) if parse is float else parse(raw[name])
                row["diverged"] = raw["diverged"] == "True"
            except (TypeError, ValueError) as exc:
                raise CommandError(f"{path}, line {line}: unreadable value ({exc})") from None
            rows.append(row)
    return rows


class _CsvLog:
    """The sweep's CSV, opened for appending: one full line written and flushed per run."""

    def __init__(self, path: Path, kept_rows: list[dict]) -> None:
        write_atomic(path, csv_text(kept_rows))
        self.handle: TextIO = path.open("a", newline="")

    def append(self, row: dict) -> None:
        self.handle.write(_csv_line(row))
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()


# --- the sweep --------------------------------------------------------------------------------

def _rows_in_plan_order(rows: Sequence[dict], plan: Sequence[RunKey]) -> list[dict]:
    by_key = {(r["norm"], int(r["batch_size"]), int(r["seed"])): r for r in rows}
    return [by_key[key] for key in plan if key in by_key]


def _expected_cost(key: RunKey) -> float:
    """A run's expected time, in relative units, to order the submissions: the number of
    steps (one per batch) dominates, and proxy moments or weight standardization add about
    half to a step (measured on the default sweep). Runs of equal cost keep the plan's
    order (``sorted`` is stable)."""
    norm, batch_size, _seed = key
    per_step = 1.5 if ("+pn" in norm or "+ws" in norm) else 1.0
    return per_step / batch_size


def run_batch_size_experiment(
    settings: BatchSizeSettings,
    *,
    executor: Executor | None = None,
    csv_path: str | Path | None = None,
    done_rows: Sequence[dict] = (),
    progress: bool = True,
) -> list[dict]:
    """Train every (norm, batch size, seed) not in ``done_rows``; one result row per run.

    Parameters
    ----------
    settings : BatchSizeSettings
    executor : concurrent.futures.Executor, optional
        Runs `train_one_run` for each run: a `process_pool`, a Dask cluster's
        ``client.get_executor()``, any `Executor`. Without one the runs execute here, one
        after the other. The rows are the same either way (up to ``seconds``).
    csv_path : path, optional
        The CSV to keep up to date: rewritten with ``done_rows`` first, then one line appended
        and flushed as each run finishes, in the order they finish.
    done_rows : sequence of dict
        Rows of runs already finished (from `read_csv_rows`); their runs are skipped.
    progress : bool
        Runs done of the runs left, with elapsed time and ETA, on stderr.

    Returns
    -------
    list of dict
        One row per planned run (``CSV_FIELDS``), in `planned_runs` order.
    """
    plan = planned_runs(settings)
    done_keys = {(r["norm"], int(r["batch_size"]), int(r["seed"])) for r in done_rows}
    todo = [key for key in plan if key not in done_keys]
    rows = list(done_rows)
    log = _CsvLog(Path(csv_path), rows) if csv_path is not None else None
    label = "batch-size experiment" + (f" ({len(done_keys)} runs done before)"
                                        if done_keys else "")
    bar = ProgressBar(len(todo), label, enabled=progress and bool(todo))

    def finished(row: dict) -> None:
        rows.append(row)
        if log is not None:
            log.append(row)
        bar.update(1, f"{row['norm']} b{row['batch_size']} s{row['seed']}: "
                      f"{row['test_accuracy']:.3f}")

    futures: list[Future] = []
    try:
        if executor is None:
            for key in todo:
                finished(train_one_run(settings, key))
        else:
            # Longest first (the smallest batches take the most steps): the last runs to
            # start are then the short ones, and the workers finish close together.
            futures = [executor.submit(train_one_run, settings, key)
                       for key in sorted(todo, key=_expected_cost, reverse=True)]
            for future in as_completed(futures):
                finished(future.result())
    finally:
        for future in futures:
            future.cancel()
        bar.close()
        if log is not None:
            log.close()
    return _rows_in_plan_order(rows, plan)


# --- tables and figure ------------------------------------------------------------------------

def summarize(rows: list[dict]) -> dict[tuple[str, int], np.ndarray]:
    """Test accuracies over the seeds, keyed by (norm, batch size), in first-seen order."""
    out: dict[tuple[str, int], list[float]] = {}
    for row in rows:
        out.setdefault((row["norm"], int(row["batch_size"])), []).append(
            float(row["test_accuracy"]))
    return {k: np.array(v) for k, v in out.items()}


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
    """The table of `markdown_table`, after ``header``, written atomically."""
    write_atomic(path, header + markdown_table(rows))


def _relative_to_bn(rows: list[dict]) -> dict[tuple[str, int], np.ndarray]:
    """Per (norm, batch size): accuracy minus BN's, in points, seed by seed (same seed paired)."""
    bn = {(int(r["batch_size"]), int(r["seed"])): float(r["test_accuracy"])
          for r in rows if r["norm"] == "bn"}
    out: dict[tuple[str, int], list[float]] = {}
    for row in rows:
        pair = bn.get((int(row["batch_size"]), int(row["seed"])))
        if pair is not None:
            out.setdefault((row["norm"], int(row["batch_size"])), []).append(
                100 * (float(row["test_accuracy"]) - pair))
    return {k: np.array(v) for k, v in out.items()}


def plot_accuracy(rows: list[dict], path: str | Path) -> None:
    """Accuracy against batch size per norm, and each norm's difference to BN, zoomed.

    Left: test accuracy (%) against batch size (log scale), a line per norm (mean over
    seeds), the seeds' spread as a min-max band. Right (when BN is in the sweep): accuracy
    minus BN's accuracy with the same seed and batch size, in points, mean and min-max band,
    for the norms whose mean stays within 6 points of BN at every batch size (the far-off
    ones are in the left panel): the paper's comparison, PN against BN, readable. Written
    atomically.

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install 'pnref[plot]'``).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("the plot needs matplotlib: pip install 'pnref[plot]'") from exc
    acc = summarize(rows)
    relative = _relative_to_bn(rows)
    norms = list(dict.fromkeys(n for n, _ in acc))
    all_sizes = sorted({b for _, b in acc})
    close = [n for n in norms if n != "bn" and relative and all(
        abs(relative[(n, b)].mean()) <= 6 for b in all_sizes if (n, b) in relative)]
    fig = Figure(figsize=(12, 4.8) if relative else (7, 4.5), layout="constrained")
    axes = fig.subplots(1, 2 if relative else 1, squeeze=False).ravel()
    colors = {n: f"C{k % 10}" for k, n in enumerate(norms)}

    def draw(ax, values: dict, norm: str) -> None:
        sizes = sorted(b for n, b in values if n == norm)
        if not sizes:
            return
        series = [values[(norm, b)] for b in sizes]
        style = "--" if "+" in norm else "-"
        ax.plot(sizes, [v.mean() for v in series], style, marker="o", color=colors[norm],
                label=norm)
        ax.fill_between(sizes, [v.min() for v in series], [v.max() for v in series],
                        color=colors[norm], alpha=0.15)

    for norm in norms:
        draw(axes[0], {k: 100 * v for k, v in acc.items()}, norm)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_title("Test accuracy: mean over seeds, band = min to max")
    axes[0].legend(ncol=3, fontsize=8)
    if relative:
        axes[1].axhline(0.0, color=colors["bn"], lw=2, label="bn (reference)")
        for norm in close:
            draw(axes[1], relative, norm)
        axes[1].set_ylabel("test accuracy minus BN's, same seed (points)")
        far = [n for n in norms if n != "bn" and n not in close]
        axes[1].set_title("Minus BN, seed by seed (zoom); band = min to max"
                          + (f"\noff this scale: {', '.join(far)}" if far else ""))
        axes[1].legend(ncol=2, fontsize=8)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(all_sizes, [str(b) for b in all_sizes])
        ax.minorticks_off()
        ax.set_xlabel("batch size")
        ax.grid(True, alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    write_atomic(path, buffer.getvalue())


# --- the command ------------------------------------------------------------------------------

def default_jobs() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _kept_rows(csv_path: Path, settings: BatchSizeSettings, *, resume: bool,
               overwrite: bool) -> list[dict]:
    """The finished runs of an earlier sweep in ``csv_path`` that this sweep keeps."""
    if not csv_path.exists() or overwrite:
        return []
    old = read_csv_rows(csv_path)
    if not old:
        return []
    if not resume:
        raise CommandError(
            f"--out-dir {csv_path.parent}: {csv_path.name} already holds {len(old)} finished "
            "runs; pass --resume to continue that sweep, or --overwrite to start afresh")
    for row in old:
        key = (row["norm"], row["batch_size"], row["seed"])
        mine = {"dataset": settings.dataset, "epochs": settings.epochs,
                "widths": " ".join(str(w) for w in settings.widths),
                "lr": settings.lr_for(row["batch_size"])}
        for name in _SETTING_FIELDS:
            if row[name] != mine[name]:
                raise CommandError(
                    f"--resume: {csv_path} run {key} has {name}={row[name]!r}, this sweep "
                    f"{mine[name]!r}; use the same settings, or another --out-dir")
    unique = {}
    for row in old:
        unique.setdefault((row["norm"], row["batch_size"], row["seed"]), row)
    return list(unique.values())


def run_and_save(settings: BatchSizeSettings, out_dir: str | Path, *, plot: bool = True,
                 progress: bool = True, jobs: int | None = 1,
                 executor: Executor | None = None, resume: bool = False,
                 overwrite: bool = False, stream: TextIO | None = None) -> list[dict]:
    """What ``pnref experiment batch-size`` does: check, run, write, print the time.

    Before any training: checks that matplotlib (when ``plot``) and scikit-learn (for the
    digits) are installed, and that ``out_dir`` and the three files in it can be written.
    Then runs the sweep, appending each finished run to ``batch_size.csv``; at the end
    rewrites it in plan order and writes ``batch_size.md`` and ``batch_size.png``.

    Parameters
    ----------
    jobs : int or None, default 1
        Worker processes (`process_pool`); 1 runs here, None uses every core. Ignored when
        ``executor`` is given.
    executor : concurrent.futures.Executor, optional
        Runs the trainings instead (e.g. a Dask cluster's ``client.get_executor()``); the
        caller owns it.
    resume : bool
        Keep the runs already in ``batch_size.csv`` (made with the same settings) and run the
        rest. Without it an existing CSV with finished runs is an error, unless ``overwrite``.

    Raises
    ------
    CommandError
        A missing extra, an output that cannot be written, a CSV that cannot be resumed.
    KeyboardInterrupt
        On Ctrl-C: the CSV holds every run finished so far; the workers are stopped.
    """
    stream = sys.stdout if stream is None else stream
    if plot:
        require_extra("matplotlib", "plot", COMMAND)
    if settings.dataset == "digits":
        require_extra("sklearn", "data", COMMAND)
    out = check_output_dir(out_dir, option="--out-dir")
    csv_path, md_path, png_path = (check_output_file(out / name, option="--out-dir")
                                   for name in (CSV_NAME, MARKDOWN_NAME, FIGURE_NAME))
    kept = _kept_rows(csv_path, settings, resume=resume, overwrite=overwrite)
    plan = set(planned_runs(settings))
    outside_plan = [r for r in kept if (r["norm"], r["batch_size"], r["seed"]) not in plan]
    jobs = default_jobs() if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int, got {jobs!r}")
    todo = len(plan) - (len(kept) - len(outside_plan))
    pool = process_pool(min(jobs, todo)) if executor is None and jobs > 1 and todo > 1 else None
    start = time.perf_counter()
    try:
        rows = run_batch_size_experiment(settings, executor=executor or pool, csv_path=csv_path,
                                         done_rows=kept, progress=progress)
    except KeyboardInterrupt:
        if pool is not None:
            _stop_process_pool(pool)
        raise
    except BrokenProcessPool as exc:  # a worker killed from outside (out of memory, kill)
        raise CommandError(f"a worker process died ({exc}); the finished runs are in "
                           f"{csv_path}: run again with --resume to continue") from None
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    elapsed = time.perf_counter() - start
    write_csv(rows + outside_plan, csv_path)
    header = (
        f"Test accuracy (%) of the small CNN on {settings.dataset}, mean +- std over seeds "
        f"{list(settings.seeds)}; {settings.epochs} epochs, lr = {settings.base_lr} * B / 64, "
        f"{elapsed:.0f} s in all.\n\n"
    )
    write_markdown(rows, md_path, header=header)
    if plot:
        plot_accuracy(rows, png_path)
    stream.write(markdown_table(rows))
    stream.write(f"wrote {csv_path}, {md_path}" + (f", {png_path}" if plot else "") + "\n")
    workers = "an executor" if executor is not None else (
        f"{min(jobs, max(todo, 1))} worker processes" if pool is not None else "1 process")
    stream.write(f"batch-size experiment took {elapsed:.1f} s ({todo} runs on {workers}"
                 + (f"; {len(rows) - todo} runs kept from {csv_path.name}" if kept else "")
                 + ")\n")
    return rows
