"""`vobox-agent check-config --schema`: a JSON Schema an editor can use, generated from the model."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import jsonschema
import pytest

from agent.core import config
from agent.core.config.schema import json_schema

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
EXAMPLE = os.path.join(ROOT, "deploy", "agent.example.toml")


@pytest.fixture(scope="module")
def schema() -> dict:
    proc = subprocess.run([sys.executable, "-m", "agent", "check-config", "--schema"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    jsonschema.Draft202012Validator.check_schema(out)   # a valid draft 2020-12 schema
    return out


def problems(schema: dict, data: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft202012Validator(schema).iter_errors(data)]


def test_the_example_config_validates_and_check_config_accepts_it_too(schema):
    with open(EXAMPLE, "rb") as fh:
        data = tomllib.load(fh)
    assert problems(schema, data) == []
    config.parse(data)   # the judge agrees


def test_every_key_of_the_model_is_in_the_schema_with_its_description(schema):
    for doc in config.describe():
        node = schema
        for part in doc.path.split("."):
            name, array = part.removesuffix("[]"), part.endswith("[]")
            node = node["properties"][name]
            if array:
                node = node["items"]
        assert node.get("description", "").startswith(doc.doc), doc.path


@pytest.mark.parametrize("path, value, where", [
    pytest.param(("agent", "intervall"), 5, "agent", id="unknown-key"),
    pytest.param(("agent", "interval"), 0, "agent/interval", id="not-above-zero"),
    pytest.param(("agent", "interval"), "10", "agent/interval", id="string-for-number"),
    pytest.param(("influxdb", "api"), "v3", "influxdb/api", id="enum"),
    pytest.param(("freeze", "fail_cycles"), 1001, "freeze/fail_cycles", id="above-maximum"),
    pytest.param(("box", 0, "tcp_ports"), [80, 80], "box/0/tcp_ports", id="unique-items"),
    pytest.param(("box", 0, "name"), "a b", "box/0/name", id="pattern"),
    pytest.param(("box", 0, "probe"), [{"kind": "tcp", "port": 80, "colour": 1}], "box/0/probe/0", id="sub-table"),
    pytest.param(("box", 0, "kind"), None, "box/0", id="required"),
])
def test_the_schema_refuses_what_a_key_cannot_take(schema, path, value, where):
    with open(EXAMPLE, "rb") as fh:
        data = tomllib.load(fh)
    node = data
    for p in path[:-1]:
        node = node.setdefault(p, {}) if isinstance(p, str) else node[p]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    found = problems(schema, data)
    assert any(f.startswith(where + ":") for f in found), found


def test_the_module_and_the_command_give_the_same_schema(schema):
    assert json_schema() == schema
