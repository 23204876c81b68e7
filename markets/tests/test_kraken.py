import csv
import io
import math
import time

import pytest
from django.core.management import CommandError, call_command

from markets.models import Market, Trade
from markets.names import get_or_create_market
from markets.streams.runner import StreamRunner
from markets.streams.sources.base import MalformedFrame, SubscriptionRejected, load_frame
from markets.streams.sources.kraken import KrakenError, KrakenSource, rest_ticks
from testsupport.data import KRAKEN_BTCUSDT, SAMPLE, read_rows, reference_candles
from testsupport.fake_kraken import FakeKraken, iso
from testsupport.feed import run_until

pytestmark = pytest.mark.django_db(transaction=True)
ROWS = read_rows(KRAKEN_BTCUSDT)[:1800]


@pytest.fixture
def fake(settings):
    with FakeKraken(ROWS, published=1200) as server:
        settings.KRAKEN_WS_URL = server.ws_url
        settings.KRAKEN_REST_URL = server.rest_url
        settings.STREAM_BACKOFF_BASE_S = 0.05
        settings.STREAM_BACKOFF_MAX_S = 0.2
        settings.BACKFILL_HOURS = 24 * 4  # the first start backfills everything published
        yield server


def test_disconnects_gaps_and_snapshot_overlap_lose_and_duplicate_nothing(fake):
    """Backfill on first start, then cut connections mid-stream while the exchange trades on."""
    fake.drop_after = 4  # 80 live trades per connection, then an abrupt disconnect
    fake.publish_while_down = 120  # more than the 50-trade snapshot: only REST has them
    fake.rate_limited = 1
    fake.garbage = ["not json", '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USDT"}]}']
    market = get_or_create_market("kraken:BTC-USDT")
    runner = StreamRunner(market)
    run_until(runner, lambda: Trade.objects.filter(market=market).count() >= len(ROWS))

    stored = list(Trade.objects.filter(market=market).order_by("trade_id").values_list("trade_id", flat=True))
    assert stored == [int(r["trade_id"]) for r in ROWS]  # zero lost, zero duplicated
    assert fake.connections >= 3 and runner.connects >= 3
    assert runner.malformed == 2
    market.refresh_from_db()
    assert market.stream_state == Market.StreamState.STOPPED
    # Candles from backfill, live trades and late gap fills equal the plain computation.
    out = io.StringIO()
    call_command("export_candles", "--market", "kraken:BTC-USDT", stdout=out)
    shifted = [{**r, "ts": r["ts"].isoformat()} for r in fake.rows]
    assert list(csv.reader(io.StringIO(out.getvalue())))[1:] == reference_candles(shifted, 10)


# Trades a trades file would be refused for (see test_replay): the database could not hold them.
OUT_OF_RANGE = [
    '"price":1e400,"qty":0.1,"trade_id":1',
    '"price":"NaN","qty":0.1,"trade_id":1',
    '"price":100.5,"qty":1e18,"trade_id":1',
    '"price":100.5,"qty":0.1,"trade_id":18446744073709551616',
    f'"price":{"9" * 100_000}.5,"qty":0.1,"trade_id":1',
    '"price":100.5,"qty":0.1,"trade_id":1.5',  # no id: int() would make it 1
    '"price":100.5,"qty":0.1,"trade_id":true',
]


def test_out_of_range_live_trades_are_malformed_frames(fake, caplog):
    """Each frame is skipped, counted and logged in one short line; the stream and its good trades go on."""
    fake.published = len(ROWS) - 200
    stamp = iso(fake.rows[-1]["ts"])
    fake.garbage = [
        f'{{"channel":"trade","type":"update","data":[{{"symbol":"BTC/USDT","side":"buy",{fields},'
        f'"ord_type":"limit","timestamp":"{stamp}"}}]}}'
        for fields in OUT_OF_RANGE
    ]
    market = get_or_create_market("kraken:BTC-USDT")
    runner = StreamRunner(market)
    # The gap fill can store every trade before the frames sent meanwhile are read: wait for both.
    run_until(
        runner,
        lambda: runner.malformed >= len(OUT_OF_RANGE) and Trade.objects.filter(market=market).count() >= len(ROWS),
    )

    stored = list(Trade.objects.filter(market=market).order_by("trade_id").values_list("trade_id", flat=True))
    assert stored == [int(r["trade_id"]) for r in ROWS]
    assert runner.malformed == len(OUT_OF_RANGE)
    lines = [r.getMessage() for r in caplog.records if "malformed frame" in r.getMessage()]
    assert len(lines) == len(OUT_OF_RANGE) and all(len(line) < 600 for line in lines), lines
    assert "out of range" in lines[0] and "not decimal numbers" in lines[1] and "bigint" in lines[3]


def test_out_of_range_history_rows_are_refused():
    with pytest.raises(KrakenError, match="out of range"):
        rest_ticks([["1e400", "0.1", 1762795433.9717445, "b", "l", "", 1]])
    with pytest.raises(KrakenError, match="bigint"):
        rest_ticks([["100.5", "0.1", 1762795433.9717445, "b", "l", "", 2**63]])


