#!/usr/bin/env python3
"""Generate the Grafana dashboards (JSON) and provisioning files (YAML) for vobox-agent from code.

`python grafana/generate.py` writes every file under grafana/; `--check` exits 1 (listing the
files) when a committed file differs from what this script generates. Plain dicts built by small
helpers, no dependency: the dashboards use a handful of panel types and raw InfluxQL queries, so
grafana-foundation-sdk would add a pinned dependency without removing any code.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from typing import NamedTuple

import yaml

from probes import LAYERS as PROBE_LAYERS

GRAFANA_DIR = os.path.dirname(os.path.abspath(__file__))
SCHEMA_VERSION = 39           # Grafana 10.4 dashboard schema
DS_UID = "vobox-influxdb"     # provisioned datasource uid: the alert rules' and the dashboards' default
# Panels, variables and annotations go through the `datasource` template variable, so a dashboard
# imported through the UI into a Grafana whose InfluxDB has another uid picks that one.
DS_REF = {"type": "influxdb", "uid": "${datasource}"}
FOLDER_UID = "vobox"          # the dashboards' and the rules' folder, by uid everywhere
FOLDER_TITLE = "vobox"
AGENT_INTERVAL_S = 10         # [agent].interval: the cycle length the dashboards and alerts assume
SILENT_INTERVALS = 3          # "agent silent" fires after this many cycles without an `agent` point
FROZEN_FOR = "30s"            # how long a box must stay frozen before the alert fires
SEGMENT_HELD_FOR = "15m"      # how long a segment freeze holds before its alert fires (prometheus/: the same)
EXPIRY_DAYS = 14              # certificates and proxies with fewer days left are listed and alerted on

# Filters shared by the queries; the variables are regex-formatted by Grafana (see README).
F_SITE = '"site" =~ /^$site$/'
F_KIND = '"kind" =~ /^$kind$/'
F_BOX = '"box" =~ /^$box$/'
F_ONE_BOX = f"{F_SITE} AND {F_BOX}"   # box detail: a box name is unique per site only
F_ACTED = '"dry_run" = 0 AND "deferred" = 0'   # remediations that were really done (everywhere they are counted)
F_FLEET = f"{F_SITE} AND {F_KIND} AND {F_BOX}"
LAYERS = PROBE_LAYERS        # the layer order has one definition: probes.types.LAYERS

# The Prometheus dashboards: the same panel definitions, each query's PromQL (Prom) instead of its InfluxQL.
PROM_DS_REF = {"type": "prometheus", "uid": "${datasource}"}
# The label the agents export the site in: [metrics] site_label's default (agent.core.config.model
# DEFAULT_SITE_LABEL; not imported: the generator needs no config). Another site_label: change it and regenerate.
P_SITE_LABEL = "vobox_site"
P_FLEET = f'{P_SITE_LABEL}=~"$site",kind=~"$kind",box=~"$box"'   # the variables' regexes, as F_FLEET
P_ONE_BOX = f'{P_SITE_LABEL}=~"$site",box=~"$box"'
P_RAN = 'result=~"recovered|not_recovered|unverified|failed"'   # actions that ran (as F_ACTED's count("ok"))
_PROM = "_prom"              # private keys of the definitions, never written
_PROM_PANEL = "_prom_panel"


def _eq(label: str, value: str) -> str:
    """',label="value"': one more matcher."""
    return f',{label}="{value}"'


def _inc(metric: str, matchers: str, window: str = "$__range") -> str:
    """increase() of a counter over the window (the dashboards' estimate; `report --prometheus` counts exactly)."""
    return f"increase({metric}{{{matchers}}}[{window}])"


def p_availability(matchers: str, by: str, down: str = "vobox_box_down_cycles_total",
                   window: str = "$__range") -> str:
    """100 x (1 - down cycles / cycles) summed by BY: mean(up) of the `box` points."""
    grp = f" by ({by})" if by else ""
    return (f"100 * (1 - sum{grp} ({_inc(down, matchers, window)}) / "
            f"sum{grp} ({_inc('vobox_box_cycles_total', matchers, window)}))")


# --------------------------------------------------------------------------- building blocks

class Prom(NamedTuple):
    """The PromQL of a panel's query (the same panel's second query language): expr, legend, an instant query
    (one value per series over the dashboard's range, as the InfluxQL without GROUP BY time) or a range one."""

    expr: str
    legend: str = ""
    instant: bool = False
    fmt: str = "time_series"


NOT_NEEDED = Prom("")   # a query PromQL does without (another query of the panel computes the figure itself)


def target(query: str, ref_id: str = "A", alias: str | None = None, fmt: str = "time_series",
           prom: Prom | None = None) -> dict:
    """One query of a panel: raw InfluxQL, and its PromQL when the agent's /metrics can answer it too."""
    t = {"datasource": DS_REF, "rawQuery": True, "query": query, "refId": ref_id, "resultFormat": fmt}
    if alias:
        t["alias"] = alias
    if prom is not None:
        t[_PROM] = prom
    return t


def panel(kind: str, title: str, grid: tuple[int, int, int, int], targets: list[dict], *,
          description: str = "", unit: str | None = None, decimals: int | None = None,
          options: dict | None = None, custom: dict | None = None, mappings: list | None = None,
          thresholds: list | None = None, overrides: list | None = None,
          transformations: list | None = None, min_value=None, max_value=None,
          display_name: str | None = None, prom_panel: dict | None = None) -> dict:
    """A panel of type `kind` at grid (x, y, w, h); prom_panel: keys of the panel that differ for Prometheus
    (e.g. no transformation where PromQL computes the figure itself)."""
    x, y, w, h = grid
    defaults: dict = {}
    if unit:
        defaults["unit"] = unit
    if decimals is not None:
        defaults["decimals"] = decimals
    if display_name:
        defaults["displayName"] = display_name
    if min_value is not None:
        defaults["min"] = min_value
    if max_value is not None:
        defaults["max"] = max_value
    if custom:
        defaults["custom"] = custom
    if mappings:
        defaults["mappings"] = mappings
    if thresholds:
        defaults["thresholds"] = {"mode": "absolute", "steps": thresholds}
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS_REF,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        p["transformations"] = transformations
    if prom_panel is not None:
        p[_PROM_PANEL] = prom_panel
    return p


def row(title: str, y: int) -> dict:
    """A collapsible-free row header."""
    return {"type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}}


def stat_options(text_mode: str = "value_and_name") -> dict:
    """Options for a stat panel showing one number per series."""
    return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": text_mode, "colorMode": "value", "graphMode": "none",
            "justifyMode": "auto", "orientation": "auto"}


def table_options(sort_by: str | None = None) -> dict:
    """Options for a table panel."""
    o: dict = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"]}}
    if sort_by:
        o["sortBy"] = [{"displayName": sort_by, "desc": True}]
    return o


def query_variable(name: str, label: str, query: str, *, multi: bool, include_all: bool) -> dict:
    """A `SHOW TAG VALUES` template variable; All means the regex `.*`."""
    v = {
        "type": "query", "name": name, "label": label, "datasource": DS_REF,
        "query": query, "definition": query, "refresh": 2, "sort": 1, "regex": "",
        "multi": multi, "includeAll": include_all, "hide": 0, "options": [],
    }
    # Without All, no `current`: Grafana selects the first value (the schema refuses an empty one).
    if include_all:
        v["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
        v["allValue"] = ".*"
    return v


def constant_variable(name: str, value: str, description: str) -> dict:
    """A hidden constant (Grafana replaces $name with value verbatim)."""
    return {"type": "constant", "name": name, "query": value, "hide": 2, "description": description,
            "current": {"text": value, "value": value}, "options": [{"text": value, "value": value, "selected": True}]}


def datasource_variable() -> dict:
    """The InfluxDB datasource to read (default: the provisioned one; any InfluxDB on UI import)."""
    return {"type": "datasource", "name": "datasource", "label": "InfluxDB", "query": "influxdb",
            "regex": "", "hide": 0, "multi": False, "includeAll": False, "options": [], "refresh": 1,
            "current": {"selected": True, "text": "vobox InfluxDB", "value": DS_UID}}


def variables(box_multi: bool) -> list[dict]:
    """The datasource, site, kind, box (box chained on site and kind) and the cycle length constant."""
    return [
        datasource_variable(),
        query_variable("site", "Site", 'SHOW TAG VALUES FROM "box" WITH KEY = "site"', multi=True, include_all=True),
        query_variable("kind", "Kind", 'SHOW TAG VALUES FROM "box" WITH KEY = "kind"', multi=True, include_all=True),
        query_variable("box", "Box", f'SHOW TAG VALUES FROM "box" WITH KEY = "box" WHERE {F_SITE} AND {F_KIND}',
                       multi=box_multi, include_all=box_multi),
        constant_variable("cycle_s", str(AGENT_INTERVAL_S),
                          "the agent's [agent].interval in seconds (regenerate when it differs)"),
    ]


def annotation_segment_freeze() -> dict:
    """Segment freezes (many boxes of one segment at once) as annotations."""
    q = ('SELECT "boxes", "layer", "duration_s", "open" FROM "segment_freeze" '
         f'WHERE {F_SITE} AND $timeFilter')
    return {"name": "Segment freezes", "datasource": DS_REF, "enable": True, "iconColor": "purple",
            "query": q, "textColumn": "layer", "tagsColumn": "segment",
            "target": {"query": q, "rawQuery": True, "refId": "Anno", "resultFormat": "table"}}


def annotation_freezes(box_filter: str) -> dict:
    """Box freezes with their layer and evidence bundle path."""
    q = ('SELECT "box", "layer", "duration_s", "evidence" FROM "freeze" '
         f'WHERE {box_filter} AND $timeFilter')
    return {"name": "Freezes", "datasource": DS_REF, "enable": False, "iconColor": "red",
            "query": q, "textColumn": "evidence", "tagsColumn": "box",
            "target": {"query": q, "rawQuery": True, "refId": "Anno", "resultFormat": "table"}}


def annotation_maintenance(box_filter: str) -> dict:
    """Maintenance windows entering and leaving (the agent's `maintenance` points), with the reason and who."""
    q = ('SELECT "box", "event", "reason", "who" FROM "maintenance" '
         f'WHERE "origin" = \'agent\' AND {box_filter} AND $timeFilter')
    return {"name": "Maintenance", "datasource": DS_REF, "enable": True, "iconColor": "blue",
            "query": q, "textColumn": "reason", "tagsColumn": "box,event",
            "target": {"query": q, "rawQuery": True, "refId": "Anno", "resultFormat": "table"}}


def annotation_audit_changes(box_filter: str) -> dict:
    """Privilege changes between two isolation audits (the agent's `audit_change` points): "+CAP_SYS_ADMIN"."""
    q = ('SELECT "box", "detail", "old_class", "new_class" FROM "audit_change" '
         f'WHERE {box_filter} AND $timeFilter')
    return {"name": "Privilege changes", "datasource": DS_REF, "enable": True, "iconColor": "orange",
            "query": q, "textColumn": "detail", "tagsColumn": "box,new_class",
            "target": {"query": q, "rawQuery": True, "refId": "Anno", "resultFormat": "table"}}


def render(dash: dict, language: str) -> dict:
    """The dashboard for an InfluxDB ("influxql") or a Prometheus ("promql") datasource from one definition.

    promql: every query becomes its PromQL (legend, instant or range), the panel takes its prom_panel keys,
    the datasource, variables (label_values) and annotations are Prometheus'; a panel with a query that has
    no PromQL (what only InfluxDB's points hold: the freeze and event lists) is left out and named in the
    description; the uid and title say Prometheus.
    """
    if language not in ("influxql", "promql"):
        raise ValueError(f"unknown query language {language!r}: influxql, promql")
    dash = copy.deepcopy(dash)
    if language == "influxql":
        for p in dash["panels"]:
            p.pop(_PROM_PANEL, None)
            if "targets" in p:   # a query PromQL needs and InfluxQL does without has no InfluxQL
                p["targets"] = [t for t in p["targets"] if t["query"]]
            for t in p.get("targets", []):
                t.pop(_PROM, None)
        return dash
    panels, left_out = [], []
    for p in dash["panels"]:
        if p["type"] == "row":
            panels.append(p)
            continue
        if not all(_PROM in t for t in p["targets"]):
            left_out.append(p["title"])
            continue
        p["targets"] = [_prom_target(t[_PROM], t["refId"]) for t in p["targets"] if t[_PROM].expr]
        p["datasource"] = PROM_DS_REF
        for key, value in p.pop(_PROM_PANEL, {}).items():
            if value is None:
                p.pop(key, None)
            elif key == "fieldConfig.defaults":
                merged = {**p["fieldConfig"]["defaults"], **value}
                p["fieldConfig"]["defaults"] = {k: v for k, v in merged.items() if v is not None}
            else:
                p[key] = value
        panels.append(p)
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    dash["panels"] = panels
    dash["uid"] += "-prometheus"
    dash["title"] += " (Prometheus)"
    if left_out:
        dash["description"] += "; InfluxDB only: " + ", ".join(left_out)
    box_filter = P_ONE_BOX if dash["uid"].startswith("vobox-box") else P_FLEET
    dash["templating"]["list"] = prom_variables(box_multi=box_filter == P_FLEET)
    dash["annotations"]["list"] = [dash["annotations"]["list"][0], *prom_annotations(box_filter)]
    return dash


def _prom_target(q: Prom, ref_id: str) -> dict:
    t = {"datasource": PROM_DS_REF, "refId": ref_id, "expr": q.expr, "legendFormat": q.legend or "__auto",
         "range": not q.instant, "instant": q.instant, "format": q.fmt, "editorMode": "code"}
    return t


def prom_variables(box_multi: bool) -> list[dict]:
    """The datasource (any Prometheus), site, kind, box from label_values(), and the cycle length constant."""
    def lv(name: str, label: str, selector: str, multi: bool, include_all: bool, of: str | None = None) -> dict:
        v = query_variable(name, label, f"label_values({selector}, {of or name})", multi=multi,
                           include_all=include_all)
        v["datasource"] = PROM_DS_REF
        return v

    return [
        {"type": "datasource", "name": "datasource", "label": "Prometheus", "query": "prometheus", "regex": "",
         "hide": 0, "multi": False, "includeAll": False, "options": [], "refresh": 1},
        lv("site", "Site", "vobox_box_cycles_total", True, True, of=P_SITE_LABEL),
        lv("kind", "Kind", f'vobox_box_cycles_total{{{P_SITE_LABEL}=~"$site"}}', True, True),
        lv("box", "Box", f'vobox_box_cycles_total{{{P_SITE_LABEL}=~"$site",kind=~"$kind"}}', box_multi, box_multi),
        constant_variable("cycle_s", str(AGENT_INTERVAL_S),
                          "the agent's [agent].interval in seconds (regenerate when it differs)"),
    ]


def prom_annotations(box_filter: str) -> list[dict]:
    """Segment freezes, box freezes and maintenance windows from the gauges (while they hold)."""
    def anno(name: str, expr: str, colour: str, title: str, enable: bool = True) -> dict:
        return {"name": name, "datasource": PROM_DS_REF, "enable": enable, "iconColor": colour, "expr": expr,
                "step": f"{AGENT_INTERVAL_S}s", "titleFormat": title, "useValueForTime": False}

    return [anno("Segment freezes", f'vobox_segment_frozen{{{P_SITE_LABEL}=~"$site"}} == 1', "purple", "segment {{segment}}"),
            anno("Freezes", f"max by (box, layer) (vobox_box_layer{{{box_filter},layer!=\"none\"}} == 1) "
                 f"and on (box) (vobox_box_freeze_start_timestamp_seconds{{{box_filter}}} > 0)", "red",
                 "{{box}} frozen at {{layer}}", enable=False),
            anno("Maintenance", f'vobox_box_state{{{box_filter},state="maintenance"}} == 1', "blue",
                 "{{box}} in maintenance")]


def dashboard(uid: str, title: str, description: str, panels: list[dict], templating: list[dict],
              annotations: list[dict], time_from: str) -> dict:
    """The dashboard envelope; panel ids assigned in order."""
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    builtin = {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
               "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
               "type": "dashboard"}
    return {
        "uid": uid, "title": title, "description": description, "tags": ["vobox"],
        "editable": False, "graphTooltip": 1, "refresh": "1m", "schemaVersion": SCHEMA_VERSION,
        "time": {"from": time_from, "to": "now"}, "timezone": "utc", "version": 1,
        "annotations": {"list": [builtin, *annotations]},
        "templating": {"list": templating}, "panels": panels,
        "links": [{"type": "dashboards", "tags": ["vobox"], "title": "vobox", "asDropdown": True,
                   "icon": "external link", "tooltip": "", "targetBlank": False, "includeVars": False,
                   "keepTime": False}],
    }


# --------------------------------------------------------------------------- dashboards

UP_MAPPINGS = [{"type": "value", "options": {"0": {"text": "down", "color": "red", "index": 0},
                                               "1": {"text": "up", "color": "green", "index": 1}}}]
# Each box state of agent.core.events.STATES gets a colour; a state without one fails the tests.
STATE_COLOURS = {"up": "green", "suspect": "yellow", "frozen": "red", "recovering": "blue", "stopped": "purple",
                 "maintenance": "text"}
STATE_MAPPINGS = [{"type": "value", "options": {
    state: {"color": colour, "index": i} for i, (state, colour) in enumerate(STATE_COLOURS.items())}}]
AVAIL_THRESHOLDS = [{"color": "red", "value": None}, {"color": "orange", "value": 99},
                    {"color": "green", "value": 99.9}]


def freeze_table_query(box_filter: str) -> str:
    """Freezes with start (the point time), box, kind, layer, duration, open flag, evidence."""
    return ('SELECT "box", "kind", "layer", "duration_s", "open", "evidence" FROM "freeze" '
            f'WHERE {box_filter} AND $timeFilter ORDER BY time DESC')


def expiring_query(box_filter: str, time_filter: str) -> str:
    """Last days left per certificate or proxy (probe points' cert_days_left) under EXPIRY_DAYS."""
    return (f'SELECT last("cert_days_left") AS "days_left" FROM "probe" WHERE "cert_days_left" < {EXPIRY_DAYS} '
            f'AND {box_filter} AND {time_filter} GROUP BY "box", "kind", "site", "probe", "address"')


def fleet_dashboard(language: str = "influxql") -> dict:
    """Fleet stability: containers against VMs over the selected range, for an InfluxDB or Prometheus datasource."""
    return render(_fleet_definition(), language)


def box_dashboard(language: str = "influxql") -> dict:
    """Box detail, for an InfluxDB or Prometheus datasource."""
    return render(_box_definition(), language)


def _fleet_definition() -> dict:
    """Fleet stability: the panel definitions (each query in InfluxQL, and in PromQL where /metrics answers it)."""
    p: list[dict] = []
    p.append(row("Availability", 0))
    p.append(panel("stat", "Availability per kind", (0, 1, 8, 5), [target(
        f'SELECT mean("up") * 100 AS "availability" FROM "box" WHERE {F_FLEET} AND $timeFilter GROUP BY "kind"',
        alias="$tag_kind", prom=Prom(p_availability(P_FLEET, "kind"), "{{kind}}", instant=True))],
        unit="percent", decimals=3, thresholds=AVAIL_THRESHOLDS, options=stat_options(),
        description="mean of `up` over every cycle of every box of the kind: box-time up / box-time observed "
                    "(cycles in maintenance windows or stopped on purpose have no `up`: left out)"))
    p.append(panel("bargauge", "Availability per box", (8, 1, 16, 5), [target(
        f'SELECT mean("up") * 100 AS "availability" FROM "box" WHERE {F_FLEET} AND $timeFilter GROUP BY "box", "kind"',
        alias="$tag_box ($tag_kind)", prom=Prom(p_availability(P_FLEET, "box, kind"), "{{box}} ({{kind}})",
                                                 instant=True))],
        unit="percent", decimals=3, thresholds=AVAIL_THRESHOLDS, min_value=0, max_value=100,
        options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                 "displayMode": "lcd", "orientation": "horizontal", "showUnfilled": True}))
    p.append(panel("timeseries", "Availability over time per kind", (0, 6, 24, 7), [target(
        f'SELECT mean("up") * 100 FROM "box" WHERE {F_FLEET} AND $timeFilter '
        'GROUP BY time($__interval), "kind" fill(null)', alias="$tag_kind",
        prom=Prom(p_availability(P_FLEET, "kind", window="$__rate_interval"), "{{kind}}"))], unit="percent",
        custom={"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "spanNulls": False}))

    p.append(row("Freezes", 13))
    p.append(panel("stat", "Freezes", (0, 14, 6, 5), [target(
        f'SELECT count("duration_s") AS "freezes" FROM "freeze" WHERE {F_FLEET} AND $timeFilter GROUP BY "kind"',
        alias="$tag_kind", prom=Prom(f"round(sum by (kind) ({_inc('vobox_freezes_total', P_FLEET)}))", "{{kind}}",
                                     instant=True))], unit="none", options=stat_options(),
        description="freezes that started in the range (open ones included)"))
    # From the cycles, not sum(freeze.duration_s): an open freeze's point holds only its length at detection.
    p.append(panel("stat", "Total frozen time", (6, 14, 6, 5), [target(
        f'SELECT (count("up") - sum("up")) * $cycle_s AS "frozen_s" FROM "box" WHERE {F_FLEET} AND $timeFilter '
        'GROUP BY "kind"', alias="$tag_kind",
        prom=Prom(f"sum by (kind) ({_inc('vobox_box_down_cycles_total', P_FLEET)}) * $cycle_s", "{{kind}}",
                  instant=True))], unit="s", options=stat_options(),
        description="box-time down in the range (down cycles x $cycle_s); open freezes count as long as they last"))
    p.append(panel("stat", "MTBF", (12, 14, 6, 5), [
        target(f'SELECT sum("up") * $cycle_s AS "uptime_s" FROM "box" WHERE {F_FLEET} AND $timeFilter GROUP BY "kind"',
               "A", fmt="table", prom=Prom(
                   f"(sum by (kind) ({_inc('vobox_box_cycles_total', P_FLEET)}) - sum by (kind) "
                   f"({_inc('vobox_box_down_cycles_total', P_FLEET)})) * $cycle_s / sum by (kind) "
                   f"({_inc('vobox_freezes_total', P_FLEET)})", "{{kind}}", instant=True)),
        target(f'SELECT count("duration_s") AS "freezes" FROM "freeze" WHERE {F_FLEET} AND $timeFilter GROUP BY "kind"',
               "B", fmt="table", prom=NOT_NEEDED)],
        unit="s", options={**stat_options(), "reduceOptions": {"calcs": ["lastNotNull"], "fields": "/^mtbf_s$/",
                                                                "values": True}},
        description="box-time up / number of freezes, per kind (up cycles x $cycle_s)",
        display_name="${__data.fields.kind}",
        prom_panel={"transformations": None, "options": stat_options(), "fieldConfig.defaults": {"displayName": None}},
        transformations=[
            {"id": "merge", "options": {}},
            {"id": "calculateField", "options": {
                "mode": "binary", "alias": "mtbf_s", "replaceFields": False,
                "binary": {"left": "uptime_s", "operator": "/", "right": "freezes"}}},
            {"id": "organize", "options": {"excludeByName": {"Time": True, "uptime_s": True, "freezes": True}}},
        ]))
    p.append(panel("stat", "MTTR", (18, 14, 6, 5), [target(
        f'SELECT mean("duration_s") AS "mttr_s" FROM "freeze" WHERE "open" = 0 AND {F_FLEET} AND $timeFilter '
        'GROUP BY "kind"', alias="$tag_kind", prom=Prom(
            f"sum by (kind) ({_inc('vobox_freeze_duration_seconds_sum', P_FLEET)}) / sum by (kind) "
            f"({_inc('vobox_freeze_duration_seconds_count', P_FLEET)})", "{{kind}}", instant=True))],
        unit="s", options=stat_options(), description="mean duration of the closed freezes"))
    p.append(panel("bargauge", "Freezes by layer", (0, 19, 8, 7), [target(
        f'SELECT count("duration_s") AS "{layer}" FROM "freeze" WHERE "layer" = \'{layer}\' AND {F_FLEET} '
        'AND $timeFilter GROUP BY "kind"', ref_id=layer.upper(), alias=f"{layer} $tag_kind",
        prom=Prom(f"round(sum by (kind) ({_inc('vobox_freezes_total', P_FLEET + _eq('layer', layer))}))",
                  f"{layer} {{{{kind}}}}", instant=True)) for layer in LAYERS],
        unit="none", options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                              "displayMode": "basic", "orientation": "horizontal"},
        description="l2: ARP/NDP unanswered; l3: ARP answered, ping not; l4: ping answered, a TCP port not; "
                    "l7: the port answers, the service (http/tls/tcp dialogue) or an in-container check does not"))
    p.append(panel("table", "Freezes list", (8, 19, 16, 7), [target(freeze_table_query(F_FLEET), fmt="table")],
                   options=table_options(), overrides=[
                       {"matcher": {"id": "byName", "options": "duration_s"},
                        "properties": [{"id": "unit", "value": "s"}]},
                       {"matcher": {"id": "byName", "options": "Time"},
                        "properties": [{"id": "displayName", "value": "start"}]}],
                   description="evidence: the freeze's evidence bundle (vobox-agent evidence show PATH)"))

    p.append(row("Remediation", 26))
    p.append(panel("stat", "Remediations", (0, 27, 8, 5), [target(
        f'SELECT count("ok") AS "actions" FROM "remediation" WHERE {F_ACTED} AND {F_FLEET} AND $timeFilter '
        'GROUP BY "action"', alias="$tag_action",
        prom=Prom(f"round(sum by (action) ({_inc('vobox_remediations_total', P_FLEET + ',' + P_RAN)}))",
                  "{{action}}", instant=True))], unit="none", options=stat_options()))
    p.append(panel("stat", "Remediation success rate", (8, 27, 8, 5), [target(
        f'SELECT mean("recovered") * 100 AS "success" FROM "remediation" WHERE {F_ACTED} AND {F_FLEET} '
        'AND $timeFilter GROUP BY "action"', alias="$tag_action",
        prom=Prom(f"100 * sum by (action) ({_inc('vobox_remediations_total', P_FLEET + _eq('result', 'recovered'))})"
                  f" / sum by (action) ({_inc('vobox_remediations_total', P_FLEET + ',' + P_RAN)})", "{{action}}",
                  instant=True))], unit="percent", options=stat_options(),
        description="share of actions after which the box was healthy at verification"))
    p.append(panel("stat", "Remediations by trigger", (16, 27, 8, 5), [target(
        f'SELECT count("ok") AS "actions" FROM "remediation" WHERE {F_ACTED} AND {F_FLEET} AND $timeFilter GROUP BY "trigger"',
        alias="$tag_trigger",
        prom=Prom(f"round(sum by (trigger) ({_inc('vobox_remediations_total', P_FLEET + ',' + P_RAN)}))",
                  "{{trigger}}", instant=True))], unit="none", options=stat_options(),
        description="auto (agent), alert (Grafana/Alertmanager webhook), manual; dry runs left out as everywhere"))

    p.append(row("State", 32))
    p.append(panel("state-timeline", "Up/down per box", (0, 33, 24, 10), [target(
        f'SELECT min("up") FROM "box" WHERE {F_FLEET} AND $timeFilter GROUP BY time($__interval), "box" fill(null)',
        alias="$tag_box", prom=Prom(f"min by (box) (min_over_time(vobox_box_up{{{P_FLEET}}}[$__interval]))",
                                    "{{box}}"))], mappings=UP_MAPPINGS, thresholds=[{"color": "red", "value": None},
                                                                {"color": "green", "value": 1}],
        options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8, "alignValue": "left"},
        description="down when any cycle in the interval was down (min of up)"))
    p.append(row("Certificates and proxies", 43))
    p.append(panel("table", f"Certificates and proxies expiring within {EXPIRY_DAYS} days", (0, 44, 24, 7),
                   [target(expiring_query(F_FLEET, "$timeFilter"), fmt="table")],
                   options=table_options("days_left"), overrides=[
                       {"matcher": {"id": "byName", "options": "days_left"},
                        "properties": [{"id": "unit", "value": "d"}, {"id": "decimals", "value": 1}]}],
                   description="days left of each TLS certificate (tls/https probes) and certificate or proxy "
                               "file (x509 checks) below the limit, last value in the range; negative: expired"))
    p.append(row("Flapping and loss", 51))
    p.append(panel("stat", "Availability, every failed cycle, per kind", (0, 52, 8, 5), [target(
        f'SELECT mean("healthy") * 100 AS "availability" FROM "box" WHERE {F_FLEET} AND $timeFilter GROUP BY "kind"',
        alias="$tag_kind", prom=Prom(p_availability(P_FLEET, "kind", down="vobox_box_failed_cycles_total"),
                                     "{{kind}}", instant=True))],
        unit="percent", decimals=3, thresholds=AVAIL_THRESHOLDS, options=stat_options(),
        description="mean of `healthy` over every cycle: each failed cycle counts, a lone one too. The availability "
                    "above counts freezes only (fail_cycles failing cycles in a row); the difference is the boxes "
                    "failing too briefly to freeze"))
    p.append(panel("bargauge", "Availability, every failed cycle, per box", (8, 52, 16, 5), [target(
        f'SELECT mean("healthy") * 100 AS "availability" FROM "box" WHERE {F_FLEET} AND $timeFilter '
        'GROUP BY "box", "kind"', alias="$tag_box ($tag_kind)",
        prom=Prom(p_availability(P_FLEET, "box, kind", down="vobox_box_failed_cycles_total"), "{{box}} ({{kind}})",
                  instant=True))], unit="percent", decimals=3,
        thresholds=AVAIL_THRESHOLDS, min_value=0, max_value=100,
        options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                 "displayMode": "lcd", "orientation": "horizontal", "showUnfilled": True}))
    p.append(panel("table", "Degraded boxes", (0, 57, 24, 7), [target(
        f'SELECT max("degraded") AS "degraded", max("percent_state_change") AS "percent_state_change", '
        f'mean("healthy") AS "healthy" FROM "box" WHERE {F_FLEET} AND $timeFilter GROUP BY "box", "kind"',
        fmt="table", prom=Prom(f"max by (box, kind) (max_over_time(vobox_box_degraded{{{P_FLEET}}}[$__range]))",
                               instant=True, fmt="table")),
        target("", "B", prom=Prom(f"100 * max by (box, kind) (max_over_time(vobox_box_state_change_ratio{{{P_FLEET}}}"
                                  "[$__range]))", instant=True, fmt="table"), fmt="table"),
        target("", "C", prom=Prom(f"1 - sum by (box, kind) ({_inc('vobox_box_failed_cycles_total', P_FLEET)}) / "
                                  f"sum by (box, kind) ({_inc('vobox_box_cycles_total', P_FLEET)})", instant=True,
                                  fmt="table"), fmt="table")],
        prom_panel={"transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": {
                "Value #A": "degraded", "Value #B": "percent_state_change", "Value #C": "healthy"}}}]},
        options=table_options("percent_state_change"), overrides=[
            {"matcher": {"id": "byName", "options": "percent_state_change"},
             "properties": [{"id": "unit", "value": "percent"}, {"id": "decimals", "value": 0}]},
            {"matcher": {"id": "byName", "options": "healthy"},
             "properties": [{"id": "unit", "value": "percentunit"}, {"id": "decimals", "value": 3},
                            {"id": "displayName", "value": "healthy cycles"}]},
            {"matcher": {"id": "byName", "options": "degraded"},
             "properties": [{"id": "mappings", "value": [{"type": "value", "options": {
                 "0": {"text": "no", "color": "green", "index": 0},
                 "1": {"text": "DEGRADED", "color": "orange", "index": 1}}}]}]}],
        description="degraded: flapping (Nagios/Icinga percent state change over [flapping] window_cycles, above "
                    "high_threshold_percent until it falls to low_threshold_percent) or more failed cycles than "
                    "max_failed_share, at some time in the range; never remediated for that alone"))
    return dashboard("vobox-fleet", "vobox: fleet stability",
                     "Availability, freezes, MTBF/MTTR and remediation: containers against VMs",
                     p, variables(box_multi=True), [annotation_segment_freeze(), annotation_freezes(F_FLEET),
                                                       annotation_maintenance(F_FLEET),
                                                       annotation_audit_changes(F_FLEET)],
                     "now-7d")


