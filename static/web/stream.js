/* Websocket client for /ws/v1/stream/: resubscribes after automatic reconnects and shows its state. */
(function () {
  "use strict";
  // The page's own link to the server (its websocket), not the markets' feeds: each market shows its stream's state.
  const LABELS = {
    connecting: "Page updates: connecting…",
    live: "Page updates: on",
    reconnecting: "Page updates: reconnecting…",
  };
  const BASE_DELAY_MS = 500;
  const MAX_DELAY_MS = 8000;
  const PING_EVERY_MS = 15000;
  const SILENT_LIMIT_MS = 40000; // no frame at all (not even a pong) for this long: the link is dead

  class Stream {
    constructor({ onMessage, onOpen, indicator }) {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      this.url = `${scheme}://${location.host}/ws/v1/stream/`;
      this.onMessage = onMessage;
      this.onOpen = onOpen || (() => {});
      this.indicator = indicator;
      this.subscriptions = [];
      this.failures = 0;
      this.opened = 0;
      this.ws = null;
      this.lastFrame = 0;
      setInterval(() => this.heartbeat(), PING_EVERY_MS);
      this.connect();
    }

    /* horizon: one horizon of the predictions; left out, every horizon. */
    subscribe(channel, market, horizon) {
      const subscription = horizon === undefined ? { channel, market } : { channel, market, horizon };
      this.subscriptions.push(subscription);
      this.send({ action: "subscribe", ...subscription });
    }

    send(message) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
    }

    setState(state) {
      if (!this.indicator) return;
      this.indicator.dataset.state = state;
      this.indicator.querySelector(".conn-label").textContent = LABELS[state];
    }

    connect() {
      this.setState(this.opened ? "reconnecting" : "connecting");
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.onopen = () => {
        this.failures = 0;
        this.lastFrame = Date.now();
        this.setState("live");
        this.subscriptions.forEach((subscription) => this.send({ action: "subscribe", ...subscription }));
        this.onOpen(this.opened++ > 0);
      };
      ws.onmessage = (event) => {
        this.lastFrame = Date.now();
        let message;
        try {
          message = JSON.parse(event.data);
        } catch {
          return;
        }
        if (message.type === "error") console.warn("stream error:", message);
        else this.onMessage(message);
      };
      ws.onclose = () => {
        if (this.ws !== ws) return;
        this.ws = null;
        this.setState(this.opened ? "reconnecting" : "connecting");
        // Exponential backoff with jitter so a restarted server is not stampeded.
        const delay = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.failures++) * (0.75 + Math.random() / 2);
        setTimeout(() => this.connect(), delay);
      };
    }

    heartbeat() {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this.lastFrame > SILENT_LIMIT_MS) this.ws.close();
      else this.send({ action: "ping" });
    }
  }

  window.Cryptopred = Object.assign(window.Cryptopred || {}, { Stream });
})();
