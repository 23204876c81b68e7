"""Channels groups of the websocket stream and publishing to them from any process."""

from __future__ import annotations

import json
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from markets.models import Market

log = logging.getLogger(__name__)

CHANNELS = ("predictions", "candles")


def group_name(channel: str, market: Market) -> str:
    """e.g. predictions.kraken.ETH-USD (group names allow no colon)."""
    return f"{channel}.{market.exchange}.{market.base}-{market.quote}"


def publish(channel: str, market: Market, payloads: list[dict]) -> None:
    """Push payloads to the market's subscribers, encoded once for all of them.

    Called from the pipeline's signal receivers: a failing channel layer is
    logged, never raised into the stream, backfill or replay that sent the event.
    """
    layer = get_channel_layer()
    texts = [json.dumps(payload, separators=(",", ":")) for payload in payloads]
    if layer is None or not texts:
        return
    try:
        async_to_sync(_send)(layer, group_name(channel, market), texts)
    except Exception:
        log.exception("publishing %s of %s failed", channel, market)


async def _send(layer, group: str, texts: list[str]) -> None:
    for text in texts:
        await layer.group_send(group, {"type": "stream.push", "text": text})
