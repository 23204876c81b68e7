import csv
import gc
import gzip
import io
import logging
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django_celery_beat.models import PeriodicTask

import markets.trades.replay
from markets.models import Candle, Market, Trade
from markets.names import get_or_create_market
from markets.trades.candles import Tick
from markets.trades.file import read_trades
from markets.trades.ingest import Ingestor
from markets.trades.ticks import parse_ts
from testsupport.data import GEMINI, KRAKEN_BTCUSDT, read_rows, reference_candles

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def export_candles(market: str, *extra) -> list[list[str]]:
    return list(csv.reader(io.StringIO(run("export_candles", "--market", market, *extra))))


def write_csv(path, rows) -> None:
    with gzip.open(path, "wt", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["ts", "price", "qty", "side", "trade_id"])
        writer.writeheader()
        writer.writerows(rows)


def test_gemini_day_candles_match_reference():
    """A full real day without trade ids: equal timestamps, 41 % empty windows."""
    summary = run("replay", str(GEMINI), "--market", "gemini:ETH-USD")
    assert "read 25222, stored 25222, duplicates 0" in summary
    exported = export_candles("gemini:ETH-USD")
    assert exported[0] == ["ts", "open", "high", "low", "close", "volume", "trades"]
    expected = reference_candles(read_rows(GEMINI), 10)
    assert exported[1:] == expected
    assert sum(1 for row in expected if row[-1] == "0") > 3000  # empty windows really covered
    # Replaying again stores nothing twice.
    assert "stored 0, duplicates 25222" in run("replay", str(GEMINI), "--market", "gemini:ETH-USD")
    assert Trade.objects.count() == 25222


def test_kraken_ids_round_trip_through_export_trades(tmp_path):
    rows = read_rows(KRAKEN_BTCUSDT)[:4000]  # 21 hours
    write_csv(tmp_path / "slice.csv.gz", rows)
    run("replay", str(tmp_path / "slice.csv.gz"), "--market", "kraken:BTC-USDT")
    exported = list(csv.DictReader(io.StringIO(run("export_trades", "--market", "kraken:BTC-USDT"))))

    def exact(row):  # the source writes some quantities as 8.419e-05: compare values, exactly
        return row["ts"], Decimal(row["price"]), Decimal(row["qty"]), row["side"], int(row["trade_id"])

    assert [exact(r) for r in exported] == [exact(r) for r in rows]
    minute = export_candles("kraken:BTC-USDT", "--interval", "1m", "--end", "2023-11-17T01:00:00Z")
    assert minute[1][0] == "2023-11-17T00:00:00Z" and minute[1][-1] == "3"
    assert all(row[0].endswith(":00Z") for row in minute[1:])


def test_late_trades_amend_finalized_candles(tmp_path):
    rows = read_rows(KRAKEN_BTCUSDT)[:3000]
    late = rows[100:3000:50]  # withheld, then delivered after their windows closed
    on_time = [r for r in rows if r not in late]
    write_csv(tmp_path / "on_time.csv.gz", on_time)
    write_csv(tmp_path / "late.csv.gz", late)
    run("replay", str(tmp_path / "on_time.csv.gz"), "--market", "kraken:BTC-USDT")
    assert export_candles("kraken:BTC-USDT")[1:] == reference_candles(on_time, 10)
    summary = run("replay", str(tmp_path / "late.csv.gz"), "--market", "kraken:BTC-USDT")
    assert f"amended {len(late)}" in summary
    assert export_candles("kraken:BTC-USDT")[1:] == reference_candles(rows, 10)
    assert sum(Candle.objects.values_list("amended", flat=True)) == len(late)


@pytest.mark.django_db(transaction=True)  # on_commit is called outside any transaction: none may be open
def test_on_commit_called_after_each_commit_that_finalized_candles(tmp_path, monkeypatch):
    market = get_or_create_market("kraken:BTC-USDT")
    seen = []

    def on_commit():
        # After commit: no transaction is open, and the finalized candles are stored.
        assert not connection.in_atomic_block
        seen.append(Candle.objects.filter(market=market, final=True).count())

    write_csv(tmp_path / "slice.csv.gz", read_rows(KRAKEN_BTCUSDT)[:2000])
    monkeypatch.setattr(markets.trades.replay, "BATCH", 400)
    monkeypatch.setattr(markets.trades.replay, "CHUNK", 200)
    markets.trades.replay.replay_trades(tmp_path / "slice.csv.gz", market, on_commit=on_commit)
    assert len(seen) > 3
    assert seen == sorted(seen) and seen[-1] == Candle.objects.count()


