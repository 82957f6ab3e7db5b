"""Every Python code block of the README and of the docs pages runs, so examples cannot rot.

The rules (also in docs/architecture.md, "Code blocks in the docs"):

- A fenced block opened with ```` ```python ```` runs. The blocks of one page run in order in
  one namespace (a later block may use names from an earlier one), in a temporary folder.
- A ```` ```text ```` block that follows a Python block with only the word "prints" between
  them is that block's expected output: the captured stdout must match it line by line
  (trailing spaces ignored).
- A Python block that is not meant to run (a fragment, a sketch needing a framework that is
  not installed) carries the marker ``<!-- snippet: skip (reason) -->`` on the line just
  before its fence; the reason is required. Shell and console blocks (```` ```sh ````,
  ```` ```console ````) are commands, not Python, and are not run here.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
SKIP = re.compile(r"<!--\s*snippet:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->\s*$")


def snippets(text: str) -> list[dict]:
    """The Python blocks of a page: code, skip reason (or None), expected output (or None)."""
    blocks = list(FENCE.finditer(text))
    found = []
    for i, block in enumerate(blocks):
        if block.group(1) != "python":
            continue
        before = text[: block.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        expected = None
        if i + 1 < len(blocks) and blocks[i + 1].group(1) == "text":
            between = text[block.end(): blocks[i + 1].start()].strip()
            if between == "prints":
                expected = blocks[i + 1].group(2)
        found.append({"code": block.group(2), "skip": skip and skip.group("reason").strip(),
                      "expected": expected, "line": text[: block.start()].count("\n") + 1})
    return found


def test_snippet_parser():
    page = ("x\n```python\nprint(1)\n```\n\nprints\n\n```text\n1\n```\n"
            "<!-- snippet: skip (needs jax) -->\n```python\nimport jax\n```\n```sh\nls\n```\n")
    first, second = snippets(page)
    assert first == {"code": "print(1)\n", "skip": None, "expected": "1\n", "line": 2}
    assert second["skip"] == "needs jax" and second["expected"] is None


@pytest.mark.parametrize("page", [p for p in PAGES if snippets(p.read_text())],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_page_snippets_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names: dict = {"__name__": f"snippets_of_{page.stem}"}
    for snippet in snippets(page.read_text()):
        if snippet["skip"]:
            continue
        where = f"{page.relative_to(ROOT)}:{snippet['line']}"
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(snippet["code"], where, "exec"), names)  # noqa: S102
        if snippet["expected"] is not None:
            got = [line.rstrip() for line in out.getvalue().rstrip("\n").splitlines()]
            want = [line.rstrip() for line in snippet["expected"].rstrip("\n").splitlines()]
            assert got == want, f"{where}: the printed output differs from the page"
