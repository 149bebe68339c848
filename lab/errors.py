"""Errors raised by the lab."""
from __future__ import annotations


class LabError(RuntimeError):
    """A lab operation failed; the message names what and how to fix it."""


class UnknownBoxError(LabError, KeyError):
    """A box name that is not in the lab; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""