def _box_definition() -> dict:
    """Box detail: one box's probes, state, freezes and what was done about them."""
    fb = F_ONE_BOX
    p: list[dict] = []
    p.append(panel("stat", "Availability", (0, 0, 6, 4), [target(
        f'SELECT mean("up") * 100 AS "availability" FROM "box" WHERE {fb} AND $timeFilter',
        prom=Prom(p_availability(P_ONE_BOX, ""), instant=True))],
        unit="percent", decimals=3, thresholds=AVAIL_THRESHOLDS, options=stat_options("value")))
    p.append(panel("stat", "Freezes", (6, 0, 6, 4), [target(
        f'SELECT count("duration_s") AS "freezes" FROM "freeze" WHERE {fb} AND $timeFilter',
        prom=Prom(f"round(sum({_inc('vobox_freezes_total', P_ONE_BOX)}))", instant=True))],
        unit="none", options=stat_options("value")))
    p.append(panel("stat", "MTTR", (12, 0, 6, 4), [target(
        f'SELECT mean("duration_s") AS "mttr_s" FROM "freeze" WHERE "open" = 0 AND {fb} AND $timeFilter',
        prom=Prom(f"sum({_inc('vobox_freeze_duration_seconds_sum', P_ONE_BOX)}) / "
                  f"sum({_inc('vobox_freeze_duration_seconds_count', P_ONE_BOX)})", instant=True))],
        unit="s", options=stat_options("value")))
    p.append(panel("stat", "Remediations", (18, 0, 6, 4), [target(
        f'SELECT count("ok") AS "actions" FROM "remediation" WHERE {F_ACTED} AND {fb} AND $timeFilter',
        prom=Prom(f"round(sum({_inc('vobox_remediations_total', P_ONE_BOX + ',' + P_RAN)}))", instant=True))],
        unit="none", options=stat_options("value"), description="actions really done (dry runs left out)"))
    p.append(panel("state-timeline", "State", (0, 4, 24, 5), [
        target(f'SELECT last("state") AS "state" FROM "box" WHERE {fb} AND $timeFilter '
               'GROUP BY time($__interval) fill(null)', "A", alias="state",
               prom=Prom(f"max by (state) (vobox_box_state{{{P_ONE_BOX}}}) == 1", "{{state}}")),
        target(f'SELECT last("layer") AS "layer" FROM "box" WHERE {fb} AND $timeFilter '
               'GROUP BY time($__interval) fill(null)', "B", alias="layer",
               prom=Prom(f"max by (layer) (vobox_box_layer{{{P_ONE_BOX}}}) == 1", "layer {{layer}}"))],
        mappings=STATE_MAPPINGS, options={"showValue": "auto", "mergeValues": True, "rowHeight": 0.8}))
    p.append(panel("timeseries", "RTT per probe", (0, 9, 12, 8), [target(
        f'SELECT mean("rtt_ms") FROM "probe" WHERE {fb} AND "ok" = 1 AND $timeFilter '
        'GROUP BY time($__interval), "probe", "port" fill(null)', alias="$tag_probe $tag_port",
        prom=Prom(f"1000 * max by (probe) (vobox_probe_rtt_seconds{{{P_ONE_BOX}}})", "{{probe}}"))], unit="ms",
        custom={"drawStyle": "line", "lineWidth": 1, "spanNulls": False}))
    p.append(panel("timeseries", "Loss per probe", (12, 9, 12, 8), [target(
        f'SELECT (1 - mean("ok")) * 100 FROM "probe" WHERE {fb} AND $timeFilter '
        'GROUP BY time($__interval), "probe", "port" fill(null)', alias="$tag_probe $tag_port",
        prom=Prom(f"100 * (1 - min by (probe) (avg_over_time(vobox_probe_success{{{P_ONE_BOX}}}[$__rate_interval])))",
                  "{{probe}}"))], unit="percent",
        min_value=0, max_value=100, custom={"drawStyle": "line", "lineWidth": 1, "fillOpacity": 20}))
    p.append(panel("table", "Freezes", (0, 17, 12, 7), [target(freeze_table_query(fb), fmt="table")],
                   options=table_options(), overrides=[{"matcher": {"id": "byName", "options": "duration_s"},
                                                        "properties": [{"id": "unit", "value": "s"}]}]))
    p.append(panel("table", "Remediations list", (12, 17, 12, 7), [target(
        'SELECT "action", "trigger", "ok", "recovered", "dry_run", "deferred", "duration_s", "detail" FROM "remediation" '
        f'WHERE {fb} AND $timeFilter ORDER BY time DESC', fmt="table")], options=table_options()))
    p.append(panel("table", "Container events", (0, 24, 12, 7), [target(
        f'SELECT "event", "detail" FROM "container_event" WHERE {fb} AND $timeFilter ORDER BY time DESC',
        fmt="table")], options=table_options(),
        description="Docker's own events (die, oom, restart, pause, network disconnect), asked for or not"))
    p.append(panel("table", "MAC changes", (12, 24, 12, 7), [target(
        f'SELECT "address", "old", "new" FROM "mac_change" WHERE {fb} AND $timeFilter ORDER BY time DESC',
        fmt="table")], options=table_options(),
        description="ARP/NDP answered with another MAC than before: stale caches on the LAN"))
    p.append(panel("timeseries", "Flapping and loss", (0, 31, 24, 7), [
        target(f'SELECT max("percent_state_change") FROM "box" WHERE {fb} AND $timeFilter '
               'GROUP BY time($__interval) fill(null)', "A", alias="percent state change",
               prom=Prom(f"100 * max(vobox_box_state_change_ratio{{{P_ONE_BOX}}})", "percent state change")),
        target(f'SELECT max("failed_share") * 100 FROM "box" WHERE {fb} AND $timeFilter '
               'GROUP BY time($__interval) fill(null)', "B", alias="failed cycles in the window",
               prom=Prom(f"100 * max(vobox_box_failed_cycles_ratio{{{P_ONE_BOX}}})", "failed cycles in the window"))],
        unit="percent", min_value=0, max_value=100,
        custom={"drawStyle": "line", "lineWidth": 1, "spanNulls": False, "thresholdsStyle": {"mode": "line"}},
        thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 30}],
        description="the [flapping] window after each cycle: a box is degraded while flapping (percent state "
                    "change above the high threshold, 30 % by default, until it falls to the low one) or while "
                    "more of its cycles failed than max_failed_share; never remediated for that alone"))
    p.append(panel("timeseries", "Isolation audit", (0, 38, 24, 7), [
        target(f'SELECT last("{sev}") FROM "audit_box" WHERE {fb} AND $timeFilter '
               'GROUP BY time($__interval) fill(previous)', ref, alias=f"{sev} findings")
        for sev, ref in (("high", "A"), ("medium", "B"), ("low", "C"))],
        min_value=0, custom={"drawStyle": "line", "lineInterpolation": "stepAfter", "lineWidth": 1,
                             "spanNulls": True},
        description="findings of each isolation audit (vobox-agent audit: docker-bench-security 1.6.0 section 5, "
                    "capabilities against the engine's default set) by severity; the annotations mark each "
                    "privilege change between two audits (\"privileges changed: +CAP_SYS_ADMIN\")"))
    return dashboard("vobox-box", "vobox: box detail", "One box: probes, state, freezes, remediation, events",
                     p, variables(box_multi=False), [annotation_segment_freeze(), annotation_freezes(fb),
                                                        annotation_maintenance(fb), annotation_audit_changes(fb)],
                     "now-24h")


