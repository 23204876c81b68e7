"""Websocket handshakes before any consumer: whose session counts, and paths no route serves."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings

from core.hosts import host_allowed


def same_site(scope: dict) -> bool:
    """True unless the handshake names an Origin (every browser does) whose host is not in ALLOWED_HOSTS."""
    origin = next((value for name, value in scope.get("headers", ()) if name == b"origin"), None)
    if origin is None:
        return True
    try:
        netloc = urlsplit(origin.decode("latin1")).netloc
    except ValueError:
        return False
    return host_allowed(netloc, settings.ALLOWED_HOSTS)


class SameSiteSession:
    """A browser session counts on a websocket only from a page of ALLOWED_HOSTS.

    A page of another site can open a websocket to this one, and the browser
    sends this site's session cookie along (cross-site websocket hijacking).
    Such a handshake goes on without its cookies, i.e. anonymous: a token in
    the query or the first message still authenticates it, from anywhere.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not same_site(scope):
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"cookie"]}
        return await self.app(scope, receive, send)


NOT_FOUND = b"no websocket endpoint at this path (the stream is /ws/v1/stream/)\n"


async def not_found(scope, receive, send) -> None:
    """A handshake to a path no route serves: HTTP 404 (403 from a server without the denial response extension)."""
    await receive()  # websocket.connect
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close"})
        return
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(NOT_FOUND)).encode())]
    if settings.CONTENT_SECURITY_POLICY:  # as on every HTTP answer (cryptopred.middleware)
        headers.append((b"content-security-policy", settings.CONTENT_SECURITY_POLICY.encode()))
    await send({"type": "websocket.http.response.start", "status": 404, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": NOT_FOUND})
