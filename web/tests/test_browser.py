"""The trader pages in a real headless Chromium against the real app, fed by replays of real trades."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from core.formatting import model_label, price, window
from markets.models import Candle, Market
from modeling import registry
from modeling.market_training import train_horizons, train_market
from modeling.models import ModelArtifact
from web.pages import RANGES, chart_interval, interval_label, price_decimals
from web.tests.browser import (
    RESOURCE_URLS_JS,
    SAMPLE,
    csp_violations,
    foreign_requests,
    sample_slice,
    screenshot,
    wait_until,
)

pytestmark = [
    pytest.mark.system,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    # WhiteNoise hands static files to Django's ASGI handler as a synchronous iterator: expected here.
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators"),
]
MARKET = "gemini:ETH-USD"


def replay(tmp_path, first: int, count: int) -> Market:
    path = sample_slice(tmp_path / f"trades-{first}.csv.gz", first, count)
    call_command("replay", str(path), market=MARKET, stdout=None)
    market = Market.objects.get(exchange="gemini", base="ETH", quote="USD")
    if not market.enabled:
        market.enabled = True
        market.save(update_fields=["enabled"])
    return market


def last_candle(market: Market) -> Candle:
    return Candle.objects.filter(market=market).latest("start")


def connection_state(driver) -> str:
    return driver.find_element(By.ID, "conn-state").get_attribute("data-state")


def text_of(driver, selector: str) -> str:
    """The element's text read in one script call: the page may replace the element between two calls."""
    return driver.execute_script("return document.querySelector(arguments[0]).textContent.trim()", selector)


def chart(driver):
    return driver.find_element(By.ID, "chart")


def test_overview_and_market_pages_load(live_app, driver, tmp_path):
    market = replay(tmp_path, 0, 400)
    close = price(last_candle(market).close, price_decimals(market))

    driver.get(live_app.url + "/")
    card = driver.find_element(By.CSS_SELECTOR, f'.market-card[data-market="{MARKET}"]')
    assert card.find_element(By.CSS_SELECTOR, '[data-field="last-price"]').text == close
    assert "Persistence" in card.find_element(By.CSS_SELECTOR, '[data-field="model"]').text
    wait_until(driver, lambda d: connection_state(d) == "live", message="websocket never connected")
    accuracy = card.find_element(By.CSS_SELECTOR, '[data-field="accuracy"]').text

    replay(tmp_path, 400, 60)
    live_close = price(last_candle(market).close, price_decimals(market))
    field = '[data-field="last-price"]'
    wait_until(driver, lambda d: card.find_element(By.CSS_SELECTOR, field).text == live_close, message="price stale")
    wait_until(driver, lambda d: card.find_element(By.CSS_SELECTOR, '[data-field="accuracy"]').text != accuracy)
    screenshot(driver, "overview")

    card.find_element(By.LINK_TEXT, MARKET).click()
    wait_until(driver, lambda d: int(chart(d).get_attribute("data-candles")) > 0, message="no candles drawn")
    assert driver.find_element(By.CSS_SELECTOR, "#chart canvas").is_displayed()
    assert int(chart(driver).get_attribute("data-predictions")) > 0
    assert driver.find_element(By.CSS_SELECTOR, '.page-head [data-field="last-price"]').text == live_close
    screenshot(driver, "market")


