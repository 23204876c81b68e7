"""Order books: checksums, the book, per-window book features, book files, replay and export_book.

The reference computations here are written plainly from the files, apart from
the code under test.
"""

import copy
import csv
import gzip
import io
import json
import time
import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from markets.book.file import BookFileError, file_kind
from markets.book.orderbook import BookTop, BookWindows, OrderBook, kraken_checksum
from markets.book.replay import replay_book_windows
from markets.models import BookWindow, Candle, Market
from markets.names import get_or_create_market

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
L2 = SAMPLE / "bitstamp_BTCUSD_book20_2015-05-01_0000-0030.csv.gz"
TOP = SAMPLE / "gemini_ETHUSD_book1s_2021-07-01_0000-0200.csv.gz"
GEMINI_TRADES = SAMPLE / "gemini_ETHUSD_trades_2021-07-01.csv.gz"
V2_VECTOR = SAMPLE / "messages" / "kraken_ws_v2_book_snapshot_checksum_vector.json"
V1_SESSION = SAMPLE / "messages" / "kraken_ws_v1_book.jsonl"
EXPORT_HEADER = (
    "ts,bid_price,bid_qty,ask_price,ask_qty,mid,microprice,ofi,spread_tw,imbalance_tw,depth_imbalance,updates,"
    "ofi_levels"
)
db = pytest.mark.django_db


# --- checksums ---------------------------------------------------------------------------------------------


def test_kraken_v2_checksum_vector():
    message = json.loads(V2_VECTOR.read_text(), parse_float=Decimal)["data"][0]
    book = OrderBook(10)
    book.snapshot([(x["price"], x["qty"]) for x in message["bids"]], [(x["price"], x["qty"]) for x in message["asks"]])
    assert kraken_checksum(book, 1, 8) == message["checksum"] == 3310070434
    # The book keeps each level's digits: another precision, or a changed level, is computed afresh.
    rebuilt = OrderBook(10)
    rebuilt.update(book.levels("bid"), book.levels("ask"))
    assert kraken_checksum(book, 2, 9) == kraken_checksum(rebuilt, 2, 9) != 3310070434
    assert kraken_checksum(book, 1, 8) == 3310070434
    book.apply("bid", Decimal("45276.6"), Decimal("0.15445239"))  # one satoshi more on the 10th bid
    assert kraken_checksum(book, 1, 8) != 3310070434


def v1_frames() -> list[list]:
    frames = [json.loads(line) for line in V1_SESSION.read_text().splitlines()]
    return [f for f in frames if isinstance(f, list) and f[-1] == "XMR/USD"]


def verify_v1(frames: list[list]) -> list[bool]:
    """Rebuild the v1 book (depth 1000) from its snapshot and updates; one verdict per update checksum."""
    book = OrderBook(1000)
    verdicts = []
    for frame in frames:
        checksum = None
        for part in frame[1:-2]:
            if "as" in part:
                book.snapshot(
                    [(Decimal(p), Decimal(q)) for p, q, *_ in part["bs"]],
                    [(Decimal(p), Decimal(q)) for p, q, *_ in part["as"]],
                )
                continue
            book.update(
                bids=[(Decimal(p), Decimal(q)) for p, q, *_ in part.get("b", [])],
                asks=[(Decimal(p), Decimal(q)) for p, q, *_ in part.get("a", [])],
            )
            checksum = int(part["c"]) if "c" in part else checksum
        if checksum is not None:
            verdicts.append(kraken_checksum(book, 8, 8) == checksum)  # v1 values are at XMR/USD's precision
    return verdicts


def test_kraken_v1_updates_all_verify_and_a_corrupted_one_fails():
    frames = v1_frames()
    assert "as" in frames[0][1]
    assert verify_v1(frames) == [True] * 64
    corrupted = copy.deepcopy(frames)
    level = corrupted[1][1]["b"][0]  # the first update: bid 354.15 (level 2, inside the checksummed 10)
    assert level[0] == "354.15000000"
    level[1] = "5.00000001"
    verdicts = verify_v1(corrupted)
    assert verdicts[0] is False and len(verdicts) == 64


# --- the book ----------------------------------------------------------------------------------------------


def D(text: str) -> Decimal:
    return Decimal(text)


