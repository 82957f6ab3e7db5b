"""The API page shows types without literal backticks (issue 14, row "the API page").

mkdocstrings renders the type of a numpydoc ``name : type`` line as code, so markup inside
it (````x````, ```NORMS```) shows as literal backticks. Every module on docs/api.md is parsed
(not imported) and each type line of its Parameters / Returns / Yields / Raises / Attributes
sections must be plain text; the markup belongs in the description below it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {"Parameters", "Other Parameters", "Returns", "Yields", "Receives", "Raises",
            "Warns", "Attributes"}
RULE = re.compile(r"\s*-{3,}\s*")


def _api_files() -> list[Path]:
    modules = re.findall(r"^::: (\S+)", (ROOT / "docs" / "api.md").read_text(), re.M)
    files = []
    for module in modules:
        base = ROOT / Path(*module.split("."))
        files += sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
    # Private modules (_fused.py) are not on the page: mkdocs.yml filters "!^_".
    return [f for f in files if f.name == "__init__.py" or not f.name.startswith("_")]


def type_lines(docstring: str) -> list[str]:
    """The ``name : type`` lines (and bare type lines) of the numpydoc sections listed above."""
    lines = docstring.expandtabs().splitlines()
    found, section, indent = [], None, 0
    for i, line in enumerate(lines):
        if line.strip() and i + 1 < len(lines) and RULE.fullmatch(lines[i + 1]):
            section, indent = line.strip(), len(line) - len(line.lstrip())
        elif (section in SECTIONS and line.strip() and not RULE.fullmatch(line)
              and len(line) - len(line.lstrip()) == indent):
            found.append(line.strip())
    return found


def test_type_lines_are_found():
    doc = "f\n\nParameters\n----------\nx : ndarray, shape of ``y``\n    The input.\n"
    assert type_lines(doc) == ["x : ndarray, shape of ``y``"]


@pytest.mark.parametrize("path", _api_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_markup_in_documented_types(path):
    tree = ast.parse(path.read_text())
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=True)
            bad += [f"{getattr(node, 'name', '<module>')}: {line}"
                    for line in type_lines(doc or "") if "`" in line]
    assert not bad, "backticks in a docstring type (shown literally on the API page):\n" + \
        "\n".join(bad)