def test_chart_receives_live_updates_from_replay(live_app, driver, tmp_path, settings):
    market = replay(tmp_path, 0, 500)
    before = last_candle(market)
    driver.get(f"{live_app.url}/markets/{MARKET}/?range=15m")
    wait_until(driver, lambda d: int(chart(d).get_attribute("data-candles")) > 0, message="no history drawn")
    wait_until(driver, lambda d: connection_state(d) == "live", message="websocket never connected")
    assert chart(driver).get_attribute("data-last-candle").startswith(before.start.strftime("%Y-%m-%dT%H:%M:%S"))
    predictions_before = int(chart(driver).get_attribute("data-predictions"))
    accuracy_before = driver.find_element(By.ID, "accuracy").text
    assert "No active model" in driver.find_element(By.ID, "model-card").text

    # A model trained on that history and made active (hot reload) serves the next windows.
    settings.TRAIN_MIN_ROWS = 50
    model = train_market(market, window_s=3600)
    if model.status != ModelArtifact.Status.ACTIVE:
        registry.promote(model, "browser test")
    replay(tmp_path, 500, 150)  # the same pipeline as a live stream: candles_closed -> features -> inference
    after = last_candle(market)
    assert after.start > before.start

    expected = after.start.strftime("%Y-%m-%dT%H:%M:%S")
    wait_until(driver, lambda d: chart(d).get_attribute("data-last-candle").startswith(expected), message="no candle")
    wait_until(driver, lambda d: int(chart(d).get_attribute("data-predictions")) > predictions_before)
    last_price = driver.find_element(By.CSS_SELECTOR, '.page-head [data-field="last-price"]')
    assert last_price.text == price(after.close, price_decimals(market))
    # The accuracy panel follows the newly scored predictions; the model card follows the promotion.
    wait_until(driver, lambda d: d.find_element(By.ID, "accuracy").text != accuracy_before)
    label = model_label(model)
    wait_until(driver, lambda d: label in d.find_element(By.ID, "model-card").text, message="model card is stale")
    assert driver.find_element(By.CSS_SELECTOR, '#next-title + .facts [data-field="model"]').text == label
    # Every horizon side by side, each row following its own pushes: the model at +1, persistence further ahead.
    decimals = price_decimals(market)
    for horizon in (1, 3, 6):
        newest = market.predictions.filter(horizon=horizon).latest("made_at")
        row = f'#horizons tr[data-horizon="{horizon}"]'
        expected = price(newest.price, decimals)
        wait_until(
            driver,
            lambda d, row=row, expected=expected: text_of(d, f'{row} [data-field="pred-price"]') == expected,
            message=f"horizon {horizon} is stale",
        )
        assert text_of(driver, f'{row} [data-field="target-time"]') == window(newest)
    assert text_of(driver, '#horizons tr[data-horizon="1"] [data-field="model"]') == label
    assert "Persistence" in text_of(driver, '#horizons tr[data-horizon="6"] [data-field="model"]')
    # The recent predictions table starts with the newest.
    newest = f"{market.predictions.latest('made_at').made_at:%H:%M:%S}"
    wait_until(
        driver,
        lambda d: text_of(d, "#recent-predictions tbody tr").startswith(newest),
        message="recent predictions are not the newest",
    )
    screenshot(driver, "market-live")


def test_connection_indicator_reacts_to_dropped_websocket(live_app, driver, tmp_path):
    replay(tmp_path, 0, 100)
    driver.get(f"{live_app.url}/markets/{MARKET}/")
    wait_until(driver, lambda d: connection_state(d) == "live", message="websocket never connected")

    live_app.stop()
    wait_until(driver, lambda d: connection_state(d) == "reconnecting", message="indicator ignored the drop")
    assert driver.find_element(By.CSS_SELECTOR, "#conn-state .conn-label").text == "Page updates: reconnecting…"
    screenshot(driver, "market-reconnecting")

    live_app.start()
    wait_until(driver, lambda d: connection_state(d) == "live", message="did not reconnect")
    assert driver.find_element(By.CSS_SELECTOR, "#conn-state .conn-label").text == "Page updates: on"


CONTRAST_JS = """
function lum(rgb) {
  const [r, g, b] = rgb.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function rgba(css) { return css.match(/[\\d.]+/g).map(Number); }
function background(el) {
  for (; el; el = el.parentElement) {
    const c = rgba(getComputedStyle(el).backgroundColor);
    if (c.length < 4 || c[3] > 0) return c.slice(0, 3);
  }
  return [255, 255, 255];
}
const failures = [];
for (const el of document.querySelectorAll("body *")) {
  const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
  if (!own || !el.offsetParent && getComputedStyle(el).position !== "fixed") continue;
  const style = getComputedStyle(el);
  const [fg, bg] = [lum(rgba(style.color).slice(0, 3)), lum(background(el))];
  const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
  const large = parseFloat(style.fontSize) >= 24 || (parseFloat(style.fontSize) >= 18.66 && style.fontWeight >= 700);
  if (ratio < (large ? 3 : 4.5)) {
    failures.push(`${el.tagName}.${el.className} "${el.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}`);
  }
}
return failures;
"""

