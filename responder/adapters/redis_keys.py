"""Every Redis key the service uses, with its lifetime, in one place.

All keys of one deployment sit under one hash tag, ``{<prefix>}``: every multi-key script
and transaction then touches a single slot, so the same code runs on a Redis Cluster. The
data of an incident responder is small; one slot holds it easily.
"""

from __future__ import annotations

import hashlib

from responder.domain.incident import IncidentStatus, LookupKind

CONSUMER_GROUP = "workers"

# How long a resolved incident, its timeline and its PagerDuty links are kept.
RESOLVED_INCIDENT_TTL_S = 90 * 24 * 3600
# Idempotency records of side effects outlive any redelivery of the signal that caused them.
EFFECT_TTL_S = 30 * 24 * 3600
# PagerDuty links outlive the group link: an ack can come after the alerts resolved.
PAGERDUTY_INDEX_TTL_S = RESOLVED_INCIDENT_TTL_S


class RedisKeys:
    def __init__(self, prefix: str) -> None:
        self.base = "{" + prefix + "}"

    def signal(self, dedupe_key: str) -> str:
        """Hash: status, order, first_seen, last_seen, repeats. TTL: settings.signal_ttl_s,
        renewed on every sighting."""
        return f"{self.base}:signal:{dedupe_key}"

    @property
    def queue(self) -> str:
        """Stream of queued signals, consumer group ``workers``; capped by queue_maxlen."""
        return f"{self.base}:queue"

    @property
    def dead_letters(self) -> str:
        """Stream of entries that failed too often. Capped at 10,000 entries."""
        return f"{self.base}:dead-letters"

    def incident(self, incident_id: str) -> str:
        """String: the incident JSON. No TTL while active; RESOLVED_INCIDENT_TTL_S after."""
        return f"{self.base}:incident:{incident_id}"

    def timeline(self, incident_id: str) -> str:
        """List of timeline event JSON, in order. Same lifetime as the incident."""
        return f"{self.base}:incident:{incident_id}:timeline"

    def alerts(self, incident_id: str) -> str:
        """Hash: alert fingerprint → alert JSON. Same lifetime as the incident."""
        return f"{self.base}:incident:{incident_id}:alerts"

    @property
    def incident_prefix(self) -> str:
        return f"{self.base}:incident:"

    def processed(self, incident_id: str) -> str:
        """String: seq of the first timeline event not yet through the follow-up stages.
        Same lifetime as the incident."""
        return f"{self.base}:incident:{incident_id}:processed"

    def index(self, kind: LookupKind, key: str) -> str:
        """String: incident id. ``group`` lives while the incident is active; the PagerDuty
        links live PAGERDUTY_INDEX_TTL_S. Keys are hashed: group keys hold any characters."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return f"{self.base}:index:{kind}:{digest}"

    def effect(self, key: str) -> str:
        """Hash: state (applying, done), owner, lease (epoch ms), data (JSON): the
        idempotency record of one side effect. TTL EFFECT_TTL_S."""
        return f"{self.base}:effect:{key}"

    def delivery(self, incident_id: str, sink: str) -> str:
        """String (JSON DeliveryState): what a notification sink was told of an incident.
        TTL EFFECT_TTL_S."""
        return f"{self.base}:incident:{incident_id}:delivery:{sink}"

    @property
    def paused(self) -> str:
        """String (JSON: by, reason, at) while automation is paused. No TTL."""
        return f"{self.base}:control:paused"

    def cooldown(self, key: str) -> str:
        """String, expiring when the target's cooldown for the action ends."""
        return f"{self.base}:cooldown:{key}"

    @property
    def budget(self) -> str:
        """Sorted set of action tokens scored by epoch ms: the sliding-window budget."""
        return f"{self.base}:budget:actions"

    def lock(self, name: str) -> str:
        """String (holder's token), expiring after the lock TTL: the per-target lock."""
        return f"{self.base}:lock:{name}"

    @property
    def timers(self) -> str:
        """Sorted set of timer signals (JSON) scored by due epoch ms."""
        return f"{self.base}:timers"

    @property
    def incidents(self) -> str:
        """Sorted set of every incident id, scored by opened-at epoch ms."""
        return f"{self.base}:incidents"

    def incidents_with(self, status: IncidentStatus) -> str:
        """Sorted set of the ids with this status, scored by opened-at epoch ms."""
        return f"{self.base}:incidents:{status.value}"
