/* Market page: candles + predicted price and 80 % band on a Lightweight Charts chart, kept live over the websocket.
   Each range is drawn whole at the candle interval its button names (coarser candles merged server-side by the
   candles API's ?interval=); live candles of the market's interval are merged into the newest bar here.
   The chart and the cards follow the page's horizon (?horizon=N, the shortest by default); the horizons table
   shows every one. */
(function () {
  "use strict";
  const C = window.Cryptopred;
  const LABEL_ROOM_PX = 24; // half the width of a time-axis label, kept free at each end of the chart
  const LC = window.LightweightCharts;
  const RANGES = { "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400 };
  const root = document.querySelector(".market-layout");
  const page = document.querySelector("main");
  const chartEl = document.getElementById("chart");
  const statusEl = document.getElementById("chart-status");
  const market = root.dataset.market;
  const interval = Number(root.dataset.interval); // the market's candle interval (s)
  const decimals = Number(root.dataset.decimals);
  const horizon = Number(root.dataset.horizon); // the horizon the chart and the latest-prediction card show
  const latestCard = document.getElementById("latest-card");
  const api = `/api/v1/markets/${encodeURIComponent(market)}`;
  let range = chartEl.dataset.range;
  let barInterval = Number(chartEl.dataset.interval); // the interval drawn (s), a multiple of the market's
  let lastCandle = root.dataset.lastCandle ? C.fmt.unix(root.dataset.lastCandle) : null;
  let lastClose = null;

  const chart = LC.createChart(chartEl, {
    autoSize: true,
    // Attribution is given as a labelled link under the chart instead of the unlabelled logo.
    layout: { background: { color: "#ffffff" }, textColor: "#16181d", attributionLogo: false },
    grid: { vertLines: { color: "#eef0f3" }, horzLines: { color: "#eef0f3" } },
    rightPriceScale: { borderColor: "#d5d9e0" },
    timeScale: {
      borderColor: "#d5d9e0", timeVisible: true, secondsVisible: true, minBarSpacing: 0.5, tickMarkFormatter: (time, type) => C.fmt.axisLabel(time, type, LC.TickMarkType),
    },
    localization: { priceFormatter: (p) => C.fmt.price(p, decimals) },
  });
  // Band and prediction first, candles last: the candles are drawn on top and stay visible under the line.
  const band = { color: "#7a5cc2", lineWidth: 1, lineStyle: LC.LineStyle.Dashed, lastValueVisible: false, priceLineVisible: false };
  const lowerSeries = chart.addSeries(LC.LineSeries, band);
  const upperSeries = chart.addSeries(LC.LineSeries, band);
  const predSeries = chart.addSeries(LC.LineSeries, {
    color: "rgba(31, 95, 191, 0.6)", lineWidth: 1, title: "predicted", crosshairMarkerVisible: false,
  });
  const candleSeries = chart.addSeries(LC.CandlestickSeries, {
    upColor: "#0a7a3d", downColor: "#b3261e", wickUpColor: "#0a7a3d", wickDownColor: "#b3261e", borderVisible: false,
    title: "last trade", // the price label of the final candle: its close, the page's "Last trade"
  });

  /* What the test (and a curious reader) can check: the time span the chart shows. */
  chart.timeScale().subscribeVisibleTimeRangeChange((visible) => {
    chartEl.dataset.visibleFrom = visible ? visible.from : "";
    chartEl.dataset.visibleTo = visible ? visible.to : "";
  });
  chart.timeScale().subscribeVisibleLogicalRangeChange((shown) => {
    chartEl.dataset.logicalFrom = shown ? shown.from : ""; // below 0: room left of the first bar
  });

  const candles = new Map(); // bar start (s) -> bar
  const predictions = new Map(); // start of the bar whose close is predicted (s) -> prediction

  function bucket(t) {
    return Math.floor(t / barInterval) * barInterval;
  }

  function bar(c) {
    return { time: bucket(C.fmt.unix(c.start)), open: +c.open, high: +c.high, low: +c.low, close: +c.close };
  }

  /* A prediction for target_time is the close of the window ending then: drawn in the slot of the bar holding that
     window, ahead of the last candle. With coarser bars, the prediction of each bar's last window stands for it. */
  function slot(p) {
    return bucket(C.fmt.unix(p.target_time) - interval);
  }

  function keepPrediction(p) {
    const t = slot(p);
    const held = predictions.get(t);
    if (!held || held.target_time <= p.target_time) predictions.set(t, p);
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
    const from = bucket((lastCandle ?? 0) - RANGES[range]);
    for (const map of [candles, predictions]) for (const t of map.keys()) if (t < from) map.delete(t);
  }

  /* Every bar in view (as fitContent would), with room at both ends for an axis label centred on the first or last
     bar: a day's first label ("07-01") sits on the first bar of a 24h chart, and the bars alone would cut it in half.
     The bars are counted here: the time scale applies a fit only when it next draws. */
  function fitWithRoomForLabels() {
    const scale = chart.timeScale();
    const bars = new Set([...candles.keys(), ...predictions.keys()]).size; // the scale's points: both series' times
    const width = scale.width();
    if (bars < 2 || width <= 4 * LABEL_ROOM_PX) {
      scale.fitContent();
      return;
    }
    const room = (LABEL_ROOM_PX * (bars - 1)) / (width - 2 * LABEL_ROOM_PX);
    scale.setVisibleLogicalRange({ from: -room, to: bars - 1 + room });
  }

  async function loadHistory(fit) {
    const end = (lastCandle ?? Math.floor(Date.now() / 1000)) + interval;
    const start = new Date(bucket(end - RANGES[range]) * 1000).toISOString();
    statusEl.textContent = "Loading history…";
    try {
      const query = `start=${encodeURIComponent(start)}&limit=1000`;
      const [cs, ps] = await Promise.all([
        C.getAllPages(`${api}/candles/?${query}&interval=${barInterval}s`),
        C.getAllPages(`${api}/predictions/?${query}&horizon=${horizon}`),
      ]);
      candles.clear();
      predictions.clear();
      cs.forEach((c) => candles.set(C.fmt.unix(c.start), bar(c)));
      ps.forEach(keepPrediction);
      if (cs.length) {
        // lastCandle is the newest window of the market's interval (known from the page or the stream).
        const newest = cs[cs.length - 1];
        if (barInterval === interval || lastCandle === null) lastCandle = Math.max(lastCandle ?? 0, C.fmt.unix(newest.start));
        lastClose = newest.close;
      }
      drawCandles();
      drawPredictions();
      if (fit) fitWithRoomForLabels();
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
        // The page runs oldest first: ask for the last 20 windows only (every horizon of each), keep the newest 20.
        const since = new Date((lastCandle - 20 * interval) * 1000).toISOString();
        const body = await C.getJSON(`${api}/predictions/?limit=1000&start=${encodeURIComponent(since)}`);
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
      const cells = [
        [C.fmt.clock(p.made_at)], [`+${p.horizon}`], [C.fmt.clock(p.target_time)], [C.fmt.modelLabel(p.model)],
        [C.fmt.price(p.price, decimals), "num"], [C.fmt.interval(p.lower, p.upper, decimals), "num"],
        [C.fmt.price(p.realized, decimals), "num"], [C.fmt.errorBps(p), "num"],
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

  /* A market-interval candle merged into the bar that holds it (the bar itself when the intervals are equal). */
  function onCandle(msg) {
    const t = C.fmt.unix(msg.start);
    const b = bar(msg);
    const held = candles.get(b.time);
    const newest = lastCandle === null || t >= lastCandle;
    if (held && barInterval !== interval) {
      b.open = held.open;
      b.high = Math.max(held.high, b.high);
      b.low = Math.min(held.low, b.low);
      if (!newest) b.close = held.close; // a late window inside the bar: its close is not the bar's
    }
    candles.set(b.time, b);
    if (newest) {
      lastCandle = t;
      lastClose = msg.close;
      page.querySelector('[data-field="last-price"]').textContent = C.fmt.price(msg.close, decimals);
      candleSeries.update(b);
      chartEl.dataset.candles = candles.size;
      chartEl.dataset.lastCandle = msg.start;
    } else {
      drawCandles(); // a late or amended window: redraw in order
    }
    if (candles.size > 1.5 * RANGES[range] / barInterval) {
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
    refreshMetrics();
    try {
      const response = await fetch(`${location.pathname}model/?horizon=${horizon}`, { credentials: "same-origin" });
      if (response.ok) card.innerHTML = await response.text();
    } catch (err) {
      console.warn(err);
    }
  }

  function onPrediction(msg) {
    const row = document.querySelector(`#horizons tr[data-horizon="${msg.horizon}"]`);
    if (row) {
      C.showPrediction(row, msg, lastClose);
    }
    if (msg.horizon !== horizon) return;
    keepPrediction(msg);
    drawPredictions();
    C.showPrediction(latestCard, msg, lastClose);
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
      barInterval = Number(button.dataset.interval);
      chartEl.dataset.range = range;
      chartEl.dataset.interval = barInterval;
      document.querySelector('[data-field="chart-interval"]').textContent = button.dataset.intervalLabel;
      document.querySelector('[data-field="legend-candles"]').textContent = `${button.dataset.intervalLabel} candles`;
      document.querySelectorAll(".range button").forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
      const url = new URL(location.href);
      url.searchParams.set("range", range);
      history.replaceState(null, "", url);
      loadHistory(true);
    });
  });

  /* Fragments of the page rendered again by the server (the same templates as the page), parsed. */
  async function fragment(path) {
    const response = await fetch(`${location.pathname}${path}?horizon=${horizon}`, { credentials: "same-origin" });
    if (!response.ok) return null;
    const holder = document.createElement("div");
    holder.innerHTML = await response.text();
    return holder;
  }

  function swap(holder, id) {
    const fresh = holder && holder.querySelector(`#${id}`);
    if (fresh) document.getElementById(id).replaceWith(fresh);
  }

  /* The direction calls' record, the accuracy panel (live metrics per served forecaster) and the horizons
     table, as scoring moves them. */
  async function refreshMetrics() {
    try {
      const [record, horizons] = await Promise.all([fragment("accuracy/"), fragment("horizons/")]);
      const open = document.querySelector("#accuracy details[open]");
      if (record && open) record.querySelector("#accuracy details")?.setAttribute("open", "");
      swap(record, "direction-record");
      swap(record, "accuracy");
      swap(horizons, "horizons");
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
