"""Artifacts stored before the current payload format get its fields once, so loading needs no defaults.

What the loaders assumed for a missing field is written into the payload: no
shrinkage, the close as target, the trade volatility for the band, and for each
direction component the logistic regression on the forecast's features (a
component without a source served its base rate). A payload that fails its
sha256 or cannot be read is left as it is: loading refuses it either way.
"""

from django.db import migrations

VOLATILITY_FEATURES = ["vol_10", "vol_60"]


def upgrade(payload: dict) -> bool:
    """Fill the fields older payloads lack, in place; True if anything was added."""
    defaults = {"shrink": 1.0, "target": "close", "volatility": list(VOLATILITY_FEATURES)}
    added = {key: value for key, value in defaults.items() if key not in payload}
    payload.update(added)
    direction = payload.get("direction")
    for name in ("up", "move") if isinstance(direction, dict) else ():
        component = direction.get(name)
        if not isinstance(component, dict):
            continue
        defaults = {"source": "base rate", "name": "logistic", "features": list(direction.get("features", []))}
        for key, value in defaults.items():
            if key not in component:
                component[key] = value
                added[f"{name}.{key}"] = value
    return bool(added)


def forwards(apps, schema_editor):
    from modeling import serialization

    ModelArtifact = apps.get_model("modeling", "ModelArtifact")
    for artifact in ModelArtifact.objects.only("pk", "artifact", "sha256").iterator(chunk_size=20):
        try:
            payload = serialization.load(artifact.artifact, artifact.sha256, label=f"model {artifact.pk}")
        except serialization.ArtifactError:
            continue
        if upgrade(payload):
            artifact.artifact, artifact.sha256 = serialization.dump(payload)
            artifact.save(update_fields=["artifact", "sha256"])


class Migration(migrations.Migration):
    dependencies = [("modeling", "0003_modelartifact_direction_model")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
