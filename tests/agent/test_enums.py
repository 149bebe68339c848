"""The StrEnums of states, box kinds, layers and outcomes: their values are the stored strings (a public contract)."""
from __future__ import annotations

import json

from agent.core.config import BOX_KINDS
from agent.core.events import LAYERS, NOT_JUDGED, STATES, BoxKind, Layer, State
from agent.storage import points as P
from probes import LAYERS as PROBE_LAYERS
from remediations.model import OUTCOMES, ActionRecord, RecordOutcome


def test_the_values_are_the_strings_stored_and_shown():
    assert STATES == ("up", "suspect", "frozen", "recovering", "stopped", "maintenance")
    assert [s.value for s in State] == list(STATES)
    assert LAYERS == ("none", "l2", "l3", "l4", "l7") and PROBE_LAYERS == ("l2", "l3", "l4", "l7")
    assert [la.value for la in Layer] == list(LAYERS)
    assert OUTCOMES == ("done", "refused", "held", "deferred", "dry_run", "reset")
    assert [o.value for o in RecordOutcome] == list(OUTCOMES)
    assert [k.value for k in BoxKind] == list(BOX_KINDS) == ["container", "vm"]
    assert NOT_JUDGED == {"stopped", "maintenance"}


def test_a_member_is_its_string_in_json_line_protocol_and_comparisons():
    assert json.dumps({State.FROZEN: [Layer.L2, BoxKind.VM]}) == '{"frozen": ["l2", "vm"]}'
    assert State.UP == "up" and "l7" == Layer.L7 and {"l2": 1}[Layer.L2] == 1 and f"{RecordOutcome.DRY_RUN}" == "dry_run"
    point = P.box_point("a", BoxKind.CONTAINER, None, 1, State.SUSPECT, Layer.L3, 1_800_000_000.0, None)
    assert point.to_line() == P.box_point("a", "container", None, 1, "suspect", "l3", 1_800_000_000.0, None).to_line()
    assert ActionRecord("a", "vm", "command", "auto", True, True, False, 1.0, "", 0.0).outcome == "done"