# --------------------------------------------------------------------------- provisioning

def datasource_provisioning() -> dict:
    """InfluxQL datasource; connection details from Grafana's environment (see README).

    One form serves InfluxDB 1.x (database + user/password) and 2.x/3.x through their v1
    compatibility API (database = a DBRP-mapped bucket, password = an API token).
    """
    return {"apiVersion": 1, "datasources": [{
        "name": "vobox InfluxDB", "uid": DS_UID, "type": "influxdb", "access": "proxy",
        "url": "${VOBOX_INFLUX_URL}", "user": "${VOBOX_INFLUX_USER}",
        "jsonData": {"version": "InfluxQL", "dbName": "${VOBOX_INFLUX_DB}", "httpMode": "POST",
                     "timeInterval": f"{AGENT_INTERVAL_S}s"},
        "secureJsonData": {"password": "${VOBOX_INFLUX_PASSWORD}"},
        "editable": False}]}


def dashboards_provisioning() -> dict:
    """File provider for grafana/dashboards (mounted at /var/lib/grafana/dashboards/vobox)."""
    return {"apiVersion": 1, "providers": [{
        "name": "vobox", "orgId": 1, "folder": FOLDER_TITLE, "folderUid": FOLDER_UID, "type": "file",
        "disableDeletion": True, "allowUiUpdates": False, "updateIntervalSeconds": 60,
        "options": {"path": "/var/lib/grafana/dashboards/vobox", "foldersFromFilesStructure": False}}]}


