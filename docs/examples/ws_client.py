"""Print a market's predictions as the server pushes them: ws_client.py WS_URL TOKEN MARKET [COUNT]."""

import asyncio
import json
import sys

from websockets.asyncio.client import connect


async def main(url: str, token: str, market: str, count: int | None) -> None:
    async with connect(f"{url}?token={token}") as ws:
        await ws.send(json.dumps({"action": "subscribe", "channel": "predictions", "market": market}))
        print(await ws.recv(), flush=True)  # {"type": "subscribed", ...}
        while count is None or count > 0:
            push = json.loads(await ws.recv())  # a prediction, or {"type": "dropped", "count": n} after a gap
            fields = ("horizon", "made_at", "price", "lower", "upper", "p_up") if push["type"] == "prediction" else ()
            print(push["type"], *(push[name] for name in fields), flush=True)
            count = None if count is None else count - 1


if __name__ == "__main__":
    url, token, market, *rest = sys.argv[1:]
    asyncio.run(main(url, token, market, int(rest[0]) if rest else None))