def test_a_restarted_paced_replay_resumes_at_the_last_stored_trade(tmp_path, monkeypatch, caplog):
    """A paced replay killed mid-file and started again paces from where it stopped, not from the file's start."""
    rows = read_rows(KRAKEN_BTCUSDT)[:40]
    write_csv(tmp_path / "slice.csv.gz", rows)
    market = get_or_create_market("kraken:BTC-USDT")
    [ticks] = read_trades(tmp_path / "slice.csv.gz", batch_size=100)
    Ingestor(market).ingest(ticks[:25], close_until=ticks[24].ts.timestamp())  # stored before the kill: no flush
    delivered = []
    paced = markets.trades.replay._paced
    monkeypatch.setattr(
        markets.trades.replay,
        "_paced",
        lambda ingestor, batch, *args: delivered.extend(batch) or paced(ingestor, batch, *args),
    )
    with caplog.at_level(logging.INFO, logger="markets.trades.replay"):
        stats = markets.trades.replay.replay_trades(tmp_path / "slice.csv.gz", market, speed=100_000)
    assert delivered[0].ts == ticks[24].ts and stats.stored == 15
    assert "resuming at the last stored trade" in caplog.text
    assert export_candles("kraken:BTC-USDT")[1:] == reference_candles(rows, 10)  # as one uninterrupted replay


@pytest.fixture
def disk_full():
    """Make INSERTs into a table fail as on a full disk: PostgreSQL's own error (SQLSTATE 53100, DiskFull).

    A trigger rather than a small filesystem (which needs root to mount) or temp_file_limit (which does not
    count the temporary staging tables the bulk writes use, and the replay's statements do not sort).
    """
    tables = []

    def fill(table: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE OR REPLACE FUNCTION test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " RAISE EXCEPTION 'could not extend file \"base/16384/16385\": No space left on device'"
                " USING ERRCODE = 'disk_full'; END $$"
            )
            cursor.execute(f"CREATE TRIGGER test_disk_full BEFORE INSERT ON {table} EXECUTE FUNCTION test_disk_full()")
        tables.append(table)

    yield fill
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"DROP TRIGGER IF EXISTS test_disk_full ON {table}")
        cursor.execute("DROP FUNCTION IF EXISTS test_disk_full()")


def test_a_full_disk_while_storing_trades_is_one_line(tmp_path, disk_full):
    write_csv(tmp_path / "slice.csv.gz", read_rows(GEMINI)[:500])
    disk_full("markets_trade")
    with pytest.raises(CommandError) as error:
        call_command("replay", str(tmp_path / "slice.csv.gz"), "--market", "gemini:ETH-USD")
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'slice.csv.gz'}: the database ran out of resources: could not extend")
    assert "No space left on device" in message and "\n" not in message


