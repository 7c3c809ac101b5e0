"""Inbound payloads: lenient pydantic models of what senders post, turned into Signals."""
