"""Errors that cross layers with a meaning of their own."""


class StoreUnavailableError(Exception):
    """The store (Redis) cannot be reached: the caller should retry later, nothing was lost."""
