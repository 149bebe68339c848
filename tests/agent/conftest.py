"""Fixtures of the agent's tests."""
from __future__ import annotations

import pytest

from tests.agent.agent_proc import AgentProc


@pytest.fixture
def agents():
    """Agents (AgentProc) started by a test; any still running at the end are killed."""
    started: list[AgentProc] = []
    yield started
    for a in started:
        a.ensure_gone()
