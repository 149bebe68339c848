"""vobox-agent: stability monitoring and auto-remediation for VO-Box nodes."""

# The one place of the version: pyproject.toml reads it ([tool.setuptools.dynamic]), `--version` prints it
# without importlib.metadata (which costs a CLI start ~50 ms of CPU).
__version__ = "0.1.0"
