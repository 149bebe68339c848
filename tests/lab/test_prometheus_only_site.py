"""issue 31 items 1 and 2 for real: a Prometheus-only site. The agent runs without [influxdb] against the lab's
boxes: it probes, remediates and writes status.json, never writes to the lab's InfluxDB (its httpd write counter
does not move) and keeps no spool; Debian's Prometheus 2.42 scrapes its /metrics with a bearer token and a target
label `site`, which lands next to the agent's `vobox_site` (no exported_site); the scrape passes
`promtool check metrics` and carries the box's certificate and grid proxy expiry.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent import netns
from tests.agent.agent_proc import AgentProc, errors_in_log, free_port, query, write_config

pytestmark = pytest.mark.lab

TOKEN = "lab-scrape-token-31"


def _influx_writes(lab) -> int:
    """The lab InfluxDB's httpd writeReq counter (every /write request it served, any database)."""
    rows = query(lab, "SHOW STATS FOR 'httpd'", "_internal")
    return int(sum(r.get("writeReq") or 0 for r in rows))


def _scrape(lab, port: int) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with netns.entered(lab.monitor_ns), opener.open(req, timeout=5) as resp:
        return resp.read().decode()


def test_an_agent_without_influxdb_probes_remediates_and_is_scraped(clean_lab, agents, tmp_path):
    lab = clean_lab
    if shutil.which("promtool") is None:
        pytest.skip("promtool missing (apt-get install prometheus; scripts/setup does)")
    token_file = tmp_path / "metrics.token"
    token_file.write_text(TOKEN + "\n")
    metrics_port = free_port(lab.monitor_ns)
    lab.set_proxy("ctr1", 2.0)      # every container box's x509 check reads a proxy file: each gets one
    lab.set_proxy("ctr2", 30.0)
    cfg_path = write_config(
        lab, str(tmp_path), database="unused", services=True,
        sections={"remediation": {"enabled": True, "cooldown": 1, "verify": 3, "stop_timeout": 2},
                  "metrics": {"listen": f"127.0.0.1:{metrics_port}", "token_file": str(token_file)}},
        box_keys={"ctr1": {"remediate": ["restart_container"], "restart_stopped": True}})
    with open(cfg_path, encoding="utf-8") as fh:
        text = fh.read()
    text, n = re.subn(r"\n\[influxdb\]\n(?:[^\[\n][^\n]*\n)*", "\n", text)
    assert n == 1 and "[influxdb]" not in text
    with open(cfg_path, "w", encoding="utf-8") as fh:
        fh.write(text)
    writes_before = _influx_writes(lab)

    agent = AgentProc(lab, cfg_path, os.path.join(tmp_path, "agent.log"))
    agents.append(agent)
    agent.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 60)
    stack = lab.prometheus_start(f"127.0.0.1:{metrics_port}", "http://127.0.0.1:9/webhook", str(token_file),
                                 interval_s=1.0, scrape={"authorization": {"credentials_file": str(token_file)}},
                                 target_labels={"site": "lab-target"})
    deadline = time.monotonic() + 30
    while not any(t["health"] == "up" for t in stack.targets()):
        assert time.monotonic() < deadline, f"prometheus never scraped the agent: {stack.targets()}"
        time.sleep(0.2)

    # remediation works without a store: ctr1 stopped (a crash, restart_stopped) is restarted by the agent
    ctr = lab.box("ctr1").container
    lab.fault("ctr1", "stop")
    deadline = time.monotonic() + 60
    while subprocess.run(["docker", "inspect", "-f", "{{.State.Status}}", ctr], capture_output=True,
                         text=True).stdout.strip() != "running" or not os.path.exists(
                             os.path.join(agent.state_dir, "remediation-history.json")):
        assert time.monotonic() < deadline, agent.log_text()[-3000:]
        time.sleep(0.2)
    agent.wait_until("ctr1 up again", lambda st: st["boxes"]["ctr1"]["state"] == "up", 60)

    # Prometheus: the target's `site` and the agent's `vobox_site`, side by side, nothing renamed
    inst = f'instance="127.0.0.1:{metrics_port}"'   # the lab's Prometheus may still hold an earlier test's series
    series = stack.query(f'vobox_box_up{{box="ctr2",{inst}}}')
    assert len(series) == 1, series
    labels = series[0]["metric"]
    assert labels["site"] == "lab-target" and labels["vobox_site"] == "lab" and "exported_site" not in labels
    assert stack.query(f'vobox_build_info{{vobox_site="lab",{inst}}}')
    assert stack.query(f"process_resident_memory_bytes{{{inst}}}")
    deadline = time.monotonic() + 30   # the action is counted once verified ([remediation] verify), then scraped
    while not stack.query(f'vobox_remediations_total{{box="ctr1",action="restart_container",result="recovered",{inst}}}'
                          ' >= 1'):
        assert time.monotonic() < deadline, (stack.query('vobox_remediations_total{box="ctr1"}'),
                                             agent.log_text()[-3000:])
        time.sleep(0.5)

    body = _scrape(lab, metrics_port)
    check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    fams = {f.name: f.samples for f in text_string_to_metric_families(body)}
    proxy = [s for s in fams["vobox_proxy_expiry_timestamp_seconds"] if s.labels["box"] == "ctr1"]
    assert len(proxy) == 1 and abs(proxy[0].value - (time.time() + 2 * 86400)) < 600, proxy
    tls = [s for s in fams["vobox_certificate_expiry_timestamp_seconds"] if s.labels["probe"] == "tls"]
    assert {s.labels["box"] for s in tls} == {"ctr1", "ctr2"} and all(s.value > time.time() for s in tls)

    assert agent.stop() == 0
    log = agent.log_text()
    assert f"stores: prometheus /metrics on 127.0.0.1:{metrics_port}" in log
    assert not os.path.exists(os.path.join(agent.state_dir, "spool"))
    assert _influx_writes(lab) == writes_before      # not one write request reached InfluxDB
    assert "InfluxDB" not in log and "spool" not in log.lower(), log[-2000:]
    assert errors_in_log(log) == []
