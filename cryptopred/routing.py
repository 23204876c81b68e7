"""Websocket routes."""

from django.urls import path, re_path

from cryptopred.websocket import not_found
from inference.consumers import StreamConsumer

websocket_urlpatterns: list = [
    path("ws/v1/stream/", StreamConsumer.as_asgi()),
    re_path(r"", not_found),  # last: any other path is answered 404, not a routing error (500)
]
