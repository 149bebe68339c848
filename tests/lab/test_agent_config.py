"""lab.agent_config() renders a config the agent's strict parser accepts, boxes filled in."""
from __future__ import annotations

import tomllib

import pytest

pytestmark = pytest.mark.lab


def test_agent_config_lists_every_box_and_the_lab_influx(lab):
    doc = tomllib.loads(lab.agent_config(interval=2, fail_cycles=2, site="here"))
    assert doc["agent"]["interval"] == 2 and doc["agent"]["site"] == "here"
    assert doc["agent"]["interface"] == lab.monitor_link
    assert doc["freeze"]["fail_cycles"] == 2
    assert doc["influxdb"] == {"url": lab.influx_url, "api": "v1", "database": "vobox"}
    assert [b["name"] for b in doc["box"]] == ["ctr1", "ctr2", "vm1"]
    ctr1 = doc["box"][0]
    assert ctr1 == {"name": "ctr1", "kind": "container", "ipv4": lab.box("ctr1").ipv4,
                    "ipv6": lab.box("ctr1").ipv6, "tcp_ports": [1093, 8084],
                    "container": lab.box("ctr1").container, "network": lab.network}
    assert "container" not in doc["box"][2]


def test_agent_config_is_accepted_by_the_agent_parser(lab):
    config = pytest.importorskip("agent.core.config")
    cfg = config.loads(lab.agent_config(boxes=["ctr1", "vm1"]))
    assert [b.name for b in cfg.boxes] == ["ctr1", "vm1"]


def test_agent_config_rejects_unknown_overrides(lab):
    with pytest.raises(TypeError, match="unknown override.*intervall"):
        lab.agent_config(intervall=3)


def test_agent_config_box_extra_adds_keys_to_one_box(lab):
    from lab import UnknownBoxError

    doc = tomllib.loads(lab.agent_config(box_extra={"vm1": {"tcp_timeout": 2.5, "tags": ["a", "b"]}}))
    assert doc["box"][2]["tcp_timeout"] == 2.5 and doc["box"][2]["tags"] == ["a", "b"]
    assert "tcp_timeout" not in doc["box"][0]
    with pytest.raises(UnknownBoxError, match="boxes: ctr1, ctr2, vm1"):
        lab.agent_config(box_extra={"vm9": {"x": 1}})
