"""The ``pnref`` command line.

Each sub-command lives in its own small function; heavy modules are imported
inside the function so that ``pnref --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys

from pnref._version import __version__


def _cmd_demo(args: argparse.Namespace) -> int:
    from pnref.demo import run_demo

    return run_demo()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pnref",
        description="Numerical reference for Proxy Normalization (arXiv 2106.03743).",
    )
    parser.add_argument("--version", action="version", version=f"pnref {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="run the main job on its built-in default")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
