"""`make demo`: the bundled real trades split into a history to train on and a rest to replay live."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

from markets.tradefile import open_text, parse_ts

MARKET = "gemini:ETH-USD"
SAMPLE = Path("data/sample/gemini_ETHUSD_trades_2021-07-01.csv.gz")


def split_trades(source: Path, dest: Path, history_s: int) -> tuple[Path, Path, datetime]:
    """Write source's first history_s seconds to dest/history.csv.gz and the rest to dest/live.csv.gz.

    The cut is on a whole second, so rows sharing a timestamp (and their
    derived trade ids) stay together. Returns both paths and the cut time.
    """
    dest.mkdir(parents=True, exist_ok=True)
    history, live = dest / "history.csv.gz", dest / "live.csv.gz"
    text, raw = open_text(source)
    with raw, text, gzip.open(history, "wt") as first, gzip.open(live, "wt") as rest:
        header = text.readline()
        first.write(header)
        rest.write(header)
        cut = None
        for line in text:
            ts = parse_ts(line.split(",", 1)[0])
            if cut is None:
                cut = ts.replace(microsecond=0) + timedelta(seconds=history_s)
            (first if ts < cut else rest).write(line)
    return history, live, cut or datetime.now(UTC)
