"""Process-local fan-out of stream pushes to the websocket consumers of this process.

With Channels' own groups every subscriber has a channel, a queue and a dispatch
task, and a push to a thousand subscribers wakes a thousand tasks: most of the
cost of a fan-out (bench/fanout.py). Here each process joins each group once,
on one channel of its own, frames each publication once, and hands the same
bytes to every local subscriber (see StreamConsumer.push): written straight to
its socket when it keeps up, else queued in its bounded outbox for its writer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import NamedTuple

from channels.layers import get_channel_layer

from core.wsframes import text_frame

log = logging.getLogger(__name__)


class Push(NamedTuple):
    """One publication as every subscriber gets it: its text (for ASGI), and that text framed (for a transport)."""

    text: str
    frame: bytes

    @classmethod
    def of(cls, text: str) -> Push:
        return cls(text, text_frame(text))


class Hub:
    def __init__(self):
        self.layer = get_channel_layer()
        self.members: dict[str, set] = {}  # group -> consumers of this process
        self.channel: str | None = None
        self.reader: asyncio.Future | None = None
        self.starting = asyncio.Lock()

    async def join(self, group: str, consumer) -> None:
        async with self.starting:  # consumers join concurrently: one channel, one reader
            if self.channel is None:
                self.channel = await self.layer.new_channel("hub.")
                self.reader = asyncio.ensure_future(self.read(self.channel))
        members = self.members.setdefault(group, set())
        members.add(consumer)
        if len(members) == 1:
            await self.layer.group_add(group, self.channel)

    async def leave(self, group: str, consumer) -> None:
        members = self.members.get(group)
        if members is None or consumer not in members:
            return
        members.discard(consumer)
        if not members:
            del self.members[group]
            await self.layer.group_discard(group, self.channel)

    async def read(self, channel: str) -> None:
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # the layer reconnects by itself; keep reading
                log.exception("stream hub: receive failed")
                await asyncio.sleep(1)
                continue
            members = self.members.get(message.get("group"))
            if not members:
                continue
            push = Push.of(message["text"])  # framed once for all of them
            for consumer in members:
                consumer.push(push)  # never waits: a slow client must not hold up the others


_hubs: dict[int, Hub] = {}


def hub() -> Hub:
    """The hub of the running event loop (uvicorn runs one per process)."""
    loop = id(asyncio.get_running_loop())
    if loop not in _hubs:
        _hubs[loop] = Hub()
    return _hubs[loop]