def test_truncation_drops_levels_pushed_beyond_depth_and_qty_zero_deletes():
    book = OrderBook(3)
    book.update(bids=[(D("10"), D("1")), (D("9"), D("2")), (D("8"), D("3"))], asks=[(D("11"), D("1"))])
    book.update(bids=[(D("9.5"), D("4"))], asks=[(D("13"), D("1")), (D("12"), D("1")), (D("11.5"), D("2"))])
    assert book.levels("bid", 10) == [(D("10"), D("1")), (D("9.5"), D("4")), (D("9"), D("2"))]  # 8 fell out
    assert book.levels("ask") == [(D("11"), D("1")), (D("11.5"), D("2")), (D("12"), D("1"))]  # 13 fell out
    book.apply("bid", D("10"), D("0"))
    book.apply("bid", D("7"), D("0"))  # absent: nothing to delete
    book.truncate()
    assert book.best_bid() == (D("9.5"), D("4")) and book.best_ask() == (D("11"), D("1"))
    assert len(book.bids) == 2 and D("8") not in book.bids  # a dropped level does not come back
    assert book.levels("bid", 1) == [(D("9.5"), D("4"))] and book.levels("ask", 0) == []
    assert not book.crossed()
    book.apply("bid", D("11"), D("1"))
    assert book.crossed()  # locked counts
    with pytest.raises(ValueError, match="negative qty"):
        book.apply("ask", D("12"), D("-1"))
    with pytest.raises(ValueError, match="bad side"):
        book.apply("buy", D("12"), D("1"))
    # A snapshot replaces everything and counts the levels that changed.
    assert book.snapshot([(D("9.5"), D("4")), (D("9"), D("1"))], [(D("11"), D("1"))]) == 4  # 11 bid, 9, 11.5, 12
    assert book.levels("bid") == [(D("9.5"), D("4")), (D("9"), D("1"))] and book.levels("ask") == [(D("11"), D("1"))]
    empty = OrderBook(5)
    assert empty.best_bid() is None and empty.best_ask() is None and BookTop.from_book(empty, 5) is None


# --- per-window features -----------------------------------------------------------------------------------

T0 = datetime(2021, 7, 1, tzinfo=UTC)


def top(bid, bid_qty, ask, ask_qty) -> BookTop:
    book = OrderBook(1)
    book.snapshot([(D(bid), D(bid_qty))], [(D(ask), D(ask_qty))])
    return BookTop.from_book(book, 1)


def test_book_windows_by_hand():
    a, b, c = top("100", "2", "101", "2"), top("100", "3", "100.5", "1"), top("99.5", "1", "100.5", "4")
    windows = BookWindows(10, max_fill_s=60)
    assert windows.observe(T0 + timedelta(seconds=3), a) == []
    assert windows.observe(T0 + timedelta(seconds=7), b) == []
    closed = windows.observe(T0 + timedelta(seconds=25), c)
    assert [w.start for w in closed] == [T0.timestamp(), T0.timestamp() + 10]
    first, empty = closed
    # Weighted from the first event (3 s) to the window end: a for 4 s, b for 3 s.
    assert first.spread_tw == pytest.approx((1.0 * 4 + 0.5 * 3) / 7)
    assert first.imbalance_tw == pytest.approx((0.0 * 4 + 0.5 * 3) / 7)
    # b: bid same price, qty 3 -> +3 - 2; ask price lower -> -1 (the new ask's qty), nothing added back.
    assert first.ofi == pytest.approx(3 - 2 - 1)
    assert (first.updates, first.bid_qty, first.ask_price) == (2, D("3"), D("100.5"))
    assert first.mid == D("100.25") and first.microprice == D("100.375")  # (100*1 + 100.5*3) / 4
    assert first.depth_imbalance == pytest.approx(0.5)
    assert (empty.updates, empty.ofi, empty.spread_tw, empty.imbalance_tw) == (0, 0.0, 0.5, 0.5)
    assert empty.bid_price == D("100") and empty.microprice == first.microprice
    assert windows.close_until(T0 + timedelta(seconds=29.9)) == []
    (last,) = windows.close_until(T0 + timedelta(seconds=30))
    # b holds from 20 to 25 s, then c: bid lower -> -3; ask same price -> -4 + 1.
    assert last.spread_tw == pytest.approx((0.5 * 5 + 1.0 * 5) / 10)
    assert last.ofi == pytest.approx(-3 - 4 + 1) and last.updates == 1
    # Quiet windows are finalized by the clock alone, carrying the state.
    quiet = windows.close_until(T0 + timedelta(seconds=50))
    assert [(w.start - T0.timestamp(), w.updates, w.bid_price) for w in quiet] == [
        (30, 0, D("99.5")),
        (40, 0, D("99.5")),
    ]
    with pytest.raises(ValueError, match="2021-07-01T00:00:45"):
        windows.observe(T0 + timedelta(seconds=45), a)  # in a finalized window


