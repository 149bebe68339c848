"""Fixtures of the Grafana tests."""
from tests.grafana.fleet_data import fleet_data  # noqa: F401  (the session fixture)
