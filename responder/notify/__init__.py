"""Notifications: what to tell each sink (planners, over the sandboxed templates) and the
delivery that tells it once, in order, retrying what fails (see ``delivery``)."""
