"""One module per `vobox-agent` subcommand; each exposes `register(subparsers)`."""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Any

EXIT_BAD_CONFIG = 2


def load_config(path: str, *, check_files: bool = True) -> Any:
    """The validated Config, or None after printing every error (one a line) to stderr; callers exit 2.

    check_files=False for commands that only read what the agent stored (see agent.core.config.load).
    """
    from agent.core import config

    try:
        cfg = config.load(path, check_files=check_files)
    except config.ConfigError as exc:
        n = len(exc.errors)
        print(f"{path}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
        for err in exc.errors:
            print(f"  {err}", file=sys.stderr)
        return None
    from agent.ops import logs

    logs.protect(logs.config_secrets(cfg))   # before anything can log a password or token
    return cfg


def number_in(convert: Callable[[str], float], low: float, high: float, what: str, *,
              low_open: bool = False) -> Callable[[str], Any]:
    """An argparse type: TEXT converted (int or float), finite and within [low, high] ((low, high] with low_open).

    The error names WHAT is expected, e.g. "a timeout in seconds > 0 and <= 60", and the text given.
    """
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = math.nan
        above_low = value > low if low_open else value >= low
        if not (math.isfinite(value) and above_low and value <= high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse
