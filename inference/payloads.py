"""The wire format of a prediction and a candle, built once: the websocket push and the REST answer.

Plain functions over the model rows (no DRF): the pipeline builds each payload
once when it publishes, and the REST serializers return the same dicts.
Decimals are exact strings without the column's padding zeros, times are UTC ISO-8601 ending in Z.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from inference.models import Prediction
from markets.models import Candle


def decimal_str(value: Decimal) -> str:
    """Exact, without the column's padding zeros: 2001.500000000000 -> "2001.5"."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def time_str(value: datetime) -> str:
    """UTC ISO-8601 with Z, as DRF renders an aware datetime under TIME_ZONE = "UTC"."""
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _optional(value, render):
    return None if value is None else render(value)


def prediction_payload(prediction: Prediction) -> dict:
    """A prediction as the API and the websocket carry it (see PredictionSerializer for the fields' meaning)."""
    p = prediction
    return {
        "market": p.market.name,
        "interval_s": p.interval_s,
        "horizon": p.horizon,
        "made_at": time_str(p.made_at),
        "target_time": time_str(p.target_time),
        "target": p.target,
        "price": decimal_str(p.price),
        "lower": decimal_str(p.lower),
        "upper": decimal_str(p.upper),
        "last_close": decimal_str(p.base_close),
        "p_up": _optional(p.p_up, float),
        "p_move": _optional(p.p_move, float),
        "direction_source": p.direction_source or None,
        "direction_model": p.direction_model or None,
        "p_up_base": _optional(p.p_up_base, float),
        "model": {"id": p.model_id, "version": p.model_version, "algorithm": p.algorithm},
        "latency_ms": float(p.latency_ms),
        "realized": _optional(p.realized, decimal_str),
        "scored_at": _optional(p.scored_at, time_str),
    }


def candle_payload(candle: Candle) -> dict:
    """A candle as the API and the websocket carry it; end is start plus the interval."""
    c = candle
    return {
        "market": c.market.name,
        "interval_s": c.interval_s,
        "start": time_str(c.start),
        "end": time_str(c.start + timedelta(seconds=c.interval_s)),
        "open": decimal_str(c.open),
        "high": decimal_str(c.high),
        "low": decimal_str(c.low),
        "close": decimal_str(c.close),
        "volume": decimal_str(c.volume),
        "buy_volume": decimal_str(c.buy_volume),
        "sell_volume": decimal_str(c.sell_volume),
        "trades": c.trades,
        "vwap": _optional(c.vwap, decimal_str),
        "final": c.final,
        "amended": c.amended,
    }