def test_multilevel_ofi_by_hand():
    """OFI over levels 1..N: each level's best-level rule, summed over levels and over the window's events."""

    def deep(bids, asks) -> BookTop:
        book = OrderBook(5)
        book.update([(D(p), D(q)) for p, q in bids], [(D(p), D(q)) for p, q in asks])
        return BookTop.from_book(book, 3)

    a = deep([("100", "2"), ("99", "5"), ("98", "1")], [("101", "1"), ("102", "4"), ("103", "2")])
    # Level 1 bid qty 2 -> 3; level 2 bid 99 -> 99.5 (a new level in between); level 3 ask 103 removed.
    b = deep([("100", "3"), ("99.5", "1"), ("99", "5")], [("101", "1"), ("102", "4"), ("104", "6")])
    c = deep([("100", "3"), ("99.5", "1")], [("100.5", "2"), ("101", "1"), ("102", "4")])  # two bid levels left
    # a -> b: level 1: +3 - 2 on the bid, -1 + 1 on the ask = 1; level 2: +1 (higher bid), -4 + 4 = 1;
    # level 3: bid 98 -> 99 higher: +5; ask 103 -> 104 higher: +2 (the qty that was there) = 7.
    # b -> c: level 1: bid +3 - 3, ask 101 -> 100.5 lower: -2 = -2; level 2: bid +1 - 1, ask 102 -> 101: -1 = -1;
    # level 3: c has no third bid, so the level adds nothing.
    windows = BookWindows(10)
    windows.observe(T0, a)
    windows.observe(T0 + timedelta(seconds=1), b)
    windows.observe(T0 + timedelta(seconds=2), c)
    (bar,) = windows.close_all()
    assert bar.ofi_levels == pytest.approx((1 + 1 + 7) + (-2 - 1))
    assert bar.ofi == pytest.approx(1 - 2)  # the best level alone, as before
    one_level = BookWindows(10)
    for i, state in enumerate((a, b, c)):
        one_level.observe(T0 + timedelta(seconds=i), top(*state.bid_levels[0], *state.ask_levels[0]))
    assert one_level.close_all()[0].ofi_levels == pytest.approx(1 - 2)  # a one-level book: OFI itself


def test_book_windows_far_past_and_far_future_stay_bounded():
    state = top("100", "1", "101", "1")
    windows = BookWindows(10, max_fill_s=3600)
    assert windows.observe(datetime(1971, 1, 1, tzinfo=UTC), state) == []
    # Decades later: one finalized window and a new series, not millions of empty ones.
    closed = windows.observe(T0, state)
    assert len(closed) == 1 and closed[0].start == datetime(1971, 1, 1, tzinfo=UTC).timestamp()
    assert len(windows.observe(datetime(9000, 1, 1, tzinfo=UTC), state)) == 1
    assert len(windows.close_until(datetime(9999, 12, 31, tzinfo=UTC))) == 1  # the clock alone, bounded too
    with pytest.raises(ValueError, match="2021-07-01T00:01:00"):
        windows.observe(T0 + timedelta(minutes=1), state)


# --- files -------------------------------------------------------------------------------------------------


def test_file_kind_from_header(tmp_path):
    assert file_kind(L2) == "l2" and file_kind(TOP) == "top" and file_kind(GEMINI_TRADES) == "trades"
    path = tmp_path / "other.csv"
    path.write_text("time,bid,ask\n")
    with pytest.raises(BookFileError, match=rf"^{path}:1: unknown header 'time,bid,ask'"):
        file_kind(path)


