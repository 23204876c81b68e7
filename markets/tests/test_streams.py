import os
import socket
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from core.lease import Lease, held
from core.redis_client import get_redis
from markets.models import Market, Trade
from markets.names import ensure_default_markets, get_or_create_market, stream_key
from markets.streams.health import check_streams
from markets.streams.sources.kraken import KrakenSource
from markets.tasks import purge_trades
from markets.trades.candles import Tick
from markets.trades.file import parse_row
from markets.trades.ingest import Ingestor
from pipeline.tasks import ensure_streams, run_stream
from testsupport.data import KRAKEN_BTCUSDT, read_rows
from testsupport.fake_kraken import FakeKraken

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_lease_has_one_holder():
    first, second = Lease("cryptopred:test:lease", 5), Lease("cryptopred:test:lease", 5)
    assert first.acquire() and not second.acquire()
    assert first.renew() and not second.renew()
    second.release()  # not the holder: no effect
    assert held("cryptopred:test:lease")
    first.release()
    assert not held("cryptopred:test:lease") and second.acquire()
    second.release()


def test_lease_survives_a_busy_holder_and_notices_a_loss():
    # A TTL that a thread starved on a machine at load 8 still renews in time.
    lease, renewals = Lease("cryptopred:test:lease", 2.0), []
    renew = lease.renew
    lease.renew = lambda: renewals.append(renew()) or renewals[-1]
    assert lease.acquire()
    lease.keep_alive()
    # The holder does not call renew(): the lease's own thread does, past the first TTL (a renewal each third).
    wait_for(lambda: len(renewals) >= 4 or lease.lost.is_set(), timeout=30)
    assert all(renewals) and held("cryptopred:test:lease") and not lease.lost.is_set()
    get_redis().set("cryptopred:test:lease", "someone else")
    wait_for(lease.lost.is_set, timeout=2)
    lease.release()  # not ours any more: left alone
    assert get_redis().get("cryptopred:test:lease") == b"someone else"
    get_redis().delete("cryptopred:test:lease")


def test_streams_run_on_a_real_worker_and_are_revived(celery_worker_app, settings, monkeypatch):
    rows = read_rows(KRAKEN_BTCUSDT)[:600]
    with FakeKraken(rows, published=500) as fake:
        settings.KRAKEN_WS_URL, settings.KRAKEN_REST_URL = fake.ws_url, fake.rest_url
        settings.BACKFILL_HOURS = 24 * 4
        settings.STREAM_LEASE_S = 3.0
        settings.STREAMS_QUEUE = "default"  # the suite's worker consumes this queue
        market = get_or_create_market("kraken:BTC-USDT")
        assert check_streams()["ok"]  # nothing enabled, nothing required
        Market.objects.filter(pk=market.pk).update(enabled=True)
        health = check_streams()
        assert not health["ok"] and health["markets"]["kraken:BTC-USDT"]["state"] == "no stream task"

        assert ensure_streams() == ["kraken:BTC-USDT"]
        wait_for(lambda: Trade.objects.count() == len(rows))
        wait_for(lambda: Market.objects.get(pk=market.pk).stream_state == Market.StreamState.LIVE)
        assert ensure_streams() == []  # the lease is held: no second stream
        assert run_stream(market.pk) == "already streaming"
        health = check_streams()
        assert health["ok"] and health["markets"]["kraken:BTC-USDT"]["state"] == Market.StreamState.LIVE
        assert health["markets"]["kraken:BTC-USDT"]["worker"] == f"{socket.gethostname()} {os.getpid()}"  # in-process

        # Kill the stream task: it dies on its next frame and, like a killed worker, leaves its lease to expire.
        killed, kept = threading.Event(), []
        parse, release = KrakenSource.parse, Lease.release

        def die_once(source, message):
            if not killed.is_set():
                killed.set()
                raise RuntimeError("stream task killed by the test")
            return parse(source, message)

        def release_unless_killed(lease):
            if killed.is_set() and not kept:
                lease.stop_renewing()
                kept.append(lease)  # the dead task's lease: left to expire
                return
            release(lease)

        monkeypatch.setattr(KrakenSource, "parse", die_once)
        monkeypatch.setattr(Lease, "release", release_unless_killed)
        connections, killed_at = fake.connections, timezone.now()
        wait_for(lambda: kept)
        wait_for(lambda: not held(stream_key(market.name)))  # expired within STREAM_LEASE_S
        health = check_streams()
        assert not health["ok"] and health["markets"]["kraken:BTC-USDT"]["state"] == "no stream task"
        # The beat task revives it: a new task, a new connection, live again, nothing lost or stored twice.
        assert ensure_streams() == ["kraken:BTC-USDT"]
        wait_for(lambda: fake.connections == connections + 1 and held(stream_key(market.name)))
        wait_for(lambda: Market.objects.filter(pk=market.pk, stream_updated_at__gt=killed_at, stream_state="live"))
        assert check_streams()["ok"] and Trade.objects.count() == len(rows)

        # Disabling stops the stream within a lease period; the lease goes with it.
        Market.objects.filter(pk=market.pk).update(enabled=False)
        wait_for(lambda: not held(stream_key(market.name)))
        market.refresh_from_db()
        assert market.stream_state == Market.StreamState.STOPPED


