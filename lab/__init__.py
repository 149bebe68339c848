"""The lab: a monitor namespace, a veth-parented Docker macvlan network, container and VM boxes, InfluxDB, faults."""
from lab.box import BOX_KINDS, LabBox
from lab.cleanup import cleanup_leftovers, remove_all, remove_run
from lab.errors import LabError, UnknownBoxError
from lab.faults import FAULT_KINDS
from lab.lab import DEFAULT_TCP_PORTS, Lab

__all__ = ["BOX_KINDS", "DEFAULT_TCP_PORTS", "FAULT_KINDS", "Lab", "LabBox", "LabError", "UnknownBoxError",
           "cleanup_leftovers", "remove_all", "remove_run"]
