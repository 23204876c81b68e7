/* Market page: candles + predicted price and 80 % band on a Lightweight Charts chart, kept live over the websocket. */
(function () {
  "use strict";
  const C = window.Cryptopred;
  const LC = window.LightweightCharts;
  const RANGES = { "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400 };
  const root = document.querySelector(".market-layout");
  const page = document.querySelector("main");
  const chartEl = document.getElementById("chart");
  const statusEl = document.getElementById("chart-status");
  const market = root.dataset.market;
  const interval = Number(root.dataset.interval);
  const api = `/api/v1/markets/${encodeURIComponent(market)}`;
  let range = chartEl.dataset.range;
  let lastCandle = root.dataset.lastCandle ? C.fmt.unix(root.dataset.lastCandle) : null;
  let lastClose = null;

  const chart = LC.createChart(chartEl, {
    autoSize: true,
    // Attribution is given as a labelled link under the chart instead of the unlabelled logo.
    layout: { background: { color: "#ffffff" }, textColor: "#16181d", attributionLogo: false },
    grid: { vertLines: { color: "#eef0f3" }, horzLines: { color: "#eef0f3" } },
    rightPriceScale: { borderColor: "#d5d9e0" },
    timeScale: { borderColor: "#d5d9e0", timeVisible: true, secondsVisible: true },
  });
  const candleSeries = chart.addSeries(LC.CandlestickSeries, {
    upColor: "#0a7a3d", downColor: "#b3261e", wickUpColor: "#0a7a3d", wickDownColor: "#b3261e", borderVisible: false,
  });
  const band = { color: "#7a5cc2", lineWidth: 1, lineStyle: LC.LineStyle.Dashed, lastValueVisible: false, priceLineVisible: false };
  const lowerSeries = chart.addSeries(LC.LineSeries, band);
  const upperSeries = chart.addSeries(LC.LineSeries, band);
  const predSeries = chart.addSeries(LC.LineSeries, { color: "#1f5fbf", lineWidth: 2, title: "predicted" });

  const candles = new Map(); // window start (s) -> bar
  const predictions = new Map(); // start of the predicted window (s) -> prediction

  function bar(c) {
    return { time: C.fmt.unix(c.start), open: +c.open, high: +c.high, low: +c.low, close: +c.close };
  }

  /* A prediction for target_time is the close of the window ending then: drawn in that window's slot, ahead of the last candle. */
  function slot(p) {
    return C.fmt.unix(p.target_time) - interval;
  }

  function sorted(map) {
    return [...map.entries()].sort((a, b) => a[0] - b[0]);
  }

  function drawCandles() {
    candleSeries.setData(sorted(candles).map(([, b]) => b));
    chartEl.dataset.candles = candles.size;
    chartEl.dataset.lastCandle = lastCandle ? new Date(lastCandle * 1000).toISOString() : "";
  }

  function drawPredictions() {
    const rows = sorted(predictions);
    predSeries.setData(rows.map(([time, p]) => ({ time, value: +p.price })));
    lowerSeries.setData(rows.map(([time, p]) => ({ time, value: +p.lower })));
    upperSeries.setData(rows.map(([time, p]) => ({ time, value: +p.upper })));
    chartEl.dataset.predictions = predictions.size;
  }

  /* Drop what scrolled out of the selected range, so a long session stays light. */
  function prune() {
    const from = (lastCandle ?? 0) - RANGES[range];
    for (const map of [candles, predictions]) for (const t of map.keys()) if (t < from) map.delete(t);
  }

  async function loadHistory(fit) {
    const end = (lastCandle ?? Math.floor(Date.now() / 1000)) + interval;
    const start = new Date((end - RANGES[range]) * 1000).toISOString();
    statusEl.textContent = "Loading history…";
    try {
      const query = `start=${encodeURIComponent(start)}&limit=1000`;
      const [cs, ps] = await Promise.all([
        C.getAllPages(`${api}/candles/?${query}`),
        C.getAllPages(`${api}/predictions/?${query}`),
      ]);
      candles.clear();
      predictions.clear();
      cs.forEach((c) => candles.set(C.fmt.unix(c.start), bar(c)));
      ps.forEach((p) => predictions.set(slot(p), p));
      if (cs.length) {
        lastCandle = Math.max(lastCandle ?? 0, C.fmt.unix(cs[cs.length - 1].start));
        lastClose = cs[cs.length - 1].close;
      }
      drawCandles();
      drawPredictions();
      if (fit) chart.timeScale().fitContent();
      statusEl.textContent = cs.length ? "" : "No candles in this range yet.";
    } catch (err) {
      statusEl.textContent = `Could not load history (${err.message}).`;
    }
  }

  let recentTimer = null;
  /* Scoring happens at candle close: recent predictions and accuracy are refreshed then,
     at most every 2 s (a replay can push many candles a second). */
  function refreshRecent() {
    if (recentTimer) return;
    recentTimer = setTimeout(async () => {
      recentTimer = null;
      refreshMetrics();
      try {
        const body = await C.getJSON(`${api}/predictions/?limit=20&start=${encodeURIComponent(new Date((lastCandle - 3600) * 1000).toISOString())}`);
        renderRecent(body.results.slice(-20).reverse());
      } catch (err) {
        console.warn(err);
      }
    }, 2000);
  }

  function renderRecent(rows) {
    const tbody = document.querySelector("#recent-predictions tbody");
    tbody.replaceChildren(...rows.map((p) => {
      const tr = document.createElement("tr");
      const error = p.realized === null ? null : Number(p.price) - Number(p.realized);
      const cells = [
        [C.fmt.clock(p.made_at)], [C.fmt.clock(p.target_time)], [C.fmt.price(p.price), "num"],
        [`${C.fmt.price(p.lower)} – ${C.fmt.price(p.upper)}`, "num"], [C.fmt.price(p.realized), "num"],
        [C.fmt.price(error), "num"],
      ];
      cells.forEach(([text, cls]) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.append(td);
      });
      return tr;
    }));
  }

  function onCandle(msg) {
    const b = bar(msg);
    candles.set(b.time, b);
    const newest = lastCandle === null || b.time >= lastCandle;
    if (newest) {
      lastCandle = b.time;
      lastClose = msg.close;
      page.querySelector('[data-field="last-price"]').textContent = C.fmt.price(msg.close);
      candleSeries.update(b);
      chartEl.dataset.candles = candles.size;
      chartEl.dataset.lastCandle = msg.start;
    } else {
      drawCandles(); // a late or amended window: redraw in order
    }
    if (candles.size > 1.5 * RANGES[range] / interval) {
      prune();
      drawCandles();
      drawPredictions();
    }
    refreshRecent();
  }

  /* A promotion or rollback shows up as a prediction from another model: reload the "model in use" card. */
  async function followModel(id) {
    const card = document.getElementById("model-card");
    if (card.dataset.modelId === id) return;
    card.dataset.modelId = id;
    try {
      const response = await fetch(`${location.pathname}model/`, { credentials: "same-origin" });
      if (response.ok) card.innerHTML = await response.text();
    } catch (err) {
      console.warn(err);
    }
  }

  /* "P(up) 64 % · model": the probability that the target ends higher rather than lower, and what gave it. */
  function showUp(msg) {
    const el = page.querySelector('[data-field="p-up"]');
    if (!el) return;
    if (msg.p_up === null || msg.p_up === undefined) {
      el.textContent = "—";
      return;
    }
    el.textContent = `P(up) ${Math.round(100 * msg.p_up)} % `;
    const source = document.createElement("span");
    source.className = "muted";
    source.textContent = `· ${msg.direction_source}`;
    el.append(source);
  }

  function onPrediction(msg) {
    predictions.set(slot(msg), msg);
    drawPredictions();
    C.showPrediction(page, msg, lastClose);
    showUp(msg);
    followModel(String(msg.model && msg.model.id ? msg.model.id : ""));
  }

  const stream = new C.Stream({
    indicator: document.getElementById("conn-state"),
    onOpen(reconnected) {
      if (reconnected) loadHistory(false); // fill what was missed while disconnected
    },
    onMessage(msg) {
      if (msg.market !== market) return;
      if (msg.type === "candle") onCandle(msg);
      else if (msg.type === "prediction") onPrediction(msg);
    },
  });
  stream.subscribe("candles", market);
  stream.subscribe("predictions", market);

  document.querySelectorAll(".range button").forEach((button) => {
    button.addEventListener("click", () => {
      range = button.dataset.range;
      chartEl.dataset.range = range;
      document.querySelectorAll(".range button").forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
      const url = new URL(location.href);
      url.searchParams.set("range", range);
      history.replaceState(null, "", url);
      loadHistory(true);
    });
  });

  /* The accuracy panel: the inference app's rolling live metrics, next to persistence. */
  async function refreshMetrics() {
    try {
      const served = (await C.getJSON(`${api}/metrics/`)).served;
      document.querySelectorAll("#accuracy [data-metric]").forEach((el) => {
        if (el.dataset.metric === "count") {
          el.textContent = served.count ? `Newest ${served.count} scored predictions` : "No prediction has been scored yet.";
          return;
        }
        const [group, key] = el.dataset.metric.split(".");
        const value = served[group] ? served[group][key] : null;
        el.textContent = "percent" in el.dataset ? C.fmt.percent(value) : C.fmt.metric(value);
      });
      document.querySelectorAll("#direction-accuracy [data-direction]").forEach((el) => {
        const value = served.direction ? served.direction[el.dataset.direction] : null;
        el.textContent = el.dataset.direction === "moved_rows" ? String(value ?? 0) : C.fmt.percent(value);
      });
    } catch (err) {
      console.warn(err);
    }
  }

  async function refreshState() {
    try {
      C.showMarketState(page, await C.getJSON(`${api}/`));
    } catch (err) {
      console.warn(err);
    }
  }
  setInterval(refreshState, 10000);
  setInterval(() => C.tickAges(page), 1000);
  C.tickAges(page);
  loadHistory(true);
})();
