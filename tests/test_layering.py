"""Nothing lower in pnref's layering imports anything higher (docs/architecture.md).

Each module is parsed (not imported) and every ``pnref.*`` import, at module level or inside a
function, is checked against the layer table below. A module missing from the table fails the
test, so a new module has to be placed in a layer on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pnref"

# Longest prefix wins: "pnref.moments.exact" is found under "pnref.moments".
LAYERS = {
    "pnref._validation": 0,
    "pnref._version": 0,
    "pnref._progress": 0,
    "pnref._outputs": 0,
    "pnref.activations": 1,
    "pnref.norms": 1,
    "pnref.moments": 1,
    "pnref.oracle": 1,
    "pnref.pn_act": 1,
    "pnref.blocks_ref": 1,
    "pnref.kernels": 2,
    "pnref.blocks": 2,
    "pnref.autograd_ops": 3,
    "pnref.nn": 4,
    "pnref.experiments": 5,
    "pnref.golden": 5,
    "pnref.adapters": 5,
    "pnref.verification": 6,
    "pnref.demo": 6,
    "pnref.cli": 6,
    "pnref.__main__": 6,
    "pnref.gradient_check": 5,
}


def _layer(module: str) -> int | None:
    best = None
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    return None if best is None else best[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _pnref_imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pnref"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = module.split(".")
                if not path.name == "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("pnref"):
                # "from pnref import x" may name a submodule x: then x is what is imported
                for alias in node.names:
                    submodule = f"{target}.{alias.name}"
                    found.add(submodule if _layer(submodule) is not None else target)
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_only_from_its_layer_or_below(path):
    module = _module_name(path)
    own = _layer(module)
    assert own is not None, f"{module} is not placed in a layer of tests/test_layering.py"
    for target in _pnref_imports(path, module):
        layer = _layer(target)
        if layer is None:  # "pnref" itself: only the top layers may use the package front
            assert own >= 5 or target != "pnref", f"{module} imports the package front"
            continue
        assert layer <= own, f"{module} (layer {own}) imports {target} (layer {layer})"
