"""The installed dependency set imports together (numba refuses NumPy releases it does not know)."""

import importlib.metadata as md

import numpy as np


def _major_minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def test_numba_imports_with_installed_numpy():
    import numba  # raises ImportError if the NumPy version is outside numba's range

    assert numba.__version__
    assert _major_minor(np.__version__) < (2, 5), "pyproject caps numpy below 2.5"


def test_autograd_within_declared_bounds():
    assert (1, 9) <= _major_minor(md.version("autograd")) < (2, 0)

