"""uvicorn's websocket protocol (websockets, sans-I/O) offering the application its connection's transport.

A stream push goes to thousands of subscribers as the same bytes. Through ASGI each delivery is a
websocket.send message: a coroutine chain, the text encoded and framed again, per subscriber. With this
protocol the scope's extensions hold FRAMES, a FrameTransport, to which the application writes frames it has
encoded once (unmasked, as a server sends them) straight to the socket; everything else still goes through
ASGI. Offered only when no extension (per-message deflate) was negotiated, whose frames differ per connection.
Run with `uvicorn --ws core.wsframes:FrameTransportProtocol`, as `manage.py up` does.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request

FRAMES = "cryptopred.frames"  # the scope["extensions"] key


def text_frame(text: str) -> bytes:
    """text as one complete, unmasked websocket text frame: what a server writes for it."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


class FrameTransport:
    """Writes whole frames to one connection, between the frames the protocol itself writes."""

    __slots__ = ("protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol):
        self.protocol = protocol

    def ready(self) -> bool:
        """Open, and the transport's buffer below its high-water mark (a write now goes out, not to memory)."""
        p = self.protocol
        return p.writable.is_set() and not p.close_sent and not p.disconnected and not p.transport.is_closing()

    def write(self, frame: bytes) -> None:
        self.protocol.transport.write(frame)

    async def drained(self) -> None:
        """Once the buffer is below its low-water mark again, or the connection is lost."""
        await self.protocol.writable.wait()


class FrameTransportProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)  # the application's task is created, not started: its scope can still change
        if self.response.status_code == 101 and not self.conn.extensions:
            self.scope["extensions"][FRAMES] = FrameTransport(self)
