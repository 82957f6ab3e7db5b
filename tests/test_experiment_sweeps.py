"""The batch-size sweep on executors: worker processes, a Dask cluster, Ctrl-C and --resume.

A tiny synthetic sweep (4 runs of 12 steps of a CNN with 4 channels) keeps every test short;
what is checked is the bookkeeping, so the sizes do not matter.
"""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import default_sigint

from pnref.experiments import batch_size
from pnref.experiments.batch_size import (
    CSV_FIELDS,
    BatchSizeSettings,
    planned_runs,
    process_pool,
    read_csv_rows,
    run_and_save,
    run_batch_size_experiment,
)

TINY = BatchSizeSettings(norms=("bn", "gn+pn"), batch_sizes=(64,), seeds=(0, 1), epochs=1,
                         widths=(4, 4), dataset="synthetic")


def _without_time(rows: list[dict]) -> list[dict]:
    """The rows without ``seconds`` (wall-clock time, the one column allowed to differ)."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.fixture(scope="module")
def serial_rows() -> list[dict]:
    return run_batch_size_experiment(TINY, progress=False)


def test_serial_rows_follow_the_plan(serial_rows):
    assert [(r["norm"], r["batch_size"], r["seed"]) for r in serial_rows] == planned_runs(TINY)
    assert all(set(row) == set(CSV_FIELDS) for row in serial_rows)


def test_worker_processes_give_bit_identical_rows(serial_rows):
    # Each run is seeded and single-threaded wherever it executes: exactly the same floats.
    with process_pool(2) as pool:
        parallel = run_batch_size_experiment(TINY, executor=pool, progress=False)
    assert _without_time(parallel) == _without_time(serial_rows)


def test_dask_cluster_runs_the_same_sweep(serial_rows):
    distributed = pytest.importorskip("distributed", reason="pnref[dask] not installed")
    # A local cluster in this process (one worker thread, no network beyond localhost): the
    # executor interface is what a multi-machine cluster offers too.
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            rows = run_batch_size_experiment(TINY, executor=client.get_executor(),
                                             progress=False)
    assert _without_time(rows) == _without_time(serial_rows)


def _interrupt_after(calls: int, monkeypatch) -> None:
    """Make the ``calls``-th training raise KeyboardInterrupt, as a Ctrl-C there would."""
    real_train = batch_size.train
    count = {"n": 0}

    def train(*args, **kwargs):
        count["n"] += 1
        if count["n"] == calls:
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(batch_size, "train", train)


def test_ctrl_c_keeps_finished_runs_and_resume_completes(tmp_path, monkeypatch, capsys,
                                                         serial_rows):
    from pnref.cli import main

    args = ["experiment", "batch-size", "--dataset", "SYNTHETIC", "--norms", "BN,gn+PN",
            "--batch-sizes", "64", "--seeds", "0", "1", "--epochs", "1", "--widths", "4", "4",
            "--no-plot", "--jobs", "1", "--out-dir", str(tmp_path)]
    _interrupt_after(3, monkeypatch)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "pnref: interrupted" and "Traceback" not in err
    kept = read_csv_rows(tmp_path / "batch_size.csv")
    assert _without_time(kept) == _without_time(serial_rows[:2])  # the two finished runs
    monkeypatch.undo()

    # Without --resume the finished runs are not thrown away: the command refuses.
    assert main(args) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "2 runs on 1 process; 2 runs kept from batch_size.csv" in out
    assert _without_time(read_csv_rows(tmp_path / "batch_size.csv")) == _without_time(
        serial_rows)


def test_resume_refuses_other_settings(tmp_path, serial_rows):
    batch_size.write_csv(serial_rows[:1], tmp_path / "batch_size.csv")
    other = BatchSizeSettings(norms=("bn",), batch_sizes=(64,), seeds=(0,), epochs=2,
                              widths=(4, 4), dataset="synthetic")
    with pytest.raises(batch_size.CommandError, match="epochs=1, this sweep 2"):
        run_and_save(other, tmp_path, plot=False, progress=False, resume=True)


def test_missing_extras_and_bad_out_dir_fail_before_any_work(tmp_path, monkeypatch, capsys):
    import importlib.util

    from pnref.cli import main

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a))
    monkeypatch.setattr(batch_size, "train", lambda *a, **k: pytest.fail("trained"))
    base = ["experiment", "batch-size", "--dataset", "synthetic", "--jobs", "1"]
    assert main([*base, "--out-dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        "pnref: error: experiment batch-size needs matplotlib: pip install 'pnref[plot]'\n")
    assert not (tmp_path / "out").exists()

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main([*base, "--no-plot", "--out-dir", str(a_file)]) == 2
    assert "--out-dir" in capsys.readouterr().err
    (tmp_path / "out" / "batch_size.md").mkdir(parents=True)  # an output taken by a folder
    assert main([*base, "--no-plot", "--out-dir", str(tmp_path / "out")]) == 2
    assert "batch_size.md: is a directory" in capsys.readouterr().err


def test_progress_and_two_panel_figure(tmp_path, capsys, serial_rows):
    run_and_save(TINY, tmp_path, plot=True, progress=True, jobs=1)
    err = capsys.readouterr().err
    assert "4/4" in err and "ETA" in err  # runs done of total, elapsed and estimate
    figure = tmp_path / "batch_size.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    relative = batch_size._relative_to_bn(serial_rows)
    # BN against itself is 0 for every seed; gn+pn's difference is paired seed by seed.
    assert relative[("bn", 64)].tolist() == [0.0, 0.0]
    expected = [100 * (serial_rows[2 + s]["test_accuracy"] - serial_rows[s]["test_accuracy"])
                for s in (0, 1)]
    assert relative[("gn+pn", 64)].tolist() == expected


def _data_rows(path: Path) -> int:
    try:
        with path.open() as handle:
            return max(sum(1 for _ in csv.reader(handle)) - 1, 0)
    except FileNotFoundError:
        return 0


def test_sigint_to_parallel_sweep_keeps_every_finished_run(tmp_path):
    # A real Ctrl-C on a real run with two worker processes: the signal arrives once the
    # first run is in the CSV; the command stops its workers, prints one line, exits 130.
    csv_path = tmp_path / "batch_size.csv"
    command = [sys.executable, "-m", "pnref", "experiment", "batch-size", "--dataset",
               "synthetic", "--batch-sizes", "64", "--seeds", "0", "1", "2", "3", "--epochs",
               "1", "--widths", "4", "4", "--no-plot", "--jobs", "2", "--out-dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=default_sigint)
    while _data_rows(csv_path) == 0 and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()  # still running: 36 runs planned
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)  # a hang guard, not a timing assertion
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "pnref: interrupted" and "Traceback" not in err
    rows = read_csv_rows(csv_path)
    assert 1 <= len(rows) < 36
    assert len({(r["norm"], r["seed"]) for r in rows}) == len(rows)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_each_run_uses_one_blas_and_one_numba_thread():
    import numba
    from threadpoolctl import threadpool_info

    before = numba.get_num_threads()
    with batch_size.one_thread_per_run():
        assert numba.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    assert numba.get_num_threads() == before  # restored for whatever runs next
