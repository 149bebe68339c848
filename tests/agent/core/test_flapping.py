"""The pure flapping score (agent.core.flapping): Icinga 2's weighted percent state change, hysteresis, loss."""
from __future__ import annotations

import pytest

from agent.core import flapping as F
from agent.core.config import ConfigError, loads
from agent.core.events import DegradedChanged

S = F.FlapSettings()   # Icinga 2's numbers: 21 cycles, 25 % / 30 %


def run(pattern: str, settings: F.FlapSettings = S, state: F.FlapState | None = None):
    """Feed 'H'ealthy / 'F'ailed cycles; return the last state and every event."""
    st = state or F.initial("b")
    events = []
    for i, c in enumerate(pattern):
        st, evs = F.step(st, c == "H", 100.0 + i, settings)
        events += evs
    return st, events


@pytest.mark.parametrize("history, percent", [
    pytest.param("H" * 21, 0.0, id="steady"),
    pytest.param("F" * 21, 0.0, id="steadily-failing"),
    # one change at the newest place: Icinga's weight 0.8 + 0.02 x 19 = 1.18, over 20 places
    pytest.param("H" * 20 + "F", 100 * 1.18 / 20, id="newest-change"),
    # one change at the oldest place: weight 0.8
    pytest.param("H" + "F" * 20, 100 * 0.8 / 20, id="oldest-change"),
    # every place changes: sum of 0.8 + 0.02 i for i = 0..19 = 19.8, over 20
    pytest.param("HF" * 10 + "H", 99.0, id="alternating"),
    # a short history is right-aligned: its changes sit at the newest places
    pytest.param("HF", 100 * 1.18 / 20, id="two-cycles"),
])
def test_percent_state_change_is_icingas(history, percent):
    h = tuple(c == "H" for c in history)
    assert F.percent_state_change(h, 21) == pytest.approx(percent)


def test_newer_changes_weigh_more_than_older_ones():
    older = tuple(c == "H" for c in "HF" + "F" * 19)
    newer = tuple(c == "H" for c in "H" * 19 + "HF")
    assert F.percent_state_change(newer, 21) > F.percent_state_change(older, 21)


def test_failing_every_other_cycle_is_degraded_with_about_half_failed():
    st, events = run("HF" * 20)
    assert st.degraded and st.flapping
    assert st.percent_state_change == pytest.approx(99.0)
    assert st.failed_share == pytest.approx(11 / 21)   # the last 21 cycles: F H F ... F
    assert [type(e) for e in events] == [DegradedChanged]   # once, not every cycle
    assert events[0].degraded and "flapping" in events[0].reason


def test_flapping_starts_above_high_and_stops_at_or_below_low_not_between():
    # alternate until flapping, then steady: the percent decays through the band between 30 and 25
    st, events = run("HF" * 10)
    assert st.flapping
    seen = []
    for i in range(25):
        st, evs = F.step(st, True, 200.0 + i, S)
        seen.append((st.percent_state_change, st.flapping))
        events += evs
    assert any(S.low_threshold_percent < p <= S.high_threshold_percent and f for p, f in seen), \
        "between the thresholds a flapping box keeps flapping"
    stop = next(i for i, (p, f) in enumerate(seen) if not f)
    assert seen[stop][0] <= S.low_threshold_percent < seen[stop - 1][0]
    assert [e.degraded for e in events] == [True, False]


def test_between_the_thresholds_a_steady_box_does_not_start_flapping():
    # changes at the 5 newest places: (1.10 + 1.12 + 1.14 + 1.16 + 1.18) / 20 = 28.5 %, between 25 and 30
    h = tuple(c == "H" for c in "H" * 16 + "FHFHF")
    st, evs = F.step(F.FlapState("b", h[:-1]), h[-1], 1.0, S)
    assert st.percent_state_change == pytest.approx(28.5)
    assert not st.flapping and not st.degraded and evs == []
    st, evs = F.step(F.FlapState("b", h[:-1], flapping=True, degraded=True), h[-1], 1.0, S)
    assert st.flapping and evs == []   # the same window keeps a flapping box flapping