@pytest.mark.django_db(transaction=True)  # the failed step's error must not abort a test transaction around it
def test_a_full_disk_after_the_trades_are_stored_fails_the_replay_with_one_line_per_outage(
    tmp_path, disk_full, monkeypatch, caplog
):
    write_csv(tmp_path / "slice.csv.gz", read_rows(GEMINI)[:2000])
    monkeypatch.setattr(markets.trades.replay, "BATCH", 400)
    monkeypatch.setattr(markets.trades.replay, "CHUNK", 200)
    disk_full("features_featurerow")
    with caplog.at_level(logging.INFO), pytest.raises(CommandError) as error:
        call_command("replay", str(tmp_path / "slice.csv.gz"), "--market", "gemini:ETH-USD")
    assert Trade.objects.count() == 2000  # stored: a re-run once there is space catches up
    message = str(error.value)
    assert message.startswith("gemini:ETH-USD: pipeline step failed: ") and "\n" not in message
    assert "No space left on device" in message
    failures = [r for r in caplog.records if r.name == "pipeline.runner" and "pipeline step failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is None, [r.getMessage() for r in failures]


def test_malformed_row_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "ts,price,qty,side,trade_id\n"
        "2023-11-17T00:00:06.662000Z,36160.9,0.00039906,buy,1\n"
        "2023-11-17T00:00:07.000000Z,36160.9,abc,buy,2\n"
    )
    with pytest.raises(CommandError, match=rf"{path}:3: bad price/qty"):
        call_command("replay", str(path), "--market", "kraken:BTC-USDT")
    assert Trade.objects.count() == 0
    path.write_text("x" * 100_000 + "\n")  # not even the header: quoted short all the same
    with pytest.raises(CommandError, match=rf"{path}:1: unknown header .*… \(100000 characters\)") as error:
        call_command("replay", str(path), "--market", "kraken:BTC-USDT")
    assert len(str(error.value)) < 400


def test_a_byte_order_mark_is_skipped(tmp_path):
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["ts", "price", "qty", "side", "trade_id"])
    writer.writeheader()
    writer.writerows(read_rows(GEMINI)[:50])
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.getvalue().encode())  # as spreadsheet programs save
    run("replay", str(path), "--market", "gemini:ETH-USD")
    assert Trade.objects.count() == 50


@pytest.mark.parametrize(
    "command",
    [["replay", "--market", "kraken:BTC-USDT"], ["import_candles", "--market", "kraken:BTC-USDT", "--interval", "1m"]],
)
def test_files_that_are_not_trades_files_say_what_they_are(tmp_path, command):
    name, *options = command
    with pytest.raises(CommandError, match=rf"^{tmp_path}: is a directory$"):
        call_command(name, str(tmp_path), *options)
    with pytest.raises(CommandError, match=rf"^{tmp_path}/missing.csv: no such file$"):
        call_command(name, str(tmp_path / "missing.csv"), *options)
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(CommandError, match=rf"^{tmp_path}/empty.csv: empty file"):
        call_command(name, str(tmp_path / "empty.csv"), *options)


NEAR_LIMIT = "999999999999999.9"  # a price just below 1e16, a quantity just below 1e18 with 900000000000000000
VALUES_THE_DATABASE_CANNOT_STORE = [
    # (the row put at line 32, the line named, the problem)
    ("2023-11-17T00:10:00Z,1e400,0.1,buy,", 32, "price/qty '1e400'/'0.1' out of range: the database stores numeric"),
    ("2023-11-17T00:10:00Z,Infinity,0.1,buy,", 32, "price/qty 'Infinity'/'0.1' out of range"),
    ("2023-11-17T00:10:00Z,NaN,0.1,buy,", 32, "bad price/qty 'NaN'/'0.1': not decimal numbers"),
    ("2023-11-17T00:10:00Z,36160.9,1234567890123456789012345.5,buy,", 32, "out of range"),
    ("2023-11-17T00:10:00Z,36160.9,0.0000000000001,buy,", 32, "out of range"),  # would be stored as 0
    ("2023-11-17T00:10:00Z,36160.9," + "9" * 500 + ",buy,", 32, "'" + "9" * 40 + "'… (500 characters)"),
    ("2023-11-17T00:10:00Z,36160.9,0.1,buy,9223372036854775808", 32, "trade_id '9223372036854775808' out of range"),
    ("2300-01-01T00:00:00Z,36160.9,0.1,buy,", 32, "the trade_id derived from ts 2300-01-01T00:00:00Z out of range"),
]


