"""The pure core: config model, cycle plan and verdicts, the freeze state machine and its events, correlation, MAC memory."""
