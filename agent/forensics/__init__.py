"""Freeze forensics: packet flight recorder, evidence bundles, capture analysis and retention."""
from agent.forensics.evidence import BoxRef, EvidenceCollector, bundle_dir, read_summary
from agent.forensics.recorder import DumpResult, FlightRecorder, Record, Snapshot, write_pcap
from agent.forensics.summary import Analysis, Finding, analyze

__all__ = ["Analysis", "BoxRef", "DumpResult", "EvidenceCollector", "Finding", "FlightRecorder", "Record",
           "Snapshot", "analyze", "bundle_dir", "read_summary", "write_pcap"]
