import pytest

from markets.models import Market
from markets.names import MarketError, get_market, get_or_create_market, parse_market_name


def test_parse_normalizes_case():
    assert parse_market_name("Kraken:eth-usd") == ("kraken", "ETH", "USD")
    assert parse_market_name("kraken:BTC-USDT") == ("kraken", "BTC", "USDT")


@pytest.mark.parametrize("bad", ["", "ETH-USD", "kraken:ETHUSD", "kraken:ETH-", ":ETH-USD", "kraken:ETH/USD", None])
def test_parse_rejects_ill_formed(bad):
    with pytest.raises(MarketError, match="EXCHANGE:BASE-QUOTE"):
        parse_market_name(bad)


@pytest.mark.django_db
def test_get_or_create_then_get():
    market = get_or_create_market("kraken:eth-usd")
    assert market.name == "kraken:ETH-USD"
    assert market.symbol == "ETH/USD"
    assert get_or_create_market("kraken:ETH-USD").pk == market.pk
    assert get_market("KRAKEN:ETH-usd").pk == market.pk
    assert get_or_create_market("coinbase:BTC-USD").symbol == "BTC-USD"
    assert Market.objects.count() == 2


@pytest.mark.django_db
def test_get_unknown_names_it():
    with pytest.raises(MarketError, match=r"unknown market 'gemini:ETH-USD'"):
        get_market("gemini:ETH-USD")
