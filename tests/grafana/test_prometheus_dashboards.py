"""The Prometheus dashboards come from the InfluxDB ones' panel definitions (one source, two query languages).

Their PromQL runs against the real Prometheus in tests/agent/report/test_prometheus_report_lab.py (two
agents scraped, macros expanded by tests/grafana/promql.py).
"""
from __future__ import annotations

import pytest

from tests.grafana.promql import expand, interval_s, queries, variable_selectors
from tests.grafana.test_generate import GEN

INFLUX_ONLY = {  # what only InfluxDB's points hold: one row per event
    "vobox-fleet": {"Freezes list", f"Certificates and proxies expiring within {GEN.EXPIRY_DAYS} days"},
    "vobox-box": {"Freezes", "Remediations list", "Container events", "MAC changes", "Isolation audit"},
}


@pytest.mark.parametrize("build", ["fleet_dashboard", "box_dashboard"])
def test_the_same_panels_in_both_languages(build):
    influx, prom = getattr(GEN, build)(), getattr(GEN, build)("promql")
    uid = influx["uid"]
    assert prom["uid"] == uid + "-prometheus"
    both = {(p["title"], p["type"]) for p in prom["panels"]}
    left_out = {p["title"] for p in influx["panels"] if (p["title"], p["type"]) not in both}
    assert left_out <= INFLUX_ONLY[uid] and all(t in prom["description"] for t in left_out)
    kept = [p for p in influx["panels"] if (p["title"], p["type"]) in both]
    assert [(p["title"], p["type"], p["gridPos"]) for p in kept] == \
        [(p["title"], p["type"], p["gridPos"]) for p in prom["panels"]]
    for p in prom["panels"]:
        assert p["type"] == "row" or p["datasource"] == GEN.PROM_DS_REF
        for t in p.get("targets", []):
            assert t["expr"] and "query" not in t and "rawQuery" not in t
            assert "increase(" not in t["expr"] or "[$__range]" in t["expr"] or "[$__rate_interval]" in t["expr"]
    for p in influx["panels"]:
        assert all(t["query"] and "_prom" not in t for t in p.get("targets", []))
        assert "_prom_panel" not in p
    assert [v["name"] for v in prom["templating"]["list"]] == [v["name"] for v in influx["templating"]["list"]]


def test_an_unknown_language_is_refused():
    with pytest.raises(ValueError, match="unknown query language 'flux': influxql, promql"):
        GEN.fleet_dashboard("flux")


def test_macros_and_variables_expand_as_grafana_does():
    q = 'sum by (kind) (increase(m{site=~"$site",box=~"$box"}[$__range])) / x[$__rate_interval] @ $__interval $cycle_s'
    out = expand(q, range_s=7 * 86400, scrape_s=15, variables={"site": ["a", "b.c"], "box": ".*", "cycle_s": "10"})
    assert out == ('sum by (kind) (increase(m{site=~"(a|b\\.c)",box=~".*"}[604800s])) / x[620s] @ 605s 10')
    assert interval_s(60, 1) == 1 and interval_s(3600, 15) == 15
    with pytest.raises(ValueError, match=r"unexpanded \['\$kind'\]"):
        expand('m{kind=~"$kind"}', range_s=60, scrape_s=1, variables={})


def test_every_query_and_variable_is_found():
    dash = GEN.fleet_dashboard("promql")
    found = list(queries(dash))
    assert sum(1 for p in dash["panels"] for _ in p.get("targets", [])) + 3 == len(found)
    # the variable `site` lists the agents' site label, vobox_site ([metrics] site_label's default)
    assert variable_selectors(dash) == {"site": ("vobox_box_cycles_total", "vobox_site"),
                                        "kind": ('vobox_box_cycles_total{vobox_site=~"$site"}', "kind"),
                                        "box": ('vobox_box_cycles_total{vobox_site=~"$site",kind=~"$kind"}', "box")}
