"""`make up` with no exchange reachable says so in one line and points at `make demo`."""

import socket

import pytest

from cryptopred.system import offline_hint, reachable
from testsupport import free_port


def test_an_unreachable_exchange_gets_one_line_pointing_at_make_demo(settings):
    closed = f"ws://127.0.0.1:{free_port()}/v2"
    settings.KRAKEN_WS_URL = settings.COINBASE_WS_URL = closed
    assert not reachable(closed, 1)
    hint = offline_hint({"kraken"}, 1)
    assert hint is not None and "\n" not in hint and "`make demo`" in hint and "kraken" in hint
    assert offline_hint(set(), 1) is None  # no exchange fed live (a replayed market): nothing to say


def test_a_reachable_exchange_gets_no_hint(settings):
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        settings.KRAKEN_WS_URL = f"ws://127.0.0.1:{listening.getsockname()[1]}/v2"
        settings.COINBASE_WS_URL = f"ws://127.0.0.1:{free_port()}/"
        assert reachable(settings.KRAKEN_WS_URL, 1)
        assert offline_hint({"kraken", "coinbase"}, 1) is None


@pytest.mark.django_db
def test_make_up_says_it_once_and_the_backfill_waits(settings, monkeypatch):
    from io import StringIO

    from django.core.management.base import OutputWrapper

    from cryptopred import system

    monkeypatch.setattr(system, "wipe_metrics", lambda: None)  # this test process's metrics stay
    settings.PORT, settings.DEFAULT_MARKETS = free_port(), ["kraken:ETH-USD", "kraken:BTC-USD"]
    settings.KRAKEN_WS_URL = f"ws://127.0.0.1:{free_port()}/v2"
    out = StringIO()
    system.prepare(OutputWrapper(out), migrate=False)  # as a command's stdout: one line per write
    lines = out.getvalue().splitlines()
    assert len([line for line in lines if "make demo" in line]) == 1
    assert (
        "Enabled default market kraken:ETH-USD (its stream first backfills 6 h once its exchange can be reached)."
        in lines
    )
