"""Errors in what the user gave (a config key, a file, a results store), and how commands show them.

A command line prints such an error as ``error: <message>`` and exits 2, without a
traceback; ``--debug`` on the command line, or ``MCBIO_DEBUG=1``, brings the traceback back.
Unreadable files and permissions (``OSError``) are shown the same way.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Sequence

DEBUG_FLAG = "--debug"
DEBUG_ENV = "MCBIO_DEBUG"


class UserError(ValueError):
    """A problem the user can fix from the message alone, which names the key, file or line."""


def split_debug(argv: Sequence[str]) -> tuple[bool, list[str]]:
    """(whether tracebacks are wanted, ``argv`` without ``--debug``)."""
    rest = [a for a in argv if a != DEBUG_FLAG]
    wanted = len(rest) != len(argv) or os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")
    return wanted, rest


def describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.strerror or type(err).__name__}: {err.filename}"
    return str(err) or type(err).__name__


def run_command(main: Callable[[list[str]], int], argv: Sequence[str]) -> int:
    """``main(argv)``, with user errors shown as one ``error:`` line (exit 2) unless debugging."""
    debug, rest = split_debug(argv)
    try:
        return main(rest)
    except (UserError, OSError) as err:
        if debug:
            raise
        print(f"error: {describe(err)}\n(the traceback: add {DEBUG_FLAG}, or set {DEBUG_ENV}=1)",
              file=sys.stderr, flush=True)
        return 2
