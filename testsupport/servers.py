"""The real ASGI application under uvicorn in a thread of the test process, on an ephemeral loopback port."""

from __future__ import annotations

import socket
import threading
import time


class Server:
    """The real ASGI application under uvicorn, in a thread, on an ephemeral loopback port."""

    def __init__(self, deflate: bool = False):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            "cryptopred.asgi:application",
            ws="core.wsframes:FrameTransportProtocol",
            ws_per_message_deflate=deflate,  # off as `manage.py up` runs it
            lifespan="off",
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            time.sleep(0.01)
        raise RuntimeError("uvicorn did not start")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ws_url(self, path: str = "/ws/v1/stream/") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"
