"""The complete adapter example of docs/verification.md runs and passes what it claims."""

from __future__ import annotations

import re
from pathlib import Path

from pnref.golden import bundled_suite_dir
from pnref.verification.runner import verify_suite

DOC = Path(__file__).resolve().parents[1] / "docs" / "verification.md"


def _example_adapter():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1, "docs/verification.md should hold exactly one python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)
    return namespace["NumpyGroupNorm"]()


def test_documented_example_passes_its_cases_and_fails_the_others_cleanly():
    adapter = _example_adapter()
    report = verify_suite(bundled_suite_dir(), adapter, select="group_norm.torch.*")
    assert len(report.cases) >= 10 and report.failed == 0 and report.unsupported == 0
    assert {case.dtype for case in report.cases} == {"float16", "float32", "float64"}
    # the other ops: NotImplementedError makes them unsupported, not failed
    other = verify_suite(bundled_suite_dir(), adapter, select="pn_act.official.relu.*")
    assert other.cases and other.unsupported == len(other.cases) and other.failed == 0
    assert all(case.unsupported_reason == "pn_act" for case in other.cases)
