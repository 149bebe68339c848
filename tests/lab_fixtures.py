"""Pytest fixtures exposing the lab (filled in by the lab work)."""
