"""A JSON Schema (draft 2020-12) of the config, generated from the model, for editors (Even Better TOML, taplo).

`vobox-agent check-config --schema` prints it. It says what one key at a time takes (type, range,
choices, pattern) and which keys exist (additionalProperties: false); the rules between keys and against
this machine stay with check-config, which remains the one judge.
"""
from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

from agent.core.config.model import SECTIONS, SUBSECTIONS, TABLE_ARRAYS

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _default(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _table(cls: type, prefix: str) -> dict[str, Any]:
    """The object schema of one section's table (PREFIX: its describe() path, e.g. "box[]")."""
    props: dict[str, Any] = {}
    required = []
    for f in fields(cls):
        md = f.metadata
        conv = md["conv"]
        table = getattr(conv, "table", None)
        if table is not None:   # [[box.probe]], [[box.check]], [[discovery.probe]]: the sub-table's own schema
            sub_prefix = f"{prefix}.{md['key']}[]"
            sub = SUBSECTIONS.get(sub_prefix) or SUBSECTIONS.get(f"box[].{md['key']}[]")
            assert sub is not None, sub_prefix
            prop: dict[str, Any] = {"type": "array", "items": _table(sub, sub_prefix)}
        else:
            prop = dict(getattr(conv, "schema", {}))
        unit = f" [{md['unit']}]" if md["unit"] else ""
        prop["description"] = md["doc"] + unit
        if f.default is not MISSING and f.default is not None:
            prop["default"] = _default(f.default)
        props[md["key"]] = prop
        if md["required"]:
            required.append(md["key"])
    out: dict[str, Any] = {"type": "object", "description": (cls.__doc__ or "").strip(), "properties": props,
                           "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def json_schema() -> dict[str, Any]:
    """The whole config as one JSON Schema document (a dict ready for json.dumps)."""
    props: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        if section in TABLE_ARRAYS:
            props[section] = {"type": "array", "items": _table(cls, f"{section}[]")}
        else:
            props[section] = _table(cls, section)
    return {"$schema": DIALECT, "title": "vobox-agent configuration (TOML)",
            "type": "object", "properties": props, "additionalProperties": False}
