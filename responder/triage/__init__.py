"""Triage: run an incident's probes concurrently, within budget, and decide on the facts."""
