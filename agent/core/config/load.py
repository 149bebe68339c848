"""Loading: TOML text -> the model, every error at once, one line each naming its key path.

A [[box]] is named by its name and the line of its table header, found by scanning the text
(`box_lines`; no second TOML parser): `[[box]] "vobox-ctr-1" (#14, line 212).tcp_ports[1]`.
After the model, `runtime_errors` (what `run` would trip over) and, with check_files, the checks
against this machine (`files.file_errors`, `files.host_errors`).
"""
from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import fields, replace
from typing import Any

from agent.core.config.convert import ConfigError, _Invalid, _section, _show
from agent.core.config.files import file_errors, host_errors
from agent.core.config.model import (
    SECTIONS,
    TABLE_ARRAYS,
    AgentConfig,
    BoxConfig,
    Config,
    Context,
    InfluxConfig,
    MaintenanceConfig,
    _present,
    box_label,
)
from agent.core.config.runtime import runtime_errors
from agent.secretfile import SecretFileError, read_secret

# A [[box]] header line: [[box]], [[ "box" ]], [['box']], an optional comment after it (TOML 1.0 table headers).
_BOX_HEADER = re.compile(r"""^[ \t]*\[\[[ \t]*(?:box|"box"|'box')[ \t]*\]\][ \t]*(?:#.*)?$""")
_MULTILINE = re.compile(r'"""|\'\'\'')


def box_lines(text: str) -> tuple[int, ...]:
    """The line (1-based) of each [[box]] header in TEXT, in order; header-like lines in multi-line strings skipped."""
    out = []
    inside: str | None = None   # the delimiter of the multi-line string we are in
    for n, line in enumerate(text.split("\n"), 1):
        if inside is None and _BOX_HEADER.match(line):
            out.append(n)
            continue
        for m in _MULTILINE.finditer(line):
            if inside is None:
                inside = m.group()
            elif m.group() == inside:
                inside = None
    return tuple(out)


def parse(data: dict[str, Any], source: str | None = None, check_files: bool = False,
          box_lines: Sequence[int] = ()) -> Config:
    """Validate a decoded TOML document; raise ConfigError listing every problem.

    BOX_LINES: the header line of each [[box]] (loads() finds them), used in errors when there is one per box.
    CHECK_FILES: also the files the config names and the box addresses against this host's routes
    (file_errors, host_errors), once everything else is valid.
    """
    errors: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a table, got {_show(data)}")
    for key in data:
        if key not in SECTIONS:
            if key == "boxes":
                errors.append("boxes: unknown section (boxes are [[box]] tables)")
            else:
                hint = difflib.get_close_matches(key, list(SECTIONS), n=1)
                did = f"did you mean [{hint[0]}]? " if hint else ""
                errors.append(f"{key}: unknown section ({did}valid: {', '.join(SECTIONS)})")
    kw: dict[str, dict[str, Any]] = {}
    for section, cls in SECTIONS.items():
        if section not in TABLE_ARRAYS:
            kw[section] = _section(cls, data.get(section, {}), section, errors) or {}

    raw_agent = _present(data.get("agent", {}))
    converted = all(k not in raw_agent or f in kw["agent"]
                    for k, f in (("interval", "interval_s"), ("timeout", "timeout_s"), ("jitter", "jitter_s")))
    agent: dict[str, Any] = {f.name: f.default for f in fields(AgentConfig)} | kw["agent"]
    ctx = Context(interval_s=agent["interval_s"] if converted else math.inf, interface=agent["interface"],
                  discovery=bool(kw["discovery"].get("docker")))
    for section, cls in SECTIONS.items():   # each section's own cross-key rules (sections without any have no check)
        check = getattr(cls, "check", None)
        if section not in TABLE_ARRAYS and check is not None:
            errors += check(kw[section], _present(data.get(section, {})), section, ctx)

    influx = kw["influxdb"]
    if "influxdb" in data and influx.get("api") == "v2" and influx.get("token_file") and "token" not in influx:
        try:
            influx["token"] = read_secret(influx["token_file"])
        except SecretFileError:
            pass   # unreadable or empty: file_errors says so where files are checked (check-config, run)

    boxes_raw = data.get("box")
    boxes_kw: list[dict[str, Any]] = []
    lines: tuple[int, ...] = ()
    if boxes_raw is None and ctx.discovery:
        boxes_raw = []   # every box may come from discovery
    if boxes_raw is None:
        errors.append("box: no [[box]] configured (at least one is required)")
    elif not isinstance(boxes_raw, list):
        errors.append(f"box: expected [[box]] tables, got {_show(boxes_raw)}")
    else:
        lines = tuple(box_lines) if len(box_lines) == len(boxes_raw) else ()
        labels = [box_label(i, _present(raw).get("name"), lines[i] if lines else None)
                  for i, raw in enumerate(boxes_raw)]
        names: dict[str, int] = {}
        addrs: dict[str, str] = {}
        for i, raw in enumerate(boxes_raw):
            path = labels[i]
            b = _section(BoxConfig, raw, path, errors)
            if b is None:
                continue
            boxes_kw.append(b)
            errors += BoxConfig.check(b, raw, path, ctx)
            if "name" in b:
                if b["name"] in names:
                    errors.append(f"{path}.name: duplicate {_show(b['name'])} (also {labels[names[b['name']]]})")
                names.setdefault(b["name"], i)
            for fam in ("ipv4", "ipv6"):
                if fam in b:
                    if b[fam] in addrs:
                        errors.append(f"{path}.{fam}: duplicate address {b[fam]} (also {addrs[b[fam]]})")
                    addrs.setdefault(b[fam], f"{path}.{fam}")
        ctx = replace(ctx, box_names=tuple(b["name"] for b in boxes_kw if "name" in b))
    maintenance = _maintenance_windows(data.get("maintenance", []), ctx, errors)

    if errors:
        raise ConfigError(errors)
    config = Config(
        agent=AgentConfig(**kw["agent"]),
        boxes=tuple(BoxConfig(**b) for b in boxes_kw),
        source=source,
        maintenance=maintenance,
        box_lines=lines,
        **{s: SECTIONS[s](**kw[s]) for s in SECTIONS if s not in TABLE_ARRAYS and s not in ("agent", "influxdb")},
        # InfluxDB only when configured (issue 31): no section, no writer, no spool, no write attempt
        influxdb=InfluxConfig(**kw["influxdb"]) if "influxdb" in data else None,
    )
    errors = runtime_errors(config)
    if not errors and check_files:
        errors = file_errors(config) + host_errors(config)
    if errors:
        raise ConfigError(errors)
    return config


