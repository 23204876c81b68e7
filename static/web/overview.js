/* Overview: live last price and prediction per market card, periodic stream state. */
(function () {
  "use strict";
  const C = window.Cryptopred;
  const cards = new Map([...document.querySelectorAll(".market-card")].map((el) => [el.dataset.market, el]));
  const lastClose = new Map();
  const metricsDue = new Map();

  /* Live accuracy of the forecaster serving a market, refreshed at most every 5 s after its candles close (when
     scoring happens): the server renders the line, as on page load. */
  function refreshAccuracy(market) {
    if (metricsDue.has(market)) return;
    metricsDue.set(market, setTimeout(async () => {
      metricsDue.delete(market);
      try {
        const response = await fetch(`/markets/${encodeURIComponent(market)}/accuracy/?line=1`, { credentials: "same-origin" });
        if (response.ok) cards.get(market).querySelector('[data-field="accuracy"]').innerHTML = await response.text();
      } catch (err) {
        console.warn(err);
      }
    }, 5000));
  }

  const stream = new C.Stream({
    indicator: document.getElementById("conn-state"),
    onMessage(msg) {
      const card = cards.get(msg.market);
      if (!card) return;
      if (msg.type === "candle") {
        lastClose.set(msg.market, msg.close);
        card.querySelector('[data-field="last-price"]').textContent = C.fmt.price(msg.close, C.fmt.decimalsOf(card));
        refreshAccuracy(msg.market);
      } else if (msg.type === "prediction") {
        C.showPrediction(card, msg, lastClose.get(msg.market));
      }
    },
  });
  cards.forEach((_, market) => {
    stream.subscribe("candles", market);
    stream.subscribe("predictions", market, Number(cards.get(market).dataset.horizon)); // the card's horizon
  });

  async function refreshStates() {
    try {
      const markets = await C.getAllPages("/api/v1/markets/", 5);
      markets.forEach((m) => cards.has(m.name) && C.showMarketState(cards.get(m.name), m));
    } catch (err) {
      console.warn(err);
    }
  }
  setInterval(refreshStates, 10000);
  const tick = () => cards.forEach((card) => C.tickAges(card));
  setInterval(tick, 1000);
  tick();
})();