def test_markets_without_a_live_source_get_no_stream(settings):
    """A replay-fed market (no live source for its exchange) is neither started nor required by /healthz."""
    settings.STREAMS_QUEUE = "nobody-consumes-this"
    get_or_create_market("gemini:ETH-USD")
    Market.objects.update(enabled=True)
    assert ensure_streams() == []
    health = check_streams()
    assert health["ok"] and health["markets"] == {}
    get_or_create_market("kraken:ETH-USD")
    Market.objects.update(enabled=True)
    assert ensure_streams() == ["kraken:ETH-USD"]
    assert not check_streams()["ok"]  # queued, but no worker runs it


def test_healthz_reports_reconnecting_stream_as_healthy(settings):
    """No network: the stream task is alive and retrying, /healthz says so without failing on it."""
    market = get_or_create_market("kraken:ETH-USD")
    Market.objects.filter(pk=market.pk).update(
        enabled=True, stream_state=Market.StreamState.RECONNECTING, stream_detail="OSError: unreachable"
    )
    lease = Lease(stream_key(market.name), 5)
    assert lease.acquire()
    try:
        body = Client().get("/healthz").json()
    finally:
        lease.release()
    streams = body["components"]["streams"]
    assert streams["ok"] and streams["markets"]["kraken:ETH-USD"]["state"] == "reconnecting"
    assert "streams" not in body.get("failing", [])


def test_default_markets_created_once():
    created = ensure_default_markets(["kraken:ETH-USD", "kraken:BTC-USD"])
    assert [m.name for m in created] == ["kraken:ETH-USD", "kraken:BTC-USD"]
    assert all(m.enabled for m in created)
    Market.objects.filter(base="BTC").update(enabled=False)
    assert ensure_default_markets(["kraken:ETH-USD", "kraken:BTC-USD"]) == []
    assert not Market.objects.get(base="BTC").enabled


def test_purge_keeps_recent_trades_and_candles(settings):
    market = get_or_create_market("kraken:BTC-USDT")
    old = [parse_row(list(r.values()), None)[0] for r in read_rows(KRAKEN_BTCUSDT)[:300]]
    recent = Tick(1, datetime.now(UTC), Decimal(1), Decimal(1), "buy")
    Ingestor(market).ingest([*old, recent], close_until=old[-1].ts.timestamp())
    candles = market.candles.count()
    settings.TRADE_RETENTION_DAYS = 1
    assert purge_trades() == len(old)
    assert list(Trade.objects.values_list("trade_id", flat=True)) == [1]
    assert market.candles.count() == candles > 0


def test_live_sources_drop_trades_too_far_out_of_time_order(caplog):
    """What a replay refuses (see test_replay) a stream drops, logs and deletes again; it goes on."""
    market = get_or_create_market("kraken:BTC-USDT")
    ticks = [parse_row(list(r.values()), None)[0] for r in read_rows(KRAKEN_BTCUSDT)[:400]]
    far_past = Tick(1, datetime(1999, 1, 1, tzinfo=UTC), Decimal(1), Decimal(1), "buy")
    future = Tick(2, datetime(2099, 1, 1, tzinfo=UTC), Decimal(1), Decimal(1), "sell")
    ingestor = Ingestor(market)
    # The future trade comes last, as a backfill page's clock: windows must not close on it.
    ingestor.ingest([*ticks[:150], far_past, *ticks[150:300], future], close_until=future.ts.timestamp())
    ingestor.ingest(ticks[300:], close_until=ticks[-1].ts.timestamp())  # the stream was not poisoned
    ingestor.flush()
    assert (ingestor.stats.stored, ingestor.stats.refused) == (400, 2)
    assert sorted(Trade.objects.values_list("trade_id", flat=True)) == sorted(t.trade_id for t in ticks)
    starts = market.candles.order_by("start").values_list("start", flat=True)
    assert starts[0] == window(ticks[0]) and starts.last() == window(ticks[-1])
    assert market.candles.count() == (window(ticks[-1]) - window(ticks[0])).total_seconds() // 10 + 1
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert "trade at 1999-01-01T00:00:00Z is older than" in refused[0]
    assert "trade at 2099-01-01T00:00:00Z is in the future" in refused[1]


def window(tick: Tick) -> datetime:
    return datetime.fromtimestamp(int(tick.ts.timestamp()) // 10 * 10, UTC)
