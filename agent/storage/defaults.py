"""The storage's defaults, which the [influxdb] keys that tune it read (one place); imports nothing."""
from __future__ import annotations

MIB = 2**20                          # bytes per MiB (IEC 80000-13): sizes in the config are MiB (`*_mib`)
DEFAULT_QUEUE_MAX_POINTS = 200_000   # queue_max_points: points held in memory between the cycle and the writer
DEFAULT_BATCH_POINTS = 5000          # batch_points: points per HTTP write request
DEFAULT_SPOOL_MAX_BYTES = 100 * MIB  # spool_max_mib: the on-disk spool bound
DEFAULT_RETRY_MIN_S = 1.0            # retry_min: first wait after a failed write
DEFAULT_RETRY_MAX_S = 30.0           # retry_max: longest wait between two write attempts
