"""The `command` action: placeholders, no shell, timeout, exit status and truncated output (real processes)."""
from __future__ import annotations

import re
import sys

import pytest

from remediations import ActionContext, PlannedAction, RemediationPolicy, RemediationTarget, execute
from remediations.actions import ActionError, expand_command
from tests.cases import case


def run(command, timeout_s=5.0, **kw):
    t = RemediationTarget(box="vm1", kind="vm", ipv4="192.0.2.20", command=tuple(command), **kw)
    ctx = ActionContext(lambda: pytest.fail("docker must not be touched"),
                        RemediationPolicy(command_timeout_s=timeout_s))
    return execute(PlannedAction("vm1", "command", "manual", t, False, -1, 0.0), ctx)


def test_placeholders_are_filled_and_no_shell_is_involved():
    out = run([sys.executable, "-c", "import sys; print(sys.argv[1:])", "{box}", "{ipv4}", "$HOME;{box}", "{{x}}"])
    assert out.ok
    assert "['vm1', '192.0.2.20', '$HOME;vm1', '{x}']" in out.detail and "exit 0" in out.detail


def test_literal_braces_as_check_config_recommends():
    """shared/cases/config-command-literal-braces.toml: a JSON body in an argument, braces doubled."""
    import tomllib

    from agent.core.config import parse

    data = tomllib.loads(case("config-command-literal-braces.toml").read_text())
    cfg = parse(data)                    # check-config accepts it (same validation as the expansion)
    argv = expand_command(cfg.boxes[0].remediation_target())
    assert argv[3] == '{"action": "reset", "vm": "vobox-vm-1"}'


@pytest.mark.parametrize("arg, problem", [
    pytest.param("{", "bad placeholder syntax", id="lone-open-brace"),
    pytest.param("}", "bad placeholder syntax", id="lone-close-brace"),
    pytest.param("{host}", "unknown placeholder {host}", id="unknown"),
    pytest.param("{box!r}", "takes no conversion", id="conversion"),
    pytest.param("{box:>10}", "takes no conversion or format spec", id="format-spec"),
    pytest.param("{0}", "unknown placeholder {0}", id="positional"),
    pytest.param("{box.attr}", "unknown placeholder {box.attr}", id="attribute"),
])
def test_template_errors_are_the_same_for_check_config_and_run(arg, problem):
    from agent.core.config import ConfigError, parse
    from remediations.actions import template_errors

    assert any(problem in e for e in template_errors(arg))
    with pytest.raises(ConfigError, match=re.escape(problem)):
        parse({"box": [{"name": "v", "kind": "vm", "ipv4": "192.0.2.20", "remediate": ["command"],
                        "command": ["x", arg]}]})
    with pytest.raises(ActionError, match=re.escape(problem)):
        expand_command(RemediationTarget(box="v", kind="vm", ipv4="192.0.2.20", command=("x", arg)))


def test_missing_placeholder_value_is_refused():
    with pytest.raises(ActionError, match=r"placeholder \{ipv6\} but the box has no ipv6"):
        expand_command(RemediationTarget(box="vm1", kind="vm", command=("x", "{ipv6}")))
    assert not run(["echo", "{container}"]).ok


@pytest.mark.parametrize("command, expect", [
    pytest.param([sys.executable, "-c", "import sys; print('bad'); sys.exit(3)"], "exit 3; output: bad", id="exit-3"),
    pytest.param(["/nonexistent/vobox-cmd"], "command not found", id="not-found"),
    pytest.param([sys.executable, "-c", "import time; print('x', flush=True); time.sleep(30)"],
                 "killed after timeout 0.5 s", id="timeout"),
])
def test_failures_are_data(command, expect):
    out = run(command, timeout_s=0.5 if "sleep" in command[-1] else 5.0)
    assert not out.ok and expect in out.detail
    assert out.duration_s < 5


def test_output_is_truncated():
    out = run([sys.executable, "-c", "print('y' * 5000)"])
    assert out.ok and "more chars]" in out.detail and len(out.detail) < 700


def test_dry_run_runs_nothing(tmp_path):
    marker = tmp_path / "m"
    t = RemediationTarget(box="vm1", kind="vm", command=("touch", str(marker)))
    out = execute(PlannedAction("vm1", "command", "manual", t, True, -1, 0.0), ActionContext(policy=RemediationPolicy()))
    assert out.ok and out.detail.startswith("dry-run: would run ['touch'") and not marker.exists()
