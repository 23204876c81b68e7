"""Server-rendered trader pages: access, content, errors (Django test client, real PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import quote

import pytest

from inference.models import Prediction
from markets.models import Candle, Market
from modeling.forecast import PERSISTENCE
from modeling.models import ModelArtifact
from web.templatetags.web_format import price

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
        metrics={"model": {"rmse": rmse, "mae": rmse / 2}, "persistence": {"rmse": 1.5, "mae": 0.75}},
    )  # fmt: skip


def predict(market: Market, made_at: datetime, base: str, value: str, model: ModelArtifact | None = None, **kw):
    return Prediction.objects.create(
        market=market, interval_s=10, horizon=1, made_at=made_at, target_time=made_at + timedelta(seconds=10),
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
    candle(market, T0, "2105.5")
    model = artifact(market, 1, ModelArtifact.Status.ACTIVE, 1.0)
    predict(market, T0 - timedelta(seconds=10), "2100", "2101", model, realized=Decimal("2102"))
    predict(market, T0 + timedelta(seconds=10), "2105.5", "2104.25", model)

    page = client.get("/").content.decode()
    assert "gemini:ETH-USD" in page and "kraken:BTC-USD" not in page
    assert f'data-field="last-price">{price(Decimal("2105.5"))}<' in page
    assert "2,104.25" in page and "2,102.25 \N{EN DASH} 2,106.25" in page  # prediction and its 80 % interval
    assert "dir-down" in page
    assert "ridge v1" in page
    assert ">Replay<" in page
    # One scored prediction: |2101 - 2102| for the model, |2100 - 2102| for persistence.
    assert "1 vs 2" in page


def test_market_page_persistence_and_recent_predictions(client, market, anonymous_read):
    candle(market, T0, "2000")
    predict(market, T0 + timedelta(seconds=10), "2000", "2000", realized=Decimal("2001.5"))
    page = client.get("/markets/gemini:eth-usd/?range=6h").content.decode()
    assert "No active model" in page
    assert "persistence (no active model)" in page
    assert 'data-range="6h" aria-pressed="true"' in page
    assert "2,001.50" in page and "-1.50" in page  # realized and error in the recent table
    assert "lightweight-charts.standalone.production.js" in page
    # Accuracy panel from the inference app's live metrics: realized 2001.5 lies in [1998, 2002].
    assert ">100.0 %<" in page  # interval coverage
    assert ">50.0 %<" in page  # persistence's directional accuracy by convention

    # An unknown range falls back to the default rather than failing.
    assert 'data-range="1h" aria-pressed="true"' in client.get("/markets/gemini:ETH-USD/?range=9y").content.decode()


@pytest.mark.parametrize("name", ["nope", "gemini:DOGE-USD"])
def test_unknown_or_ill_formed_market_is_404(client, market, anonymous_read, name):
    response = client.get(f"/markets/{name}/")
    assert response.status_code == 404


def test_models_page_history_with_metrics_and_status(client, market, anonymous_read):
    artifact(market, 1, ModelArtifact.Status.RETIRED, 1.25)
    active = artifact(market, 2, ModelArtifact.Status.ACTIVE, 1.125)
    predict(market, T0, "2000", "2001", active, realized=Decimal("2003"))  # live: model off by 2, persistence by 3
    page = client.get("/models/").content.decode()
    assert "2 / 3 <span" in page
    assert page.index("v2") < page.index("v1")  # newest first
    assert "status-active" in page and "status-retired" in page
    assert "1.125 / 1.5" in page and "0.5625 / 0.75" in page


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("2105.5"), "2,105.50"),
        (Decimal("0.000123456789"), "0.000123457"),
        (None, "\N{EM DASH}"),
        (Decimal("-1.5"), "-1.50"),
    ],
)
def test_price_format(value, text):
    assert price(value) == text


def test_model_card_fragment_follows_the_active_model(client, market, anonymous_read):
    assert "No active model" in client.get("/markets/gemini:ETH-USD/model/").content.decode()
    artifact(market, 1, ModelArtifact.Status.ACTIVE, 1.0)
    card = client.get("/markets/gemini:ETH-USD/model/").content.decode()
    assert "ridge v1" in card and "<html" not in card
    assert client.get("/markets/gemini:BTC-USD/model/").status_code == 404
