"""Remediation: actions (ACTIONS registry), the escalation/safety engine, its executor, alert webhook.

The container engine's events and client are agent.engines.

The names below are loaded when first used (PEP 562), so importing one submodule
(e.g. `remediations.model` for the config) does not import Docker, the webhook
server and the service with it: `vobox-agent` starts in a tenth of a second.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from remediations.actions import (
        ACTIONS,
        Action,
        ActionContext,
        ActionError,
        DockerUnavailable,
        default_docker_factory,
        execute,
        get_action,
    )
    from remediations.engine import BoxStatus, Remediator
    from remediations.model import (
        TRIGGERS,
        ActionOutcome,
        ActionRecord,
        ContainerEventRecord,
        HistoryEntry,
        PlannedAction,
        RemediationPolicy,
        RemediationTarget,
        RequestResult,
    )
    from remediations.service import RemediationService
    from remediations.webhook import WebhookReceiver, read_token

_HOME = {name: f"remediations.{module}" for module, names in {
    "actions": ("ACTIONS", "Action", "ActionContext", "ActionError", "DockerUnavailable", "default_docker_factory",
                "execute", "get_action"),
    "engine": ("BoxStatus", "Remediator"),
    "model": ("TRIGGERS", "ActionOutcome", "ActionRecord", "ContainerEventRecord", "HistoryEntry", "PlannedAction",
              "RemediationPolicy", "RemediationTarget", "RequestResult"),
    "service": ("RemediationService",),
    "webhook": ("WebhookReceiver", "read_token"),
}.items() for name in names}

__all__ = ["ACTIONS", "TRIGGERS", "Action", "ActionContext", "ActionError", "ActionOutcome", "ActionRecord",
           "BoxStatus", "ContainerEventRecord", "DockerUnavailable", "HistoryEntry", "PlannedAction", "RemediationPolicy",
           "RemediationService", "RemediationTarget", "Remediator", "RequestResult", "WebhookReceiver",
           "default_docker_factory", "execute", "get_action", "read_token"]


def __getattr__(name: str) -> Any:
    """Load an exported name from its submodule on first use (then it is a plain module attribute)."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
