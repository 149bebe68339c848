"""Freeze forensics: packet flight recorder, evidence bundles, capture analysis and retention.

Wiring (the runner):
  recorder = FlightRecorder({box.name: box.addresses() for box in cfg.boxes}, cycles=fail_cycles + 2)
  evidence = EvidenceCollector(cfg.agent.state_dir, recorder, docker_client=make_docker,  # a client or a factory
                               interface=cfg.agent.interface)
  each cycle:   results = probes.sweep(targets, timeout_s, interface, recorder=recorder.record)
                recorder.end_cycle()
  freeze event (detected):  path = evidence.freeze_opened(BoxRef.from_config(box, site), start_s, layer,
                                                          box_results, known_macs=macwatch.last(box.name))
                            -> write `path` into the freeze point's `evidence` field
  freeze event (closed):    evidence.freeze_closed(BoxRef.from_config(box, site), start_s, end_s, box_results, layer)
  shutdown:                 evidence.close()

The names below are loaded when first used (PEP 562): `evidence` listing bundles does not
import the collectors and Docker.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.forensics.evidence import (
        BoxRef,
        EvidenceCollector,
        bundle_dir,
        read_summary,
    )
    from agent.forensics.recorder import (
        DumpResult,
        FlightRecorder,
        Record,
        Snapshot,
        write_pcap,
    )
    from agent.forensics.summary import Analysis, Finding, analyze

_HOME = {name: f"agent.forensics.{module}" for module, names in {
    "evidence": ("BoxRef", "EvidenceCollector", "bundle_dir", "read_summary"),
    "recorder": ("DumpResult", "FlightRecorder", "Record", "Snapshot", "write_pcap"),
    "summary": ("Analysis", "Finding", "analyze"),
}.items() for name in names}

__all__ = ["Analysis", "BoxRef", "DumpResult", "EvidenceCollector", "Finding", "FlightRecorder", "Record",
           "Snapshot", "analyze", "bundle_dir", "read_summary", "write_pcap"]


def __getattr__(name: str) -> Any:
    """Load an exported name from its submodule on first use (then it is a plain module attribute)."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
