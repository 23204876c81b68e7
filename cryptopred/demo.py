"""`make demo`: the bundled real data of each demo market split into a history to train on and a rest to replay live."""

from __future__ import annotations

import gzip
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from apitokens.models import ApiToken
from core import horizons
from inference import readcache
from inference.models import Prediction
from markets.models import Market
from markets.names import get_or_create_market
from markets.trades.file import open_text
from markets.trades.ticks import parse_ts
from modeling import registry
from modeling.direction import MODEL
from modeling.market_training import train_horizons
from modeling.models import ModelArtifact
from modeling.training import TrainingError


@dataclass(frozen=True)
class Sample:
    """One demo market: its bundled trades and, if it has one, its order book (L2 or top of book)."""

    market: str
    trades: Path
    book: Path | None = None


# Gemini: trades only, where the direction has no skill and the system serves "no change".
# Bitstamp: trades and a 20-level book, where the book calls the next move of the mid.
GEMINI = Sample("gemini:ETH-USD", Path("data/sample/gemini_ETHUSD_trades_2021-07-01.csv.gz"))
BITSTAMP = Sample(
    "bitstamp:BTC-USD",
    Path("data/sample/bitstamp_BTCUSD_trades_2015-05-01_0000-0300.csv.gz"),
    Path("data/sample/bitstamp_BTCUSD_book20_2015-05-01_0000-0300.csv.gz"),
)
SAMPLES = (BITSTAMP, GEMINI)
BY_MARKET = {sample.market: sample for sample in SAMPLES}


@dataclass(frozen=True)
class Split:
    """A sample cut in two: files replayed at once to train on (history) and at demo speed (live)."""

    sample: Sample
    cut: datetime
    history: list[Path]  # book first: its windows are there when the trades' candles close
    live: list[Path]


def direction_model_horizons(market: Market) -> list[int]:
    """The horizons at which market's served model also serves its own P(up) (its direction gate passed)."""
    return [
        horizon
        for horizon in horizons.configured()
        if (artifact := registry.active_artifact(market, market.interval_s, horizon)) is not None
        and artifact.direction_source == MODEL
    ]


def split_sample(sample: Sample, base: Path, dest: Path, history_s: int) -> Split:
    """Split sample's files (paths under base) at its first trade + history_s, into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    history, live, cut = split_trades(base / sample.trades, dest, history_s)
    if sample.book is None:
        return Split(sample, cut, [history], [live])
    book_history, book_live = dest / "book-history.csv.gz", dest / "book-live.csv.gz"
    split_at(base / sample.book, book_history, book_live, cut)
    return Split(sample, cut, [book_history, history], [book_live, live])


def split_trades(source: Path, dest: Path, history_s: int) -> tuple[Path, Path, datetime]:
    """Write source's first history_s seconds to dest/history.csv.gz and the rest to dest/live.csv.gz.

    The cut is on a whole second, so rows sharing a timestamp (and their
    derived trade ids) stay together. Returns both paths and the cut time.
    """
    dest.mkdir(parents=True, exist_ok=True)
    history, live = dest / "history.csv.gz", dest / "live.csv.gz"
    first = first_ts(source)
    cut = first.replace(microsecond=0) + timedelta(seconds=history_s) if first else datetime.now(UTC)
    split_at(source, history, live, cut)
    return history, live, cut


def first_ts(source: Path) -> datetime | None:
    """The timestamp of source's first row (a CSV whose first column is the time), None if it has none."""
    text, raw = open_text(source)
    with raw, text:
        text.readline()
        line = text.readline()
    return parse_ts(line.split(",", 1)[0]) if line else None


def split_at(source: Path, history: Path, live: Path, cut: datetime) -> None:
    """Write source's rows before cut to history and the others to live, both with its header."""
    text, raw = open_text(source)
    with raw, text, gzip.open(history, "wt") as first, gzip.open(live, "wt") as rest:
        header = text.readline()
        first.write(header)
        rest.write(header)
        for line in text:
            (first if parse_ts(line.split(",", 1)[0]) < cut else rest).write(line)


