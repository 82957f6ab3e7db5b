"""A golden suite as Python objects: `load_suite` and `GoldenCase`.

`load_suite` reads a suite directory (by default the bundled canonical suite), checks the
manifest's digest and every case entry, and returns the selected cases. A case's arrays are
read on first use and checked against the manifest's checksums, dtypes and shapes, so that a
damaged case file fails that case alone. This is the public API for users who parametrize
their own tests over the suite::

    import pytest
    from pnref.golden import load_suite

    CASES = load_suite(select=["group_norm.torch.*"])

    @pytest.mark.parametrize("case", CASES, ids=str)
    def test_my_group_norm(case):
        y = my_group_norm(case.inputs["x"], case.attrs["groups"], ...)
        case.assert_close(outputs={"y": y})
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pnref.golden import bundled_suite_dir
from pnref.golden.compare import Check, compare
from pnref.golden.format import (
    SuiteFormatError,
    array_sha256,
    check_digest,
    read_case_file,
    read_manifest,
)
from pnref.golden.ops import OPS
from pnref.golden.tolerances import Tolerance

__all__ = ["GoldenCase", "Suite", "load_suite", "matches"]


def matches(case_id: str, select: Sequence[str] = (), exclude: Sequence[str] = ()) -> bool:
    """Whether ``case_id`` is selected: it matches one ``select`` glob (or there is none)
    and no ``exclude`` glob. Globs (``*``, ``?``, ``[...]``) match the whole id, case
    sensitively: ``pn_act.*`` selects ``pn_act.official.relu.f64`` but not
    ``norm_pn_act.official.gn-relu.f32``."""
    if select and not any(fnmatch.fnmatchcase(case_id, p) for p in select):
        return False
    return not any(fnmatch.fnmatchcase(case_id, p) for p in exclude)


@dataclass
class GoldenCase:
    """One case of a suite: its manifest entry and (read on first use) its arrays.

    Attributes
    ----------
    id, op, profile, dtype, description : str
        From the manifest (``op`` is a key of `pnref.golden.ops.OPS`).
    attrs : dict
        The op's attributes, as an adapter receives them.
    tolerances : dict of str to Tolerance
        Keyed by expected array (``expected.y``, ``expected_grad.x``).
    entry : dict
        The whole manifest entry.
    file : Path
        The case file.
    """

    id: str
    op: str
    profile: str
    dtype: str
    description: str
    attrs: dict[str, Any]
    tolerances: dict[str, Tolerance]
    entry: dict[str, Any]
    file: Path
    _arrays: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return self.id

    @property
    def output_names(self) -> list[str]:
        """Names of the outputs the case checks (``y``, ``out``, ``mean`` ...)."""
        return [k.split(".", 1)[1] for k in self.tolerances if k.startswith("expected.")]

    @property
    def gradient_names(self) -> list[str]:
        """Names of the inputs whose gradients the case checks (empty: no VJP)."""
        return [k.split(".", 1)[1] for k in self.tolerances if k.startswith("expected_grad.")]

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the case file, after the checksum, dtype and shape checks.

        Raises
        ------
        SuiteFormatError
            If the file is unreadable, holds an array the manifest does not list, lacks a
            listed array, or an array's checksum, dtype or shape differs from the manifest
            (the message lists every problem).
        """
        if self._arrays is None:
            self._arrays = _checked_arrays(self.entry, self.file)
        return self._arrays

    def _group(self, prefix: str) -> dict[str, np.ndarray]:
        return {k.split(".", 1)[1]: v for k, v in self.arrays().items()
                if k.startswith(prefix + ".")}

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        """Input arrays by name, in the case's dtype."""
        return self._group("input")

    @property
    def cotangents(self) -> dict[str, np.ndarray]:
        """Cotangent of each output, in the case's dtype (empty when the case has no VJP)."""
        return self._group("cotangent")

    @property
    def expected(self) -> dict[str, np.ndarray]:
        """Expected outputs (float64) by output name."""
        return self._group("expected")

    @property
    def expected_grads(self) -> dict[str, np.ndarray]:
        """Expected gradients (float64) by input name."""
        return self._group("expected_grad")

    def cotangent_rms(self) -> float:
        """Root mean square of all cotangents (the scale floor of gradient checks)."""
        values = [c.astype(np.float64).ravel() for c in self.cotangents.values()]
        joined = np.concatenate(values) if values else np.zeros(0)
        return float(np.sqrt(np.mean(joined**2))) if joined.size else 0.0

    def check(self, key: str, actual: np.ndarray, tolerance: Tolerance | None = None, *,
              source: str = "suite") -> Check:
        """Compare ``actual`` with the expected array ``key`` (``expected.y`` ...).

        ``tolerance`` replaces the suite's (``source`` then says where it comes from).
        """
        expected = self.arrays()[key]
        tol = tolerance or self.tolerances[key]
        rms = self.cotangent_rms() if key.startswith("expected_grad.") else 0.0
        return compare(key, np.asarray(actual), expected, tol, rms, source=source)

    def assert_close(self, outputs: Mapping[str, np.ndarray] | None = None,
                     grads: Mapping[str, np.ndarray] | None = None) -> list[Check]:
        """Check the given outputs and gradients; raise AssertionError naming every failure.

        Parameters
        ----------
        outputs : mapping, optional
            Output name to array (every name must be one of `output_names`).
        grads : mapping, optional
            Input name to gradient (names from `gradient_names`).

        Returns
        -------
        list of Check
            One per given array, all passed.
        """
        checks = []
        for prefix, given in (("expected", outputs or {}), ("expected_grad", grads or {})):
            for name, value in given.items():
                key = f"{prefix}.{name}"
                if key not in self.tolerances:
                    raise KeyError(f"case {self.id} has no {key}; it checks "
                                   f"{sorted(self.tolerances)}")
                value = np.asarray(value)
                expected = self.arrays()[key]
                if value.shape != expected.shape:
                    raise AssertionError(f"{self.id}: {key} has shape {value.shape}, expected "
                                         f"{expected.shape}")
                checks.append(self.check(key, value))
        failed = [c.message for c in checks if not c.passed]
        if failed:
            raise AssertionError(f"{self.id}: " + "; ".join(failed))
        return checks


