"""Celery tasks: one long-running stream (with its pipeline step) per enabled market, and its revival."""

from __future__ import annotations

import logging
import threading
import time
import zlib

from celery import current_app, shared_task
from celery.signals import worker_shutting_down
from django.conf import settings
from django.db import connections

from core.lease import Lease, held
from markets.models import Market
from markets.names import stream_key
from markets.streams.runner import set_state
from markets.streams.sources import streamed_markets
from markets.streams.sources.base import SubscriptionRejected
from pipeline.entry import stream_runner

log = logging.getLogger(__name__)
SHUTDOWN = threading.Event()
PROBE_S = 1.0  # how long ensure_streams waits for the workers to name the queues they consume


@worker_shutting_down.connect
def _stop_streams(**kwargs) -> None:
    # Streams never finish on their own: let them stop so the worker can exit.
    SHUTDOWN.set()


@shared_task(acks_late=False, ignore_result=True)
def run_stream(market_id: int) -> str:
    """Stream one enabled market until it is disabled, the worker stops or the lease is lost."""
    market = Market.objects.filter(pk=market_id, enabled=True).first()
    if market is None:
        return "not enabled"
    lease = Lease(stream_key(market.name), settings.STREAM_LEASE_S)
    if not lease.acquire():
        return "already streaming"
    lease.keep_alive()
    checked = time.monotonic()

    def keep_going() -> bool:
        nonlocal checked
        if SHUTDOWN.is_set():
            return False
        if lease.lost.is_set():
            log.warning("%s: stream lease lost; stopping", market)
            return False
        if time.monotonic() - checked >= settings.STREAM_LEASE_S / 3:
            checked = time.monotonic()
            return Market.objects.filter(pk=market_id, enabled=True).exists()
        return True

    step = None
    try:
        runner, step = stream_runner(market, keep_going)
        runner.run()
    except (SubscriptionRejected, ValueError) as exc:  # rejected symbol, or an exchange without a source
        set_state(market, Market.StreamState.ERROR, str(exc))
        log.error("%s: %s", market, exc)
        return str(exc)
    finally:
        if step is not None:
            step.stop()
        lease.release()
        connections.close_all()
    return "stopped"


@shared_task(ignore_result=True)
def ensure_streams() -> list[str]:
    """Beat task: start the stream of every enabled market that has no live lease."""
    started = []
    live: list[str] | None = None  # asked once, and only when a stream is to start
    for market in streamed_markets():
        if not held(stream_key(market.name)):
            if live is None:
                live = live_queues(stream_queues())
            run_stream.apply_async((market.pk,), queue=stream_queue(market.name, stream_queues(), live), expires=30)
            started.append(market.name)
    if started:
        log.info("starting streams: %s", ", ".join(started))
    return started


def stream_queues() -> tuple[str, ...]:
    return settings.STREAM_QUEUES or (settings.STREAMS_QUEUE,)


def home_queue(name: str, queues: tuple[str, ...] | list[str]) -> str:
    """The queue a market's name hashes to: the same in every process (unlike hash())."""
    return queues[zlib.crc32(name.encode()) % len(queues)]


def stream_queue(name: str, queues: tuple[str, ...], live: list[str]) -> str:
    """The market's home queue while a worker consumes it, else a live one (by the same hash): its lease
    expired with the worker that held it, and it moves to a worker that is there."""
    home = home_queue(name, queues)
    return home if home in live or not live else home_queue(name, live)


def live_queues(queues: tuple[str, ...]) -> list[str]:
    """The queues among these that a worker consumes now (asked over Celery's control channel); one queue
    alone is not asked about, and when no worker answers, every queue counts (the tasks wait there)."""
    if len(queues) == 1:
        return list(queues)
    replies = current_app.control.inspect(timeout=PROBE_S).active_queues() or {}
    consumed = {queue["name"] for consumer in replies.values() for queue in consumer}
    return [queue for queue in queues if queue in consumed] or list(queues)