def alert_query(ref_id: str, query: str, from_s: int) -> dict:
    """An InfluxQL query node of an alert rule (evaluated by Grafana's backend)."""
    return {"refId": ref_id, "relativeTimeRange": {"from": from_s, "to": 0}, "datasourceUid": DS_UID,
            "model": {"refId": ref_id, "datasource": {"type": "influxdb", "uid": DS_UID}, "rawQuery": True, "query": query,
                      "resultFormat": "time_series", "intervalMs": AGENT_INTERVAL_S * 1000,
                      "maxDataPoints": 43200}}


def expr_reduce(ref_id: str, source: str, reducer: str) -> dict:
    """Server-side expression: reduce each series to one number."""
    return {"refId": ref_id, "datasourceUid": "__expr__", "relativeTimeRange": {"from": 0, "to": 0},
            "model": {"refId": ref_id, "type": "reduce", "expression": source, "reducer": reducer,
                      "settings": {"mode": "dropNN"}, "datasource": {"type": "__expr__", "uid": "__expr__"}}}


def expr_threshold(ref_id: str, source: str, op: str, value: float) -> dict:
    """Server-side expression: firing when `source op value` (op: lt, gt)."""
    return {"refId": ref_id, "datasourceUid": "__expr__", "relativeTimeRange": {"from": 0, "to": 0},
            "model": {"refId": ref_id, "type": "threshold", "expression": source,
                      "conditions": [{"evaluator": {"type": op, "params": [value]}}],
                      "datasource": {"type": "__expr__", "uid": "__expr__"}}}


