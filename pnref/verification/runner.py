"""Run an implementation on a golden suite: one `CaseResult` per case, never a crash.

For each selected case the runner reads the case's arrays (checksums verified), asks the
adapter's optional ``supports(op, attrs, dtype)``, calls ``forward`` and, when the case has
gradients, ``vjp`` (each call through a runner of `pnref.verification.worker`: in a worker
process with a timeout, or in this process), checks what came back (a mapping, every
expected name, shape, dtype) and compares each array with `pnref.golden.compare.compare`
under the suite's tolerance or an explicit override. A case whose comparison failed is then
diagnosed: the known deviations that explain the returned values (``pnref.golden``'s
diagnosis, when present) are recorded best first.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pnref.golden.format import SuiteFormatError
from pnref.golden.suite import GoldenCase, Suite, load_suite
from pnref.golden.tolerances import Tolerance
from pnref.verification.adapter import load_adapter
from pnref.verification.overrides import ToleranceOverride
from pnref.verification.report import CaseResult, Report
from pnref.verification.worker import (
    DEFAULT_TIMEOUT,
    InProcessRunner,
    NotAnArray,
    Outcome,
    WorkerRunner,
)

__all__ = ["verify_suite", "run_case", "diagnoser", "VerificationInterrupted"]


class VerificationInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``report`` holds the cases finished before it."""

    def __init__(self, report: Report) -> None:
        super().__init__("interrupted")
        self.report = report


def diagnoser() -> Callable[..., list[dict[str, Any]]] | None:
    """`pnref.golden.diagnosis.diagnose`: which catalogued deviation explains a failure."""
    from pnref.golden.diagnosis import diagnose

    return diagnose


def _check_returned(result: CaseResult, method: str, returned: Any, names: list[str],
                    case: GoldenCase, prefix: str) -> dict[str, np.ndarray]:
    """The returned arrays that can be compared; every problem is recorded in ``result``."""
    if not isinstance(returned, Mapping):
        result.fail(f"adapter {method}() returned {type(returned).__name__}, expected a mapping "
                    "of name to array")
        return {}
    checked = {}
    arrays = case.arrays()
    for name in names:
        value = returned.get(name)
        if value is None:
            result.fail(f"adapter {method}() returned no {name!r} (got keys "
                        f"{sorted(map(str, returned))})")
            continue
        if isinstance(value, NotAnArray):
            result.fail(f"adapter {method}() returned {name!r} that is not an array: "
                        f"{value.message}")
            continue
        try:
            value = np.asarray(value)
        except Exception as exc:  # noqa: BLE001 - an object NumPy cannot convert
            result.fail(f"adapter {method}() returned {name!r} that is not an array: {exc}")
            continue
        expected = arrays[f"{prefix}.{name}"]
        if value.shape != expected.shape:
            result.fail(f"adapter {method}() returned {name!r} with shape {value.shape}, "
                        f"expected {expected.shape}")
        elif value.dtype != np.dtype(case.dtype):
            result.fail(f"adapter {method}() returned {name!r} with dtype {value.dtype}, "
                        f"expected {case.dtype}")
        else:
            checked[f"{prefix}.{name}"] = value
    return checked


def _tolerances(case: GoldenCase, overrides: Sequence[ToleranceOverride],
                changed: dict[int, int]) -> dict[str, tuple[Tolerance, str]]:
    tolerances = {}
    for key, tolerance in case.tolerances.items():
        source = "suite"
        for number, override in enumerate(overrides):
            if override.matches(case.id, key):
                tolerance, source = override.apply(tolerance), f"override: {override.rule()}"
                changed[number] = changed.get(number, 0) + 1
                break
        tolerances[key] = (tolerance, source)
    return tolerances


def _outcome_failed(result: CaseResult, outcome: Outcome) -> bool:
    """Record a call that did not return a value; True if the case cannot go on."""
    if outcome.status == "timeout":
        result.fail(outcome.message, "timeout")
        return True
    if outcome.status in ("raised", "died"):
        result.fail(outcome.message)
    return False