def prepare_market(sample: Sample, history_s: int, promote: bool, stdout, stderr) -> Split:
    """Replay sample's history at full speed, train a model per horizon on it and enable the market.

    Returns the split, whose live files are left to replay at demo speed. promote serves
    each model even if the promotion gate rejects it.
    """
    market = get_or_create_market(sample.market)
    split = split_sample(sample, settings.BASE_DIR, settings.DATA_DIR / "demo" / market.exchange, history_s)
    stdout.write(f"demo: replaying {market} up to {split.cut:%H:%M:%S} UTC at full speed ...")
    for path in split.history:
        call_command("replay", str(path), market=market.name, stdout=stdout, stderr=stderr)
    stdout.write(f"demo: training {market} on that history ...")
    try:
        artifacts = train_horizons(market, window_s=history_s)
    except TrainingError as exc:
        stderr.write(f"demo: no model trained ({exc}); predictions fall back to persistence")
        artifacts = []
    for artifact in artifacts:
        stdout.write(
            f"demo: {market} +{artifact.horizon} model v{artifact.version} {artifact.algorithm} "
            f"{artifact.status}: {artifact.reason}"
        )
        if artifact.status != ModelArtifact.Status.ACTIVE and promote:
            registry.promote(artifact, "demo --promote: served although the promotion gate rejected it")
            stdout.write(f"demo: {market} +{artifact.horizon} v{artifact.version} promoted anyway (--promote)")
    dropped = drop_pretraining_predictions(market)
    stdout.write(f"demo: {market}: {dropped} predictions of the history, made before training, dropped")
    Market.objects.filter(pk=market.pk).update(enabled=True)
    return split


def drop_pretraining_predictions(market: Market) -> int:
    """Delete what the history replay predicted before any model was trained (persistence without a band); the
    live replay, which predicts from then on, has not started yet.

    Once a model serves, the newest prediction ("latest") and the live figures are then the model's, from the
    first live window on, instead of a zero-width row of the history. Returns how many were deleted.
    """
    deleted, _ = Prediction.objects.filter(market=market).delete()
    readcache.market_changed(market)
    return deleted


BOT_USER, BOT_TOKEN_NAME = "demo-bot", "demo"
BOT_TOKEN_DAYS = 7


def bot_token() -> str:
    """A fresh key for the demo's bot (user demo-bot, token demo, valid for BOT_TOKEN_DAYS); the old key stops."""
    user, _ = get_user_model().objects.get_or_create(username=BOT_USER)
    token = ApiToken.objects.filter(user=user, name=BOT_TOKEN_NAME, revoked__isnull=True).first()
    expires = timezone.now() + timedelta(days=BOT_TOKEN_DAYS)
    if token is None:
        return ApiToken.objects.issue(user, BOT_TOKEN_NAME, expires).key
    token.expires = expires
    token.save(update_fields=["expires"])
    return token.rotate()


def usage(url: str, key: str, market: str, manage_prefix: str) -> list[str]:
    """What the demo prints for a bot: its key and the exact commands that use it, each runnable as pasted."""
    ws_url = url.replace("http://", "ws://", 1) + "ws/v1/stream/"
    header = shlex.quote(f"Authorization: Token {key}")
    return [
        f"demo: bot token (user {BOT_USER}, valid {BOT_TOKEN_DAYS} days): {key}",
        "demo: the latest prediction, with it:",
        f"  curl -H {header} {url}api/v1/markets/{market}/predictions/latest/",
        "demo: the predictions as they are made (websocket):",
        f"  .venv/bin/python docs/examples/ws_client.py {ws_url} {key} {market}",
        f"demo: other manage.py commands on the demo's data: {manage_prefix} ...",
    ]
