"""`make up` with no exchange reachable says so in one line and points at `make demo`."""

import socket

from cryptopred.management.commands.up import offline_hint, reachable
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
