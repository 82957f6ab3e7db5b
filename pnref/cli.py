"""The ``pnref`` command line.

Each sub-command lives in its own small function; heavy modules are imported
inside the function so that ``pnref --help`` stays instant.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence

from pnref._outputs import (
    CommandError,
    check_output_file,
    dumps_strict_json,
    require_extra,
    write_atomic,
)
from pnref._version import __version__
from pnref.verification.cli import add_golden_parser

#: Choices spelled here rather than imported, so that ``pnref --help`` stays instant;
#: tests/test_cli_consistency.py checks them against the library's lists.
TRAIN_NORMS = ("none", "bn", "ln", "in", "gn", "ln+pn", "gn+pn", "ln+ws", "gn+ws")
BACKENDS = ("numpy", "numba")
DATASETS = ("digits", "synthetic")


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    """An argparse ``type`` that accepts any case of ``choices`` and returns the listed spelling.

    Use with ``choices=choices`` so that ``--help`` lists them: ``--norm GN+PN`` and
    ``--norm gn+pn`` both give ``"gn+pn"`` when ``"gn+pn"`` is the listed choice.
    """
    canonical = {choice.lower(): choice for choice in choices}

    def convert(text: str) -> str:
        return canonical.get(text.strip().lower(), text)

    convert.__name__ = "choice"  # argparse names the type in its messages
    return convert


def _choice_list(text: str, choices: Sequence[str], option: str) -> list[str]:
    """A comma-separated list of ``choices``, any case, in the listed spelling.

    ``_choice_list("bn, gn+pn", ("BN", "GN+PN"), "--norms")`` is ``["BN", "GN+PN"]``.

    Raises
    ------
    CommandError
        Naming ``option``, the unknown entries and the valid choices.
    """
    canonical = {choice.lower(): choice for choice in choices}
    given = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in given if item.lower() not in canonical]
    if unknown or not given:
        raise CommandError(
            f"{option} {text!r}: unknown {', '.join(map(repr, unknown)) or 'empty list'}; "
            f"choose from {', '.join(choices)} (comma-separated, any case)"
        )
    return [canonical[item.lower()] for item in given]


def _cmd_demo(args: argparse.Namespace) -> int:
    from pnref.demo import run_demo

    return run_demo()


def _cmd_check_gradients(args: argparse.Namespace) -> int:
    from pnref.gradient_check import run_gradient_check

    return run_gradient_check()


def _cmd_experiment_power(args: argparse.Namespace) -> int:
    from pnref.experiments.power import NORMS, PowerSettings, run_and_save

    given = {
        name: getattr(args, name)
        for name in ("width", "depth", "image_size", "inputs", "groups", "seed", "runs")
        if getattr(args, name) is not None
    }
    run_and_save(
        PowerSettings(input_kind=args.input, **given),
        _choice_list(args.norms, NORMS, "--norms") if args.norms else None,
        args.csv,
        None if args.no_figure else args.figure,
    )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    """Train; the output is checked first and written atomically, even after Ctrl-C."""
    output = check_output_file(args.output, option="--output")
    if args.dataset == "digits":
        require_extra("scikit-learn", "data", "pnref train --dataset digits", module="sklearn")

    from pnref.nn import TrainConfig, TrainingInterrupted, load_dataset, train

    options = {"groups": args.groups, "backend": args.backend}
    if args.model == "cnn":
        options.update(widths=tuple(args.widths), residual=args.residual)
    else:
        options.update(hidden=tuple(args.widths))
    config = TrainConfig(
        model=args.model, norm=args.norm, batch_size=args.batch_size, epochs=args.epochs,
        seed=args.seed, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        decay_proxy=not args.no_proxy_decay, model_options=options,
    )
    try:
        result = train(config, load_dataset(args.dataset), progress=not args.quiet)
    except TrainingInterrupted as stop:
        write_atomic(output, train_metrics_json(stop.metrics))
        raise KeyboardInterrupt(
            f"metrics of the {stop.metrics['steps']} steps done written to {output}"
        ) from None
    print(
        f"{args.model} {args.norm} batch {args.batch_size}: test accuracy "
        f"{result['test_accuracy']:.4f}, test loss {result['test_loss']:.4f}, train accuracy "
        f"{result['train_accuracy']:.4f}, train loss {result['train_loss']:.4f}, "
        f"{result['steps']} steps in {result['seconds']:.1f} s"
        + (" (DIVERGED)" if result["diverged"] else "")
    )
    write_atomic(output, train_metrics_json(result))
    print(f"wrote {output}")
    return 0


def train_metrics_json(metrics: dict) -> str:
    """The metrics of `pnref.nn.train` as strict JSON, saying why any value is null.

    A value that is not a finite number (NaN, +-inf) is written as ``null`` and named in
    ``"null_reasons"`` with the reason: no training step finished, or the training diverged.
    """
    reasons = {}
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            if key == "train_loss" and metrics.get("steps") == 0:
                reasons[key] = "not a number: no training step finished"
            elif metrics.get("diverged"):
                reasons[key] = f"{value} (not finite): the training diverged"
            else:
                reasons[key] = f"{value} (not finite)"
    if reasons:
        metrics = {**metrics, "null_reasons": reasons}
    return dumps_strict_json(metrics, indent=2) + "\n"


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a small network with a chosen norm (pnref.nn)",
        description="Train an MLP or a small CNN with SGD + momentum and a cosine schedule; "
        "print the final metrics and write them as JSON (docs/training.md).",
    )
    p.add_argument("--model", type=_choice(("cnn", "mlp")), choices=("cnn", "mlp"),
                   default="cnn")
    p.add_argument("--norm", type=_choice(TRAIN_NORMS), choices=TRAIN_NORMS, default="gn+pn",
                   metavar="NORM", help=f"{', '.join(TRAIN_NORMS)}, any case (default gn+pn)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=0.05, help="peak learning rate (default 0.05)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--no-proxy-decay", action="store_true",
                   help="no weight decay on PN's gamma~ and beta~ (the official code decays them)")
    p.add_argument("--widths", type=int, nargs="+", default=[16, 32],
                   help="CNN stage channels or MLP hidden sizes (default 16 32)")
    p.add_argument("--groups", type=int, default=4, help="groups of gn (default 4)")
    p.add_argument("--residual", action="store_true", help="a residual block in each CNN stage")
    p.add_argument("--backend", type=_choice(BACKENDS), choices=BACKENDS, default="numpy",
                   help="implementation of the fused norm blocks")
    p.add_argument("--dataset", type=_choice(DATASETS), choices=DATASETS, default="digits",
                   help="digits needs scikit-learn: pip install 'pnref[data]' (default digits)")
    p.add_argument("--output", default="train_metrics.json",
                   help="JSON output, checked before training (default train_metrics.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _cmd_experiment_batch_size(args: argparse.Namespace) -> int:
    from pnref.experiments.batch_size import BatchSizeSettings, run_and_save
    from pnref.nn import NORMS

    given: dict = {}
    norms = _choice_list(args.norms, NORMS, "--norms") if args.norms else None
    if norms:
        given["norms"] = tuple(norms)
    for name in ("batch_sizes", "seeds", "widths"):
        if getattr(args, name):
            given[name] = tuple(getattr(args, name))
    if args.epochs is not None:
        given["epochs"] = args.epochs
    if args.jobs is not None and args.jobs < 1:
        raise CommandError(f"--jobs {args.jobs}: must be at least 1")
    run_and_save(BatchSizeSettings(dataset=args.dataset, backend=args.backend, **given),
                 args.out_dir,
                 plot=not args.no_plot, jobs=args.jobs, resume=args.resume,
                 overwrite=args.overwrite)
    return 0


def _add_batch_size_parser(experiments: argparse._SubParsersAction) -> None:
    p = experiments.add_parser(
        "batch-size",
        help="test accuracy against batch size for each norm (small CNN, digits)",
        description="Each norm x batch sizes x seeds trains the small CNN, several at once in "
        "worker processes (--jobs); each finished run is appended to the CSV (--resume "
        "continues an interrupted sweep); then a Markdown table and a PNG plot "
        "(docs/training.md, docs/experiments.md).",
    )
    p.add_argument("--norms", help="comma-separated subset of none,bn,ln,in,gn,ln+pn,gn+pn,"
                   "ln+ws,gn+ws, any case (default all nine)")
    p.add_argument("--batch-sizes", type=int, nargs="+", help="default 2 4 16 64")
    p.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2")
    p.add_argument("--epochs", type=int, help="default 4")
    p.add_argument("--widths", type=int, nargs="+", help="CNN stage channels (default 16 32)")
    p.add_argument("--dataset", type=_choice(DATASETS), choices=DATASETS, default="digits",
                   help="digits needs scikit-learn (pnref[data]); default digits")
    p.add_argument("--backend", type=_choice(BACKENDS), choices=BACKENDS, default="numba",
                   help="norm blocks: the fused Numba kernels (default) or the NumPy reference")
    p.add_argument("--out-dir", default="batch_size_results", help="output folder")
    p.add_argument("--no-plot", action="store_true", help="no PNG (no matplotlib needed)")
    p.add_argument("--jobs", type=int,
                   help="trainings run at once, in worker processes (default: every core)")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs already in OUT_DIR/batch_size.csv, run the rest")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh even if OUT_DIR/batch_size.csv holds finished runs")
    p.set_defaults(func=_cmd_experiment_batch_size)


def _add_experiment_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="reproduce the paper's experiments")
    experiments = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)

    power = experiments.add_parser(
        "power",
        help="power plots: where the power of the normalized pre-activations goes with depth",
        description="Random ReLU network with circular 3x3 convolutions; for each norm and "
        "layer, the shares of the channel-wise constant part, the instance-mean variability "
        "and the within-instance variation, averaged over runs with fresh weights and inputs "
        "(docs/experiments.md).",
    )
    power.add_argument("--width", type=int, help="channels at every layer (default 128)")
    power.add_argument("--depth", type=int, help="number of layers (default 50)")
    power.add_argument("--image-size", type=int, help="image height and width (default 16)")
    power.add_argument("--input", choices=("photos", "digits", "noise"), default="photos",
                       type=str.lower,
                       help="input images: crops of scikit-learn's two photos, the digits "
                       "upscaled (both need pnref[data]), or Gaussian noise (default photos)")
    power.add_argument("--inputs", type=int, help="number of input images (default 64)")
    power.add_argument("--runs", type=int,
                       help="runs averaged, each with fresh weights and inputs (default 3)")
    power.add_argument("--groups", type=int, help="groups of GN and GN+PN (default 4)")
    power.add_argument("--seed", type=int, help="seed of the random draw (default 0)")
    power.add_argument(
        "--norms",
        help="comma-separated subset of BN,IN,LN,GN,LN+PN,GN+PN,LN+WS, any case (default all)"
    )
    power.add_argument("--csv", default="power.csv", help="CSV output (default power.csv)")
    power.add_argument("--figure", default="power.png", help="PNG output (default power.png)")
    power.add_argument(
        "--no-figure", action="store_true", help="write the CSV only (no matplotlib needed)"
    )
    power.set_defaults(func=_cmd_experiment_power)
    _add_batch_size_parser(experiments)


def _cmd_warmup(args: argparse.Namespace) -> int:
    """Compile (or load from Numba's disk cache) every fused kernel and say how long it took."""
    import time

    start = time.perf_counter()
    from pnref.kernels import warmup

    timings = warmup(jobs=args.jobs)
    for name, seconds in timings.items():
        if name != "total":
            print(f"  {name:<18} {seconds:8.2f} s")
    print(f"pnref warmup: compiled and cached every kernel in "
          f"{time.perf_counter() - start:.1f} s (import included)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pnref",
        description="Numerical reference for Proxy Normalization (arXiv 2106.03743).",
    )
    parser.add_argument("--version", action="version", version=f"pnref {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="run the main job on its built-in default")
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser("check-gradients",
                       help="each op's VJP against central differences (float64), as a table")
    p.set_defaults(func=_cmd_check_gradients)
    p = sub.add_parser("warmup", help="compile and cache the fast-path Numba kernels")
    p.add_argument("--jobs", type=int, choices=(1, 2), default=None,
                   help="processes compiling at once (default: 2 when a second core is free)")
    p.set_defaults(func=_cmd_warmup)
    _add_train_parser(sub)
    _add_experiment_parser(sub)
    add_golden_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):  # `pnref` alone: the usage, like a group command
        parser.print_usage(sys.stderr)
        print("pnref: error: a command is required (pnref --help lists them)", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (CommandError, ValueError, OSError) as exc:  # its message, not a traceback
        print(f"pnref: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # commands save what they finished before this
        detail = str(stop)  # e.g. "metrics of the 40 steps done written to m.json"
        print(f"\npnref: interrupted{': ' + detail if detail else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
