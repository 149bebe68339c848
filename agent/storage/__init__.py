"""Storage: points and schema (points.py), InfluxDB writers and queries (influx.py), on-disk spool, Storage facade."""
from agent.storage.influx import QueryError, SinkError, V1Writer, V2Writer, make_writer, query
from agent.storage.points import Point
from agent.storage.store import Storage, StorageCounters

__all__ = ["Point", "QueryError", "SinkError", "Storage", "StorageCounters", "V1Writer", "V2Writer",
           "make_writer", "query"]
