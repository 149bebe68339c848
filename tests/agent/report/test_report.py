"""agent.report: the report on the lab InfluxDB after a real agent run (reads, statistics, the command)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from agent import report as r
from tests.grafana import fleet_data as fleet_module
from tests.grafana.fleet_data import (
    BOXES,
    DATABASE,
    INTERVAL_S,
    KINDS,
    LAYERS,
    SITE,
    Span,
    _entered,
)

fleet_data = fleet_module.fleet_data  # the session fixture (one agent run per lab, shared with tests/grafana)
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


# ----------------------------------------------------------------------------- on the real run (fleet_data)

def _query(fleet):
    from agent.storage.influx import query

    def run(q):
        with _entered(fleet.netns):
            return query(fleet.influx_url, q, db=fleet.database, epoch="ms")
    return run


def _in(value, span: Span, what: str) -> None:
    assert value in span, f"{what}: {value!r} not in [{span.lo:.4f}, {span.hi:.4f}]"


def test_report_on_fleet_data(fleet_data):
    t = fleet_data.truth
    obs = r.read_fleet(_query(fleet_data), fleet_data.start_ms, fleet_data.end_ms, fleet_data.interval_s, SITE)
    assert {b.box: b.cycles for b in obs.boxes} == {b: t.cycles for b in BOXES}
    assert len(obs.freezes) == len(t.freezes) == 8
    assert sorted((f.box, f.layer, f.open) for f in obs.freezes) == sorted((f.box, f.layer, f.open) for f in t.freezes)
    rep = r.build_report(obs)
    kinds = {g.kind: g for g in rep.kinds}
    assert sorted(kinds) == list(KINDS)
    for kind, g in kinds.items():
        n_boxes = sum(1 for k in BOXES.values() if k == kind)
        _in(100 * g.availability.value, t.availability(kind=kind), f"availability of {kind}")
        assert g.availability.low <= g.availability.value <= g.availability.high
        assert g.freezes == len(t.freezes_of(kind=kind))
        _in(g.mttr_s.value, t.mttr_s(kind), f"MTTR of {kind}")
        assert g.mttr_s.low < g.mttr_s.value < g.mttr_s.high
        _in(g.mtbf_s.value, t.mtbf_s(kind), f"MTBF of {kind}")
        assert g.box_days == pytest.approx(n_boxes * t.cycles * INTERVAL_S / 86400)
        assert g.rate_per_box_day.value == pytest.approx(g.freezes / g.box_days)
        assert g.freezes_by_layer == {layer: sum(1 for f in t.freezes_of(kind=kind) if f.layer == layer)
                                      for layer in LAYERS}
        assert g.open_freezes == sum(1 for f in t.freezes_of(kind=kind) if f.open)
    assert (kinds["container"].open_freezes, kinds["vm"].open_freezes) == (1, 0)
    boxes = {g.name: g for g in rep.boxes}
    for b in BOXES:
        _in(100 * boxes[b].availability.value, t.availability(box=b), f"availability of {b}")
    # 5 container freezes in 2 box-runs against 3 VM freezes in 1: no evidence either way
    want = r.compare_rates(5, 2 * t.observed_s / 86400, 3, t.observed_s / 86400)
    assert rep.comparison.p_value == pytest.approx(want.p_value)
    assert "not yet significant" in rep.comparison.sentence()
    assert obs.remediations == {"command": (3, 1)}  # vm1: one command recovered it, two did not; ctr2 dry runs
    # another site's view is empty
    assert r.read_fleet(_query(fleet_data), fleet_data.start_ms, fleet_data.end_ms, INTERVAL_S, "elsewhere").boxes == ()


def test_report_command(fleet_data, tmp_path):
    t = fleet_data.truth
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\ninterval = {INTERVAL_S:g}\nsite = "{SITE}"\n\n[influxdb]\nurl = "{fleet_data.influx_url}"\n'
                   f'database = "{DATABASE}"\n\n[[box]]\nname = "vm1"\nkind = "vm"\nipv4 = "192.0.2.20"\n')
    out_html = tmp_path / "report.html"
    cmd = [sys.executable, "-m", "agent", "--netns", fleet_data.netns, "report", "-c", str(cfg), "--since", "7d",
           "--until", str(fleet_data.end_ms / 1000), "--html", str(out_html)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    kind_rows = {ln.split()[2]: ln for ln in lines if ln.startswith("all ")}
    avail = {k: float(re.search(r"(\d+\.\d+)% \[", v).group(1)) for k, v in kind_rows.items()}
    assert sorted(avail) == list(KINDS)
    for kind, value in avail.items():
        span = t.availability(kind=kind)
        _in(value, Span(span.lo - 1e-3, span.hi + 1e-3), f"report availability of {kind}")
    assert "containers vs VMs: not yet significant (p=" in proc.stdout
    page = out_html.read_text()
    assert page.count("<svg") == 3
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"(src|href)=", page), "the HTML must not load anything"
    # a bad --since is a usage error naming the accepted forms
    bad = subprocess.run(cmd[:-4] + ["--since", "7days"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "expected a number and a unit" in bad.stderr
