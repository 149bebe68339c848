"""docs/config-reference.md is generated from the config model and must be current."""
from __future__ import annotations

from agent.core import config
from agent.ops import docs_gen


def test_config_reference_is_current():
    with open(docs_gen.OUTPUT) as f:
        assert f.read() == docs_gen.render(), "docs/config-reference.md is stale: run `python -m agent.ops.docs_gen`"


def test_every_key_is_in_the_reference():
    text = docs_gen.render()
    for doc in config.describe():
        section, key = doc.path.rsplit(".", 1)
        assert f"| `{key}` |" in text, doc.path
    assert "## `[[box]]`" in text and "*required*" in text


def test_check_mode_detects_a_stale_file(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "config-reference.md"
    stale.write_text("old\n")
    monkeypatch.setattr(docs_gen, "OUTPUT", str(stale))
    assert docs_gen.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert docs_gen.main([]) == 0
    assert docs_gen.main(["--check"]) == 0
