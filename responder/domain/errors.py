"""Errors that cross layers with a meaning of their own."""


class StoreUnavailableError(Exception):
    """The store (Redis) cannot be reached: the caller should retry later, nothing was lost."""


class RetryLaterError(Exception):
    """Work that cannot be done yet (another worker holds it, a lock is taken): the signal
    stays pending and is handled again after the visibility timeout."""
