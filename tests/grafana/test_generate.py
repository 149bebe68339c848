"""The committed Grafana files equal what grafana/generate.py produces, and say what they must."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GENERATE = os.path.join(ROOT, "grafana", "generate.py")


def _generator():
    spec = importlib.util.spec_from_file_location("vobox_grafana_generate", GENERATE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


GEN = _generator()


def test_committed_files_are_up_to_date():
    proc = subprocess.run([sys.executable, GENERATE, "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_check_fails_on_a_stale_file(tmp_path, monkeypatch):
    """--check must be able to fail: point it at a copy with one file altered."""
    monkeypatch.setattr(GEN, "GRAFANA_DIR", str(tmp_path))
    assert GEN.main([]) == 0
    assert GEN.main(["--check"]) == 0
    path = tmp_path / "dashboards" / "fleet-stability.json"
    path.write_text(path.read_text().replace("Availability per kind", "Availability"))
    assert GEN.main(["--check"]) == 1


@pytest.mark.parametrize("rel", [r for r in GEN.outputs() if r.endswith(".yaml")])
def test_yaml_reads_back_as_generated(rel):
    """Every YAML file parses (PyYAML's safe loader, YAML 1.1 like Grafana's) to exactly the generator's data."""
    with open(os.path.join(ROOT, "grafana", rel)) as f:
        text = f.read()
    builders = {
        "provisioning/datasources/vobox-influxdb.yaml": GEN.datasource_provisioning,
        "provisioning/dashboards/vobox.yaml": GEN.dashboards_provisioning,
        "provisioning/alerting/vobox-rules.yaml": GEN.alert_rules_provisioning,
        "provisioning/alerting/vobox-contact-points.yaml": GEN.contact_points_provisioning,
        "examples/vobox-policy-route.yaml": GEN.policy_route_example,
        "examples/vobox-policies-whole-tree.yaml": GEN.policies_provisioning,
    }
    assert yaml.safe_load(text) == builders[rel]()


def test_contact_point_token_is_not_in_git():
    cp = GEN.contact_points_provisioning()["contactPoints"][0]["receivers"][0]
    assert cp["type"] == "webhook"
    assert cp["settings"]["authorization_scheme"] == "Bearer"
    assert cp["settings"]["authorization_credentials"] == "${VOBOX_WEBHOOK_TOKEN}"
    # one variable: webhook_listen has no default port, so no port (or host) is assumed here
    assert cp["settings"]["url"] == "${VOBOX_AGENT_WEBHOOK_URL}"
    route = GEN.policy_route_example()["routes"][0]
    assert route == GEN.policies_provisioning()["policies"][0]["routes"][0]
    assert route["receiver"] == cp["uid"] == "vobox-agent-webhook"
    assert route["object_matchers"] == [["vobox_alert", "=", "box_frozen"]]
    assert "box" in route["group_by"]


def test_rules_shape():
    groups = GEN.alert_rules_provisioning()["groups"]
    rules = {r["uid"]: r for grp in groups for r in grp["rules"]}
    assert set(rules) == {"vobox-box-frozen", "vobox-agent-silent", "vobox-cert-expiring", "vobox-segment-held"}
    frozen = rules["vobox-box-frozen"]
    assert frozen["labels"]["vobox_alert"] == "box_frozen"
    assert 'GROUP BY "box"' in frozen["data"][0]["model"]["query"]
    # Grafana does not interpolate env vars in annotations or models, but labels are: no `$` there
    for r in rules.values():
        assert all("$" not in v for v in r["labels"].values())
    silent = rules["vobox-agent-silent"]
    assert silent["data"][0]["relativeTimeRange"]["from"] == 3 * GEN.AGENT_INTERVAL_S
    assert silent["noDataState"] == "Alerting"
    expiring = rules["vobox-cert-expiring"]
    assert 'last("cert_days_left")' in expiring["data"][0]["model"]["query"]
    assert expiring["data"][2]["model"]["conditions"][0]["evaluator"] == {"type": "lt", "params": [GEN.EXPIRY_DAYS]}
    # a warning, never routed to the remediation webhook (only box_frozen is)
    routed = [m for r in GEN.policies_provisioning()["policies"][0]["routes"] for m in r["object_matchers"]]
    assert ["vobox_alert", "=", "cert_expiring"] not in routed and expiring["labels"]["severity"] == "warning"
    # a segment freeze that holds for 15 minutes (issue 26); the segment, not a box: never routed to the webhook
    held = rules["vobox-segment-held"]
    assert 'last("open")' in held["data"][0]["model"]["query"] and 'FROM "segment_freeze"' in held["data"][0]["model"]["query"]
    assert held["data"][2]["model"]["conditions"][0]["evaluator"] == {"type": "gt", "params": [0]}
    assert held["for"] == "15m" and ["vobox_alert", "=", "segment_held"] not in routed
    assert "remediate --force" in held["annotations"]["description"]


@pytest.mark.parametrize("name", ["fleet-stability.json", "box-detail.json"])
def test_dashboard_shape(name):
    with open(os.path.join(ROOT, "grafana", "dashboards", name)) as f:
        dash = json.load(f)
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names[:4] == ["datasource", "site", "kind", "box"]
    ds = dash["templating"]["list"][0]
    assert ds["type"] == "datasource" and ds["query"] == "influxdb" and ds["current"]["value"] == GEN.DS_UID
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        for t in p.get("targets", []):
            assert t["rawQuery"] is True
            assert "$timeFilter" in t["query"], (p["title"], t["query"])
    annotations = [a["name"] for a in dash["annotations"]["list"]]
    assert "Segment freezes" in annotations


