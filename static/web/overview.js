/* Overview: live last price and prediction per market card, periodic stream state. */
(function () {
  "use strict";
  const C = window.Cryptopred;
  const cards = new Map([...document.querySelectorAll(".market-card")].map((el) => [el.dataset.market, el]));
  const lastClose = new Map();
  const metricsDue = new Map();

  /* Live accuracy of a market, refreshed at most every 5 s after its candles close (when scoring happens). */
  function refreshAccuracy(market) {
    if (metricsDue.has(market)) return;
    metricsDue.set(market, setTimeout(async () => {
      metricsDue.delete(market);
      try {
        const served = (await C.getJSON(`/api/v1/markets/${encodeURIComponent(market)}/metrics/`)).served;
        const el = cards.get(market).querySelector('[data-field="accuracy"]');
        if (!served.count) return;
        el.innerHTML = `${C.fmt.metric(served.model.mae)} vs ${C.fmt.metric(served.persistence.mae)} <span class="muted"></span>`;
        el.querySelector(".muted").textContent =
          `· direction right ${C.fmt.percent(served.model.directional_accuracy)} · last ${served.count} scored`;
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
        card.querySelector('[data-field="last-price"]').textContent = C.fmt.price(msg.close);
        refreshAccuracy(msg.market);
      } else if (msg.type === "prediction") {
        C.showPrediction(card, msg, lastClose.get(msg.market));
      }
    },
  });
  cards.forEach((_, market) => {
    stream.subscribe("candles", market);
    stream.subscribe("predictions", market);
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
