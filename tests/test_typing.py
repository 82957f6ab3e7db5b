"""Packaging for type checkers: a ``py.typed`` marker and a fully annotated public API.

Every function that a public module lists in ``__all__`` (and every public method of a class
it lists) has an annotation on each parameter and on its return value.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import pnref

ROOT = Path(__file__).resolve().parents[1]


def _public_modules() -> list[str]:
    names = ["pnref"] + [m.name for m in pkgutil.walk_packages(pnref.__path__, "pnref.")]
    return [n for n in names if not any(part.startswith("_") for part in n.split("."))]


def _public_functions():
    seen = {}
    for module_name in _public_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                found = [(f"{obj.__module__}.{obj.__qualname__}", obj)]
            elif inspect.isclass(obj):
                found = [(f"{obj.__module__}.{obj.__qualname__}.{attr}", member)
                         for attr, member in vars(obj).items()
                         if inspect.isfunction(member)
                         and (attr == "__init__" or not attr.startswith("_"))]
            else:
                continue
            for qualname, function in found:
                if function.__module__.startswith("pnref"):
                    seen[qualname] = function
    return sorted(seen.items())


def test_py_typed_marker_is_shipped():
    assert (ROOT / "pnref" / "py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()  # tomllib is Python >= 3.11 only
    section = pyproject.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert '"py.typed"' in section


def test_the_walk_finds_the_api():
    names = {name for name, _ in _public_functions()}
    assert "pnref.pn_act.pn_act" in names and "pnref.nn.train.train" in names
    assert len(names) > 100


@pytest.mark.parametrize("qualname, function", _public_functions(), ids=lambda v: str(v)
                         if isinstance(v, str) else "")
def test_public_function_is_fully_annotated(qualname, function):
    signature = inspect.signature(function)
    missing = [p.name for p in signature.parameters.values()
               if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
    if signature.return_annotation is inspect.Signature.empty:
        missing.append("return")
    assert not missing, f"{qualname}: no annotation for {', '.join(missing)}"
