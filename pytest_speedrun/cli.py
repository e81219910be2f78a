"""The `pytest-speedrun` console script."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import SpeedrunError
from .metrics import parse_log, to_cli_json


def _parse_log(args: argparse.Namespace) -> int:
    metrics = parse_log(Path(args.logfile), Path(args.script) if args.script else None)
    print(to_cli_json(metrics))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pytest-speedrun", description="Tools for the pytest-speedrun benchmark.")
    parser.add_argument("--version", action="version", version=f"pytest-speedrun {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("parse-log", help="print the final result of a training log as JSON")
    p.add_argument("logfile", help="log of a NanoGPT speedrun record script (any record's format)")
    p.add_argument("--script", help="the script that wrote the log: its echoed source lines are ignored")
    p.set_defaults(func=_parse_log)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpeedrunError as exc:
        print(f"pytest-speedrun: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
