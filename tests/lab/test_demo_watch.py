"""The demo's note on a fault: the time the agent really took to heal it, and no "up again" for a fault it missed."""
from __future__ import annotations

from lab.demo import FaultWatch


def feed(watch, states):
    notes = [(t, watch.observe(state, t)) for t, state in states]
    return [(t, n) for t, n in notes if n]


def test_healed_is_timed_from_the_fault_to_the_first_up_after_it():
    notes = feed(FaultWatch("vm2", "l4", 100.0), [(101, "up"), (102, "suspect"), (103, "frozen"), (104, "up")])
    assert notes == [(104, ">>> vm2 is up again after 4 s (the agent saw it 2 s after the fault)")]


def test_a_fault_the_agent_never_showed_is_not_called_healed():
    watch = FaultWatch("ctr1", "l4", 0.0)
    assert feed(watch, [(t, "up") for t in range(1, 61)]) == []
    assert watch.observe("up", 61) == ">>> ctr1: the agent did not see the l4 fault in 60 s; clearing it"


def test_a_box_that_stays_down_is_given_up_on_as_such():
    watch = FaultWatch("ctr2", "l2", 0.0)
    assert feed(watch, [(t, "frozen") for t in range(1, 61)]) == []
    assert watch.observe("frozen", 61) == ">>> ctr2 is still frozen after 60 s; clearing the fault"
