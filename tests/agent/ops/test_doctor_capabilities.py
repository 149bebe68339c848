"""doctor's capability report: CapEff decoded per capability, and which configured feature each missing one disables.

The decoding is tested on crafted /proc/self/status texts; the report itself by running the real
`vobox-agent doctor` under `setpriv` with capabilities taken away (needs root and util-linux's setpriv).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from agent.core import config
from agent.ops.doctor import privileges

BIN = os.path.join(os.path.dirname(sys.executable), "vobox-agent")
ALL = (1 << 41) - 1


def _status(eff: int) -> str:
    return f"Name:\tpython3\nCapInh:\t0000000000000000\nCapEff:\t{eff:016x}\nCapBnd:\t{ALL:016x}\n"


def _without(*caps: str) -> int:
    eff = ALL
    for cap in caps:
        eff &= ~(1 << privileges.CAP_BITS[cap])
    return eff


def _cfg(checks: bool = False, remediation: bool = False) -> config.Config:
    box = ('[[box]]\nname = "c1"\nkind = "container"\nipv4 = "192.0.2.10"\ncontainer = "c1"\nnetwork = "n"\n'
           + ('[[box.check]]\nkind = "path"\npath = "/cvmfs"\n' if checks else ""))
    rem = "[remediation]\nenabled = true\n" if remediation else ""
    return config.loads(f'[agent]\nstate_dir = "/tmp/x"\n{rem}{box}')


def _by_name(results):
    return {r.name.removeprefix("capability "): r for r in results}


def test_effective_caps_decodes_the_capeff_line():
    assert privileges.effective_caps(_status(0x3000)) == 0x3000
    with pytest.raises(ValueError, match="CapEff"):
        privileges.effective_caps("Name:\tx\n")


def test_all_present_passes_and_names_the_features():
    r = _by_name(privileges.check_capabilities(_cfg(checks=True), _status(ALL), as_root=True))
    assert set(r) == set(privileges.CAPABILITIES)
    assert all(x.label == "PASS" and x.detail.startswith("present") for x in r.values())


@pytest.mark.parametrize("missing, cfg_kw, label, words", [
    pytest.param("CAP_NET_RAW", {}, "FAIL", "icmp, icmp6, arp and ndp probes", id="net_raw-fails"),
    pytest.param("CAP_NET_ADMIN", {}, "WARN", "SO_RCVBUFFORCE", id="net_admin-warns"),
    pytest.param("CAP_SYS_ADMIN", {"checks": True}, "WARN", "in-container checks", id="sys_admin-checks"),
    pytest.param("CAP_SYS_ADMIN", {"remediation": True}, "WARN", "the announce after reconnect_network",
                 id="sys_admin-announce"),
    pytest.param("CAP_SYS_CHROOT", {"checks": True}, "WARN", "in-container checks", id="sys_chroot-checks"),
    pytest.param("CAP_SYS_CHROOT", {}, "PASS", "not needed by this config", id="sys_chroot-unused"),
])
def test_a_missing_capability_names_what_it_disables(missing, cfg_kw, label, words):
    cfg = _cfg(**cfg_kw) if cfg_kw else config.loads(_cfg_text_no_features())
    r = _by_name(privileges.check_capabilities(cfg, _status(_without(missing)), as_root=False))[missing]
    assert r.label == label, r
    assert words in r.detail, r
    if label != "PASS":
        assert r.detail.startswith("missing: disables") and missing in r.fix


def _cfg_text_no_features() -> str:
    # a VM box, no remediation, no checks, forensics off: only the always-used features remain
    return ('[agent]\nstate_dir = "/tmp/x"\n[forensics]\nenabled = false\n'
            '[[box]]\nname = "v1"\nkind = "vm"\nipv4 = "192.0.2.11"\n')


def test_sys_ptrace_not_needed_only_by_root_holding_dockers_default_set():
    cfg = _cfg(checks=True)
    st = _status(_without("CAP_SYS_PTRACE"))
    assert _by_name(privileges.check_capabilities(cfg, st, as_root=True))["CAP_SYS_PTRACE"].label == "PASS"
    assert _by_name(privileges.check_capabilities(cfg, st, as_root=False))["CAP_SYS_PTRACE"].label == "WARN"
    # the systemd unit's kind of set: root, but only a few capabilities -> the kernel refuses /proc/PID/ns/*
    few = _status(sum(1 << privileges.CAP_BITS[c] for c in ("CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_SYS_ADMIN")))
    r = _by_name(privileges.check_capabilities(cfg, few, as_root=True))["CAP_SYS_PTRACE"]
    assert r.label == "WARN" and "in-container checks" in r.detail


def test_proc_hidden_is_a_warning():
    def hidden(path):
        raise PermissionError(13, "Permission denied")
    r = privileges.check_proc(hidden)
    assert r.label == "WARN" and "in-container checks" in r.detail
    assert privileges.check_proc(lambda p: "0::/\n").label == "PASS"


# ------------------------------------------------------------ the real command under setpriv

def _doctor(tmp_path, prefix: list[str]) -> tuple[int, str]:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path}/state"\n'
                   '[influxdb]\nurl = "http://127.0.0.1:9"\n'    # discard port: refused at once
                   '[[box]]\nname = "c1"\nkind = "container"\nipv4 = "192.0.2.10"\ncontainer = "c1"\n'
                   'network = "n"\n[[box.check]]\nkind = "path"\npath = "/cvmfs"\n')
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    proc = subprocess.run([*prefix, BIN, "doctor", "-c", str(cfg)], capture_output=True, text=True, timeout=120,
                          env=env)
    return proc.returncode, proc.stdout + proc.stderr


def _need_setpriv():
    if os.geteuid() != 0:
        pytest.skip("needs root (to take capabilities away)")
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux)")


@pytest.mark.lab   # root, to take capabilities away
def test_doctor_under_setpriv_reports_the_missing_capabilities(tmp_path):
    _need_setpriv()
    code, out = _doctor(tmp_path, ["setpriv", "--inh-caps=-all", "--bounding-set=-net_raw,-sys_admin"])
    assert code == 1, out
    lines = {line.split(":", 1)[0]: line for line in out.splitlines() if "capability CAP_" in line}
    assert lines["FAIL  capability CAP_NET_RAW"].startswith("FAIL  capability CAP_NET_RAW: missing: disables icmp"), out
    sys_admin = lines["WARN  capability CAP_SYS_ADMIN"]
    assert "in-container checks" in sys_admin and "container_net" in sys_admin, out
    assert "PASS  capability CAP_NET_ADMIN: present" in out
    assert "FAIL  raw-socket privilege" in out
    # the Docker socket is absent here: the docker line names what that disables
    assert "Docker engine not reachable" in out and "restart_container and reconnect_network" in out


@pytest.mark.lab   # root, to take capabilities away
def test_doctor_with_every_capability_passes_the_capability_lines(tmp_path):
    _need_setpriv()
    code, out = _doctor(tmp_path, [])
    for cap in privileges.CAPABILITIES:
        assert f"PASS  capability {cap}: present" in out, out
    assert "PASS  raw-socket privilege" in out


def test_run_warns_at_start_for_each_missing_capability_the_config_uses(tmp_path, monkeypatch, caplog):
    """`run` says at every start what `doctor` would: a missing CAP_SYS_ADMIN disables the configured checks."""
    import logging

    from agent.commands import run as run_cmd
    from agent.core.config import loads
    cfg = loads(f'[agent]\nstate_dir = "{tmp_path}/state"\n[influxdb]\nurl = "http://127.0.0.1:9"\n'
                '[[box]]\nname = "c1"\nkind = "container"\nipv4 = "192.0.2.10"\ncontainer = "c1"\n'
                'network = "n"\n[[box.check]]\nkind = "path"\npath = "/cvmfs"\n')
    every = sum(1 << b for b in privileges.CAP_BITS.values())
    without_sys_admin = every & ~(1 << privileges.CAP_BITS["CAP_SYS_ADMIN"])
    monkeypatch.setattr(privileges, "read_proc_status", lambda: f"Name:\tx\nCapEff:\t{without_sys_admin:016x}\n")
    with caplog.at_level(logging.WARNING):
        run_cmd._warn_missing_capabilities(cfg)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("capability CAP_SYS_ADMIN: missing: disables"), lines
    assert "in-container checks" in lines[0]
    caplog.clear()
    monkeypatch.setattr(privileges, "read_proc_status", lambda: f"Name:\tx\nCapEff:\t{every:016x}\n")
    with caplog.at_level(logging.WARNING):
        run_cmd._warn_missing_capabilities(cfg)
    assert [r.getMessage() for r in caplog.records] == []