def alert_rules_provisioning() -> dict:
    """Rule group: a box frozen (one alert per box), the agent silent, a certificate or proxy expiring."""
    window_s = SILENT_INTERVALS * AGENT_INTERVAL_S
    frozen = {
        "uid": "vobox-box-frozen", "title": "vobox box frozen", "condition": "C",
        "data": [alert_query("A", 'SELECT last("up") AS "up" FROM "box" WHERE $timeFilter GROUP BY "box", "kind", "site"',
                             12 * AGENT_INTERVAL_S),
                 expr_reduce("B", "A", "last"), expr_threshold("C", "B", "lt", 1)],
        "for": FROZEN_FOR, "noDataState": "OK", "execErrState": "Error", "isPaused": False,
        "labels": {"vobox_alert": "box_frozen", "severity": "critical"},
        "annotations": {"summary": "{{ index .Labels \"box\" }} ({{ index .Labels \"kind\" }}) is frozen",
                        "description": "last cycle of box {{ index .Labels \"box\" }} at site "
                                       "{{ index .Labels \"site\" }} was down; the agent's webhook may remediate"},
    }
    silent = {
        "uid": "vobox-agent-silent", "title": "vobox agent silent", "condition": "C",
        "data": [alert_query("A", 'SELECT count("cycle_s") AS "cycles" FROM "agent" WHERE $timeFilter', window_s),
                 expr_reduce("B", "A", "last"), expr_threshold("C", "B", "lt", 1)],
        "for": "0s", "noDataState": "Alerting", "execErrState": "Alerting", "isPaused": False,
        "labels": {"vobox_alert": "agent_silent", "severity": "critical"},
        "annotations": {"summary": f"no `agent` point in the last {window_s}s ({SILENT_INTERVALS} cycles)"},
    }
    expiring = {
        "uid": "vobox-cert-expiring", "title": "vobox certificate or proxy expiring", "condition": "C",
        "data": [alert_query("A", 'SELECT last("cert_days_left") AS "days_left" FROM "probe" WHERE $timeFilter '
                                  'GROUP BY "box", "kind", "site", "probe", "address"', 12 * AGENT_INTERVAL_S),
                 expr_reduce("B", "A", "last"), expr_threshold("C", "B", "lt", EXPIRY_DAYS)],
        "for": "0s", "noDataState": "OK", "execErrState": "Error", "isPaused": False,
        # not box_frozen: the notification policy sends it to no webhook, so it is never remediated
        "labels": {"vobox_alert": "cert_expiring", "severity": "warning"},
        "annotations": {"summary": "{{ index .Labels \"box\" }}: {{ index .Labels \"probe\" }} "
                                   "{{ index .Labels \"address\" }} expires within " + str(EXPIRY_DAYS) + " days",
                        "description": "days left: {{ $values.B }} (negative: expired)"},
    }
    held = {
        # A segment freeze holds remediation only while nothing of the segment answers (issue 26); its point
        # stands at its start with open=1 until it closes (open=0). One open for SEGMENT_HELD_FOR is a dead wire.
        "uid": "vobox-segment-held", "title": "vobox segment freeze holding remediation", "condition": "C",
        "data": [alert_query("A", 'SELECT last("open") AS "open" FROM "segment_freeze" WHERE $timeFilter '
                                  'GROUP BY "segment", "site"', 7 * 86400),
                 expr_reduce("B", "A", "last"), expr_threshold("C", "B", "gt", 0)],
        "for": SEGMENT_HELD_FOR, "noDataState": "OK", "execErrState": "Error", "isPaused": False,
        # not box_frozen: never routed to the webhook (the segment, not a box, is down)
        "labels": {"vobox_alert": "segment_held", "severity": "critical"},
        "annotations": {"summary": "segment {{ index .Labels \"segment\" }} (site {{ index .Labels \"site\" }}) "
                                   "has held remediation for " + SEGMENT_HELD_FOR,
                        "description": "nothing of the segment answers ARP/NDP or ping; the hold ends when it does. "
                                       "To act anyway: vobox-agent remediate --force BOX"},
    }
    # folderUID names the dashboards' folder; folder (the title) for Grafana versions that only read that
    return {"apiVersion": 1, "groups": [{"orgId": 1, "name": "vobox", "folderUID": FOLDER_UID, "folder": FOLDER_TITLE,
                                         "interval": f"{AGENT_INTERVAL_S}s",
                                         "rules": [frozen, silent, expiring, held]}]}