def test_loss_alone_makes_a_box_degraded_and_its_share_is_over_the_window():
    never_flaps = F.FlapSettings(high_threshold_percent=100.0, low_threshold_percent=100.0)
    st, events = run("H" * 15 + "FFFFFF", never_flaps)   # 6 of 21 failed: 28.6 % > 25 %
    assert st.failed_share == pytest.approx(6 / 21) and not st.flapping and st.degraded
    assert "loss" in events[-1].reason
    st, _ = run("H" * 16 + "FFFFF", never_flaps)          # 5 of 21: 23.8 %
    assert not st.degraded


def test_a_freeze_empties_the_window_and_is_not_degraded():
    st, _ = run("HF" * 15)
    assert st.degraded
    st, evs = F.step(st, False, 500.0, S, freeze_open=True)
    assert st.history == () and not st.degraded and st.percent_state_change == 0.0
    assert len(evs) == 1 and evs[0].degraded is False and "frozen" in evs[0].reason
    st, evs = F.step(st, True, 510.0, S)   # the freeze closed: a fresh window
    assert st.history == (True,) and evs == []


def test_a_stopped_box_is_not_scored():
    st, _ = run("HF" * 15)
    st, evs = F.step(st, False, 500.0, S, stopped=True)
    assert st.history == () and not st.degraded and evs[0].reason == "stopped"


def test_confirmation_passes_add_nothing_to_the_window():
    st, _ = run("HFH")
    st2, evs = F.step(st, False, 9.0, S, cycle=False)
    assert st2 == st and evs == []


def test_disabled_scores_nothing():
    st, events = run("HF" * 20, F.FlapSettings(enabled=False))
    assert st == F.initial("b") and events == []


def test_the_window_survives_json():
    st, _ = run("HF" * 12)
    back = F.from_json(F.to_json({"b": st}), S)["b"]
    assert back == st
    with pytest.raises(ValueError):
        F.from_json({"b": {"history": "HF"}}, S)


CONFIG = """
[agent]
state_dir = "/tmp/x"
[[box]]
name = "a"
kind = "vm"
ipv4 = "192.0.2.10"
"""


def test_config_section_and_its_errors():
    cfg = loads(CONFIG + "\n[flapping]\nwindow_cycles = 11\nlow_threshold_percent = 10\n"
                "high_threshold_percent = 20\nmax_failed_share = 0.5\n")
    assert F.FlapSettings.from_config(cfg.flapping) == F.FlapSettings(True, 11, 10.0, 20.0, 0.5)
    assert F.FlapSettings.from_config(loads(CONFIG).flapping) == S
    with pytest.raises(ConfigError) as e:
        loads(CONFIG + "\n[flapping]\nlow_threshold_percent = 40\n")
    assert e.value.errors == ("flapping.low_threshold_percent: must be at most flapping.high_threshold_percent "
                              "(30), got 40",)
    with pytest.raises(ConfigError) as e:
        loads(CONFIG + "\n[flapping]\nwindow = 21\nmax_failed_share = 2\n")
    assert any(m.startswith("flapping.window: unknown key") for m in e.value.errors)
    assert any(m.startswith("flapping.max_failed_share: expected a number") for m in e.value.errors)
    with pytest.raises(ConfigError) as e:   # a bad value is reported alone, not compared with the default
        loads(CONFIG + "\n[flapping]\nlow_threshold_percent = \"x\"\nhigh_threshold_percent = 10\n")
    assert len(e.value.errors) == 1


def test_loss_has_hysteresis_a_box_at_the_edge_does_not_switch_every_cycle():
    """Lossy above max_failed_share (6 of 21 failed), clear only at max x low/high or below (4 of 21)."""
    s = F.FlapSettings(window_cycles=21, low_threshold_percent=25, high_threshold_percent=30, max_failed_share=0.25,
                       enabled=True)
    # failures in one block (no flapping: few changes), so only the share decides
    def state_after(failed: int, lossy: bool):
        history = (True,) * (20 - failed) + (False,) * failed
        st, _ = F.step(F.FlapState("b", history, lossy=lossy, degraded=lossy), True, 1.0, s)
        return st
    assert not state_after(5, False).lossy      # 5/21 = 0.24: not yet
    assert state_after(6, False).lossy          # 6/21 = 0.29 > 0.25: lossy
    assert state_after(5, True).lossy           # back to 5/21: kept (above 0.21)
    assert not state_after(4, True).lossy       # 4/21 = 0.19 <= 0.21: clear
    st = state_after(6, False)
    assert st.degraded and not st.flapping
    back = F.from_json(F.to_json({"b": st}), s)["b"]
    assert back.lossy and back.degraded   # survives a restart
