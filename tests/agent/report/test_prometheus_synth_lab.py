"""`report --prometheus` on a backfilled Prometheus against the same fleet in InfluxDB (tests/agent/report/fleet_synth.py).

Real Prometheus 2.42 (blocks from `promtool tsdb create-blocks-from openmetrics`) and real InfluxDB 1.6 hold
one synthetic fleet of 6 boxes over 4 days at 60 s: deepening freezes, remediations, maintenance, an agent
restart half way (counter resets), a freeze open across the second range's start; the third range is short
enough for hourly buckets (the others: daily), with the restart inside. The site is in the label
`vobox_site` (a scrape config that sets its own `site`: `report --site-label`); the lab test reads `site`.
Scrapes fall half a cycle after each cycle, so every figure agrees exactly, not only the counts: a
difference is the reader's error.
"""
from __future__ import annotations

import shutil

import pytest

from agent.report import build_report, read_fleet, render_html, render_text
from agent.report.prom import Api, http_fetch, read_prometheus
from tests.agent.report.fleet_synth import STRADDLE_S, Fleet, SynthStores

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    missing = [b for b in ("influxd", "prometheus", "promtool") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (scripts/setup)")
    s = SynthStores(Fleet(6, 4, site_label="vobox_site"), str(tmp_path_factory.mktemp("synth")))
    try:
        s.build()
        yield s
    finally:
        s.stop()


def _table(report):
    return [(g.name, g.kind, g.boxes, round(g.box_days, 9), g.freezes, g.open_freezes, g.freezes_by_layer,
             g.down_cycles, g.failed_cycles, g.maintenance_s,
             tuple(round(x, 6) if x is not None else None for x in (g.availability.value, g.mttr_s.value,
                                                                     g.mtbf_s.value, g.rate_per_box_day.value)))
            for g in (*report.kinds, *report.boxes)]


@pytest.mark.parametrize("site", ["s0", "s1", None], ids=["s0", "s1-restarted", "all-sites"])
@pytest.mark.parametrize(("from_s", "to_s"), [(0, None), (STRADDLE_S, None), (86400, 2.5 * 86400)],
                         ids=["whole", "from-inside-a-freeze", "hourly-across-the-restart"])
def test_the_prometheus_reading_equals_the_influxdb_reading(stores, site, from_s, to_s):
    fleet = stores.fleet
    start_ms = (fleet.t0_s + from_s) * 1000
    end_ms = fleet.t(fleet.cycles) * 1000 if to_s is None else int((fleet.t0_s + to_s) * 1000)
    influx = read_fleet(stores.influx_rows(), start_ms, end_ms, fleet.interval_s, site)
    prom = read_prometheus(Api(http_fetch(stores.prometheus_url)), start_ms, end_ms, site, fleet.site_label)
    p = prom.observation
    if site is None:   # the fleet's boxes are named SITE/BOX; InfluxDB's plain names are unique here
        boxes = {b.name: b.site for b in fleet.boxes()}
        assert [b.box for b in p.boxes] == [f"{boxes[b.box]}/{b.box}" for b in influx.boxes]
        p = type(p)(**{**{f: getattr(p, f) for f in p.__dataclass_fields__},
                       "boxes": tuple(type(b)(**{**{f: getattr(b, f) for f in b.__slots__},
                                                 "box": b.box.split("/", 1)[1]}) for b in p.boxes),
                       "freezes": tuple(type(f)(**{**{k: getattr(f, k) for k in f.__slots__},
                                                   "box": f.box.split("/", 1)[1]}) for f in p.freezes)})
    assert p.boxes == influx.boxes
    assert p.remediations == influx.remediations and (influx.remediations or site == "s1")   # s1: VMs only
    assert sorted(p.buckets, key=repr) == sorted(influx.buckets, key=repr)
    assert p.cycles == influx.cycles
    assert abs(p.first_ms - influx.first_ms) <= fleet.interval_s * 1000
    assert abs(p.last_ms - influx.last_ms) <= fleet.interval_s * 1000
    assert _table(build_report(p)) == _table(build_report(influx))
    # each closed freeze is charted in the bucket it closed in: the freezes per day add up
    per_bucket = sorted(f.start_ms // (p.bucket_s * 1000) for f in p.freezes if not f.open)
    assert len(per_bucket) == sum(1 for f in influx.freezes if not f.open)
    assert all(start_ms <= f.start_ms < end_ms for f in p.freezes)
    assert "<svg" in render_html(build_report(p)) and "freezes" in render_text(build_report(p))
    assert prom.scrape_interval_s == fleet.interval_s and prom.unobserved_s == 0
    assert p.bucket_s == influx.bucket_s == (3600 if to_s else 86400)
    if from_s == STRADDLE_S:   # box b001 (site s1) had a freeze open across the start: left out by both
        assert all(f.start_ms >= start_ms for f in influx.freezes)