def contact_points_provisioning() -> dict:
    """The agent's webhook receiver: its URL from one variable (webhook_listen has no default port), the token too."""
    return {"apiVersion": 1, "contactPoints": [{"orgId": 1, "name": "vobox-agent-webhook", "receivers": [{
        "uid": "vobox-agent-webhook", "type": "webhook", "disableResolveMessage": False,
        "settings": {"url": "${VOBOX_AGENT_WEBHOOK_URL}", "httpMethod": "POST",
                     "authorization_scheme": "Bearer",
                     "authorization_credentials": "${VOBOX_WEBHOOK_TOKEN}", "maxAlerts": 0}}]}]}


def webhook_route() -> dict:
    """The one nested notification policy the agent needs: `box frozen` to its webhook, one group per box.

    `continue: true` so the site's own routes after it still see the alert (its e-mail or pager keeps working).
    """
    return {"receiver": "vobox-agent-webhook", "group_by": ["alertname", "box"],
            "object_matchers": [["vobox_alert", "=", "box_frozen"]],
            "group_wait": "0s", "group_interval": "1m", "repeat_interval": "10m", "continue": True}


def policy_route_example() -> dict:
    """examples/: the route alone, to merge into the site's policy tree (never installed by copying provisioning/)."""
    return {"routes": [webhook_route()]}


