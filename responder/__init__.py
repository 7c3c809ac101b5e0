"""responder: the automated first responder for production alerts."""

__version__ = "0.1.0"
