"""The command line behaves the same everywhere (issue 14): any case, groups need an action."""

from __future__ import annotations

import csv
import json

import pytest

from pnref.cli import BACKENDS, DATASETS, TRAIN_NORMS, _choice_list, build_parser, main


def test_cli_choice_lists_match_the_library():
    import pnref.blocks
    from pnref.nn import NORMS

    assert TRAIN_NORMS == NORMS
    assert set(DATASETS) == {"digits", "synthetic"}
    assert BACKENDS == pnref.blocks.BACKENDS


@pytest.mark.parametrize("argv", [["experiment"], ["golden"], []])
def test_a_group_without_its_subcommand_exits_2_with_usage(argv, capsys):
    # Row "pnref experiment with no subcommand: exit 0".
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own usage error
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2
    assert "usage: pnref" in err and "Traceback" not in err


def test_train_choices_accept_any_case(tmp_path, capsys):
    output = tmp_path / "m.json"
    status = main(["train", "--dataset", "SYNTHETIC", "--model", "MLP", "--widths", "8",
                   "--norm", "GN+PN", "--groups", "2", "--backend", "NumPy", "--epochs", "1",
                   "--quiet", "--output", str(output)])
    assert status == 0, capsys.readouterr().err
    config = json.loads(output.read_text())["config"]
    assert config["norm"] == "gn+pn" and config["model"] == "mlp"
    assert config["model_options"]["backend"] == "numpy"


def test_an_unknown_choice_is_still_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["train", "--norm", "pn+gn"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--norm" in err and "gn+pn" in err


def test_choice_list_maps_any_case_to_the_listed_spelling():
    assert _choice_list("bn, Gn+Pn,LN+WS", ("BN", "GN+PN", "LN+WS"), "--norms") == [
        "BN", "GN+PN", "LN+WS"]
    with pytest.raises(Exception, match=r"--norms 'bn,xx': unknown 'xx'; choose from BN, GN"):
        _choice_list("bn,xx", ("BN", "GN"), "--norms")


def test_power_norms_in_lower_case(tmp_path, capsys):
    # Row "--norms bn for power: rejected (uppercase only there)". A tiny network: 2 layers.
    table = tmp_path / "p.csv"
    status = main(["experiment", "power", "--norms", "bn,gn+pn", "--width", "8", "--depth", "2",
                   "--image-size", "4", "--inputs", "4", "--groups", "2", "--csv", str(table),
                   "--no-figure"])
    assert status == 0, capsys.readouterr().err
    with open(table) as f:
        norms = {row["norm"] for row in csv.DictReader(f)}
    assert norms == {"BN", "GN+PN"}


def test_activation_and_backend_names_accept_any_case():
    import numpy as np

    import pnref

    assert pnref.activation("ReLU").name == "relu"
    assert pnref.activation("Swish").name == "silu"
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 3))
    expected = pnref.norm_act(x, norm="gn", groups=2, backend="numpy", activation="silu")
    got = pnref.norm_act(x, norm="gn", groups=2, backend="NumPy", activation="SiLU")
    np.testing.assert_array_equal(got, expected)  # the same code path: bit-identical
