"""After the incident: the postmortem draft and the evidence bundle."""
