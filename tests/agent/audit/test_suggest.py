"""agent.audit.suggest: the least-privilege variant and the trial (pure: the variant runs are a recorded table)."""
from __future__ import annotations

from agent import audit as A
from agent.audit import suggest
from tests.agent.audit.test_findings import SOCK, inp


def test_trial_adds_a_capability_only_where_a_check_needs_it_and_names_the_check():
    def run_checks(cap_add):
        calls.append(cap_add)
        return {"running": True, "exec:ip": "CAP_NET_ADMIN" in cap_add, "path:/cvmfs": True}
    calls: list = []
    t = suggest.trial(("CAP_NET_ADMIN", "CAP_SYS_ADMIN"), run_checks)
    assert t.needed == {"CAP_NET_ADMIN": ("exec:ip",)} and t.not_needed == ("CAP_SYS_ADMIN",)
    assert t.still_failing == () and t.runs == 2 and calls == [frozenset(), frozenset({"CAP_NET_ADMIN"})]
    assert t.first == {"running": True, "exec:ip": False, "path:/cvmfs": True}


def test_trial_keeps_what_was_added_and_names_checks_that_need_two_at_once():
    def run_checks(cap_add):
        return {"a": "CAP_A" in cap_add, "both": {"CAP_B", "CAP_C"} <= cap_add}
    t = suggest.trial(("CAP_A", "CAP_B", "CAP_C"), run_checks)
    assert t.needed == {"CAP_A": ("a",)} and t.still_failing == ("both",) and t.not_needed == ("CAP_B", "CAP_C")


def test_trial_with_every_check_passing_adds_nothing():
    t = suggest.trial(("CAP_SYS_ADMIN",), lambda caps: {"running": True})
    assert t.needed == {} and t.not_needed == ("CAP_SYS_ADMIN",) and t.runs == 1


def test_variant_keeps_devices_and_mounts_leaves_out_the_socket_and_makes_cvmfs_rslave():
    i = inp({"CapAdd": ["SYS_ADMIN"], "PidMode": "host",
             "Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}]},
            mounts=[SOCK, {"Type": "bind", "Source": "/srv/cvmfs", "Destination": "/cvmfs", "RW": False,
                           "Propagation": "rprivate"},
                    {"Type": "bind", "Source": "/srv/data", "Destination": "/data", "RW": True,
                     "Propagation": "rprivate"}])
    a = A.audit(i, 0)
    v = suggest.variant_of(i, a)
    assert v.candidates == ("CAP_SYS_ADMIN",)
    assert suggest.run_flags(v, ["CAP_SYS_ADMIN"]) == [
        "--cap-add", "SYS_ADMIN", "--device", "/dev/fuse:/dev/fuse:rwm", "-v", "/srv/cvmfs:/cvmfs:ro,rslave",
        "-v", "/srv/data:/data"]
    assert any("engine socket" in x for x in v.left_out) and any("pid=host" in x for x in v.left_out)
    trial = suggest.variant_of(i, a, for_trial=True)
    assert [m[1] for m in trial.mounts] == ["/cvmfs"] and any("writable" in x for x in trial.left_out)


def test_a_privileged_box_tries_every_capability_beyond_the_default():
    i = inp({"Privileged": True})
    v = suggest.variant_of(i, A.audit(i, 0))
    assert "CAP_SYS_ADMIN" in v.candidates and "CAP_CHOWN" not in v.candidates and "--privileged (5.4)" in v.left_out
