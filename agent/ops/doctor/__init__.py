"""Pre-flight checks for a site, one module per topic: privileges, InfluxDB, the webhook's TLS files, Docker, boxes,
the macvlan host trap.

Every check returns `CheckResult`s (data, never an exception for an expected
failure) and takes its dependencies as arguments, so each failure can be
produced on purpose in a test: a socket opener, a Docker client factory, an
HTTP session, a route/link lookup. checks.py holds the registry and the driver.
"""
from agent.ops.doctor.boxes import check_box, container_boxes
from agent.ops.doctor.checks import CHECKS, Context, run_checks
from agent.ops.doctor.engine import MAC_ON_CONNECT_API, DockerInfo, check_docker, check_mac_on_connect, derived_mac
from agent.ops.doctor.influx import check_influx
from agent.ops.doctor.macvlan import (
                                      SHIM_NAME,
                                      IpToolMissing,
                                      Route,
                                      check_macvlan_trap,
                                      free_address,
                                      link_exists,
                                      route_to,
                                      shim_commands,
)
from agent.ops.doctor.privileges import SETCAP_FIX, check_raw_socket
from agent.ops.doctor.results import CheckResult, exit_code, format_results, results_data
from agent.ops.doctor.webhook import check_webhook

__all__ = [
    "CHECKS", "MAC_ON_CONNECT_API", "SETCAP_FIX", "SHIM_NAME", "CheckResult", "Context", "DockerInfo",
    "IpToolMissing", "Route", "check_box", "check_docker", "check_influx", "check_mac_on_connect",
    "check_macvlan_trap", "check_raw_socket", "check_webhook", "container_boxes", "derived_mac", "exit_code",
    "format_results", "free_address", "link_exists", "results_data", "route_to", "run_checks", "shim_commands",
]
