"""The power experiment on natural images, over several runs, and its command at the edges.

Tiny networks (width 8, depth <= 4, 8x8 images): each case runs in well under a second.
"""

from __future__ import annotations

import csv
import importlib.util

import numpy as np
import pytest

from pnref.experiments import power
from pnref.experiments.power import (
    PowerSettings,
    draw_network,
    photo_crops,
    run_power_experiment,
    upscaled_digits,
)

pytest.importorskip("sklearn", reason="the photographs and digits need pnref[data]")

TINY_PHOTOS = PowerSettings(width=8, depth=4, image_size=8, inputs=12, groups=2, seed=1,
                            input_kind="photos", runs=2)


def test_photo_crops_are_standardized_pieces_of_the_photographs():
    photos = power._standardized_photos()
    pixels = np.concatenate([p.reshape(-1, 3) for p in photos])
    # Standardized over both photographs' 546,560 pixels per channel, two-pass: rounding only.
    np.testing.assert_allclose(pixels.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(pixels.std(axis=0), 1.0, rtol=1e-12)
    crops = photo_crops(np.random.default_rng(0), 5, 7)
    assert crops.shape == (5, 7, 7, 3)
    for crop in crops:  # each crop is found, exactly, somewhere in one of the photographs
        found = False
        for photo in photos:
            rows, cols = np.nonzero(np.all(photo == crop[0, 0], axis=-1))
            found |= any(np.array_equal(photo[r : r + 7, c : c + 7], crop)
                         for r, c in zip(rows, cols, strict=True))
        assert found


def test_upscaled_digits_repeat_each_pixel():
    images = upscaled_digits(np.random.default_rng(0), 6, 16)
    assert images.shape == (6, 16, 16, 1)
    small = images[:, ::2, ::2, 0]
    # Nearest neighbour at factor 2: every 2x2 block is one digit pixel, copied exactly.
    np.testing.assert_array_equal(images[..., 0], np.repeat(np.repeat(small, 2, 1), 2, 2))
    digits = power._standardized_digits()
    assert all(any(np.array_equal(d, s) for d in digits) for s in small)


def test_every_run_draws_fresh_inputs_and_weights():
    first, second = draw_network(TINY_PHOTOS, 0), draw_network(TINY_PHOTOS, 1)
    assert not np.array_equal(first.inputs, second.inputs)
    assert not np.array_equal(first.weights[0], second.weights[0])
    again = draw_network(TINY_PHOTOS, 0)  # seeded: the same run draws the same network
    np.testing.assert_array_equal(first.weights[-1], again.weights[-1])
    assert first.inputs.shape == (12, 8, 8, 3)
    digits = draw_network(PowerSettings(width=8, depth=2, image_size=8, inputs=4, groups=2,
                                        input_kind="digits"))
    assert digits.weights[0].shape == (8, 3, 3, 1)  # one input channel


def test_natural_images_show_instance_norms_failure_mode():
    # With crops of photographs the inputs differ in brightness and colour, so the instance
    # means vary a lot between inputs, except under IN, which sets every one to 0. Seeded;
    # the observed shares are ~40 % (BN) against ~1e-31 (IN), the margins below are wide.
    result = run_power_experiment(TINY_PHOTOS, norms=("BN", "IN", "LN+PN"))
    last = result.shares[:, :, -1, 1]  # instance-mean share, (norm, run)
    assert np.all(last[1] < 1e-20)
    assert np.all(last[0] > 0.05) and np.all(last[2] > 0.05)
    assert result.shares.shape == (3, 2, 4, 3)


def test_table_and_titles_give_mean_spread_and_names():
    result = run_power_experiment(TINY_PHOTOS, norms=("BN",))
    row = power.last_layer_table(result).splitlines()[2].split("|")
    last = 100 * result.shares[0, :, -1, 1]
    assert row[3].strip() == f"{last.mean():.3g} +- {last.std():.2g}"
    title = power._panel_title("BN", result.shares[0, :, -1])
    for name in ("channel constant", "instance-mean var.", "within-instance"):
        assert name in title
    assert f"instance-mean var. {last.mean():.1f} ± {last.std():.1f}" in title


CLI_TINY = ["experiment", "power", "--width", "8", "--depth", "3", "--image-size", "8",
            "--inputs", "6", "--groups", "2", "--runs", "2"]


def test_norms_any_case_and_progress_with_eta(tmp_path, capsys):
    from pnref.cli import main

    for spelling in ("bn,ln+pn", "BN,LN+PN"):
        out = tmp_path / f"{spelling}.csv"
        assert main([*CLI_TINY, "--norms", spelling, "--csv", str(out), "--no-figure"]) == 0
        with out.open() as handle:
            norms = [r["norm"] for r in csv.DictReader(handle)]
        assert norms == ["BN"] * 6 + ["LN+PN"] * 6  # 2 runs x 3 layers each
    err = capsys.readouterr().err
    assert "12/12" in err and "ETA" in err  # norms x runs x layers, elapsed and estimate
    assert main([*CLI_TINY, "--norms", "bn,xn", "--no-figure"]) == 2
    assert "--norms 'bn,xn': unknown 'xn'" in capsys.readouterr().err


def test_missing_extras_fail_in_one_line_before_work(tmp_path, monkeypatch, capsys):
    from pnref.cli import main

    real = importlib.util.find_spec
    for missing, extra, args in (("matplotlib", "plot", []),
                                 ("sklearn", "data", ["--no-figure", "--input", "digits"])):
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a, m=missing: None if name == m else real(name, *a))
        monkeypatch.setattr(power, "draw_network", lambda *a: pytest.fail("computed"))
        code = main([*CLI_TINY, *args, "--csv", str(tmp_path / "p.csv"),
                     "--figure", str(tmp_path / "p.png")])
        assert code == 2
        assert capsys.readouterr().err == (
            f"pnref: error: experiment power needs {missing}: pip install 'pnref[{extra}]'\n")
        monkeypatch.undo()
    assert not (tmp_path / "p.csv").exists()