def test_rejected_subscription_names_symbol(fake):
    market = Market.objects.create(exchange="kraken", base="BTC", quote="USDX", symbol="BTC/USDX")
    with pytest.raises(SubscriptionRejected, match="BTC/USDX"):
        StreamRunner(market).run()
    market.refresh_from_db()
    assert market.stream_state == Market.StreamState.ERROR
    assert "BTC/USDX" in market.stream_detail


class EventClock:
    """A monotonic clock that stands still until done() holds, then jumps past every deadline.

    Given to the stream command, `--for 3` lasts exactly until the trades are in, however slow the
    machine: no test needs 1,800 trades stored within 3 s of wall time. timeout_s of real time is
    the backstop (then done() never held, and the test fails on what is missing).
    """

    def __init__(self, done, timeout_s: float = 60.0):
        self.done, self.deadline = done, time.monotonic() + timeout_s

    def monotonic(self) -> float:
        return math.inf if self.done() or time.monotonic() > self.deadline else 0.0


def test_stream_command_runs_for_seconds(fake, monkeypatch):
    fake.published = len(ROWS) - 100
    clock = EventClock(lambda: Trade.objects.count() == len(ROWS))
    monkeypatch.setattr("pipeline.management.commands.stream.time", clock)
    out = io.StringIO()
    call_command("stream", "--market", "kraken:BTC-USDT", "--for", "3", stdout=out)
    assert Trade.objects.count() == len(ROWS)
    assert "stored 1800" in out.getvalue()
    with pytest.raises(CommandError, match="no live source for exchange 'gemini'"):
        call_command("stream", "--market", "gemini:ETH-USD", "--for", "1")
    with pytest.raises(CommandError, match="ill-formed market"):
        call_command("stream", "--market", "BTC-USDT", "--for", "1")


def test_unreachable_exchange_retries_quietly(settings):
    settings.KRAKEN_WS_URL = "ws://127.0.0.1:9/v2"  # nothing listens on the discard port
    settings.STREAM_BACKOFF_BASE_S = 0.01
    market = get_or_create_market("kraken:ETH-USD")
    states = []
    runner = StreamRunner(market, keep_going=lambda: len(states) < 5)
    original = runner._sleep

    def sleep(seconds):
        market.refresh_from_db()
        states.append((market.stream_state, market.stream_detail))
        original(seconds)

    runner._sleep = sleep
    runner.run()
    assert all(state == Market.StreamState.RECONNECTING for state, _ in states)
    assert "retry 5" in states[-1][1]


def test_backfill_command_pages_and_resumes(fake):
    fake.published = len(ROWS)
    fake.rate_limited = 2
    out = io.StringIO()
    call_command("backfill", "--market", "kraken:BTC-USDT", "--hours", "96", stdout=out)
    assert Trade.objects.count() == len(ROWS)
    assert "stored 1800" in out.getvalue()
    cursor = Market.objects.get().backfill_cursor
    calls = fake.rest_calls
    call_command("backfill", "--market", "kraken:BTC-USDT", "--hours", "96", stdout=out)
    assert fake.rest_calls == calls + 1  # resumed from the stored cursor: one page to confirm
    assert Market.objects.get().backfill_cursor.split(":")[0] == cursor.split(":")[0]
    with pytest.raises(CommandError, match="--since or --hours"):
        call_command("backfill", "--market", "kraken:BTC-USDT")


def test_backfill_fails_in_one_line_when_its_step_fails(fake, monkeypatch):
    """The trades are stored but features and predictions are missing: the command fails, naming the cause."""

    def broken(step):
        raise RuntimeError("features unavailable\nsecond line")

    monkeypatch.setattr("pipeline.step.MarketStep.run", broken)
    fake.published = 300
    with pytest.raises(CommandError) as error:
        call_command("backfill", "--market", "kraken:BTC-USDT", "--hours", "96", stdout=io.StringIO())
    assert Trade.objects.count() == 300
    assert str(error.value) == (
        "kraken:BTC-USDT: pipeline step failed: RuntimeError: features unavailable;"
        " the next stream or replay catches up"
    )


def test_parser_on_documented_shapes():
    source = KrakenSource(Market(exchange="kraken", base="BTC", quote="USD", symbol="BTC/USD"))
    ticks = source.parse(load_frame((SAMPLE / "messages/kraken_ws_v2_fixture_trade_update.json").read_text()))
    assert [(t.trade_id, str(t.price), t.side) for t in ticks] == [
        (10218208, "105944.20", "buy"),
        (10218209, "105910.50", "sell"),
    ]
    assert source.parse(load_frame('{"channel":"heartbeat"}')) is None
    with pytest.raises(MalformedFrame, match="unexpected frame"):  # a channel never subscribed
        source.parse(load_frame((SAMPLE / "messages/kraken_ws_v2_fixture_ohlc_update.json").read_text()))
    page = load_frame((SAMPLE / "messages/kraken_rest_trades_XBTUSDT_2025-11-10.json").read_text())
    ticks = rest_ticks(page["result"]["XBTUSDT"])
    assert len(ticks) == 1000 and ticks[0].trade_id == 10218208
    assert ticks[0].ts.isoformat() == "2025-11-10T17:23:53.971744+00:00"  # 1762795433.9717445 truncated
