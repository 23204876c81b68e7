"""Channels groups of the websocket stream and publishing to them from any process."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from functools import cache

from channels.layers import get_channel_layer

from core import prometheus
from core.redis_client import OUTAGE, Outage, best_effort
from markets.models import Market

log = logging.getLogger(__name__)

CHANNELS = ("predictions", "candles")
SEND_TIMEOUT_S = 5.0


def group_name(channel: str, market: Market, horizon: int | None = None) -> str:
    """e.g. candles.kraken.ETH-USD, predictions.kraken.ETH-USD.h3 (group names allow no colon).

    Predictions have a group per horizon: a client of one horizon is sent only those.
    """
    name = f"{channel}.{market.exchange}.{market.base}-{market.quote}"
    return name if horizon is None else f"{name}.h{horizon}"


@cache
def _loop(pid: int) -> asyncio.AbstractEventLoop:
    """One event loop thread per process (per pid: safe across fork) for channel-layer sends.

    The layer keeps its Redis connections per event loop, so a long-lived loop
    saves a connection setup at every candle (async_to_sync would make a new loop).
    """
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="channel-layer-publisher", daemon=True).start()
    return loop


def publish(channel: str, market: Market, payloads: list[dict], horizon: int | None = None) -> None:
    """Push payloads to the market's subscribers (of that horizon, for predictions), encoded once for all of them.

    Called by the pipeline step: a failing channel layer is logged, never
    raised (subscribers catch up over REST; the step must not be retried for it);
    a Redis outage is logged once (see core.redis_client.best_effort).
    """
    layer = get_channel_layer()
    texts = [json.dumps(payload, separators=(",", ":")) for payload in payloads]
    if layer is None or not texts:
        return
    group = group_name(channel, market, horizon)

    def send() -> bool:
        sending = asyncio.run_coroutine_threadsafe(_send(layer, group, texts), _loop(os.getpid()))
        try:
            sending.result(SEND_TIMEOUT_S)
        except TimeoutError:
            sending.cancel()  # a hung Redis must not leave sends piling up on the loop
            raise
        return True

    try:
        sent = best_effort(f"publishing {channel} of {market}", send, _outage(layer, group))
    except Exception:
        log.exception("publishing %s of %s failed", channel, market)
        return
    if sent:
        prometheus.published(channel, payloads, time.time())


_hosts: dict[tuple[int, str], str] = {}  # (layer, group) -> the server that carries the group
_outages: dict[str, Outage] = {}


def _outage(layer, group: str) -> Outage:
    """The outage state of the Redis server that carries group: with the layer sharded over several
    (CHANNEL_LAYER_URLS), one shard down must not hold up the pushes of the groups on the others.
    One server: the process's (REDIS_URL's), one outage for its cache and its pushes."""
    if len(getattr(layer, "_kwargs", {}).get("hosts") or ()) < 2:
        return OUTAGE
    key = (id(layer), group)
    if key not in _hosts:  # asked of the layer of the publishing loop, as group_send picks it (once per group)
        _hosts[key] = asyncio.run_coroutine_threadsafe(_host(layer, group), _loop(os.getpid())).result(SEND_TIMEOUT_S)
    return _outages.setdefault(_hosts[key], Outage())


async def _host(layer, group: str) -> str:
    return repr(layer._get_shard(layer._get_group_channel_name(group)).host)


async def _send(layer, group: str, texts: list[str]) -> None:
    for text in texts:
        await layer.group_send(group, {"type": "stream.push", "group": group, "text": text})