def _maintenance_windows(raw: Any, ctx: Context, errors: list[str]) -> tuple[MaintenanceConfig, ...]:
    """[[maintenance]] tables -> MaintenanceConfig; each error names maintenance[i].key."""
    if not isinstance(raw, list):
        errors.append(f"maintenance: expected [[maintenance]] tables, got {_show(raw)}")
        return ()
    required = [f.name for f in fields(MaintenanceConfig) if f.metadata["required"]]
    out = []
    for i, table in enumerate(raw):
        path = f"maintenance[{i}]"
        m = _section(MaintenanceConfig, table, path, errors)
        if m is None:
            continue
        problems = MaintenanceConfig.check(m, table, path, ctx)
        errors += problems
        if not problems and all(k in m for k in required):
            out.append(MaintenanceConfig(**m))
    return tuple(out)


def box_value(key: str, value: Any) -> Any:
    """VALUE converted as the [[box]] key KEY is in a config file (e.g. a Docker label's); ValueError says why not."""
    f = next((f for f in fields(BoxConfig) if f.metadata["key"] == key), None)
    if f is None:
        raise ValueError(f"no [[box]] key {key!r}")
    try:
        return f.metadata["conv"](value)
    except _Invalid as exc:
        raise ValueError(f"{exc.sub}: {exc.msg}" if exc.sub else exc.msg) from None


def box_from_table(raw: dict[str, Any], config: Config, path: str = "box") -> BoxConfig:
    """One [[box]] table (as TOML decodes it, e.g. a discovered container's) validated as parse() and
    runtime_errors() do, errors named PATH; ConfigError otherwise."""
    errors: list[str] = []
    b = _section(BoxConfig, raw, path, errors)
    if b is not None:
        ctx = Context(interval_s=config.agent.interval_s, interface=config.agent.interface,
                      discovery=config.discovery.docker)
        errors += BoxConfig.check(b, raw, path, ctx)
    if errors or b is None:
        raise ConfigError(errors)
    box = BoxConfig(**b)
    errors = runtime_errors(replace(config, boxes=(box,), box_lines=()), box_paths=(path,))
    if errors:
        raise ConfigError(errors)
    return box


def loads(text: str, source: str | None = None, check_files: bool = False) -> Config:
    """Parse TOML text; syntax errors become ConfigError too (CHECK_FILES: see parse)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source or 'config'}: TOML syntax error: {exc}") from None
    return parse(data, source, check_files, box_lines=box_lines(text))


def load(path: str | os.PathLike[str], check_files: bool = True) -> Config:
    """Read and validate the TOML config file at path; CHECK_FILES: also the files it names and the routes.

    Commands that only read what the agent stored (status, events, report, evidence) pass False:
    a hook's executable missing on the machine where an admin reads a report is not their concern.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8: {exc}") from None
    return loads(text, path, check_files)