def policies_provisioning() -> dict:
    """examples/: a whole policy tree with the route, for a Grafana that has no notification policies of its own.

    Grafana provisions the policy tree as a whole: this file REPLACES the site's tree, so it is an example, not
    part of provisioning/ (https://grafana.com/docs/grafana/latest/alerting/set-up/provision-alerting-resources/
    file-provisioning/#import-notification-policies: "the entire tree ... is replaced").
    """
    return {"apiVersion": 1, "policies": [{
        "orgId": 1, "receiver": "grafana-default-email", "group_by": ["grafana_folder", "alertname"],
        "routes": [webhook_route()]}]}


# --------------------------------------------------------------------------- files

HEADER = "# Generated by grafana/generate.py - do not edit; edit the script and run it.\n"
EXAMPLE_ROUTE_HEADER = (
    "# EXAMPLE - not provisioning: merge this route into your notification policy tree (grafana/README.md,\n"
    "# \"Notification policies\"): as a child of the root (first, it has continue: true), in the UI or in the\n"
    "# policies file you provision. Without it, `vobox box frozen` alerts go where your tree sends them and\n"
    "# never reach the agent's webhook (the agent still remediates the freezes it detects itself).\n")
EXAMPLE_TREE_HEADER = (
    "# EXAMPLE - this REPLACES Grafana's whole notification policy tree (Grafana provisions the tree as one):\n"
    "# only for a Grafana with no policies of its own. Otherwise merge vobox-policy-route.yaml instead.\n")


