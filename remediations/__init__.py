"""Remediation: actions (ACTIONS registry), the escalation/safety engine, its executor, Docker events, alert webhook."""
from remediations.actions import (ACTIONS, Action, ActionContext, ActionError, DockerUnavailable,
                                  default_docker_factory, execute, get_action)
from remediations.docker_events import ContainerState, ContainerStates, DockerEventWatcher, ExpectedEvents
from remediations.engine import BoxStatus, Remediator
from remediations.model import (TRIGGERS, ActionOutcome, ActionRecord, ContainerEventRecord, HistoryEntry,
                                PlannedAction, RemediationPolicy, RemediationTarget, RequestResult)
from remediations.service import RemediationService
from remediations.webhook import WebhookReceiver, read_token

__all__ = ["ACTIONS", "TRIGGERS", "Action", "ActionContext", "ActionError", "ActionOutcome", "ActionRecord",
           "BoxStatus", "ContainerEventRecord", "ContainerState", "ContainerStates", "DockerEventWatcher",
           "DockerUnavailable", "ExpectedEvents", "HistoryEntry",
           "PlannedAction", "RemediationPolicy", "RemediationService", "RemediationTarget", "Remediator",
           "RequestResult", "WebhookReceiver", "default_docker_factory", "execute", "get_action", "read_token"]
