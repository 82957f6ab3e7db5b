"""The batch-size sweep now against the code the speed target was set on, side by side.

    python benchmarks/bench_sweep.py                   # the default sweep, 1 round
    python benchmarks/bench_sweep.py --rounds 2        # alternate baseline and current twice
    python benchmarks/bench_sweep.py --seeds 0         # a third of the sweep (36 runs)
    python benchmarks/bench_sweep.py --jobs 1 2        # the current code on 1 and 2 processes

Issue 15 set its target as "the default sweep in at most 1/3 of today's 343 s", measured on
the code of commit ``bc4fc91`` (one process, the NumPy blocks). This machine's speed drifts
by 10 to 30 % within minutes and by up to two-fold within the hour, so a time in seconds
from one day cannot judge the code of another: this benchmark checks out the baseline
commit into a temporary git worktree and runs its sweep and the current one alternately, in
the same minutes, with the same settings, then prints each run's wall-clock and CPU time
(the process and its workers) and the ratio current / baseline of every round. The target
is met when that ratio is at most 1/3.

Each sweep is the command a person runs (``python -m pnref experiment batch-size``) in a
fresh process, its output written to a temporary folder; the baseline with ``PYTHONPATH``
set to its worktree (checked: the child reports which ``pnref`` it imported). Both write the
same CSV columns for the accuracy figures; the benchmark also reports whether the two
sweeps' test accuracies agree (they need not to the last digit: the step changed its order
of floating-point operations in places). Needs a git checkout; takes minutes (the baseline
sweep alone took 343 s on an idle machine). Never part of the test suite.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The commit the issue-15 target was measured on (the last before that issue's work).
BASELINE = "bc4fc91"


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def children_cpu() -> float:
    """User + system CPU seconds of every finished child process (and their children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_sweep(code_dir: Path, out_dir: Path, options: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one sweep of the pnref in ``code_dir``."""
    env = dict(os.environ, PYTHONPATH=str(code_dir))
    command = [sys.executable, "-m", "pnref", "experiment", "batch-size", "--out-dir",
               str(out_dir), "--no-plot", *options]
    cpu_before, start = children_cpu(), time.perf_counter()
    done = subprocess.run(command, cwd=code_dir, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, children_cpu() - cpu_before
    if done.returncode != 0:
        sys.exit(f"bench_sweep: the sweep in {code_dir} failed ({done.returncode}):\n"
                 f"{done.stderr[-2000:]}")
    return wall, cpu


def imported_from(code_dir: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(code_dir))
    done = subprocess.run([sys.executable, "-c", "import pnref; print(pnref.__file__)"],
                          cwd=code_dir, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def accuracies(csv_path: Path) -> dict[tuple[str, str, str], float]:
    with open(csv_path, newline="") as f:
        return {(r["norm"], r["batch_size"], r["seed"]): float(r["test_accuracy"])
                for r in csv.DictReader(f)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=BASELINE,
                        help=f"git revision of the baseline (default {BASELINE})")
    parser.add_argument("--rounds", type=int, default=1,
                        help="baseline/current alternations (default 1)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[os.cpu_count() or 1],
                        help="worker processes of the current sweep, one run per value "
                             "(default: the machine's cores)")
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="a subset of the seeds, for both (default: the sweep's 0 1 2)")
    parser.add_argument("--batch-sizes", type=int, nargs="+",
                        help="a subset of the batch sizes, for both (default: 2 4 16 64)")
    args = parser.parse_args()
    if args.rounds < 1 or any(j < 1 for j in args.jobs):
        parser.error("--rounds and --jobs must be positive")
    options = []
    if args.seeds:
        options += ["--seeds", *map(str, args.seeds)]
    if args.batch_sizes:
        options += ["--batch-sizes", *map(str, args.batch_sizes)]

    with tempfile.TemporaryDirectory(prefix="pnref-bench-sweep-") as scratch:
        scratch_dir = Path(scratch)
        baseline_dir = scratch_dir / "baseline"
        added = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach",
                                str(baseline_dir), args.baseline],
                               capture_output=True, text=True)
        if added.returncode != 0:
            sys.exit(f"bench_sweep: cannot check out {args.baseline} (a git checkout is "
                     f"needed): {added.stderr.strip()}")
        try:
            for code_dir in (baseline_dir, REPO):
                where = imported_from(code_dir)
                if not where.startswith(str(code_dir)):
                    sys.exit(f"bench_sweep: {code_dir} imported pnref from {where}")
            commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip()
            if subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                               "pnref"], capture_output=True, text=True).stdout.strip():
                commit += " + uncommitted changes"
            print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                  f"Python {platform.python_version()}; baseline {args.baseline}, current "
                  f"{commit or 'working tree'}; sweep options: {' '.join(options) or 'default'}")
            # One small untimed sweep of each first: imports, caches and Numba's compiled
            # kernels are then warm for both.
            for name, code_dir in (("baseline", baseline_dir), ("current", REPO)):
                run_sweep(code_dir, scratch_dir / f"warm-{name}",
                          ["--batch-sizes", "64", "--seeds", "0", "--epochs", "1"])
            print(f"{'round':>5}  {'code':<22} {'wall s':>8} {'CPU s':>8}  load (1/5/15 min)")
            for round_number in range(1, args.rounds + 1):
                load = load_average()
                base_out = scratch_dir / f"baseline-{round_number}"
                base_wall, base_cpu = run_sweep(baseline_dir, base_out, options)
                print(f"{round_number:>5}  {'baseline, 1 process':<22} {base_wall:8.1f} "
                      f"{base_cpu:8.1f}  {load}")
                for jobs in args.jobs:
                    load = load_average()
                    out = scratch_dir / f"current-{round_number}-{jobs}"
                    wall, cpu = run_sweep(REPO, out, [*options, "--jobs", str(jobs)])
                    print(f"{round_number:>5}  {f'current, {jobs} process(es)':<22} "
                          f"{wall:8.1f} {cpu:8.1f}  {load}   current / baseline: "
                          f"wall {wall / base_wall:.3f}, CPU {cpu / base_cpu:.3f}")
            base_acc = accuracies(base_out / "batch_size.csv")
            current_acc = accuracies(out / "batch_size.csv")
            if set(base_acc) != set(current_acc):
                print("the two sweeps ran different runs")
            else:
                worst = max(abs(base_acc[k] - current_acc[k]) for k in base_acc)
                equal = sum(base_acc[k] == current_acc[k] for k in base_acc)
                print(f"test accuracies: {equal} of {len(base_acc)} runs equal; largest "
                      f"difference {100 * worst:.1f} points")
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(baseline_dir)], capture_output=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the temporary worktree is already removed (main's finally)
        print("bench_sweep: interrupted", file=sys.stderr)
        sys.exit(130)
