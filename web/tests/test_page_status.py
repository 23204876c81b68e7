"""What the pages say about state: the header's pill is the page's own link, a stream's trouble is on the page."""

from __future__ import annotations

import pytest

from markets.models import Market

pytestmark = pytest.mark.django_db


@pytest.fixture
def offline(settings) -> Market:
    settings.API_ANONYMOUS_READ = True
    return Market.objects.create(
        exchange="kraken", base="ETH", quote="USD", symbol="ETH/USD", enabled=True,
        stream_state=Market.StreamState.RECONNECTING, stream_detail="ConnectError: [Errno -3] name resolution failed",
    )  # fmt: skip


@pytest.mark.parametrize("path", ["/", "/markets/kraken:ETH-USD/"])
def test_the_header_pill_names_the_page_link_and_a_stream_says_why_it_is_not_live(client, offline, path):
    page = client.get(path).content.decode()
    assert "Page updates: connecting…" in page and "each market's own feed" in page.lower()
    shown = page.split('data-field="stream-detail">', 1)[1].split("<", 1)[0]
    assert shown == offline.stream_detail  # in the text, not only in a title a touch screen never shows


def test_a_live_stream_shows_no_stale_reason(client, offline):
    Market.objects.filter(pk=offline.pk).update(stream_state=Market.StreamState.LIVE)
    page = client.get("/").content.decode()
    assert 'data-field="stream-detail"></span>' in page


def test_favicon_is_a_static_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert b"".join(response.streaming_content)[:4] == b"\x00\x00\x01\x00"  # an ICO header
