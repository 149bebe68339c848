"""The committed Grafana files equal what grafana/generate.py produces, and say what they must."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.grafana import grafana_sim as g

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
        "provisioning/alerting/vobox-policies.yaml": GEN.policies_provisioning,
    }
    assert yaml.safe_load(text) == builders[rel]()


def test_contact_point_token_is_not_in_git():
    cp = GEN.contact_points_provisioning()["contactPoints"][0]["receivers"][0]
    assert cp["type"] == "webhook"
    assert cp["settings"]["authorization_scheme"] == "Bearer"
    assert cp["settings"]["authorization_credentials"] == "${VOBOX_WEBHOOK_TOKEN}"
    assert cp["settings"]["url"].endswith(":9787/webhook")
    policy = GEN.policies_provisioning()["policies"][0]
    route = policy["routes"][0]
    assert route["receiver"] == cp["uid"] == "vobox-agent-webhook"
    assert route["object_matchers"] == [["vobox_alert", "=", "box_frozen"]]
    assert "box" in route["group_by"]


def test_rules_shape():
    groups = GEN.alert_rules_provisioning()["groups"]
    rules = {r["uid"]: r for grp in groups for r in grp["rules"]}
    assert set(rules) == {"vobox-box-frozen", "vobox-agent-silent"}
    frozen = rules["vobox-box-frozen"]
    assert frozen["labels"]["vobox_alert"] == "box_frozen"
    assert 'GROUP BY "box"' in frozen["data"][0]["model"]["query"]
    # Grafana does not interpolate env vars in annotations or models, but labels are: no `$` there
    for r in rules.values():
        assert all("$" not in v for v in r["labels"].values())
    silent = rules["vobox-agent-silent"]
    assert silent["data"][0]["relativeTimeRange"]["from"] == 3 * GEN.AGENT_INTERVAL_S
    assert silent["noDataState"] == "Alerting"


@pytest.mark.parametrize("name", ["fleet-stability.json", "box-detail.json"])
def test_dashboard_shape(name):
    with open(os.path.join(ROOT, "grafana", "dashboards", name)) as f:
        dash = json.load(f)
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names[:3] == ["site", "kind", "box"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == GEN.DS_UID and t["rawQuery"] is True
            assert "$timeFilter" in t["query"], (p["title"], t["query"])
    annotations = [a["name"] for a in dash["annotations"]["list"]]
    assert "Segment freezes" in annotations


def test_fleet_has_every_panel_the_issue_asks_for():
    titles = {p["title"] for p in GEN.fleet_dashboard()["panels"]}
    assert {"Availability per kind", "Availability per box", "Freezes", "Total frozen time", "MTBF", "MTTR",
            "Freezes by layer", "Remediations", "Remediation success rate", "Up/down per box",
            "Freezes list"} <= titles
    box = {p["title"] for p in GEN.box_dashboard()["panels"]}
    assert {"RTT per probe", "Loss per probe", "State", "Freezes", "Remediations list", "Container events",
            "MAC changes"} <= box