UNLABELLED_JS = """
return [...document.querySelectorAll("input:not([type=hidden]), select, textarea, button, a[href]")]
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.textContent.trim())
  .map((el) => el.outerHTML.slice(0, 80));
"""


def test_accessibility_labels_contrast_and_keyboard(live_app, driver, tmp_path, django_user_model):
    replay(tmp_path, 0, 100)
    django_user_model.objects.create_user("trader", password="s3cret-pass")
    for path in ["/accounts/login/", "/", f"/markets/{MARKET}/", "/models/"]:
        driver.get(live_app.url + path)
        for landmark in ["header", "nav", "main", "footer"]:
            assert driver.find_elements(By.TAG_NAME, landmark), f"{path}: no <{landmark}>"
        assert driver.find_element(By.TAG_NAME, "h1").text
        assert driver.execute_script(UNLABELLED_JS) == [], path
        assert driver.execute_script(CONTRAST_JS) == [], path

    # Keyboard only: skip link first, range buttons reachable and operable, login form submits.
    driver.get(f"{live_app.url}/markets/{MARKET}/")
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    assert driver.switch_to.active_element.text == "Skip to content"
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    assert driver.switch_to.active_element.get_attribute("id") == "main"
    for _ in range(10):
        driver.switch_to.active_element.send_keys(Keys.TAB)
        if driver.switch_to.active_element.get_attribute("data-range") == "6h":
            break
    focused = driver.switch_to.active_element
    assert focused.get_attribute("data-range") == "6h"
    assert driver.execute_script("return getComputedStyle(arguments[0]).outlineStyle", focused) != "none"
    focused.send_keys(Keys.SPACE)
    assert focused.get_attribute("aria-pressed") == "true"
    wait_until(driver, lambda d: "range=6h" in d.current_url)

    driver.get(live_app.url + "/accounts/login/")
    driver.find_element(By.ID, "id_username").send_keys("trader")
    driver.find_element(By.ID, "id_password").send_keys("s3cret-pass", Keys.ENTER)
    wait_until(driver, lambda d: d.current_url.rstrip("/") == live_app.url, message="login did not land on /")
    assert driver.find_element(By.CSS_SELECTOR, ".account .username").text == "trader"
    assert not driver.find_elements(By.LINK_TEXT, "Admin")  # staff only
    driver.set_window_size(390, 844)  # a phone
    driver.get(f"{live_app.url}/markets/{MARKET}/")
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(driver, "market-phone")
    driver.set_window_size(1280, 900)


def test_api_docs_render_offline_and_no_page_loads_from_another_host(live_app, driver, tmp_path):
    """Swagger UI comes from the vendored sidecar; no page asks a CDN (or any other host) for anything."""
    replay(tmp_path, 0, 100)
    driver.get(live_app.url + "/api/docs/")
    wait_until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title"), message="no Swagger UI")
    assert "cryptopred API" in driver.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text
    wait_until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"), message="no endpoints listed")
    screenshot(driver, "api-docs")
    pages = ["/api/docs/", "/", "/models/", "/accounts/login/", *(f"/markets/{MARKET}/?range={r}" for r in RANGES)]
    for path in pages:
        if path != "/api/docs/":
            driver.get(live_app.url + path)
        urls = driver.execute_script(RESOURCE_URLS_JS)
        assert [u for u in urls if not u.startswith(live_app.url + "/")] == [], path
        assert foreign_requests(driver, live_app.url) == [], path


def test_the_content_security_policy_refuses_an_injected_inline_script(live_app, driver, tmp_path):
    """What an HTML injection would add to a page does not run, and the check of every test would see it."""
    replay(tmp_path, 0, 100)
    driver.get(live_app.url + "/")
    driver.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.injected = true;';"
        "document.body.appendChild(s);"
    )
    assert driver.execute_script("return window.injected === undefined")
    refused = csp_violations(driver)
    assert refused and "script-src 'self'" in refused[0]


LAPTOP, PHONE = (1366, 768), (390, 844)
SIZES = {"laptop": LAPTOP, "phone": PHONE}


