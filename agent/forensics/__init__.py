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
"""
from agent.forensics.evidence import BoxRef, EvidenceCollector, bundle_dir, read_summary
from agent.forensics.recorder import DumpResult, FlightRecorder, Record, Snapshot, write_pcap
from agent.forensics.summary import Analysis, Finding, analyze

__all__ = ["Analysis", "BoxRef", "DumpResult", "EvidenceCollector", "Finding", "FlightRecorder", "Record",
           "Snapshot", "analyze", "bundle_dir", "read_summary", "write_pcap"]
