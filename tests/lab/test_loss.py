"""Random loss on the lab's segment (`lab loss PERCENT`): a real ping count loses about what was asked, both ways."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from lab import LabError
from lab.faults import NFT_LOSS_TABLE, loss_rules
from tests.lab_fixtures import in_monitor, ping_ok

pytestmark = pytest.mark.lab

PINGS = 2000


def _ping_loss(lab, address: str, count: int = PINGS) -> float:
    """Share of COUNT echo requests (iputils ping, 2 ms apart) from the monitor namespace left unanswered."""
    proc = in_monitor(lab, "ping", "-n", "-q", "-c", str(count), "-i", "0.002", "-W", "1", address, timeout_s=120)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", proc.stdout)
    assert m, proc.stdout + proc.stderr
    sent, got = int(m.group(1)), int(m.group(2))
    assert sent == count
    return 1 - got / sent


def _nft_tables(lab) -> str:
    return in_monitor(lab, "nft", "list", "tables").stdout


def test_loss_rules_drop_on_receipt_only():
    text = loss_rules("mon0", 1.5)
    assert "hook ingress device \"mon0\"" in text and "egress" not in text
    assert text.count("numgen random mod 10000 < 150 ") == 1


@pytest.mark.parametrize("bad", [-1, 100.5, "x"])
def test_bad_loss_percent_is_a_clear_error(clean_lab, bad):
    with pytest.raises(LabError, match="loss percent must be"):
        clean_lab.loss(bad)
    assert clean_lab.loss_percent == 0


def test_loss_drops_about_n_percent_each_way_and_is_undone(clean_lab):
    lab, percent = clean_lab, 5.0
    p = percent / 100
    ctr = lab.box("ctr1")
    assert _ping_loss(lab, ctr.ipv4, 200) == 0.0
    lab.loss(percent)
    assert lab.status()["loss_percent"] == percent
    assert f"table netdev {NFT_LOSS_TABLE}" in _nft_tables(lab)
    rt4 = _ping_loss(lab, ctr.ipv4)
    rt6 = _ping_loss(lab, lab.box("vm1").ipv6)
    counters = lab.loss_counters()
    # A round trip crosses the link twice: 1 - (1 - p)^2 = 9.75 % at 5 %; 2000 pings: sd 0.66 points.
    expected = 1 - (1 - p) ** 2
    assert abs(rt4 - expected) < 0.035, (rt4, expected)
    assert abs(rt6 - expected) < 0.035, (rt6, expected)
    # each end drops on receipt: the monitor (replies), every box (requests); the pinged ones saw 2000 each
    assert sorted(counters) == sorted(["monitor", *(b.name for b in lab.boxes)])
    for where in ("monitor", "ctr1", "vm1"):
        seen, dropped = counters[where]
        assert seen >= PINGS * 0.9, (where, seen)
        assert abs(dropped / seen - p) < 0.02, (where, seen, dropped)
    # the lab's influxd on loopback in the same namespace loses nothing
    assert lab.status()["influx"]["answers"] is True

    lab.loss(0)
    assert NFT_LOSS_TABLE not in _nft_tables(lab)
    assert lab.loss_counters() == {}
    assert _ping_loss(lab, ctr.ipv4, 200) == 0.0


def test_a_box_back_from_a_fault_gets_the_loss_again(clean_lab):
    lab = clean_lab
    ctr = lab.box("ctr1")
    lab.loss(50)
    _ping_loss(lab, ctr.ipv4, 200)
    assert lab.loss_counters()["ctr1"][0] >= 200
    lab.fault("ctr1", "l2")   # network disconnect: its link is gone
    lab.clear("ctr1", wait=False)
    assert lab.loss_counters()["ctr1"][0] < 100   # a new table on the new link
    # and it drops: a round trip loses about 1 - 0.5^2 = 75 %
    assert _ping_loss(lab, ctr.ipv4, 400) > 0.6
    assert lab.loss_counters()["ctr1"][1] > 100
    lab.loss(0)
    lab.wait_box("ctr1")


def test_clear_all_and_the_cli_undo_the_loss(clean_lab):
    lab = clean_lab
    proc = subprocess.run([sys.executable, "-m", "lab", "--run-id", lab.run_id, "loss", "1"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "drops about 1 % of frames each way" in proc.stdout
    lab.clear_all(wait=True)
    assert lab.loss_percent == 0
    assert NFT_LOSS_TABLE not in _nft_tables(lab)
    assert ping_ok(lab, lab.box("ctr2").ipv4)