def full_day(tmp_path) -> Market:
    """The bundled real day: 6 h replayed and trained on (the model forced past the gate if it rejects it, as
    make demo does), then the rest replayed with that model serving."""
    from cryptopred import demo

    history, live, _ = demo.split_trades(SAMPLE, tmp_path / "day", 6 * 3600)
    call_command("replay", str(history), market=MARKET, stdout=None)
    market = Market.objects.get(exchange="gemini", base="ETH", quote="USD")
    Market.objects.filter(pk=market.pk).update(enabled=True)
    model = train_market(market, window_s=6 * 3600)
    if model.status != ModelArtifact.Status.ACTIVE:
        registry.promote(model, "browser test: served although the gate rejected it")
    call_command("replay", str(live), market=MARKET, stdout=None)
    return market


def resize(driver, size: tuple[int, int]) -> None:
    driver.set_window_size(*size)
    wait_until(driver, lambda d: d.execute_script("return window.innerWidth") <= size[0], timeout=5)


def overflowing(driver, selector: str) -> list[str]:
    """Elements matching selector whose content is wider than their box (a horizontal scrollbar)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])]"
        ".filter((el) => el.scrollWidth > el.clientWidth + 1)"
        ".map((el) => `${el.className}: ${el.scrollWidth} > ${el.clientWidth}`);",
        selector,
    )


def test_every_range_is_drawn_whole_at_laptop_and_phone_width(live_app, driver, tmp_path):
    market = full_day(tmp_path)
    candles = Candle.objects.filter(market=market, interval_s=market.interval_s)
    span_stored = (candles.latest("start").start - candles.earliest("start").start).total_seconds()
    try:
        for size_name, size in SIZES.items():
            resize(driver, size)
            for name, seconds in RANGES.items():
                driver.get(f"{live_app.url}/markets/{MARKET}/?range={name}")
                wait_until(driver, lambda d: int(chart(d).get_attribute("data-candles")) > 0, message="no candles")
                wait_until(driver, lambda d: chart(d).get_attribute("data-visible-to"), message="no visible range")
                drawn = int(chart(driver).get_attribute("data-interval"))
                assert drawn % market.interval_s == 0 and drawn == chart_interval(market, name)
                label = interval_label(drawn)
                assert driver.find_element(By.ID, "chart-title").text.startswith(f"{label} candles")
                assert f"{label} candles" in driver.find_element(By.CSS_SELECTOR, ".legend").text

                def span(d):
                    return float(chart(d).get_attribute("data-visible-to")) - float(
                        chart(d).get_attribute("data-visible-from")
                    )

                expected = min(seconds, span_stored) - 2 * drawn
                wait_until(driver, lambda d, e=expected: span(d) >= e, timeout=10, message=f"{name}: too short a span")
                # Room left of the first bar, so an axis label centred on it (the day's "07-01") is not cut.
                assert float(chart(driver).get_attribute("data-logical-from")) < 0
                assert span(driver) <= seconds + 3 * drawn
                if size_name == "laptop":
                    # The chart fills its card: no blank area under the legend.
                    gap = driver.execute_script(
                        "const p = document.querySelector('.chart-panel').getBoundingClientRect();"
                        "const l = document.querySelector('.legend').getBoundingClientRect();"
                        "return p.bottom - l.bottom;"
                    )
                    assert gap < 60, f"{gap}px blank under the chart"
                    assert overflowing(driver, ".recent .table-wrap") == []  # no column clipped at 1366 px
                assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
                screenshot(driver, f"market-{name}-{size_name}")
        # The time axis is labelled as every page writes times: the 24h chart of 1 July starts at "07-01", not "Jul".
        labels = driver.execute_script(
            "const T = LightweightCharts.TickMarkType, label = window.Cryptopred.fmt.axisLabel;"
            "return [T.Month, T.DayOfMonth, T.Time, T.TimeWithSeconds].map((type) => label(1625119230, type, T));"
        )
        assert labels == ["07-01", "07-01", "06:00", "06:00:30"]
    finally:
        resize(driver, (1280, 900))


def test_overview_models_and_admin_fit_laptop_and_phone(live_app, driver, tmp_path, django_user_model):
    market = full_day(tmp_path)
    model = ModelArtifact.objects.get(market=market, status=ModelArtifact.Status.ACTIVE)
    forced = model.events.filter(action="gate", to_status=ModelArtifact.Status.REJECTED).exists()
    django_user_model.objects.create_superuser("boss", "boss@example.com", "s3cret-pass")
    try:
        for size_name, size in SIZES.items():
            resize(driver, size)
            driver.get(live_app.url + "/")
            card = driver.find_element(By.CSS_SELECTOR, f'.market-card[data-market="{MARKET}"]')
            spark = card.find_element(By.CSS_SELECTOR, "svg.sparkline")
            assert spark.is_displayed() and spark.size["height"] > 40
            assert len(spark.find_element(By.CSS_SELECTOR, ".spark-line").get_attribute("points").split()) > 50
            assert spark.find_elements(By.CSS_SELECTOR, ".spark-band")
            assert model_label(model) in card.find_element(By.CSS_SELECTOR, '[data-field="model"]').text
            screenshot(driver, f"overview-{size_name}")

            driver.get(f"{live_app.url}/markets/{MARKET}/")
            notes = driver.find_elements(By.CSS_SELECTOR, '[data-field="model-notes"]')
            assert bool(notes) == forced or not forced
            if forced:
                assert "rejected" in notes[0].text

            widths = [size[0], 2200] if size_name == "laptop" else [size[0]]
            for width in widths:
                resize(driver, (width, size[1]))
                driver.get(live_app.url + "/models/")
                assert driver.find_elements(By.CSS_SELECTOR, ".models-table .details")
                assert overflowing(driver, ".table-wrap") == [], width
                assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
            resize(driver, size)
            screenshot(driver, f"models-{size_name}")

        # The admin, logged in as staff.
        resize(driver, LAPTOP)
        driver.get(live_app.url + "/admin/login/")
        assert "cryptopred admin" in driver.find_element(By.ID, "site-name").text
        driver.find_element(By.ID, "id_username").send_keys("boss")
        driver.find_element(By.ID, "id_password").send_keys("s3cret-pass", Keys.ENTER)
        wait_until(driver, lambda d: "/admin/login/" not in d.current_url, message="admin login failed")
        for size_name, size in SIZES.items():
            resize(driver, size)
            driver.get(live_app.url + "/admin/modeling/modelartifact/")
            screenshot(driver, f"admin-models-{size_name}")
            if size_name == "laptop":
                assert overflowing(driver, "#changelist .results") == []
            driver.get(f"{live_app.url}/admin/modeling/modelartifact/{model.pk}/change/")
            buttons = [
                b.get_attribute("value") for b in driver.find_elements(By.CSS_SELECTOR, ".model-status-actions input")
            ]
            assert buttons == ["Promote to active", "Roll back to the previous model", "Retire"]
            assert not driver.find_elements(By.NAME, "_save") and not driver.find_elements(
                By.CSS_SELECTOR, ".deletelink"
            )
            screenshot(driver, f"admin-model-{size_name}")
        resize(driver, LAPTOP)
        driver.find_element(By.CSS_SELECTOR, 'input[name="_status_retire"]').click()
        wait_until(driver, lambda d: "done" in d.find_element(By.CSS_SELECTOR, ".messagelist").text)
        model.refresh_from_db()
        assert model.status == ModelArtifact.Status.RETIRED
        assert model.events.filter(action="retire", actor__username="boss").exists()
    finally:
        resize(driver, (1280, 900))


BITSTAMP = "bitstamp:BTC-USD"
CALLS = {"▲": "up", "▼": "down", "■": "flat"}


def bitstamp_trained(tmp_path, settings) -> tuple[Market, list]:
    """Bitstamp's first 40 min of book and trades replayed and trained on (each horizon's model served, as make demo
    --promote does); returns the market and the files of the rest, book first."""
    from cryptopred import demo

    split = demo.split_sample(demo.BITSTAMP, settings.BASE_DIR, tmp_path / "bitstamp", 40 * 60)
    for path in split.history:
        call_command("replay", str(path), market=BITSTAMP, stdout=None)
    market = Market.objects.get(exchange="bitstamp")
    Market.objects.filter(pk=market.pk).update(enabled=True)
    settings.TRAIN_MIN_ROWS = 50
    for artifact in train_horizons(market, window_s=40 * 60):
        if artifact.status != ModelArtifact.Status.ACTIVE:
            registry.promote(artifact, "browser test: served although the gate rejected it")
    return market, split


def replay_next(split, minutes: int, tmp_path) -> None:
    """The next minutes of Bitstamp after split's cut, book then trades, through the live pipeline."""
    from cryptopred import demo

    until = split.cut + timedelta(minutes=minutes)
    for path in split.live:
        part = tmp_path / f"next-{path.name}"
        demo.split_at(path, part, tmp_path / f"after-{path.name}", until)
        call_command("replay", str(part), market=BITSTAMP, stdout=None)


