"""The triage probes: one adapter per evidence source."""
