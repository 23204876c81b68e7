"""Hooks into the pipeline's signals: predict on new feature rows, score and push closed and amended candles."""

from features.signals import features_ready
from inference import pipeline
from markets.signals import candles_amended, candles_closed


def on_features_ready(sender, market, rows, **kwargs) -> None:
    pipeline.predict_rows(market, rows)


def on_candles_closed(sender, market, candles, **kwargs) -> None:
    pipeline.score_candles(market, candles)
    pipeline.publish_candles(market, candles)


def on_candles_amended(sender, market, candles, **kwargs) -> None:
    pipeline.score_candles(market, candles, again=True)
    pipeline.publish_candles(market, candles)


def connect() -> None:
    features_ready.connect(on_features_ready, dispatch_uid="inference.predict")
    candles_closed.connect(on_candles_closed, dispatch_uid="inference.score")
    candles_amended.connect(on_candles_amended, dispatch_uid="inference.rescore")