def outputs() -> dict[str, str]:
    """Relative path under grafana/ -> file content."""
    def j(d: dict) -> str:
        return json.dumps(d, indent=2, sort_keys=False) + "\n"

    def y(d: dict) -> str:
        # PyYAML, not a hand-written emitter: quoting of every scalar is the library's job.
        return HEADER + yaml.safe_dump(d, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)

    return {
        "dashboards/fleet-stability.json": j(fleet_dashboard()),
        "dashboards/box-detail.json": j(box_dashboard()),
        "dashboards/fleet-stability-prometheus.json": j(fleet_dashboard("promql")),
        "dashboards/box-detail-prometheus.json": j(box_dashboard("promql")),
        "provisioning/datasources/vobox-influxdb.yaml": y(datasource_provisioning()),
        "provisioning/dashboards/vobox.yaml": y(dashboards_provisioning()),
        "provisioning/alerting/vobox-rules.yaml": y(alert_rules_provisioning()),
        "provisioning/alerting/vobox-contact-points.yaml": y(contact_points_provisioning()),
        # Examples to merge by hand: a policy tree is provisioned whole, so copying provisioning/* never replaces
        # the site's notification policies.
        "examples/vobox-policy-route.yaml": EXAMPLE_ROUTE_HEADER + y(policy_route_example()),
        "examples/vobox-policies-whole-tree.yaml": EXAMPLE_TREE_HEADER + y(policies_provisioning()),
    }


def main(argv: list[str] | None = None) -> int:
    """Write the files, or with --check report those that differ."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a committed file differs")
    args = ap.parse_args(argv)
    stale = []
    for rel, text in outputs().items():
        path = os.path.join(GRAFANA_DIR, rel)
        try:
            with open(path, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current == text:
            continue
        if args.check:
            stale.append(rel)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote grafana/{rel}")
    if stale:
        print("out of date (run python grafana/generate.py): " + ", ".join(f"grafana/{s}" for s in stale),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
