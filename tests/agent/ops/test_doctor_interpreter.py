"""doctor warns when the interpreter carries file capabilities that every local user may use (issue 33 item 6)."""
from __future__ import annotations

import os
import shutil
import stat
from types import SimpleNamespace

import pytest

from agent.ops.doctor.privileges import SETCAP_FIX, check_interpreter_caps, file_caps

# What `setcap cap_net_raw,cap_net_admin+ep FILE` writes (read back with os.getxattr on this machine): revision 2,
# effective, permitted CAP_NET_ADMIN (12) and CAP_NET_RAW (13).
NET_CAPS = bytes.fromhex("0100000200300000000000000000000000000000")


def _stat(mode: int):
    return lambda _path: SimpleNamespace(st_mode=stat.S_IFREG | mode)


def _xattr(value: bytes | None):
    def get(_path: str, _name: str) -> bytes:
        if value is None:
            raise OSError(61, "No data available")
        return value
    return get


def test_the_capability_set_is_decoded():
    assert file_caps(NET_CAPS) == 1 << 12 | 1 << 13
    with pytest.raises(ValueError):
        file_caps(b"\x01\x00")


@pytest.mark.parametrize("value, mode, label, words", [
    pytest.param(None, 0o755, "PASS", "carries no file capability", id="no-caps"),
    pytest.param(NET_CAPS, 0o755, "WARN", "CAP_NET_ADMIN,CAP_NET_RAW and every local user may run it (mode 0755)",
                 id="caps-world-executable"),
    pytest.param(NET_CAPS, 0o750, "PASS", "only its owner and group may run it (mode 0750)", id="caps-0750"),
])
def test_interpreter_caps(value, mode, label, words):
    r = check_interpreter_caps("/opt/x/python3", getxattr=_xattr(value), stat=_stat(mode))
    assert r.label == label and words in r.detail, r
    if label == "WARN":
        assert "setcap -r /opt/x/python3" in r.fix and "install -m 0750 -o root -g GROUP" in r.fix


def test_the_fix_for_a_missing_privilege_puts_ambient_capabilities_first():
    assert SETCAP_FIX.index("AmbientCapabilities") < SETCAP_FIX.index("setcap")
    assert "install -m 0750 -o root" in SETCAP_FIX and "never setcap the system's python3" in SETCAP_FIX


@pytest.mark.lab
def test_a_real_copy_with_capabilities(tmp_path):
    """A real file with real file capabilities (root: security.* extended attributes), then made 0750."""
    if os.geteuid() != 0:
        pytest.fail("needs root to set file capabilities")
    copy = tmp_path / "python3-caps"
    shutil.copy("/bin/true", copy)
    os.chmod(copy, 0o755)
    os.setxattr(copy, "security.capability", NET_CAPS)
    link = tmp_path / "python3"
    link.symlink_to(copy)
    warned = check_interpreter_caps(str(link))
    assert warned.label == "WARN" and str(copy) in warned.detail, warned
    os.chmod(copy, 0o750)
    assert check_interpreter_caps(str(link)).label == "PASS"


def test_the_example_config_passes_check_config_on_a_bare_host():
    """deploy/agent.example.toml with its files checked (no `virsh` here): the VM hook is a commented example."""
    from tests.agent.commands.cli_helpers import run_cli

    example = os.path.join(os.path.dirname(__file__), "..", "..", "..", "deploy", "agent.example.toml")
    code, out, err = run_cli(["check-config", "-c", example])
    assert code == 0 and out.startswith("OK: 2 boxes (1 container, 1 vm)"), (out, err)
    with open(example, encoding="utf-8") as f:
        text = f.read()
    assert "# VM hook EXAMPLE" in text and '# command = ["virsh", "reset", "{box}"]' in text