def l2_snapshots(path: Path) -> list[tuple[datetime, list, list]]:
    """(ts, bids, asks) per run of rows with the same ts, levels best first as in the file."""
    snapshots = []
    with gzip.open(path, "rt", newline="") as f:
        for row in csv.DictReader(f):
            ts = datetime.fromisoformat(row["ts"])
            if not snapshots or snapshots[-1][0] != ts:
                snapshots.append((ts, [], []))
            snapshots[-1][1 if row["side"] == "bid" else 2].append((D(row["price"]), D(row["qty"])))
    return snapshots


def top_snapshots(path: Path) -> list[tuple[datetime, list, list]]:
    with gzip.open(path, "rt", newline="") as f:
        return [
            (
                datetime.fromisoformat(r["ts"]),
                [(D(r["bid_price"]), D(r["bid_qty"]))],
                [(D(r["ask_price"]), D(r["ask_qty"]))],
            )
            for r in csv.DictReader(f)
        ]


def text(value: Decimal) -> str:
    return f"{value.normalize():f}"


def reference_top(snapshots, interval: int) -> list[list[str]]:
    """Per window from the first snapshot's to the last one's: the last snapshot before the window end."""
    first = int(snapshots[0][0].timestamp()) // interval * interval
    last = int(snapshots[-1][0].timestamp()) // interval * interval
    rows = []
    for start in range(first, last + interval, interval):
        end = datetime.fromtimestamp(start + interval, UTC)
        _, bids, asks = [s for s in snapshots if s[0] < end][-1]
        (bid, qb), (ask, qa) = bids[0], asks[0]
        microprice = ((bid * qa + ask * qb) / (qb + qa)).quantize(Decimal("1e-12"))
        begin = datetime.fromtimestamp(start, UTC)
        updates = sum(1 for s in snapshots if begin <= s[0] < end)
        sb, sa = sum(q for _, q in bids[:5]), sum(q for _, q in asks[:5])
        rows.append(
            [
                begin.strftime("%Y-%m-%dT%H:%M:%SZ"),
                *map(text, (bid, qb, ask, qa, (bid + ask) / 2, microprice)),
                float((sb - sa) / (sb + sa)),
                str(updates),
            ]
        )
    return rows


def reference_flow(snapshots, start: int, interval: int) -> tuple[float, float, float]:
    """(OFI, time-weighted spread, time-weighted L1 imbalance) of the window at start, computed plainly."""
    begin, end = start, start + interval
    before = [s for s in snapshots if s[0].timestamp() < begin]
    inside = [s for s in snapshots if begin <= s[0].timestamp() < end]
    state = before[-1] if before else None
    t = begin if state else inside[0][0].timestamp()
    covered = end - t
    ofi = spread = imbalance = 0.0
    for snap in [*inside, None]:
        now = snap[0].timestamp() if snap else end
        if state is not None:
            (bid, qb), (ask, qa) = state[1][0], state[2][0]
            spread += float(ask - bid) * (now - t)
            imbalance += float((qb - qa) / (qb + qa)) * (now - t)
        if snap is not None and state is not None:
            (pb0, qb0), (pa0, qa0) = state[1][0], state[2][0]
            (pb1, qb1), (pa1, qa1) = snap[1][0], snap[2][0]
            ofi += float(
                (qb1 if pb1 >= pb0 else 0)
                - (qb0 if pb1 <= pb0 else 0)
                - (qa1 if pa1 <= pa0 else 0)
                + (qa0 if pa1 >= pa0 else 0)
            )
        state, t = snap or state, now
    return ofi, spread / covered, imbalance / covered


