"""/healthz component: every enabled market of an exchange with a live source has a running stream task."""

from core.health import register
from core.lease import holder
from markets.models import Market
from markets.names import stream_key
from markets.streams.sources import streamed_markets


def book_state(market: Market) -> dict:
    """The market's live book as last recorded by its stream (see markets.streams.livebook)."""
    return {
        "depth": market.book_depth,
        "updated_at": market.book_updated_at.isoformat() if market.book_updated_at else None,
        "checksum_failures": market.book_checksum_failures,
        "resyncs": market.book_resyncs,
        "receive_stamped": market.book_receive_stamped,
    }


@register("streams")
def check_streams() -> dict:
    """A stream retrying without network is running (state reconnecting); only a missing task fails.

    The book's state is reported, never judged: an exchange without a book for
    the pair, or a book that is being fetched again, leaves the trades healthy.
    """
    markets = {}
    for market in streamed_markets():
        worker = holder(stream_key(market.name))
        running = worker is not None
        markets[market.name] = {
            "running": running,
            "worker": worker,  # "host pid" of the process streaming it
            "state": market.stream_state if running else "no stream task",
            "detail": market.stream_detail,
            "last_trade_at": market.last_trade_at.isoformat() if market.last_trade_at else None,
            "book": book_state(market),
        }
    body = {"ok": all(m["running"] for m in markets.values()), "markets": markets}
    not_live = [name for name, m in markets.items() if m["running"] and m["state"] != Market.StreamState.LIVE]
    if not_live:  # running but not receiving (offline, backfilling): serving, on old data; /healthz says degraded
        body["degraded"] = f"not live: {', '.join(not_live)}"
    return body
