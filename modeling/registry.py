"""Model registry: every status change of a model (gate, admin) with its audit record.

What inference serves from it is inference.serving's business.
"""

from __future__ import annotations

import logging

from django.db import transaction
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


def next_version(market: Market, interval_s: int, horizon: int) -> int:
    current = ModelArtifact.objects.filter(market=market, interval_s=interval_s, horizon=horizon).aggregate(
        v=Max("version")
    )["v"]
    return (current or 0) + 1


def active_artifact(market: Market, interval_s: int, horizon: int) -> ModelArtifact | None:
    return ModelArtifact.objects.filter(
        market=market, interval_s=interval_s, horizon=horizon, status=Status.ACTIVE
    ).first()


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
    artifact = ModelArtifact.objects.select_for_update().get(pk=artifact.pk)
    if artifact.status == Status.ACTIVE:
        raise RegistryError(f"{artifact} is already active")
    load_forecaster(artifact)  # never activate bytes that would be refused at serving time
    current = active_artifact(artifact.market, artifact.interval_s, artifact.horizon)
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
    current = active_artifact(market, interval_s, horizon)
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
