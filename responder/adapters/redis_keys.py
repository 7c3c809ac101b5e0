"""Every Redis key the service uses, with its lifetime, in one place.

All keys of one deployment sit under one hash tag, ``{<prefix>}``: every multi-key script
and transaction then touches a single slot, so the same code runs on a Redis Cluster. The
data of an incident responder is small; one slot holds it easily.
"""

from __future__ import annotations

import hashlib

from responder.domain.incident import IncidentStatus, LookupKind

CONSUMER_GROUP = "workers"
# Ordering-record names remembered (a few thousand groups are a large estate).
_NAMES_KEPT = 10_000

# How long a resolved incident, its timeline and its PagerDuty links are kept, unless
# RESPONDER_INCIDENT_RETENTION_S says otherwise (its default is this).
RESOLVED_INCIDENT_TTL_S = 90 * 24 * 3600
# An idempotency record of a side effect, or a delivery state, lives as long as its
# incident (see ``ledger``). This is the lifetime of one whose key names no incident (or
# whose incident is gone): it outlives any redelivery of the signal that caused it.
EFFECT_TTL_S = 30 * 24 * 3600


class RedisKeys:
    def __init__(self, prefix: str) -> None:
        self.base = "{" + prefix + "}"
        self._orders: dict[str, str] = {}

    def signal(self, dedupe_key: str) -> str:
        """Hash: status, order, first_seen, last_seen, repeats. TTL: settings.signal_ttl_s,
        renewed on every sighting."""
        return f"{self.base}:signal:{dedupe_key}"

    @property
    def queue(self) -> str:
        """Stream of the signals not yet handled, consumer group ``workers``: an entry is
        deleted once acknowledged; intake refuses signals (503) while it holds
        queue_maxlen entries."""
        return f"{self.base}:queue"

    def order(self, order_key: str) -> str:
        """Hash: seq (the last sequence number intake gave a signal of this ordering key:
        an incident group, a PagerDuty incident) and done (the highest one applied, every
        lower one applied or skipped too). TTL: settings.signal_ttl_s, renewed on use."""
        name = self._orders.get(order_key)
        if name is None:  # intake names one per signal: a digest each cost ~0.5 µs
            if len(self._orders) >= _NAMES_KEPT:
                self._orders.clear()
            digest = hashlib.sha256(order_key.encode()).hexdigest()[:32]
            name = self._orders[order_key] = f"{self.base}:order:{digest}"
        return name

    def order_skipped(self, order_key: str) -> str:
        """Set of the sequence numbers of an ordering key that were dead-lettered before
        their turn: the done cursor steps over them. Same lifetime as ``order``."""
        return self.order(order_key) + ":skipped"

    @property
    def dead_letters(self) -> str:
        """Stream of entries that failed too often. Capped at 10,000 entries."""
        return f"{self.base}:dead-letters"

    def new_incidents(self, pack: str) -> str:
        """Sorted set of the ids of the incidents a pack's alerts opened, scored by epoch
        ms: the sliding window of its cap of new incidents a minute (incident_write.lua);
        expires a window after the last. Hashed: pack names hold any characters."""
        digest = hashlib.sha256(pack.encode()).hexdigest()[:32]
        return f"{self.base}:new-incidents:{digest}"

    def incident(self, incident_id: str) -> str:
        """String: the incident JSON. No TTL while active; the retention after
        (settings.incident_retention_s, by default RESOLVED_INCIDENT_TTL_S)."""
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

    def follow_up_lease(self, incident_id: str) -> str:
        """String (holder's token), expiring after the lease TTL: the replica following up
        the incident now (``Store.lease_follow_ups``); renewed while it works."""
        return f"{self.base}:incident:{incident_id}:following"

    def index(self, kind: LookupKind, key: str) -> str:
        """String: incident id. ``group`` lives while the incident is active (an alert
        storm's incident has one for each group it collects); the PagerDuty links, and
        ``settled`` (the group's incident resolved last), live as long as a resolved
        incident (the retention). Keys are hashed: group keys hold any
        characters."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return f"{self.base}:index:{kind}:{digest}"

    def ledger(self, incident_id: str) -> str:
        """Hash: the incident's action ledger, one field per record. Field ``<suffix>``:
        the idempotency record of the side effect ``<incident>:<suffix>``
        (``notify:slack:root``, ``<step>``, ``report:<seq>``...), one string:
        ``d<claimed>,<data>`` once done, ``a<claimed>,<lease>,<len(owner)>:<owner><data>``
        while applying (claimed: epoch ms of the first claim; lease: epoch ms; data: JSON;
        see ledger.lua). Field ``delivery:<sink>``: that sink's delivery state (JSON
        DeliveryState). No TTL while the incident is active; incident_write.lua gives it
        the incident's TTL when it resolves, and each write after that what the incident
        has left. The scripts derive this key from the incident's: ``<incident key>:ledger``.
        """
        return f"{self.base}:incident:{incident_id}:ledger"

    def effect(self, key: str) -> str:
        """Hash: the record of a side effect whose key names no incident (no colon): field
        ``effect``, encoded as in ``ledger``; TTL EFFECT_TTL_S. Also where versions before
        the ledger kept every effect record (a hash of its own: state, owner, lease,
        claimed, data; TTL EFFECT_TTL_S): one found there is moved into the ledger when its
        effect is next claimed, noted, finished or released."""
        return f"{self.base}:effect:{key}"

    def delivery(self, incident_id: str, sink: str) -> str:
        """String (JSON DeliveryState), TTL EFFECT_TTL_S: where versions before the ledger
        kept a sink's delivery state. Read when the ledger has none; the next save moves
        it into the ledger."""
        return f"{self.base}:incident:{incident_id}:delivery:{sink}"

    def shared_thread(self, key: str) -> str:
        """Hash: a thread several incidents share (``SharedThread``: the status page
        incident of a set of components, key ``statuspage:component:<digest>``): fields
        ``refs``, ``creating``, ``shown`` and ``m:<incident id>`` per attached incident
        (JSON of the message it wants shown). TTL RESOLVED_INCIDENT_TTL_S from its last
        write; deleted once the thread is closed with no incident attached."""
        return f"{self.base}:shared:{key}"

    def once(self, key: str) -> str:
        """String, expiring after the TTL its caller gives: a request already taken
        (``Store.remember_once``; a Slack interaction, by a digest of its signature, kept
        past the 5 minutes its timestamp is accepted). Hashed: keys hold any characters."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return f"{self.base}:once:{digest}"

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
    def follow_ups(self) -> str:
        """Sorted set of the ids of incidents with events not yet followed up, scored by
        when to check (epoch ms): the write of an event puts the incident there a grace
        ahead, the follow-up that reaches the timeline's end takes it out; one found
        still there when its time comes (its worker died, its entry's signal moved on) is
        followed up by a ``follow_up`` timer, and checked again a grace later."""
        return f"{self.base}:follow-ups"

    @property
    def epoch(self) -> str:
        """Hash: run_id (of the Redis server the service last found behind its address),
        since (epoch ms: when it first found that one). No TTL. A different server (a
        restart, a failover) may have lost the last writes: records are trusted complete
        only from ``since`` on (``Store.records_since``)."""
        return f"{self.base}:epoch"

    @property
    def incidents(self) -> str:
        """Sorted set of every incident id, scored by opened-at epoch ms."""
        return f"{self.base}:incidents"

    def incidents_with(self, status: IncidentStatus) -> str:
        """Sorted set of the ids with this status, scored by opened-at epoch ms."""
        return f"{self.base}:incidents:{status.value}"
