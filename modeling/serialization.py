"""Safe artifact (de)serialization: skops with an explicit trusted-type list, sha256-checked.

Artifacts are never unpickled. skops refuses any type outside its defaults and
TRUSTED_TYPES; the sha256 stored next to the bytes is verified before skops
even parses them, so bytes changed after training are refused.
"""

from __future__ import annotations

import hashlib
import logging

log = logging.getLogger(__name__)

# HistGradientBoosting's tree nodes; trusted because the bytes must match the
# sha256 recorded when this process trained them.
TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


class ArtifactError(Exception):
    """An artifact cannot be loaded (tampered or unreadable); the message says why."""


def dump(payload: dict) -> tuple[bytes, str]:
    """Serialize payload; returns (bytes, sha256 hex)."""
    import skops.io as sio  # with scikit-learn: only processes that handle models pay for the import

    data = sio.dumps(payload)
    return data, hashlib.sha256(data).hexdigest()


def load(data: bytes, sha256: str, label: str = "artifact") -> dict:
    """Load bytes produced by dump after checking them against sha256."""
    data = bytes(data)
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        log.error("refusing %s: sha256 mismatch (recorded %s, actual %s)", label, sha256, actual)
        raise ArtifactError(f"{label}: sha256 mismatch (recorded {sha256[:12]}…, actual {actual[:12]}…), not loaded")
    import skops.io as sio

    try:
        payload = sio.loads(data, trusted=TRUSTED_TYPES)
    except Exception as exc:  # skops raises many types for bad or untrusted content
        log.error("refusing %s: %s", label, exc)
        raise ArtifactError(f"{label}: cannot be loaded safely: {exc}") from None
    if not isinstance(payload, dict) or "model" not in payload:
        raise ArtifactError(f"{label}: not a cryptopred model artifact")
    return payload
