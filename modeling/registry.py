"""Model registry: every status change of a model (gate, admin) with its audit record.

What inference serves from it is inference.serving's business.
"""

from __future__ import annotations

import logging

from django.db import connection, transaction
from django.db.models import Max

from markets.models import Market
from modeling import serialization
from modeling.forecast import Forecaster
from modeling.models import ModelArtifact, ModelEvent

log = logging.getLogger(__name__)
Status = ModelArtifact.Status


class RegistryError(Exception):
    """A status change is not allowed; the message says why."""


def load_forecaster(artifact: ModelArtifact) -> Forecaster:
    payload = serialization.load(artifact.artifact, artifact.sha256, label=f"model {artifact.pk} ({artifact})")
    return Forecaster.from_payload(payload)


def lock_series(market: Market, interval_s: int, horizon: int) -> None:
    """Serialize version numbers and status changes of one (market, interval, horizon) until the
    transaction ends: two trainings, or a training and the admin, never interleave there."""
    if not connection.in_atomic_block:
        raise RuntimeError("lock_series needs a transaction")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"model {market.pk} {interval_s} {horizon}"])


def next_version(market: Market, interval_s: int, horizon: int) -> int:
    """The next version number; the caller's transaction holds the series' lock until it creates the row."""
    lock_series(market, interval_s, horizon)
    current = ModelArtifact.objects.filter(market=market, interval_s=interval_s, horizon=horizon).aggregate(
        v=Max("version")
    )["v"]
    return (current or 0) + 1


@transaction.atomic
def create_artifact(market: Market, interval_s: int, horizon: int, **fields) -> ModelArtifact:
    """Store a new artifact with the series' next version (safe against concurrent creators)."""
    version = next_version(market, interval_s, horizon)
    return ModelArtifact.objects.create(
        market=market, interval_s=interval_s, horizon=horizon, version=version, **fields
    )


def active_artifact(market: Market, interval_s: int, horizon: int, for_update: bool = False) -> ModelArtifact | None:
    """The active artifact; for_update: locked, with the series, until the transaction ends."""
    artifacts = ModelArtifact.objects.filter(
        market=market, interval_s=interval_s, horizon=horizon, status=Status.ACTIVE
    )
    if for_update:
        lock_series(market, interval_s, horizon)
        artifacts = artifacts.select_for_update()
    return artifacts.first()


def set_status(artifact: ModelArtifact, status: str, action: str, reason: str = "", actor=None) -> None:
    """Change one artifact's status and record it in the audit log."""
    previous = artifact.status
    artifact.status = status
    artifact.reason = reason or artifact.reason
    artifact.save(update_fields=["status", "reason"])
    ModelEvent.objects.create(
        artifact=artifact, action=action, from_status=previous, to_status=status, actor=actor, reason=reason
    )


@transaction.atomic
def promote(artifact: ModelArtifact, reason: str, actor=None, action: str = "promote") -> None:
    """Make artifact the active model of its (market, interval, horizon); the previous one is retired."""
    current = active_artifact(artifact.market, artifact.interval_s, artifact.horizon, for_update=True)
    artifact = ModelArtifact.objects.select_for_update().get(pk=artifact.pk)
    if artifact.status == Status.ACTIVE:
        raise RegistryError(f"{artifact} is already active")
    load_forecaster(artifact)  # never activate bytes that would be refused at serving time
    if current is not None:
        set_status(current, Status.RETIRED, action, f"replaced by v{artifact.version}", actor)
    set_status(artifact, Status.ACTIVE, action, reason, actor)


@transaction.atomic
def retire(artifact: ModelArtifact, reason: str, actor=None) -> None:
    artifact = ModelArtifact.objects.select_for_update().get(pk=artifact.pk)
    if artifact.status == Status.RETIRED:
        raise RegistryError(f"{artifact} is already retired")
    set_status(artifact, Status.RETIRED, "retire", reason, actor)


@transaction.atomic
def rollback(market: Market, interval_s: int, horizon: int, actor=None) -> ModelArtifact:
    """Retire the active model and re-activate the one that was active before it."""
    current = active_artifact(market, interval_s, horizon, for_update=True)
    if current is None:
        raise RegistryError(f"no active model for {market} {interval_s}s +{horizon}")
    previous = (
        ModelArtifact.objects.filter(
            market=market,
            interval_s=interval_s,
            horizon=horizon,
            status=Status.RETIRED,
            events__to_status=Status.ACTIVE,
            version__lt=current.version,
        )
        .order_by("-version")
        .first()
    )
    if previous is None:
        raise RegistryError(f"{current} has no earlier active model to roll back to")
    set_status(current, Status.RETIRED, "rollback", f"rolled back to v{previous.version}", actor)
    load_forecaster(previous)
    set_status(previous, Status.ACTIVE, "rollback", f"rolled back from v{current.version}", actor)
    return previous