def run_case(case: GoldenCase, runner: WorkerRunner | InProcessRunner, *, supports: bool,
             strict: bool = False, overrides: Sequence[ToleranceOverride] = (),
             changed: dict[int, int] | None = None,
             diagnose: Callable[..., list[dict[str, Any]]] | None = None) -> CaseResult:
    """Run one case through ``runner`` and judge it (the steps of the module docstring).

    Parameters
    ----------
    case : GoldenCase
    runner : WorkerRunner or InProcessRunner
        Started; ``supports`` says whether the adapter has a ``supports`` method.
    strict : bool
        Unsupported cases and gradients fail.
    overrides : sequence of ToleranceOverride
        First match wins; ``changed`` counts the arrays each one changed.
    diagnose : callable, optional
        Called for a case whose comparison failed (see `verify_suite`).
    """
    changed = {} if changed is None else changed
    result = CaseResult(case.id, case.op, case.profile, case.dtype, case.description)
    try:
        inputs, cotangents = case.inputs, case.cotangents
    except SuiteFormatError as exc:
        return result.fail(str(exc), "error")
    tolerances = _tolerances(case, overrides, changed)

    def fresh():  # every call gets its own copies: an adapter writing into them harms nothing
        return copy.deepcopy(dict(inputs)), copy.deepcopy(case.attrs)

    if supports:
        outcome = runner.call("supports", case.op, copy.deepcopy(case.attrs), case.dtype)
        if outcome.status == "ok" and not outcome.value:
            result.status = "unsupported"
            result.unsupported_reason = "supports() answered False"
        elif outcome.status == "unsupported":
            result.status, result.unsupported_reason = "unsupported", outcome.message
        elif _outcome_failed(result, outcome):
            return result
    actual: dict[str, np.ndarray] = {}
    if result.status == "passed":
        outcome = runner.call("forward", case.op, *fresh())
        if outcome.status == "unsupported":
            result.status, result.unsupported_reason = "unsupported", outcome.message
        elif _outcome_failed(result, outcome):
            return result
        elif outcome.status == "ok":
            actual.update(_check_returned(result, "forward", outcome.value, case.output_names,
                                          case, "expected"))
    if result.status != "unsupported" and case.gradient_names:
        outcome = runner.call("vjp", case.op, *fresh(), copy.deepcopy(dict(cotangents)))
        if outcome.status == "unsupported":
            result.unsupported_arrays = [f"expected_grad.{n}" for n in case.gradient_names]
            result.unsupported_reason = outcome.message
        elif _outcome_failed(result, outcome):
            return result
        elif outcome.status == "ok":
            actual.update(_check_returned(result, "vjp", outcome.value, case.gradient_names,
                                          case, "expected_grad"))
    for key, value in actual.items():
        tolerance, source = tolerances[key]
        result.checks.append(case.check(key, value, tolerance, source=source))
    if any(not check.passed for check in result.checks):
        result.status = "failed" if result.status != "error" else "error"
        if diagnose is not None:
            try:
                found = diagnose(case.op, inputs, case.attrs, cotangents, actual,
                                 {k: t for k, (t, _) in tolerances.items()})
                result.diagnosis = [dict(d) for d in found]
            except Exception as exc:  # noqa: BLE001 - a diagnosis never spoils the verdict
                result.diagnosis = None
                result.messages.append(f"the diagnosis could not run: {exc!r}")
    if strict and result.status == "unsupported":
        result.status = "failed"
        result.messages.append(f"unsupported, and --strict counts that as a failure: "
                               f"{result.unsupported_reason}")
    elif strict and result.status == "passed" and result.unsupported_arrays:
        result.status = "failed"
        result.messages.append(f"gradients unsupported, and --strict counts that as a "
                               f"failure: {result.unsupported_reason}")
    return result


def verify_suite(suite: Suite | str | Path | None, adapter: Any, *,
                 select: Iterable[str] | str = (), exclude: Iterable[str] = (),
                 strict: bool = False, timeout: float | None = DEFAULT_TIMEOUT,
                 overrides: Sequence[ToleranceOverride] = (),
                 progress: Callable[[int, int, str], None] | None = None) -> Report:
    """Run ``adapter`` on every selected case of a suite.

    Parameters
    ----------
    suite : Suite, str, Path or None
        A loaded `Suite` (``select``/``exclude`` then filter it further), or a suite
        directory (None: the bundled canonical suite).
    adapter : str or object
        ``"MODULE:OBJECT"`` / ``"path/to/file.py:OBJECT"``: loaded and called in a worker
        process with the ``timeout`` (in this process if ``timeout`` is None or 0). An
        adapter object: called in this process (no timeout can stop it). A runner of
        `pnref.verification.worker`: used as is.
    select, exclude : iterable of str
        Glob patterns matched against whole case ids (`pnref.golden.suite.matches`).
    strict : bool
        Count unsupported cases and gradients as failures.
    timeout : float or None
        Seconds allowed per adapter call (with a spec string).
    overrides : sequence of ToleranceOverride
        Explicit tolerance changes (first match wins).
    progress : callable, optional
        ``progress(k, n, case_id)`` before case ``k`` (1-based) of ``n``.

    Returns
    -------
    Report

    Raises
    ------
    SuiteFormatError
        If the suite cannot be trusted as a whole (unreadable, edited manifest, unknown op).
    AdapterLoadError
        If the adapter cannot be loaded.
    VerificationInterrupted
        On Ctrl-C, with the partial report.
    """
    from pnref.golden.suite import matches

    select = [select] if isinstance(select, str) else list(select)
    exclude = list(exclude)
    if not isinstance(suite, Suite):
        suite = load_suite(suite, select=select, exclude=exclude)
    cases = [case for case in suite.cases if matches(case.id, select, exclude)]
    if isinstance(adapter, str):
        runner = (WorkerRunner(adapter, timeout) if timeout else
                  InProcessRunner(load_adapter(adapter)))
        impl = adapter
    elif hasattr(adapter, "call") and hasattr(adapter, "start"):
        runner, impl = adapter, getattr(adapter, "spec", "")
    else:
        runner, impl = InProcessRunner(adapter), type(adapter).__name__
    changed: dict[int, int] = {}
    report = Report(suite.name, str(suite.directory), "?", [], suite_digest=suite.digest,
                    impl=impl, selected=len(cases),
                    options={"select": select, "exclude": exclude, "strict": strict,
                             "timeout": getattr(runner, "timeout", None)})
    diagnose = diagnoser()
    try:
        info = runner.start()
        report.implementation = info["name"]
        for k, case in enumerate(cases, 1):
            if progress is not None:
                progress(k, len(cases), case.id)
            start = time.perf_counter()
            result = run_case(case, runner, supports=info["supports"], strict=strict,
                               overrides=overrides, changed=changed, diagnose=diagnose)
            result.seconds = time.perf_counter() - start
            report.cases.append(result)
    except KeyboardInterrupt:
        report.interrupted = True
        raise VerificationInterrupted(report) from None
    finally:
        runner.close()
        report.overrides = [{"rule": o.rule(), "reason": o.reason, "cases": o.cases,
                             "arrays": o.arrays, "scale": o.scale, "rtol": o.rtol,
                             "atol": o.atol, "arrays_changed": changed.get(i, 0)}
                            for i, o in enumerate(overrides)]
    return report
