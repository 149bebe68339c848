"""Strict TOML config -> frozen dataclasses; every error names its key path, all errors are reported together.

The package: `convert` (value converters and the address and time-zone rules), `model` (one dataclass
per section, each checking its own cross-key rules; describe()), `load` (TOML text -> Config; boxes named
by name and header line), `runtime` (what `run` would trip over), `files` (the files the config names and
the box addresses against this host's routes), `schema` (JSON Schema for editors). The TOML keys are a
public contract; everything importers used from `agent.core.config` is re-exported here.
"""
from __future__ import annotations

from agent.core.config.convert import ROLES, ConfigError, address_problem
from agent.core.config.files import (
    file_errors,
    host_errors,
    on_link_problem,
    webhook_tls_errors,
)
from agent.core.config.load import (
    box_from_table,
    box_lines,
    box_value,
    load,
    loads,
    parse,
)
from agent.core.config.model import (
    BOX_KINDS,
    COMMAND_PLACEHOLDERS,
    CONTAINER_ACTIONS,
    INFLUX_APIS,
    MIB,
    REMEDIATION_ACTIONS,
    SECTIONS,
    SERVICE_PROBE_KINDS,
    SUBSECTIONS,
    TABLE_ARRAYS,
    WEBHOOK_VERIFY_CLIENT,
    AgentConfig,
    AuditConfig,
    BoxConfig,
    CheckConfig,
    Config,
    CorrelationConfig,
    DiscoveryConfig,
    EngineConfig,
    FlappingConfig,
    ForensicsConfig,
    FreezeConfig,
    InfluxConfig,
    KeyDoc,
    MaintenanceConfig,
    MetricsConfig,
    OtlpConfig,
    ProbeConfig,
    RemediationConfig,
    ServiceProbe,
    box_label,
    describe,
)
from agent.core.config.runtime import runtime_errors
from agent.secretfile import read_headers

__all__ = [
    "BOX_KINDS", "COMMAND_PLACEHOLDERS", "CONTAINER_ACTIONS", "INFLUX_APIS", "MIB", "REMEDIATION_ACTIONS", "ROLES",
    "SECTIONS", "SERVICE_PROBE_KINDS", "SUBSECTIONS", "TABLE_ARRAYS", "WEBHOOK_VERIFY_CLIENT", "AgentConfig",
    "AuditConfig", "BoxConfig", "CheckConfig", "Config", "ConfigError", "CorrelationConfig", "DiscoveryConfig",
    "EngineConfig", "FlappingConfig",
    "ForensicsConfig", "FreezeConfig", "InfluxConfig", "KeyDoc", "MaintenanceConfig", "MetricsConfig", "OtlpConfig",
    "ProbeConfig", "RemediationConfig", "ServiceProbe", "address_problem", "box_from_table", "box_label",
    "box_lines", "box_value", "describe", "file_errors", "host_errors", "load", "loads", "on_link_problem", "parse",
    "read_headers", "runtime_errors", "webhook_tls_errors",
]
