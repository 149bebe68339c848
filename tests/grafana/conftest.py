"""Fixtures of the Grafana tests."""
from tests.grafana.fleet_data import fleet_data

__all__ = ["fleet_data"]  # the session fixture, for every test here
