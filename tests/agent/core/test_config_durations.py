"""Every config key in seconds takes a number or a duration with units ("500ms", "1s", "2m"), issue 33 item 5."""
from __future__ import annotations

from dataclasses import fields

import pytest

from agent.core import config
from agent.core.config.model import SECTIONS
from agent.core.config.schema import json_schema

BASE = {"influxdb": {"url": "http://127.0.0.1:8086"},
        "box": [{"name": "v", "kind": "vm", "ipv4": "192.0.2.5"}]}


@pytest.mark.parametrize("text, seconds", [
    pytest.param("500ms", 0.5, id="ms"),
    pytest.param("1s", 1.0, id="s"),
    pytest.param("2m", 120.0, id="m"),
    pytest.param("1m30s", 90.0, id="compound"),
    pytest.param("1.5s", 1.5, id="fraction"),
    pytest.param(2, 2.0, id="integer"),
    pytest.param(0.25, 0.25, id="float"),
])
def test_timeout_takes_units(text, seconds):
    cfg = config.parse({**BASE, "agent": {"timeout": text, "interval": "5m"}})
    assert cfg.agent.timeout_s == seconds
    assert cfg.agent.interval_s == 300.0


def test_range_still_holds_for_a_duration():
    """A duration is held to the key's range like a number."""
    with pytest.raises(config.ConfigError) as exc:
        config.parse({**BASE, "remediation": {"verify": "0ms"}})
    assert exc.value.errors == ('remediation.verify: expected a number > 0 or a duration with a unit '
                                '("500ms", "1s", "2m"), got "0ms"',)


def _second_keys():
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            if f.metadata.get("unit") == "s":
                default = f.default if isinstance(f.default, (int, float)) and f.default > 0 else 1.5
                yield section, f.metadata["key"], f.metadata["conv"], float(default)


def test_every_key_in_seconds_takes_a_duration_string():
    """The kind, not the example: each key with unit s takes its default (1.5 s when it has none) written in
    milliseconds, and its label says durations are taken."""
    keys = list(_second_keys())
    assert len(keys) >= 15, keys   # interval, timeout, jitter, cooldown, verify, ... (model.py)
    for section, key, conv, seconds in keys:
        assert conv(f"{seconds * 1000:.3f}ms") == pytest.approx(seconds), (section, key)
        assert '"500ms"' in conv.label, (section, key, conv.label)


def test_schema_takes_number_or_duration_string():
    timeout = json_schema()["properties"]["agent"]["properties"]["timeout"]
    kinds = [alt.get("type") for alt in timeout["oneOf"]]
    assert kinds == ["number", "string"]
    import re
    pattern = re.compile(timeout["oneOf"][1]["pattern"])
    assert pattern.match("500ms") and pattern.match("1h30m") and not pattern.match("10") and not pattern.match("1 s")
