"""Websocket routes."""

from django.urls import path

from inference.consumers import StreamConsumer

websocket_urlpatterns: list = [
    path("ws/v1/stream/", StreamConsumer.as_asgi()),
]
