"""Every committed dashboard validates against Grafana's published dashboard schema (grafana/schema/, see its
README for the source, the license and the three places loosened back to Grafana's CUE), and a wrong one fails.
"""
from __future__ import annotations

import copy
import glob
import hashlib
import json
import os

import jsonschema
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCHEMA_DIR = os.path.join(ROOT, "grafana", "schema")
DASHBOARDS = sorted(glob.glob(os.path.join(ROOT, "grafana", "dashboards", "*.json")))
# panel type -> its schema file (grafana-foundation-sdk names them without the dash)
PANEL_SCHEMAS = {"stat": "stat", "table": "table", "timeseries": "timeseries", "bargauge": "bargauge",
                 "state-timeline": "statetimeline"}
# The vendored files are upstream's, byte for byte (grafana-foundation-sdk f178d5a, jsonschema/).
SHA256 = {
    "dashboard.jsonschema.json": "67451cd5b288f97e3f68eccd52ffa4f75151fc87c669b8cd93c051056b294265",
    "stat.jsonschema.json": "da547c8b1e52883a77e876f34d90d6034266ca8488a5601900ca26fc01d74b9e",
    "table.jsonschema.json": "eeaf780eb1be6fcd2ff0c098a1ba6eb051a8a37a0b2ea8db7c4d3bcdc5db6b97",
    "timeseries.jsonschema.json": "77ba36d66bbfcb363eeb5e6957813ca4b4cbc5a5bc4e8a12034d4c3b8cbbbde4",
    "bargauge.jsonschema.json": "dbd22a7b71c4133b880ad39daeaf33c5bf0509fe0d5dc7a882fe3449207b636f",
    "statetimeline.jsonschema.json": "4df9f488db587b074de51e2b10d6361e3dd390f110aee105029f334b863bd365",
}


def _load(name: str) -> dict:
    with open(os.path.join(SCHEMA_DIR, name), encoding="utf-8") as fh:
        return json.load(fh)


def dashboard_validator() -> jsonschema.protocols.Validator:
    """The dashboard schema, loosened back to Grafana's CUE in the three places grafana/schema/README.md lists."""
    schema = _load("dashboard.jsonschema.json")
    d = schema["definitions"]
    d["MatcherConfig"]["properties"]["options"] = {}        # CUE: options?: _
    d["DynamicConfigValue"]["properties"]["value"] = {}     # CUE: value?: _
    d["AnnotationQuery"]["additionalProperties"] = True     # CUE: #AnnotationQuery {... ...}
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _without_required(node):
    if isinstance(node, dict):
        return {k: _without_required(v) for k, v in node.items() if k != "required"}
    if isinstance(node, list):
        return [_without_required(v) for v in node]
    return node


def panel_validators(panel_type: str) -> dict[str, jsonschema.protocols.Validator]:
    """"options" and "custom" (fieldConfig.defaults.custom) validators of a panel type; required dropped (README)."""
    schema = _without_required(_load(PANEL_SCHEMAS[panel_type] + ".jsonschema.json"))
    out = {}
    for what, definition in (("options", "Options"), ("custom", "FieldConfig")):
        if definition in schema["definitions"]:
            sub = {"$schema": schema["$schema"], "$ref": f"#/definitions/{definition}",
                   "definitions": schema["definitions"]}
            cls = jsonschema.validators.validator_for(sub)
            cls.check_schema(sub)
            out[what] = cls(sub)
    return out


def errors(dashboard: dict) -> list[str]:
    """Every schema error of a dashboard (dashboard model, then each panel's options), as "path: message"."""
    out = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
           for e in dashboard_validator().iter_errors(dashboard)]
    for i, panel in enumerate(dashboard.get("panels", [])):
        if panel.get("type") == "row":
            continue
        if panel.get("type") not in PANEL_SCHEMAS:
            out.append(f"panels/{i}: panel type {panel.get('type')!r} has no vendored schema; vendor it in grafana/schema/")
            continue
        checks = panel_validators(panel["type"])
        parts = {"options": panel.get("options", {}),
                 "custom": panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})}
        for what, validator in checks.items():
            out += [f"panels/{i}/{what}/{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
                    for e in validator.iter_errors(parts[what])]
    return out


def test_the_vendored_schemas_are_upstreams():
    for name, digest in SHA256.items():
        with open(os.path.join(SCHEMA_DIR, name), "rb") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == digest, name


def test_there_are_dashboards_to_check():
    assert len(DASHBOARDS) >= 2


@pytest.mark.parametrize("path", DASHBOARDS, ids=os.path.basename)
def test_every_committed_dashboard_is_valid(path):
    with open(path, encoding="utf-8") as fh:
        dashboard = json.load(fh)
    assert errors(dashboard) == []
    assert {p["type"] for p in dashboard["panels"]} - {"row"} <= set(PANEL_SCHEMAS)


def _fleet() -> dict:
    with open(os.path.join(ROOT, "grafana", "dashboards", "fleet-stability.json"), encoding="utf-8") as fh:
        return json.load(fh)


def _first(dashboard: dict, panel_type: str) -> dict:
    return next(p for p in dashboard["panels"] if p["type"] == panel_type)


@pytest.mark.parametrize("mutate, where", [
    pytest.param(lambda d: d.update(graphTooltip="1"), "graphTooltip", id="graphTooltip-a-string"),
    pytest.param(lambda d: d.update(refresh=60), "refresh", id="refresh-a-number"),
    pytest.param(lambda d: d["panels"][1]["gridPos"].update(w="16"), "panels/1", id="gridPos-w-a-string"),
    pytest.param(lambda d: d["templating"]["list"][1].update(type="dropdown"), "templating/list/1/type",
                 id="unknown-variable-type"),
    pytest.param(lambda d: d["links"][0].pop("tooltip"), "links/0", id="link-without-tooltip"),
    pytest.param(lambda d: d["annotations"]["list"][1].update(enable="yes"), "annotations/list/1/enable",
                 id="annotation-enable-a-string"),
    pytest.param(lambda d: _first(d, "stat")["options"].update(graphMode="sparkline"), "options/graphMode",
                 id="stat-graphMode-not-an-enum"),
    pytest.param(lambda d: _first(d, "timeseries")["fieldConfig"]["defaults"]["custom"].update(lineWidth="2"),
                 "custom/lineWidth", id="timeseries-lineWidth-a-string"),
    pytest.param(lambda d: _first(d, "table")["options"].update(showHeader=1), "options/showHeader",
                 id="table-showHeader-a-number"),
])
def test_a_dashboard_with_a_wrong_field_fails(mutate, where):
    dashboard = copy.deepcopy(_fleet())
    assert errors(dashboard) == []
    mutate(dashboard)
    found = errors(dashboard)
    assert found and any(where in e for e in found), found
