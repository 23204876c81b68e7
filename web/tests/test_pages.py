"""Server-rendered trader pages: access, content, errors (Django test client, real PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import quote

import pytest

from core.formatting import price
from inference.models import Prediction
from markets.models import BookWindow, Candle, Market
from modeling.forecast import PERSISTENCE
from modeling.models import ModelArtifact

pytestmark = pytest.mark.django_db
T0 = datetime(2021, 7, 1, 6, 0, tzinfo=UTC)


@pytest.fixture
def market():
    return Market.objects.create(exchange="gemini", base="ETH", quote="USD", symbol="ETHUSD", enabled=True)


@pytest.fixture
def anonymous_read(settings):
    settings.API_ANONYMOUS_READ = True


def candle(market: Market, start: datetime, close: str) -> Candle:
    c = Decimal(close)
    return Candle.objects.create(
        market=market, interval_s=10, start=start, open=c, high=c, low=c, close=c, volume=Decimal(1),
        buy_volume=Decimal(1), sell_volume=Decimal(0), trades=1, vwap=c, final=True,
    )  # fmt: skip


def artifact(market: Market, version: int, status: str, rmse: float) -> ModelArtifact:
    return ModelArtifact.objects.create(
        market=market, interval_s=10, horizon=1, feature_version="v1", algorithm="ridge", train_start=T0,
        train_end=T0 + timedelta(hours=6), artifact=b"-", sha256="0" * 64, status=status, version=version,
        metrics={
            "model": {"rmse": rmse, "mae": rmse / 2, "rmse_bps": rmse, "mae_bps": rmse / 2},
            "persistence": {"rmse": 1.5, "mae": 0.75, "rmse_bps": 1.5, "mae_bps": 0.75},
        },
    )  # fmt: skip


def predict(
    market: Market, made_at: datetime, base: str, value: str, model: ModelArtifact | None = None, horizon=1, **kw
):
    return Prediction.objects.create(
        market=market, interval_s=10, horizon=horizon, made_at=made_at,
        target_time=made_at + timedelta(seconds=10 * horizon),
        base_close=Decimal(base), price=Decimal(value), lower=Decimal(value) - 2, upper=Decimal(value) + 2,
        model=model, model_version=model.version if model else None,
        algorithm=model.algorithm if model else PERSISTENCE, latency_ms=1.0, **kw,
    )  # fmt: skip


@pytest.mark.parametrize("path", ["/", "/models/", "/markets/gemini:ETH-USD/"])
def test_pages_need_login_unless_anonymous_read(client, market, path, settings, django_user_model):
    settings.API_ANONYMOUS_READ = False
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=" + quote(path, safe="/")

    client.force_login(django_user_model.objects.create_user("trader"))
    assert client.get(path).status_code == 200

    client.logout()
    settings.API_ANONYMOUS_READ = True
    assert client.get(path).status_code == 200


def test_login_page_and_staff_admin_link(client, django_user_model, anonymous_read):
    page = client.get("/accounts/login/").content.decode()
    assert '<label for="id_username">Username</label>' in page
    assert '<label for="id_password">Password</label>' in page

    django_user_model.objects.create_user("trader", password="pw-12345678")
    response = client.post("/accounts/login/", {"username": "trader", "password": "pw-12345678", "next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert 'href="/admin/"' not in client.get("/").content.decode()

    client.force_login(django_user_model.objects.create_user("boss", is_staff=True))
    assert 'href="/admin/"' in client.get("/").content.decode()


def test_overview_shows_enabled_markets_with_price_prediction_and_accuracy(client, market, anonymous_read):
    Market.objects.create(exchange="kraken", base="BTC", quote="USD", symbol="BTC/USD", enabled=False)
    Market.objects.filter(pk=market.pk).update(stream_state=Market.StreamState.REPLAY, last_trade_at=T0)
    candle(market, T0 - timedelta(seconds=10), "2104.37")  # the market quotes 2 decimals
    candle(market, T0, "2105.5")
    model = artifact(market, 1, ModelArtifact.Status.ACTIVE, 1.0)
    predict(market, T0 - timedelta(seconds=10), "2100", "2101", model, realized=Decimal("2102"))
    predict(market, T0 + timedelta(seconds=10), "2105.5", "2104.254321", model, p_up=0.31, direction_source="model")

    page = client.get("/").content.decode()
    assert "gemini:ETH-USD" in page and "kraken:BTC-USD" not in page
    assert 'data-field="last-price">2,105.50<' in page
    # The prediction and its 80 % interval at the market's precision.
    assert ">2,104.25<" in page and "2,102.25 \N{EN DASH} 2,106.25" in page
    assert "dir-down" in page and 'data-field="p-up">P(up) 31 %<' in page
    assert 'data-field="pred-move">-1.25<' in page
    assert "Ridge v1" in page
    assert ">Replay<" in page
    # One scored prediction, in basis points of 2100: |2101 - 2102| for the model, |2100 - 2102| for persistence.
    assert "MAE 4.76 vs 9.52 bp" in page
    assert "Ridge v1 vs persistence" in page and "last 1 windows since 2021-07-01 05:59:50" in page


def test_market_page_shows_the_latest_top_of_book(client, market, anonymous_read):
    page = client.get(f"/markets/{market.name}/").content.decode()
    assert 'data-field="book-bid"' not in page  # no book, no card
    values = {"ofi": 0.0, "spread_tw": 1.0, "imbalance_tw": 0.1, "depth_imbalance": 0.2, "updates": 3}
    for start, bid in ((T0 - timedelta(seconds=10), "2104.00"), (T0, "2105.50")):
        BookWindow.objects.create(
            market=market,
            interval_s=10,
            start=start,
            bid_price=Decimal(bid),
            bid_qty=Decimal("3"),
            ask_price=Decimal(bid) + Decimal("0.5"),
            ask_qty=Decimal("1"),
            mid=Decimal(bid) + Decimal("0.25"),
            microprice=Decimal(bid) + Decimal("0.375"),
            **values,
        )
    page = client.get(f"/markets/{market.name}/").content.decode()  # the newest window wins
    assert 'data-field="book-bid">2,105.50 <span class="muted">\N{MULTIPLICATION SIGN} 3</span>' in page
    assert 'data-field="book-ask">2,106.00' in page and 'data-field="book-mid">2,105.75<' in page
    assert 'data-field="book-spread">0.50<' in page and 'data-field="book-imbalance">0.50<' in page


def test_overview_shows_replayed_markets_labelled_replay(client, market, anonymous_read):
    replayed = Market.objects.create(exchange="bitstamp", base="BTC", quote="USD", symbol="BTCUSD", enabled=False)
    Market.objects.create(exchange="kraken", base="BTC", quote="USD", symbol="BTC/USD", enabled=False)
    candle(replayed, T0, "236.5")
    page = client.get("/").content.decode()
    assert "bitstamp:BTC-USD" in page and "kraken:BTC-USD" not in page  # data, or enabled, makes a market show
    card = page[page.index("bitstamp:BTC-USD") :]
    assert 'title="fed by replayed files, not streamed">replay<' in card


def test_market_page_persistence_and_recent_predictions(client, market, anonymous_read):
    candle(market, T0, "2000.25")
    predict(market, T0 + timedelta(seconds=10), "2000", "2000", realized=Decimal("2001.5"))
    page = client.get("/markets/gemini:eth-usd/?range=6h").content.decode()
    assert "No active model" in page
    assert "Persistence (no active model)" in page
    assert 'aria-pressed="true">6h<' in page
    assert "2,001.50" in page and ">-7.50<" in page  # realized, and the error in bp of 2000, in the recent table
    assert "lightweight-charts.standalone.production.js" in page
    # Accuracy per served forecaster: persistence, served here with a band; realized 2001.5 lies in [1998, 2002].
    assert ">100.0 % <span" in page and "of 1 with a band" in page  # interval coverage
    assert ">50.0 %<" in page  # persistence's directional accuracy by convention
    assert "last 1 scored window since 2021-07-01 06:00:10" in page
    # 6h is drawn in 1-minute candles, and the page says so.
    assert 'data-interval="60"' in page and "1-minute</span> candles" in page

    # An unknown range falls back to the default rather than failing.
    assert 'aria-pressed="true">1h<' in client.get("/markets/gemini:ETH-USD/?range=9y").content.decode()


def test_market_page_shows_the_horizons_side_by_side(client, market, anonymous_read):
    candle(market, T0, "2000.25")
    for horizon, value in [(1, "2001"), (3, "2003"), (6, "2006")]:
        predict(market, T0 + timedelta(seconds=10), "2000", value, horizon=horizon, realized=Decimal("2002"))
    page = client.get("/markets/gemini:ETH-USD/").content.decode()
    assert 'Latest prediction <span class="muted">+1, 10 s ahead</span>' in page
    fragment = client.get("/markets/gemini:ETH-USD/horizons/").content.decode()
    assert fragment.strip() in page  # the page's table, refreshed alone by the page's script
    rows = fragment.split('<tr data-horizon="')[1:]
    assert [row.split('"')[0] for row in rows] == ["1", "3", "6"]
    for row, ahead, value, target in zip(
        rows,
        ["10 s", "30 s", "1 min"],
        ["2,001.00", "2,003.00", "2,006.00"],
        ["06:00:20", "06:00:40", "06:01:10"],
        strict=True,
    ):
        assert f'<span class="muted">{ahead}</span>' in row
        assert f'data-field="pred-price">{value}<' in row and f"close at {target}, made 06:00:10" in row
        assert 'data-metric="rmse">' in row and "(1)" in row  # each horizon's own live metrics: one scored window
    recent = page.split('id="recent-predictions"')[1]
    assert [f"<td>+{h}</td>" in recent for h in (1, 3, 6)] == [True, True, True]


@pytest.mark.parametrize("name", ["nope", "gemini:DOGE-USD"])
def test_unknown_or_ill_formed_market_is_404(client, market, anonymous_read, name):
    response = client.get(f"/markets/{name}/")
    assert response.status_code == 404


def test_models_page_history_with_metrics_and_status(client, market, anonymous_read):
    artifact(market, 1, ModelArtifact.Status.RETIRED, 1.25)
    active = artifact(market, 2, ModelArtifact.Status.ACTIVE, 1.125)
    predict(market, T0, "2000", "2001", active, realized=Decimal("2003"))  # live: model off by 2, persistence by 3
    page = client.get("/models/").content.decode()
    assert "10.00 / 15.00 <span" in page  # live RMSE in bp of 2000: off by 2 and by 3
    assert page.index("Ridge v2") < page.index("Ridge v1")  # newest first
    assert "status-active" in page and "status-retired" in page
    assert "1.12 / 1.50" in page and "0.56 / 0.75" in page  # validation RMSE and MAE in bp


@pytest.mark.parametrize(
    ("value", "decimals", "text"),
    [
        (Decimal("2105.5"), 2, "2,105.50"),
        (Decimal("2105.5"), 1, "2,105.5"),
        (Decimal("0.000123456789"), 8, "0.00012346"),
        (None, 2, "\N{EM DASH}"),
        (Decimal("-1.5"), 2, "-1.50"),
    ],
)
def test_price_format(value, decimals, text):
    assert price(value, decimals) == text


def test_model_card_fragment_follows_the_active_model(client, market, anonymous_read):
    assert "No active model" in client.get("/markets/gemini:ETH-USD/model/").content.decode()
    artifact(market, 1, ModelArtifact.Status.ACTIVE, 1.0)
    card = client.get("/markets/gemini:ETH-USD/model/").content.decode()
    assert "Ridge v1" in card and "<html" not in card
    assert client.get("/markets/gemini:BTC-USD/model/").status_code == 404


def test_zero_width_band_is_no_interval_and_metrics_are_per_forecaster(client, market, anonymous_read):
    """Persistence before calibration has lower == upper: never an 80 % interval, never in its coverage."""
    candle(market, T0, "2000.25")
    flat = predict(market, T0 - timedelta(seconds=20), "2000", "2000", realized=Decimal("2000"))
    Prediction.objects.filter(pk=flat.pk).update(lower=Decimal("2000"), upper=Decimal("2000"))
    model = artifact(market, 3, ModelArtifact.Status.ACTIVE, 1.0)
    ModelArtifact.objects.filter(pk=model.pk).update(algorithm="hist_gradient_boosting")
    model.refresh_from_db()
    predict(market, T0 - timedelta(seconds=10), "2000", "2001", model, realized=Decimal("2005"))  # outside its band
    latest = predict(market, T0, "2000.25", "2000.25", model)
    Prediction.objects.filter(pk=latest.pk).update(lower=Decimal("2000.25"), upper=Decimal("2000.25"))

    page = client.get("/markets/gemini:ETH-USD/").content.decode()
    assert 'data-field="pred-interval">no interval yet<' in page
    assert "2,000.00 \N{EN DASH} 2,000.00" not in page
    # Two served forecasters, each saying what it covers; the one serving first.
    assert page.index('Gradient boosting v3</strong> <span class="badge state-live">serving') < page.index(
        "<strong>Persistence</strong>"
    )
    assert "last 1 scored window since 2021-07-01 05:59:50" in page  # the model's
    assert "last 1 scored window since 2021-07-01 05:59:40" in page  # persistence's
    assert ">0.0 %<" in page  # the model's coverage: 2005 is outside [1999, 2003]
    assert page.count("no interval yet") >= 2  # persistence had no band: no coverage either, and the latest
    assert 'data-metric="coverage">100.0 %' not in page
    overview = client.get("/").content.decode()
    assert 'data-field="pred-interval">no interval yet<' in overview
    assert "Gradient boosting v3" in overview and "hist_gradient_boosting" not in overview


@pytest.mark.parametrize(
    ("base", "value", "p_up", "call", "move"),
    [
        ("2105.5", "2106.5", 0.31, "down", "+1.00"),  # the price model says up, P(up) down: the arrow is P(up)'s
        ("2105.5", "2104.5", 0.69, "up", "-1.00"),
        ("2105.5", "2105.503", 0.505, "up", "flat"),  # 50.5 % shows as 51 %; a 0.003 move at 2 decimals is none
        ("2105.5", "2105.5", 0.5049, "flat", "flat"),  # shows as 50 %: neither arrow
        ("2105.5", "2105.5", None, None, "flat"),
    ],
)
def test_the_direction_arrow_follows_the_p_up_shown_and_a_move_below_precision_is_flat(
    client, market, anonymous_read, base, value, p_up, call, move
):
    candle(market, T0 - timedelta(seconds=10), "2104.37")  # the market quotes 2 decimals
    candle(market, T0, "2105.5")
    predict(market, T0 + timedelta(seconds=10), base, value, p_up=p_up, direction_source="base rate")
    for path in ("/", "/markets/gemini:ETH-USD/"):
        page = client.get(path).content.decode()
        assert f'data-field="pred-move">{move}<' in page, path
        shown = page.split('data-field="direction">', 1)[1].split("</dd>", 1)[0]
        if call is None:
            assert shown == "\N{EM DASH}", path
            continue
        assert f'class="dir dir-{call}"' in shown and f"</span> {call}</span>" in shown, path
        assert f'data-field="p-up">P(up) {round(100 * p_up + 1e-9)} %<' in shown, path
        assert "· base rate" in shown


def test_the_market_page_and_its_fragments_follow_the_horizon_asked_for(client, market, anonymous_read):
    candle(market, T0, "2105.5")
    predict(market, T0 + timedelta(seconds=10), "2105.5", "2106.5", p_up=0.31, direction_source="base rate")
    predict(market, T0 + timedelta(seconds=60), "2105.5", "2104.5", horizon=6, p_up=0.69, direction_source="model")
    page = client.get("/markets/gemini:ETH-USD/?horizon=6").content.decode()
    assert 'data-horizon="6"' in page and 'Direction calls, live <span class="muted">+6</span>' in page
    latest = page.split('id="latest-card"', 1)[1].split("</section>", 1)[0]
    assert "dir-up" in latest and "· model" in latest
    assert '<a href="?horizon=3"' in page  # every horizon's row links to the page at that horizon
    for bad in ("7", "x", ""):  # not a configured horizon: the shortest
        page = client.get(f"/markets/gemini:ETH-USD/?horizon={bad}").content.decode()
        assert 'Direction calls, live <span class="muted">+1</span>' in page, bad
    fragment = client.get("/markets/gemini:ETH-USD/accuracy/?horizon=6").content.decode()
    assert '<div id="direction-record">' in fragment and '<div id="accuracy"' in fragment


def test_no_prediction_shows_dashes_not_flat(client, market, anonymous_read):
    candle(market, T0, "2000.25")
    for path in ("/", "/markets/gemini:ETH-USD/"):
        page = client.get(path).content.decode()
        assert "flat" not in page, path
        assert 'data-field="direction">\N{EM DASH}<' in page, path
        assert 'data-field="pred-interval">\N{EM DASH}<' in page, path


def test_market_page_says_when_the_model_on_show_was_forced_past_the_gate_or_loses_live(client, market, anonymous_read):
    from modeling import registry

    candle(market, T0, "2000.25")
    model = artifact(market, 2, ModelArtifact.Status.CANDIDATE, 1.6)
    gate = "ridge: no significant win over persistence: validation RMSE 1.6 vs persistence 1.5 (p 0.4)"
    registry.set_status(model, ModelArtifact.Status.REJECTED, "gate", gate)
    ModelArtifact.objects.filter(pk=model.pk).update(artifact=b"-")
    from modeling.models import ModelEvent

    ModelEvent.objects.create(
        artifact=model, action="promote", from_status="rejected", to_status="active", reason="demo --promote"
    )
    ModelArtifact.objects.filter(pk=model.pk).update(status=ModelArtifact.Status.ACTIVE, reason="demo --promote")
    page = client.get("/markets/gemini:ETH-USD/").content.decode()
    assert "Ridge v2 is served although the promotion gate rejected it." in page
    assert "The gate said: " + gate in page
    assert "loses to persistence" not in page

    for i in range(30):  # the model off by 3, persistence by 1
        predict(market, T0 + timedelta(seconds=10 * i), "2000", "2002", model, realized=Decimal("1999"))
    page = client.get("/markets/gemini:ETH-USD/").content.decode()
    assert "Live, Ridge v2 loses to persistence: RMSE 15.00 vs 5.00 bp over its last 30 scored windows." in page
    assert "loses to persistence" in client.get("/models/").content.decode()


def test_overview_cards_draw_the_last_hour_with_the_band(client, market, anonymous_read):
    for i in range(12):
        candle(market, T0 + timedelta(seconds=10 * i), f"{2000 + i % 4}.25")
        predict(market, T0 + timedelta(seconds=10 * i), f"{2000 + i % 4}.25", f"{2000 + i % 4}.25")
    page = client.get("/").content.decode()
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert 'class="sparkline' in svg and 'role="img"' in svg
    assert "from 2,000.25 to 2,003.25" in svg
    line = svg.split('<polyline class="spark-line" points="')[1].split('"')[0]
    assert len(line.split()) == 12
    assert '<polygon class="spark-band" points="' in svg