@dataclass
class Suite:
    """The selected cases of a suite and where they come from.

    Attributes
    ----------
    name : str
        The suite's name (``canonical`` ...).
    directory : Path
    digest : str
        SHA-256 of the manifest's digest (identifies the suite's contents).
    cases : list of GoldenCase
        The selected cases, in manifest order.
    """

    name: str
    directory: Path
    digest: str
    cases: list[GoldenCase]

    def __iter__(self):
        return iter(self.cases)

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index):
        return self.cases[index]


def _checked_arrays(entry: Mapping[str, Any], path: Path) -> dict[str, np.ndarray]:
    arrays = read_case_file(path)
    problems = []
    unlisted = sorted(set(arrays) - set(entry["arrays"]))
    if unlisted:
        problems.append(f"{path.name} holds array(s) {unlisted} that the manifest does not "
                        "list (no checksum to verify them against): the file or the manifest "
                        "was edited")
    for key, meta in entry["arrays"].items():
        if key not in arrays:
            problems.append(f"array {key!r} is missing from {path.name}")
            continue
        value = arrays[key]
        if value.dtype.name != meta["dtype"] or list(value.shape) != list(meta["shape"]):
            problems.append(f"array {key!r} is {value.dtype.name}{list(value.shape)}, the "
                            f"manifest says {meta['dtype']}{list(meta['shape'])}")
        elif array_sha256(value) != meta["sha256"]:
            problems.append(f"checksum mismatch for array {key!r} of {path.name}: the file is "
                            "corrupted or was edited")
    if problems:
        raise SuiteFormatError("; ".join(problems))
    return arrays


def _case(entry: Any, directory: Path, index: int) -> GoldenCase:
    """Check one manifest entry and build its `GoldenCase` (arrays not yet read)."""
    if not isinstance(entry, dict):
        raise SuiteFormatError(f"malformed manifest: case #{index} is not an object")
    case_id = entry.get("id")
    if not isinstance(case_id, str) or not case_id:
        raise SuiteFormatError(f"malformed manifest: case #{index} has no id")
    op = entry.get("op")
    if op not in OPS:
        raise SuiteFormatError(f"unknown op {op!r} in case {case_id} (this pnref knows "
                               f"{', '.join(sorted(OPS))}); a newer pnref may have written "
                               "this suite")
    try:
        tolerances = {str(k): Tolerance.from_json(v) for k, v in entry["tolerances"].items()}
        for meta in entry["arrays"].values():
            meta["sha256"], meta["dtype"], meta["shape"]
        dtype = str(np.dtype(entry["dtype"]))
        attrs = dict(entry["attrs"])
        file = directory / str(entry["file"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SuiteFormatError(f"malformed manifest entry for case {case_id}: "
                               f"{type(exc).__name__}: {exc}") from None
    expected = sorted(k for k in entry["arrays"] if k.startswith(("expected.", "expected_grad.")))
    if sorted(tolerances) != expected:
        raise SuiteFormatError(
            f"malformed manifest entry for case {case_id}: expected arrays {expected} and "
            f"tolerances {sorted(tolerances)} differ, so some array would go unchecked")
    return GoldenCase(case_id, op, str(entry.get("profile", "?")), dtype,
                      str(entry.get("description", "")), attrs, tolerances, entry, file)


def load_suite(directory: str | Path | None = None, *, select: Iterable[str] = (),
               exclude: Iterable[str] = ()) -> Suite:
    """Read a golden suite and return its selected cases.

    Parameters
    ----------
    directory : str or Path, optional
        Suite directory (default: the canonical suite bundled with pnref).
    select : iterable of str
        Glob patterns matched against whole case ids; a case is kept when it matches one
        (all cases when empty). A single string is one pattern.
    exclude : iterable of str
        Glob patterns of cases to drop.

    Returns
    -------
    Suite

    Raises
    ------
    SuiteFormatError
        If the directory is a file or missing, the manifest is unreadable, its digest is
        missing or does not match (the message names the first edited field), or an entry
        is malformed (unknown op, duplicate id, tolerances that do not match its arrays).
    """
    directory = Path(directory) if directory is not None else bundled_suite_dir()
    select = [select] if isinstance(select, str) else list(select)
    exclude = [exclude] if isinstance(exclude, str) else list(exclude)
    manifest = read_manifest(directory, check=False)
    digest = check_digest(manifest, directory / "manifest.json")
    cases, seen = [], set()
    for index, entry in enumerate(manifest["cases"]):
        case = _case(entry, directory, index)
        if case.id in seen:
            raise SuiteFormatError(f"malformed manifest: case id {case.id!r} appears more "
                                   "than once")
        seen.add(case.id)
        if matches(case.id, select, exclude):
            cases.append(case)
    return Suite(str(manifest.get("suite", "?")), directory, digest, cases)
