"""uvicorn's HTTP/1.1 protocol (httptools) with a bound on the time a client takes to send a request's headers.

uvicorn closes an idle keep-alive connection, but not one that sends a partial
request and then nothing, or a byte now and then: each such connection would be
held open forever. Here the request line and headers must be complete within
HTTP_HEADER_TIMEOUT_S of the connection opening (or of the first byte of a
later request on it); otherwise the connection is closed without an answer.
Run with `uvicorn --http cryptopred.http:HeaderTimeoutProtocol`, as `manage.py up` does.
"""

from __future__ import annotations

import asyncio

from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderTimeoutProtocol(HttpToolsProtocol):
    header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self.arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.arm_header_timer()

    def on_headers_complete(self) -> None:
        self.cancel_header_timer()
        super().on_headers_complete()

    def arm_header_timer(self) -> None:
        if self.header_timer is None:
            self.header_timer = self.loop.call_later(settings.HTTP_HEADER_TIMEOUT_S, self.header_timeout)

    def cancel_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def header_timeout(self) -> None:
        self.header_timer = None
        if not self.transport.is_closing():
            self.transport.close()
