"""prometheus/vobox-rules.yml: checked and unit-tested with Debian's promtool; its metric names are the listener's."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.core.config.model import DEFAULT_SITE_LABEL
from agent.listeners.metrics import MetricsListener

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = os.path.join(ROOT, "prometheus", "vobox-rules.yml")
RULE_TESTS = os.path.join(ROOT, "prometheus", "vobox-rules.test.yml")


def promtool(*args: str, cwd: str) -> subprocess.CompletedProcess:
    if shutil.which("promtool") is None:
        pytest.skip("promtool missing (apt-get install prometheus; scripts/setup does)")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_promtool_check_rules_accepts_the_rules():
    proc = promtool("check", "rules", RULES, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 21 rules found" in proc.stdout


def test_promtool_unit_tests_of_the_rules_pass():
    proc = promtool("test", "rules", RULE_TESTS, cwd=os.path.dirname(RULE_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_rule_that_no_longer_fires_fails_the_unit_tests(tmp_path):
    """The unit tests can fail: a VoboxBoxFrozen that never fires breaks them."""
    with open(RULES, encoding="utf-8") as fh:
        text = fh.read()
    broken = text.replace('vobox_box_state{state="frozen"} == 1', 'vobox_box_state{state="frozen"} == 2')
    assert broken != text
    (tmp_path / "vobox-rules.yml").write_text(broken, encoding="utf-8")
    shutil.copy(RULE_TESTS, tmp_path / "vobox-rules.test.yml")
    proc = promtool("test", "rules", "vobox-rules.test.yml", cwd=str(tmp_path))
    assert proc.returncode != 0
    assert "VoboxBoxFrozen" in proc.stdout + proc.stderr


def test_every_metric_the_rules_use_is_one_the_agent_exports():
    with open(RULES, encoding="utf-8") as fh:
        groups = yaml.safe_load(fh)["groups"]
    exprs = " ".join(rule["expr"] for g in groups for rule in g["rules"])
    used = {re.sub(r"_(bucket|count|sum)$", "", m) for m in re.findall(r"(?<![:\w])(vobox_\w+)", exprs)}
    used.discard(DEFAULT_SITE_LABEL)   # the site's label ([metrics] site_label), not a metric
    assert {"vobox_box_state", "vobox_box_remediation_held", "vobox_segment_frozen_boxes",
            "vobox_agent_cycles_total"} <= used
    # stalls are read from the cycle counter, never from time() against a stamp of the agent's own clock
    assert "vobox_agent_last_cycle_timestamp_seconds" not in used
    metrics = MetricsListener({"a": "container"}, "lab", interval_s=10)
    exported = {fam.name for fam in text_string_to_metric_families(generate_latest(metrics.registry).decode())}
    exported |= {n + "_total" for n in exported}
    assert used <= exported, used - exported