def test_bad_outputs_fail_before_work(tmp_path, monkeypatch, capsys):
    from pnref.cli import main

    monkeypatch.setattr(power, "draw_network", lambda *a: pytest.fail("computed"))
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main([*CLI_TINY, "--csv", str(a_file / "p.csv"), "--no-figure"]) == 2
    assert f"--csv {a_file / 'p.csv'}" in capsys.readouterr().err
    # A bad --figure is found before the CSV is written, not after.
    assert main([*CLI_TINY, "--csv", str(tmp_path / "p.csv"), "--figure", str(tmp_path)]) == 2
    assert f"--figure {tmp_path}: is a directory" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_ctrl_c_writes_the_layers_done(tmp_path, monkeypatch, capsys):
    from pnref.cli import main

    real = power.power_decomposition
    calls = {"n": 0}

    def decomposition(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # Ctrl-C during the 5th (norm, run, layer)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(power, "power_decomposition", decomposition)
    out = tmp_path / "p.csv"
    assert main([*CLI_TINY, "--norms", "BN,IN", "--csv", str(out), "--no-figure"]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "pnref: interrupted" and "Traceback" not in err
    assert "wrote the 4 of 12 (norm, run, layer) done" in err
    with out.open() as handle:
        rows = [(r["norm"], r["run"], r["layer"]) for r in csv.DictReader(handle)]
    # Runs are the outer loop: run 0 of BN (3 layers), then IN's first layer.
    assert rows == [("BN", "0", "1"), ("BN", "0", "2"), ("BN", "0", "3"), ("IN", "0", "1")]


def test_figure_is_written_atomically(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (pnref[plot]) not installed")
    result = run_power_experiment(TINY_PHOTOS, norms=("BN", "IN"))
    path = power.plot_power(result, tmp_path / "power.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["power.png"]  # no temporary file left
