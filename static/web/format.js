/* Shared formatting for the trader pages; mirrors web/templatetags/web_format.py. */
(function () {
  "use strict";
  const grouped = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

  function price(value) {
    if (value === null || value === undefined || value === "") return "—";
    const n = Number(value);
    return Math.abs(n) >= 1 ? grouped.format(n) : String(Number(n.toPrecision(6)));
  }

  function percent(value) {
    return value === null || value === undefined ? "—" : `${(100 * value).toFixed(1)} %`;
  }

  function metric(value) {
    return value === null || value === undefined ? "—" : String(Number(value.toPrecision(4)));
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

  function direction(predicted, from) {
    if (from === null || from === undefined) return "flat";
    const p = Number(predicted), b = Number(from);
    return p > b ? "up" : p < b ? "down" : "flat";
  }

  const ARROWS = { up: "▲", down: "▼", flat: "■" };

  /* Fill the elements marked data-field inside root, as the server templates do. */
  function showPrediction(root, msg, lastClose) {
    const set = (field, text) => root.querySelectorAll(`[data-field="${field}"]`).forEach((el) => { el.textContent = text; });
    set("pred-price", price(msg.price));
    set("pred-interval", `${price(msg.lower)} – ${price(msg.upper)}`);
    set("target-time", `for ${clock(msg.target_time)}`);
    const dir = direction(msg.price, msg.last_close ?? lastClose);
    root.querySelectorAll('[data-field="direction"]').forEach((el) => {
      el.innerHTML = `<span class="dir dir-${dir}"><span aria-hidden="true">${ARROWS[dir]}</span> ${dir}</span>`;
    });
    const model = msg.model && msg.model.id ? `${msg.model.algorithm} v${msg.model.version}` : null;
    root.querySelectorAll('[data-field="model"]').forEach((el) => {
      el.innerHTML = model ? "" : '<span class="persistence">persistence (no active model)</span>';
      if (model) el.textContent = model;
    });
  }

  function showMarketState(root, market) {
    root.querySelectorAll('[data-field="stream-state"]').forEach((el) => {
      el.textContent = market.stream_state.charAt(0).toUpperCase() + market.stream_state.slice(1);
      el.className = `badge state-${market.stream_state}`;
      el.title = market.stream_detail || "";
    });
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

  window.Cryptopred = Object.assign(window.Cryptopred || {}, {
    fmt: { price, percent, metric, unix, clock, stamp, age, direction },
    showPrediction, showMarketState, tickAges, getJSON, getAllPages,
  });
})();