def directions(driver) -> list[dict]:
    """Every direction cell of the page: the arrow's call, its class and the P(up) shown next to it."""
    return driver.execute_script(
        "return [...document.querySelectorAll('[data-field=direction]')].map((el) => ({"
        " text: el.textContent.trim(),"
        " cls: el.querySelector('.dir') ? el.querySelector('.dir').className : null,"
        " up: el.querySelector('[data-field=p-up]') ? el.querySelector('[data-field=p-up]').textContent : null}));"
    )


def assert_consistent(cells: list[dict]) -> None:
    for cell in cells:
        if cell["cls"] is None:
            assert cell["text"] == "—" and cell["up"] is None, cell
            continue
        arrow, call = cell["text"].split()[:2]
        shown = int(cell["up"].removeprefix("P(up) ").removesuffix(" %"))
        expected = "up" if shown > 50 else "down" if shown < 50 else "flat"
        assert CALLS[arrow] == call == expected and cell["cls"] == f"dir dir-{expected}", cell


def test_the_direction_record_card_and_arrows_follow_live_predictions(live_app, driver, tmp_path, settings):
    from core.formatting import bps, move, percent, up_percent
    from inference.metrics import live_metrics

    market, split = bitstamp_trained(tmp_path, settings)
    driver.get(f"{live_app.url}/markets/{BITSTAMP}/")
    wait_until(driver, lambda d: connection_state(d) == "live", message="websocket never connected")
    before = text_of(driver, "#direction-record")

    replay_next(split, 15, tmp_path)  # scored live: the model's calls, the rule and the base rate on the same windows
    served = live_metrics(market)["served"]
    d, v = served["direction"], served["value"]["timing"]
    assert d["moved_rows"] > 10 and v["decisions"] > 10 and d["rule_accuracy"] is not None
    # Refreshed as scoring moves it (the last windows may be scored after the last refresh: compared below).
    rows = "#direction-record tbody tr"
    wait_until(
        driver,
        lambda d: text_of(d, "#direction-record") != before and d.find_elements(By.CSS_SELECTOR, rows),
        message="direction card is stale",
    )
    calls = [row.get_attribute("data-call") for row in driver.find_elements(By.CSS_SELECTOR, rows)]
    assert calls == ["served", "rule", "base"]

    # What the websocket pushed: the newest prediction of each horizon, its arrow from its P(up), its move.
    decimals = price_decimals(market)
    newest = market.predictions.filter(horizon=1).latest("made_at")
    card = "#latest-card"
    wait_until(
        driver,
        lambda d: text_of(d, f'{card} [data-field="target-time"]') == window(newest),
        message="latest prediction is stale",
    )
    assert text_of(driver, f'{card} [data-field="p-up"]') == f"P(up) {up_percent(newest.p_up)} %"
    assert text_of(driver, f'{card} [data-field="pred-move"]') == move(newest, decimals)
    cells = directions(driver)
    assert len(cells) == 4  # the latest card and the three horizons
    assert_consistent(cells)
    for name, size in SIZES.items():
        resize(driver, size)
        assert not overflowing(driver, "#direction-card, #direction-card .table-wrap"), name
        screenshot(driver, f"direction-card-{name}")

    driver.get(f"{live_app.url}/markets/{BITSTAMP}/")  # the same, rendered by the server
    assert_consistent(directions(driver))
    for key in ("accuracy", "rule_accuracy", "base_rate_accuracy"):
        assert text_of(driver, f'#direction-card [data-direction="{key}"]') == percent(d[key]), key
    for key in ("buy_bps", "sell_bps", "rule_buy_bps", "rule_sell_bps"):
        assert text_of(driver, f'#direction-card [data-timing="{key}"]') == bps(v[key]), key
    assert f"Timing: {v['decisions']:,} decisions" in text_of(driver, "#direction-card")
    assert text_of(driver, f'{card} [data-field="pred-move"]') == move(newest, decimals)
