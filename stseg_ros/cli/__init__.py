"""The ``stseg`` command line: one verb per job (SPEC section 4), grouped in
one module per kind of job (``nodes``, ``datasets``, ``mapping``,
``learning``, ``bench``), each adding its verbs to the parser.

Heavy imports (ROS, Open3D, PyTorch) happen inside each verb, so ``--help``
answers instantly. A verb raises ``UsageError`` (or lets a library's
ValueError, OSError, ... through) for a user's mistake; ``main`` reports it.
"""

from __future__ import annotations

import argparse
import sys

from stseg_ros import __version__
from stseg_ros.cli import bench, datasets, learning, mapping, nodes
from stseg_ros.cli.common import DEBUG_HELP, USER_ERRORS, UsageError, fail, message

__all__ = ["UsageError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stseg", description="Long-term object-level mapping with 4D instance segmentation.")
    parser.add_argument("--version", action="version", version=f"stseg_ros {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for group in (nodes, datasets, bench, learning, mapping):
        group.add_verbs(verbs)
    for sub in verbs.choices.values():       # --debug after the verb too, not resetting it
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help=DEBUG_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one verb. A mistake in what the user gave (a path, a file, a
    setting) is one line naming it and exit status 2; anything else one line
    and 1; ``--debug`` shows the traceback instead."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"stseg {args.verb}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        return fail(args, err, 2)
    except Exception as err:                     # noqa: BLE001 - told, not a traceback
        if args.debug:
            raise
        print(f"stseg {args.verb}: unexpected {type(err).__name__}: {message(err)} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return 1
