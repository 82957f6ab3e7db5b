"""Review regressions: a bad option value is a one-line error and exit status 2, not a traceback."""

from __future__ import annotations

from pnref.cli import main


def test_train_bad_groups_is_a_clean_error(tmp_path, capsys):
    status = main(["train", "--dataset", "synthetic", "--epochs", "1", "--quiet",
                   "--groups", "5", "--output", str(tmp_path / "m.json")])
    err = capsys.readouterr().err
    assert status == 2
    assert "groups" in err and "Traceback" not in err
    assert not (tmp_path / "m.json").exists()


def test_train_bad_batch_size_is_a_clean_error(tmp_path, capsys):
    status = main(["train", "--dataset", "synthetic", "--batch-size", "0", "--quiet",
                   "--output", str(tmp_path / "m.json")])
    assert status == 2
    assert "batch_size" in capsys.readouterr().err


def test_unwritable_report_path_is_a_clean_error(tmp_path, capsys):
    missing = tmp_path / "no-such-dir" / "report.json"
    status = main(["golden", "verify", "--select", "group_norm.torch.g4.f32",
                   "--report", str(missing)])
    err = capsys.readouterr().err
    assert status == 2
    assert "report.json" in err and "Traceback" not in err
