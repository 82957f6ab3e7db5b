"""`pnref train` as a person meets it (issue 14): extras, outputs, Ctrl-C, divergence, JSON.

Each test reproduces a row of issue 14's table; training runs on the seeded synthetic data set
with one epoch and a tiny network, so each takes well under a second after the first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import default_sigint

from pnref.cli import main
from pnref.nn import DIVERGENCE_FACTOR

FAST = ["--dataset", "synthetic", "--model", "mlp", "--widths", "16", "--norm", "ln",
        "--epochs", "1", "--quiet"]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err  # one line, nothing else
    return lines[0]


def test_digits_without_scikit_learn_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    # Row 1: the default dataset needs scikit-learn. A None entry in sys.modules makes the
    # import machinery report it as absent, as in a venv without pnref[data].
    monkeypatch.setitem(sys.modules, "sklearn", None)
    output = tmp_path / "m.json"
    status = main(["train", "--epochs", "1", "--quiet", "--output", str(output)])
    line = _error_line(capsys)
    assert status == 2
    assert line == ("pnref: error: pnref train --dataset digits needs scikit-learn: "
                    "pip install 'pnref[data]'")
    assert not output.exists()


@pytest.mark.parametrize("case", ["directory", "unwritable", "proc"])
def test_bad_output_fails_before_training_and_names_the_path(tmp_path, monkeypatch, capsys,
                                                             case):
    # Rows 3 and 7: a directory, a folder that cannot be written, /proc/version. The train
    # function is replaced by one that fails the test: the check must come first.
    import pnref.nn

    def must_not_train(*args, **kwargs):
        raise AssertionError("trained before checking --output")

    monkeypatch.setattr(pnref.nn, "train", must_not_train)
    if case == "directory":
        output = tmp_path
    elif case == "unwritable":
        blocker = tmp_path / "a_file"
        blocker.write_text("")
        output = blocker / "sub" / "m.json"  # its parent cannot be created under a file
    else:
        if not Path("/proc/version").exists():
            pytest.fail("/proc/version is missing: this test needs Linux's /proc")
        output = Path("/proc/version")
    status = main(["train", *FAST, "--output", str(output)])
    line = _error_line(capsys)
    assert status == 2
    assert line.startswith(f"pnref: error: --output {output}")


def test_missing_parent_folder_is_created(tmp_path, capsys):
    output = tmp_path / "new" / "folder" / "m.json"
    assert main(["train", *FAST, "--output", str(output)]) == 0
    metrics = json.loads(output.read_text())
    assert metrics["steps"] > 0 and metrics["interrupted"] is False


def test_a_write_failure_at_the_end_rescues_the_metrics(tmp_path, monkeypatch, capsys):
    # The folder disappears during the run: the metrics go to a temporary file, named.
    import shutil

    import pnref.nn

    folder = tmp_path / "out"
    real_train = pnref.nn.train

    def train_then_remove_folder(*args, **kwargs):
        result = real_train(*args, **kwargs)
        shutil.rmtree(folder)
        return result

    monkeypatch.setattr(pnref.nn, "train", train_then_remove_folder)
    status = main(["train", *FAST, "--output", str(folder / "m.json")])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    rescued = Path(err.split("saved to ")[-1].strip())
    try:
        assert json.loads(rescued.read_text())["steps"] > 0
    finally:
        rescued.unlink()


@pytest.mark.parametrize("lr", ["1e6", "1e9"])
def test_huge_learning_rate_is_diverged_and_strict_json(tmp_path, capsys, lr):
    # Row 6: the loss blew up to 1e57 with "diverged": false and a bare NaN in the file.
    output = tmp_path / "m.json"
    assert main(["train", *FAST, "--lr", lr, "--output", str(output)]) == 0
    text = output.read_text()
    for bare in ("NaN", "Infinity"):
        assert bare not in text  # JSON.parse rejects them
    metrics = json.loads(text)
    assert metrics["diverged"] is True
    for key, reason in metrics.get("null_reasons", {}).items():
        assert metrics[key] is None and reason
    # Stopped at the first step whose loss left the bound: no step of a diverged run is kept.
    assert metrics["steps"] < 25


def test_divergence_rule_stops_at_the_documented_multiple(monkeypatch):
    # A loss sequence that grows geometrically: training stops at the first step whose loss
    # exceeds DIVERGENCE_FACTOR times the first loss, and not before.
    import importlib

    import numpy as np

    from pnref.nn import TrainConfig, synthetic_images

    train_module = importlib.import_module("pnref.nn.train")  # the module, not the function
    growth = 7.0  # log(100) / log(7) = 2.37 is far from an integer: no tie at the bound
    real = train_module.make_loss

    def growing_loss(model, holder):
        loss = real(model, holder)
        calls = []

        def scaled(params, x, y):
            calls.append(1)
            return loss(params, x, y) * growth ** (len(calls) - 1)

        return scaled

    monkeypatch.setattr(train_module, "make_loss", growing_loss)
    config = TrainConfig(model="mlp", norm="ln", epochs=1, lr=1e-9,
                         model_options={"hidden": (8,)})
    metrics = train_module.train(config, synthetic_images(200, seed=1), progress=False)
    # The loss barely moves at lr 1e-9, so step k's loss is ~ growth**k times the first:
    # the first k with growth**k > DIVERGENCE_FACTOR, k = floor(log F / log g) + 1, stops
    # training after k good steps (steps 0 .. k-1).
    expected_steps = int(np.floor(np.log(DIVERGENCE_FACTOR) / np.log(growth))) + 1
    assert metrics["diverged"] is True
    assert metrics["steps"] == expected_steps


def test_ctrl_c_writes_the_metrics_so_far(tmp_path):
    # Row 5: Ctrl-C during a real run (SIGINT to the process, as a terminal sends it).
    output = tmp_path / "m.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("CI", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "pnref", "train", "--dataset", "synthetic", "--model", "mlp",
         "--widths", "16", "--norm", "ln", "--epochs", "40", "--output", str(output)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=default_sigint,
    )
    # Not a terminal: the bar writes a line every 10 % of the 40 x 25 steps, so the first line
    # comes after 100 steps with 900 to go when the signal is sent.
    first_progress = process.stderr.readline()
    assert "/" in first_progress, first_progress
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate()
    assert process.returncode == 130
    lines = [line for line in rest.splitlines() if line.strip() and "ETA" not in line]
    assert len(lines) == 1 and "Traceback" not in rest, rest
    assert lines[0].startswith("pnref: interrupted: metrics of the ")
    metrics = json.loads(output.read_text())
    assert metrics["interrupted"] is True
    assert 100 <= metrics["steps"] < 40 * 25


def test_non_finite_metrics_are_null_with_a_reason():
    from pnref.cli import train_metrics_json

    metrics = {"train_loss": float("nan"), "test_loss": float("inf"), "steps": 0,
               "diverged": True, "test_accuracy": 0.25}
    text = train_metrics_json(metrics)
    parsed = json.loads(text)  # json.loads accepts NaN; the text must not contain it at all
    assert "NaN" not in text and "Infinity" not in text
    assert parsed["train_loss"] is None and parsed["test_loss"] is None
    assert parsed["null_reasons"] == {
        "train_loss": "not a number: no training step finished",
        "test_loss": "inf (not finite): the training diverged",
    }
    assert parsed["test_accuracy"] == 0.25
