"""The errors a user's mistake ends a command with, in a module of its own: config.py (which
builds its defaults from the model families), the families (which raise ConfigError) and
every command-line tool import it."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from typing import NoReturn


class ConfigError(ValueError):
    """A config that cannot run; the message says which key and why."""


def usage_error(message: str) -> NoReturn:
    """Ends a command whose arguments are wrong (a mistyped, missing or stray flag), for
    every CLI of the package: one line on stderr and exit status 2, as for a config mistake,
    never a traceback or a usage text."""
    print(f"FlagsError: {message}", file=sys.stderr)
    sys.exit(2)


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the package's tools: a bad argument is `usage_error`'s one line, and a
    mistyped flag is named (with the closest known ones) before any missing one."""

    def parse_args(self, args: Sequence[str] | None = None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        known = [o for action in self._actions for o in action.option_strings]
        for arg in args:
            flag = arg.split("=", 1)[0]
            if flag.startswith("--") and not any(o.startswith(flag) for o in known):
                close = difflib.get_close_matches(flag, known, n=2)
                self.error(
                    f"unknown flag {flag}"
                    + (f"; did you mean {' or '.join(close)}?" if close else "")
                )
        return super().parse_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        usage_error(f"{message}; see --help")
