"""Events the feature pipeline publishes to the rest of the system."""

from django.dispatch import Signal

# Sent once per batch of newly finalized candles, in window order, after they
# are committed. kwargs: market (Market), candles (list[Candle]).
candles_closed = Signal()

# Sent after a commit in which late trades changed finalized candles, in window
# order: the amended candles and the empty ones after them that now carry the
# new close. kwargs: market (Market), candles (list[Candle]).
candles_amended = Signal()
