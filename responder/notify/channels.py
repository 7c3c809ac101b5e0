"""What delivery is configured with: the channels (a sink and its planner) and the policy
of sending (time limits, leases, backoff, circuit breaker)."""

from __future__ import annotations

from dataclasses import dataclass

from responder.notify.planners import Planner
from responder.ports import Sink


@dataclass(frozen=True)
class Channel:
    """A sink and the planner that writes its messages.

    ``per_process``: the sink is this process's own output (the console). What it was
    told is kept in memory, not in the store, with no lock and no idempotency record:
    another replica prints on its own console, and a line printed twice after a crash
    harms nobody. It costs the store nothing, which matters in an alert storm.
    """

    sink: Sink
    planner: Planner
    per_process: bool = False
    # the messages that say so (``Outbound.shared``) go to a thread several incidents
    # share: one status page incident per set of components (``SharedThreads``)
    shared: bool = False

    @property
    def name(self) -> str:
        return self.sink.name


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout_s: float = 10.0  # one send
    lease_s: float = 60.0  # the (incident, sink) lock and a message's claim, if its worker dies
    retry_base_s: float = 2.0
    retry_cap_s: float = 300.0
    give_up_s: float = 24 * 3600.0  # a message failing this long is recorded as failed
    lock_wait_s: float = 2.0  # another worker delivers: wait this long for it to finish
    busy_retry_s: float = 2.0  # ... then look again after this
    breaker_threshold: int = 5
    breaker_open_s: float = 30.0
