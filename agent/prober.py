"""The prober: the probes the cycle uses (sweep, in-container checks, the container state cache), for the
pipeline's cycles and for remediation's verification of one box (`reprobe`).

The wiring builds one and hands it to both, so remediation never reaches into the pipeline.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import probes
from agent.core.config import BoxConfig, Config
from agent.core.cycle import ContainerView, Verdict, box_targets, classify, with_container_state
from agent.core.events import BoxKind

log = logging.getLogger(__name__)

Sweep = Callable[..., list[probes.ProbeResult]]
Checks = Callable[[Sequence[str]], Mapping[str, Sequence[probes.ProbeResult]]]


class Prober:
    """Sweeps targets, runs checks alongside, reads container states; probes one box on demand.

    sweep(targets, timeout_s, interface, recorder): probes.sweep; checks(box names): their
    in-container check results (agent.checks.runner.CheckRunner), or None; container_states():
    box -> its container's state (agent.engines.watcher.ContainerStates), or None.
    timeout_s and interface are the config's [agent] timeout and interface.
    """

    def __init__(self, config: Config, *, sweep: Sweep = probes.sweep, clock: Callable[[], float] = time.time,
                 checks: Checks | None = None,
                 container_states: Callable[[], Mapping[str, ContainerView]] | None = None) -> None:
        self.timeout_s = config.agent.timeout_s
        self.interface = config.agent.interface
        self.sweep = sweep
        self.clock = clock
        self.checks = checks
        self.container_states = container_states
        self.boxes: dict[str, BoxConfig] = {b.name: b for b in config.boxes}

    def set_boxes(self, boxes: Sequence[BoxConfig]) -> None:
        """The box set reprobe knows (the pipeline's, swapped between cycles)."""
        self.boxes = {b.name: b for b in boxes}

    def start_checks(self, names: Sequence[str]) -> Callable[[], Mapping[str, Sequence[probes.ProbeResult]]]:
        """Run the boxes' in-container checks in a thread alongside the sweep; the returned call joins them.

        Each check has its own hard timeout (agent.checks.runner), so the join is bounded too.
        """
        checks = self.checks
        if checks is None:
            return dict
        found: dict[str, Any] = {}

        def run() -> None:
            try:
                found.update(checks(names))
            except Exception:  # the checks runner never raises; a bug in it must not stop cycles
                log.exception("cycle: in-container checks failed; boxes are judged on their probes alone")

        thread = threading.Thread(target=run, name="checks", daemon=True)
        thread.start()

        def join() -> Mapping[str, Sequence[probes.ProbeResult]]:
            thread.join()
            return found
        return join

    def read_container_states(self) -> Mapping[str, ContainerView]:
        """One read of the container state cache; {} without one or when it fails."""
        if self.container_states is None:
            return {}
        try:
            return self.container_states()
        except Exception:  # without states the boxes are judged on their probes alone
            log.exception("cycle: container states unavailable; judging on probes alone")
            return {}

    def reprobe(self, name: str) -> bool:
        """Probe box NAME now (remediation's verification); True when every probe answers and its container runs.

        A container box's Docker state counts as in a cycle: a still paused container answers
        ping and TCP handshakes, so the probes alone would call a failed action a recovery.
        KeyError for a box not in the set.
        """
        box = self.boxes[name]
        checks = self.start_checks([name])
        results = self.sweep(box_targets(box), self.timeout_s, self.interface, None)
        results = [*results, *checks().get(name, ())]
        if box.kind != BoxKind.CONTAINER or not box.container:
            return classify(results)[0]
        healthy, layer = classify(results)
        v = Verdict(name, healthy, layer, tuple(results), self.clock())
        return with_container_state(v, box.container, self.read_container_states().get(name),
                                    box.restart_stopped).healthy
