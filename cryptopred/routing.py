"""Websocket routes; the inference app adds /ws/v1/stream/."""

websocket_urlpatterns: list = []
