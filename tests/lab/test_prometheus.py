"""The alert path for real: Debian's Prometheus scrapes the agent's /metrics, VoboxBoxFrozen fires, Debian's
Alertmanager posts it to the agent's webhook with the bearer token, the agent restarts the container.

The agent's own automatic remediation is off ([remediation] auto = false): the alert is what acts.
"""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.agent.agent_proc import AgentProc, errors_in_log, free_port, query, write_config

pytestmark = pytest.mark.lab


def _started_at(container: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}} {{.State.Status}}", container],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_a_frozen_box_is_restarted_by_the_alertmanager_alert(clean_lab, agents, tmp_path):
    lab, db = clean_lab, "t_prometheus_alert_path"
    token_file = tmp_path / "webhook.token"
    token_file.write_text("lab-alertmanager-token\n")
    webhook_port, metrics_port = free_port(lab.monitor_ns), free_port(lab.monitor_ns)
    cfg = write_config(
        lab, str(tmp_path), database=db,
        sections={"remediation": {"enabled": True, "auto": False, "cooldown": 1, "verify": 3, "stop_timeout": 2,
                                  "webhook_listen": f"127.0.0.1:{webhook_port}",
                                  "webhook_token_file": str(token_file)},
                  "metrics": {"listen": f"127.0.0.1:{metrics_port}"}},
        # the lab's `stop` stands for a crash: without restart_stopped it would be operator intent (left alone)
        box_keys={"ctr1": {"remediate": ["restart_container"], "restart_stopped": True},
                  "ctr2": {"remediate": ["restart_container"], "restart_stopped": True}})
    agent = AgentProc(lab, cfg, os.path.join(tmp_path, "agent.log"))
    agents.append(agent)
    agent.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 30)
    stack = lab.prometheus_start(f"127.0.0.1:{metrics_port}", f"http://127.0.0.1:{webhook_port}/webhook",
                                 str(token_file), interval_s=1.0)
    deadline = time.monotonic() + 20
    while not any(t["health"] == "up" for t in stack.targets()):
        assert time.monotonic() < deadline, f"prometheus never scraped the agent: {stack.targets()}"
        time.sleep(0.2)

    ctr = lab.box("ctr1").container
    before = _started_at(ctr)
    call_t = time.monotonic()
    lab.fault("ctr1", "stop")      # docker stop -t 3: the box is gone when it returns
    fault_t = time.monotonic()
    deadline = fault_t + 60
    while _started_at(ctr) == before or not _started_at(ctr).endswith("running"):
        assert time.monotonic() < deadline, (f"ctr1 not restarted 60 s after the fault; alerts {stack.alerts()}\n"
                                             f"alertmanager log:\n{stack.log_tail('prometheus-alertmanager')}\n"
                                             f"agent log:\n{agent.log_text()[-3000:]}")
        time.sleep(0.1)
    now = time.monotonic()
    print(f"\nalert path: fault (docker stop ctr1 returned) -> Prometheus rule -> Alertmanager -> webhook -> "
          f"restart: {now - fault_t:.1f} s ({now - call_t:.1f} s from the docker stop call; interval 1 s, "
          f"fail_cycles 2, scrape/evaluation 1 s, group_wait 0 s)")
    fired = stack.query('max_over_time(ALERTS{alertname="VoboxBoxFrozen",box="ctr1",alertstate="firing"}[2m])')
    assert fired, (f"the container came back without VoboxBoxFrozen firing; remediation "
                   f"{query(lab, 'SELECT * FROM remediation', db)}\nagent log:\n{agent.log_text()[-4000:]}\n"
                   f"alertmanager log:\n{stack.log_tail('prometheus-alertmanager')}")
    agent.wait_state("ctr1", "up", timeout_s=30)

    rows = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not rows:
        rows = query(lab, "SELECT * FROM remediation", db)
        time.sleep(0.3)
    assert [(r["box"], r["action"], r["trigger"], r["ok"]) for r in rows] == [("ctr1", "restart_container",
                                                                                 "alert", 1)], rows
    assert agent.stop() == 0
    assert errors_in_log(agent.log_text()) == []
    lab.prometheus_stop()
    assert not os.path.exists(os.path.join(stack.base_dir, "prometheus.pid"))


def test_a_stack_left_by_a_crashed_run_is_killed_via_its_pidfiles(clean_lab, tmp_path):
    """Another process started Prometheus + Alertmanager and died: prometheus_stop (and lab down) still ends them."""
    from lab.prometheus import PrometheusStack

    token = tmp_path / "t"
    token.write_text("x\n")
    stack = PrometheusStack(os.path.join(clean_lab.run_dir, "prometheus"), clean_lab.monitor_ns, "127.0.0.1:1",
                            "http://127.0.0.1:2/webhook", str(token))
    stack.start()
    pids = [p.pid for p in stack._procs.values()]
    assert len(pids) == 2 and all(os.path.exists(f"/proc/{p}") for p in pids)
    clean_lab.prometheus_stop()          # this Lab object never started them: found by pidfile and command line
    for p in pids:
        os.waitpid(p, 0)                 # reap our children (a crashed owner's would be reaped by init)
    assert not any(os.path.exists(f"/proc/{p}") for p in pids)
