"""Fixtures of the inference tests: real trades replayed through the whole pipeline."""

from __future__ import annotations

import gzip
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from sklearn.linear_model import Ridge

from cryptopred.redis_client import get_redis
from features.models import FeatureRow
from markets.models import Market
from markets.services import get_or_create_market
from modeling import registry, serialization
from modeling.forecast import Forecaster
from modeling.models import ModelArtifact

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
KRAKEN_ETH = SAMPLE / "kraken_ETHUSD_trades_2022-03-20.csv.gz"  # 1,000 real trades over 110 minutes
MARKET = "kraken:ETH-USD"


@pytest.fixture(autouse=True)
def clean_redis():
    """Cached predictions and throttle counters are keyed by ids and addresses that tests reuse."""
    redis = get_redis()

    def wipe():
        for pattern in ("inference:latest:*", "*throttle:*"):
            for key in redis.scan_iter(pattern):
                redis.delete(key)

    wipe()
    yield
    wipe()


def split_trades(path: Path, sizes: list[int], directory: Path) -> list[Path]:
    """Consecutive slices of a real trades file (header repeated), sizes in rows."""
    with gzip.open(path, "rt") as f:
        header, *rows = f.readlines()
    parts, offset = [], 0
    for i, size in enumerate(sizes):
        part = directory / f"part{i}.csv"
        part.write_text(header + "".join(rows[offset : offset + size]))
        parts.append(part)
        offset += size
    return parts


@pytest.fixture
def parts(tmp_path) -> list[Path]:
    return split_trades(KRAKEN_ETH, [200] * 5, tmp_path)


@pytest.fixture
def market(db) -> Market:
    return get_or_create_market(MARKET)


def train_model(market: Market) -> ModelArtifact:
    """A ridge forecaster fitted on the market's stored feature rows, registered as a candidate."""
    rows = list(FeatureRow.objects.filter(market=market, interval_s=market.interval_s).order_by("start"))
    names = sorted(rows[0].values)
    forecaster = Forecaster("ridge", None, names, 0.0, 0.0)
    X = np.vstack([forecaster.vector(r.values) for r in rows[:-1]])
    y = np.log([float(b.close) / float(a.close) for a, b in pairwise(rows)])
    forecaster.model = Ridge(alpha=1.0).fit(np.nan_to_num(X), y)
    residuals = y - forecaster.predict_returns(X)
    forecaster.q_lo, forecaster.q_hi = (float(q) for q in np.quantile(residuals, [0.1, 0.9]))
    data, sha256 = serialization.dump(forecaster.payload())
    return ModelArtifact.objects.create(
        market=market,
        interval_s=market.interval_s,
        horizon=1,
        feature_version=rows[0].version,
        algorithm="ridge",
        train_start=rows[0].start,
        train_end=rows[-1].start,
        artifact=data,
        sha256=sha256,
        version=registry.next_version(market, market.interval_s, 1),
    )


def api_user(username: str = "bot") -> tuple:
    user = get_user_model().objects.create_user(username)
    return user, Token.objects.create(user=user)
