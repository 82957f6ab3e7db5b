"""The command line answers --help and --version, as a console script and as python -m."""

import subprocess
import sys

import pnref
from pnref.cli import main


def test_version_flag(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:  # argparse exits after printing the version
        assert exc.code == 0
    assert capsys.readouterr().out.strip() == f"pnref {pnref.__version__}"


def test_python_dash_m_help():
    done = subprocess.run(
        [sys.executable, "-m", "pnref", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "usage: pnref" in done.stdout
    assert "demo" in done.stdout
