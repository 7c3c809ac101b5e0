"""Mitigation: the runbook's pre-approved actions, guarded, exactly once, verified, reverted."""