@pytest.mark.parametrize("name", ["fleet-stability.json", "box-detail.json"])
def test_dashboards_import_with_any_influxdb_uid(name):
    """Every datasource reference of a dashboard (panels, targets, variables, annotations) is the variable."""
    with open(os.path.join(ROOT, "grafana", "dashboards", name)) as f:
        text = f.read()
    refs = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("datasource"), dict) and node["datasource"].get("type") == "influxdb":
                refs.append(node["datasource"]["uid"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(json.loads(text))
    assert refs and set(refs) == {"${datasource}"}
    assert GEN.DS_UID not in text.replace(f'"value": "{GEN.DS_UID}"', "")  # only as the variable's default


def test_folder_by_uid_in_the_provider_and_the_rules():
    provider = GEN.dashboards_provisioning()["providers"][0]
    groups = GEN.alert_rules_provisioning()["groups"]
    assert provider["folderUid"] == GEN.FOLDER_UID and all(g["folderUID"] == GEN.FOLDER_UID for g in groups)
    assert provider["folder"] == GEN.FOLDER_TITLE and all(g["folder"] == GEN.FOLDER_TITLE for g in groups)


def test_availability_axes_show_any_value():
    for dash in (GEN.fleet_dashboard(), GEN.box_dashboard()):
        for p in dash["panels"]:
            if "vailability" in p["title"] and p["type"] != "row":
                assert p["fieldConfig"]["defaults"].get("min", 0) == 0, p["title"]


def test_box_detail_filters_by_site_and_box():
    for p in GEN.box_dashboard()["panels"]:
        for t in p.get("targets", []):
            assert GEN.F_SITE in t["query"] and GEN.F_BOX in t["query"], (p["title"], t["query"])


def test_dry_runs_are_left_out_of_every_remediation_count():
    for dash in (GEN.fleet_dashboard(), GEN.box_dashboard()):
        for p in dash["panels"]:
            if p["type"] == "table":
                continue  # lists show every action with its dry_run column
            for t in p.get("targets", []):
                if 'FROM "remediation"' in t["query"]:
                    assert '"dry_run" = 0' in t["query"], (p["title"], t["query"])


def test_fleet_has_every_panel_the_issue_asks_for():
    titles = {p["title"] for p in GEN.fleet_dashboard()["panels"]}
    assert {"Availability per kind", "Availability per box", "Freezes", "Total frozen time", "MTBF", "MTTR",
            "Freezes by layer", "Remediations", "Remediation success rate", "Up/down per box",
            "Freezes list", f"Certificates and proxies expiring within {GEN.EXPIRY_DAYS} days"} <= titles
    box = {p["title"] for p in GEN.box_dashboard()["panels"]}
    assert {"RTT per probe", "Loss per probe", "State", "Freezes", "Remediations list", "Container events",
            "MAC changes"} <= box



def test_readme_and_guide_agree_on_influxdb_2_authentication():
    texts = []
    for rel in ("grafana/README.md", "docs/operator-guide.md"):
        with open(os.path.join(ROOT, rel)) as f:
            texts.append(f.read())
    for text in texts:
        assert "influx v1 auth create --username grafana-vobox" in text
        assert "Authorization: Token" not in text and "any non-empty name |" not in text.split("3.x")[0]


def test_every_box_state_has_a_colour_in_the_state_timeline():
    """The state timeline maps every state the agent stores (agent.core.events.STATES), no other."""
    from agent.core.events import STATES
    STATE_COLOURS, STATE_MAPPINGS = GEN.STATE_COLOURS, GEN.STATE_MAPPINGS
    assert set(STATE_COLOURS) == set(STATES)
    assert set(STATE_MAPPINGS[0]["options"]) == set(STATES)


def _provisioning_files() -> list[str]:
    base = os.path.join(ROOT, "grafana", "provisioning")
    return sorted(os.path.relpath(os.path.join(d, n), os.path.join(ROOT, "grafana"))
                  for d, _, names in os.walk(base) for n in names)


def test_copying_provisioning_never_replaces_the_sites_notification_policies():
    """issue 31 item 5: what `cp -r grafana/provisioning/*` installs holds no policy tree (Grafana provisions a
    tree whole, replacing the site's) and deletes or resets nothing of the site's; the route is an example."""
    files = _provisioning_files()
    assert files and all(f.endswith(".yaml") for f in files)
    for rel in files:
        with open(os.path.join(ROOT, "grafana", rel)) as f:
            doc = yaml.safe_load(f)
        assert not {"policies", "resetPolicies", "deleteContactPoints", "deleteRules", "deleteDatasources",
                    "muteTimes", "templates"} & set(doc), rel
    assert not os.path.exists(os.path.join(ROOT, "grafana", "provisioning", "alerting", "vobox-policies.yaml"))
    assert sorted(r for r in GEN.outputs() if r.startswith("provisioning/")) == files   # nothing stale left there
    route = GEN.policy_route_example()["routes"][0]
    assert route["continue"] is True   # the site's routes after it still get the alert


def test_the_readme_says_what_each_file_changes():
    """Every generated file has a row in grafana/README.md's table (the install copies no other)."""
    with open(os.path.join(ROOT, "grafana", "README.md")) as f:
        readme = f.read()
    table = {m.group(1) for m in re.finditer(r"^\| `([^`]+)` \|", readme, re.M)}
    assert set(GEN.outputs()) <= table, set(GEN.outputs()) - table
    assert "replaces" in readme and "examples/vobox-policy-route.yaml" in readme
