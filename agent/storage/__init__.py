"""Storage: points and schema (points.py), InfluxDB writers and queries (influx.py), on-disk spool, Storage facade.

The names below are loaded when first used (PEP 562): `agent.storage.points` alone does not
import the HTTP clients.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.storage.influx import (
        QueryError,
        SinkError,
        V1Writer,
        V2Writer,
        make_writer,
        query,
    )
    from agent.storage.points import Point
    from agent.storage.store import Storage, StorageCounters

_HOME = {"QueryError": "agent.storage.influx", "SinkError": "agent.storage.influx", "V1Writer": "agent.storage.influx",
         "V2Writer": "agent.storage.influx", "make_writer": "agent.storage.influx", "query": "agent.storage.influx",
         "Point": "agent.storage.points", "Storage": "agent.storage.store", "StorageCounters": "agent.storage.store"}

__all__ = ["Point", "QueryError", "SinkError", "Storage", "StorageCounters", "V1Writer", "V2Writer",
           "make_writer", "query"]


def __getattr__(name: str) -> Any:
    """Load an exported name from its submodule on first use (then it is a plain module attribute)."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
