"""Errors that cross layers with a meaning of their own."""


class StoreUnavailableError(Exception):
    """The store (Redis) cannot be reached: the caller should retry later, nothing was lost."""


class RetryLaterError(Exception):
    """Work that cannot be done yet (another worker holds it, a lock is taken): the signal
    stays pending and is handled again after the visibility timeout."""


class QueueFullError(Exception):
    """The work queue holds as many unprocessed signals as it may: the sender should retry
    later (a 503); nothing of this request was recorded."""


class UnconfirmedWriteError(StoreUnavailableError):
    """The store took the write but could not confirm it as durable as configured
    (``RESPONDER_INTAKE_DURABILITY``): the sender should retry later; its retry is a
    repeat, confirmed in turn."""