@pytest.mark.parametrize(("bad", "line", "problem"), VALUES_THE_DATABASE_CANNOT_STORE)
def test_values_the_database_cannot_store_stop_with_file_and_line(tmp_path, bad, line, problem):
    """One line, nothing of the batch stored, no market left behind by the command that created it."""
    rows = [",".join(r.values()) for r in read_rows(KRAKEN_BTCUSDT)[:60]]  # 00:00 to 00:12
    path = tmp_path / "bad.csv"
    path.write_text(
        "ts,price,qty,side,trade_id\n"
        + "\n".join(rows[:30])
        + "\n"
        + bad.rstrip("\n")
        + "\n"
        + "\n".join(rows[30:])
        + "\n"
    )
    with pytest.raises(CommandError) as error:
        call_command("replay", str(path), "--market", "kraken:BTC-USDT")
    message = str(error.value)
    assert message.startswith(f"{path}:{line}: ") and problem in message and "\n" not in message
    assert len(message) < 400
    assert not Trade.objects.exists() and not Candle.objects.exists() and not Market.objects.exists()
    assert not PeriodicTask.objects.filter(name="train kraken:BTC-USDT").exists()  # its training task went with it


def test_a_window_of_quantities_near_the_limit_is_stored_replayed_and_live(tmp_path):
    """Each quantity just fits a trade; their sum fits the candle (numeric(40,12)), on either path."""
    rows = [",".join(r.values()) for r in read_rows(KRAKEN_BTCUSDT)[:60]]  # 00:00 to 00:12
    big = [f"2023-11-17T00:10:0{i}Z,{NEAR_LIMIT},900000000000000000,buy," for i in range(3)]
    path = tmp_path / "big.csv"
    path.write_text("ts,price,qty,side,trade_id\n" + "\n".join(rows[:30] + big + rows[30:]) + "\n")
    call_command("replay", str(path), "--market", "kraken:BTC-USDT")
    window = Candle.objects.get(market__base="BTC", start=parse_ts("2023-11-17T00:10:00Z"))
    assert Decimal("2.7e18") < window.volume < Decimal("2.8e18")

    live = get_or_create_market("kraken:ETH-USD")
    ticks = [Tick(i, parse_ts(f"2023-11-17T00:10:0{i}Z"), Decimal(2000), Decimal("9e17"), "buy") for i in (1, 2)]
    Ingestor(live).ingest(ticks, close_until=parse_ts("2023-11-17T00:10:30Z").timestamp())
    assert Candle.objects.get(market=live, start=parse_ts("2023-11-17T00:10:00Z")).volume == Decimal("1.8e18")


