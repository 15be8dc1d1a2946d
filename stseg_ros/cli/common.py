"""What every ``stseg`` verb shares: the one error type a verb raises for a
user's mistake, how ``main`` reports errors, and checks of output paths made
before long jobs start."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


class UsageError(ValueError):
    """A path or value on the command line cannot be used (names it)."""


# raised for what a user gave (files, settings, inputs), not for a bug: one line, exit 2
USER_ERRORS = (ValueError, OSError, RuntimeError, ImportError)
DEBUG_HELP = "on an error, show the traceback instead of one line"


def message(err: BaseException) -> str:
    """``err`` as one line: OSError as 'path: reason', ANSI colours and line
    breaks of library messages (Open3D) removed, never empty."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    else:
        text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())
    return text or type(err).__name__


def fail(args: argparse.Namespace, err: BaseException, rc: int = 2) -> int:
    """Report ``err`` in one line and return ``rc``; with --debug, raise it instead."""
    if getattr(args, "debug", False):
        raise err
    print(f"stseg {args.verb}: {message(err)}", file=sys.stderr)
    return rc


def folder_out(path, what: str = "--out") -> Path:
    """``path`` as an output folder: it may exist, but not as a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: {what} must be a folder, and this is a file")
    if not path.exists() and any(p.exists() and not p.is_dir() for p in path.parents):
        raise UsageError(f"{path}: {what} cannot be made: a parent is a file")
    return path


def file_out(path, what: str) -> Path:
    """``path`` as a file to write at the end of a long job, checked first."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: {what} must be a file name, and this is a folder")
    if not path.parent.is_dir():
        raise UsageError(f"{path}: {what}: no folder {path.parent} to write it in")
    return path
