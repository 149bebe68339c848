"""`report --prometheus` against the InfluxDB report, for real (issue 31 item 3).

Two agents of two sites (alpha: ctr1, vm1; beta: ctr2) write to the lab's InfluxDB and serve /metrics;
Debian's Prometheus 2.42 scrapes both every second. The same faults reach both stores: an l4 freeze of
ctr1 that deepens to l2, an l3 freeze of vm1, a stop of ctr2 that the agent's remediation restarts, and
an l4 freeze of ctr1 left open at the end. Agreement as the issue defines it: freeze counts per box, kind
and layer and remediation counts exactly equal; availability, exposure, MTBF and MTTR within one scrape
interval per freeze and per gap; the fleet table (--all-sites) sums the two sites. The agreement table is
printed (-s shows it).
"""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from agent import netns
from agent.report import build_report, read_fleet
from agent.report.prom import Api, http_fetch, read_prometheus
from probes import LAYERS
from tests.agent.agent_proc import AGENT_BIN, AgentProc, errors_in_log, free_port, query, write_config

pytestmark = pytest.mark.lab

DB = "t_prometheus_report"
SITES = {"alpha": ["ctr1", "vm1"], "beta": ["ctr2"]}


def _start_agents(lab, tmp_path, agents):
    ports = {}
    for site, boxes in SITES.items():
        d = tmp_path / site
        d.mkdir()
        ports[site] = free_port(lab.monitor_ns)
        sections = {"metrics": {"listen": f"127.0.0.1:{ports[site]}"}}
        box_keys = {}
        if site == "beta":   # the lab's `stop` stands for a crash: restart_stopped makes it the agent's to fix
            sections["remediation"] = {"enabled": True, "auto": True, "cooldown": 1, "verify": 3, "stop_timeout": 2}
            box_keys = {"ctr2": {"remediate": ["restart_container"], "restart_stopped": True}}
        cfg = write_config(lab, str(d), database=DB, boxes=boxes, site=site, sections=sections, box_keys=box_keys)
        agent = AgentProc(lab, cfg, str(d / "agent.log"))
        agents.append(agent)
    for agent in agents:
        agent.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 40)
    return ports


def _check_dashboards(stack, api, range_s, scrape_s):
    """Each Prometheus dashboard's queries and variables against the real Prometheus (issue 31 item 4)."""
    import json
    import urllib.parse

    from tests.grafana.promql import expand, interval_s, queries, variable_selectors
    from tests.grafana.test_generate import GEN

    now = time.time()
    checked = 0
    for dash, variables in ((GEN.fleet_dashboard("promql"), {"site": ["alpha", "beta"], "kind": ".*", "box": ".*"}),
                            (GEN.box_dashboard("promql"), {"site": "beta", "kind": ".*", "box": "ctr2"})):
        variables = {**variables, "cycle_s": "1"}
        for name, (selector, label) in variable_selectors(dash).items():
            sel = expand(selector, range_s=range_s, scrape_s=scrape_s, variables=variables)
            q = urllib.parse.urlencode({"match[]": sel, "start": f"{now - range_s:.0f}", "end": f"{now:.0f}"})
            values = json.loads(stack._get(f"{stack.prometheus_url}/api/v1/label/{label}/values?{q}"))["data"]
            assert values, (dash["uid"], name, sel)
        for q in queries(dash):
            expr = expand(q.expr, range_s=range_s, scrape_s=scrape_s, variables=variables)
            if q.instant:
                result = api.vector(expr, now)
            else:
                step = interval_s(range_s, scrape_s)
                result = api.range(expr, now - range_s, now, step)
            # no maintenance window, segment freeze or l7 fault here (Grafana shows "No data"; the query ran: a
            # malformed one raises); everything else has data
            assert result or q.where in ("annotation Maintenance", "annotation Segment freezes",
                                         "Freezes by layer / L7"), (dash["uid"], q.where, expr)
            checked += 1
    assert checked > 30