def test_a_failed_replay_keeps_a_market_it_did_not_create(tmp_path):
    existing = Market.objects.create(exchange="kraken", base="BTC", quote="USDT", symbol="BTC/USDT")
    path = tmp_path / "bad.csv"
    path.write_text("ts,price,qty,side,trade_id\n2023-11-17T00:00:06Z,1e400,1,buy,1\n")
    with pytest.raises(CommandError, match=f"{path}:2: "):
        call_command("replay", str(path), "--market", "kraken:BTC-USDT")
    assert list(Market.objects.all()) == [existing]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--market", "kraken-ETH-USD"], "ill-formed market"),
        (["--market", "kraken:ETH-USD", "--speed", "fast"], "--speed: expected max"),
        # Longer than their columns: one line, not the database's DataError.
        (["--market", f"kraken:{'A' * 487}-USD"], "its base is 487 characters long, at most 16"),
        (["--market", f"{'k' * 33}:ETH-USD"], "its exchange is 33 characters long, at most 32"),
        (["--market", f"kraken:ETH-{'U' * 17}"], "its quote is 17 characters long, at most 16"),
    ],
)
def test_replay_bad_arguments(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("replay", str(GEMINI), *args)


def test_export_unknown_market():
    with pytest.raises(CommandError, match="unknown market 'kraken:DOGE-USD'"):
        call_command("export_candles", "--market", "kraken:DOGE-USD")
    Market.objects.create(exchange="kraken", base="ETH", quote="USD", symbol="ETH/USD")
    with pytest.raises(CommandError, match="--interval"):
        call_command("export_candles", "--market", "kraken:ETH-USD", "--interval", "15s")


def test_paced_replay_equals_max(tmp_path):
    rows = read_rows(KRAKEN_BTCUSDT)[:40]  # spans about 13 minutes: 200x is about 4 s
    write_csv(tmp_path / "slice.csv.gz", rows)
    run("replay", str(tmp_path / "slice.csv.gz"), "--market", "kraken:BTC-USDT", "--speed", "200")
    assert export_candles("kraken:BTC-USDT")[1:] == reference_candles(rows, 10)
    assert Candle.objects.filter(volume=Decimal(0)).exists()


def test_deleting_a_market_deletes_its_trades(tmp_path):
    # trades.market_id has no foreign key constraint: the cascade is Django's alone.
    write_csv(tmp_path / "slice.csv.gz", read_rows(GEMINI)[:50])
    run("replay", str(tmp_path / "slice.csv.gz"), "--market", "gemini:ETH-USD")
    kept = Market.objects.create(exchange="gemini", base="BTC", quote="USD", symbol="btcusd")
    run("replay", str(tmp_path / "slice.csv.gz"), "--market", "gemini:BTC-USD")
    assert Trade.objects.count() == 100
    Market.objects.get(exchange="gemini", base="ETH").delete()
    assert Trade.objects.count() == 50 and set(Trade.objects.values_list("market", flat=True)) == {kept.pk}


def test_replay_restores_automatic_garbage_collection(tmp_path):
    write_csv(tmp_path / "slice.csv.gz", read_rows(GEMINI)[:50])
    assert gc.isenabled()
    run("replay", str(tmp_path / "slice.csv.gz"), "--market", "gemini:ETH-USD")
    assert gc.isenabled()
    write_csv(tmp_path / "bad.csv.gz", [{"ts": "nope", "price": 1, "qty": 1, "side": "buy", "trade_id": 1}])
    with pytest.raises(CommandError):
        run("replay", str(tmp_path / "bad.csv.gz"), "--market", "gemini:ETH-USD")
    assert gc.isenabled()


def test_overlapping_replays_store_each_trade_once_across_batches(tmp_path, monkeypatch):
    # Small batches and chunks: a batch of stored trades, a batch half stored, batches of new ones.
    monkeypatch.setattr("markets.trades.replay.BATCH", 500)
    monkeypatch.setattr("markets.trades.replay.CHUNK", 100)
    rows = read_rows(KRAKEN_BTCUSDT)[:3000]
    write_csv(tmp_path / "first.csv.gz", rows[:1250])
    write_csv(tmp_path / "all.csv.gz", rows)
    run("replay", str(tmp_path / "first.csv.gz"), "--market", "kraken:BTC-USDT")
    summary = run("replay", str(tmp_path / "all.csv.gz"), "--market", "kraken:BTC-USDT")
    assert "read 3000, stored 1750, duplicates 1250" in summary
    assert list(Trade.objects.order_by("trade_id").values_list("trade_id", flat=True)) == [
        int(r["trade_id"]) for r in rows
    ]
    assert export_candles("kraken:BTC-USDT")[1:] == reference_candles(rows, 10)


def test_any_iso_timestamp_is_stored_as_python_reads_it(tmp_path):
    # The replay hands PostgreSQL the file's own timestamp text only where both read it alike.
    stamps = [
        "2023-11-17T00:00:06.662000Z",
        "2023-11-17T00:00:07Z",
        "2023-11-17T00:00:08.5Z",
        "2023-11-17T01:00:09.123456+01:00",
        "2023-11-17T00:00:10.123+00:00",
        "2023-11-17T00:00:11.000001Z",
        "2023-11-17 00:00:12.25Z",
        "20231117T000013Z",
        "2023-11-17T00:00:14.1234567Z",  # Python truncates to microseconds, PostgreSQL rounds
        "2023-W46-5T00:00:15Z",
        "2023-11-17T00:00:16,5Z",
    ]
    path = tmp_path / "stamps.csv"
    lines = [f'"{ts}",1_000.5,0.25,buy,{i}' for i, ts in enumerate(stamps, 1)]
    path.write_text("ts,price,qty,side,trade_id\n" + "\n".join(lines) + "\n")
    run("replay", str(path), "--market", "kraken:BTC-USDT")
    stored = Trade.objects.order_by("trade_id")
    assert [t.ts for t in stored] == [parse_ts(ts) for ts in stamps]
    assert {t.price for t in stored} == {Decimal("1000.5")}


MEMORY_LIMIT = 1536 << 20  # bytes of address space for the subprocess: a day of windows fits, decades do not


def manage_limited(*args: str) -> subprocess.CompletedProcess:
    """manage.py in its own process, against the test database, with its address space limited."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    test_db = urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))
    code = (
        "import resource, runpy, sys;"
        f" resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}));"
        " sys.argv[0] = 'manage.py'; runpy.run_path('manage.py', run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": test_db},
        capture_output=True,
        text=True,
        timeout=300,
    )


ROWS = 3000  # the Gemini day's first trades (five hours): the gap a far row would open is what matters


def gemini_with(tmp_path, inserted: dict[int, str]) -> tuple[Path, list[str]]:
    """The real Gemini day's first ROWS trades as a plain file with rows inserted before the given data row
    numbers (0: the first)."""
    with gzip.open(GEMINI, "rt") as f:
        header, *rows = f.read().splitlines()[: ROWS + 1]
    for index in sorted(inserted, reverse=True):
        rows.insert(index, inserted[index])
    path = tmp_path / "gemini.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path, rows


@pytest.mark.django_db(transaction=True)  # manage.py in another process reads and writes the test database
def test_out_of_order_rows_keep_memory_bounded(tmp_path):
    """One row decades away from the others neither fills the gap nor spans it: see README, Guarantees."""
    market = "gemini:ETH-USD"
    middle = ROWS // 2
    # A row from 1999 in the middle of the day: refused, naming its line; nothing stored, no market left behind.
    path, _ = gemini_with(tmp_path, {middle: "1999-01-01T00:00:00Z,2000,1,buy,"})
    done = manage_limited("replay", str(path), "--market", market)
    assert done.returncode == 1, done.stderr
    error = done.stderr.strip().splitlines()
    assert len(error) == 1
    assert error[0].startswith(f"CommandError: {path}:{middle + 2}: trade at 1999-01-01T00:00:00Z is older than ")
    assert not Trade.objects.exists() and not Market.objects.exists()

    # A row from 2099 (in the future): refused as such.
    path, _ = gemini_with(tmp_path, {middle: "2099-01-01T00:00:00Z,2000,1,buy,"})
    done = manage_limited("replay", str(path), "--market", market)
    assert done.returncode == 1
    assert f"{path}:{middle + 2}: trade at 2099-01-01T00:00:00Z is in the future" in done.stderr
    assert not Market.objects.exists()

    # A row two years ahead in the middle: accepted (a new series), then the next row is too old.
    path, rows = gemini_with(tmp_path, {middle: "2023-07-01T00:00:00Z,2000,1,buy,"})
    done = manage_limited("replay", str(path), "--market", market)
    assert done.returncode == 1
    next_ts = parse_ts(rows[middle + 1].split(",")[0]).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert f"{path}:{middle + 3}: trade at {next_ts} is older than 2023-06-30T00:00:00Z" in done.stderr

    # Far rows first and last: each starts a new series, no window between them exists or is exported.
    path, rows = gemini_with(
        tmp_path, {0: "1999-01-01T00:00:00Z,2000,1,buy,", ROWS: "2023-07-01T00:00:00Z,2001,1,sell,"}
    )
    done = manage_limited("replay", str(path), "--market", market)
    assert done.returncode == 0, done.stderr
    assert f"read {ROWS + 2}, stored {ROWS + 2}" in done.stdout
    day = reference_candles(read_rows(GEMINI)[:ROWS], 10)
    starts = [
        c.strftime("%Y-%m-%dT%H:%M:%SZ") for c in Candle.objects.order_by("start").values_list("start", flat=True)
    ]
    assert starts == ["1999-01-01T00:00:00Z", *(row[0] for row in day), "2023-07-01T00:00:00Z"]
    exported = manage_limited("export_candles", "--market", market)
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.splitlines()
    assert lines[1] == "1999-01-01T00:00:00Z,2000,2000,2000,2000,1,1"
    assert [line.split(",") for line in lines[2:-1]] == day
    assert lines[-1] == "2023-07-01T00:00:00Z,2001,2001,2001,2001,1,1"
