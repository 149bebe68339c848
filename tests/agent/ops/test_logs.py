"""agent.ops.logs: plain and JSON stderr logging."""
from __future__ import annotations

import io
import json
import logging

import pytest

from agent.ops import logs


@pytest.fixture(autouse=True)
def _restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_time_level_logger_message_and_extras():
    buf = io.StringIO()
    logs.setup("debug", json=True, stream=buf)
    log = logging.getLogger("agent.test")
    log.info("box %s frozen", "vobox-ctr-1", extra={"box": "vobox-ctr-1", "probe": "arp"})
    log.debug("plain")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["level"] == "INFO"
    assert first["logger"] == "agent.test"
    assert first["message"] == "box vobox-ctr-1 frozen"
    assert first["box"] == "vobox-ctr-1" and first["probe"] == "arp"
    assert "action" not in first
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert "box" not in json.loads(lines[1])


def test_json_keeps_a_traceback_on_one_line():
    buf = io.StringIO()
    logs.setup("INFO", json=True, stream=buf)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("x").exception("failed", extra={"action": "restart_container"})
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert "RuntimeError: boom" in obj["exc"] and obj["action"] == "restart_container"


def test_plain_format_and_level_filter():
    buf = io.StringIO()
    logs.setup("WARNING", json=False, stream=buf)
    logging.getLogger("agent.x").info("hidden")
    logging.getLogger("agent.x").warning("shown %d", 3, extra={"box": "b1"})
    out = buf.getvalue()
    assert "hidden" not in out
    assert "WARNING agent.x: shown 3 [box=b1]" in out


def test_setup_replaces_handlers_instead_of_stacking():
    buf = io.StringIO()
    logs.setup("INFO", stream=io.StringIO())
    logs.setup("INFO", stream=buf)
    logging.getLogger("y").info("once")
    assert buf.getvalue().count("once") == 1
    assert len(logging.getLogger().handlers) == 1


def test_unknown_level_names_the_valid_ones():
    with pytest.raises(ValueError, match="DEBUG, INFO, WARNING"):
        logs.setup("verbose")
