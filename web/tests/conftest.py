import pytest
from django.db import connections

from web.tests.browser import AsgiServer, chrome, csp_violations, foreign_requests


@pytest.fixture
def live_app(transactional_db, settings):
    """The real ASGI app (HTTP + websocket, Redis channel layer) on a loopback port, open to anonymous readers."""
    settings.API_ANONYMOUS_READ = True
    # The server's worker threads must not keep connections open, or the test database cannot be flushed/dropped.
    db = connections.settings["default"]
    max_age, db["CONN_MAX_AGE"] = db["CONN_MAX_AGE"], 0
    server = AsgiServer()
    server.start()
    yield server
    server.stop()
    db["CONN_MAX_AGE"] = max_age


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    browser = chrome(tmp_path_factory.mktemp("chromium-profile"))
    yield browser
    browser.quit()


@pytest.fixture(autouse=True)
def offline_pages(request):
    """Every browser test fails when a page asked any host but the test server for anything (CDNs included),
    or did anything the Content-Security-Policy refused (an inline script or style, another host)."""
    if "driver" not in request.fixturenames or "live_app" not in request.fixturenames:
        yield
        return
    driver, app = request.getfixturevalue("driver"), request.getfixturevalue("live_app")
    driver.get("about:blank")  # the previous test's page (another port) stops here
    driver.get_log("performance")
    driver.get_log("browser")
    yield
    assert foreign_requests(driver, app.url) == [], "a page loaded something from another host"
    assert csp_violations(driver) == [], "a page did something its Content-Security-Policy refused"


@pytest.fixture
def market(settings):
    """An enabled Gemini ETH/USD market, the pages readable without logging in."""
    from markets.models import Market

    settings.API_ANONYMOUS_READ = True
    return Market.objects.create(exchange="gemini", base="ETH", quote="USD", symbol="ETHUSD", enabled=True)
