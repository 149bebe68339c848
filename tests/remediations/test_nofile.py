"""remediations.httpserver.raise_nofile: the soft RLIMIT_NOFILE is raised as far as a server's bound needs, never lowered."""
from __future__ import annotations

import resource
import subprocess
import sys

SCRIPT = """
import resource
from remediations.httpserver import raise_nofile
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
got = raise_nofile(640 + 256)
now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
assert got == now, (got, now)
print(now, hard)
kept = raise_nofile(10)          # already enough: never lowered
assert kept == now and resource.getrlimit(resource.RLIMIT_NOFILE)[0] == now
"""


def test_the_soft_limit_is_raised_for_the_bound_and_never_lowered():
    # in a child: the test run's own limit stays as it was
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True)
    now, hard = (int(x) for x in out.stdout.split())
    hard_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard == hard_limit
    assert now >= min(640 + 256, hard if hard != resource.RLIM_INFINITY else 10**9), out.stdout
