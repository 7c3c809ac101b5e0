"""Templates: one sandboxed jinja2 environment for everything the service renders."""
