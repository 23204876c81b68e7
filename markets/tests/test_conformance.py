"""Every message shape the exchanges document (and the captured frames) through our parsers.

Kraken Spot WebSocket v2 and Coinbase Advanced Trade WebSocket. The shapes
follow the exchanges' documentation pages (which fields a message has, which
are optional, how values are written); values come from the bundled captured
frames in data/sample/messages where those exist.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from markets.bookingest import BookIngestor
from markets.models import Market
from markets.services import get_or_create_market
from markets.sources.base import BookMessage
from markets.sources.kraken import KrakenSource
from markets.tests.helpers import SAMPLE

MESSAGES = SAMPLE / "messages"
VECTOR = MESSAGES / "kraken_ws_v2_book_snapshot_checksum_vector.json"


def kraken(symbol: str = "BTC/USD") -> KrakenSource:
    return KrakenSource(Market(exchange="kraken", base=symbol.split("/")[0], quote=symbol.split("/")[1], symbol=symbol))


def documented_snapshot() -> dict:
    """The real checksum vector as the book page documents a snapshot: symbol, bids, asks, checksum; no timestamp."""
    frame = json.loads(VECTOR.read_text(), parse_float=Decimal)
    del frame["data"][0]["timestamp"]
    return frame


# --- Kraken v2: book -----------------------------------------------------------------------
def test_kraken_book_snapshot_without_timestamp_is_applied_at_its_receive_time(db):
    source = kraken()
    message = source.parse(documented_snapshot())
    assert isinstance(message, BookMessage) and message.snapshot and message.ts is None
    assert message.checksum == 3310070434 and message.frame == "book snapshot of BTC/USD"
    source.precision = (1, 8)
    book = BookIngestor(get_or_create_market("kraken:BTC-USD"), 10, source.book_checksum)
    received = datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)
    book.apply(message, 0.0, received)
    assert book.valid and book.stats.checksum_failures == 0
    assert book.stats.receive_stamped == 1 and book.last_ts == received
    assert book.windows.start == int(received.timestamp())
