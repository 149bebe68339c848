"""remediations.announce without a lab: IPv6 DAD state read from /proc and the wait for it (fake clock)."""
from __future__ import annotations

import os

import pytest

from remediations import announce

TENTATIVE, DADFAILED, PERMANENT = announce.IFA_F_TENTATIVE, announce.IFA_F_DADFAILED, 0x80


def test_ipv6_flags_reads_this_namespace():
    if announce.ipv6_flags(os.getpid(), "::1") is None:
        pytest.skip("no IPv6 loopback in this namespace")
    assert announce.ipv6_flags(os.getpid(), "::1") & PERMANENT
    assert announce.ipv6_flags(os.getpid(), "2001:db8::dead") is None


@pytest.mark.parametrize("flags, said, waited_s", [
    pytest.param([PERMANENT], "2001:db8::1 usable", 0.0, id="usable-at-once"),
    pytest.param([TENTATIVE, TENTATIVE, 0], "2001:db8::1 usable", 0.2, id="dad-ends"),
    pytest.param([TENTATIVE] * 100, "2001:db8::1 still tentative after 3 s", 3.0, id="never-ends"),
    pytest.param([TENTATIVE | DADFAILED], "2001:db8::1 DAD failed (duplicate address)", 0.0, id="dad-failed"),
    pytest.param([None], "2001:db8::1 not on the container", 0.0, id="absent"),
])
def test_wait_ipv6_usable(monkeypatch, flags, said, waited_s):
    seen = iter(flags)
    monkeypatch.setattr(announce, "ipv6_flags", lambda pid, ipv6: next(seen))
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    assert announce.wait_ipv6_usable(42, "2001:db8::1", 3.0, clock=lambda: now[0], sleep=sleep) == said
    assert now[0] == pytest.approx(waited_s, abs=announce.DAD_POLL_S)
