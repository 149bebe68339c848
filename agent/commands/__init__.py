"""One module per `vobox-agent` subcommand; each exposes `register(subparsers)`."""
from __future__ import annotations

import sys
from typing import Any

EXIT_BAD_CONFIG = 2


def load_config(path: str) -> Any:
    """The validated Config, or None after printing every error (one a line) to stderr; callers exit 2."""
    from agent.core import config

    try:
        return config.load(path)
    except config.ConfigError as exc:
        n = len(exc.errors)
        print(f"{path}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
        for err in exc.errors:
            print(f"  {err}", file=sys.stderr)
        return None
