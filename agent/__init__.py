"""vobox-agent: stability monitoring and auto-remediation for VO-Box nodes."""
