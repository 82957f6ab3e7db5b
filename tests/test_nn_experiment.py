"""The batch-size experiment on a tiny synthetic configuration: files, table and plot."""

from __future__ import annotations

import csv

import pytest

from pnref.experiments.batch_size import BatchSizeSettings, markdown_table, run_and_save


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("batch_size")
    settings = BatchSizeSettings(norms=("bn", "gn+pn"), batch_sizes=(8, 32), seeds=(0, 1),
                                 epochs=1, widths=(4, 4), dataset="synthetic")
    rows = run_and_save(settings, out, plot=False, progress=False)
    return settings, rows, out


def test_one_row_per_run_with_scaled_learning_rate(tiny_run):
    settings, rows, out = tiny_run
    assert [(r["norm"], r["batch_size"], r["seed"]) for r in rows] == [
        (n, b, s) for n in settings.norms for b in settings.batch_sizes for s in settings.seeds
    ]
    for row in rows:
        # the same float64 expression as BatchSizeSettings.lr_for: equal up to rounding
        assert row["lr"] == pytest.approx(0.2 * row["batch_size"] / 64, rel=1e-15)
        assert row["steps"] == 800 // row["batch_size"]  # 1 epoch, last batch dropped
    with open(out / "batch_size.csv") as f:
        written = list(csv.DictReader(f))
    assert len(written) == len(rows)
    # csv writes str(float), the shortest repr, which reads back to the same float exactly
    assert float(written[0]["test_accuracy"]) == rows[0]["test_accuracy"]


def test_markdown_table_has_mean_and_spread(tiny_run):
    _, rows, out = tiny_run
    table = markdown_table(rows).splitlines()
    assert table[0] == "| norm | batch 8 | batch 32 |"
    accs = [100 * r["test_accuracy"] for r in rows if r["norm"] == "bn" and r["batch_size"] == 8]
    mean = sum(accs) / 2
    std = abs(accs[0] - accs[1]) / 2  # population std of two values
    assert table[2].startswith("| bn |")
    assert table[2].split("|")[2].strip() == f"{mean:.1f} +- {std:.1f}"
    assert (out / "batch_size.md").read_text().endswith(markdown_table(rows))


def test_plot_when_matplotlib_is_installed(tiny_run, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (pnref[plot]) not installed")
    from pnref.experiments.batch_size import plot_accuracy

    _, rows, _ = tiny_run
    plot_accuracy(rows, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_norm_is_rejected():
    with pytest.raises(ValueError, match="unknown names"):
        BatchSizeSettings(norms=("bn", "xx"))


def test_cli_batch_size_command(tmp_path, capsys):
    from pnref.cli import main

    code = main(["experiment", "batch-size", "--dataset", "synthetic", "--norms", "ln,gn+pn",
                 "--batch-sizes", "32", "--seeds", "0", "--epochs", "1", "--widths", "4", "4",
                 "--no-plot", "--jobs", "1", "--out-dir", str(tmp_path)])
    assert code == 0
    with open(tmp_path / "batch_size.csv") as f:
        assert [r["norm"] for r in csv.DictReader(f)] == ["ln", "gn+pn"]
    out = capsys.readouterr().out
    assert "| norm | batch 32 |" in out and "batch-size experiment took" in out
    assert not (tmp_path / "batch_size.png").exists()