def export_book(market: str, *extra) -> list[list[str]]:
    out = io.StringIO()
    call_command("export_book", "--market", market, *extra, stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == EXPORT_HEADER
    return list(csv.reader(lines[1:]))


def check_against_reference(exported, snapshots, interval: int, probes: list[int]) -> None:
    expected = reference_top(snapshots, interval)
    assert [row[:7] for row in exported] == [row[:7] for row in expected]
    assert [row[11] for row in exported] == [row[-1] for row in expected]
    assert [float(row[10]) for row in exported] == pytest.approx([row[7] for row in expected], rel=1e-12)
    for i in probes:
        start = int(datetime.fromisoformat(exported[i][0]).timestamp())
        ofi, spread, imbalance = reference_flow(snapshots, start, interval)
        got = [float(v) for v in exported[i][7:10]]
        assert got == pytest.approx([ofi, spread, imbalance], rel=1e-9, abs=1e-9), exported[i][0]


@db
def test_a_paced_book_replay_stores_each_window_as_it_closes_at_the_pace_of_the_file():
    fast = get_or_create_market("bitstamp:BTC-USD")
    replay_book_windows(L2, fast)
    expected = export_book("bitstamp:BTC-USD")
    fast.delete()
    paced = get_or_create_market("bitstamp:BTC-USD")
    stored_at_commit = []
    started = time.monotonic()
    stats = replay_book_windows(
        L2, paced, speed=1200, on_commit=lambda: stored_at_commit.append(BookWindow.objects.count())
    )
    elapsed = time.monotonic() - started
    snapshots = l2_snapshots(L2)
    # 30 minutes of file at 1200 x: never faster than 1.5 s (load only slows it down).
    assert elapsed >= (snapshots[-1][0] - snapshots[0][0]).total_seconds() / 1200
    assert export_book("bitstamp:BTC-USD") == expected
    # Every commit one window more (quiet windows closed with the next snapshot), the last ones at the end.
    assert stored_at_commit[:3] == [1, 2, 3] and stored_at_commit[-1] == stats.windows == 180
    assert len(stored_at_commit) >= 170
    paced.refresh_from_db()
    assert paced.book_updated_at == snapshots[-1][0]


@db
def test_l2_replay_exports_the_reference_window_by_window():
    market = get_or_create_market("bitstamp:BTC-USD")
    stats = replay_book_windows(L2, market)
    assert (stats.snapshots, stats.levels, stats.depth) == (520, 20800, 20)
    snapshots = l2_snapshots(L2)
    exported = export_book("bitstamp:BTC-USD")
    assert len(exported) == stats.windows == 180  # 00:00:00 .. 00:29:50, quiet windows included
    assert sum(int(row[11]) == 0 for row in exported) == 10  # windows without a snapshot
    check_against_reference(exported, snapshots, 10, probes=[0, 1, 2, 37, 90, 150, 179])
    market.refresh_from_db()
    assert market.book_depth == 20 and market.book_updated_at == snapshots[-1][0]
    # A minute: top of book of the last 10-s window, OFI and updates summed, time-weighted values averaged.
    minutes = export_book("bitstamp:BTC-USD", "--interval", "1m", "--start", "2015-05-01T00:10:00Z")
    tens = {row[0]: row for row in exported}
    assert [row[0] for row in minutes] == [f"2015-05-01T00:{m:02d}:00Z" for m in range(10, 30)]
    for row in minutes:
        parts = [tens[row[0][:17] + f"{s}0Z"] for s in range(6)]
        assert row[1:7] == parts[-1][1:7] and row[10] == parts[-1][10]
        assert int(row[11]) == sum(int(p[11]) for p in parts)
        assert float(row[7]) == pytest.approx(sum(float(p[7]) for p in parts))
        assert float(row[8]) == pytest.approx(sum(float(p[8]) for p in parts) / 6)
    # The same file again: the same rows, stored once.
    replay_book_windows(L2, market)
    assert export_book("bitstamp:BTC-USD") == exported and BookWindow.objects.count() == 180


@db
def test_top_of_book_replay_exports_the_reference_window_by_window():
    call_command("replay", str(TOP), "--market", "gemini:ETH-USD", stdout=io.StringIO())
    exported = export_book("gemini:ETH-USD")
    assert len(exported) == 720
    check_against_reference(exported, top_snapshots(TOP), 10, probes=[0, 1, 100, 333, 500, 719])
    window = export_book("gemini:ETH-USD", "--start", "2021-07-01T01:00:00Z", "--end", "2021-07-01T01:00:20Z")
    assert [row[0] for row in window] == ["2021-07-01T01:00:00Z", "2021-07-01T01:00:10Z"]


@db
def test_book_and_trades_replay_in_either_order_alike(tmp_path):
    trades = tmp_path / "trades.csv"
    with gzip.open(GEMINI_TRADES, "rt", newline="") as f:
        header, *rows = f.readlines()
    trades.write_text(header + "".join(row for row in rows if row < "2021-07-01T00:30"))
    quiet = io.StringIO()
    call_command("replay", str(trades), "--market", "gemini:ETH-USD", stdout=quiet)
    call_command("replay", str(TOP), "--market", "gemini:ETH-USD", stdout=quiet)
    call_command("replay", str(TOP), "--market", "other:ETH-USD", stdout=quiet)
    call_command("replay", str(trades), "--market", "other:ETH-USD", stdout=quiet)
    assert Candle.objects.filter(market__exchange="other").count() > 100
    assert export_book("gemini:ETH-USD") == export_book("other:ETH-USD")
    candles = [io.StringIO(), io.StringIO()]
    call_command("export_candles", "--market", "gemini:ETH-USD", stdout=candles[0])
    call_command("export_candles", "--market", "other:ETH-USD", stdout=candles[1])
    assert candles[0].getvalue() == candles[1].getvalue()


# --- bad input ---------------------------------------------------------------------------------------------


def l2_head(snapshots: int) -> list[str]:
    """The header and the first snapshots of the L2 sample, as lines."""
    with gzip.open(L2, "rt", newline="") as f:
        return [next(f) for _ in range(1 + 40 * snapshots)]


def field(index: int, value: str):
    """An edit of one L2 row: its index-th field (ts, side, level, price, qty) set to value."""

    def edit(row: str) -> str:
        fields = row.rstrip("\n").split(",")
        fields[index] = value
        return ",".join(fields) + "\n"

    return edit


@db
@pytest.mark.parametrize(
    ("line", "edit", "problem"),
    [
        (61, field(2, "x"), "bad level 'x': expected an integer"),  # bid level 20 of snapshot 2
        (62, field(2, "3"), "ask level 3 out of order: expected 1"),
        (70, field(4, "-1.5"), "qty must be positive, got '-1.5'"),
        (75, field(1, "buy"), "bad side 'buy': expected bid or ask"),
        (90, field(3, "2x5.1"), "bad price '2x5.1': not a decimal number"),
        (22, field(3, "236.40"), "crossed snapshot: best bid 236.47 >= best ask 236.40"),  # ask level 1, snapshot 1
        (23, field(3, "236.60"), "ask level 2 price 236.60 is not above level 1's 236.64"),
        (82, field(0, "2015-05-01T00:00:01Z"), "ts 2015-05-01T00:00:01Z is before the previous snapshot's"),
    ],
)
def test_bad_l2_rows_name_file_and_line_and_store_nothing(tmp_path, line, edit, problem):
    rows = l2_head(3)
    rows[line - 1] = edit(rows[line - 1])
    path = tmp_path / "bad.csv"
    path.write_text("".join(rows))
    with pytest.raises(CommandError) as error:
        call_command("replay", str(path), "--market", "bitstamp:BTC-USD")
    message = str(error.value)
    assert message.startswith(f"{path}:{line}: ") and problem in message and "\n" not in message
    assert not BookWindow.objects.exists()


@db
def test_bad_top_rows_name_file_and_line(tmp_path):
    path = tmp_path / "top.csv.gz"
    with gzip.open(TOP, "rt", newline="") as f:
        rows = [next(f) for _ in range(6)]
    cases = [
        (
            3,
            "2021-07-01T00:00:01.000000Z,2271.58,1.6477,2271.50,11.74342\n",
            "crossed book: bid 2271.58 >= ask 2271.50",
        ),
        (4, "2021-07-01T00:00:02.000000Z,2271.59,-6,2279.86,11.74342\n", "bid_qty must be positive, got '-6'"),
        (5, "2021-07-01T00:00:01.500000Z,2271.59,6,2279.86,11.74342\n", "is before the previous row's"),
        (6, "2021-07-01T00:00:05.000000Z,2271.59,6,2279.86\n", "expected 5 fields"),
    ]
    for line, row, problem in cases:
        with gzip.open(path, "wt", newline="") as f:
            f.writelines([*rows[: line - 1], row, *rows[line:]])
        with pytest.raises(BookFileError, match=rf"^{path}:{line}: .*{problem}"):
            replay_book_windows(path, get_or_create_market("gemini:ETH-USD"))
    assert not BookWindow.objects.exists()


@db
def test_replay_refuses_an_unknown_header_and_a_missing_file(tmp_path):
    odd = tmp_path / "odd.csv"
    odd.write_text("time,bid,ask\n1,2,3\n")
    with pytest.raises(CommandError, match=r"odd\.csv:1: unknown header 'time,bid,ask' \(expected one of: ts,price"):
        call_command("replay", str(odd), "--market", "gemini:ETH-USD")
    with pytest.raises(CommandError, match=r"missing\.csv: no such file"):
        call_command("replay", str(tmp_path / "missing.csv"), "--market", "gemini:ETH-USD")
    assert not BookWindow.objects.exists()


@db
def test_a_bad_line_keeps_earlier_batches_and_writes_nothing_of_its_own(tmp_path):
    market = get_or_create_market("bitstamp:BTC-USD")
    clean = tmp_path / "clean.csv"
    clean.write_text("".join(l2_head(100)))
    replay_book_windows(clean, market)
    good = export_book("bitstamp:BTC-USD")
    BookWindow.objects.all().delete()
    rows = l2_head(100)
    line = 1 + 40 * 90 + 5  # the 5th row of snapshot 91 (00:05:05.748)
    rows[line - 1] = field(1, "bod")(rows[line - 1])
    bad = tmp_path / "bad.csv"
    bad.write_text("".join(rows))
    with pytest.raises(BookFileError, match=rf"^{bad}:{line}: bad side 'bod'"):
        replay_book_windows(bad, market, batch=7)
    # Snapshot 90 (00:05:03.302) was applied: the 30 windows 00:00:00 .. 00:04:50 were final,
    # 28 of them in 4 whole batches; the 2 of the unfinished batch were not written.
    stored = export_book("bitstamp:BTC-USD")
    assert stored == good[:28] and stored[-1][0] == "2015-05-01T00:04:30Z"


@db
def test_far_past_and_far_future_rows_start_new_series(tmp_path):
    rows = l2_head(5)
    snapshot = rows[1:41]
    past = [r.replace("2015-05-01T00:00:05.885000Z", "1971-01-01T00:00:00Z") for r in snapshot]
    future = [r.replace("2015-05-01T00:00:05.885000Z", "9000-01-01T00:00:00Z") for r in snapshot]
    path = tmp_path / "far.csv"
    path.write_text("".join([rows[0], *past, *rows[1:], *future]))
    market = get_or_create_market("bitstamp:BTC-USD")
    replay_book_windows(path, market)
    starts = [row[0] for row in export_book("bitstamp:BTC-USD")]
    assert starts[0] == "1971-01-01T00:00:00Z" and starts[-1] == "9000-01-01T00:00:00Z"
    assert len(starts) == 4  # 1971, 00:00:00 and 00:00:10 of the real data, 9000
    # A far-past row in the middle is time going backwards.
    path.write_text("".join([rows[0], *rows[1:81], *past, *rows[81:]]))
    with pytest.raises(BookFileError, match=rf"^{path}:82: ts 1971-01-01T00:00:00Z is before the previous"):
        replay_book_windows(path, market)


# --- export_book flags -------------------------------------------------------------------------------------


@db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--market", "kraken:DOGE-USD"], r"^--market: unknown market 'kraken:DOGE-USD'"),
        (["--market", "bitstamp-BTC-USD"], r"^--market: ill-formed market"),
        (["--market", "bitstamp:BTC-USD", "--interval", "15s"], r"^--interval: expected a multiple of"),
        (["--market", "bitstamp:BTC-USD", "--interval", "soon"], r"^--interval: invalid duration"),
        (["--market", "bitstamp:BTC-USD", "--start", "yesterday"], r"^--start: expected an ISO-8601 time"),
        (
            ["--market", "bitstamp:BTC-USD", "--start", "2015-05-01T01:00:00Z", "--end", "2015-05-01T00:00:00Z"],
            r"^--end: expected a time after --start",
        ),
    ],
)
def test_export_book_bad_flags(args, message):
    Market.objects.create(exchange="bitstamp", base="BTC", quote="USD", symbol="btcusd")
    with pytest.raises(CommandError, match=message):
        call_command("export_book", *args, stdout=io.StringIO())


def test_checksum_of_exactly_written_values_is_the_fast_path_alike():
    book = OrderBook(5)
    book.update(bids=[(D("0.00000050"), D("12"))], asks=[(D("5E+2"), D("0.1"))])
    # asks 5000000000 / 10000000, then bids 50 / 1200000000 at 8 decimals
    assert kraken_checksum(book, 8, 8) == zlib.crc32(b"50000000000" + b"10000000" + b"50" + b"1200000000")
