/* Shared formatting for the trader pages; mirrors web/templatetags/web_format.py:
   prices at the market's decimals, errors in basis points, friendly model labels, "—" for nothing. */
(function () {
  "use strict";
  const formats = new Map();
  const LABELS = { hist_gradient_boosting: "Gradient boosting", ridge: "Ridge", persistence: "Persistence" };

  function empty(value) {
    return value === null || value === undefined || value === "";
  }

  function price(value, decimals = 2) {
    if (empty(value)) return "—";
    const places = Number(decimals);
    if (!formats.has(places)) {
      formats.set(places, new Intl.NumberFormat("en-US", { minimumFractionDigits: places, maximumFractionDigits: places }));
    }
    return formats.get(places).format(Number(value));
  }

  /* A zero-width band is no 80 % interval. */
  function interval(lower, upper, decimals) {
    if (empty(lower) || empty(upper)) return "—";
    return Number(lower) >= Number(upper) ? "no interval yet" : `${price(lower, decimals)} – ${price(upper, decimals)}`;
  }

  /* Predicted minus realized, in basis points of the close the prediction started from. */
  function errorBps(p) {
    if (empty(p.realized) || empty(p.last_close) || !Number(p.last_close)) return "—";
    const bp = ((Number(p.price) - Number(p.realized)) / Number(p.last_close)) * 1e4;
    return `${bp >= 0 ? "+" : "-"}${Math.abs(bp).toFixed(2)}`;
  }

  function modelLabel(model) {
    if (!model || !model.id) return "Persistence";
    const name = LABELS[model.algorithm] || model.algorithm.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
    return `${name} v${model.version}`;
  }

  function percent(value) {
    return empty(value) ? "—" : `${(100 * value).toFixed(1)} %`;
  }

  /* The market's price decimals, from the nearest element that carries them. */
  function decimalsOf(el) {
    const holder = el.closest("[data-decimals]") || el.querySelector("[data-decimals]");
    return holder ? Number(holder.dataset.decimals) : 2;
  }

  /* ISO-8601 "...Z" -> UNIX seconds (the chart's time unit). */
  function unix(iso) {
    return Math.floor(Date.parse(iso) / 1000);
  }

  function clock(iso) {
    return iso ? new Date(iso).toISOString().slice(11, 19) : "";
  }

  function stamp(iso) {
    return iso ? new Date(iso).toISOString().slice(0, 19).replace("T", " ") : "";
  }

  function age(seconds) {
    if (seconds < 90) return `${Math.max(0, Math.round(seconds))} s ago`;
    if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 48 * 3600) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} d ago`;
  }

  /* P(up) in whole percent, as shown; the call derived from that figure, so the arrow never contradicts it. */
  function upPercent(pUp) {
    return empty(pUp) ? null : Math.round(100 * Number(pUp));
  }

  function upCall(pUp) {
    const shown = upPercent(pUp);
    return shown === null ? null : shown > 50 ? "up" : shown < 50 ? "down" : "flat";
  }

  /* The predicted move at the market's decimals, signed; "flat" when it rounds to zero. */
  function move(predicted, from, decimals) {
    if (empty(predicted) || empty(from)) return "";
    const text = price(Number(predicted) - Number(from), decimals);
    if (!/[1-9]/.test(text)) return "flat";
    return text.startsWith("-") ? text : `+${text}`;
  }

  const ARROWS = { up: "▲", down: "▼", flat: "■" };

  /* Fill the elements marked data-field inside root, as the server templates do. */
  function showPrediction(root, msg, lastClose) {
    const d = decimalsOf(root);
    const set = (field, text) => root.querySelectorAll(`[data-field="${field}"]`).forEach((el) => { el.textContent = text; });
    set("pred-price", price(msg.price, d));
    set("pred-interval", interval(msg.lower, msg.upper, d));
    set("target-time", `${msg.target} at ${clock(msg.target_time)}, made ${clock(msg.made_at)}`);
    set("pred-move", move(msg.price, msg.last_close ?? lastClose, d));
    const call = upCall(msg.p_up);
    root.querySelectorAll('[data-field="direction"]').forEach((el) => {
      el.textContent = call ? "" : "—";
      if (!call) return;
      const dir = document.createElement("span");
      dir.className = `dir dir-${call}`;
      dir.innerHTML = `<span aria-hidden="true">${ARROWS[call]}</span> ${call}`;
      const up = document.createElement("span");
      up.className = "num";
      up.dataset.field = "p-up";
      up.textContent = `P(up) ${upPercent(msg.p_up)} %`;
      const source = document.createElement("span");
      source.className = "muted";
      source.textContent = `· ${msg.direction_model || msg.direction_source}`;
      el.append(dir, " ", up, " ", source);
    });
    const model = msg.model && msg.model.id ? modelLabel(msg.model) : null;
    root.querySelectorAll('[data-field="model"]').forEach((el) => {
      el.innerHTML = model ? "" : '<span class="persistence">Persistence (no active model)</span>';
      if (model) el.textContent = model;
    });
  }

  function showMarketState(root, market) {
    root.querySelectorAll('[data-field="stream-state"]').forEach((el) => {
      el.textContent = market.stream_state.charAt(0).toUpperCase() + market.stream_state.slice(1);
      el.className = `badge state-${market.stream_state}`;
      el.title = market.stream_detail || "";
    });
    // Why a stream is not live, on the page itself (touch screens have no tooltips).
    const why = ["live", "replay"].includes(market.stream_state) ? "" : market.stream_detail || "";
    root.querySelectorAll('[data-field="stream-detail"]').forEach((el) => { el.textContent = why; });
    root.querySelectorAll('[data-field="trade-age"]').forEach((el) => { el.dataset.ts = market.last_trade_at || ""; });
  }

  /* "2021-07-01 06:00:03 (12 s ago)"; during a replay the age against the wall clock means nothing. */
  function tickAges(root) {
    const now = Date.now() / 1000;
    const replay = root.querySelector('[data-field="stream-state"]')?.classList.contains("state-replay");
    root.querySelectorAll('[data-field="trade-age"]').forEach((el) => {
      const iso = el.dataset.ts;
      if (!iso) { el.textContent = "none yet"; return; }
      el.textContent = replay ? `${stamp(iso)} (replayed)` : `${stamp(iso)} (${age(now - unix(iso))})`;
    });
  }

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  /* Every page of a cursor-paginated endpoint, bounded so a huge range cannot hang the page. */
  async function getAllPages(url, maxPages = 50) {
    const items = [];
    for (let page = 0; url && page < maxPages; page++) {
      const body = await getJSON(url);
      items.push(...body.results);
      url = body.next;
    }
    return items;
  }

  /* A chart's time-axis label, ISO and 24-hour UTC as every page writes times (the chart library's own labels call
     the first tick of a month "Jul", which reads as a date cut short). types: the library's TickMarkType. */
  function axisLabel(time, type, types) {
    const iso = new Date(time * 1000).toISOString(); // 2021-07-01T06:00:00.000Z
    if (type === types.Year) return iso.slice(0, 4);
    if (type === types.Month || type === types.DayOfMonth) return iso.slice(5, 10);
    return iso.slice(11, type === types.TimeWithSeconds ? 19 : 16);
  }

  window.Cryptopred = Object.assign(window.Cryptopred || {}, {
    fmt: { axisLabel, price, interval, errorBps, modelLabel, percent, unix, clock, stamp, age, upPercent, upCall, move, decimalsOf },
    showPrediction, showMarketState, tickAges, getJSON, getAllPages,
  });
})();
