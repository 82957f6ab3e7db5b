"""``pnref golden generate`` and ``pnref golden verify``: the golden sub-commands.

Registered by `add_golden_parser` from `pnref.cli`. Heavy modules are imported inside the
command functions so that ``pnref --help`` stays instant. Errors that stop a run before it
starts (a bad option, an unreadable or edited suite, an adapter that cannot be loaded) are
raised as ``ValueError`` / ``OSError`` and printed by `pnref.cli.main` as one line
``pnref: error: ...`` with exit status 2.

Exit status of ``verify``: 0 every supported case passed; 1 some case failed (or timed out);
2 the run could not start, the suite is damaged, nothing was selected, or the
implementation supports none of the selected cases; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TextIO

__all__ = ["add_golden_parser", "run_generate", "run_verify", "EXIT_INTERRUPTED"]

#: Exit status after Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


class _Progress:
    """``case k of n`` on stderr: redrawn in place on a terminal, else one line every 5 s."""

    def __init__(self, label: str, stream: TextIO | None = None, enabled: bool = True,
                 every: float = 5.0) -> None:
        self.label, self.stream, self.enabled, self.every = label, stream or sys.stderr, \
            enabled, every
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.last = -float("inf")
        self.drawn = False

    def show(self, text: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            self.stream.write(f"\r{self.label}: {text}"[:120].ljust(120))
            self.drawn = True
        elif force or now - self.last >= self.every:
            self.stream.write(f"{self.label}: {text}\n")
        else:
            return
        self.last = now
        self.stream.flush()

    def case(self, k: int, n: int, case_id: str) -> None:
        self.show(f"case {k} of {n} ({case_id})", force=k == 1)

    def generated(self, done: int, total: int) -> None:
        elapsed = time.perf_counter() - self.start
        eta = elapsed / done * (total - done)
        self.show(f"{done} of {total} cases, {elapsed:.1f} s elapsed, ETA {eta:.0f} s",
                  force=done == total)

    def close(self) -> None:
        if self.enabled and self.tty and self.drawn:
            self.stream.write("\r" + " " * 120 + "\r")
            self.stream.flush()


def run_generate(out: str, suite: str, *, progress: bool = True) -> int:
    """Generate ``suite`` into ``out`` (progress on stderr); print a one-line summary."""
    from pnref.golden.generate import generate_suite

    bar = _Progress("pnref golden generate", enabled=progress)
    try:
        manifest = generate_suite(out, suite, progress=bar.generated)
    except ImportError as exc:  # the oracle's mpmath
        raise ValueError(f"{exc}; the canonical suite needs mpmath (pip install 'pnref[test]')"
                         ) from None
    finally:
        bar.close()
    files = list(Path(out).glob("*.npz"))
    size = sum(p.stat().st_size for p in files) + (Path(out) / "manifest.json").stat().st_size
    print(f"wrote suite {suite!r}: {len(manifest['cases'])} cases, {size} bytes, in {out}")
    return 0


def _writable(option: str, path: str | None) -> None:
    if path and not Path(path).resolve().parent.is_dir():
        raise OSError(f"{option} {path}: directory {Path(path).resolve().parent} does not exist")


def _list_cases(suite) -> None:
    for case in suite.cases:
        print(f"{case.id:<50} {case.op:<26} {case.profile:<9} {case.dtype:<8} "
              f"{case.description}")


def run_verify(impl: str | None = None, suite: str | None = None, report: str | None = None,
               *, select: list[str] | str | None = None, exclude: list[str] | None = None,
               strict: bool = False, timeout: float | None = None, junit_xml: str | None = None,
               list_only: bool = False, overrides_file: str | None = None,
               scale_tolerance: list[str] | None = None, verbose: bool = False,
               quiet: bool = False) -> int:
    """Verify an implementation on a suite, print the table; return the exit status.

    Parameters
    ----------
    impl : str, optional
        ``MODULE:OBJECT`` or ``path/to/file.py:OBJECT`` (default: pnref's own fast path).
    suite : str, optional
        Suite directory (default: the bundled canonical suite).
    report : str, optional
        Where to write the JSON report.
    select, exclude : list of str, optional
        Glob patterns matched against whole case ids.
    strict : bool
        Count unsupported cases and gradients as failures.
    timeout : float, optional
        Seconds per adapter call (default `pnref.verification.worker.DEFAULT_TIMEOUT`);
        0 runs the adapter in this process, without a timeout.
    junit_xml : str, optional
        Where to write JUnit XML.
    list_only : bool
        Print the selected cases and exit.
    overrides_file : str, optional
        A ``--tolerance-overrides`` JSON file.
    scale_tolerance : list of str, optional
        ``CASES=FACTOR`` overrides.
    verbose, quiet : bool
        One line per case in the table; no progress on stderr.

    Returns
    -------
    int
        0, 1, 2 or 130 (module docstring).

    Raises
    ------
    ValueError, OSError
        What stops the run before it starts (printed by `pnref.cli.main`, exit 2).
    """
    from pnref.golden.suite import load_suite
    from pnref.verification.adapter import DEFAULT_ADAPTER
    from pnref.verification.overrides import parse_scale_option, read_override_file
    from pnref.verification.report import format_table, write_junit
    from pnref.verification.runner import VerificationInterrupted, verify_suite
    from pnref.verification.worker import DEFAULT_TIMEOUT

    select = [select] if isinstance(select, str) else list(select or [])
    exclude = list(exclude or [])
    timeout = DEFAULT_TIMEOUT if timeout is None else float(timeout)
    if not timeout >= 0:
        raise ValueError(f"--timeout must be >= 0 seconds (0: no timeout), got {timeout:g}")
    overrides = [parse_scale_option(text) for text in scale_tolerance or []]
    if overrides_file:
        overrides += read_override_file(overrides_file)
    _writable("--report", report)
    _writable("--junit-xml", junit_xml)
    loaded = load_suite(suite, select=select, exclude=exclude)
    if not loaded.cases:
        what = (f"no case id matches --select {' '.join(select)}" if select else
                "the suite has no cases") + (f" (--exclude {' '.join(exclude)})" if exclude
                                              else "")
        raise ValueError(f"nothing to verify: {what}; --list shows the case ids")
    if list_only:
        _list_cases(loaded)
        return 0
    bar = _Progress("pnref golden verify", enabled=not quiet)
    interrupted = False
    try:
        result = verify_suite(loaded, impl or DEFAULT_ADAPTER, strict=strict, timeout=timeout,
                              overrides=overrides, progress=bar.case)
    except VerificationInterrupted as stop:
        result, interrupted = stop.report, True
    finally:
        bar.close()
    if report:  # written before the table, so a closed stdout cannot lose it
        Path(report).write_text(json.dumps(result.to_json(), indent=1) + "\n")
    if junit_xml:
        write_junit(result, junit_xml)
    if interrupted:
        written = ", ".join(p for p in (report, junit_xml) if p)
        print(f"pnref: interrupted after {len(result.cases)} of {result.selected} cases"
              + (f"; partial report written to {written}" if written else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    print(format_table(result, verbose=verbose))
    for what, path in (("report", report), ("JUnit XML", junit_xml)):
        if path:
            print(f"{what} written to {path}")
    damaged = [case for case in result.cases if case.status == "error"]
    if damaged:
        print(f"pnref: error: {len(damaged)} case(s) could not be judged, the suite is damaged "
              f"(first: {damaged[0].case_id}: {damaged[0].messages[0]})", file=sys.stderr)
        return 2
    declined = [c for c in result.cases if c.unsupported_reason and not c.unsupported_arrays]
    if len(declined) == len(result.cases):
        print(f"pnref: error: the implementation supports none of the {len(result.cases)} "
              "selected cases: nothing was verified", file=sys.stderr)
        return 2
    return 0 if result.failed == 0 else 1


def _cmd_generate(args: argparse.Namespace) -> int:
    return run_generate(args.out, args.suite, progress=not args.quiet)


def _cmd_verify(args: argparse.Namespace) -> int:
    return run_verify(args.impl, args.suite, args.report, select=args.select,
                      exclude=args.exclude, strict=args.strict, timeout=args.timeout,
                      junit_xml=args.junit_xml, list_only=args.list,
                      overrides_file=args.tolerance_overrides,
                      scale_tolerance=args.scale_tolerance, verbose=args.verbose,
                      quiet=args.quiet)


def add_golden_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``golden generate`` and ``golden verify`` to the ``pnref`` sub-command parser."""
    golden = sub.add_parser(
        "golden", help="golden test vectors: generate suites, verify implementations",
        description="Golden test vectors (docs/golden-format.md, docs/verification.md).",
    )
    commands = golden.add_subparsers(dest="golden_command", metavar="ACTION", required=True)
    generate = commands.add_parser(
        "generate", help="write a suite of golden cases (needs mpmath)",
        description="Generate a suite: one .npz per case and a sealed manifest.json, "
        "deterministic. Progress (cases done, elapsed, ETA) goes to stderr.",
    )
    generate.add_argument("--out", required=True, help="output directory")
    generate.add_argument("--suite", default="canonical",
                          help="suite name: canonical (default) or norms")
    generate.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    generate.set_defaults(func=_cmd_generate)
    verify = commands.add_parser(
        "verify", help="check an implementation against a suite",
        description="Run an implementation on every selected case of a suite. Exit status: "
        "0 every supported case passed, 1 some case failed or timed out, 2 the run could not "
        "start (bad option, unreadable or edited suite, adapter not loadable) or nothing was "
        "verified, 130 interrupted. See docs/verification.md.",
    )
    verify.add_argument("--impl", default=None,
                        help="adapter as MODULE:OBJECT or path/to/file.py:OBJECT (default: "
                        "pnref's own fast path), e.g. pnref.adapters.torch:TorchAdapter")
    verify.add_argument("--suite", default=None,
                        help="suite directory (default: the bundled canonical suite)")
    verify.add_argument("--select", action="append", default=[], metavar="GLOB",
                        help="only cases whose whole id matches this glob (repeatable: any "
                        "of them), e.g. 'pn_act.*'")
    verify.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                        help="drop cases whose id matches this glob (repeatable)")
    verify.add_argument("--list", action="store_true",
                        help="print the selected case ids with op, profile, dtype and "
                        "description, and exit")
    verify.add_argument("--strict", action="store_true",
                        help="count unsupported cases and gradients as failures")
    verify.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="limit on each adapter call, which runs in a worker process "
                        "(default 300; 0: no limit, run in this process)")
    verify.add_argument("--report", default=None, help="write a JSON report to this file")
    verify.add_argument("--junit-xml", default=None, metavar="FILE",
                        help="write JUnit XML (one testcase per case) to this file")
    verify.add_argument("--tolerance-overrides", default=None, metavar="FILE",
                        help="JSON file of explicit tolerance overrides, each with a reason")
    verify.add_argument("--scale-tolerance", action="append", default=[],
                        metavar="CASES=FACTOR",
                        help="multiply the tolerances of the cases matching the glob CASES "
                        "(repeatable); shown in the report")
    verify.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    verify.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    verify.set_defaults(func=_cmd_verify)
