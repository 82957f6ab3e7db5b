"""``pnref golden generate`` and ``pnref golden verify``: the golden sub-commands.

Registered by `add_golden_parser` from `pnref.cli`. Heavy modules are imported
inside the command functions so that ``pnref --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_golden_parser", "run_generate", "run_verify"]


def run_generate(out: str, suite: str) -> int:
    """Generate ``suite`` into ``out``; print a one-line summary; return the exit status."""
    from pnref.golden.generate import generate_suite

    try:
        manifest = generate_suite(out, suite)
    except (FileExistsError, ValueError) as exc:
        print(f"pnref golden generate: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:  # the oracle's mpmath
        print(f"pnref golden generate: {exc}; the canonical suite needs mpmath "
              "(pip install 'pnref[test]')", file=sys.stderr)
        return 2
    files = list(Path(out).glob("*.npz"))
    size = sum(p.stat().st_size for p in files) + (Path(out) / "manifest.json").stat().st_size
    print(f"wrote suite {suite!r}: {len(manifest['cases'])} cases, {size} bytes, in {out}")
    return 0


def run_verify(impl: str | None = None, suite: str | None = None, report: str | None = None,
               *, select: str | None = None, verbose: bool = False) -> int:
    """Verify an implementation on a suite, print the table; 0 if every case passed.

    Parameters
    ----------
    impl : str, optional
        ``MODULE:OBJECT`` of the adapter (default: pnref's own fast path).
    suite : str, optional
        Suite directory (default: the bundled canonical suite).
    report : str, optional
        Where to write the JSON report.
    select : str, optional
        Only cases whose id contains this substring.
    verbose : bool
        One line per case in the table.

    Returns
    -------
    int
        0 when every case passed, 1 when any failed, 2 when the suite or the adapter cannot
        be loaded at all.
    """
    from pnref.golden import bundled_suite_dir
    from pnref.golden.adapter import DEFAULT_ADAPTER, load_adapter
    from pnref.golden.format import SuiteFormatError
    from pnref.golden.verify import format_table, verify_suite

    try:
        adapter = load_adapter(impl or DEFAULT_ADAPTER)
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        print(f"pnref golden verify: cannot load --impl {impl!r}: {exc}", file=sys.stderr)
        return 2
    suite_dir = Path(suite) if suite else bundled_suite_dir()
    try:
        result = verify_suite(suite_dir, adapter, select=select)
    except SuiteFormatError as exc:
        print(f"pnref golden verify: {exc}", file=sys.stderr)
        return 2
    if report:  # written before the table, so a closed stdout cannot lose it
        Path(report).write_text(json.dumps(result.to_json(), indent=1) + "\n")
    print(format_table(result, verbose=verbose))
    if report:
        print(f"report written to {report}")
    if not result.cases:  # nothing was checked: never report success
        what = f"no case id contains --select {select!r}" if select else "the suite has no cases"
        print(f"pnref golden verify: nothing verified: {what}", file=sys.stderr)
        return 2
    return 0 if result.failed == 0 else 1


def _cmd_generate(args: argparse.Namespace) -> int:
    return run_generate(args.out, args.suite)


def _cmd_verify(args: argparse.Namespace) -> int:
    return run_verify(args.impl, args.suite, args.report, select=args.select,
                      verbose=args.verbose)


def add_golden_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``golden generate`` and ``golden verify`` to the ``pnref`` sub-command parser."""
    golden = sub.add_parser(
        "golden", help="golden test vectors: generate suites, verify implementations",
        description="Golden test vectors (docs/golden-format.md, docs/verification.md).",
    )
    commands = golden.add_subparsers(dest="golden_command", metavar="ACTION", required=True)
    generate = commands.add_parser(
        "generate", help="write a suite of golden cases (needs mpmath)",
        description="Generate a suite: one .npz per case and a manifest.json, deterministic.",
    )
    generate.add_argument("--out", required=True, help="output directory")
    generate.add_argument("--suite", default="canonical",
                          help="suite name: canonical (default) or norms")
    generate.set_defaults(func=_cmd_generate)
    verify = commands.add_parser(
        "verify", help="check an implementation against a suite",
        description="Run an implementation on every case of a suite; exit status 1 when any "
        "case fails, 2 when the suite or the implementation cannot be loaded or no case "
        "was selected.",
    )
    verify.add_argument("--impl", default=None,
                        help="adapter as MODULE:OBJECT (default: pnref's own fast path), e.g. "
                        "pnref.adapters.torch:TorchAdapter")
    verify.add_argument("--suite", default=None,
                        help="suite directory (default: the bundled canonical suite)")
    verify.add_argument("--report", default=None, help="write a JSON report to this file")
    verify.add_argument("--select", default=None,
                        help="only the cases whose id contains this text")
    verify.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    verify.set_defaults(func=_cmd_verify)