def _cell(x, digits=4):
    return "-" if x is None else f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def test_the_prometheus_report_agrees_with_the_influxdb_report_and_sums_the_fleet(clean_lab, agents, tmp_path):
    lab = clean_lab
    start_s = time.time() - 1
    ports = _start_agents(lab, tmp_path, agents)
    token = tmp_path / "unused.token"
    token.write_text("x\n")
    stack = lab.prometheus_start(",".join(f"127.0.0.1:{p}" for p in ports.values()), "http://127.0.0.1:1/webhook",
                                 str(token), interval_s=1.0)
    try:
        deadline = time.monotonic() + 30
        while sum(t["health"] == "up" for t in stack.targets()) < 2:
            assert time.monotonic() < deadline, f"prometheus does not scrape both agents: {stack.targets()}"
            time.sleep(0.2)
        alpha, beta = agents
        lab.fault("ctr1", "l4")
        alpha.wait_state("ctr1", "frozen", 30)
        lab.fault("ctr1", "l2")                 # the open freeze deepens: l4 at detection, l2 in the end
        alpha.wait_until("ctr1 at l2", lambda st: st["boxes"]["ctr1"].get("layer") == "l2", 30)
        lab.clear("ctr1")
        lab.fault("vm1", "l3")
        alpha.wait_state("vm1", "frozen", 30)
        lab.clear("vm1")
        lab.fault("ctr2", "stop")               # beta's remediation restarts it
        beta.wait_state("ctr2", "frozen", 30)
        lab.clear_all(wait=False)
        for agent, boxes in ((alpha, SITES["alpha"]), (beta, SITES["beta"])):
            agent.wait_until("all up", lambda st, bs=boxes: all(st["boxes"][b]["state"] == "up" for b in bs), 60)
        lab.fault("ctr1", "l4")                 # open at the end of the range
        alpha.wait_state("ctr1", "frozen", 30)
        time.sleep(3)                           # a few scrapes of the open freeze
        with netns.entered(lab.monitor_ns):
            api = Api(http_fetch(stack.prometheus_url))
            # the range ends at both agents' last scrape: what InfluxDB holds after it, Prometheus has not seen
            last = min(v for _, v in api.vector("timestamp(vobox_agent_cycles_total)", time.time()))
            end_ms, start_ms = int(last * 1000), int(start_s * 1000)
            prom = {site: read_prometheus(api, start_ms, end_ms, site) for site in SITES}
            fleet = read_prometheus(api, start_ms, end_ms, None)
        influx = {site: read_fleet(lambda q: query(lab, q, DB), start_ms, end_ms, 1.0, site) for site in SITES}

        scrape_s = max(p.scrape_interval_s or 0 for p in prom.values())
        assert 0.5 <= scrape_s <= 2.5, scrape_s
        lines = [f"agreement, InfluxDB | Prometheus (scrape interval {scrape_s:g} s, cycle 1 s, "
                 f"{(end_ms - start_ms) / 1000:.0f} s range)",
                 "site   box   cycles     down     freezes l2/l3/l4/l7   open   MTTR s        availability"]
        for site in SITES:
            ri, rp = build_report(influx[site]), build_report(prom[site].observation)
            assert [g.name for g in ri.boxes] == [g.name for g in rp.boxes] == sorted(SITES[site],
                                                                                      key=lambda b: (b[0] == "v", b))
            for bi, bp, gi, gp in zip(influx[site].boxes, prom[site].observation.boxes, ri.boxes, rp.boxes,
                                      strict=True):
                lines.append(f"{site:6} {bi.box:5} {bi.cycles:4}|{bp.cycles:<4} {bi.cycles - bi.up_cycles:3}|"
                             f"{bp.cycles - bp.up_cycles:<3}  "
                             f"{'/'.join(str(gi.freezes_by_layer[la]) for la in LAYERS)} | "
                             f"{'/'.join(str(gp.freezes_by_layer[la]) for la in LAYERS)}   "
                             f"{gi.open_freezes}|{gp.open_freezes}    {_cell(gi.mttr_s.value)}|{_cell(gp.mttr_s.value)}"
                             f"   {_cell(gi.availability.value, 5)}|{_cell(gp.availability.value, 5)}")
                # counts: exact
                assert gp.freezes_by_layer == gi.freezes_by_layer, (site, bi.box)
                assert (gp.freezes, gp.open_freezes) == (gi.freezes, gi.open_freezes), (site, bi.box)
                # cycles: the cycles after the last scrape are InfluxDB's only (at most a scrape interval's)
                assert 0 <= bi.cycles - bp.cycles <= scrape_s + 1, (site, bi.box, bi.cycles, bp.cycles)
                assert abs((bi.cycles - bi.up_cycles) - (bp.cycles - bp.up_cycles)) <= scrape_s + 1, (site, bi.box)
                per_freeze_s = scrape_s * (gi.freezes + 1)
                observed_s = bi.cycles * 1.0
                assert abs(gi.availability.value - gp.availability.value) <= per_freeze_s / observed_s, bi.box
                if gi.mttr_s.value is not None:
                    assert abs(gi.mttr_s.value - gp.mttr_s.value) <= scrape_s, bi.box
                if gi.mtbf_s.value is not None:
                    assert abs(gi.mtbf_s.value - gp.mtbf_s.value) <= per_freeze_s, bi.box
            assert influx[site].remediations == prom[site].observation.remediations, site
        lines.append(f"remediations: InfluxDB {influx['beta'].remediations} | Prometheus "
                     f"{prom['beta'].observation.remediations}")
        assert influx["beta"].remediations.get("restart_container", (0, 0))[0] >= 1
        assert build_report(influx["alpha"]).boxes[0].freezes_by_layer["l2"] == 1   # ctr1's deepened freeze

        # the fleet: one table of both sites, its kinds the sums of the two
        rf = build_report(fleet.observation)
        assert set(fleet.sites) == set(SITES)
        assert sorted(g.name for g in rf.boxes) == sorted(f"{s}/{b}" for s, bs in SITES.items() for b in bs)
        per_site = [build_report(prom[s].observation) for s in SITES]
        for g in rf.kinds:
            parts = [k for r in per_site for k in r.kinds if k.kind == g.kind]
            assert g.boxes == sum(k.boxes for k in parts)
            assert g.freezes == sum(k.freezes for k in parts)
            assert g.freezes_by_layer == {la: sum(k.freezes_by_layer[la] for k in parts) for la in LAYERS}
            assert g.box_days == pytest.approx(sum(k.box_days for k in parts))
            lines.append(f"fleet {g.name}: {g.boxes} boxes = {' + '.join(str(k.boxes) for k in parts)}, "
                         f"{g.freezes} freezes = {' + '.join(str(k.freezes) for k in parts)}")
        print("\n" + "\n".join(lines))

        # the Prometheus dashboards: every query, macros and variables expanded as Grafana does, answers with data
        with netns.entered(lab.monitor_ns):
            _check_dashboards(stack, api, time.time() - start_s, scrape_s)

        # the command: the fleet table, and a one-line error for a server that is not there
        since = f"{int(time.time() - start_s) + 5}s"
        out = subprocess.run([AGENT_BIN, "--netns", lab.monitor_ns, "report", "--prometheus", stack.prometheus_url,
                              "--all-sites", "--since", since], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "alpha/ctr1" in out.stdout and "beta/ctr2" in out.stdout and "sites alpha, beta" in out.stdout
        bad = subprocess.run([AGENT_BIN, "--netns", lab.monitor_ns, "report", "--prometheus",
                              "http://127.0.0.1:9/", "--site", "alpha"], capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert "127.0.0.1:9" in bad.stderr and "check" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        lab.prometheus_stop()
    for agent in agents:
        assert agent.stop() == 0
        assert errors_in_log(agent.log_text()) == [], agent.log_text()[-3000:]
    assert not os.path.exists(os.path.join(stack.base_dir, "prometheus.pid"))
