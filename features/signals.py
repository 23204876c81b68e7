"""Events the features app publishes."""

from django.dispatch import Signal

# Sent after feature rows for newly closed windows are committed, in window order.
# kwargs: market (Market), rows (list[FeatureRow]).
features_ready = Signal()
