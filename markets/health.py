"""/healthz component: every enabled market of an exchange with a live source has a running stream task."""

from core.health import register
from markets.lease import held, stream_key
from markets.sources import streamed_markets


@register("streams")
def check_streams() -> dict:
    """A stream retrying without network is running (state reconnecting); only a missing task fails."""
    markets = {}
    for market in streamed_markets():
        running = held(stream_key(market.name))
        markets[market.name] = {
            "running": running,
            "state": market.stream_state if running else "no stream task",
            "detail": market.stream_detail,
            "last_trade_at": market.last_trade_at.isoformat() if market.last_trade_at else None,
        }
    return {"ok": all(m["running"] for m in markets.values()), "markets": markets}
